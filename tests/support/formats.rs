//! The stamp and partial-download record read as docs/formats.md describes them, with
//! serde_json and nothing from the product: a test that uses these checks the files against
//! the document, not against the code that wrote them.

#![allow(dead_code)] // each test binary uses a different part of it

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// `<dir>/.<name>.verified` for `<dir>/<name>` (docs/formats.md).
pub fn stamp_path(file: &Path) -> PathBuf {
    let name = file.file_name().unwrap().to_string_lossy();
    file.with_file_name(format!(".{name}.verified"))
}

/// Whether `file`'s stamp exists and is current per docs/formats.md: its `sha256` is `sha256`,
/// its `size` and `mtime` (seconds) those of the file now. Panics on a stamp that breaks the
/// documented format.
pub fn stamp_is_current(file: &Path, sha256: &str) -> bool {
    let Ok(text) = std::fs::read_to_string(stamp_path(file)) else {
        return false;
    };
    let doc: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("stamp of {} is not JSON ({e}): {text}", file.display()));
    let field = |k: &str| {
        doc.get(k)
            .unwrap_or_else(|| panic!("stamp lacks `{k}`: {text}"))
    };
    let hash = field("sha256").as_str().expect("sha256 is a string");
    assert!(
        hash.len() == 64
            && hash
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "sha256 is not 64 lowercase hex digits: {text}"
    );
    let meta = std::fs::metadata(file).unwrap();
    hash == sha256
        && field("size").as_u64().expect("size is an integer") == meta.len()
        && field("mtime").as_i64().expect("mtime is an integer") == meta.mtime()
}

/// Writes a current stamp for `file` as docs/formats.md describes it (what another tool, or an
/// earlier version, would leave).
pub fn write_stamp(file: &Path, sha256: &str) {
    let meta = std::fs::metadata(file).unwrap();
    let doc = serde_json::json!({"sha256": sha256, "size": meta.len(), "mtime": meta.mtime()});
    std::fs::write(stamp_path(file), doc.to_string()).unwrap();
}

/// The record beside `dest`'s `.part`, checked against docs/formats.md.
#[derive(Debug)]
pub struct PartRecord {
    pub url: String,
    pub size: u64,
    pub sha256: Option<String>,
    pub validator: Option<String>,
    pub done: Vec<(u64, u64)>,
}

pub fn part_record_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".part.json");
    PathBuf::from(s)
}

/// `None` when there is no record (or it is being replaced); panics on one that breaks the
/// documented format.
pub fn read_part_record(dest: &Path) -> Option<PartRecord> {
    let text = std::fs::read_to_string(part_record_path(dest)).ok()?;
    let doc: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("record is not JSON ({e}): {text}"));
    let field = |k: &str| {
        doc.get(k)
            .unwrap_or_else(|| panic!("record lacks `{k}`: {text}"))
    };
    let opt_str = |k: &str| field(k).as_str().map(str::to_string);
    let done: Vec<(u64, u64)> = field("done")
        .as_array()
        .expect("done is an array")
        .iter()
        .map(|r| (r[0].as_u64().unwrap(), r[1].as_u64().unwrap()))
        .collect();
    let size = field("size").as_u64().expect("size is an integer");
    for pair in done.windows(2) {
        assert!(
            pair[0].1 < pair[1].0,
            "ranges not sorted and merged: {text}"
        );
    }
    assert!(done.iter().all(|(a, b)| a < b && *b <= size), "{text}");
    Some(PartRecord {
        url: field("url").as_str().expect("url is a string").to_string(),
        size,
        sha256: opt_str("sha256"),
        validator: opt_str("validator"),
        done,
    })
}

/// Writes `dest`'s record as docs/formats.md describes it (a fixture independent of the tool).
pub fn write_part_record(dest: &Path, record: &PartRecord) {
    let done: Vec<[u64; 2]> = record.done.iter().map(|&(a, b)| [a, b]).collect();
    let doc = serde_json::json!({
        "url": record.url,
        "size": record.size,
        "sha256": record.sha256,
        "validator": record.validator,
        "done": done,
    });
    std::fs::write(part_record_path(dest), doc.to_string()).unwrap();
}
