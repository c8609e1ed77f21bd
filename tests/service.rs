//! `compose`, `up`, `status`, `down` against a real Docker engine, locally and over SSH. The
//! image is the test image (a mock ComfyUI API on 8188); no registry is reachable here.

mod support;

use std::path::Path;

use support::*;

struct Local {
    client: ClientHome,
    docker: String,
    dir: tempfile::TempDir,
    playbook: std::path::PathBuf,
    port: u16,
    _guard: ProjectGuard,
}

impl Local {
    fn new() -> Option<Local> {
        let docker = docker_host(true)?;
        let image = test_image(&docker);
        let dir = tempfile::tempdir().unwrap();
        let (playbook, port, project) = test_playbook(dir.path(), &image);
        let guard = ProjectGuard {
            docker_host: docker.clone(),
            project,
        };
        Some(Local {
            client: ClientHome::new(),
            docker,
            dir,
            playbook,
            port,
            _guard: guard,
        })
    }

    fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("comfy root")
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        let root = self.root();
        let mut cmd = self.client.lifeos();
        cmd.env("DOCKER_HOST", &self.docker).args(args);
        cmd.args([
            "--playbook",
            self.playbook.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
            "--gpu",
            "none",
        ]);
        cmd.output().unwrap()
    }
}

impl Local {
    /// `<id> <StartedAt>` of the project's one container.
    fn container(&self) -> String {
        let found = containers_of(&self.docker, &format!("lifeos-test-{}", self.port));
        assert_eq!(found.len(), 1, "{found:?}");
        found[0].clone()
    }

    /// Faults for the mock ComfyUI of the next `up` (tests/support/mock_comfyui.rs).
    fn mock_faults(&self, lines: &str) {
        std::fs::create_dir_all(self.root().join("user")).unwrap();
        std::fs::write(self.root().join("user/mock-comfyui.env"), lines).unwrap();
    }
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

#[test]
fn compose_writes_valid_files_then_is_idempotent_and_guards_changes() {
    let Some(t) = Local::new() else { return };
    let first = ok(&t.run(&["compose"]));
    assert!(
        first.contains("changed") && first.contains("created"),
        "{first}"
    );
    for folder in [
        "basedir",
        "workflows",
        "models",
        "output",
        "custom_nodes",
        "input",
        "user",
    ] {
        assert!(t.root().join(folder).is_dir(), "{folder}");
    }
    let compose = t.root().join("docker-compose.yml");
    // The host's own Compose accepts the file.
    sh(&format!(
        "DOCKER_HOST='{}' docker-compose -f '{}' config -q",
        t.docker,
        compose.display()
    ));
    let again = ok(&t.run(&["compose"]));
    assert!(!again.lines().any(|l| l.starts_with("changed")), "{again}");
    assert_eq!(
        again.lines().filter(|l| l.starts_with("ok")).count(),
        4,
        "{again}"
    );

    // A different playbook port: diff shown, nothing replaced without --yes (no TTY here).
    let before = std::fs::read_to_string(&compose).unwrap();
    let text = std::fs::read_to_string(&t.playbook).unwrap();
    std::fs::write(
        &t.playbook,
        text.replace(&format!("port: {}", t.port), "port: 18999"),
    )
    .unwrap();
    let refused = t.run(&["compose"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("--yes"), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("+    - 127.0.0.1:18999:8188"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(std::fs::read_to_string(&compose).unwrap(), before);

    let plan = ok(&t.run(&["--dry-run", "compose"]));
    assert!(
        plan.contains("would change") && plan.contains("-    - 127.0.0.1:"),
        "{plan}"
    );
    assert_eq!(std::fs::read_to_string(&compose).unwrap(), before);

    let replaced = ok(&t.run(&["--yes", "compose"]));
    assert!(replaced.contains("backup at"), "{replaced}");
    assert!(std::fs::read_to_string(&compose)
        .unwrap()
        .contains("127.0.0.1:18999:8188"));
    let backups: Vec<_> = std::fs::read_dir(t.root())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("docker-compose.yml.bak-")
        })
        .collect();
    assert_eq!(backups.len(), 1);
    assert_eq!(std::fs::read_to_string(backups[0].path()).unwrap(), before);
}

#[test]
fn dry_run_changes_nothing() {
    let Some(t) = Local::new() else { return };
    let plan = ok(&t.run(&["--dry-run", "--json", "up"]));
    let doc: serde_json::Value = serde_json::from_str(&plan).unwrap();
    assert_eq!(doc["dry_run"], true);
    let steps = doc["steps"].as_array().unwrap();
    assert!(
        steps
            .iter()
            .all(|s| s["outcome"] == "would_change" || s["outcome"] == "ok"),
        "{doc}"
    );
    assert!(steps
        .iter()
        .any(|s| s["name"] == "service comfyui" && s["outcome"] == "would_change"));
    assert!(!t.root().exists(), "dry-run created the root");
}

#[test]
fn up_status_down_locally() {
    let Some(t) = Local::new() else { return };
    let up = ok(&t.run(&["up"]));
    assert!(
        up.contains("health") && up.contains("ComfyUI 0.3.60-mock"),
        "{up}"
    );
    let stats = http_get(&format!("http://127.0.0.1:{}/system_stats", t.port))
        .expect("published port answers");
    assert!(stats.contains("\"devices\""));

    // A second `up` changes nothing and keeps the container: same ID, same start time, and
    // the files it wrote keep their mtimes.
    let container = t.container();
    let files = file_states(&t.root());
    let again = ok(&t.run(&["--json", "up"]));
    let doc: serde_json::Value = serde_json::from_str(&again).unwrap();
    for step in doc["steps"].as_array().unwrap() {
        assert_eq!(step["outcome"], "ok", "{step}");
    }
    assert_eq!(
        t.container(),
        container,
        "the container was recreated or restarted"
    );
    assert_eq!(
        file_states(&t.root()),
        files,
        "files under the root changed"
    );

    let url = format!("http://127.0.0.1:{}", t.port);
    let status = t
        .client
        .lifeos()
        .args(["status", "--url", &url, "--json"])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_str(&ok(&status)).unwrap();
    assert_eq!(rows[0]["reachable"], true);
    assert_eq!(rows[0]["comfyui_version"], "0.3.60-mock");
    assert_eq!(rows[0]["queue_running"], 0);
    assert_eq!(rows[0]["memory_total_bytes"], 25262096384u64);

    let down = ok(&t.run(&["down"]));
    assert!(down.contains("changed"), "{down}");
    assert!(http_get(&format!("{url}/system_stats")).is_none());
    let again = ok(&t.run(&["down"]));
    assert!(again.contains("not running"), "{again}");
    // Data folders stay.
    assert!(t.root().join("models").is_dir());
}

#[test]
fn up_refuses_a_gpu_service_without_nvidia_runtime() {
    let Some(plain) = docker_host(false) else {
        return;
    };
    let client = ClientHome::new();
    let dir = tempfile::tempdir().unwrap();
    let (playbook, _, _) = test_playbook(dir.path(), "unused:tag");
    let out = client
        .lifeos()
        .env("DOCKER_HOST", &plain)
        .args([
            "up",
            "--playbook",
            playbook.to_str().unwrap(),
            "--root",
            dir.path().join("r").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("no NVIDIA runtime") && err.contains("--gpu none"),
        "{err}"
    );
    assert!(!dir.path().join("r").exists());

    // The plan goes on: the files and the start are checked and reported blocked, exit 1.
    let out = client
        .lifeos()
        .env("DOCKER_HOST", &plain)
        .args(["--dry-run", "up", "--playbook", playbook.to_str().unwrap()])
        .args(["--root", dir.path().join("r").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let plan = stdout(&out);
    let steps: Vec<&str> = plan
        .lines()
        .filter(|l| !l.starts_with([' ', '+', '-', '@']))
        .collect();
    assert_eq!(steps.len(), 6, "{plan}");
    assert!(steps.iter().all(|l| l.starts_with("blocked ")), "{plan}");
    assert!(plan.contains("image unused:tag: would build"), "{plan}");
    assert!(plan.contains("service comfyui: would start"), "{plan}");
    assert!(
        stderr(&out).contains("no NVIDIA runtime"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("r").exists());
}

#[test]
fn status_reports_unreachable_hosts_and_queries_an_inventory() {
    let client = ClientHome::new();
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("hosts.yaml");
    let port = free_port();
    std::fs::write(&inventory, format!("- name: rtx\n  url: http://127.0.0.1:{port}\n- name: spark\n  url: http://127.0.0.1:{}\n", free_port())).unwrap();
    let out = client
        .lifeos()
        .args(["status", "--inventory", inventory.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let table = stdout(&out);
    assert!(
        table.contains("rtx") && table.contains("spark") && table.contains("unreachable"),
        "{table}"
    );
}

#[test]
fn up_status_down_over_ssh() {
    let Some(docker) = docker_host(true) else {
        return;
    };
    let image = test_image(&docker);
    let client = ClientHome::new();
    let Some(server) = gpu_host(&client, "rtx4090", "rtx", &docker) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (playbook, port, project) = test_playbook(dir.path(), &image);
    let _guard = ProjectGuard {
        docker_host: docker,
        project,
    };
    let run = |args: &[&str]| {
        let mut cmd = client.lifeos();
        cmd.args(["--host", "rtx"]).args(args).args([
            "--playbook",
            playbook.to_str().unwrap(),
            "--gpu",
            "none",
        ]);
        cmd.output().unwrap()
    };
    let up = ok(&run(&["up"]));
    assert!(up.contains("ComfyUI 0.3.60-mock"), "{up}");
    // `~/comfyui` is the remote user's home.
    let root = server.home().join("comfyui");
    assert!(Path::new(&root).join("docker-compose.yml").is_file());
    let status = client
        .lifeos()
        .args([
            "--host",
            "rtx",
            "status",
            "--port",
            &port.to_string(),
            "--json",
        ])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_str(&ok(&status)).unwrap();
    assert_eq!(rows[0]["host"], "rtx");
    assert_eq!(rows[0]["reachable"], true);
    let again = ok(&run(&["up"]));
    assert!(!again.lines().any(|l| l.starts_with("changed")), "{again}");
    ok(&run(&["down"]));
    assert!(http_get(&format!("http://127.0.0.1:{port}/system_stats")).is_none());
}

#[test]
fn an_image_built_from_another_dockerfile_is_rebuilt() {
    let Some(docker) = docker_host(true) else {
        return;
    };
    let base = test_image(&docker);
    // The test image, labelled as if lifeos-spark had built it from another Dockerfile.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM {base}\nLABEL org.lifeos-spark.dockerfile-sha256=0000\n"),
    )
    .unwrap();
    let stale = "lifeos-test/stale:1";
    sh(&format!(
        "DOCKER_HOST='{docker}' docker build -q -t {stale} '{}'",
        dir.path().display()
    ));
    let (playbook, _, _) = test_playbook(dir.path(), stale);
    let out = ClientHome::new()
        .lifeos()
        .env("DOCKER_HOST", &docker)
        .args([
            "--dry-run",
            "--json",
            "up",
            "--gpu",
            "none",
            "--playbook",
            playbook.to_str().unwrap(),
        ])
        .args(["--root", dir.path().join("root").to_str().unwrap()])
        .output()
        .unwrap();
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", stderr(&out)));
    let image = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == format!("image {stale}"))
        .unwrap();
    assert_eq!(image["outcome"], "would_change", "{image}");
    assert!(
        image["detail"]
            .as_str()
            .unwrap()
            .contains("the Dockerfile changed"),
        "{image}"
    );
}

/// ComfyUI that listens late, then answers 500 twice and broken JSON twice: `up` keeps asking
/// until it gets real stats. The mock's log shows the four fault answers went to the tool.
#[test]
fn up_waits_through_a_slow_start_server_errors_and_bad_json() {
    let Some(t) = Local::new() else { return };
    t.mock_faults("START_DELAY=3\nFAIL_FIRST=2\nBAD_JSON_FIRST=2\n");
    let up = ok(&t.run(&["up"]));
    assert!(up.contains("ComfyUI 0.3.60-mock"), "{up}");
    let logs = stdout(&sh(&format!(
        "DOCKER_HOST='{}' docker logs $(DOCKER_HOST='{}' docker ps -q --filter label=com.docker.compose.project=lifeos-test-{})",
        t.docker, t.docker, t.port
    )));
    for line in [
        "mock: starting in 3s (START_DELAY)",
        "mock: /system_stats request 2 answered 500 Internal Server Error (fault)",
        "mock: /system_stats request 4 answered 200 OK (fault)",
    ] {
        assert!(
            logs.contains(line),
            "`{line}` not in the mock's log:\n{logs}"
        );
    }
    assert!(!logs.contains("request 5 answered"), "{logs}");
}

/// ComfyUI that never answers well: `up` gives up after the playbook's `start_timeout` and shows
/// the container's last log lines (the mock's own lines about the 503s it sent).
#[test]
fn up_times_out_showing_the_container_log() {
    let Some(t) = Local::new() else { return };
    set_playbook_field(&t.playbook, "start_timeout", 4.into());
    t.mock_faults("STATUS=503\n");
    let started = std::time::Instant::now();
    let out = t.run(&["up"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        started.elapsed().as_secs() >= 4,
        "gave up before the timeout"
    );
    let err = stderr(&out);
    let url = format!("http://127.0.0.1:{}", t.port);
    assert!(
        err.contains(&format!(
            "ComfyUI did not answer at {url} within 4s; its last log lines:"
        )),
        "{err}"
    );
    assert!(
        err.contains("answered 503 Service Unavailable (fault)"),
        "the container's log is not shown:\n{err}"
    );
    assert!(err.contains("hint: "), "{err}");
}
