//! `verify --generate` against the mock ComfyUI in a real container: the graphs it receives
//! (read from the mock's own record, not from the tool's report), the PNGs it writes, and each
//! failure kind — a 400 with `node_errors`, an execution error in the history, a finished prompt
//! without an image, a prompt that never finishes — ending in a clear error and exit 1.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use sha2::Digest;
use support::*;

/// The manifest's SDXL + FaceID files, as ComfyUI names them in its model folders.
fn files() -> Vec<(&'static str, &'static str)> {
    let mut files = vec![("ckpt", "models/checkpoints/sd_xl_base_1.0.safetensors")];
    files.extend(FACEID_FILES);
    files.push(("det", "models/insightface/models/buffalo_l/det_10g.onnx"));
    files
}

struct T {
    client: ClientHome,
    docker: String,
    dir: tempfile::TempDir,
    playbook: PathBuf,
    port: u16,
    manifest: PathBuf,
    nodes: PathBuf,
    _guard: ProjectGuard,
}

impl T {
    /// The service up, with the model files in place and the IPAdapter node "loaded".
    fn new() -> Option<T> {
        let docker = docker_host(true)?;
        let image = test_image(&docker);
        let dir = tempfile::tempdir().unwrap();
        let (playbook, port, project) = test_playbook(dir.path(), &image);
        let text = std::fs::read_to_string(&playbook).unwrap();
        // The never-finishing prompt must time out quickly.
        std::fs::write(&playbook, text.replace("timeout: 600", "timeout: 4")).unwrap();
        let mut manifest = String::from("name: faceid-test\nmodels:\n");
        let root = dir.path().join("root");
        for (id, dest) in files() {
            let bytes = format!("stand-in {id}").into_bytes();
            std::fs::create_dir_all(root.join(dest).parent().unwrap()).unwrap();
            std::fs::write(root.join(dest), &bytes).unwrap();
            let sha = hex::encode(sha2::Sha256::digest(&bytes));
            manifest += &format!(
                "  - id: {id}\n    url: http://127.0.0.1:1/{id}\n    dest: {dest}\n    size: {}\n    sha256: {sha}\n",
                bytes.len()
            );
        }
        let node = root.join("custom_nodes/ComfyUI_IPAdapter_plus");
        std::fs::create_dir_all(&node).unwrap();
        std::fs::write(
            node.join("NODE_CLASSES"),
            "IPAdapterUnifiedLoaderFaceID\nIPAdapterFaceID\n",
        )
        .unwrap();
        let nodes = dir.path().join("nodes.yaml");
        std::fs::write(
            &nodes,
            "nodes:\n  - id: ComfyUI_IPAdapter_plus\n    repo: https://github.com/cubiq/ComfyUI_IPAdapter_plus.git\n    commit: 9d076a3df0d2763cef5510ec5ab807f6632c39f5\n    proves: [IPAdapterUnifiedLoaderFaceID]\n",
        )
        .unwrap();
        let manifest_path = dir.path().join("manifest.yaml");
        std::fs::write(&manifest_path, manifest).unwrap();
        let t = T {
            client: ClientHome::new(),
            docker: docker.clone(),
            dir,
            playbook,
            port,
            manifest: manifest_path,
            nodes,
            _guard: ProjectGuard {
                docker_host: docker,
                project,
            },
        };
        let up = t.run(&["up"], &[]);
        assert!(up.status.success(), "{}", stderr(&up));
        Some(t)
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn run(&self, args: &[&str], extra: &[&str]) -> Output {
        let mut cmd = self.client.lifeos();
        cmd.env("DOCKER_HOST", &self.docker).args(args);
        cmd.args(["--playbook", self.playbook.to_str().unwrap()]);
        cmd.args(["--root", self.root().to_str().unwrap(), "--gpu", "none"]);
        cmd.args(extra).output().unwrap()
    }

    fn verify(&self, extra: &[&str]) -> Output {
        let url = format!("http://127.0.0.1:{}", self.port);
        let mut args = vec!["--url", url.as_str(), "--manifest"];
        args.push(self.manifest.to_str().unwrap());
        args.extend(["--nodes", self.nodes.to_str().unwrap()]);
        args.extend(extra);
        self.run(&["verify"], &args)
    }

    /// Every graph the mock received, in order.
    fn graphs(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.root().join("output/mock_prompts.jsonl"))
            .unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["prompt"].clone())
            .collect()
    }

    fn mode(&self, mode: &str) {
        std::fs::write(self.root().join("user/mock_generate"), mode).unwrap();
    }

    /// Restart ComfyUI's container and wait until it answers: ComfyUI (and the mock) load
    /// the custom nodes' classes only when they start.
    fn restart(&self) {
        // Each entry is "<id> <StartedAt>".
        for state in containers_of(&self.docker, &self._guard.project) {
            let id = state.split_whitespace().next().unwrap().to_string();
            sh(&format!(
                "DOCKER_HOST='{}' docker restart '{id}'",
                self.docker
            ));
        }
        let url = format!("http://127.0.0.1:{}/system_stats", self.port);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while http_get(&url).is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "ComfyUI did not come back"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// The graph's nodes of a class.
fn nodes<'a>(graph: &'a Value, class: &str) -> Vec<&'a Value> {
    graph
        .as_object()
        .unwrap()
        .values()
        .filter(|n| n["class_type"] == class)
        .collect()
}

fn png_size(path: &Path) -> (u32, u32) {
    let file = std::fs::File::open(path).unwrap();
    let mut reader = png::Decoder::new(file).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    (info.width, info.height)
}

#[test]
fn generate_submits_sdxl_then_faceid_and_checks_the_images() {
    let Some(t) = T::new() else { return };
    let out = t.verify(&["--generate", "--json"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));

    let graphs = t.graphs();
    assert_eq!(graphs.len(), 2, "{graphs:?}");
    let (text, face) = (&graphs[0], &graphs[1]);
    for g in [text, face] {
        let ckpt = nodes(g, "CheckpointLoaderSimple");
        assert_eq!(ckpt[0]["inputs"]["ckpt_name"], "sd_xl_base_1.0.safetensors");
        assert_eq!(
            nodes(g, "VAELoader")[0]["inputs"]["vae_name"],
            "sdxl_vae.safetensors"
        );
        let latent = &nodes(g, "EmptyLatentImage")[0]["inputs"];
        assert_eq!(
            (latent["width"].as_u64(), latent["height"].as_u64()),
            (Some(768), Some(768))
        );
        assert_eq!(nodes(g, "KSampler")[0]["inputs"]["steps"], 12);
    }
    assert!(nodes(text, "IPAdapterFaceID").is_empty());
    let loader = &nodes(face, "IPAdapterUnifiedLoaderFaceID")[0]["inputs"];
    assert_eq!(loader["preset"], "FACEID PLUS V2");
    assert_eq!(loader["provider"], "CPU");
    let lora = &nodes(face, "LoraLoaderModelOnly")[0]["inputs"];
    assert_eq!(
        lora["lora_name"],
        "ip-adapter-faceid-plusv2_sdxl_lora.safetensors"
    );
    let apply = &nodes(face, "IPAdapterFaceID")[0]["inputs"];
    // The sampler draws with the FaceID-patched model.
    let apply_id = face
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, n)| n["class_type"] == "IPAdapterFaceID")
        .unwrap()
        .0;
    assert_eq!(
        nodes(face, "KSampler")[0]["inputs"]["model"][0],
        apply_id.as_str()
    );
    assert_eq!(apply["weight_type"], "linear");

    // Step 2's face is step 1's image, which is on disk as a real 768x768 PNG.
    let face_in = nodes(face, "LoadImage")[0]["inputs"]["image"]
        .as_str()
        .unwrap()
        .to_string();
    let rel = face_in.strip_suffix(" [output]").expect(&face_in);
    assert!(rel.starts_with("lifeos-verify/text-to-image_"), "{rel}");
    assert_eq!(png_size(&t.root().join("output").join(rel)), (768, 768));
    let faces: Vec<_> = std::fs::read_dir(t.root().join("output/lifeos-verify"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("faceid_"))
        .collect();
    assert_eq!(faces.len(), 1);
    assert_eq!(png_size(&faces[0].path()), (768, 768));

    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let verify = &doc["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == "verify")
        .unwrap();
    assert!(
        verify["detail"].as_str().unwrap().contains("s per image"),
        "{verify}"
    );

    // `status` reads the last check generation's time from ComfyUI's history.
    let url = format!("http://127.0.0.1:{}", t.port);
    let status = t
        .client
        .lifeos()
        .args(["--json", "status", "--url", &url])
        .output()
        .unwrap();
    let rows: Value = serde_json::from_slice(&status.stdout).unwrap();
    let s = rows["hosts"][0]["seconds_per_image"]
        .as_f64()
        .expect("seconds_per_image");
    assert!(s >= 0.1, "{rows}");

    // Without --generate, verify submits nothing.
    let plain = t.verify(&[]);
    assert!(plain.status.success(), "{}", stderr(&plain));
    assert_eq!(t.graphs().len(), 2);
    // Nor does setup's verify phase with --no-generate.
    let url_arg = format!("http://127.0.0.1:{}", t.port);
    let setup = t.run(
        &["setup"],
        &[
            "--only",
            "verify",
            "--no-generate",
            "--url",
            &url_arg,
            "--manifest",
            t.manifest.to_str().unwrap(),
            "--nodes",
            t.nodes.to_str().unwrap(),
        ],
    );
    assert!(setup.status.success(), "{}", stderr(&setup));
    assert_eq!(t.graphs().len(), 2);
}

fn failed(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}\n{}",
        stdout(out),
        stderr(out)
    );
    stderr(out)
}

#[test]
fn each_failure_kind_is_a_clear_error_and_exit_1() {
    let Some(t) = T::new() else { return };

    // An execution error: ComfyUI's exception type and message, its log, and the hint.
    t.mode("exec_error");
    let err = failed(&t.verify(&["--generate"]));
    assert!(
        err.contains("IPAdapterFaceID")
            && err.contains("Exception: InsightFace: No face detected."),
        "{err}"
    );
    assert!(
        err.contains("!!! Exception during processing"),
        "log lines missing: {err}"
    );
    assert!(err.contains("hint:") && err.contains("no face"), "{err}");

    // A finished prompt that saved nothing.
    t.mode("no_image");
    let err = failed(&t.verify(&["--generate"]));
    assert!(err.contains("saved no image"), "{err}");

    // A prompt that never finishes: the playbook's timeout (4 s here).
    t.mode("never");
    let err = failed(&t.verify(&["--generate"]));
    assert!(
        err.contains("did not finish within 4s") && err.contains("generate.timeout"),
        "{err}"
    );

    // A 400: the FaceID apply node's class is not loaded, and ComfyUI says so by node.
    t.mode("ok");
    let classes = t
        .root()
        .join("custom_nodes/ComfyUI_IPAdapter_plus/NODE_CLASSES");
    std::fs::write(&classes, "IPAdapterUnifiedLoaderFaceID\n").unwrap();
    t.restart();
    let err = failed(&t.verify(&["--generate"]));
    assert!(
        err.contains("rejected the `faceid` graph")
            && err.contains("IPAdapterFaceID does not exist"),
        "{err}"
    );
    assert!(err.contains("nodes install"), "{err}");

    // A missing model file behind a loader: the real node's message, the hint to pull models.
    // (The pack is the manifest's last entry: out of the manifest too, so that verify's file
    // checks pass and the loader is what finds it missing.)
    std::fs::write(&classes, "IPAdapterUnifiedLoaderFaceID\nIPAdapterFaceID\n").unwrap();
    t.restart();
    std::fs::remove_file(t.root().join(files()[5].1)).unwrap();
    let text = std::fs::read_to_string(&t.manifest).unwrap();
    std::fs::write(&t.manifest, &text[..text.find("  - id: det").unwrap()]).unwrap();
    let err = failed(&t.verify(&["--generate"]));
    assert!(
        err.contains("IPAdapterUnifiedLoaderFaceID") && err.contains("AssertionError"),
        "{err}"
    );
    assert!(err.contains("buffalo_l"), "{err}");
}
