//! Model files copied host to host (`migrate --models-from source`, `setup`): what a dry run
//! reports and leaves alone, what a real copy verifies, and when the source counts as holding
//! every file. Both hosts are this machine (`LocalHost`), each with its own root.

mod fake_hub;
#[path = "support/formats.rs"]
mod formats;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fake_hub::{bytes_of, sha256_hex};
use lifeos_spark::host::LocalHost;
use lifeos_spark::models::copy::{self, Source};
use lifeos_spark::models::manifest::Manifest;
use lifeos_spark::step::{Outcome, StepReport};
use lifeos_spark::ui::{Printer, Verbosity};

fn printer() -> Printer {
    Printer::plain(Verbosity::Quiet)
}

struct Setup {
    dir: tempfile::TempDir,
    host: LocalHost,
    a: Vec<u8>,
    b: Vec<u8>,
    manifest: Manifest,
}

const A: &str = "models/checkpoints/a.safetensors";
const B: &str = "models/loras/b.safetensors";

fn setup() -> Setup {
    let a = bytes_of(300_000, 31);
    let b = bytes_of(200_000, 32);
    let mut text = "name: test\nmodels:\n".to_string();
    for (id, dest, data) in [("a", A, &a), ("b", B, &b)] {
        text += &format!(
            "  - id: {id}\n    url: http://127.0.0.1:9/{id}\n    dest: {dest}\n    size: {}\n    sha256: {}\n",
            data.len(),
            sha256_hex(data)
        );
    }
    Setup {
        dir: tempfile::tempdir().unwrap(),
        host: LocalHost::new(),
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

    fn copy(&self, dry_run: bool) -> (Vec<StepReport>, u64) {
        let source = Source {
            host: &self.host,
            root: &self.source(),
        };
        copy::copy_all(
            &source,
            &self.host,
            &self.dest(),
            &self.manifest,
            dry_run,
            &printer(),
        )
        .unwrap()
    }

    fn source_has_all(&self) -> bool {
        let source = Source {
            host: &self.host,
            root: &self.source(),
        };
        copy::source_has_all(&source, &self.manifest).unwrap()
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

fn step<'a>(steps: &'a [StepReport], id: &str) -> &'a StepReport {
    let name = format!("model {id}");
    steps.iter().find(|s| s.name == name).expect("a step")
}

#[test]
fn a_dry_run_writes_nothing_and_reports_an_unverified_file_as_would_verify() {
    let s = setup();
    s.both_on_source_a_unstamped_on_dest();
    let (source_before, dest_before) = (snapshot(&s.source()), snapshot(&s.dest()));

    let (steps, copied) = s.copy(true);

    assert_eq!(copied, 0);
    let a = step(&steps, "a");
    assert_eq!(
        (a.outcome, a.detail.as_str()),
        (Outcome::WouldChange, "would verify")
    );
    let b = step(&steps, "b");
    assert_eq!(b.outcome, Outcome::WouldChange);
    assert!(b.detail.starts_with("would copy from"), "{}", b.detail);
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
    let (steps, copied) = s.copy(false);
    assert_eq!(step(&steps, "a").outcome, Outcome::Ok);
    assert_eq!(step(&steps, "b").outcome, Outcome::Changed);
    assert_eq!(copied, s.b.len() as u64);
    for (rel, data) in [(A, &s.a), (B, &s.b)] {
        let dest = s.dest().join(rel);
        assert_eq!(&std::fs::read(&dest).unwrap(), data);
        assert!(formats::stamp_is_current(&dest, &sha256_hex(data)), "{rel}");
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
    let (steps, copied) = s.copy(false);
    assert_eq!(step(&steps, "a").outcome, Outcome::Ok);
    assert_eq!(step(&steps, "b").outcome, Outcome::Changed);
    assert_eq!(copied, s.b.len() as u64);
    assert_eq!(std::fs::read(s.dest().join(B)).unwrap(), s.b);
}

#[test]
fn the_source_counts_only_when_its_files_hash_to_the_manifest_and_is_not_written() {
    let s = setup();
    s.put(&s.source(), A, &s.a);
    assert!(!s.source_has_all(), "`b` is missing");

    s.put(&s.source(), B, &s.b);
    let before = snapshot(&s.source());
    assert!(s.source_has_all(), "right bytes, never verified: hashed");
    assert_eq!(snapshot(&s.source()), before, "the source was written");

    let mut wrong = s.b.clone();
    wrong[100] ^= 1;
    s.put(&s.source(), B, &wrong);
    assert!(!s.source_has_all(), "right size, other bytes");

    // A current stamp is trusted as it is by `models pull`: no hashing.
    formats::write_stamp(&s.source().join(B), &sha256_hex(&s.b));
    assert!(s.source_has_all(), "a current stamp counts");

    s.put(&s.source(), B, &s.b[..1000]);
    assert!(!s.source_has_all(), "wrong size");
}
