//! Integrity at the edges, through the binary: hostile ids, two runs on one root at once, a
//! password in a URL, `HF_ENDPOINT` mirrors. Bytes on disk are checked with sha256 computed
//! here; the tool's own report is never the only evidence.

mod fake_hub;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use fake_hub::{bytes_of, sha256_hex, FakeHub, Fault};
use serde_json::Value;

const MIB: usize = 1 << 20;

type Env = fake_hub::CliEnv;

impl Env {
    fn dest(&self) -> PathBuf {
        self.root().join("models/m.bin")
    }

    fn stamp(&self) -> PathBuf {
        self.root().join("models/.m.bin.verified")
    }

    /// A manifest (named `name`) of one file: `url` into `models/m.bin` with `data`'s hash.
    fn manifest(&self, name: &str, id: &str, url: &str, data: &[u8]) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.yaml"));
        let text = format!(
            "name: {name}\nmodels:\n  - id: {id}\n    url: {url}\n    dest: models/m.bin\n    size: {}\n    sha256: {}\n",
            data.len(),
            sha256_hex(data)
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn text(out: &Output) -> String {
    fake_hub::output_text(out)
}

fn sha_of(path: &Path) -> Option<String> {
    std::fs::read(path).ok().map(|d| sha256_hex(&d))
}

#[test]
fn a_70000_character_id_is_listed_and_pulled_without_a_panic() {
    let env = Env::new();
    let data = bytes_of(4096, 1);
    env.hub.put("/m", data.clone(), "e1");
    let id = "i".repeat(70_000);
    let manifest = env.manifest("long", &id, &env.hub.url("/m"), &data);
    for args in [&["list"][..], &["pull"], &["list"], &["verify"]] {
        let out = env.run(&manifest, args);
        let all = text(&out);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            &all[..all.len().min(2000)]
        );
        assert!(!all.contains("panicked"), "{args:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("iii…"),
            "{args:?}: the id is cut with an ellipsis"
        );
        assert!(stdout.lines().all(|l| l.chars().count() < 1000), "{args:?}");
    }
    assert_eq!(sha_of(&env.dest()), Some(sha256_hex(&data)));
    // The JSON document keeps the id whole.
    let out = env.run(&manifest, &["list", "--json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["files"][0]["id"].as_str().unwrap().len(), 70_000);
    assert_eq!(doc["files"][0]["presence"], "present");
}

#[test]
fn a_manifest_with_a_byte_order_mark_is_read() {
    let env = Env::new();
    let data = bytes_of(1000, 2);
    env.hub.put("/m", data.clone(), "e1");
    let manifest = env.manifest("bom", "m", &env.hub.url("/m"), &data);
    let body = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, [&b"\xef\xbb\xbf"[..], &body].concat()).unwrap();
    let out = env.run(&manifest, &["pull"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(sha_of(&env.dest()), Some(sha256_hex(&data)));
}

/// Start a pull of `manifest` in the background.
fn spawn_pull(env: &Env, manifest: &Path, extra: &[&str]) -> std::process::Child {
    let mut args = vec!["pull", "--connections", "2"];
    args.extend_from_slice(extra);
    env.cmd(manifest, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The file at the final path is the good one or absent, and a stamp names only the bytes
/// that are really there (sha256 computed here, size and mtime from the filesystem).
fn assert_no_wrong_file(env: &Env, good: &str) {
    let Some(actual) = sha_of(&env.dest()) else {
        assert!(!env.stamp().exists(), "a stamp without a file");
        return;
    };
    assert_eq!(actual, good, "a wrong file at the final path");
    if let Ok(stamp) = std::fs::read(env.stamp()) {
        let stamp: Value = serde_json::from_slice(&stamp).unwrap();
        let meta = std::fs::metadata(env.dest()).unwrap();
        assert_eq!(stamp["sha256"], actual);
        assert_eq!(stamp["size"], meta.len());
        let mtime = meta
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert_eq!(stamp["mtime"], mtime);
    }
}

#[test]
fn two_pulls_into_one_root_never_leave_a_wrong_file_and_the_second_waits() {
    let data = bytes_of(2 * MIB, 3);
    let good = sha256_hex(&data);
    for round in 0..4 {
        let env = Env::new();
        // 2 MiB at 3 MiB/s: each pull takes most of a second, so the two overlap.
        env.hub.rate_limit(Some(3 * MIB as u64));
        env.hub.put("/good", data.clone(), "g");
        env.hub.put("/bad", data.clone(), "b");
        for _ in 0..64 {
            env.hub.fault("/bad", Fault::Corrupt);
        }
        let a = env.manifest("good", "m", &env.hub.url("/good"), &data);
        // Even rounds: a corrupt source for the same dest; odd rounds: the same manifest twice.
        let b = match round % 2 {
            0 => env.manifest("bad", "m", &env.hub.url("/bad"), &data),
            _ => a.clone(),
        };
        let (first, second) = if round % 4 < 2 { (&a, &b) } else { (&b, &a) };
        let one = spawn_pull(&env, first, &[]);
        std::thread::sleep(Duration::from_millis(150));
        let two = spawn_pull(&env, second, &[]);
        let (one, two) = (
            one.wait_with_output().unwrap(),
            two.wait_with_output().unwrap(),
        );
        assert_no_wrong_file(&env, &good);
        let waited = [&one, &two].iter().any(|o| {
            String::from_utf8_lossy(&o.stderr).contains("Blocking waiting for file lock on")
        });
        assert!(
            waited,
            "round {round}: nobody waited\n{}\n{}",
            text(&one),
            text(&two)
        );
        let (good_run, other) = if first == &a {
            (&one, &two)
        } else {
            (&two, &one)
        };
        assert!(
            good_run.status.success(),
            "round {round}: {}",
            text(good_run)
        );
        if round % 2 == 0 && first != &a {
            // The corrupt one went first: it failed clearly and left nothing under the name.
            assert!(!other.status.success(), "{}", text(other));
            assert!(String::from_utf8_lossy(&other.stderr).contains("sha256 mismatch"));
        } else {
            // It ran after the good one, which it found present.
            assert!(other.status.success(), "round {round}: {}", text(other));
            assert!(String::from_utf8_lossy(&other.stdout).contains("present"));
        }
        assert_eq!(sha_of(&env.dest()), Some(good.clone()));
        let out = env.run(&a, &["verify"]);
        assert!(out.status.success(), "{}", text(&out));
    }
}

#[test]
fn no_wait_fails_at_once_naming_the_holder() {
    let env = Env::new();
    let data = bytes_of(4 * MIB, 4);
    env.hub.rate_limit(Some(2 * MIB as u64));
    env.hub.put("/good", data.clone(), "g");
    let a = env.manifest("good", "m", &env.hub.url("/good"), &data);
    let holder = spawn_pull(&env, &a, &[]);
    let holder_file = env.root().join(".lifeos/lock.holder");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !holder_file.exists() {
        assert!(
            Instant::now() < deadline,
            "the first run never took the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    let out = env.run(&a, &["pull", "--no-wait"]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another run holds the lock on"), "{err}");
    assert!(
        err.contains(&format!("held by pid {}", holder.id())),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
    let first = holder.wait_with_output().unwrap();
    assert!(first.status.success(), "{}", text(&first));
    assert_no_wrong_file(&env, &sha256_hex(&data));
    assert!(env.stamp().exists());
}

#[test]
fn a_url_password_is_never_printed_or_stored() {
    let env = Env::new();
    let data = bytes_of(MIB, 5);
    env.hub.put("/m", data.clone(), "e1");
    let url = format!("http://user:s3cretpw@{}/m", env.hub.addr);
    let manifest = env.manifest("pw", "m", &url, &data);
    // The probe passes, the GETs are refused: the error names the URL and a record is left.
    for _ in 0..4 {
        env.hub.fault("/m", Fault::Status(404));
    }
    let failed = env.run(&manifest, &["pull"]);
    let failed_json = env.run(&manifest, &["pull", "--json"]);
    let listed = env.run(&manifest, &["list", "--json"]);
    let record = std::fs::read_to_string(env.root().join("models/m.bin.part.json")).unwrap();
    for (what, out) in [("pull", &failed), ("pull --json", &failed_json)] {
        assert!(!out.status.success(), "{what}: {}", text(out));
    }
    assert!(listed.status.success(), "{}", text(&listed));
    let doc: Value = serde_json::from_slice(&failed_json.stdout).unwrap();
    let shown = format!("http://user:***@{}/m", env.hub.addr);
    assert!(
        doc["files"][0]["error"].as_str().unwrap().contains(&shown),
        "{doc}"
    );
    assert!(String::from_utf8_lossy(&failed.stderr).contains(&shown));
    let record: Value = serde_json::from_str(&record).unwrap();
    assert_eq!(record["url"], shown.as_str());
    assert_eq!(record["url_sha256"], sha256_hex(url.as_bytes()));
    for out in [&failed, &failed_json, &listed] {
        let all = text(out);
        assert!(!all.contains("s3cretpw"), "password printed:\n{all}");
    }
    assert!(!record.to_string().contains("s3cretpw"));
    // The record still matches the same URL, and the file lands whole.
    env.hub.clear_faults();
    let out = env.run(&manifest, &["pull"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("s3cretpw"));
    assert_eq!(sha_of(&env.dest()), Some(sha256_hex(&data)));
}

#[test]
fn hf_endpoint_moves_hub_urls_to_the_mirror_and_the_token_goes_only_there() {
    let env = Env::new();
    let cdn = FakeHub::start();
    let data = bytes_of(MIB, 6);
    let path = "/org/repo/resolve/main/m.bin";
    env.hub.put(path, data.clone(), "e1");
    cdn.put(path, data.clone(), "e1");
    // The mirror answers like the hub: a redirect to its CDN (another origin).
    env.hub.redirect_to(&cdn, false);
    let manifest = env.manifest("hub", "m", &format!("https://huggingface.co{path}"), &data);
    let endpoint = format!("http://{}", env.hub.addr);
    let run = |args: &[&str]| {
        env.cmd(&manifest, args)
            .env("HF_ENDPOINT", &endpoint)
            .env("HF_TOKEN", "hf_mirrortoken")
            .output()
            .unwrap()
    };
    let rewritten = format!("{endpoint}{path}");
    let plan = run(&["pull", "--dry-run", "--json"]);
    assert!(plan.status.success(), "{}", text(&plan));
    let doc: Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(doc["files"][0]["url"], rewritten.as_str());
    let out = run(&["pull", "-v"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("`m` from `{rewritten}`")),
        "{}",
        text(&out)
    );
    assert_eq!(sha_of(&env.dest()), Some(sha256_hex(&data)));
    let at_mirror = env.hub.seen();
    assert!(!at_mirror.is_empty());
    assert!(at_mirror.iter().all(|s| s.path == path));
    assert!(
        at_mirror
            .iter()
            .all(|s| s.authorization.as_deref() == Some("Bearer hf_mirrortoken")),
        "{at_mirror:?}"
    );
    let at_cdn = cdn.gets();
    assert!(!at_cdn.is_empty(), "the bytes came from the CDN");
    assert!(
        at_cdn.iter().all(|s| s.authorization.is_none()),
        "{at_cdn:?}"
    );
    let listed = run(&["list", "--json"]);
    let doc: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(doc["files"][0]["url"], rewritten.as_str());
    assert!(!text(&out).contains("hf_mirrortoken"));
}

/// Every `dest` form that would collide with the downloader's own files (or the root, or the
/// lock) is refused before anything is fetched or written; a collision names both entries
/// with their lines.
#[test]
fn each_refused_dest_form_is_refused_naming_file_line_and_both_entries() {
    let env = Env::new();
    let data = bytes_of(1000, 7);
    env.hub.put("/m", data.clone(), "e1");
    let sha = sha256_hex(&data);
    let cases = [
        (
            "models/m.bin.part",
            "is the partial download of another entry's dest",
        ),
        ("models/m.bin.part.json", "is the partial download record"),
        ("models/.m.bin.verified", "is the verification stamp"),
        ("models/m.bin", "is also the dest of `models[0]`"),
        ("models", "is a folder of another entry's dest"),
        (".", "names a folder"),
        ("models/x.part", "ends in `.part`"),
        ("models/.x.verified", "ends in `.verified`"),
        (".lifeos/lock", "where the tool keeps its lock"),
    ];
    for (dest, why) in cases {
        let path = env.dir.path().join("refused.yaml");
        let yaml = format!(
            "name: t\nmodels:\n  - id: a\n    url: {url}\n    dest: models/m.bin\n    size: 1000\n    sha256: {sha}\n  - id: b\n    url: {url}\n    dest: \"{dest}\"\n    size: 1000\n    sha256: {sha}\n",
            url = env.hub.url("/m")
        );
        std::fs::write(&path, yaml).unwrap();
        let out = env.run(&path, &["pull"]);
        assert_eq!(out.status.code(), Some(1), "{dest}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        let at = format!("{}:10:11: `models[1].dest` (id `b`)", path.display());
        assert!(err.contains(&at), "{dest}: want {at} in {err}");
        assert!(err.contains(why), "{dest}: want {why} in {err}");
        if why.contains("another entry") || why.contains("models[0]") {
            let other = format!("(`models[0]`, id `a`, at {}:5:11)", path.display());
            assert!(err.contains(&other), "{dest}: {err}");
        }
        assert!(!env.root().exists(), "{dest}: something was written");
        assert!(env.hub.seen().is_empty(), "{dest}: something was fetched");
    }
}
