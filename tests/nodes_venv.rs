//! The nodes' Python packages outlive the container: `nodes install` puts them in the venv on
//! the deployment root (mounted at /opt/venv), so after `down` + `up` and after a new image
//! under the same tag the new container still imports them; a venv that is lost or made
//! stale is repaired by `up`. In a real container with a real Python: a Debian base built here
//! from Debian's packages, with the mock ComfyUI for the HTTP side.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use support::*;

/// A wheel with an importable module, made with Python's zipfile (no network, no build tools).
fn probe_wheel(dir: &Path) -> String {
    let name = "lifeos_probe-1.0-py3-none-any.whl";
    let script = format!(
        r#"
import zipfile
di = "lifeos_probe-1.0.dist-info"
with zipfile.ZipFile("{dir}/{name}", "w") as z:
    z.writestr("lifeos_probe/__init__.py", "MARK = 'durable'\n")
    z.writestr(f"{{di}}/METADATA", "Metadata-Version: 2.1\nName: lifeos_probe\nVersion: 1.0\n")
    z.writestr(f"{{di}}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    z.writestr(f"{{di}}/RECORD", "")
"#,
        dir = dir.display()
    );
    sh(&format!("python3 -c '{}'", script.replace('\'', "'\\''")));
    name.to_string()
}

struct T {
    client: ClientHome,
    docker: String,
    dir: tempfile::TempDir,
    playbook: PathBuf,
    nodes: PathBuf,
    image: String,
    _guard: ProjectGuard,
}

impl T {
    fn new() -> Option<T> {
        let docker = docker_host(true)?;
        // The ENV lines the generated Dockerfile sets (PATH with the venv first).
        let playbook = lifeos_spark::playbook::Playbook::load("rtx-4090").unwrap();
        let opts = lifeos_spark::compose::ServiceOptions {
            bind: None,
            gpu: false,
            arch: "x86_64".into(),
        };
        let dockerfile = lifeos_spark::compose::render_dockerfile(&playbook, &opts);
        let env: Vec<&str> = dockerfile
            .lines()
            .filter(|l| l.starts_with("ENV "))
            .collect();
        assert!(
            env.iter().any(|l| l.contains("/opt/venv/bin")),
            "{dockerfile}"
        );
        let image = python_test_image(&docker, &env.join("\n"))?;
        let dir = tempfile::tempdir().unwrap();
        let (playbook, _port, project) = test_playbook(dir.path(), &image);

        // A node whose requirements.txt names a wheel it carries (pip needs no index).
        let repo = dir.path().join("VenvNode");
        std::fs::create_dir_all(&repo).unwrap();
        let wheel = probe_wheel(&repo);
        std::fs::write(repo.join("NODE_CLASSES"), "VenvProbe\n").unwrap();
        std::fs::write(
            repo.join("requirements.txt"),
            format!("/opt/ComfyUI/custom_nodes/VenvNode/{wheel}\n"),
        )
        .unwrap();
        sh(&format!("cd '{}' && git -c init.defaultBranch=main init -q && git add -A && git -c user.name=t -c user.email=t@t commit -qm one", repo.display()));
        let commit = stdout(&sh(&format!("git -C '{}' rev-parse HEAD", repo.display())))
            .trim()
            .to_string();
        let nodes = dir.path().join("nodes.yaml");
        std::fs::write(
            &nodes,
            format!(
                "nodes:\n  - id: VenvNode\n    repo: {}\n    commit: {commit}\n    proves: [VenvProbe]\n",
                repo.display()
            ),
        )
        .unwrap();
        Some(T {
            client: ClientHome::new(),
            docker: docker.clone(),
            dir,
            playbook,
            nodes,
            image,
            _guard: ProjectGuard {
                docker_host: docker,
                project,
            },
        })
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.client.lifeos();
        cmd.env("DOCKER_HOST", &self.docker).args(args);
        cmd.args(["--playbook", self.playbook.to_str().unwrap()]);
        cmd.args(["--root", self.root().to_str().unwrap(), "--gpu", "none"]);
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}:\n{}\n{}",
            stdout(&out),
            stderr(&out)
        );
        out
    }

    fn container(&self) -> String {
        let project = &self._guard.project;
        let out = sh(&format!(
            "DOCKER_HOST='{}' docker ps -q --filter label=com.docker.compose.project={project}",
            self.docker
        ));
        let id = stdout(&out).trim().to_string();
        assert!(!id.is_empty() && !id.contains('\n'), "one container: {id}");
        id
    }

    /// `python -c 'import lifeos_probe'` in the running container, as ComfyUI's python.
    fn imports(&self) -> bool {
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "DOCKER_HOST='{}' docker exec {} python -c 'import lifeos_probe; assert lifeos_probe.MARK == \"durable\"'",
                self.docker,
                self.container()
            ))
            .status()
            .unwrap()
            .success()
    }
}

use std::process::Command;

#[test]
fn node_packages_survive_recreation_and_a_lost_or_stale_venv_is_repaired() {
    let Some(t) = T::new() else { return };
    t.run(&["up"]);
    let install = t.run(&["nodes", "install", "--nodes", t.nodes.to_str().unwrap()]);
    let report = stdout(&install) + &stderr(&install);
    assert!(report.contains("node env"), "{report}");
    assert!(t.imports(), "not importable after install");
    // On the host, in the root's venv: not in the container's writable layer.
    let site = t
        .root()
        .join("venv/lib/python3.11/site-packages/lifeos_probe/__init__.py");
    assert!(site.is_file(), "{}", site.display());

    // down + up: a new container, the package still there.
    let before = t.container();
    t.run(&["down"]);
    t.run(&["up"]);
    let after = t.container();
    assert_ne!(before, after, "the container was not recreated");
    assert!(t.imports(), "lost after down + up");

    // A new image under the same tag (what `up --rebuild` makes): `up` recreates the
    // container from it, and the package is still importable.
    sh(&format!(
        "printf 'FROM {}\\nLABEL rebuilt=yes\\n' | DOCKER_HOST='{}' docker build -q -t '{}' - >/dev/null",
        t.image, t.docker, t.image
    ));
    t.run(&["up"]);
    let rebuilt = t.container();
    assert_ne!(
        after, rebuilt,
        "the container was not recreated from the new image"
    );
    assert!(t.imports(), "lost after a new image");

    // A venv made by another Python (a new base image): `up` notices and repairs it.
    let cfg = t.root().join("venv/pyvenv.cfg");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let stale = text
        .lines()
        .map(|l| match l.starts_with("version") {
            true => "version = 3.0.1",
            false => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&cfg, stale + "\n").unwrap();
    let up = t.run(&["up"]);
    let text = stdout(&up) + &stderr(&up);
    assert!(
        text.contains("stale") && text.contains("reinstalled"),
        "{text}"
    );
    assert!(!std::fs::read_to_string(&cfg).unwrap().contains("3.0.1"));
    assert!(t.imports(), "not repaired after a stale venv");

    // A lost venv (folder emptied): `up` recreates it and reinstalls.
    sh(&format!(
        "DOCKER_HOST='{}' docker exec {} sh -c 'rm -rf /opt/venv/* /opt/venv/.[!.]*'",
        t.docker,
        t.container()
    ));
    assert!(!cfg.exists());
    let up = t.run(&["up"]);
    assert!((stdout(&up) + &stderr(&up)).contains("missing"));
    assert!(site.is_file());
    assert!(t.imports(), "not repaired after a lost venv");

    // And now nothing to do: `up` reports the env ok.
    let up = t.run(&["up"]);
    let text = stdout(&up);
    assert!(
        text.lines()
            .any(|l| l.starts_with("ok") && l.contains("node env")),
        "{text}"
    );
}
