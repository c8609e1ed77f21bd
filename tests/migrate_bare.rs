//! `migrate --from-root DIR` from a bare-metal ComfyUI checkout (`main.py` beside `models/`,
//! `user/`, `input/`), killed with SIGKILL in the middle of the model copy, then stopped with
//! SIGINT (Ctrl-C) in the middle of the resumed copy: each re-run resumes the copy from the
//! `.part` record the last one left, and everything arrives byte-identical. Real OpenSSH
//! servers, the real Docker engine for the destination, a real HTTP server that must see no
//! request (the source has every model).

mod fake_hub;
mod support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use fake_hub::{bytes_of, one_model_manifest, sha256_hex, FakeHub};
use serde_json::Value;
use support::*;

const MIB: usize = 1 << 20;

fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

fn sha_of(path: &Path) -> String {
    sha256_hex(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// The end of the recorded range from byte 0 (a copy reads in order: one range).
fn recorded_prefix(record: &Path) -> u64 {
    std::fs::read(record)
        .ok()
        .and_then(|d| serde_json::from_slice::<Value>(&d).ok())
        .and_then(|v| v["done"][0][1].as_u64())
        .unwrap_or(0)
}

fn env_changed(env: &Path) -> bool {
    std::fs::read_to_string(env).unwrap() != "COMFYUI_URL=http://127.0.0.1:1\n"
}

#[test]
fn bare_metal_source_copy_killed_mid_file_resumes_from_its_record() {
    let Some(MigratePair {
        docker,
        dir,
        client,
        rtx,
        spark,
        spark_pb,
        spark_port,
        spark_project,
        ..
    }) = migrate_pair()
    else {
        return;
    };
    let _guard = ProjectGuard {
        docker_host: docker.clone(),
        project: spark_project,
    };

    // Large enough that the first record (a checkpoint a second) leaves most of it to copy,
    // and the resumed run records again before it ends, at loopback speeds of ~200 MB/s.
    let ckpt = bytes_of(384 * MIB, 7);
    let dest = "models/checkpoints/big.safetensors";
    let hub = FakeHub::start();
    hub.put("/big.safetensors", ckpt.clone(), "\"big\"");
    let manifest = one_model_manifest(dir.path(), "big", &hub.url("/big.safetensors"), dest, &ckpt);
    let nodes = dir.path().join("nodes.yaml");
    std::fs::write(&nodes, "nodes: []\n").unwrap();

    // A `git clone` of ComfyUI run as `python main.py`: no container, no compose file.
    let src = rtx.home().join("ComfyUI");
    write(&src.join("main.py"), b"import comfy\n");
    write(&src.join(dest), &ckpt);
    write(&src.join("user/default/workflows/mine.json"), b"{\"a\": 1}");
    write(&src.join("input/ref.png"), &bytes_of(5000, 8));
    std::fs::create_dir_all(src.join("custom_nodes")).unwrap();

    let env = dir.path().join("life-os.env");
    std::fs::write(&env, "COMFYUI_URL=http://127.0.0.1:1\n").unwrap();
    let migrate = || {
        let mut cmd = client.lifeos();
        cmd.args(["migrate", "--from", "rtx", "--to", "spark", "--json"]);
        cmd.args([
            "--from-root",
            src.to_str().unwrap(),
            "--env-file",
            env.to_str().unwrap(),
        ]);
        cmd.args(["--backup-dir", dir.path().join("backups").to_str().unwrap()]);
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
        cmd
    };
    let root = spark.home().join("comfyui");
    let part = root.join(format!("{dest}.part"));
    let record = root.join(format!("{dest}.part.json"));

    // Killed once the record says some bytes are in, before the file is whole.
    let mut child = migrate().spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let prefix = loop {
        assert!(Instant::now() < deadline, "the copy never started");
        assert!(
            child.try_wait().unwrap().is_none(),
            "migrate ended before the kill"
        );
        let done = std::fs::read(&record)
            .ok()
            .and_then(|d| serde_json::from_slice::<Value>(&d).ok())
            .and_then(|v| v["done"][0][1].as_u64())
            .unwrap_or(0);
        if done > 0 {
            break done;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !root.join(dest).exists(),
        "the copy finished before the kill"
    );
    let inode = std::fs::metadata(&part).expect("no .part left").ino();
    let recorded: Value = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    let prefix = recorded["done"][0][1].as_u64().unwrap().max(prefix);
    assert!(prefix < ckpt.len() as u64);
    // The recorded prefix is really on disk.
    let on_disk = std::fs::read(&part).unwrap();
    assert_eq!(&on_disk[..prefix as usize], &ckpt[..prefix as usize]);

    // Resumed, then Ctrl-C once the record has grown: exit 130, the record kept and flushed.
    let mut child = migrate()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        assert!(Instant::now() < deadline, "the resumed copy never advanced");
        assert!(
            child.try_wait().unwrap().is_none(),
            "migrate ended before the interrupt"
        );
        if recorded_prefix(&record) > prefix {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let int = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(int.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    // The download's progress, for a copy: its line names the source and the resume point.
    assert!(
        stderr(&out).contains("copying `big` from rtx (403 MB, resuming at"),
        "no progress line for the copy: {}",
        stderr(&out)
    );
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&out), stderr(&out)));
    assert!(
        doc["phases"].to_string().contains("interrupted"),
        "the report does not say it was interrupted: {doc}"
    );
    assert!(!root.join(dest).exists(), "the copy finished before Ctrl-C");
    assert_eq!(std::fs::metadata(&part).unwrap().ino(), inode);
    let interrupted_at = recorded_prefix(&record);
    assert!(interrupted_at > prefix && interrupted_at < ckpt.len() as u64);
    let on_disk = std::fs::read(&part).unwrap();
    assert_eq!(
        &on_disk[..interrupted_at as usize],
        &ckpt[..interrupted_at as usize]
    );
    assert!(!env_changed(&env), ".env changed by an interrupted migrate");
    let prefix = interrupted_at;

    let out = migrate().output().unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&out), stderr(&out)));
    assert!(out.status.success(), "{doc}\n{}", stderr(&out));
    assert_eq!(sha_of(&root.join(dest)), sha256_hex(&ckpt));
    // The same file was finished, and only the rest was copied.
    assert_eq!(std::fs::metadata(root.join(dest)).unwrap().ino(), inode);
    assert_eq!(
        doc["setup"]["downloaded_bytes"].as_u64().unwrap(),
        ckpt.len() as u64 - prefix,
        "{doc}"
    );
    assert!(!record.exists() && !part.exists());
    assert!(
        hub.gets().is_empty(),
        "the model was downloaded, not copied"
    );
    for rel in ["user/default/workflows/mine.json", "input/ref.png"] {
        assert_eq!(sha_of(&root.join(rel)), sha_of(&src.join(rel)), "{rel}");
    }
    let env_now = std::fs::read_to_string(&env).unwrap();
    assert!(
        env_now.starts_with(&format!("COMFYUI_URL=http://127.0.0.1:{spark_port}\n")),
        "{env_now}"
    );

    // Ctrl-C after the model phase (here while carrying a new large user file) still stops
    // `migrate` at once with 130: the model transfer's own handling ends with it.
    write(&src.join("input/big.bin"), &bytes_of(160 * MIB, 9));
    let mut child = migrate()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // stderr is read to its end on a thread: a closed pipe would end the process by itself.
    let stderr_pipe = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr_pipe)) {
            let line = line.unwrap_or_default();
            if line.starts_with("== carry") {
                let _ = tx.send(());
            }
            seen.push(line);
        }
        seen
    });
    if rx.recv_timeout(Duration::from_secs(300)).is_err() {
        let _ = child.kill();
        panic!("never reached the carry phase: {:#?}", reader.join());
    }
    let int = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(int.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "Ctrl-C was ignored after the model phase"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let seen = reader.join().unwrap();
    // The one Ctrl-C watcher (`src/interrupt.rs`) ends every command with 130.
    assert_eq!(status.code(), Some(130), "{status:?}: {seen:#?}");
    assert!(seen.iter().any(|l| l.contains("interrupted")), "{seen:#?}");
    assert!(
        !root.join("input/big.bin").exists(),
        "the carry went on after Ctrl-C"
    );
}
