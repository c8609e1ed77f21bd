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

/// Ctrl-C on a command that has nothing to keep: it ends at once, and the shell sees 130
/// (killed by SIGINT, or exit 130 where the command catches it).
#[test]
fn ctrl_c_on_status_ends_it_with_130() {
    use std::os::unix::process::ExitStatusExt;
    use std::time::{Duration, Instant};
    // A server that accepts and never answers, so `status` waits.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let child = ClientHome::new()
        .lifeos()
        .args(["status", "--url", &url])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (_conn, _) = listener.accept().unwrap();
    let start = Instant::now();
    sh(&format!("kill -INT {}", child.id()));
    let out = child.wait_with_output().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let shell_code = out.status.code().or(out.status.signal().map(|s| 128 + s));
    assert_eq!(shell_code, Some(130), "{:?} {}", out.status, stderr(&out));
}
