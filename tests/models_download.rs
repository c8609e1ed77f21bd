//! The downloader against a real HTTP server with faults injected, one test per behaviour of
//! issue 3. Small files and small pieces (64 KiB) keep it fast while still cutting files into
//! many pieces over several connections.

mod fake_hub;
#[path = "support/formats.rs"]
mod formats;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_hub::{bytes_of, sha256_hex, FakeHub, Fault};
use lifeos_spark::host::{Command, FileStat, Host, LocalHost, Output, RandomWrite};
use lifeos_spark::models::fetch::{Connections, FetchOptions, RetryPolicy};
use lifeos_spark::models::hub::Hub;
use lifeos_spark::models::manifest::Manifest;
use lifeos_spark::models::ops::{self, PullOptions, Target};
use lifeos_spark::models::partial;
use lifeos_spark::models::report::{PullReport, PullStatus};
use lifeos_spark::ui::{Printer, Verbosity};

const PIECE: u64 = 64 << 10;
const SIZE: usize = (2 << 20) + 12_345; // not a multiple of the piece size

struct Setup {
    dir: tempfile::TempDir,
    hub: FakeHub,
}

fn setup() -> Setup {
    Setup {
        dir: tempfile::tempdir().unwrap(),
        hub: FakeHub::start(),
    }
}

fn printer() -> Printer {
    Printer::plain(Verbosity::Quiet)
}

/// A manifest of `(id, url, dest, bytes)` entries.
fn manifest(entries: &[(&str, String, &str, &[u8])]) -> Manifest {
    let mut text = "name: test\nmodels:\n".to_string();
    for (id, url, dest, data) in entries {
        text += &format!(
            "  - id: {id}\n    url: {url}\n    dest: {dest}\n    size: {}\n    sha256: {}\n",
            data.len(),
            sha256_hex(data)
        );
    }
    Manifest::parse(&text, "test.yaml", false).unwrap()
}

fn options(hub: &str, token: Option<&str>, connections: usize) -> PullOptions {
    PullOptions {
        only: vec![],
        jobs: 2,
        fetch: FetchOptions {
            connections: Connections::Exactly(connections),
            piece_bytes: PIECE,
            retry: RetryPolicy {
                attempts: 4,
                base: Duration::from_millis(10),
                max: Duration::from_millis(50),
            },
        },
        dry_run: false,
        hub: Hub::new(hub, token.map(str::to_string)).unwrap(),
        from: None,
    }
}

impl Setup {
    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// The root on `host`.
    fn target(&self, host: impl Host + 'static) -> Target {
        Target {
            host: Arc::new(host),
            root: self.root().display().to_string(),
        }
    }

    /// `options` against this hub.
    fn options(&self, token: Option<&str>, connections: usize) -> PullOptions {
        options(&self.hub.url(""), token, connections)
    }

    fn pull_with(&self, m: &Manifest, opts: &PullOptions) -> anyhow::Result<PullReport> {
        ops::pull(&self.target(LocalHost::new()), m, opts, &printer())
    }

    fn pull(&self, m: &Manifest) -> PullReport {
        self.pull_with(m, &self.options(None, 4)).unwrap()
    }

    /// One file served at `/m.bin`.
    fn one_file(&self, data: &[u8]) -> Manifest {
        self.hub.put("/m.bin", data.to_vec(), "v1");
        manifest(&[("m", self.hub.url("/m.bin"), "models/m.bin", data)])
    }

    /// `one_file`, but the hub redirects to a CDN that serves the bytes (`get_only`: the GETs
    /// only, the hub answers HEAD itself). The CDN must live as long as the test needs it.
    fn one_file_behind_cdn(&self, data: &[u8], get_only: bool) -> (FakeHub, Manifest) {
        let cdn = FakeHub::start();
        let m = self.one_file(data);
        cdn.put("/m.bin", data.to_vec(), "cdn1");
        self.hub.redirect_to(&cdn, get_only);
        (cdn, m)
    }

    fn dest(&self) -> PathBuf {
        self.root().join("models/m.bin")
    }

    /// The file landed at `dest` with exactly `data`.
    fn assert_landed(&self, data: &[u8]) {
        assert_eq!(std::fs::read(self.dest()).unwrap(), data);
    }
}

/// A fresh hub serving `bytes_of(len, seed)` as `one_file`: the setup, the bytes, the manifest.
fn serving_one_file(len: usize, seed: u64) -> (Setup, Vec<u8>, Manifest) {
    let s = setup();
    let data = bytes_of(len, seed);
    let m = s.one_file(&data);
    (s, data, m)
}

/// The first file was fetched; its error shown when it was not.
fn assert_fetched(report: &PullReport) {
    assert_eq!(
        report.files[0].status,
        PullStatus::Fetched,
        "{:?}",
        report.files[0].error
    );
}

fn error_text(report: &PullReport) -> String {
    let f = report
        .files
        .iter()
        .find(|f| f.failure.is_some())
        .expect("a failed file");
    printer().render_error(f.failure.as_ref().unwrap())
}

fn assert_no_leftovers(dest: &Path) {
    assert!(!partial::part_path(dest).exists(), ".part left behind");
    assert!(
        !partial::state_path(dest).exists(),
        ".part.json left behind"
    );
}

#[test]
fn segmented_pull_lands_verified_and_is_skipped_next_time() {
    let (s, data, m) = serving_one_file(SIZE, 1);
    let report = s.pull(&m);
    assert_fetched(&report);
    s.assert_landed(&data);
    assert_no_leftovers(&s.dest());
    let ranged = s.hub.gets().iter().filter(|g| g.range.is_some()).count();
    assert_eq!(
        ranged as u64,
        (SIZE as u64).div_ceil(PIECE),
        "one range request per piece"
    );
    assert!(s
        .hub
        .gets()
        .iter()
        .any(|g| g.range.as_deref() == Some(&format!("bytes={PIECE}-{}", 2 * PIECE - 1)[..])));
    assert_eq!(s.hub.body_bytes(), SIZE as u64);

    let before = s.hub.seen().len();
    let again = s.pull(&m);
    assert_eq!(again.files[0].status, PullStatus::Present);
    assert_eq!(
        s.hub.seen().len(),
        before,
        "a verified file costs no request"
    );
}

#[test]
fn a_stamped_file_is_skipped_without_rehashing_and_verify_rehashes() {
    let (s, data, m) = serving_one_file(300_000, 2);
    s.pull(&m);
    let dest = s.dest();
    assert!(
        formats::stamp_is_current(&dest, &sha256_hex(&data)),
        "no current stamp"
    );
    // Same size, same mtime, other bytes: only a re-hash can notice.
    let mtime = std::fs::metadata(&dest).unwrap().modified().unwrap();
    let mut bad = data.clone();
    bad[10] ^= 1;
    std::fs::write(&dest, &bad).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&dest)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(s.pull(&m).files[0].status, PullStatus::Present);

    let v = ops::verify(&s.target(LocalHost::new()), &m, &[], 2, &printer()).unwrap();
    assert!(!v.ok);
    assert_eq!(
        v.files[0].actual_sha256.as_deref(),
        Some(&sha256_hex(&bad)[..])
    );
}

#[test]
fn dropped_connections_resume_inside_the_piece() {
    let (s, data, m) = serving_one_file(SIZE, 3);
    for _ in 0..3 {
        s.hub.fault("/m.bin", Fault::DropAfter(40_000));
    }
    let report = s.pull(&m);
    assert_fetched(&report);
    s.assert_landed(&data);
    // The retries asked for the rest of the piece, not the piece again.
    let resumed = s
        .hub
        .gets()
        .iter()
        .filter(|g| {
            g.range.as_ref().is_some_and(|r| {
                r.starts_with("bytes=")
                    && !r[6..]
                        .split('-')
                        .next()
                        .unwrap()
                        .parse::<u64>()
                        .unwrap()
                        .is_multiple_of(PIECE)
            })
        })
        .count();
    assert!(resumed >= 3, "{:?}", s.hub.gets());
    assert!(
        s.hub.body_bytes() < SIZE as u64 + 3 * 40_000 + 1,
        "bytes were fetched twice"
    );
}

#[test]
fn a_connection_that_stalls_is_given_up_after_30_s_and_resumed() {
    let (s, data, m) = serving_one_file(SIZE, 12);
    // Headers and 40,000 bytes, then silence on an open connection.
    s.hub.fault("/m.bin", Fault::StallAfter(40_000));
    let mut opts = s.options(None, 1);
    opts.fetch.piece_bytes = 4 << 20; // the whole file in one range
    let started = Instant::now();
    let report = s.pull_with(&m, &opts).unwrap();
    let took = started.elapsed();
    assert_fetched(&report);
    s.assert_landed(&data);
    // Given up after the documented 30 s without a byte, not before, and not much later.
    assert!(
        took >= Duration::from_secs(30) && took < Duration::from_secs(90),
        "{took:?}"
    );
    // The retry asked for the rest only, and nothing was sent twice.
    let ranges: Vec<_> = s.hub.gets().into_iter().map(|g| g.range).collect();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert_eq!(ranges[1].as_deref(), Some("bytes=40000-"));
    assert_eq!(s.hub.body_bytes(), SIZE as u64);
}

#[test]
fn transient_statuses_are_retried_and_resumed() {
    let (s, data, m) = serving_one_file(SIZE, 4);
    for code in [503, 429, 500, 502] {
        s.hub.fault("/m.bin", Fault::Status(code));
    }
    let report = s.pull(&m);
    assert_fetched(&report);
    s.assert_landed(&data);
}

#[test]
fn transient_failures_give_up_after_the_retry_budget_and_keep_the_partial() {
    let (s, _, m) = serving_one_file(SIZE, 5);
    s.hub.fault("/m.bin", Fault::DropAfter(PIECE / 2)); // some bytes land first
    s.hub.always(Fault::Status(503));
    let mut opts = s.options(None, 1);
    opts.fetch.piece_bytes = PIECE;
    let report = s.pull_with(&m, &opts).unwrap();
    let e = error_text(&report);
    assert!(e.contains("still failing after retries"), "{e}");
    assert!(e.contains("HTTP 503"), "{e}");
    assert!(e.contains("run the same command again to resume"), "{e}");
    assert!(!s.dest().exists());
    assert!(partial::part_path(&s.dest()).exists());
}

#[test]
fn refusals_are_not_retried_and_say_what_to_do() {
    let cases = [
        (
            Fault::Status(401),
            None,
            "HTTP 401",
            "set `HF_TOKEN` or run `huggingface-cli login`",
        ),
        (
            Fault::Gated,
            Some("hf_x"),
            "HTTP 403",
            "not in its authorized list",
        ),
        (Fault::Gated, None, "HTTP 403", "set `HF_TOKEN`"),
        (
            Fault::Status(404),
            None,
            "HTTP 404",
            "the URL of `m` in the manifest is wrong",
        ),
    ];
    for (fault, token, what, hint) in cases {
        let (s, _, m) = serving_one_file(1000, 6);
        s.hub.always(fault);
        let report = s.pull_with(&m, &s.options(token, 4)).unwrap();
        let e = error_text(&report);
        assert!(e.contains(what) && e.contains(hint), "{e}");
        assert_eq!(s.hub.gets().len(), 1, "no retry on {what}");
        assert!(!e.contains("hf_x"), "the token is never printed");
    }
}

#[test]
fn a_200_to_a_range_request_restarts_from_zero() {
    let (s, data, m) = serving_one_file(SIZE, 7);
    // A previous run left the first half, with a record.
    leave_partial(&s, &m, &data[..SIZE / 2], "\"v1\"");
    s.hub.always(Fault::IgnoreRange);
    let report = s.pull(&m);
    assert_fetched(&report);
    s.assert_landed(&data);
    let gets = s.hub.gets();
    assert!(gets[0].range.is_some(), "it tried to resume");
    let plain: Vec<_> = gets.iter().filter(|g| g.range.is_none()).collect();
    assert_eq!(plain.len(), 1, "then fetched the whole file once: {gets:?}");
    assert!(
        gets.iter().all(|g| g.status == 200),
        "no 206 was appended to the old partial"
    );
}

#[test]
fn a_changed_etag_restarts_from_zero() {
    let s = setup();
    let old = bytes_of(SIZE, 8);
    let new = bytes_of(SIZE, 9);
    s.hub.put("/m.bin", new.clone(), "v2");
    let m = manifest(&[("m", s.hub.url("/m.bin"), "models/m.bin", &new)]);
    leave_partial(&s, &m, &old[..SIZE / 2], "\"v1\"");
    let report = s.pull(&m);
    assert_fetched(&report);
    assert_eq!(
        std::fs::read(s.dest()).unwrap(),
        new,
        "no old byte survives"
    );
    let gets = s.hub.gets();
    assert_eq!(gets[0].if_range.as_deref(), Some("\"v1\""));
    assert_eq!(gets[0].status, 200);
    // Workers already under way may ask with the old ETag too; none of them gets a 206.
    assert!(gets
        .iter()
        .filter(|g| g.if_range.as_deref() == Some("\"v1\""))
        .all(|g| g.status == 200));
    assert!(gets
        .iter()
        .any(|g| g.if_range.as_deref() == Some("\"v2\"") && g.status == 206));
}

#[test]
fn a_recorded_partial_resumes_with_if_range_and_fetches_only_the_rest() {
    let (s, data, m) = serving_one_file(SIZE, 10);
    let half = (SIZE as u64 / 2 / PIECE) * PIECE;
    leave_partial(&s, &m, &data[..half as usize], "\"v1\"");
    let report = s.pull(&m);
    assert_fetched(&report);
    assert_eq!(report.files[0].reused_bytes, half);
    s.assert_landed(&data);
    assert_eq!(s.hub.body_bytes(), SIZE as u64 - half);
    assert!(s
        .hub
        .gets()
        .iter()
        .all(|g| g.if_range.as_deref() == Some("\"v1\"")));
}

#[test]
fn a_complete_partial_without_record_gets_416_and_is_verified() {
    let (s, data, m) = serving_one_file(SIZE, 11);
    std::fs::create_dir_all(s.dest().parent().unwrap()).unwrap();
    std::fs::write(partial::part_path(&s.dest()), &data).unwrap();
    let report = s.pull(&m);
    assert_fetched(&report);
    let gets = s.hub.gets();
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(
        gets[0].range.as_deref(),
        Some(&format!("bytes={SIZE}-")[..])
    );
    assert_eq!(gets[0].status, 416);
    assert_eq!(s.hub.body_bytes(), 0);
    s.assert_landed(&data);
}

#[test]
fn a_wrong_hash_is_removed_retried_once_then_reported_with_both_hashes() {
    let (s, data, m) = serving_one_file(300_000, 12);
    s.hub.always(Fault::Corrupt);
    let report = s.pull_with(&m, &s.options(None, 1)).unwrap();
    let e = error_text(&report);
    let mut bad = data.clone();
    bad[0] ^= 0xff;
    assert!(
        e.contains(&sha256_hex(&data)) && e.contains(&sha256_hex(&bad)),
        "{e}"
    );
    assert!(!s.dest().exists(), "never under the final name");
    assert_no_leftovers(&s.dest());
    assert_eq!(s.hub.gets().len(), 2, "one retry from zero");

    // Wrong once, right the second time.
    s.hub.clear_faults();
    s.hub.fault("/m.bin", Fault::Corrupt);
    let report = s.pull_with(&m, &s.options(None, 1)).unwrap();
    assert_fetched(&report);
    s.assert_landed(&data);
}

#[test]
fn the_token_goes_to_the_hub_and_never_to_the_cdn() {
    for get_only in [false, true] {
        // get_only: the hub answers HEAD itself and redirects only the GETs, so reqwest
        // follows the redirect with our Authorization header and must drop it.
        let s = setup();
        let data = bytes_of(SIZE, 13);
        let (cdn, m) = s.one_file_behind_cdn(&data, get_only);
        let report = s.pull_with(&m, &s.options(Some("hf_secret"), 4)).unwrap();
        assert_fetched(&report);
        s.assert_landed(&data);
        assert!(s
            .hub
            .seen()
            .iter()
            .all(|r| r.authorization.as_deref() == Some("Bearer hf_secret")));
        assert!(!cdn.gets().is_empty());
        assert!(
            cdn.seen().iter().all(|r| r.authorization.is_none()),
            "{:?}",
            cdn.seen()
        );
    }
}

#[test]
fn hub_linked_headers_that_disagree_with_the_manifest_stop_the_file() {
    for (sha, size, want) in [
        (Some("ab".repeat(32)), None, "has sha256 abab"),
        (None, Some(5), "is 5 bytes"),
    ] {
        let s = setup();
        let data = bytes_of(1000, 14);
        let (cdn, m) = s.one_file_behind_cdn(&data, false);
        s.hub.linked(sha.as_deref(), size);
        let report = s.pull(&m);
        let e = error_text(&report);
        assert!(e.contains(want) && e.contains("the manifest says"), "{e}");
        assert!(cdn.gets().is_empty(), "no byte fetched");
    }
}

#[test]
fn identical_files_are_fetched_once_and_linked() {
    let s = setup();
    let data = bytes_of(200_000, 15);
    let other = bytes_of(100_000, 16);
    s.hub.put("/a/det_10g.onnx", data.clone(), "a");
    s.hub.put("/b/scrfd_10g_bnkps.onnx", data.clone(), "b");
    s.hub.put("/c.bin", other.clone(), "c");
    let m = manifest(&[
        (
            "det",
            s.hub.url("/a/det_10g.onnx"),
            "models/buffalo_l/det_10g.onnx",
            &data,
        ),
        (
            "scrfd",
            s.hub.url("/b/scrfd_10g_bnkps.onnx"),
            "models/antelopev2/scrfd_10g_bnkps.onnx",
            &data,
        ),
        ("c", s.hub.url("/c.bin"), "models/c.bin", &other),
    ]);
    let report = s.pull(&m);
    let status: Vec<_> = report.files.iter().map(|f| f.status).collect();
    assert_eq!(
        status,
        [PullStatus::Fetched, PullStatus::Linked, PullStatus::Fetched]
    );
    assert!(s
        .hub
        .gets()
        .iter()
        .all(|g| g.path != "/b/scrfd_10g_bnkps.onnx"));
    let second = s.root().join("models/antelopev2/scrfd_10g_bnkps.onnx");
    assert_eq!(std::fs::read(&second).unwrap(), data);
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
    assert_eq!(
        ino(&second),
        ino(&s.root().join("models/buffalo_l/det_10g.onnx"))
    );
    assert_eq!(s.pull(&m).files[1].status, PullStatus::Present);
}

#[test]
fn a_server_without_ranges_gets_one_plain_get() {
    let (s, data, m) = serving_one_file(SIZE, 17);
    s.hub.always(Fault::IgnoreRange);
    let report = s.pull(&m);
    assert_fetched(&report);
    s.assert_landed(&data);
    assert_eq!(
        s.hub
            .gets()
            .iter()
            .filter(|g| g.range.is_none() && g.status == 200)
            .count(),
        1
    );
}

#[test]
fn not_enough_free_space_is_refused_before_any_request() {
    let s = setup();
    s.hub.put("/big.bin", vec![], "x");
    let text = format!(
        "name: t\nmodels:\n  - id: big\n    url: {}\n    dest: big.bin\n    size: 1000000000000000000\n    sha256: {}\n",
        s.hub.url("/big.bin"),
        "00".repeat(32)
    );
    let m = Manifest::parse(&text, "t.yaml", false).unwrap();
    let err = s.pull_with(&m, &s.options(None, 4)).unwrap_err();
    let e = printer().render_error(&err);
    assert!(
        e.contains("not enough free space") && e.contains("--root"),
        "{e}"
    );
    assert!(s.hub.seen().is_empty());
}

/// What an interrupted run leaves: `data` at the start of a full-size `.part`, recorded as
/// finished with `etag`.
fn leave_partial(s: &Setup, m: &Manifest, data: &[u8], etag: &str) {
    let dest = s.dest();
    let file = &m.models[0];
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let mut part = data.to_vec();
    part.resize(file.size as usize, 0);
    std::fs::write(format!("{}.part", dest.display()), &part).unwrap();
    // The record as docs/formats.md describes it, not through the tool's own type.
    formats::write_part_record(
        &dest,
        &formats::PartRecord {
            url: file.url.clone(),
            size: file.size,
            sha256: file.sha256.clone(),
            validator: Some(etag.to_string()),
            done: vec![(0, data.len() as u64)],
        },
    );
}

#[test]
fn an_expired_cdn_link_is_renewed_at_the_hub() {
    let s = setup();
    let data = bytes_of(SIZE, 18);
    let (cdn, m) = s.one_file_behind_cdn(&data, false);
    cdn.fault("/m.bin", Fault::Status(403)); // a signed URL past its expiry
    let report = s.pull_with(&m, &s.options(Some("hf_secret"), 1)).unwrap();
    assert_fetched(&report);
    s.assert_landed(&data);
    let heads = s.hub.seen().iter().filter(|r| r.method == "HEAD").count();
    assert_eq!(heads, 2, "asked the hub again after the 403");
}

#[test]
fn a_206_for_other_bytes_is_refused() {
    let (s, _, m) = serving_one_file(SIZE, 19);
    s.hub.always(Fault::ShiftedRange);
    let report = s.pull(&m);
    let e = error_text(&report);
    assert!(
        e.contains("unexpected `Content-Range: bytes ") && e.contains("for bytes "),
        "{e}"
    );
    assert!(!s.dest().exists());
}

/// The `Host` methods of a test host built on `inner: LocalHost` that act on files just as
/// `LocalHost` does (each test host writes its own `name`, `run` and `open_read`).
macro_rules! local_file_ops {
    () => {
        fn is_local(&self) -> bool {
            true
        }
        fn read_opt(&self, path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
            self.inner.read_opt(path)
        }
        fn stat(&self, path: &Path) -> anyhow::Result<Option<FileStat>> {
            self.inner.stat(path)
        }
        fn mkdir_p(&self, path: &Path) -> anyhow::Result<()> {
            self.inner.mkdir_p(path)
        }
        fn write_atomic(&self, path: &Path, data: &[u8], mode: Option<u32>) -> anyhow::Result<()> {
            self.inner.write_atomic(path, data, mode)
        }
        fn open_write(&self, path: &Path) -> anyhow::Result<Box<dyn RandomWrite>> {
            self.inner.open_write(path)
        }
        fn rename(&self, from: &Path, to: &Path) -> anyhow::Result<()> {
            self.inner.rename(from, to)
        }
        fn remove_file(&self, path: &Path) -> anyhow::Result<()> {
            self.inner.remove_file(path)
        }
        fn home(&self) -> anyhow::Result<PathBuf> {
            self.inner.home()
        }
        fn try_lock(
            &self,
            path: &Path,
        ) -> anyhow::Result<Option<Box<dyn lifeos_spark::host::HostLock>>> {
            self.inner.try_lock(path)
        }
    };
}

/// A `LocalHost` that counts the bytes read back through `open_read`.
struct CountingHost {
    inner: LocalHost,
    read: Arc<AtomicU64>,
}

struct CountingReader(Box<dyn std::io::Read + Send>, Arc<AtomicU64>);

impl std::io::Read for CountingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1.fetch_add(n as u64, Ordering::SeqCst);
        Ok(n)
    }
}

impl Host for CountingHost {
    fn name(&self) -> &str {
        "counting"
    }
    fn run(&self, cmd: &Command) -> anyhow::Result<Output> {
        self.inner.run(cmd)
    }
    fn open_read(&self, path: &Path, offset: u64) -> anyhow::Result<Box<dyn std::io::Read + Send>> {
        Ok(Box::new(CountingReader(
            self.inner.open_read(path, offset)?,
            self.read.clone(),
        )))
    }
    local_file_ops!();
}

#[test]
fn the_hash_is_built_while_streaming_and_a_resume_reads_the_partial_back_once() {
    let (s, data, m) = serving_one_file(SIZE, 20);
    let read = Arc::new(AtomicU64::new(0));
    let target = s.target(CountingHost {
        inner: LocalHost::new(),
        read: read.clone(),
    });
    let opts = s.options(None, 4);
    let report = ops::pull(&target, &m, &opts, &printer()).unwrap();
    assert_fetched(&report);
    assert_eq!(
        read.load(Ordering::SeqCst),
        0,
        "a fresh download reads nothing back"
    );

    std::fs::remove_file(s.dest()).unwrap();
    let recorded = 10 * PIECE;
    leave_partial(&s, &m, &data[..recorded as usize], "\"v1\"");
    let report = ops::pull(&target, &m, &opts, &printer()).unwrap();
    assert_fetched(&report);
    assert_eq!(
        read.load(Ordering::SeqCst),
        recorded,
        "the recorded part is read once"
    );
    s.assert_landed(&data);
}

/// A fresh hub serving `a` at `/a` and `b` at `/b`, each body taking a quarter of a second,
/// and the manifest of both.
fn two_slow_files(a: &[u8], b: &[u8]) -> (Setup, Manifest) {
    let s = setup();
    s.hub.put("/a", a.to_vec(), "a");
    s.hub.put("/b", b.to_vec(), "b");
    s.hub.rate_limit(Some(2 << 20));
    let m = manifest(&[
        ("a", s.hub.url("/a"), "a.bin", a),
        ("b", s.hub.url("/b"), "b.bin", b),
    ]);
    (s, m)
}

#[test]
fn files_and_pieces_download_in_parallel() {
    let a = bytes_of(512 << 10, 21);
    let b = bytes_of(512 << 10, 22);
    let (s, m) = two_slow_files(&a, &b);
    let mut opts = s.options(None, 1);
    opts.jobs = 1;
    opts.fetch.piece_bytes = 1 << 20;
    s.pull_with(&m, &opts).unwrap();
    assert_eq!(
        s.hub.max_in_flight(),
        1,
        "one file, one connection at a time"
    );

    // Each body waits until the expected number are open: the count cannot depend on how
    // two busy cores schedule the workers, only on how many the tool opens.
    let (s, m) = two_slow_files(&a, &b);
    s.hub.gate(Some(2));
    opts.jobs = 2;
    s.pull_with(&m, &opts).unwrap();
    assert_eq!(s.hub.max_in_flight(), 2, "--jobs 2: both files at once");

    let s = setup();
    s.hub.rate_limit(Some(2 << 20));
    s.hub.gate(Some(4));
    let m = s.one_file(&a);
    let report = s.pull_with(&m, &s.options(None, 4)).unwrap();
    assert_fetched(&report);
    assert_eq!(
        s.hub.max_in_flight(),
        4,
        "--connections 4: four pieces of one file at once"
    );
}

/// A `LocalHost` where `ln` fails (another filesystem), and `cp`, when `cp_breaks`, stops
/// halfway as on a full disk: it leaves half the bytes at its destination and fails.
struct NoLinkHost {
    inner: LocalHost,
    cp_breaks: bool,
}

impl Host for NoLinkHost {
    fn name(&self) -> &str {
        "no-link"
    }
    fn run(&self, cmd: &Command) -> anyhow::Result<Output> {
        let failed = |stderr: &str| Output {
            status: Some(1),
            stdout: vec![],
            stderr: stderr.as_bytes().to_vec(),
        };
        match cmd.program.as_str() {
            "ln" => Ok(failed("ln: Invalid cross-device link")),
            "cp" if self.cp_breaks => {
                let [.., from, to] = cmd.args.as_slice() else {
                    panic!("cp without two paths: {cmd:?}");
                };
                let data = std::fs::read(from)?;
                std::fs::write(to, &data[..data.len() / 2])?;
                Ok(failed("cp: No space left on device"))
            }
            _ => self.inner.run(cmd),
        }
    }
    fn open_read(&self, path: &Path, offset: u64) -> anyhow::Result<Box<dyn std::io::Read + Send>> {
        self.inner.open_read(path, offset)
    }
    local_file_ops!();
}

/// Without a hard link the second name is a copy, made beside it and renamed: a copy that
/// breaks off leaves nothing under the final name, and the next run completes it.
#[test]
fn a_duplicate_copied_across_filesystems_never_shows_a_partial_copy_under_its_name() {
    let s = setup();
    let data = bytes_of(200_000, 23);
    s.hub.put("/a.onnx", data.clone(), "a");
    s.hub.put("/b.onnx", data.clone(), "b");
    let m = manifest(&[
        ("a", s.hub.url("/a.onnx"), "models/a/det.onnx", &data),
        ("b", s.hub.url("/b.onnx"), "models/b/det.onnx", &data),
    ]);
    let second = s.root().join("models/b/det.onnx");
    let pull = |cp_breaks| {
        let target = s.target(NoLinkHost {
            inner: LocalHost::new(),
            cp_breaks,
        });
        ops::pull(&target, &m, &s.options(None, 2), &printer()).unwrap()
    };

    let report = pull(true);
    assert_fetched(&report);
    assert_eq!(report.files[1].status, PullStatus::Failed);
    assert!(
        !second.exists(),
        "a partial copy under the final name: {} of {} bytes",
        std::fs::metadata(&second).map_or(0, |m| m.len()),
        data.len()
    );

    let report = pull(false);
    assert_eq!(report.files[1].status, PullStatus::Linked);
    assert_eq!(std::fs::read(&second).unwrap(), data);
    assert_no_leftovers(&second);
    assert!(s.hub.gets().iter().all(|g| g.path != "/b.onnx"));
    assert_eq!(s.pull(&m).files[1].status, PullStatus::Present);
}

/// A 401 from the CDN the hub redirected to: the token never went there (the request log
/// shows it), so the hint does not blame the token.
#[test]
fn a_401_from_the_cdn_does_not_blame_the_token() {
    let s = setup();
    let data = bytes_of(1000, 9);
    let (cdn, m) = s.one_file_behind_cdn(&data, true);
    cdn.always(Fault::Status(401));
    let report = s.pull_with(&m, &s.options(Some("hf_x"), 2)).unwrap();
    let e = error_text(&report);
    assert!(
        e.contains(&format!("HTTP 401 from `{}`", cdn.addr).replace("127.0.0.1", "localhost")),
        "{e}"
    );
    assert!(!e.contains("token was refused"), "{e}");
    assert!(e.contains("not the cause"), "{e}");
    assert!(cdn.gets().iter().all(|g| g.authorization.is_none()));
    assert!(
        s.hub.seen().iter().any(|g| g.authorization.is_some()),
        "the hub got it"
    );
    assert!(!s.dest().exists());
}
