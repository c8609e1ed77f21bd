//! The README's promises about a migration that must not go ahead: the source's workflows are
//! backed up on this machine first, files that differ on the destination stop the run before
//! anything is written there, and the `.env` keeps pointing at the source. Then `--overwrite`
//! keeps the destination's file as `<name>.before-migrate`, and `--models-from internet`
//! downloads a model the source has. Real OpenSSH servers, the real Docker engine, a real HTTP
//! server whose request log says what was downloaded.

mod fake_hub;
mod support;

use std::path::Path;

use fake_hub::{bytes_of, one_model_manifest, sha256_hex, FakeHub};
use support::*;

fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file in the `.tar.gz` archives under `dir`, extracted by the real `tar`: path -> bytes.
fn archived(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let archives: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .collect();
    assert_eq!(archives.len(), 1, "one backup archive: {archives:?}");
    let out = tempfile::tempdir().unwrap();
    let tar = sh(&format!(
        "tar -xzf '{}' -C '{}'",
        archives[0].display(),
        out.path().display()
    ));
    assert!(tar.status.success(), "{}", stderr(&tar));
    file_states(out.path())
        .into_iter()
        .map(|(p, _, _)| {
            let rel = p.strip_prefix(out.path()).unwrap();
            (rel.to_string_lossy().into_owned(), read(&p))
        })
        .collect()
}

#[test]
fn conflicts_stop_after_the_backup_keeping_the_env_then_overwrite_and_models_from_internet() {
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
        project: spark_project.clone(),
    };

    let model = bytes_of(300_000, 11);
    let dest = "models/checkpoints/m.safetensors";
    let hub = FakeHub::start();
    hub.put("/m.safetensors", model.clone(), "\"m\"");
    let manifest = one_model_manifest(dir.path(), "m", &hub.url("/m.safetensors"), dest, &model);
    let nodes = dir.path().join("nodes.yaml");
    std::fs::write(&nodes, "nodes: []\n").unwrap();

    // The source: a bare ComfyUI checkout that has the model and a workflow.
    let src = rtx.home().join("ComfyUI");
    let workflow = "user/default/workflows/mine.json";
    let theirs = b"{\"from\": \"the source\"}".to_vec();
    write(&src.join("main.py"), b"import comfy\n");
    write(&src.join(dest), &model);
    write(&src.join(workflow), &theirs);
    std::fs::create_dir_all(src.join("custom_nodes")).unwrap();
    // The destination already has another file under the same name.
    let root = spark.home().join("comfyui");
    let ours = b"{\"edited\": \"on the destination, longer\"}".to_vec();
    write(&root.join(workflow), &ours);

    let env = dir.path().join("life-os.env");
    let env_before = b"COMFYUI_URL=http://127.0.0.1:1\nOTHER=kept\n".to_vec();
    std::fs::write(&env, &env_before).unwrap();
    let backups = dir.path().join("backups");
    let migrate = |extra: &[&str]| {
        let mut cmd = client.lifeos();
        cmd.args(["migrate", "--from", "rtx", "--to", "spark"]);
        cmd.args(["--from-root", src.to_str().unwrap()]);
        cmd.args(["--env-file", env.to_str().unwrap()]);
        cmd.args(["--backup-dir", backups.to_str().unwrap()]);
        cmd.args(["--playbook", spark_pb.to_str().unwrap(), "--gpu", "none"]);
        cmd.args(["--manifest", manifest.to_str().unwrap()]);
        cmd.args(["--nodes", nodes.to_str().unwrap(), "--no-generate"]);
        cmd.args(["--models-from", "internet"]).args(extra);
        cmd.output().unwrap()
    };

    let root_before = file_states(&root);
    let env_mtime = std::fs::metadata(&env).unwrap().modified().unwrap();
    let out = migrate(&[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{}\n{err}", stdout(&out));
    assert!(
        err.contains("1 files differ on the destination; nothing was changed:")
            && err.contains(&format!("  - {workflow}"))
            && err.contains("hint: ")
            && err.contains("--overwrite"),
        "{err}"
    );
    // Stopped: the destination, the `.env` and Docker are as they were; nothing downloaded.
    assert_eq!(file_states(&root), root_before, "the destination changed");
    assert_eq!(read(&env), env_before);
    assert_eq!(
        std::fs::metadata(&env).unwrap().modified().unwrap(),
        env_mtime
    );
    assert!(containers_of(&docker, &spark_project).is_empty());
    assert!(
        hub.gets().is_empty(),
        "downloaded before the conflict check"
    );
    // But the source's workflows were backed up first, byte for byte.
    let saved = archived(&backups);
    let entry = saved
        .iter()
        .find(|(p, _)| p.ends_with("workflows/mine.json"))
        .unwrap_or_else(|| panic!("the workflow is not in the backup: {saved:?}"));
    assert_eq!(entry.1, theirs);

    let out = migrate(&["--overwrite"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(read(&root.join(workflow)), theirs);
    let kept = root.join(format!("{workflow}.before-migrate"));
    assert_eq!(read(&kept), ours, "the destination's file was not kept");
    // `--models-from internet`: the whole model came from the hub, although the source has it.
    assert_eq!(sha256_hex(&read(&root.join(dest))), sha256_hex(&model));
    let gets = hub.gets();
    assert!(
        gets.iter().any(|s| s.path == "/m.safetensors"),
        "not downloaded: {gets:?}"
    );
    assert_eq!(hub.body_bytes(), model.len() as u64);
    // Only now does the `.env` point at the destination; the other keys are kept.
    let env_now = String::from_utf8(read(&env)).unwrap();
    assert_eq!(
        env_now.lines().next().unwrap(),
        format!("COMFYUI_URL=http://127.0.0.1:{spark_port}")
    );
    assert!(env_now.contains("OTHER=kept\n"), "{env_now}");
}
