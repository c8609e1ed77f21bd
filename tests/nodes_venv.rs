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

/// Commits everything in `repo` (made a repository on the first call); returns the commit.
fn commit_all(repo: &Path, message: &str) -> String {
    let r = repo.display();
    sh(&format!("cd '{r}' && (git rev-parse --git-dir >/dev/null 2>&1 || git -c init.defaultBranch=main init -q) && git add -A && git -c user.name=t -c user.email=t@t commit -qm {message}"));
    stdout(&sh(&format!("git -C '{r}' rev-parse HEAD")))
        .trim()
        .to_string()
}

/// The node list pinning `id` at `commit` of `repo`.
fn pin(nodes: &Path, id: &str, class: &str, repo: &Path, commit: &str) {
    std::fs::write(
        nodes,
        format!(
            "nodes:\n  - id: {id}\n    repo: {}\n    commit: {commit}\n    proves: [{class}]\n",
            repo.display()
        ),
    )
    .unwrap();
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
        // A node whose requirements.txt names a wheel it carries (pip needs no index).
        T::with_node("VenvNode", "VenvProbe", |repo| {
            let wheel = probe_wheel(repo);
            std::fs::write(
                repo.join("requirements.txt"),
                format!("/opt/ComfyUI/custom_nodes/VenvNode/{wheel}\n"),
            )
            .unwrap();
        })
    }

    /// A deployment with one pinned node `id` (a local git repository whose files `files`
    /// writes, proving `class`), on the Python test image.
    fn with_node(id: &str, class: &str, files: impl FnOnce(&Path)) -> Option<T> {
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

        let repo = dir.path().join(id);
        std::fs::create_dir_all(&repo).unwrap();
        files(&repo);
        std::fs::write(repo.join("NODE_CLASSES"), format!("{class}\n")).unwrap();
        let commit = commit_all(&repo, "one");
        let nodes = dir.path().join("nodes.yaml");
        pin(&nodes, id, class, &repo, &commit);
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

    /// The tool on this deployment, whatever its exit status.
    fn try_run(&self, args: &[&str]) -> Output {
        let mut cmd = self.client.lifeos();
        cmd.env("DOCKER_HOST", &self.docker).args(args);
        cmd.args(["--playbook", self.playbook.to_str().unwrap()]);
        cmd.args(["--root", self.root().to_str().unwrap(), "--gpu", "none"]);
        cmd.output().unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = self.try_run(args);
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

#[test]
fn install_py_runs_once_per_pinned_commit_in_the_node_folder_and_a_failure_stops() {
    // Each run of install.py appends where it ran and with which Python to a file under
    // `user/` (mounted from the root): the host's own record of every run.
    let script = |tail: &str| {
        format!(
            "import os, sys\nwith open('/opt/ComfyUI/user/install-py.log', 'a') as f:\n    f.write(os.getcwd() + ' ' + sys.prefix + '\\n')\n{tail}"
        )
    };
    let first = script("");
    let Some(t) = T::with_node("InstallNode", "InstallProbe", |repo| {
        std::fs::write(repo.join("install.py"), &first).unwrap();
    }) else {
        return;
    };
    let log = t.root().join("user/install-py.log");
    let runs = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let ran = "/opt/ComfyUI/custom_nodes/InstallNode /opt/venv";
    let nodes = t.nodes.to_str().unwrap();
    t.run(&["up"]);

    // A fresh clone: install.py runs once, in the node's folder, with the venv's Python, and
    // leaves the clone clean.
    t.run(&["nodes", "install", "--nodes", nodes]);
    assert_eq!(runs(), [ran]);
    let clone = t.root().join("custom_nodes/InstallNode");
    let status = sh(&format!("git -C '{}' status --porcelain", clone.display()));
    assert_eq!(stdout(&status), "", "install.py dirtied the clone");

    // Nothing changed: it does not run again.
    t.run(&["nodes", "install", "--nodes", nodes]);
    assert_eq!(runs(), [ran]);

    // A new pinned commit whose install.py fails: it runs, the install stops with its reason,
    // and since it did not succeed it runs again on the next install.
    let repo = t.dir.path().join("InstallNode");
    std::fs::write(
        repo.join("install.py"),
        script("sys.exit('boom: install.py refused')\n"),
    )
    .unwrap();
    let commit = commit_all(&repo, "two");
    pin(&t.nodes, "InstallNode", "InstallProbe", &repo, &commit);
    for attempt in 2..4 {
        let out = t.try_run(&["nodes", "install", "--nodes", nodes]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{}\n{err}", stdout(&out));
        assert!(
            err.contains("`python install.py` of InstallNode failed")
                && err.contains("boom: install.py refused"),
            "{err}"
        );
        assert_eq!(runs(), vec![ran; attempt]);
    }
    assert_eq!(head(&clone), commit);
}

fn head(repo: &Path) -> String {
    stdout(&sh(&format!("git -C '{}' rev-parse HEAD", repo.display())))
        .trim()
        .to_string()
}
