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
        cmd.args(["--host", host]).arg("setup").args(extra);
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

/// A GB10's usable memory is the system's (unified): `MemTotal` in MiB, in GiB rounded.
fn unified_memory_gb() -> u64 {
    (meminfo_total_mib() as f64 / 1024.0).round() as u64
}

/// The one `COMFYUI_URL=http://<IPv4>:<port>` line of CONNECTION_INFO.txt.
fn assert_url_line(info: &str, port: u16) {
    let urls: Vec<&str> = info
        .lines()
        .filter(|l| l.starts_with("COMFYUI_URL="))
        .collect();
    assert_eq!(urls.len(), 1, "{info}");
    let addr = urls[0].strip_prefix("COMFYUI_URL=http://").expect(info);
    let (ip, p) = addr.rsplit_once(':').expect(info);
    assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "{info}");
    assert_eq!(p, port.to_string(), "{info}");
}

/// What a re-run must leave alone: the project's containers with their IDs and start times,
/// every file under the host's home with its size and mtime, the node's git HEAD.
#[derive(Debug, PartialEq)]
struct HostState {
    containers: Vec<String>,
    files: Vec<(PathBuf, u64, i128)>,
    node_head: String,
}

fn host_state(home: PathBuf, project: &str) -> HostState {
    let node = home.join("comfyui/custom_nodes/FaceNode");
    HostState {
        containers: containers_of(&docker_host(true).unwrap(), project),
        // The check generation runs on every setup (it is a check): it saves its two images
        // under `output/lifeos-verify/` and the mock records the graphs it got. Both are
        // checked by `assert_generated`; everything else must stay as it was.
        files: file_states(&home)
            .into_iter()
            .filter(|(p, _, _)| {
                !p.to_string_lossy().contains("/output/lifeos-verify/")
                    && !p.ends_with("output/mock_prompts.jsonl")
            })
            .collect(),
        node_head: stdout(&sh(&format!("git -C '{}' rev-parse HEAD", node.display()))),
    }
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
    let record = std::fs::read_to_string(root.join("output/mock_prompts.jsonl")).unwrap();
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
    for (dest, data) in &w.models.files {
        assert!(
            formats::stamp_is_current(&rtx_root.join(dest), &sha256_hex(data)),
            "{dest}: no current stamp"
        );
    }
    // ComfyUI lists the checkpoint, answers 404 for `insightface` (a folder it does not
    // register), so verify found the InsightFace files on disk instead.
    let url = format!("http://127.0.0.1:{}", w.rtx_playbook.1);
    let listed = http_get(&format!("{url}/models/checkpoints")).unwrap();
    assert_eq!(listed, "[\"tiny.safetensors\"]");
    assert!(http_get(&format!("{url}/models/insightface")).is_none());
    let verify = &phase(&doc, "verify")["steps"];
    let step = verify
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "model antelopev2-scrfd")
        .unwrap_or_else(|| panic!("{verify}"));
    assert_eq!(step["outcome"], "ok", "{step}");
    assert!(
        step["detail"]
            .as_str()
            .unwrap()
            .contains("(no /models/insightface in ComfyUI)"),
        "{step}"
    );
    let info = std::fs::read_to_string(w.rtx.home().join("CONNECTION_INFO.txt")).unwrap();
    assert_url_line(&info, w.rtx_playbook.1);
    assert!(info.contains("Seconds per image: "), "{info}");
    let fetched = w.models.hub.body_bytes();
    let rtx_project = format!("lifeos-test-{}", w.rtx_playbook.1);
    let state = host_state(w.rtx.home(), &rtx_project);
    assert_eq!(state.containers.len(), 1, "{:?}", state.containers);

    // 3. Again: nothing changes on the host (same container and start, same files and mtimes,
    // same node commit), nothing is downloaded.
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
    let after = host_state(w.rtx.home(), &rtx_project);
    assert_eq!(
        after.containers, state.containers,
        "the container was recreated or restarted"
    );
    assert_eq!(after.node_head, state.node_head, "the node moved");
    assert_eq!(after.files, state.files, "files on the host changed");

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
            && env_after.contains(&format!("\nCOMFYUI_MEMORY_GB={}\n", unified_memory_gb())),
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

/// Setup is SIGKILLed after the first half of the checkpoint's pieces are finished and
/// recorded (read from `.part.json` per docs/formats.md), while the rest are in flight. The
/// re-run fetches none of the recorded bytes again: what it re-sends is at most the pieces that
/// were in flight, one per connection, as the fake hub's log of served bytes shows.
#[test]
fn setup_killed_during_the_model_phase_completes_on_the_next_run() {
    const PIECE: u64 = 4 << 20; // the tool's piece size (docs/models.md)
    const CONNECTIONS: u64 = 2;
    let Some(w) = world(6 * PIECE as usize) else {
        return;
    };
    let ckpt = "/sd/resolve/main/tiny.safetensors";
    // Pieces from 16 MiB on crawl: pieces 0-3 finish, 4-5 stay in flight until the kill.
    let recorded_end = 4 * PIECE;
    w.models.hub.throttle_from(Some((recorded_end, 64 << 10)));
    let root = w.rtx.home().join("comfyui");
    let dest = root.join("models/checkpoints/tiny.safetensors");
    let connections = ["--connections".to_string(), CONNECTIONS.to_string()];
    let log = w.dir.path().join("killed-setup.log");
    let mut child = w
        .setup("rtx", &[])
        .args(&connections)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("setup ended before the kill ({status}):\n{text}");
        }
        let finished = w
            .models
            .hub
            .served()
            .iter()
            .filter(|s| s.path == ckpt && s.complete)
            .count();
        let recorded = formats::read_part_record(&dest).is_some_and(|r| {
            r.done
                .first()
                .is_some_and(|&(a, b)| a == 0 && b >= recorded_end)
        });
        if finished >= 4 && recorded {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pieces 0-3 never finished and recorded"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    assert!(
        !dest.exists(),
        "the checkpoint has its name before it was verified"
    );
    let record = formats::read_part_record(&dest).expect("the record survives the kill");
    let recorded = record.done;
    // The hub ends the bodies in flight once it sees the connections close.
    let deadline = Instant::now() + Duration::from_secs(30);
    while w.models.hub.in_flight() > 0 {
        assert!(
            Instant::now() < deadline,
            "bodies still in flight after the kill"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let first_run = w.models.hub.served().len();

    w.models.hub.throttle_from(None);
    let out = w
        .setup("rtx", &["--json"])
        .args(&connections)
        .output()
        .unwrap();
    let doc = json(&out);
    assert!(out.status.success(), "{doc}\n{}", stderr(&out));
    assert_eq!(phase(&doc, "verify")["outcome"], "ok");
    assert_models_in_place(&root, &w.models.files);
    assert!(formats::stamp_is_current(
        &dest,
        &sha256_hex(&w.models.files[0].1)
    ));

    let served = w.models.hub.served();
    let before = sent_ranges(&served[..first_run], ckpt);
    let rerun = sent_ranges(&served[first_run..], ckpt);
    for (a, b) in &rerun {
        assert!(
            recorded.iter().all(|(ra, rb)| b <= ra || a >= rb),
            "re-fetched recorded bytes {a}..{b} (recorded {recorded:?})"
        );
    }
    let resent: u64 = rerun.iter().map(|r| overlap(*r, &before)).sum();
    assert!(
        resent <= CONNECTIONS * PIECE,
        "{resent} bytes sent twice, more than one piece per connection"
    );
}

/// README: Ctrl-C stops `setup` with exit code 130, keeping what finished. SIGINT lands in the
/// model phase after the first pieces are recorded; the `.part` and its record stay, the
/// checkpoint has no final name, and the record still names the finished bytes.
#[test]
fn setup_interrupted_by_ctrl_c_exits_130_and_keeps_the_partial() {
    const PIECE: u64 = 4 << 20;
    let Some(w) = world(6 * PIECE as usize) else {
        return;
    };
    w.models.hub.throttle_from(Some((2 * PIECE, 64 << 10)));
    let dest = w
        .rtx
        .home()
        .join("comfyui/models/checkpoints/tiny.safetensors");
    let mut child = w
        .setup("rtx", &[])
        .args(["--connections", "2"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    while !formats::read_part_record(&dest).is_some_and(|r| {
        r.done
            .first()
            .is_some_and(|&(a, b)| a == 0 && b >= 2 * PIECE)
    }) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "setup ended before Ctrl-C"
        );
        assert!(Instant::now() < deadline, "nothing recorded");
        std::thread::sleep(Duration::from_millis(50));
    }
    sh(&format!("kill -INT {}", child.id()));
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(
        !dest.exists(),
        "the checkpoint has its name before it was verified"
    );
    let record = formats::read_part_record(&dest).expect("the record is kept");
    assert!(record.done[0].1 >= 2 * PIECE, "{record:?}");
    let part = std::fs::read(format!("{}.part", dest.display())).unwrap();
    let want = &w.models.files[0].1;
    assert_eq!(
        sha256_hex(&part[..2 * PIECE as usize]),
        sha256_hex(&want[..2 * PIECE as usize]),
        "the recorded bytes are not on disk"
    );
}

/// `[start, end)` of every body of `path` in `log`, by the bytes actually sent.
fn sent_ranges(log: &[fake_hub::Served], path: &str) -> Vec<(u64, u64)> {
    log.iter()
        .filter(|s| s.path == path && s.sent > 0)
        .map(|s| (s.start, s.start + s.sent))
        .collect()
}

/// Bytes of `r` that also lie in some range of `others` (which may overlap each other).
fn overlap(r: (u64, u64), others: &[(u64, u64)]) -> u64 {
    let mut cut: Vec<(u64, u64)> = others
        .iter()
        .map(|&(a, b)| (a.max(r.0), b.min(r.1)))
        .filter(|(a, b)| a < b)
        .collect();
    cut.sort();
    let (mut total, mut reached) = (0, r.0);
    for (a, b) in cut {
        let a = a.max(reached);
        if b > a {
            total += b - a;
            reached = b;
        }
    }
    total
}
