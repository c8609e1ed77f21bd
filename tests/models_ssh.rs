//! `models pull --host <alias>` into a real OpenSSH server: the bytes land on the target over
//! SFTP, and a download whose SSH connection drops resumes on the next run.

mod fake_hub;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use fake_hub::{bytes_of, sha256_hex, FakeHub};
use support::*;

const MIB: usize = 1 << 20;

struct Remote {
    client: ClientHome,
    server: SshServer,
    hub: FakeHub,
    manifest: PathBuf,
}

impl Remote {
    fn start(data: &[u8]) -> Option<Remote> {
        let client = ClientHome::new();
        let server = SshServer::start(SshServerConfig {
            gpu_profile: None,
            docker_host: None,
            authorized_keys: vec![client.public_key()],
        })?;
        client.add_alias("spark", &server);
        client.trust(&server);
        let hub = FakeHub::start();
        hub.put("/m", data.to_vec(), "e1");
        let manifest = client.path().join("m.yaml");
        let text = format!(
            "name: test\nmodels:\n  - id: m\n    url: {}\n    dest: models/checkpoints/m.safetensors\n    size: {}\n    sha256: {}\n",
            hub.url("/m"),
            data.len(),
            sha256_hex(data)
        );
        std::fs::write(&manifest, text).unwrap();
        Some(Remote {
            client,
            server,
            hub,
            manifest,
        })
    }

    /// `lifeos-spark --host spark models <args> --manifest m.yaml` (root: `~/comfyui` there).
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.client.lifeos();
        cmd.env_remove("HF_TOKEN")
            .env_remove("HF_ENDPOINT")
            .args(["--host", "spark", "models"])
            .args(args)
            .arg("--manifest")
            .arg(&self.manifest);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn dest(&self) -> PathBuf {
        self.server
            .home()
            .join("comfyui/models/checkpoints/m.safetensors")
    }

    fn recorded(&self) -> u64 {
        let path = format!("{}.part.json", self.dest().display());
        let Ok(data) = std::fs::read(path) else {
            return 0;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&data) else {
            return 0;
        };
        v["done"].as_array().map_or(0, |r| {
            r.iter()
                .map(|r| r[1].as_u64().unwrap() - r[0].as_u64().unwrap())
                .sum()
        })
    }

    /// Kill the sshd processes serving our connection (not the listener): the link drops.
    fn drop_connections(&self) {
        let pid = std::fs::read_to_string(self.server.dir.path().join("sshd.pid")).unwrap();
        let out = sh(&format!("pgrep -P {} || true", pid.trim()));
        for child in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", child]).status();
        }
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(out),
        stderr(out)
    )
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)))
}

#[test]
fn pull_over_ssh_lands_on_the_target_and_verifies_there() {
    let data = bytes_of(9 * MIB, 31);
    let Some(r) = Remote::start(&data) else {
        return;
    };
    let out = r.run(&["pull", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(json(&out)["host"], "spark");
    assert_eq!(std::fs::read(r.dest()).unwrap(), data);
    // Over SSH one segment by default (README "SSH"): the hub never sent two bodies at once.
    assert_eq!(r.hub.max_in_flight(), 1, "{:?}", r.hub.gets());
    assert!(!Path::new(&format!("{}.part", r.dest().display())).exists());

    let out = r.run(&["list", "--json"]);
    assert_eq!(
        json(&out)["files"][0]["presence"],
        "present",
        "{}",
        text(&out)
    );
    let out = r.run(&["verify", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(json(&out)["files"][0]["finding"], "ok");
    let requests = r.hub.seen().len();
    let out = r.run(&["pull", "--json"]);
    assert_eq!(json(&out)["files"][0]["action"], "present");
    assert_eq!(r.hub.seen().len(), requests, "nothing fetched again");
}

#[test]
fn a_dropped_ssh_connection_resumes_on_the_next_run() {
    let data = bytes_of(24 * MIB, 32);
    let Some(r) = Remote::start(&data) else {
        return;
    };
    r.hub.rate_limit(Some(4 * MIB as u64));
    let child = r
        .cmd(&["pull", "--connections", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while r.recorded() < 8 * MIB as u64 {
        assert!(
            Instant::now() < deadline,
            "no progress recorded on the target"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    r.drop_connections();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("error: cannot store `m` on spark"),
        "{}",
        text(&out)
    );
    let recorded = r.recorded();
    let first_run = r.hub.body_bytes();

    r.hub.rate_limit(None);
    let out = r.run(&["pull", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let doc = json(&out);
    assert_eq!(doc["files"][0]["reused_bytes"].as_u64().unwrap(), recorded);
    assert!(r.hub.body_bytes() - first_run <= data.len() as u64 - recorded);
    assert_eq!(std::fs::read(r.dest()).unwrap(), data);
}

/// The root's lock over SSH is a real `flock` on the target: held while a run is going (a
/// local `flock` on the same file is refused, `--no-wait` fails naming the holder), and let go
/// when the holding run is killed with SIGKILL: sshd closes its session, which ends the remote
/// holder, so the next run neither finds a stale lock nor a wrong file.
#[test]
fn the_root_lock_lives_on_the_target_and_dies_with_its_holder() {
    use lifeos_spark::host::{Host, LocalHost};
    let data = bytes_of(8 * MIB, 33);
    let Some(r) = Remote::start(&data) else {
        return;
    };
    r.hub.rate_limit(Some(MIB as u64));
    let mut first = r
        .cmd(&["pull", "--connections", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lock_dir = r.server.home().join("comfyui/.lifeos");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lock_dir.join("lock.holder").exists() {
        assert!(
            Instant::now() < deadline,
            "the first run never took the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let local = LocalHost::new();
    assert!(local.try_lock(&lock_dir.join("lock")).unwrap().is_none());
    let out = r.run(&["pull", "--no-wait"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("held by pid {}", first.id())),
        "{}",
        text(&out)
    );
    first.kill().unwrap();
    first.wait().unwrap();
    r.hub.rate_limit(None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while local.try_lock(&lock_dir.join("lock")).unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the killed run's lock was never released"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = r.run(&["pull"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        sha256_hex(&std::fs::read(r.dest()).unwrap()),
        sha256_hex(&data)
    );
}
