//! The pip commands `nodes install` runs in the container, run against a real local virtualenv
//! (the test image has no Python): a requirement on another torch must fail loudly under the
//! constraints, never replace the installed one.

mod support;

use std::path::Path;
use std::process::Command;

use lifeos_spark::nodes::pip;
use support::require;

/// A minimal wheel (what `pip wheel` of an empty project produces), made with Python's zipfile.
fn wheel(dir: &Path, name: &str, version: &str) {
    let script = format!(
        r#"
import zipfile
di = "{name}-{version}.dist-info"
with zipfile.ZipFile("{dir}/{name}-{version}-py3-none-any.whl", "w") as z:
    z.writestr(f"{{di}}/METADATA", "Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    z.writestr(f"{{di}}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    z.writestr(f"{{di}}/RECORD", "")
"#,
        dir = dir.display()
    );
    assert!(Command::new("python3")
        .arg("-c")
        .arg(script)
        .status()
        .unwrap()
        .success());
}

struct Venv {
    dir: tempfile::TempDir,
}

impl Venv {
    fn pip(&self, args: &[String]) -> std::process::Output {
        Command::new(self.dir.path().join("venv/bin/pip"))
            .args(args)
            // Offline: the wheels the test made are the whole index.
            .args([
                "--no-index",
                "--find-links",
                self.dir.path().join("wheels").to_str().unwrap(),
            ])
            .output()
            .unwrap()
    }

    fn freeze(&self) -> String {
        let out = Command::new(self.dir.path().join("venv/bin/pip"))
            .args(["list", "--format=freeze"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn venv() -> Option<Venv> {
    let python = Command::new("python3")
        .args(["-m", "venv", "--help"])
        .output();
    require(
        python.is_ok_and(|o| o.status.success()),
        "python3 with venv (python3-venv)",
    )?;
    let dir = tempfile::tempdir().unwrap();
    let wheels = dir.path().join("wheels");
    std::fs::create_dir(&wheels).unwrap();
    for (n, v) in [
        ("torch", "2.9.0"),
        ("torch", "2.10.0"),
        ("torchsde", "0.2.6"),
        ("tinyreq", "1.0"),
    ] {
        wheel(&wheels, n, v);
    }
    assert!(Command::new("python3")
        .args(["-m", "venv"])
        .arg(dir.path().join("venv"))
        .status()
        .unwrap()
        .success());
    let v = Venv { dir };
    let out = v.pip(&["install".into(), "torch==2.9.0".into()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(v)
}

#[test]
fn a_requirement_on_another_torch_fails_loudly_and_keeps_the_installed_one() {
    let Some(v) = venv() else { return };
    let constraints = v.dir.path().join("constraints.txt");
    std::fs::write(&constraints, pip::constraints_from_freeze(&v.freeze())).unwrap();
    assert_eq!(
        std::fs::read_to_string(&constraints).unwrap(),
        "torch==2.9.0\n"
    );
    let reqs = v.dir.path().join("requirements.txt");
    std::fs::write(&reqs, "torch>=2.10\ntinyreq\n").unwrap();

    let args = pip::install_args(
        constraints.to_str().unwrap(),
        Some(reqs.to_str().unwrap()),
        &[],
        false,
    );
    let out = v.pip(&args);
    assert!(!out.status.success(), "pip must refuse");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let why = pip::explain_failure(&stderr).unwrap_or_else(|| panic!("not recognised: {stderr}"));
    assert!(why.contains("would break PyTorch"));
    assert!(v.freeze().contains("torch==2.9.0"));
    assert!(!v.freeze().contains("tinyreq"), "nothing installed");

    // Control: without the constraints pip really would have replaced torch.
    let plan = v.pip(&[
        "install".into(),
        "--dry-run".into(),
        "-r".into(),
        reqs.to_str().unwrap().into(),
    ]);
    let plan = String::from_utf8_lossy(&plan.stdout);
    assert!(
        pip::would_install(&plan).contains(&"torch-2.10.0".to_string()),
        "{plan}"
    );
}

#[test]
fn an_unpinned_torch_keeps_the_installed_one_and_the_rest_installs() {
    let Some(v) = venv() else { return };
    let constraints = v.dir.path().join("constraints.txt");
    std::fs::write(&constraints, pip::constraints_from_freeze(&v.freeze())).unwrap();
    let reqs = v.dir.path().join("requirements.txt");
    std::fs::write(&reqs, "torch\ntorchsde\n").unwrap();
    let extras = vec!["tinyreq".to_string()];
    let dry = v.pip(&pip::install_args(
        constraints.to_str().unwrap(),
        Some(reqs.to_str().unwrap()),
        &extras,
        true,
    ));
    let wanted = pip::would_install(&String::from_utf8_lossy(&dry.stdout));
    assert_eq!(wanted, ["tinyreq-1.0", "torchsde-0.2.6"]);
    let out = v.pip(&pip::install_args(
        constraints.to_str().unwrap(),
        Some(reqs.to_str().unwrap()),
        &extras,
        false,
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let freeze = v.freeze();
    assert!(
        freeze.contains("torch==2.9.0")
            && freeze.contains("tinyreq==1.0")
            && freeze.contains("torchsde==0.2.6"),
        "{freeze}"
    );
    // Again, for real: the virtualenv is left as it is (same packages, same installed
    // metadata files, untouched), judged by the files, not by parsing pip's output.
    let installed = dist_infos(v.dir.path());
    assert!(installed.len() >= 3, "{installed:?}");
    let again = v.pip(&pip::install_args(
        constraints.to_str().unwrap(),
        Some(reqs.to_str().unwrap()),
        &extras,
        false,
    ));
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(v.freeze(), freeze);
    assert_eq!(
        dist_infos(v.dir.path()),
        installed,
        "pip reinstalled something"
    );
}

/// Every `*.dist-info/RECORD` in the virtualenv with its mtime: a reinstall rewrites it.
fn dist_infos(dir: &Path) -> Vec<(std::path::PathBuf, std::time::SystemTime)> {
    let mut out = Vec::new();
    for lib in std::fs::read_dir(dir.join("venv/lib")).unwrap() {
        let site = lib.unwrap().path().join("site-packages");
        for e in std::fs::read_dir(&site).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "dist-info") {
                let record = p.join("RECORD");
                let mtime = std::fs::metadata(&record).unwrap().modified().unwrap();
                out.push((record, mtime));
            }
        }
    }
    out.sort();
    out
}
