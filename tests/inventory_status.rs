//! `status` and `pool` over an inventory, against three mock ComfyUIs (real HTTP servers in
//! ComfyUI's shapes) with different queues and devices.

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::*;

const GB10: &str = "cuda:0 NVIDIA GB10 : cudaMallocAsync";

struct Fleet {
    _mocks: Vec<MockComfyUi>,
    dir: tempfile::TempDir,
    inventory: PathBuf,
    client: ClientHome,
}

/// `busy` (5 jobs, priority 1), `rtx` (2 jobs, priority 3), `spark` (a GB10, 2 jobs, priority
/// 2): the router must take spark — as loaded as rtx, preferred by priority.
fn fleet() -> Fleet {
    let busy = MockComfyUi::start(&[("MOCK_QUEUE_RUNNING", "2"), ("MOCK_QUEUE_PENDING", "3")]);
    let rtx = MockComfyUi::start(&[("MOCK_QUEUE_RUNNING", "1"), ("MOCK_QUEUE_PENDING", "1")]);
    let spark = MockComfyUi::start(&[("MOCK_QUEUE_PENDING", "2"), ("MOCK_DEVICE", GB10)]);
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("inventory.yaml");
    let text = format!(
        "hosts:\n  busy:\n    ssh: local\n    url: {}\n    priority: 1\n  rtx:\n    ssh: local\n    url: {}\n    priority: 3\n    role: secondary\n  spark:\n    ssh: local\n    url: {}\n    priority: 2\n    seconds_per_image: 3.5\ngroups:\n  boxes: [rtx, spark]\n",
        busy.url(),
        rtx.url(),
        spark.url()
    );
    std::fs::write(&inventory, text).unwrap();
    Fleet {
        _mocks: vec![busy, rtx, spark],
        dir,
        inventory,
        client: ClientHome::new(),
    }
}

impl Fleet {
    fn run(&self, args: &[&str]) -> std::process::Output {
        self.client
            .lifeos()
            .args(args)
            .args(["--inventory", self.inventory.to_str().unwrap()])
            .output()
            .unwrap()
    }
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(out), stderr(out)))
}

fn row<'a>(rows: &'a Value, host: &str) -> &'a Value {
    rows["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["host"] == host)
        .unwrap_or_else(|| panic!("no {host} in {rows}"))
}

#[test]
fn status_marks_the_least_loaded_host_with_priority_breaking_ties() {
    let f = fleet();
    let out = f.run(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = json(&out);
    assert_eq!(row(&rows, "busy")["queue_running"], 2);
    assert_eq!(row(&rows, "busy")["queue_pending"], 3);
    assert_eq!(row(&rows, "spark")["device"], GB10);
    assert_eq!(row(&rows, "spark")["memory_unified"], true);
    let next: Vec<&Value> = rows["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["next"] == true)
        .map(|r| &r["host"])
        .collect();
    assert_eq!(next, ["spark"]);

    let table = stdout(&f.run(&["status"]));
    let marked: Vec<&str> = table.lines().filter(|l| l.ends_with(" *")).collect();
    assert!(
        marked.len() == 1 && marked[0].starts_with("spark "),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("busy ") && l.contains("2/3")),
        "{table}"
    );
}

#[test]
fn status_limit_selects_by_group_and_by_name() {
    let f = fleet();
    let hosts = |limit: &str| -> Vec<String> {
        let out = f.run(&["status", "--json", "--limit", limit]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        json(&out)["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["host"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(hosts("boxes"), ["rtx", "spark"]);
    assert_eq!(hosts("busy"), ["busy"]);
    assert_eq!(hosts("busy,boxes"), ["busy", "rtx", "spark"]);
    let out = f.run(&["status", "--limit", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("hint: hosts: busy, rtx, spark; groups: boxes"),
        "{}",
        stderr(&out)
    );
}

fn backups(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains(".bak-"))
        .collect()
}

#[test]
fn pool_is_written_from_inventory_and_reports_then_byte_identical() {
    let f = fleet();
    let pool = f.dir.path().join("comfyui_devices.yaml");
    let write = || f.run(&["pool", "--out", pool.to_str().unwrap()]);
    let out = write();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let first = std::fs::read(&pool).unwrap();
    let mtime = std::fs::metadata(&pool).unwrap().modified().unwrap();
    let doc: Value = serde_yaml::from_slice(&first).unwrap();
    let devices = doc["comfyui_devices"].as_array().unwrap();
    let names: Vec<&str> = devices
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["busy", "spark", "rtx"], "preferred first");
    let spark = &devices[1];
    assert_eq!(spark["url"], f_url(&f, "spark"));
    assert_eq!(spark["priority"], 2);
    assert_eq!(spark["device_type"], "NVIDIA GB10");
    assert_eq!(spark["batch_size"], 8);
    assert_eq!(spark["seconds_per_image"], 3.5);
    assert!(spark["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c == "large_batch"));
    // Unified memory: the system's, as the mock reports it from /proc/meminfo.
    let ram = meminfo_total_kib() * 1024;
    assert_eq!(spark["memory_gb"], (ram as f64 / 1e9).round() as u64);
    let rtx = &devices[2];
    assert_eq!(rtx["device_type"], "NVIDIA GeForce RTX 4090");
    assert_eq!(rtx["memory_gb"], 25);
    assert_eq!(rtx["batch_size"], 4);
    assert!(rtx.get("seconds_per_image").is_none(), "unknown: left out");

    std::thread::sleep(std::time::Duration::from_millis(20));
    let out = write();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(&pool).unwrap(),
        first,
        "second run: same bytes"
    );
    assert_eq!(
        std::fs::metadata(&pool).unwrap().modified().unwrap(),
        mtime,
        "not rewritten"
    );
    assert!(backups(f.dir.path()).is_empty());

    // A changed inventory replaces the pool and keeps the old one beside it.
    let text = std::fs::read_to_string(&f.inventory)
        .unwrap()
        .replace("priority: 3", "priority: 0");
    std::fs::write(&f.inventory, text).unwrap();
    let out = write();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: Value = serde_yaml::from_slice(&std::fs::read(&pool).unwrap()).unwrap();
    assert_eq!(doc["comfyui_devices"][0]["name"], "rtx");
    let baks = backups(f.dir.path());
    assert_eq!(baks.len(), 1, "{baks:?}");
    assert_eq!(std::fs::read(&baks[0]).unwrap(), first);
}

fn f_url(f: &Fleet, host: &str) -> String {
    let text = std::fs::read_to_string(&f.inventory).unwrap();
    let after = &text[text.find(&format!("  {host}:\n")).unwrap()..];
    let line = after
        .lines()
        .find(|l| l.trim_start().starts_with("url: "))
        .unwrap();
    line.trim_start().trim_start_matches("url: ").to_string()
}

#[test]
fn an_unreachable_host_is_reported_and_does_not_stop_the_others() {
    let client = ClientHome::new();
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("inventory.yaml");
    let closed = free_port();
    std::fs::write(
        &inventory,
        format!("hosts:\n  gone:\n    ssh: root@127.0.0.1:{closed}\n  here:\n    ssh: local\n    root: {}\n", dir.path().join("root").display()),
    )
    .unwrap();
    let out = client
        .lifeos()
        .args([
            "doctor",
            "--json",
            "--inventory",
            inventory.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let hosts = doc["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 2, "{doc}");
    assert_eq!(hosts[0]["host"], "gone");
    assert_eq!(hosts[0]["status"], "failed");
    assert_eq!(hosts[0]["detail"], "unreachable");
    assert!(
        hosts[0]["error"].to_string().contains(&closed.to_string()),
        "{doc}"
    );
    // The other host ran to the end: its doctor report is there, on this machine's facts.
    assert_eq!(hosts[1]["host"], "here");
    assert_eq!(hosts[1]["result"]["host"], "local");
    assert_eq!(hosts[1]["result"]["arch"], std::env::consts::ARCH);

    let text = client
        .lifeos()
        .args(["doctor", "--inventory", inventory.to_str().unwrap()])
        .output()
        .unwrap();
    let recap = stdout(&text);
    assert!(
        recap
            .lines()
            .any(|l| l.starts_with("gone : ") && l.contains("unreachable=1 ")),
        "{recap}"
    );
}
