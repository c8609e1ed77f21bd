//! `doctor`'s Docker checks against real Docker engines (started by scripts/test.sh): one with a
//! runtime named `nvidia` registered, one without.

mod support;

use support::*;

/// `doctor --json` and `extra` on this machine (an RTX 4090 by its `nvidia-smi`) against
/// `docker_host`.
fn run_local_doctor(docker_host: &str, extra: &[&str]) -> std::process::Output {
    let client = ClientHome::new();
    let gpu = tempfile::tempdir().unwrap();
    let path = format!(
        "{}:{}",
        fake_gpu_bin(gpu.path(), "rtx4090").display(),
        std::env::var("PATH").unwrap()
    );
    client
        .lifeos()
        .env("DOCKER_HOST", docker_host)
        .env("PATH", path)
        .args(["doctor", "--json"])
        .args(extra)
        .output()
        .unwrap()
}

fn local_doctor(docker_host: &str) -> serde_json::Value {
    let out = run_local_doctor(docker_host, &[]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", stderr(&out)))
}

fn status_of(doc: &serde_json::Value, name: &str) -> String {
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .map(|c| c["level"].as_str().unwrap().to_string())
        .unwrap()
}

#[test]
fn nvidia_runtime_present() {
    let Some(host) = docker_host(true) else {
        return;
    };
    let doc = local_doctor(&host);
    assert_eq!(doc["docker"]["reachable"], true);
    assert!(doc["docker"]["engine_version"].is_string());
    assert_eq!(doc["docker"]["nvidia_runtime"], true);
    assert_eq!(status_of(&doc, "nvidia_runtime"), "ok");
    assert_eq!(status_of(&doc, "docker"), "ok");
    assert!(doc["docker"]["compose"]["flavor"].is_string(), "{doc}");
}

#[test]
fn nvidia_runtime_absent_fails_with_a_hint() {
    let Some(host) = docker_host(false) else {
        return;
    };
    let doc = local_doctor(&host);
    assert_eq!(doc["docker"]["reachable"], true);
    assert_eq!(doc["docker"]["nvidia_runtime"], false);
    let check = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "nvidia_runtime")
        .unwrap();
    assert_eq!(check["status"], "failed");
    assert_eq!(check["level"], "fail");
    assert!(check["hint"]
        .as_str()
        .unwrap()
        .contains("nvidia-ctk runtime configure"));
}

#[test]
fn unreachable_daemon_is_reported() {
    let doc = local_doctor("unix:///nonexistent/docker.sock");
    assert_eq!(doc["docker"]["reachable"], false);
    assert_eq!(status_of(&doc, "docker"), "fail");
    assert_eq!(status_of(&doc, "nvidia_runtime"), "fail");
}

#[test]
fn gpu_smoke_runs_the_image_with_all_gpus_and_reports_dockers_reason() {
    let Some(host) = docker_host(true) else {
        return;
    };
    // A tag of its own, so the engine's events name this test's container only.
    let tag = format!("lifeos-test/gpu-smoke-{}:1", std::process::id());
    let d = format!("DOCKER_HOST='{host}' docker");
    sh(&format!("{d} tag {} {tag}", test_image(&host)));
    let since = stdout(&sh("date +%s")).trim().to_string();

    let out = run_local_doctor(&host, &["--gpu-smoke", &tag]);
    // `--until` a second ahead: the engine's timestamps have sub-second parts.
    let events = stdout(&sh(&format!(
        "{d} events --since {since} --until $(($(date +%s) + 1)) --filter type=container \
         --filter image={tag} --format '{{{{.Action}}}} {{{{.Actor.ID}}}}'"
    )));
    let created: Vec<&str> = events
        .lines()
        .filter_map(|l| l.strip_prefix("create "))
        .collect();
    let left: Vec<String> = created
        .iter()
        .map(|id| stdout(&sh(&format!("{d} ps -aq --filter id={id}"))))
        .filter(|out| !out.trim().is_empty())
        .collect();
    sh(&format!("{d} rmi {tag}"));

    // This engine has no GPU driver (no NVIDIA Container Toolkit hook): the real `docker run
    // --gpus all` fails, and doctor fails with Docker's own reason and the toolkit hint.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", stderr(&out)));
    let check = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "gpu_smoke")
        .unwrap_or_else(|| panic!("no gpu_smoke check: {doc}"));
    assert_eq!(check["status"], "failed", "{check}");
    assert_eq!(check["level"], "fail", "{check}");
    let detail = check["detail"].as_str().unwrap();
    assert!(
        detail.contains("run --rm --runtime=nvidia --gpus all")
            && detail.contains(&tag)
            && detail.contains("nvidia-smi")
            && detail.contains("could not select device driver"),
        "{detail}"
    );
    assert!(
        check["hint"].as_str().unwrap().contains("nvidia-ctk"),
        "{check}"
    );
    // The engine really created a container of that image, and `--rm` left none behind.
    assert_eq!(created.len(), 1, "events: {events:?}");
    assert!(left.is_empty(), "a container was left behind: {left:?}");
}
