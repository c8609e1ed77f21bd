//! Setup's doctor phase checks what the chosen playbook will use: its port, the disk its
//! manifest needs, and — when the image is on the host — a GPU smoke test whose failure names
//! the NVIDIA Container Toolkit fix. Against a real OpenSSH server posing as an RTX 4090 host
//! (fake nvidia-smi) and the real Docker engine (its `nvidia` runtime is runc: no GPU device
//! driver, so `--gpus all` fails there exactly as it does without the toolkit).

mod support;

use serde_json::Value;
use support::*;

fn check<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["phases"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {doc}"))
}

#[test]
fn doctor_phase_uses_the_playbook_port_manifest_size_and_smoke_tests_the_image() {
    let Some(docker) = docker_host(true) else {
        return;
    };
    let image = test_image(&docker);
    let client = ClientHome::new();
    let Some(_server) = gpu_host(&client, "rtx4090", "rtx", &docker) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (playbook, port, _project) = test_playbook(dir.path(), &image);
    let manifest = dir.path().join("manifest.yaml");
    let size: u64 = 5_000_000_000;
    std::fs::write(
        &manifest,
        format!("name: big\nmodels:\n  - id: big\n    url: http://127.0.0.1:1/big\n    dest: models/checkpoints/big.safetensors\n    size: {size}\n    sha256: {}\n", "ab".repeat(32)),
    )
    .unwrap();
    let setup = |gpu: &str| {
        client
            .lifeos()
            .args(["--host", "rtx", "--json", "setup", "--only", "doctor"])
            .args(["--playbook", playbook.to_str().unwrap(), "--gpu", gpu])
            .args(["--manifest", manifest.to_str().unwrap()])
            .output()
            .unwrap()
    };

    // `--gpu none`: no smoke test; port and disk from the playbook and the manifest.
    let out = setup("none");
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&out), stderr(&out)));
    assert!(out.status.success(), "{doc}\n{}", stderr(&out));
    let port_detail = check(&doc, "port")["detail"].as_str().unwrap();
    assert!(
        port_detail.contains(&format!("port {port} ")),
        "{port_detail}"
    );
    let disk = check(&doc, "disk")["detail"].as_str().unwrap();
    let needed = lifeos_spark::units::size(size);
    assert!(disk.contains(&format!("need {needed}")), "{disk}");
    assert!(!doc.to_string().contains("gpu_smoke"), "{doc}");

    // The GPU service: the image is on the host, so `nvidia-smi` runs in it with
    // `--runtime=nvidia --gpus all`; Docker cannot give it a GPU, and the error says how to fix.
    let out = setup("all");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let doctor = &doc["phases"][0];
    assert_eq!(doctor["outcome"], "failed", "{doctor}");
    let detail = doctor["detail"].as_str().unwrap();
    assert!(
        detail.contains("gpu_smoke")
            && detail.contains(&image)
            && detail.contains("could not select device driver"),
        "{detail}"
    );
    let err = stderr(&out);
    assert!(
        err.contains("nvidia-ctk runtime configure --runtime=docker"),
        "{err}"
    );
}
