//! `doctor`'s Docker checks against real Docker engines (started by scripts/test.sh): one with a
//! runtime named `nvidia` registered, one without.

mod support;

use support::*;

fn local_doctor(docker_host: &str) -> serde_json::Value {
    let client = ClientHome::new();
    let gpu = tempfile::tempdir().unwrap();
    let path = format!(
        "{}:{}",
        fake_gpu_bin(gpu.path(), "rtx4090").display(),
        std::env::var("PATH").unwrap()
    );
    let out = client
        .lifeos()
        .env("DOCKER_HOST", docker_host)
        .env("PATH", path)
        .args(["doctor", "--json"])
        .output()
        .unwrap();
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
