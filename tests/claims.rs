//! README claims that no other suite proves, each against the host's real state: `setup
//! --dry-run` exits 1 on a blocker and writes nothing; `--only` / `--skip` run just the named
//! phases; the GPU service with `memlock: -1` is a file the real docker-compose accepts; a file
//! Compose rejects is never written.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::*;

/// The tool run locally as an operator would: fake `nvidia-smi` (an RTX 4090 capture) first on
/// `PATH`, `$HOME` in `home`, Docker at `docker`.
fn local(home: &Path, docker: &str, args: &[&str]) -> Output {
    let fakebin = fake_gpu_bin(home, "rtx4090");
    Command::new(bin())
        .args(args)
        .env("HOME", home)
        .env(
            "PATH",
            format!("{}:{}", fakebin.display(), std::env::var("PATH").unwrap()),
        )
        .env("DOCKER_HOST", docker)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// Every path under `dir`.
fn tree(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

/// README: "`setup --dry-run` ... changes nothing, and exits 1 if `doctor` finds a blocker".
/// The blocker: no Docker daemon at `DOCKER_HOST`.
#[test]
fn setup_dry_run_exits_1_on_a_blocker_and_writes_nothing() {
    let home = tempfile::tempdir().unwrap();
    let root = home.path().join("comfyui");
    fake_gpu_bin(home.path(), "rtx4090");
    let before = tree(home.path());
    let out = local(
        home.path(),
        "unix:///nonexistent/docker.sock",
        &[
            "--json",
            "setup",
            "--dry-run",
            "--root",
            root.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let doc = json(&out);
    assert_eq!(phase(&doc, "doctor")["outcome"], "failed", "{doc}");
    assert!(
        phase(&doc, "doctor")["detail"]
            .as_str()
            .unwrap()
            .contains("docker"),
        "{doc}"
    );
    assert_eq!(tree(home.path()), before, "the dry run wrote something");
}

struct Service {
    docker: String,
    home: tempfile::TempDir,
    playbook: std::path::PathBuf,
    port: u16,
    _guard: ProjectGuard,
}

fn service() -> Option<Service> {
    let docker = docker_host(true)?;
    let image = test_image(&docker);
    let home = tempfile::tempdir().unwrap();
    let (playbook, port, project) = test_playbook(home.path(), &image);
    let guard = ProjectGuard {
        docker_host: docker.clone(),
        project,
    };
    Some(Service {
        docker,
        home,
        playbook,
        port,
        _guard: guard,
    })
}

impl Service {
    fn root(&self) -> std::path::PathBuf {
        self.home.path().join("comfyui")
    }

    fn setup(&self, extra: &[&str]) -> Output {
        let mut args = vec![
            "--json",
            "setup",
            "--playbook",
            self.playbook.to_str().unwrap(),
            "--gpu",
            "none",
        ];
        let root = self.root();
        args.extend(["--root", root.to_str().unwrap()]);
        // A one-file manifest: doctor's disk check sizes the chosen manifest, and the default
        // set's 14 GB would tie this test to the free space of the machine it runs on.
        let manifest = self.home.path().join("one-file.yaml");
        std::fs::write(
            &manifest,
            "name: one-file\nmodels:\n  - id: tiny\n    url: http://127.0.0.1:1/tiny.safetensors\n    dest: models/checkpoints/tiny.safetensors\n    size: 4\n    sha256: 88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589\n",
        )
        .unwrap();
        args.extend(["--manifest", manifest.to_str().unwrap()]);
        args.extend(extra);
        local(self.home.path(), &self.docker, &args)
    }

    fn containers(&self) -> String {
        stdout(&sh(&format!(
            "DOCKER_HOST='{}' docker ps -aq --filter label=com.docker.compose.project=lifeos-test-{}",
            self.docker, self.port
        )))
    }
}

/// README: "`--only` / `--skip` take phase names". Only `compose` runs: its files are written,
/// no container exists, nothing else is touched; then `--skip` of everything after `compose`.
#[test]
fn setup_only_and_skip_run_just_the_named_phases() {
    let Some(s) = service() else { return };
    let out = s.setup(&["--only", "compose"]);
    let doc = json(&out);
    assert!(out.status.success(), "{doc}\n{}", stderr(&out));
    for p in doc["phases"].as_array().unwrap() {
        let expected = if p["phase"] == "compose" {
            "changed"
        } else {
            "skipped"
        };
        assert_eq!(p["outcome"], expected, "{p}");
    }
    assert!(s.root().join("docker-compose.yml").is_file());
    assert!(s.containers().trim().is_empty(), "a container was started");
    assert!(!s.home.path().join("CONNECTION_INFO.txt").exists());

    std::fs::remove_file(s.root().join("docker-compose.yml")).unwrap();
    let out = s.setup(&["--skip", "compose,up,models,nodes,verify"]);
    let doc = json(&out);
    assert!(out.status.success(), "{doc}\n{}", stderr(&out));
    assert_eq!(phase(&doc, "doctor")["outcome"], "ok", "{doc}");
    assert_eq!(
        phase(&doc, "connection-info")["outcome"],
        "changed",
        "{doc}"
    );
    assert!(s.home.path().join("CONNECTION_INFO.txt").is_file());
    assert!(!s.root().join("docker-compose.yml").exists(), "compose ran");
    assert!(s.containers().trim().is_empty(), "a container was started");
}

/// README: the GPU service (NVIDIA reservation, `memlock -1`) is validated by the host's Compose
/// before it is written. The shipped RTX 4090 playbook as it is, GPU and all: the real
/// docker-compose must accept the file the tool wrote.
#[test]
fn the_gpu_service_with_unlimited_memlock_is_a_file_docker_compose_accepts() {
    let Some(docker) = docker_host(true) else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let root = home.path().join("comfyui");
    let out = local(
        home.path(),
        &docker,
        &[
            "compose",
            "--playbook",
            "rtx-4090",
            "--root",
            root.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let file = root.join("docker-compose.yml");
    let config = Command::new("docker-compose")
        .args(["-f", file.to_str().unwrap(), "config"])
        .env("DOCKER_HOST", &docker)
        .output()
        .unwrap();
    assert!(config.status.success(), "{}", stderr(&config));
    let doc: serde_yaml::Value = serde_yaml::from_slice(&config.stdout).unwrap();
    let svc = &doc["services"]["comfyui"];
    assert_eq!(
        svc["ulimits"]["memlock"],
        serde_yaml::Value::from(-1),
        "{svc:?}"
    );
    let devices = &svc["deploy"]["resources"]["reservations"]["devices"][0];
    assert_eq!(
        devices["driver"],
        serde_yaml::Value::from("nvidia"),
        "{svc:?}"
    );
}

/// README: "The host's own Compose validates the file before it is written". A playbook whose
/// healthcheck has an empty `test`, which Compose rejects: the command fails with Compose's own
/// reason and no docker-compose.yml is left, neither new nor half-written.
#[test]
fn a_file_compose_rejects_is_never_written() {
    let Some(s) = service() else { return };
    set_playbook_field(
        &s.playbook,
        "healthcheck",
        serde_yaml::from_str("test: []\ninterval: 1s").unwrap(),
    );
    let root = s.root();
    let out = local(
        s.home.path(),
        &s.docker,
        &[
            "compose",
            "--playbook",
            s.playbook.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
            "--gpu",
            "none",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).starts_with("error: "), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("\"test\" is an empty list"),
        "not Compose's reason: {}",
        stderr(&out)
    );
    assert!(
        !root.join("docker-compose.yml").exists(),
        "the rejected file was written"
    );
    let leftovers: Vec<_> = tree(s.home.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("docker-compose"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
