//! `nodes install | list | verify` with real git (local bare repositories stand in for GitHub),
//! locally and over SSH, and against the test ComfyUI container.

mod support;

use std::path::{Path, PathBuf};

use support::*;

/// A bare repository with two commits; returns (url, older, newer).
fn bare_repo(
    dir: &Path,
    name: &str,
    first: Option<&str>,
    second: &str,
) -> (String, String, String) {
    let work = dir.join(format!("{name}-work"));
    let bare = dir.join(format!("{name}.git"));
    let git = |args: &str| {
        stdout(&sh(&format!(
            "cd '{}' && git -c user.name=t -c user.email=t@t -c init.defaultBranch=main {args}",
            work.display()
        )))
    };
    std::fs::create_dir_all(&work).unwrap();
    git("init -q");
    std::fs::write(work.join("__init__.py"), "NODE_CLASS_MAPPINGS = {}\n").unwrap();
    if let Some(classes) = first {
        std::fs::write(work.join("NODE_CLASSES"), classes).unwrap();
    }
    git("add -A && git -c user.name=t -c user.email=t@t commit -qm one");
    let older = git("rev-parse HEAD").trim().to_string();
    std::fs::write(work.join("NODE_CLASSES"), second).unwrap();
    git("add -A && git -c user.name=t -c user.email=t@t commit -qm two");
    let newer = git("rev-parse HEAD").trim().to_string();
    sh(&format!(
        "git clone -q --bare '{}' '{}'",
        work.display(),
        bare.display()
    ));
    (bare.to_str().unwrap().to_string(), older, newer)
}

struct Nodes {
    dir: tempfile::TempDir,
    list: PathBuf,
    a: (String, String, String),
}

/// NodeA proves A1 and A2 (both in its older commit); NodeB has no class list at its pinned
/// commit, so the mock ComfyUI reports an import failure for it.
fn nodes() -> Nodes {
    let dir = tempfile::tempdir().unwrap();
    let a = bare_repo(dir.path(), "NodeA", Some("A1\nA2\n"), "A1\nA2\nA3\n");
    let b = bare_repo(dir.path(), "NodeB", None, "B1\n");
    let list = dir.path().join("nodes.yaml");
    std::fs::write(
        &list,
        format!(
            "nodes:\n  - id: NodeA\n    repo: {}\n    commit: {}\n    proves: [A1, A2]\n  - id: NodeB\n    repo: {}\n    commit: {}\n    proves: [B1]\n",
            a.0, a.1, b.0, b.1
        ),
    )
    .unwrap();
    Nodes { dir, list, a }
}

fn head(dir: &Path) -> String {
    stdout(&sh(&format!("git -C '{}' rev-parse HEAD", dir.display())))
        .trim()
        .to_string()
}

#[test]
fn git_part_clones_pins_moves_and_respects_local_changes() {
    let n = nodes();
    let client = ClientHome::new();
    let root = n.dir.path().join("root");
    let run = |extra: &[&str]| {
        let mut cmd = client.lifeos();
        cmd.args([
            "nodes",
            "install",
            "--no-deps",
            "--playbook",
            "rtx-4090",
            "--root",
            root.to_str().unwrap(),
        ])
        .args(["--nodes", n.list.to_str().unwrap()])
        .args(extra);
        cmd.output().unwrap()
    };
    let plan = run(&["--dry-run"]);
    assert!(
        stdout(&plan).contains("would clone"),
        "{}{}",
        stdout(&plan),
        stderr(&plan)
    );
    assert!(!root.join("custom_nodes/NodeA").exists());

    let first = run(&[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let node_a = root.join("custom_nodes/NodeA");
    assert_eq!(head(&node_a), n.a.1, "pinned to the older commit");
    let clone_state = file_states(&root.join("custom_nodes"));
    let again = run(&[]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(
        file_states(&root.join("custom_nodes")),
        clone_state,
        "a re-run touched the clones"
    );

    // A clone at another commit is fetched and moved.
    sh(&format!(
        "git -C '{}' checkout -q --detach {}",
        node_a.display(),
        n.a.2
    ));
    let moved = run(&[]);
    assert!(moved.status.success(), "{}", stderr(&moved));
    assert!(stdout(&moved).contains("moved from"), "{}", stdout(&moved));
    assert_eq!(head(&node_a), n.a.1);

    // Local changes: left alone with a warning, unless --force.
    sh(&format!(
        "git -C '{}' checkout -q --detach {}",
        node_a.display(),
        n.a.2
    ));
    std::fs::write(node_a.join("NODE_CLASSES"), "edited by hand\n").unwrap();
    let kept = run(&[]);
    assert!(kept.status.success(), "{}", stderr(&kept));
    assert_eq!(
        std::fs::read_to_string(node_a.join("NODE_CLASSES")).unwrap(),
        "edited by hand\n"
    );
    assert!(
        stderr(&kept).contains("has local changes"),
        "{}",
        stderr(&kept)
    );
    assert!(stdout(&kept).contains("skipped"));
    assert_eq!(head(&node_a), n.a.2);
    let list = client
        .lifeos()
        .args([
            "--json",
            "nodes",
            "list",
            "--playbook",
            "rtx-4090",
            "--root",
            root.to_str().unwrap(),
            "--nodes",
            n.list.to_str().unwrap(),
        ])
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        .output()
        .unwrap();
    assert!(list.status.success(), "{}", stderr(&list));
    let rows: serde_json::Value =
        serde_json::from_slice(&list.stdout).unwrap_or_else(|_| panic!("{}", stderr(&list)));
    assert_eq!(rows[0]["dirty"], true);
    assert_eq!(rows[0]["actual"], n.a.2.as_str());
    assert_eq!(rows[0]["requirements_satisfied"], serde_json::Value::Null);
    let forced = run(&["--force"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert_eq!(head(&node_a), n.a.1);
    assert_eq!(
        std::fs::read_to_string(node_a.join("NODE_CLASSES")).unwrap(),
        "A1\nA2\n",
        "--force discards the local edit"
    );
}

#[test]
fn git_part_and_list_over_ssh_need_no_gpu() {
    let n = nodes();
    let client = ClientHome::new();
    // No `nvidia-smi` on this host, and no Docker daemon: the git part and the listing need
    // neither.
    let Some(server) = SshServer::start(SshServerConfig {
        gpu_profile: None,
        docker_host: Some("unix:///nonexistent/lifeos-test/docker.sock".into()),
        authorized_keys: vec![client.public_key()],
    }) else {
        return;
    };
    client.add_alias("bare", &server);
    client.trust(&server);
    let nodes_cmd = |args: &[&str]| {
        client
            .lifeos()
            .args(["--host", "bare", "nodes"])
            .args(args)
            .args(["--nodes", n.list.to_str().unwrap()])
            .output()
            .unwrap()
    };
    // With the requirements: the plan lists the clones, and pip blocked (no Docker), exit 1.
    let plan = nodes_cmd(&["install", "--dry-run"]);
    assert_eq!(plan.status.code(), Some(1), "{}", stderr(&plan));
    let text = stdout(&plan);
    assert!(text.contains("NodeA: would clone"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("blocked") && l.contains("pip: would install")),
        "{text}"
    );
    assert!(!server.home().join("comfyui").exists());
    let out = nodes_cmd(&["install", "--no-deps"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The default playbook's root, `~/comfyui`, is the remote home's.
    let node_a = server.home().join("comfyui/custom_nodes/NodeA");
    assert_eq!(head(&node_a), n.a.1);
    let list = client
        .lifeos()
        .args(["--host", "bare", "--json", "nodes", "list"])
        .args(["--nodes", n.list.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(list.status.success(), "{}", stderr(&list));
    let rows = json(&list);
    assert_eq!(rows[0]["actual"], n.a.1.as_str(), "{rows}");
    assert!(rows[1]["actual"].is_string(), "NodeB cloned too: {rows}");
}

#[test]
fn install_restarts_comfyui_and_verify_reports_which_nodes_loaded() {
    let Some(docker) = docker_host(true) else {
        return;
    };
    let image = test_image(&docker);
    let n = nodes();
    let client = ClientHome::new();
    let (playbook, port, project) = test_playbook(n.dir.path(), &image);
    let _guard = ProjectGuard {
        docker_host: docker.clone(),
        project,
    };
    let root = n.dir.path().join("root");
    let run = |args: &[&str]| {
        let mut cmd = client.lifeos();
        cmd.env("DOCKER_HOST", &docker).args(args).args([
            "--playbook",
            playbook.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
            "--gpu",
            "none",
        ]);
        cmd.output().unwrap()
    };
    let up = run(&["up"]);
    assert!(up.status.success(), "{}", stderr(&up));
    let nodes_arg = ["--nodes", n.list.to_str().unwrap()];
    let before = run(&[&["nodes", "verify"][..], &nodes_arg].concat());
    assert_eq!(before.status.code(), Some(1), "nothing installed yet");

    let install = run(&[&["nodes", "install"][..], &nodes_arg].concat());
    let text = stdout(&install);
    assert!(install.status.success(), "{text}{}", stderr(&install));
    assert!(
        text.contains("restart") && text.contains("no requirements"),
        "{text}"
    );

    let verify = run(&[&["--json", "nodes", "verify"][..], &nodes_arg].concat());
    assert_eq!(verify.status.code(), Some(1));
    let proofs: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(proofs[0]["id"], "NodeA");
    assert_eq!(proofs[0]["loaded"], true);
    assert_eq!(proofs[0]["found"], serde_json::json!(["A1", "A2"]));
    assert_eq!(proofs[1]["loaded"], false);
    assert_eq!(proofs[1]["missing"], serde_json::json!(["B1"]));
    let log = proofs[1]["log"].to_string();
    assert!(
        log.contains("IMPORT FAILED") && log.contains("NodeB"),
        "{log}"
    );

    // Nothing changed: no restart (the container's ID and start time say so, not the output).
    let project = format!("lifeos-test-{port}");
    let before = containers_of(&docker, &project);
    assert_eq!(before.len(), 1, "{before:?}");
    let again = run(&[&["nodes", "install"][..], &nodes_arg].concat());
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(
        containers_of(&docker, &project),
        before,
        "ComfyUI was restarted"
    );
    assert!(http_get(&format!("http://127.0.0.1:{port}/system_stats")).is_some());
}
