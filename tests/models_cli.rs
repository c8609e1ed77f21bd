//! `models pull|verify|list` through the binary: kill -9 and SIGTERM mid-download and resume,
//! JSON documents, exit codes, manifest errors. The server is the in-process fake hub; the
//! binary uses the real piece size (4 MiB), so files here are a few pieces long.

mod fake_hub;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use fake_hub::{bytes_of, sha256_hex};
use serde_json::Value;

const MIB: usize = 1 << 20;

type Env = fake_hub::CliEnv;

impl Env {
    fn dest(&self) -> PathBuf {
        self.root().join("models/checkpoints/m.safetensors")
    }

    /// Serve `data` at `/m` and write a manifest naming it.
    fn manifest(&self, data: &[u8]) -> PathBuf {
        self.hub.put("/m", data.to_vec(), "e1");
        let path = self.dir.path().join("m.yaml");
        let text = format!(
            "name: test\nmodels:\n  - id: m\n    url: {}\n    dest: models/checkpoints/m.safetensors\n    size: {}\n    sha256: {}\n",
            self.hub.url("/m"),
            data.len(),
            sha256_hex(data)
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    fn json(&self, manifest: &Path, args: &[&str]) -> (Value, Output) {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.run(manifest, &all);
        let doc = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out)));
        (doc, out)
    }

    /// A manifest naming `data` at `url` (a server other than the hub).
    fn manifest_at(&self, url: &str, data: &[u8]) -> PathBuf {
        let path = self.dir.path().join("other.yaml");
        let text = format!(
            "name: test\nmodels:\n  - id: m\n    url: {url}\n    dest: models/checkpoints/m.safetensors\n    size: {}\n    sha256: {}\n",
            data.len(),
            sha256_hex(data)
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Bytes the `.part.json` record names as finished.
    fn recorded(&self) -> u64 {
        let path = PathBuf::from(format!("{}.part.json", self.dest().display()));
        let Ok(data) = std::fs::read(path) else {
            return 0;
        };
        let Ok(v) = serde_json::from_slice::<Value>(&data) else {
            return 0;
        };
        v["done"].as_array().map_or(0, |r| {
            r.iter()
                .map(|r| r[1].as_u64().unwrap() - r[0].as_u64().unwrap())
                .sum()
        })
    }

    /// Start a throttled pull and wait until at least `bytes` are recorded as finished.
    fn start_slow_pull(&self, manifest: &Path, bytes: u64) -> Child {
        let child = self
            .cmd(manifest, &["pull", "--connections", "2"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.recorded() < bytes {
            assert!(Instant::now() < deadline, "no progress recorded");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }
}

/// Send `signal` (`-INT`, `-TERM`) to a running pull; it must exit 130. Its output.
fn stop_with(child: Child, signal: &str) -> Output {
    Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    out
}

fn text(out: &Output) -> String {
    fake_hub::output_text(out)
}

#[test]
fn kill_9_mid_download_resumes_per_piece() {
    let env = Env::new();
    let data = bytes_of(24 * MIB, 21);
    let manifest = env.manifest(&data);
    env.hub.rate_limit(Some(4 * MIB as u64)); // a piece takes a second per connection
    let mut child = env.start_slow_pull(&manifest, 8 * MIB as u64);
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let recorded = env.recorded();
    let first_run = env.hub.body_bytes();

    env.hub.rate_limit(None);
    let out = env.run(&manifest, &["pull", "--connections", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read(env.dest()).unwrap(), data);
    let second_run = env.hub.body_bytes() - first_run;
    assert!(recorded >= 8 * MIB as u64);
    assert!(
        second_run <= data.len() as u64 - recorded,
        "re-fetched recorded pieces: {second_run} bytes after {recorded} recorded"
    );
}

/// kill -9 after the `.part` is preallocated and before the first checkpoint (a second later):
/// the record written before the preallocation says nothing is finished yet, so the next run
/// does not take the zero-filled `.part` for a complete download of another tool.
#[test]
fn kill_9_right_after_preallocation_leaves_an_empty_record() {
    let env = Env::new();
    let data = bytes_of(16 * MIB, 23);
    let manifest = env.manifest(&data);
    env.hub.rate_limit(Some(1024)); // no body chunk (16 KiB) arrives for 16 seconds
    let mut child = env
        .cmd(&manifest, &["pull", "--connections", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let part = PathBuf::from(format!("{}.part", env.dest().display()));
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(&part).map_or(true, |m| m.len() != data.len() as u64) {
        assert!(
            Instant::now() < deadline,
            "the .part was never preallocated"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let record = PathBuf::from(format!("{}.part.json", env.dest().display()));
    let record: Value = serde_json::from_slice(
        &std::fs::read(&record).expect("a record beside the preallocated .part"),
    )
    .unwrap();
    assert_eq!(record["done"], serde_json::json!([]));

    env.hub.rate_limit(None);
    // The killed run's bodies end on the hub's side only when it next writes to the closed
    // connections (a 16 KiB chunk every 16 s at this rate): their bytes must not count here.
    let deadline = Instant::now() + Duration::from_secs(40);
    while env.hub.in_flight() > 0 {
        assert!(
            Instant::now() < deadline,
            "the killed run's bodies never ended"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = env.hub.body_bytes();
    let out = env.run(&manifest, &["pull", "--connections", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !text(&out).contains("arrived with sha256"),
        "{}",
        text(&out)
    );
    assert_eq!(env.hub.body_bytes() - before, data.len() as u64);
    assert_eq!(std::fs::read(env.dest()).unwrap(), data);
}

#[test]
fn sigterm_stops_cleanly_keeps_the_partial_and_says_how_to_resume() {
    let env = Env::new();
    let data = bytes_of(16 * MIB, 22);
    let manifest = env.manifest(&data);
    env.hub.rate_limit(Some(4 * MIB as u64));
    let child = env.start_slow_pull(&manifest, 4 * MIB as u64);
    let out = stop_with(child, "-TERM");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("run the same command again to resume"),
        "{stderr}"
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("interrupted  m") && !table.contains("\n0 B fetched"),
        "{table}"
    );
    assert!(!env.dest().exists());
    let recorded = env.recorded();
    assert!(recorded >= 4 * MIB as u64, "the record was kept");

    env.hub.rate_limit(None);
    let before = env.hub.body_bytes();
    let (doc, out) = env.json(&manifest, &["pull"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(doc["files"][0]["action"], "fetched");
    assert_eq!(doc["files"][0]["reused_bytes"].as_u64().unwrap(), recorded);
    assert_eq!(env.hub.body_bytes() - before, data.len() as u64 - recorded);
    assert_eq!(std::fs::read(env.dest()).unwrap(), data);
}

#[test]
fn list_dry_run_pull_and_verify_report_in_json() {
    let env = Env::new();
    let data = bytes_of(5 * MIB, 23);
    let manifest = env.manifest(&data);

    let (doc, _) = env.json(&manifest, &["list"]);
    assert_eq!(doc["files"][0]["presence"], "missing");
    assert_eq!(doc["total_bytes"], data.len() as u64);

    let (doc, out) = env.json(&manifest, &["pull", "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(doc["dry_run"], true);
    assert_eq!(doc["needed_bytes"], data.len() as u64);
    assert_eq!(doc["files"][0]["action"], "would-fetch");
    assert!(env.hub.seen().is_empty(), "a dry run fetches nothing");
    assert!(!env.root().exists(), "a dry run creates nothing");

    let (doc, out) = env.json(&manifest, &["pull"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(doc["files"][0]["action"], "fetched");
    assert_eq!(doc["fetched_bytes"], data.len() as u64);
    // Off a terminal: a line per file started and finished, on stderr.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("fetching `m` (5.24 MB)") && stderr.contains("fetched `m`: 5.24 MB in"),
        "{stderr}"
    );
    let (doc, _) = env.json(&manifest, &["list"]);
    assert_eq!(doc["files"][0]["presence"], "present");

    let (doc, out) = env.json(&manifest, &["verify"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(doc["files"][0]["finding"], "ok");

    let mut bad = data.clone();
    bad[MIB] ^= 1;
    std::fs::write(env.dest(), &bad).unwrap();
    let (doc, out) = env.json(&manifest, &["verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(doc["files"][0]["finding"], "wrong-hash");
    assert_eq!(doc["files"][0]["actual_sha256"], sha256_hex(&bad));

    std::fs::write(env.dest(), &bad[..100]).unwrap();
    let (doc, _) = env.json(&manifest, &["verify"]);
    assert_eq!(doc["files"][0]["finding"], "wrong-size");
    std::fs::remove_file(env.dest()).unwrap();
    let (doc, _) = env.json(&manifest, &["verify"]);
    assert_eq!(doc["files"][0]["finding"], "missing");
}

#[test]
fn a_bad_manifest_names_file_line_and_field_and_an_unknown_id_is_a_usage_error() {
    let env = Env::new();
    let manifest = env.manifest(b"abc");
    let text_in = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("dest: models/", "dest: ../models/");
    std::fs::write(&manifest, text_in).unwrap();
    let out = env.run(&manifest, &["list"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let at = format!("{}:5:11: `models[0].dest` (id `m`)", manifest.display());
    assert!(
        stderr.starts_with("error: invalid manifest")
            && stderr.contains(&at)
            && stderr.contains("hint: "),
        "{stderr}"
    );

    let manifest = env.manifest(b"abc");
    let out = env.run(&manifest, &["pull", "--only", "m,nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`nope` is not an id"));
}

#[test]
fn the_default_manifest_is_embedded() {
    let env = Env::new();
    let out = Command::new(env!("CARGO_BIN_EXE_lifeos-spark"))
        .env("HOME", env.dir.path())
        .args(["models", "list", "--json", "--root"])
        .arg(env.root())
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["manifest"], "sdxl-faceid");
    assert_eq!(doc["files"].as_array().unwrap().len(), 17);
    assert_eq!(doc["total_bytes"], 13_872_302_586u64);
}

fn part_of(dest: &Path) -> PathBuf {
    PathBuf::from(format!("{}.part", dest.display()))
}

/// A server that answers a Range request with the whole file: the run says it starts over
/// (after it announced the resume of the first whole 4 MiB piece), and the request log shows one plain GET of everything.
#[test]
fn a_server_that_ignores_range_is_reported_as_starting_over() {
    let env = Env::new();
    let data = bytes_of(10 * MIB, 31);
    let manifest = env.manifest(&data);
    std::fs::create_dir_all(env.dest().parent().unwrap()).unwrap();
    std::fs::write(part_of(&env.dest()), &data[..5 * MIB]).unwrap();
    env.hub.always(fake_hub::Fault::IgnoreRange);
    let out = env.run(&manifest, &["pull", "--connections", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("resuming at 4.19 MB"), "{stderr}");
    assert!(
        stderr.contains("`m`: server ignores Range: starting over from zero"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(env.dest()).unwrap(), data);
    let plain = env.hub.gets().iter().filter(|g| g.range.is_none()).count();
    assert_eq!(plain, 1, "{:?}", env.hub.gets());
}

/// Without a terminal, every retry is one line on stderr: which try, why, the next wait.
#[test]
fn retries_print_one_line_each_without_a_terminal() {
    let env = Env::new();
    let data = bytes_of(MIB, 32);
    let manifest = env.manifest(&data);
    env.hub.fault("/m", fake_hub::Fault::Status(503));
    env.hub.fault("/m", fake_hub::Fault::Status(503));
    let out = env.run(&manifest, &["pull"]);
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let retries: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("failed: HTTP 503"))
        .collect();
    assert_eq!(retries.len(), 2, "{stderr}");
    assert!(
        retries[0].starts_with("`m`: try 1 of 9 failed: HTTP 503 from `"),
        "{stderr}"
    );
    assert!(
        retries[1].contains("try 2 of 9") && retries[1].contains("; next in "),
        "{stderr}"
    );
    assert_eq!(env.hub.gets().iter().filter(|g| g.status == 503).count(), 2);
    assert_eq!(std::fs::read(env.dest()).unwrap(), data);
}

/// Nothing listens on the port: a few quick tries, then an error that says so, well under
/// 10 s, and no promise about a partial that was never written.
#[test]
fn connection_refused_fails_fast_with_a_hint() {
    let env = Env::new();
    let data = bytes_of(1000, 33);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let path = env.manifest_at(&format!("http://127.0.0.1:{port}/m"), &data);
    let start = Instant::now();
    let out = env.run(&path, &["pull"]);
    let took = start.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("nothing answers at `127.0.0.1:{port}`")),
        "{stderr}"
    );
    assert!(stderr.contains("hint: check the network"), "{stderr}");
    assert!(!stderr.contains("partial download is kept"), "{stderr}");
    assert_eq!(stderr.matches("failed: ").count(), 2, "{stderr}");
    assert!(!part_of(&env.dest()).exists());
}

/// Ctrl-C before a byte arrived (the server accepted and never answered): exit 130, and the
/// message does not promise kept parts; no `.part` is left.
#[test]
fn ctrl_c_before_any_byte_says_nothing_is_kept() {
    let env = Env::new();
    let data = bytes_of(1000, 34);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/m", listener.local_addr().unwrap());
    let path = env.manifest_at(&url, &data);
    let child = env
        .cmd(&path, &["pull"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (_conn, _) = listener.accept().unwrap();
    let out = stop_with(child, "-INT");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nothing is kept, the next run starts from zero"),
        "{stderr}"
    );
    assert!(!stderr.contains("resume"), "{stderr}");
    assert!(!part_of(&env.dest()).exists());
}
