//! `connection-info` through the built binary: on this machine with a fake `nvidia-smi`
//! (captured GB10 output), and over SSH against a real sshd posing as an RTX 4090 PC.

mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use support::*;

fn run_local(home: &Path, args: &[&str]) -> Output {
    let fakebin = fake_gpu_bin(home, "gb10");
    let path = format!("{}:{}", fakebin.display(), std::env::var("PATH").unwrap());
    Command::new(bin())
        .args(args)
        .env("HOME", home)
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .env("HF_TOKEN", "hf_must_never_appear")
        .output()
        .unwrap()
}

fn setup_date(text: &str) -> &str {
    text.lines()
        .find_map(|l| l.strip_prefix("Setup Date: "))
        .unwrap()
}

#[test]
fn spark_file_like_the_seed_then_ok_on_rerun() {
    let home = tempfile::tempdir().unwrap();
    let started = chrono::Local::now().timestamp();
    let out = run_local(
        home.path(),
        &["connection-info", "--address", "192.168.1.101"],
    );
    let ended = chrono::Local::now().timestamp();
    assert!(out.status.success(), "{}", stderr(&out));
    let written = fs::read_to_string(home.path().join("CONNECTION_INFO.txt")).unwrap();
    // The date is the time of this run (read by the clock here, not taken from the output).
    let date = chrono::DateTime::parse_from_str(setup_date(&written), "%Y-%m-%d %H:%M:%S %z")
        .unwrap_or_else(|e| panic!("setup date is not `%Y-%m-%d %H:%M:%S %z` ({e}): {written}"))
        .timestamp();
    assert!((started..=ended).contains(&date), "{written}");
    assert_eq!(stdout(&out), written, "prints what it wrote");
    let expected = format!(
        "# DGX Spark Connection Information\n\nIP Address: 192.168.1.101\nPort: 8188\nBase URL: http://192.168.1.101:8188\n\nCOMFYUI_URL=http://192.168.1.101:8188\nCOMFYUI_DEVICE_TYPE=dgx_spark\n\nModel: NVIDIA GB10\nMemory: {} GiB unified\nBatch size: 8\nSetup Date: {}\n",
        (meminfo_total_mib() + 512) / 1024,
        setup_date(&written)
    );
    assert_eq!(written, expected);
    assert!(!written.contains("hf_must_never_appear"));
    assert!(stderr(&out).starts_with("changed:"), "{}", stderr(&out));

    let again = run_local(
        home.path(),
        &["connection-info", "--address", "192.168.1.101"],
    );
    assert!(stderr(&again).starts_with("ok:"), "{}", stderr(&again));
    assert_eq!(
        fs::read_to_string(home.path().join("CONNECTION_INFO.txt")).unwrap(),
        written
    );

    // A new address rewrites the file but keeps the first setup date; --dry-run only diffs.
    let dry = run_local(
        home.path(),
        &["connection-info", "--address", "10.0.0.9", "--dry-run"],
    );
    assert!(
        stdout(&dry).contains("+COMFYUI_URL=http://10.0.0.9:8188"),
        "{}",
        stdout(&dry)
    );
    assert_eq!(
        fs::read_to_string(home.path().join("CONNECTION_INFO.txt")).unwrap(),
        written
    );
    let moved = run_local(
        home.path(),
        &["connection-info", "--address", "10.0.0.9", "--json"],
    );
    let doc: serde_json::Value = serde_json::from_slice(&moved.stdout).unwrap();
    assert_eq!(doc["status"], "changed");
    assert_eq!(doc["info"]["comfyui_url"], "http://10.0.0.9:8188");
    assert_eq!(doc["info"]["setup_date"], setup_date(&written));
}

/// The address is the source of the default route. The test makes that route itself, in a
/// network namespace of its own (a veth pair, 10.77.0.2 -> gateway 10.77.0.1), so it needs no
/// network from the machine and its expected address is known before the tool runs.
#[test]
fn address_is_the_source_of_the_default_route() {
    let root = text_of(Command::new("id").arg("-u").output().unwrap().stdout) == "0";
    let unshare = Command::new("unshare").arg("--help").output().is_ok();
    let Some(()) = require(
        root && unshare,
        "root and `unshare` (util-linux) to make a network namespace",
    ) else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let fakebin = fake_gpu_bin(home.path(), "gb10");
    let script = format!(
        "set -e; ip link add v0 type veth peer name v1; ip addr add 10.77.0.2/24 dev v0; \
         ip link set v0 up; ip link set v1 up; ip route add default via 10.77.0.1; \
         exec '{}' connection-info",
        bin()
    );
    let out = Command::new("unshare")
        .args(["-n", "sh", "-c", &script])
        .env("HOME", home.path())
        .env(
            "PATH",
            format!("{}:{}", fakebin.display(), std::env::var("PATH").unwrap()),
        )
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("\nIP Address: 10.77.0.2\n"), "{text}");
    assert!(
        text.contains("\nCOMFYUI_URL=http://10.77.0.2:8188\n"),
        "{text}"
    );
}

fn text_of(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).trim().to_string()
}

#[test]
fn over_ssh_on_an_rtx_4090_pc() {
    let client = ClientHome::new();
    let Some(server) = SshServer::start(SshServerConfig {
        gpu_profile: Some("rtx4090"),
        docker_host: None,
        authorized_keys: vec![client.public_key()],
    }) else {
        return;
    };
    client.add_alias("rtx", &server);
    client.trust(&server);
    let out = client
        .lifeos()
        .args([
            "--host",
            "rtx",
            "connection-info",
            "--port",
            "8189",
            "--address",
            "192.168.1.100",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let written = fs::read_to_string(server.home().join("CONNECTION_INFO.txt")).unwrap();
    assert_eq!(stdout(&out), written);
    assert!(
        written.starts_with("# RTX 4090 PC Connection Information\n"),
        "{written}"
    );
    assert!(
        written.contains("\nCOMFYUI_URL=http://192.168.1.100:8189\nCOMFYUI_DEVICE_TYPE=rtx_4090\n")
    );
    assert!(
        written.contains("\nModel: NVIDIA GeForce RTX 4090\nMemory: 24 GiB VRAM\nBatch size: 2\n"),
        "{written}"
    );
    assert!(
        !client.path().join("CONNECTION_INFO.txt").exists(),
        "written on the operator's side"
    );
}
