//! `inspect` on a container whose ComfyUI command line moves its port (`--port 8190`, published
//! on another host port) and names an extra model paths config (`--extra-model-paths-config`)
//! in a bind mount: the host port and every extra folder that exists are found on the host.
//! A real OpenSSH server poses as the RTX PC; the real Docker engine holds the (stopped)
//! container, created from the test image.

mod support;

use std::path::Path;

use serde_json::Value;
use support::*;

fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

#[test]
fn a_containers_port_flag_and_extra_model_paths_config_are_read() {
    let Some(docker) = docker_host(true) else {
        return;
    };
    let image = test_image(&docker);
    let client = ClientHome::new();
    let Some(rtx) = gpu_host(&client, "rtx4090", "rtx", &docker) else {
        return;
    };
    let home = rtx.home();
    std::fs::create_dir_all(home.join("basedir/models/checkpoints")).unwrap();
    write(&home.join("data/loras/mine.safetensors"), b"lora");
    std::fs::create_dir_all(home.join("data/ckpts")).unwrap();
    // ComfyUI's format: a base path, one path, a block of paths (one missing on the host).
    write(
        &home.join("cfg/extra.yaml"),
        b"mine:\n  base_path: /data\n  loras: loras\n  checkpoints: |\n    ckpts\n    gone\n",
    );
    let host_port = free_port();
    let project = format!("lifeos-test-inspect-{host_port}");
    let _guard = ProjectGuard {
        docker_host: docker.clone(),
        project: project.clone(),
    };
    let name = project.clone();
    let mount = |from: &str, to: &str| format!("-v '{}:{to}'", home.join(from).display());
    let created = sh(&format!(
        "DOCKER_HOST='{docker}' docker create --name {name} --label com.docker.compose.project={project} \
         -p 127.0.0.1:{host_port}:8190 {} {} {} {image} /mock-comfyui --listen 0.0.0.0 \
         --base-directory /basedir --port 8190 --extra-model-paths-config /cfg/extra.yaml",
        mount("basedir", "/basedir"),
        mount("cfg", "/cfg"),
        mount("data", "/data"),
    ));
    assert!(created.status.success(), "{}", stderr(&created));

    let out = client
        .lifeos()
        .args(["--host", "rtx", "inspect", "--container", &name, "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let layout: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(layout["port"], host_port, "{layout}");
    assert_eq!(
        layout["models"],
        home.join("basedir/models").to_str().unwrap()
    );
    let config = home.join("cfg/extra.yaml");
    let extra: Vec<(String, String, String)> = layout["extra_models"]
        .as_array()
        .unwrap_or_else(|| panic!("no extra_models: {layout}"))
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap().to_string();
            (s("kind"), s("path"), s("config"))
        })
        .collect();
    let want = |kind: &str, dir: &str| {
        (
            kind.to_string(),
            home.join(dir).display().to_string(),
            config.display().to_string(),
        )
    };
    assert_eq!(
        extra,
        [
            want("loras", "data/loras"),
            want("checkpoints", "data/ckpts")
        ]
    );
}
