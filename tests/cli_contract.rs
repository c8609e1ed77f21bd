//! The command-line contract: exit codes and which stream carries what.

mod support;

use std::process::Output;

use support::*;

fn run(args: &[&str]) -> Output {
    ClientHome::new().lifeos().args(args).output().unwrap()
}

/// Exit 2, nothing on stdout, and clap's message naming the option and the bad value.
fn assert_usage(out: &Output, option: &str, value: &str) {
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(out));
    assert_eq!(stdout(out), "", "a usage error prints no data");
    let err = stderr(out);
    assert!(
        err.contains(option) && err.contains(value),
        "stderr names neither `{option}` nor `{value}`: {err}"
    );
}

#[test]
fn env_set_without_equals_is_a_usage_error_and_leaves_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(".env");
    std::fs::write(&file, "A=1\n# keep\n").unwrap();
    let out = run(&[
        "env",
        "--file",
        file.to_str().unwrap(),
        "set",
        "B=2",
        "COMFYUI_URL",
    ]);
    assert_usage(&out, "KEY=VALUE", "COMFYUI_URL");
    assert_eq!(std::fs::read(&file).unwrap(), b"A=1\n# keep\n");
}

#[test]
fn bad_host_port_is_a_usage_error() {
    let out = run(&["--host", "u@h:abc", "doctor"]);
    assert_usage(&out, "--host", "u@h:abc");
    assert!(stderr(&out).contains("port `abc`"), "{}", stderr(&out));
    let out = run(&["workflows", "transfer", "--from", "local", "--to", "u@:22"]);
    assert_usage(&out, "--to", "u@:22");
}

#[test]
fn unknown_playbook_is_a_usage_error_that_lists_the_names() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let out = run(&[
        "compose",
        "--playbook",
        "nosuch",
        "--root",
        root.to_str().unwrap(),
    ]);
    assert_usage(&out, "--playbook", "nosuch");
    assert!(stderr(&out).contains("dgx-spark, rtx-4090, generic-nvidia"));
    assert!(!root.exists(), "a usage error touches nothing");
}

#[test]
fn status_with_a_bad_url_is_a_usage_error() {
    let out = run(&["status", "--url", "notaurl"]);
    assert_usage(&out, "--url", "notaurl");
}

/// `doctor` prints the profile as `dgx_spark`; `--playbook` takes that spelling too.
#[test]
fn playbook_accepts_the_profile_spelling() {
    let Some(docker) = docker_host(true) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let out = ClientHome::new()
        .lifeos()
        .env("DOCKER_HOST", &docker)
        .args(["compose", "--dry-run", "--gpu", "none", "--root"])
        .arg(&root)
        .args(["--playbook", "dgx_spark"])
        .output()
        .unwrap();
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert!(stdout(&out).contains("image: lifeos/comfyui:dgx-spark"));
    assert!(!root.exists(), "a dry run writes nothing");
}

// Ctrl-C on commands with nothing to keep: tests/interrupt.rs.

/// `status`: the table alone on stdout; why a host did not answer goes to stderr.
#[test]
fn status_prints_the_table_on_stdout_and_the_reason_on_stderr() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let out = run(&["status", "--url", &url]);
    assert_eq!(out.status.code(), Some(1));
    let table = stdout(&out);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "header and one row only: {table}");
    assert!(lines[0].starts_with("HOST") && lines[1].contains("unreachable"));
    assert!(!table.contains("refused"), "{table}");
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("error: `local` did not answer at {url}")),
        "{err}"
    );
    assert!(err.contains("Connection refused"), "{err}");
}

fn workflows(args: &[&str]) -> Output {
    run(&[&["workflows"], args].concat())
}

/// `backup` prints the archive's path on stdout (the data) and its summary on stderr;
/// `restore` prints one line per file on stdout and its summary on stderr.
#[test]
fn workflows_backup_and_restore_keep_summaries_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("workflows")).unwrap();
    std::fs::write(root.join("workflows/a.json"), b"{\"a\": 1}").unwrap();
    let archive = dir.path().join("w.tar.gz");
    let (root_s, archive_s) = (root.to_str().unwrap(), archive.to_str().unwrap());

    let dry = run(&[
        "workflows",
        "backup",
        "--dry-run",
        "--root",
        root_s,
        "--out",
        archive_s,
    ]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert_eq!(stdout(&dry), "", "a dry run has no archive to name");
    assert!(
        stderr(&dry).contains("would back up 1 file (8 B)"),
        "{}",
        stderr(&dry)
    );
    assert!(!archive.exists());

    let out = workflows(&["backup", "--root", root_s, "--out", archive_s]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{archive_s}\n"));
    assert!(
        stderr(&out).contains("backed up 1 file (8 B)"),
        "{}",
        stderr(&out)
    );
    assert!(std::fs::metadata(&archive).unwrap().len() > 0);

    let dest = dir.path().join("dest");
    let dest_s = dest.to_str().unwrap();
    let dry = run(&[
        "workflows",
        "restore",
        "--dry-run",
        archive_s,
        "--root",
        dest_s,
    ]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert_eq!(stdout(&dry), "would restore: workflows/a.json\n");
    let err = stderr(&dry);
    assert!(
        err.contains("1 would be restored, 0 unchanged") && !err.contains("written"),
        "{err}"
    );
    assert!(!dest.exists(), "a dry run writes nothing");

    let out = workflows(&["restore", archive_s, "--root", dest_s]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "restored: workflows/a.json\n");
    assert!(stderr(&out).contains("1 restored, 0 unchanged, 0 conflicting (8 B written"));
    assert_eq!(
        std::fs::read(dest.join("workflows/a.json")).unwrap(),
        b"{\"a\": 1}"
    );

    std::fs::write(dest.join("workflows/a.json"), b"changed").unwrap();
    let out = workflows(&["restore", archive_s, "--root", dest_s]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("error: 1 file differs on local and was left alone"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read(dest.join("workflows/a.json")).unwrap(),
        b"changed"
    );
}
