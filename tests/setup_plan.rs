//! A dry run plans every phase, even on a host that is not ready: `setup --dry-run` against a
//! real OpenSSH server with no `nvidia-smi` and a Docker socket that does not exist lists what
//! each phase would do, names the doctor checks that would stop a real run, exits 1 and changes
//! nothing; on a ready host (fake RTX 4090 `nvidia-smi`, the private Docker daemon) it exits 0.
//! `compose` renders and diffs without a daemon (the host's Compose still validates).

mod support;

use std::path::Path;

use serde_json::Value;
use support::*;

/// A Docker socket no daemon listens on: the host has the `docker` client and Compose, no
/// engine.
const NO_DAEMON: &str = "unix:///nonexistent/lifeos-test/docker.sock";

/// A one-file manifest (nothing to download from the internet in a plan, little disk needed).
fn small_manifest(dir: &Path) -> String {
    let path = dir.join("manifest.yaml");
    std::fs::write(
        &path,
        format!(
            "name: small\nmodels:\n  - id: small\n    url: http://127.0.0.1:1/small\n    \
             dest: models/checkpoints/small.safetensors\n    size: 1000\n    sha256: {}\n",
            "ab".repeat(32)
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

/// An SSH host `alias` with no GPU, whose sessions point Docker at a socket nothing serves.
fn unprepared_host(client: &ClientHome, alias: &str) -> Option<SshServer> {
    let server = SshServer::start(SshServerConfig {
        gpu_profile: None,
        docker_host: Some(NO_DAEMON.into()),
        authorized_keys: vec![client.public_key()],
    })?;
    client.add_alias(alias, &server);
    client.trust(&server);
    Some(server)
}

fn steps(phase: &Value) -> &Vec<Value> {
    phase["steps"].as_array().unwrap()
}

fn blockers(doc: &Value) -> Vec<&str> {
    (doc["blockers"].as_array().unwrap().iter())
        .map(|b| b["check"].as_str().unwrap())
        .collect()
}

/// The operator, an unprepared host `bare`, and a small manifest.
struct Bare {
    client: ClientHome,
    server: SshServer,
    manifest: String,
    _dir: tempfile::TempDir,
}

fn bare() -> Option<Bare> {
    let client = ClientHome::new();
    let server = unprepared_host(&client, "bare")?;
    let dir = tempfile::tempdir().unwrap();
    Some(Bare {
        manifest: small_manifest(dir.path()),
        client,
        server,
        _dir: dir,
    })
}

#[test]
fn dry_run_on_a_host_without_gpu_or_docker_plans_every_phase_and_names_the_blockers() {
    let Some(b) = bare() else {
        return;
    };
    let (client, server, manifest) = (&b.client, &b.server, &b.manifest);
    let home = server.home();
    let before = file_states(&home);
    let plan = |json: bool| {
        let mut cmd = client.lifeos();
        cmd.args(["--host", "bare", "--dry-run"]);
        if json {
            cmd.arg("--json");
        }
        cmd.args(["setup", "--manifest", manifest])
            .output()
            .unwrap()
    };

    let out = plan(true);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let doc = json(&out);
    let names = blockers(&doc);
    assert!(names.contains(&"gpu") && names.contains(&"docker"), "{doc}");
    assert!(
        doc["blockers"][0]["hint"].as_str().is_some(),
        "each blocker has its hint: {doc}"
    );
    assert_eq!(phase(&doc, "doctor")["outcome"], "failed", "{doc}");
    // Every phase after doctor ran its checks: none was skipped for doctor's failure.
    for name in ["compose", "up", "models", "nodes", "connection-info"] {
        let p = phase(&doc, name);
        assert_eq!(p["outcome"], "blocked", "{name}: {p}");
        let blocked: Vec<&Value> = (steps(p).iter())
            .filter(|s| s["outcome"] == "blocked")
            .collect();
        assert!(!blocked.is_empty(), "{name}: {p}");
        for s in blocked {
            let detail = s["detail"].as_str().unwrap();
            // pip names its own blocker: it needs the container, so Docker itself.
            let blocker = match s["name"] == "pip" {
                true => "blocked: Docker on bare is not usable",
                false => "blocked: doctor `gpu`",
            };
            assert!(
                detail.contains("would") && detail.contains(blocker),
                "{name}: {detail}"
            );
        }
    }
    let compose = phase(&doc, "compose");
    let file = (steps(compose).iter())
        .find(|s| {
            s["name"]
                .as_str()
                .unwrap()
                .ends_with("comfyui/docker-compose.yml")
        })
        .unwrap_or_else(|| panic!("{compose}"));
    assert!(
        file["diff"]
            .as_str()
            .unwrap()
            .contains("+    image: lifeos/comfyui:generic-nvidia"),
        "{file}"
    );
    let up = phase(&doc, "up");
    assert!(
        steps(up)[0]["detail"]
            .as_str()
            .unwrap()
            .contains("would build from"),
        "{up}"
    );
    let models = phase(&doc, "models");
    assert_eq!(steps(models)[0]["name"], "model small", "{models}");
    // Verify cannot ask a ComfyUI that is not there; it says so instead of failing.
    assert_eq!(phase(&doc, "verify")["outcome"], "skipped", "{doc}");

    // The human plan: the blockers on top, then every phase, then the recap.
    let out = plan(false);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("blocked: a real run stops at doctor (gpu, driver, docker"),
        "{text}"
    );
    for name in ["compose", "up", "models", "nodes", "connection-info"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(name) && l.contains("blocked")),
            "{name}: {text}"
        );
    }
    assert!(text.contains(" failed=1 blocked=5 "), "{text}");
    assert!(
        text.contains("blocked by: gpu, driver, docker, nvidia_runtime"),
        "{text}"
    );

    // A plan changes nothing: the remote home (the deployment root's parent, where
    // CONNECTION_INFO.txt would go) holds exactly what it held.
    assert_eq!(file_states(&home), before);
    assert!(!home.join("comfyui").exists());
}

#[test]
fn dry_run_with_gpu_none_is_blocked_by_docker_alone() {
    let Some(b) = bare() else {
        return;
    };
    let (client, server, manifest) = (&b.client, &b.server, &b.manifest);
    let before = file_states(&server.home());
    let out = client
        .lifeos()
        .args([
            "--host",
            "bare",
            "--dry-run",
            "--json",
            "setup",
            "--gpu",
            "none",
        ])
        .args(["--manifest", manifest])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let doc = json(&out);
    assert_eq!(blockers(&doc), ["docker"], "{doc}");
    let up = phase(&doc, "up");
    assert_eq!(up["outcome"], "blocked", "{up}");
    assert!(
        up["detail"]
            .as_str()
            .unwrap()
            .contains("blocked: doctor `docker`"),
        "{up}"
    );
    assert_eq!(file_states(&server.home()), before);
}

#[test]
fn dry_run_on_a_ready_host_exits_0_and_changes_nothing() {
    let Some(docker) = docker_host(true) else {
        return;
    };
    let client = ClientHome::new();
    let Some(server) = gpu_host(&client, "rtx4090", "rtx", &docker) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let manifest = small_manifest(dir.path());
    // Images no daemon has: doctor runs no GPU smoke test (it needs the image on the host).
    let (playbook, port, project) = test_playbook(dir.path(), "lifeos-test/absent:plan");
    set_playbook_field(
        &playbook,
        "base_image",
        "lifeos-test/absent-base:plan".into(),
    );
    let before = file_states(&server.home());
    let out = client
        .lifeos()
        .args(["--host", "rtx", "--dry-run", "--json", "setup"])
        .args(["--playbook", playbook.to_str().unwrap()])
        .args(["--manifest", &manifest])
        .output()
        .unwrap();
    let doc = json(&out);
    assert_eq!(out.status.code(), Some(0), "{doc}\n{}", stderr(&out));
    assert_eq!(doc["blockers"], serde_json::json!([]), "{doc}");
    assert_eq!(phase(&doc, "doctor")["outcome"], "ok", "{doc}");
    for name in ["compose", "up", "models", "connection-info"] {
        assert_eq!(
            phase(&doc, name)["outcome"],
            "would_change",
            "{name}: {doc}"
        );
    }
    assert!(
        !doc.to_string().contains("\"blocked\""),
        "nothing is blocked on a ready host: {doc}"
    );
    assert!(
        stderr(&out).lines().all(|l| !l.starts_with("warning:")),
        "Compose validated the file: {}",
        stderr(&out)
    );
    assert_eq!(file_states(&server.home()), before);
    assert!(containers_of(&docker, &project).is_empty());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing was started"
    );
}

#[test]
fn compose_renders_and_diffs_without_a_docker_daemon() {
    let client = ClientHome::new();
    let Some(server) = unprepared_host(&client, "bare") else {
        return;
    };
    let root = server.home().join("comfyui");
    let compose = |extra: &[&str]| {
        client
            .lifeos()
            .args(["--host", "bare"])
            .args(extra)
            .args(["compose", "--playbook", "dgx_spark"])
            .output()
            .unwrap()
    };
    let plan = compose(&["--dry-run"]);
    assert_eq!(plan.status.code(), Some(0), "{}", stderr(&plan));
    let text = stdout(&plan);
    assert!(
        text.contains("+    image: lifeos/comfyui:dgx-spark"),
        "{text}"
    );
    assert!(text.contains("would create"), "{text}");
    assert!(!root.exists(), "a plan writes nothing");

    // The real thing writes the files, validated by the host's Compose, with no daemon.
    let out = compose(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let written = std::fs::read_to_string(root.join("docker-compose.yml")).unwrap();
    assert!(
        written.contains("image: lifeos/comfyui:dgx-spark"),
        "{written}"
    );
    assert!(
        !stderr(&out).contains("not validated"),
        "the host has Compose: {}",
        stderr(&out)
    );
    assert!(root.join("Dockerfile").is_file());
    // No candidate file is left behind (the file is validated from stdin).
    let names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n != ".dockerignore")
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn compose_on_a_host_without_compose_warns_and_still_plans() {
    // The local host with a PATH that has `sh` and `uname` and nothing else: no `docker`, no
    // `docker-compose`.
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["sh", "uname"] {
        let real = stdout(&sh(&format!("command -v {tool}")));
        std::os::unix::fs::symlink(real.trim(), bin.join(tool)).unwrap();
    }
    let root = dir.path().join("root");
    let out = ClientHome::new()
        .lifeos()
        .env("PATH", &bin)
        .args(["--dry-run", "compose", "--playbook", "rtx-4090", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("warning: docker-compose.yml not validated: local has no `docker compose`"),
        "{err}"
    );
    assert!(
        stdout(&out).contains("+    image: lifeos/comfyui:rtx-4090"),
        "{}",
        stdout(&out)
    );
    assert!(!root.exists(), "a plan writes nothing");
}
