//! `doctor` and `setup --dry-run` over an inventory of three real sshd hosts (a GB10, an RTX
//! 4090 and one without a driver): run at once, one contiguous block per host, the failing host
//! not stopping the others.

mod support;

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const HOSTS: [(&str, &str); 3] = [
    ("spark", "gb10"),
    ("rtx", "rtx4090"),
    ("broken", "no-driver"),
];

struct World {
    client: ClientHome,
    _servers: Vec<SshServer>,
    inventory: PathBuf,
    dir: tempfile::TempDir,
    _guards: Vec<ProjectGuard>,
}

fn world() -> Option<World> {
    let docker = docker_host(true)?;
    // An image no test builds: setup's doctor runs its GPU smoke test (`docker run --gpus all`)
    // only in an image that is present, and this daemon's `nvidia` runtime is runc with no GPU.
    // The dry run then plans the image build instead.
    let image = "lifeos-test/inventory-never-built:1".to_string();
    let client = ClientHome::new();
    let dir = tempfile::tempdir().unwrap();
    let mut servers = Vec::new();
    let mut guards = Vec::new();
    let mut text = String::from("hosts:\n");
    for (name, profile) in HOSTS {
        let server = SshServer::start(SshServerConfig {
            gpu_profile: Some(profile),
            docker_host: Some(docker.clone()),
            authorized_keys: vec![client.public_key()],
        })?;
        client.add_alias(name, &server);
        client.trust(&server);
        let (playbook, port, project) =
            test_playbook_named(dir.path(), &image, &format!("{name}.yaml"));
        guards.push(ProjectGuard {
            docker_host: docker.clone(),
            project,
        });
        text += &format!(
            "  {name}:\n    ssh: {name}\n    playbook: {}\n    root: {}\n    url: http://127.0.0.1:{port}\n",
            playbook.display(),
            server.home().join("comfyui").display()
        );
        servers.push(server);
    }
    text += "groups:\n  good: [spark, rtx]\n";
    let inventory = dir.path().join("inventory.yaml");
    std::fs::write(&inventory, text).unwrap();
    Some(World {
        client,
        _servers: servers,
        inventory,
        dir,
        _guards: guards,
    })
}

impl World {
    fn run(&self, args: &[&str]) -> (Output, Duration) {
        let start = Instant::now();
        let out = self
            .client
            .lifeos()
            .args(args)
            .args(["--inventory", self.inventory.to_str().unwrap()])
            .output()
            .unwrap();
        (out, start.elapsed())
    }

    /// Proof that the hosts run at once, from the hosts' own state: a first host (by name and
    /// in the file) that accepts the TCP connection and never answers. While it still holds the
    /// connection open, every real host's sshd has logged a login: a run one host after another
    /// would still be waiting on the first. Then the command on the three real hosts.
    fn at_once(&self, command: &[&str]) -> Output {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let text = std::fs::read_to_string(&self.inventory).unwrap().replacen(
            "hosts:\n",
            &format!(
                "hosts:\n  aaa-silent:\n    ssh: root@{}\n",
                silent.local_addr().unwrap()
            ),
            1,
        );
        let inventory = self.dir.path().join("with-silent.yaml");
        std::fs::write(&inventory, text).unwrap();
        let logins = |s: &SshServer| s.log().matches("Accepted publickey").count();
        let before: Vec<usize> = self._servers.iter().map(logins).collect();
        let mut child = self
            .client
            .lifeos()
            .args(command)
            .arg("--inventory")
            .arg(&inventory)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let (held, _) = silent.accept().unwrap();
        held.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while (self._servers.iter().map(logins).zip(&before)).any(|(now, was)| now == *was) {
            assert!(
                Instant::now() < deadline,
                "{command:?}: the real hosts were not reached while the first host hung"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The silent host's connection is still open: the others did not wait for it to end.
        // (What the client sent, its SSH banner, is read away; end of stream means closed.)
        let mut buf = [0u8; 4096];
        let still_open = loop {
            match std::io::Read::read(&mut &held, &mut buf) {
                Ok(0) => break false,
                Ok(_) => continue,
                Err(e) => break e.kind() == std::io::ErrorKind::WouldBlock,
            }
        };
        assert!(
            still_open,
            "{command:?}: the first host's connection ended first"
        );
        drop(held);
        drop(silent);
        let _ = child.kill();
        let _ = child.wait();
        self.run(command).0
    }
}

/// Each host's block: from its header to the next header or the recap.
fn blocks(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("=== ") {
            out.push((rest.split(' ').next().unwrap().to_string(), String::new()));
        } else if line == "RECAP" {
            break;
        } else if let Some(last) = out.last_mut() {
            last.1 += line;
            last.1 += "\n";
        }
    }
    out
}

fn assert_grouped(out: &Output, host_line: impl Fn(&str) -> String) {
    let text = stdout(out);
    let blocks = blocks(&text);
    let mut names: Vec<&str> = blocks.iter().map(|(n, _)| n.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        ["broken", "rtx", "spark"],
        "one block per host:\n{text}"
    );
    for (name, body) in &blocks {
        for (other, _) in HOSTS {
            assert_eq!(
                body.contains(&host_line(other)),
                other == name,
                "block of {name} and {other}'s lines:\n{text}"
            );
        }
    }
    let recap: Vec<&str> = text.lines().skip_while(|l| *l != "RECAP").skip(1).collect();
    assert_eq!(recap.len(), 3, "{text}");
    assert!(
        recap
            .iter()
            .any(|l| l.starts_with("broken ") && !l.contains("failed=0 ")),
        "{text}"
    );
    assert!(
        recap
            .iter()
            .any(|l| l.starts_with("spark ") && l.contains("unreachable=0 ")),
        "{text}"
    );
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(out), stderr(out)))
}

fn result<'a>(doc: &'a Value, host: &str) -> &'a Value {
    doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["host"] == host)
        .unwrap_or_else(|| panic!("no {host} in {doc}"))
}

#[test]
fn doctor_over_inventory_runs_hosts_at_once_and_reports_each() {
    let Some(w) = world() else { return };
    let out = w.at_once(&["doctor"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_grouped(&out, |h| format!("host: {h} "));

    let (out, _) = w.run(&["doctor", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc = json(&out);
    assert_eq!(doc["hosts"].as_array().unwrap().len(), 3, "{doc}");
    assert_eq!(result(&doc, "spark")["result"]["profile"], "dgx_spark");
    assert_eq!(
        result(&doc, "spark")["result"]["gpus"][0]["name"],
        "NVIDIA GB10"
    );
    assert_eq!(result(&doc, "rtx")["result"]["profile"], "rtx_4090");
    assert_eq!(result(&doc, "broken")["status"], "failed");
    assert_eq!(result(&doc, "broken")["result"]["profile"], "no_gpu");

    // `--limit` by group: the failing host left out, so success.
    let (out, _) = w.run(&["doctor", "--json", "--limit", "good"]);
    let doc = json(&out);
    let hosts: Vec<&str> = doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["rtx", "spark"]);
    assert_eq!(out.status.code(), Some(0), "{doc}");
}

#[test]
fn setup_dry_run_over_inventory_changes_nothing_and_fails_only_the_broken_host() {
    let Some(w) = world() else { return };
    let setup = [
        "setup",
        "--dry-run",
        "--gpu",
        "all",
        "--skip",
        "models,nodes",
    ];
    let out = w.at_once(&setup);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert_grouped(&out, |h| format!("RECAP {h} "));

    let (out, _) = w.run(&[&setup[..], &["--json"]].concat());
    assert_eq!(out.status.code(), Some(1));
    let doc = json(&out);
    assert_eq!(doc["dry_run"], true);
    assert_eq!(doc["hosts"].as_array().unwrap().len(), 3, "{doc}");
    assert_eq!(result(&doc, "broken")["status"], "failed", "{doc}");
    for good in ["spark", "rtx"] {
        assert_eq!(result(&doc, good)["status"], "ok", "{doc}");
        assert!(
            result(&doc, good)["counts"]["changed"].as_u64().unwrap() > 0,
            "{doc}"
        );
    }
    for (name, _) in HOSTS {
        let root = w._servers[HOSTS.iter().position(|(n, _)| *n == name).unwrap()]
            .home()
            .join("comfyui");
        assert!(!root.exists(), "dry-run created {}", root.display());
    }
    let _ = &w.dir;
}
