//! `migrate` from the RTX PC users really have: ComfyUI set up by hand following the guide
//! (Phase 2 Option B): `~/comfyui/docker-compose.yml` with `container_name: comfyui-server`,
//! ComfyUI's base directory `/basedir` mounted from `./basedir`, models from `./models`, the
//! antelopev2 files flattened into `models/insightface/models/`, a UI-saved workflow, a user
//! LoRA, an extra custom node at a commit no list pins, files in `input/`. Real OpenSSH servers
//! pose as the RTX PC and the Spark, the real Docker engine runs the guide's compose file with
//! the test ComfyUI image, and a real HTTP server counts every model request.

mod fake_hub;
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use fake_hub::{bytes_of, sha256_hex, FakeHub};
use serde_json::Value;
use support::*;

const MIB: usize = 1 << 20;

/// A model file of the test manifest: its id, URL path on the hub, manifest dest and bytes.
struct Model {
    id: &'static str,
    url: &'static str,
    dest: &'static str,
    data: Vec<u8>,
}

fn manifest(dir: &Path, hub: &FakeHub, models: &[Model]) -> PathBuf {
    let mut text =
        "name: stand-in\ndescription: small files with real hashes\nmodels:\n".to_string();
    for m in models {
        hub.put(m.url, m.data.clone(), &format!("\"{}\"", m.id));
        text += &format!(
            "  - id: {}\n    url: {}\n    dest: {}\n    size: {}\n    sha256: {}\n",
            m.id,
            hub.url(m.url),
            m.dest,
            m.data.len(),
            sha256_hex(&m.data)
        );
    }
    let path = dir.join("manifest.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn git(dir: &Path, args: &str) -> String {
    stdout(&sh(&format!(
        "cd '{}' && git -c user.name=t -c user.email=t@t -c init.defaultBranch=main {args}",
        dir.display()
    )))
    .trim()
    .to_string()
}

/// A repository with one commit per `files` entry; returns its path and the commits.
fn repo(dir: &Path, name: &str, files: &[(&str, &str)]) -> (PathBuf, Vec<String>) {
    let work = dir.join(name);
    std::fs::create_dir_all(&work).unwrap();
    git(&work, "init -q");
    let mut commits = Vec::new();
    for (file, content) in files {
        std::fs::write(work.join(file), content).unwrap();
        git(&work, "add -A");
        git(&work, &format!("commit -qm '{file}'"));
        commits.push(git(&work, "rev-parse HEAD"));
    }
    (work, commits)
}

fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// Every file under `root` (not inside `.git`): sha256 and mtime.
fn tree(root: &Path) -> BTreeMap<String, (String, i64)> {
    let mut out = BTreeMap::new();
    if !root.exists() {
        return out;
    }
    for entry in walk(root) {
        let rel = entry
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        // Who holds the root's lock is rewritten by every run (pid, time): run metadata, not
        // part of the deployment.
        if rel.split('/').any(|c| c == ".git") || rel == ".lifeos/lock.holder" {
            continue;
        }
        let meta = std::fs::metadata(&entry).unwrap();
        let mtime = meta
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64;
        out.insert(rel, (sha256_hex(&std::fs::read(&entry).unwrap()), mtime));
    }
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let ft = std::fs::symlink_metadata(&p).unwrap().file_type();
        if ft.is_dir() {
            files.extend(walk(&p));
        } else if ft.is_file() {
            files.push(p);
        }
    }
    files
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(out), stderr(out)))
}

fn item<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["plan"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no item {name}: {}", doc["plan"]))
}

fn sha_of(path: &Path) -> String {
    sha256_hex(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// The guide's compose file, with the test image standing in for the guide's build.
fn guide_compose(image: &str, port: u16) -> String {
    format!(
        "services:\n  comfyui:\n    image: {image}\n    container_name: comfyui-server\n    \
         command: [\"/mock-comfyui\", \"--listen\", \"0.0.0.0\", \"--base-directory\", \"/basedir\"]\n    \
         environment:\n      - COMFY_ROOT=/basedir\n    \
         ports:\n      - \"127.0.0.1:{port}:8188\"\n    \
         volumes:\n      - ./basedir:/basedir\n      - ./workflows:/workflows\n      \
         - ./models:/basedir/models\n      - ./output:/basedir/output\n"
    )
}

#[test]
fn guide_built_rtx_pc_migrates_everything_and_a_rerun_changes_nothing() {
    let Some(MigratePair {
        docker,
        image,
        dir,
        client,
        rtx,
        spark,
        spark_pb,
        spark_port,
        spark_project,
    }) = migrate_pair()
    else {
        return;
    };

    let hub = FakeHub::start();
    let models = vec![
        Model {
            id: "ckpt",
            url: "/sd/ckpt.safetensors",
            dest: "models/checkpoints/sd_xl_base_1.0.safetensors",
            data: bytes_of(3 * MIB, 1),
        },
        Model {
            id: "antelopev2-scrfd",
            url: "/av2/scrfd.onnx",
            dest: "models/insightface/models/antelopev2/scrfd_10g_bnkps.onnx",
            data: bytes_of(MIB / 2, 2),
        },
        Model {
            id: "antelopev2-glint",
            url: "/av2/glint.onnx",
            dest: "models/insightface/models/antelopev2/glintr100.onnx",
            data: bytes_of(MIB, 3),
        },
        Model {
            id: "faceid-lora",
            url: "/lora/faceid.safetensors",
            dest: "models/loras/ip-adapter-faceid-plusv2_sdxl_lora.safetensors",
            data: bytes_of(MIB / 4, 4),
        },
    ];
    let manifest = manifest(dir.path(), &hub, &models);
    let (face, face_commits) = repo(dir.path(), "FaceNode", &[("NODE_CLASSES", "FaceLoader\n")]);
    let nodes = dir.path().join("nodes.yaml");
    std::fs::write(
        &nodes,
        format!(
            "nodes:\n  - id: FaceNode\n    repo: {}\n    commit: {}\n    proves: [FaceLoader]\n",
            face.display(),
            face_commits[0]
        ),
    )
    .unwrap();
    let (extra_work, extra_commits) = repo(
        dir.path(),
        "ExtraNode",
        &[
            ("NODE_CLASSES", "ExtraA\n"),
            ("NODE_CLASSES", "ExtraA\nExtraB\n"),
        ],
    );
    let extra_bare = dir.path().join("ExtraNode.git");
    sh(&format!(
        "git clone -q --bare '{}' '{}'",
        extra_work.display(),
        extra_bare.display()
    ));

    // The RTX PC, as the guide leaves it.
    let g = rtx.home().join("comfyui");
    let basedir = g.join("basedir");
    write(
        &g.join("models/checkpoints/sd_xl_base_1.0.safetensors"),
        &models[0].data,
    );
    // `git clone .../antelopev2; mv antelopev2/* .`: flat, with the clone's .git beside them.
    write(
        &g.join("models/insightface/models/scrfd_10g_bnkps.onnx"),
        &models[1].data,
    );
    write(
        &g.join("models/insightface/models/glintr100.onnx"),
        &models[2].data,
    );
    write(
        &g.join("models/insightface/models/.git/HEAD"),
        b"ref: refs/heads/main\n",
    );
    let lora = bytes_of(MIB, 9);
    write(&g.join("models/loras/my_style.safetensors"), &lora);
    write(
        &basedir.join("user/default/workflows/portrait v2.json"),
        b"{\"ui\": \"saved\"}",
    );
    write(
        &basedir.join("user/default/comfy.settings.json"),
        b"{\"Comfy.Theme\": \"dark\"}",
    );
    write(&g.join("workflows/api/faceid_api.json"), b"{\"1\": {}}");
    write(&basedir.join("input/face.png"), &bytes_of(70_000, 5));
    write(&g.join("output/ComfyUI_00001_.png"), &bytes_of(10_000, 6));
    let nodes_dir = basedir.join("custom_nodes");
    std::fs::create_dir_all(&nodes_dir).unwrap();
    sh(&format!(
        "git clone -q '{}' '{}'",
        face.display(),
        nodes_dir.join("FaceNode").display()
    ));
    let extra_src = nodes_dir.join("ExtraNode");
    sh(&format!(
        "git clone -q '{}' '{}'",
        extra_bare.display(),
        extra_src.display()
    ));
    git(
        &extra_src,
        &format!("checkout -q --detach {}", extra_commits[0]),
    );
    // A node the user edited in place: a tracked file modified, a new file beside it.
    let (dirty_work, _) = repo(
        dir.path(),
        "DirtyNode",
        &[("NODE_CLASSES", "Dirty\n"), ("nodes.py", "x = 1\n")],
    );
    let dirty_src = nodes_dir.join("DirtyNode");
    sh(&format!(
        "git clone -q '{}' '{}'",
        dirty_work.display(),
        dirty_src.display()
    ));
    write(&dirty_src.join("nodes.py"), b"x = 2  # my fix\n");
    write(&dirty_src.join("notes.txt"), b"untracked\n");
    let rtx_port = free_port();
    write(
        &g.join("docker-compose.yml"),
        guide_compose(&image, rtx_port).as_bytes(),
    );
    let guide_project = format!("lifeos-test-guide-{rtx_port}");
    let _guards = [
        ProjectGuard {
            docker_host: docker.clone(),
            project: guide_project.clone(),
        },
        ProjectGuard {
            docker_host: docker.clone(),
            project: spark_project,
        },
    ];
    let up = sh(&format!(
        "cd '{}' && DOCKER_HOST='{docker}' docker-compose -p {guide_project} up -d",
        g.display()
    ));
    assert!(up.status.success(), "{}", stderr(&up));

    let env = dir.path().join("life-os.env");
    let rtx_url = format!("http://127.0.0.1:{rtx_port}");
    let env_before = format!("COMFYUI_URL={rtx_url}\nCOMFYUI_ENABLED=true\nHF_TOKEN=hf_secret\n");
    std::fs::write(&env, &env_before).unwrap();
    let backups = dir.path().join("backups");
    let migrate = |extra: &[&str]| {
        let mut cmd = client.lifeos();
        cmd.args([
            "migrate",
            "--from",
            "rtx",
            "--to",
            "spark",
            "--env-file",
            env.to_str().unwrap(),
        ]);
        cmd.args(["--backup-dir", backups.to_str().unwrap()]);
        cmd.args(["--playbook", spark_pb.to_str().unwrap(), "--gpu", "none"]);
        // The stand-in manifest has no SDXL VAE to generate with: the check generation is
        // proven by tests/generate.rs and the e2e migrate.
        cmd.arg("--no-generate");
        cmd.args([
            "--manifest",
            manifest.to_str().unwrap(),
            "--nodes",
            nodes.to_str().unwrap(),
        ]);
        cmd.args(extra).output().unwrap()
    };
    let spark_root = spark.home().join("comfyui");

    // `inspect` finds the guide's container and maps its folders.
    let out = client
        .lifeos()
        .args(["--host", "rtx", "inspect", "--json"])
        .output()
        .unwrap();
    let layout = json(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(layout["kind"]["name"], "comfyui-server", "{layout}");
    assert_eq!(layout["models"], g.join("models").to_str().unwrap());
    assert_eq!(layout["user"], basedir.join("user").to_str().unwrap());
    assert_eq!(layout["workflows"], g.join("workflows").to_str().unwrap());
    assert_eq!(layout["custom_nodes"], nodes_dir.to_str().unwrap());

    // 1. The plan: every item with its action and bytes; neither host changes.
    let rtx_before = tree(&g);
    let plan = migrate(&["--dry-run", "--json"]);
    let doc = json(&plan);
    assert!(plan.status.success(), "{doc}\n{}", stderr(&plan));
    let expect = [
        ("ckpt", "copy-from-source", models[0].data.len()),
        ("antelopev2-scrfd", "copy-from-source", models[1].data.len()),
        ("antelopev2-glint", "copy-from-source", models[2].data.len()),
        ("faceid-lora", "download", models[3].data.len()),
        (
            "models/loras/my_style.safetensors",
            "copy-from-source",
            lora.len(),
        ),
        (
            "user/default/workflows/portrait v2.json",
            "copy-from-source",
            15,
        ),
        ("user/default/comfy.settings.json", "copy-from-source", 23),
        ("workflows/api/faceid_api.json", "copy-from-source", 9),
        ("input/face.png", "copy-from-source", 70_000),
        (
            "models/insightface/models/scrfd_10g_bnkps.onnx",
            "not-moved",
            models[1].data.len(),
        ),
        ("output/", "not-moved", 10_000),
    ];
    for (name, action, bytes) in expect {
        let i = item(&doc, name);
        assert_eq!(i["action"], action, "{name}: {i}");
        assert_eq!(i["bytes"], bytes as u64, "{name}: {i}");
    }
    let extra = item(&doc, "ExtraNode");
    assert_eq!(extra["action"], "clone", "{extra}");
    assert_eq!(extra["commit"], extra_commits[0].as_str());
    assert_eq!(item(&doc, "FaceNode")["action"], "pinned");
    let dirty = item(&doc, "DirtyNode");
    assert_eq!(dirty["action"], "copy-from-source", "{dirty}");
    assert!(
        dirty["note"]
            .as_str()
            .unwrap_or("")
            .contains("local changes"),
        "{dirty}"
    );
    assert_eq!(
        doc["plan"]["totals"]["download_bytes"],
        models[3].data.len() as u64
    );
    assert_eq!(tree(&g), rtx_before, "the dry run changed the source");
    assert!(
        !spark_root.exists(),
        "the dry run created the destination's root"
    );
    assert!(hub.gets().is_empty(), "the dry run downloaded");
    assert_eq!(std::fs::read_to_string(&env).unwrap(), env_before);

    // 2. For real, stopping the source's container at the end.
    assert!(http_get(&format!("{rtx_url}/system_stats")).is_some());
    let out = migrate(&["--json", "--stop-source"]);
    let doc = json(&out);
    assert!(out.status.success(), "{doc}\n{}", stderr(&out));
    let paths: Vec<String> = hub.gets().iter().map(|s| s.path.clone()).collect();
    assert!(
        paths.iter().all(|p| p == "/lora/faceid.safetensors"),
        "copied files were downloaded: {paths:?}"
    );
    assert!(
        !paths.is_empty(),
        "the file the source lacks was not downloaded"
    );
    for m in &models {
        assert_eq!(
            sha_of(&spark_root.join(m.dest)),
            sha256_hex(&m.data),
            "{}",
            m.dest
        );
    }
    for rel in [
        "models/loras/my_style.safetensors",
        "user/default/workflows/portrait v2.json",
        "user/default/comfy.settings.json",
        "input/face.png",
    ] {
        let src = if rel.starts_with("models/") {
            g.join(rel)
        } else {
            basedir.join(rel)
        };
        assert_eq!(sha_of(&spark_root.join(rel)), sha_of(&src), "{rel}");
    }
    assert_eq!(
        sha_of(&spark_root.join("workflows/api/faceid_api.json")),
        sha_of(&g.join("workflows/api/faceid_api.json"))
    );
    assert!(!spark_root.join("output/ComfyUI_00001_.png").exists());
    assert!(!spark_root
        .join("models/insightface/models/scrfd_10g_bnkps.onnx")
        .exists());
    assert_eq!(
        git(&spark_root.join("custom_nodes/ExtraNode"), "rev-parse HEAD"),
        extra_commits[0]
    );
    assert_eq!(
        git(&spark_root.join("custom_nodes/FaceNode"), "rev-parse HEAD"),
        face_commits[0]
    );
    // The edited node arrived as files, byte for byte, named in the report's plan.
    for rel in ["NODE_CLASSES", "nodes.py", "notes.txt"] {
        assert_eq!(
            sha_of(&spark_root.join("custom_nodes/DirtyNode").join(rel)),
            sha_of(&dirty_src.join(rel)),
            "DirtyNode/{rel}"
        );
    }
    assert_eq!(item(&doc, "DirtyNode")["action"], "copy-from-source");
    let spark_url = format!("http://127.0.0.1:{spark_port}");
    let env_after = std::fs::read_to_string(&env).unwrap();
    assert!(
        env_after.starts_with(&format!("COMFYUI_URL={spark_url}\n")),
        "{env_after}"
    );

    // 3. Again: nothing changes on either host, nothing is fetched.
    let spark_after = tree(&spark_root);
    let gets = hub.gets().len();
    let out = migrate(&["--json"]);
    let doc = json(&out);
    assert!(out.status.success(), "{doc}\n{}", stderr(&out));
    assert_eq!(
        tree(&spark_root),
        spark_after,
        "the re-run changed the destination"
    );
    assert_eq!(tree(&g), rtx_before, "the migration changed the source");
    assert_eq!(hub.gets().len(), gets);
    assert_eq!(std::fs::read_to_string(&env).unwrap(), env_after);

    // 4. `--rollback`: the .env as it was, the stopped container running again.
    let rollback = || {
        client
            .lifeos()
            .args(["migrate", "--rollback", "--env-file", env.to_str().unwrap()])
            .args(["--backup-dir", backups.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = rollback();
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(std::fs::read_to_string(&env).unwrap(), env_before);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while http_get(&format!("{rtx_url}/system_stats")).is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the source's ComfyUI was not started again"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // 5. Migrated again, then the .env backup lost: rollback sets the logged values back.
    let out = migrate(&["--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log_path = json(&out)["log"].as_str().unwrap().to_string();
    let log: Value = serde_json::from_slice(&std::fs::read(&log_path).unwrap()).unwrap();
    let backup = log["env"]["backup"]
        .as_str()
        .expect("the log names a backup");
    std::fs::remove_file(backup).unwrap();
    assert!(std::fs::read_to_string(&env)
        .unwrap()
        .starts_with(&format!("COMFYUI_URL={spark_url}\n")));
    let out = rollback();
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        format!("{}{}", stdout(&out), stderr(&out)).contains("no backup left"),
        "{}",
        stdout(&out)
    );
    let env_now = std::fs::read_to_string(&env).unwrap();
    assert!(
        env_now.starts_with(&format!("COMFYUI_URL={rtx_url}\n")),
        "{env_now}"
    );
    assert!(env_now.contains("HF_TOKEN=hf_secret\n"), "{env_now}");
    assert!(!std::fs::read_to_string(&log_path)
        .unwrap()
        .contains("hf_secret"));
}
