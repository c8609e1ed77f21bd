//! Ctrl-C ends every command with exit 130, not only `models pull` and `setup` (tested with
//! their partial downloads in models_cli.rs and e2e.rs): here commands blocked on an HTTP
//! answer and on an SSH handshake that never come.

mod support;

use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::*;

/// Start `args`, wait until it has connected to `listener` (which never answers), send SIGINT:
/// the process must exit by itself with 130 (not die by the signal), soon, saying why.
fn interrupted(listener: &TcpListener, args: &[&str]) -> std::process::Output {
    let child = ClientHome::new()
        .lifeos()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (_conn, _) = listener.accept().unwrap();
    let start = Instant::now();
    sh(&format!("kill -INT {}", child.id()));
    let out = child.wait_with_output().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{args:?}: {:?}",
        start.elapsed()
    );
    assert_eq!(
        out.status.code(),
        Some(130),
        "{args:?}: {:?} {}",
        out.status,
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("error: interrupted"),
        "{args:?}: {}",
        stderr(&out)
    );
    out
}

fn silent() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    (listener, addr)
}

#[test]
fn ctrl_c_while_waiting_for_http_exits_130() {
    let (listener, addr) = silent();
    let url = format!("http://{addr}");
    interrupted(&listener, &["status", "--url", &url]);
    // With `--json`, the one document still comes: not ok, the error says why.
    let out = interrupted(&listener, &["--json", "status", "--url", &url]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["command"], "status", "{doc}");
    assert_eq!(doc["ok"], false, "{doc}");
    assert_eq!(doc["error"]["message"], "interrupted", "{doc}");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    interrupted(
        &listener,
        &[
            "nodes",
            "verify",
            "--playbook",
            "rtx-4090",
            "--root",
            root.to_str().unwrap(),
            "--url",
            &url,
        ],
    );
    assert!(!root.exists(), "a read-only command wrote its root");
}

#[test]
fn ctrl_c_during_an_ssh_handshake_exits_130() {
    let (listener, addr) = silent();
    let target = format!("root@{addr}");
    interrupted(&listener, &["doctor", "--host", &target]);
    interrupted(
        &listener,
        &["workflows", "transfer", "--from", &target, "--to", "local"],
    );
}
