//! The operator's whole journey against two mock hosts — real OpenSSH servers posing as an RTX
//! 4090 PC and a DGX Spark (fake nvidia-smi), the real Docker engine with the test ComfyUI image,
//! a local HTTP server holding small stand-in model files whose manifest carries their real
//! sha256: `setup --dry-run` (the plan, nothing changed), `setup` for real, `setup` again
//! (nothing changed), then `migrate` from the RTX host to the Spark. Also: `setup` killed in the
//! middle of the model phase, and the re-run that completes it.

mod fake_hub;
mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use fake_hub::{bytes_of, sha256_hex, FakeHub};
use serde_json::Value;
use support::*;

const MIB: usize = 1 << 20;

struct Models {
    hub: FakeHub,
    manifest: PathBuf,
    files: Vec<(String, Vec<u8>)>,
}

/// Three files: a checkpoint, and one InsightFace model stored under two packs (same bytes).
fn models(dir: &Path, checkpoint_bytes: usize) -> Models {
    let hub = FakeHub::start();
    let ckpt = bytes_of(checkpoint_bytes, 1);
    let det = bytes_of(MIB / 4, 2);
    hub.put(
        "/sd/resolve/main/tiny.safetensors",
        ckpt.clone(),
        "\"ckpt\"",
    );
    hub.put("/if/resolve/main/det.onnx", det.clone(), "\"det\"");
    let manifest = dir.join("manifest.yaml");
    let entry = |id: &str, path: &str, dest: &str, data: &[u8]| {
        format!(
            "  - id: {id}\n    url: {}\n    dest: {dest}\n    size: {}\n    sha256: {}\n",
            hub.url(path),
            data.len(),
            sha256_hex(data)
        )
    };
    // The files the check generation loads (setup ends with it): stand-ins, by their names.
    let extra: Vec<(&str, String, Vec<u8>)> = FACEID_FILES
        .into_iter()
        .enumerate()
        .map(|(i, (id, dest))| (id, dest.to_string(), bytes_of(1000, 10 + i as u64)))
        .collect();
    let mut text = format!(
        "name: stand-in\ndescription: small files with real hashes\nmodels:\n{}{}{}",
        entry(
            "ckpt",
            "/sd/resolve/main/tiny.safetensors",
            "models/checkpoints/tiny.safetensors",
            &ckpt
        ),
        entry(
            "antelopev2-scrfd",
            "/if/resolve/main/det.onnx",
            "models/insightface/models/antelopev2/scrfd_10g_bnkps.onnx",
            &det
        ),
        entry(
            "buffalo_l-det",
            "/if/resolve/main/det.onnx",
            "models/insightface/models/buffalo_l/det_10g.onnx",
            &det
        ),
    );
    for (id, dest, data) in &extra {
        let path = format!("/x/resolve/main/{id}");
        hub.put(&path, data.clone(), &format!("\"{id}\""));
        text += &entry(id, &path, dest, data);
    }
    std::fs::write(&manifest, text).unwrap();
    let mut files = vec![
        ("models/checkpoints/tiny.safetensors".to_string(), ckpt),
        (
            "models/insightface/models/antelopev2/scrfd_10g_bnkps.onnx".to_string(),
            det.clone(),
        ),
        (
            "models/insightface/models/buffalo_l/det_10g.onnx".to_string(),
            det,
        ),
    ];
    files.extend(extra.into_iter().map(|(_, dest, data)| (dest, data)));
    Models {
        hub,
        manifest,
        files,
    }
}

/// A node repository whose pinned commit loads (the mock reads NODE_CLASSES).
fn node_list(dir: &Path) -> PathBuf {
    let work = dir.join("FaceNode");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(
        work.join("NODE_CLASSES"),
        "FaceLoader\nIPAdapterUnifiedLoaderFaceID\nIPAdapterFaceID\n",
    )
    .unwrap();
    let git = format!("cd '{}' && git -c init.defaultBranch=main init -q && git add -A && git -c user.name=t -c user.email=t@t commit -qm one", work.display());
    sh(&git);
    let commit = stdout(&sh(&format!("git -C '{}' rev-parse HEAD", work.display())))
        .trim()
        .to_string();
    let list = dir.join("nodes.yaml");
    std::fs::write(&list, format!("nodes:\n  - id: FaceNode\n    repo: {}\n    commit: {commit}\n    proves: [FaceLoader]\n", work.display())).unwrap();
    list
}

struct World {
    dir: tempfile::TempDir,
    client: ClientHome,
    rtx: SshServer,
    spark: SshServer,
    models: Models,
    nodes: PathBuf,
    rtx_playbook: (PathBuf, u16),
    spark_playbook: (PathBuf, u16),
    spark_project: String,
    _guards: [ProjectGuard; 2],
}

fn world(checkpoint_bytes: usize) -> Option<World> {
    let docker = docker_host(true)?;
    let image = test_image(&docker);
    let dir = tempfile::tempdir().unwrap();
    let client = ClientHome::new();
    let (rtx, spark) = rtx_and_spark(&client, &docker)?;
    let (rtx_pb, rtx_port, rtx_project) = test_playbook_named(dir.path(), &image, "rtx.yaml");
    let (spark_pb, spark_port, spark_project) =
        test_playbook_named(dir.path(), &image, "spark.yaml");
    let models = models(dir.path(), checkpoint_bytes);
    let nodes = node_list(dir.path());
    Some(World {
        client,
        rtx,
        spark,
        models,
        nodes,
        rtx_playbook: (rtx_pb, rtx_port),
        spark_playbook: (spark_pb, spark_port),
        spark_project: spark_project.clone(),
        _guards: [
            ProjectGuard {
                docker_host: docker.clone(),
                project: rtx_project,
            },
            ProjectGuard {
                docker_host: docker,
                project: spark_project,
            },
        ],
        dir,
    })
}

impl World {
    /// `migrate` from the RTX host to the Spark with the test's playbooks, manifest and nodes.
    fn migrate(&self, env: &Path, args: &[&str]) -> Output {
        let mut cmd = self.client.lifeos();
        cmd.args([
            "migrate",
            "--from",
            "rtx",
            "--to",
            "spark",
            "--env-file",
            env.to_str().unwrap(),
        ]);
        cmd.args(["--from-playbook", self.rtx_playbook.0.to_str().unwrap()]);
        cmd.args([
            "--playbook",
            self.spark_playbook.0.to_str().unwrap(),
            "--gpu",
            "none",
        ]);
        cmd.args([
            "--manifest",
            self.models.manifest.to_str().unwrap(),
            "--nodes",
            self.nodes.to_str().unwrap(),
        ]);
        cmd.args(args).output().unwrap()
    }

    fn setup(&self, host: &str, extra: &[&str]) -> std::process::Command {
        let playbook = if host == "rtx" {
            &self.rtx_playbook.0
        } else {
            &self.spark_playbook.0
        };
        let mut cmd = self.client.lifeos();
        cmd.args(["--host", host]).args(extra).arg("setup");
        cmd.args(["--playbook", playbook.to_str().unwrap(), "--gpu", "none"]);
        cmd.args([
            "--manifest",
            self.models.manifest.to_str().unwrap(),
            "--nodes",
            self.nodes.to_str().unwrap(),
        ]);
        cmd
    }
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(out), stderr(out)))
}

fn phase<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == name)
        .unwrap_or_else(|| panic!("no phase {name}: {doc}"))
}

fn assert_models_in_place(root: &Path, files: &[(String, Vec<u8>)]) {
    for (dest, data) in files {
        let on_disk = std::fs::read(root.join(dest)).unwrap_or_else(|e| panic!("{dest}: {e}"));
        assert_eq!(sha256_hex(&on_disk), sha256_hex(data), "{dest}");
    }
}

/// The verify phase ended with the check generation, and ComfyUI received `graphs` graphs in
/// all (the mock's own record), the last a FaceID one.
fn assert_generated(doc: &Value, root: &Path, graphs: usize) {
    let steps = phase(doc, "verify")["steps"].as_array().unwrap();
    assert_eq!(steps.last().unwrap()["name"], "generate faceid", "{doc}");
    let record = std::fs::read_to_string(root.join("user/mock_prompts.jsonl")).unwrap();
    let lines: Vec<&str> = record.lines().collect();
    assert_eq!(lines.len(), graphs, "{record}");
    assert!(lines[graphs - 1].contains("IPAdapterFaceID"));
}

#[test]
fn dry_run_setup_rerun_and_migrate_rtx_to_spark() {
    let Some(w) = world(3 * MIB) else { return };
    let rtx_root = w.rtx.home().join("comfyui");
    let spark_root = w.spark.home().join("comfyui");

    // 1. The plan: every phase checked, nothing on the host changes.
    let plan = w.setup("spark", &["--dry-run", "--json"]).output().unwrap();
    assert!(plan.status.success(), "{}", stderr(&plan));
    let doc = json(&plan);
    assert_eq!(doc["dry_run"], true);
    assert_eq!(phase(&doc, "doctor")["outcome"], "ok");
    for name in ["compose", "up", "models", "nodes", "connection-info"] {
        assert_eq!(
            phase(&doc, name)["outcome"],
            "would_change",
            "{name}: {doc}"
        );
    }
    assert!(
        phase(&doc, "models")["detail"]
            .as_str()
            .unwrap()
            .contains("to download"),
        "{doc}"
    );
    assert!(!spark_root.exists(), "dry-run created the root");
    let docker = docker_host(true).unwrap();
    let containers = sh(&format!(
        "DOCKER_HOST='{docker}' docker ps -aq --filter label=com.docker.compose.project={}",
        w.spark_project
    ));
    assert!(
        stdout(&containers).trim().is_empty(),
        "dry-run created a container"
    );
    assert!(!w.spark.home().join("CONNECTION_INFO.txt").exists());
    assert!(w.models.hub.gets().is_empty(), "dry-run downloaded");

    // 2. For real on the RTX host.
    let first = w.setup("rtx", &["--json"]).output().unwrap();
    let doc = json(&first);
    assert!(first.status.success(), "{doc}\n{}", stderr(&first));
    for name in ["compose", "up", "models", "nodes", "connection-info"] {
        assert_eq!(phase(&doc, name)["outcome"], "changed", "{name}: {doc}");
    }
    assert_eq!(phase(&doc, "verify")["outcome"], "ok", "{doc}");
    assert_generated(&doc, &rtx_root, 2);
    assert_models_in_place(&rtx_root, &w.models.files);
    let info = std::fs::read_to_string(w.rtx.home().join("CONNECTION_INFO.txt")).unwrap();
    assert!(info.contains(&format!(":{}", w.rtx_playbook.1)));
    assert!(info.contains("Seconds per image: "), "{info}");
    let fetched = w.models.hub.body_bytes();

    // 3. Again: nothing changes, nothing is downloaded or re-hashed.
    let again = w.setup("rtx", &["--json"]).output().unwrap();
    let doc = json(&again);
    assert!(again.status.success(), "{doc}");
    for p in doc["phases"].as_array().unwrap() {
        assert_eq!(p["outcome"], "ok", "{p}");
    }
    // The generation is a check: it ran again.
    assert_generated(&doc, &rtx_root, 4);
    assert_eq!(doc["downloaded_bytes"], 0);
    assert_eq!(w.models.hub.body_bytes(), fetched);

    // A plan against a host that is set up and running: every phase ok, exit 0.
    let plan = w.setup("rtx", &["--dry-run", "--json"]).output().unwrap();
    let doc = json(&plan);
    assert!(plan.status.success(), "{doc}\n{}", stderr(&plan));
    for p in doc["phases"].as_array().unwrap() {
        assert_eq!(p["outcome"], "ok", "{p}");
    }

    // 4. Workflows on the RTX PC, Life-OS's .env on the operator's machine.
    std::fs::create_dir_all(rtx_root.join("workflows/portraits")).unwrap();
    std::fs::write(
        rtx_root.join("workflows/portraits/face id.json"),
        "{\"nodes\": []}",
    )
    .unwrap();
    std::fs::create_dir_all(rtx_root.join("user/default/workflows")).unwrap();
    std::fs::write(
        rtx_root.join("user/default/workflows/ui.json"),
        "{\"ui\": true}",
    )
    .unwrap();
    let env = w.dir.path().join("life-os.env");
    let rtx_url = format!("http://127.0.0.1:{}", w.rtx_playbook.1);
    let env_before =
        format!("# Life-OS\nCOMFYUI_URL={rtx_url}\nCOMFYUI_ENABLED=true\nCOMFYUI_TIMEOUT=300\n");
    std::fs::write(&env, &env_before).unwrap();
    let pool = w.dir.path().join("comfyui_devices.yaml");

    let pool_arg = pool.to_str().unwrap();
    let migrate = |extra: &[&str]| {
        w.migrate(
            &env,
            &[&["--mode", "parallel", "--pool-file", pool_arg], extra].concat(),
        )
    };

    // 5. The migration plan changes nothing either.
    let plan = migrate(&["--dry-run"]);
    assert!(
        plan.status.success(),
        "{}\n{}",
        stdout(&plan),
        stderr(&plan)
    );
    assert!(stdout(&plan).contains("copy from rtx"), "{}", stdout(&plan));
    assert_eq!(std::fs::read_to_string(&env).unwrap(), env_before);
    assert!(!spark_root.exists() && !pool.exists());

    // 6. For real: models copied from the RTX host (the hub sees no request), workflows
    // restored, .env and device pool updated last.
    let gets = w.models.hub.gets().len();
    let out = migrate(&["--json"]);
    let doc = json(&out);
    assert!(out.status.success(), "{doc}\n{}", stderr(&out));
    assert_eq!(
        w.models.hub.gets().len(),
        gets,
        "models were downloaded instead of copied: {doc}"
    );
    assert_models_in_place(&spark_root, &w.models.files);
    assert_eq!(
        std::fs::read_to_string(spark_root.join("workflows/portraits/face id.json")).unwrap(),
        "{\"nodes\": []}"
    );
    assert_eq!(
        std::fs::read_to_string(spark_root.join("user/default/workflows/ui.json")).unwrap(),
        "{\"ui\": true}"
    );
    let spark_url = format!("http://127.0.0.1:{}", w.spark_playbook.1);
    let env_after = std::fs::read_to_string(&env).unwrap();
    assert!(
        env_after.starts_with(&format!(
            "# Life-OS\nCOMFYUI_URL={spark_url}\nCOMFYUI_ENABLED=true\nCOMFYUI_TIMEOUT=300\n"
        )),
        "{env_after}"
    );
    assert!(
        env_after.contains("COMFYUI_DEVICE_TYPE=dgx_spark\n")
            && env_after.contains("COMFYUI_MEMORY_GB="),
        "{env_after}"
    );
    let devices: Value = serde_yaml::from_str(&std::fs::read_to_string(&pool).unwrap()).unwrap();
    let devices = &devices["comfyui_devices"];
    assert_eq!(devices[0]["name"], "dgx_spark");
    assert_eq!(devices[0]["url"], spark_url.as_str());
    assert_eq!(devices[0]["priority"], 1);
    assert!(devices[0]["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c == "large_batch"));
    assert_eq!(devices[1]["name"], "rtx_4090");
    assert_eq!(devices[1]["url"], rtx_url.as_str());
    assert!(http_get(&format!("{spark_url}/system_stats")).is_some());
    assert!(
        http_get(&format!("{rtx_url}/system_stats")).is_some(),
        "parallel keeps the source running"
    );

    // 7. A re-run changes nothing.
    let again = migrate(&["--json"]);
    let doc = json(&again);
    assert!(again.status.success(), "{doc}");
    for p in doc["setup"]["phases"].as_array().unwrap() {
        assert_eq!(p["outcome"], "ok", "{p}");
    }
    assert_eq!(std::fs::read_to_string(&env).unwrap(), env_after);

    // 8. Replace: the same migration, now stopping the source at the end.
    let replace = |extra: &[&str]| {
        w.migrate(
            &env,
            &[&["--mode", "replace", "--stop-source"], extra].concat(),
        )
    };
    let out = replace(&["--json"]);
    let doc = json(&out);
    assert!(out.status.success(), "{doc}\n{}", stderr(&out));
    assert!(
        http_get(&format!("{rtx_url}/system_stats")).is_none(),
        "the source still runs"
    );
    assert!(http_get(&format!("{spark_url}/system_stats")).is_some());
    assert_eq!(std::fs::read_to_string(&env).unwrap(), env_after);
}

#[test]
fn setup_killed_during_the_model_phase_completes_on_the_next_run() {
    let Some(w) = world(24 * MIB) else { return };
    // 4 MiB/s: the 24 MiB checkpoint takes seconds, time enough to kill the run mid-file.
    w.models.hub.rate_limit(Some(4 << 20));
    let root = w.rtx.home().join("comfyui");
    let mut child = w.setup("rtx", &[]).spawn().unwrap();
    let part = root.join("models/checkpoints/tiny.safetensors.part");
    let deadline = Instant::now() + Duration::from_secs(120);
    while w.models.hub.body_bytes() < 4 << 20 {
        assert!(Instant::now() < deadline, "the model phase never started");
        assert!(
            child.try_wait().unwrap().is_none(),
            "setup ended before the kill"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    assert!(part.exists(), "no partial file left to resume");
    assert!(!root.join("models/checkpoints/tiny.safetensors").exists());

    w.models.hub.rate_limit(None);
    let before = w.models.hub.body_bytes();
    let out = w.setup("rtx", &["--json"]).output().unwrap();
    let doc = json(&out);
    assert!(out.status.success(), "{doc}\n{}", stderr(&out));
    assert_eq!(phase(&doc, "verify")["outcome"], "ok");
    assert_models_in_place(&root, &w.models.files);
    // The re-run fetched less than the whole set: what was there was kept.
    let total: usize = w.models.files.iter().take(2).map(|(_, d)| d.len()).sum();
    assert!(
        ((w.models.hub.body_bytes() - before) as usize) < total,
        "the partial was not reused"
    );
}
