//! Model files copied host to host (`migrate --models-from source`, `setup`): a source host's
//! file feeds the download's own pipeline (`models::pull` with `from`): what a dry run reports
//! and leaves alone, what a real copy verifies, that a download's segmented `.part` record is
//! resumed with every range kept, and a source file of the wrong size. Both hosts are this
//! machine (`LocalHost`), each with its own root; the manifest's URLs point at a closed port,
//! so a download instead of a copy fails.

mod fake_hub;
#[path = "support/formats.rs"]
mod formats;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fake_hub::{bytes_of, sha256_hex};
use formats::PartRecord;
use lifeos_spark::host::LocalHost;
use lifeos_spark::models::copy::ModelSource;
use lifeos_spark::models::fetch::{Connections, FetchOptions, RetryPolicy};
use lifeos_spark::models::hub::Hub;
use lifeos_spark::models::manifest::Manifest;
use lifeos_spark::models::ops::{self, PullOptions, Target};
use lifeos_spark::models::report::{PullEntry, PullReport, PullStatus};
use lifeos_spark::ui::{Printer, Verbosity};

const PIECE: u64 = 64 << 10;

fn printer() -> Printer {
    Printer::plain(Verbosity::Quiet)
}

struct Setup {
    dir: tempfile::TempDir,
    a: Vec<u8>,
    b: Vec<u8>,
    manifest: Manifest,
}

const A: &str = "models/checkpoints/a.safetensors";
const B: &str = "models/loras/b.safetensors";
const URL: &str = "http://127.0.0.1:9";

fn setup() -> Setup {
    let a = bytes_of(300_000, 31);
    let b = bytes_of(10 * PIECE as usize + 777, 32);
    let mut text = "name: test\nmodels:\n".to_string();
    for (id, dest, data) in [("a", A, &a), ("b", B, &b)] {
        text += &format!(
            "  - id: {id}\n    url: {URL}/{id}\n    dest: {dest}\n    size: {}\n    sha256: {}\n",
            data.len(),
            sha256_hex(data)
        );
    }
    Setup {
        dir: tempfile::tempdir().unwrap(),
        a,
        b,
        manifest: Manifest::parse(&text, "test.yaml", false).unwrap(),
    }
}

impl Setup {
    fn source(&self) -> PathBuf {
        self.dir.path().join("source")
    }

    fn dest(&self) -> PathBuf {
        self.dir.path().join("dest")
    }

    fn put(&self, root: &Path, rel: &str, data: &[u8]) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }

    /// Both files on the source; only `a` on the destination, never verified there.
    fn both_on_source_a_unstamped_on_dest(&self) {
        self.put(&self.source(), A, &self.a);
        self.put(&self.source(), B, &self.b);
        self.put(&self.dest(), A, &self.a);
    }

    /// `models::pull` with every manifest file copied from the source root.
    fn copy(&self, dry_run: bool) -> anyhow::Result<PullReport> {
        let files = [("a", A), ("b", B)]
            .into_iter()
            .map(|(id, rel)| (id.to_string(), self.source().join(rel)))
            .collect();
        let opts = PullOptions {
            only: vec![],
            jobs: 2,
            fetch: FetchOptions {
                connections: Connections::Exactly(4),
                piece_bytes: PIECE,
                retry: RetryPolicy {
                    attempts: 1,
                    base: Duration::from_millis(10),
                    max: Duration::from_millis(10),
                },
            },
            dry_run,
            hub: Hub::new(URL, None).unwrap(),
            from: Some(ModelSource {
                host: Arc::new(LocalHost::new()),
                files,
            }),
        };
        let target = Target {
            host: Arc::new(LocalHost::new()),
            root: self.dest().display().to_string(),
        };
        ops::pull(&target, &self.manifest, &opts, &printer())
    }
}

/// Every file under `root` with its bytes and mtime: what "nothing written" compares.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (Vec<u8>, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let meta = std::fs::metadata(&path).unwrap();
            if meta.is_dir() {
                todo.push(path);
            } else {
                out.insert(
                    path.clone(),
                    (std::fs::read(&path).unwrap(), meta.modified().unwrap()),
                );
            }
        }
    }
    out
}

fn entry<'a>(report: &'a PullReport, id: &str) -> &'a PullEntry {
    report.files.iter().find(|f| f.id == id).expect("an entry")
}

#[test]
fn a_dry_run_writes_nothing_and_reports_an_unverified_file_as_would_verify() {
    let s = setup();
    s.both_on_source_a_unstamped_on_dest();
    let (source_before, dest_before) = (snapshot(&s.source()), snapshot(&s.dest()));

    let report = s.copy(true).unwrap();

    assert_eq!(entry(&report, "a").status, PullStatus::WouldVerify);
    let b = entry(&report, "b");
    assert_eq!(b.status, PullStatus::WouldFetch);
    assert!(b.copied);
    assert_eq!(b.url, format!("local:{}", s.source().join(B).display()));
    assert_eq!(report.needed_bytes, s.b.len() as u64);
    assert_eq!(
        snapshot(&s.source()),
        source_before,
        "the source was written"
    );
    assert_eq!(
        snapshot(&s.dest()),
        dest_before,
        "the destination was written"
    );
    assert!(!formats::stamp_path(&s.dest().join(A)).exists());
}

#[test]
fn a_copy_verifies_what_is_there_replaces_wrong_bytes_and_copies_the_rest() {
    let s = setup();
    s.both_on_source_a_unstamped_on_dest();
    let report = s.copy(false).unwrap();
    assert_eq!(entry(&report, "a").status, PullStatus::Present);
    assert_eq!(entry(&report, "b").status, PullStatus::Fetched);
    assert_eq!(report.fetched_bytes, s.b.len() as u64);
    for (rel, data) in [(A, &s.a), (B, &s.b)] {
        let dest = s.dest().join(rel);
        assert_eq!(&std::fs::read(&dest).unwrap(), data);
        assert!(formats::stamp_is_current(&dest, &sha256_hex(data)), "{rel}");
        assert!(
            formats::read_part_record(&dest).is_none(),
            "{rel}: record left"
        );
    }
    assert!(
        !formats::stamp_path(&s.source().join(A)).exists(),
        "the source was stamped"
    );

    // Same size, other bytes, no stamp: hashed, found wrong, copied again.
    let mut wrong = s.b.clone();
    wrong[1000] ^= 1;
    std::fs::remove_file(formats::stamp_path(&s.dest().join(B))).unwrap();
    s.put(&s.dest(), B, &wrong);
    let report = s.copy(false).unwrap();
    assert_eq!(entry(&report, "a").status, PullStatus::Present);
    assert_eq!(entry(&report, "b").status, PullStatus::Fetched);
    assert_eq!(report.fetched_bytes, s.b.len() as u64);
    assert_eq!(std::fs::read(s.dest().join(B)).unwrap(), s.b);
}

/// A download stopped with two finished segments: the copy takes only the other pieces from
/// the source. The source's bytes inside the recorded ranges are damaged, so a copy that read
/// them again (or kept only the range from byte 0) would end with the wrong sha256.
#[test]
fn a_copy_resumes_a_segmented_download_record_keeping_every_range() {
    let s = setup();
    let size = s.b.len() as u64;
    let ranges = [(0, 2 * PIECE), (5 * PIECE, 7 * PIECE)];
    let mut damaged = s.b.clone();
    let mut part = vec![0u8; s.b.len()];
    for &(a, b) in &ranges {
        let (a, b) = (a as usize, b as usize);
        part[a..b].copy_from_slice(&s.b[a..b]);
        damaged[a..b].iter_mut().for_each(|x| *x ^= 0x5a);
    }
    s.put(&s.source(), A, &s.a);
    s.put(&s.source(), B, &damaged);
    s.put(&s.dest(), &format!("{B}.part"), &part);
    let dest = s.dest().join(B);
    formats::write_part_record(
        &dest,
        &PartRecord {
            url: format!("{URL}/b"),
            size,
            sha256: Some(sha256_hex(&s.b)),
            validator: Some("\"etag-1\"".into()),
            done: ranges.to_vec(),
        },
    );
    let part_path = s.dest().join(format!("{B}.part"));
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&part_path).unwrap());

    let report = s.copy(false).unwrap();

    let b = entry(&report, "b");
    assert_eq!(b.status, PullStatus::Fetched, "{:?}", b.error);
    assert_eq!(sha256_hex(&std::fs::read(&dest).unwrap()), sha256_hex(&s.b));
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&dest).unwrap()),
        inode,
        "the recorded .part was not the one finished"
    );
    assert!(!part_path.exists() && formats::read_part_record(&dest).is_none());
    assert_eq!(b.reused_bytes, 4 * PIECE);
    assert_eq!(b.fetched_bytes, size - 4 * PIECE);
}

#[test]
fn a_source_file_of_another_size_fails_naming_it_and_downloads_nothing() {
    let s = setup();
    s.put(&s.source(), A, &s.a);
    s.put(&s.source(), B, &s.b[..1000]);
    let report = s.copy(false).unwrap();
    assert_eq!(entry(&report, "a").status, PullStatus::Fetched);
    let b = entry(&report, "b");
    assert_eq!(b.status, PullStatus::Failed);
    let error = b.error.clone().unwrap();
    assert!(
        error.contains(&s.source().join(B).display().to_string())
            && error.contains("bytes to copy"),
        "{error}"
    );
    assert!(b
        .hint
        .as_deref()
        .unwrap()
        .contains("--models-from internet"));
    assert!(!s.dest().join(B).exists());
    assert!(!s.dest().join(format!("{B}.part")).exists());
}
