//! A download in progress: `<dest>.part` (preallocated, written at any offset) and
//! `<dest>.part.json` beside it, recording which byte ranges of the `.part` are finished and the
//! server's ETag they came with. The record is written only after the `.part` was synced, so
//! after a kill -9 (or a power cut) every range it names is really on disk.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::manifest::ModelFile;
use crate::host::Host;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartState {
    /// The URL with any password masked (`redact::url`): a record is no place for a secret.
    pub url: String,
    /// sha256 of the real URL, to notice a change the masked one hides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_sha256: Option<String>,
    pub size: u64,
    pub sha256: Option<String>,
    /// The ETag the finished ranges came with; sent as `If-Range` when resuming.
    pub validator: Option<String>,
    /// Finished byte ranges `[start, end)`, sorted and merged.
    pub done: Vec<[u64; 2]>,
}

impl PartState {
    /// The record of `file`'s `.part`: the URL masked, its hash kept (a download and a copy
    /// from another host write the same record).
    pub fn new(
        file: &ModelFile,
        size: u64,
        validator: Option<String>,
        done: Vec<[u64; 2]>,
    ) -> Self {
        PartState {
            url: super::redact::url(&file.url),
            url_sha256: Some(super::redact::url_hash(&file.url)),
            size,
            sha256: file.sha256.clone(),
            validator,
            done,
        }
    }
}

/// What a previous run left for this file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    Fresh,
    /// A `.part` with its record.
    Recorded(PartState),
    /// A `.part` without a record (another tool's, or one written front to back): its length
    /// is taken as the finished prefix, as curl `-C -` and rustup do.
    Prefix(u64),
}

impl Resume {
    /// Bytes already there, for planning (free space, progress).
    pub fn bytes(&self) -> u64 {
        match self {
            Resume::Fresh => 0,
            Resume::Recorded(s) => s.done.iter().map(|[a, b]| b - a).sum(),
            Resume::Prefix(n) => *n,
        }
    }
}

pub fn part_path(dest: &Path) -> PathBuf {
    suffixed(dest, ".part")
}

pub fn state_path(dest: &Path) -> PathBuf {
    suffixed(dest, ".part.json")
}

fn suffixed(dest: &Path, suffix: &str) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// What can be resumed for `file`. A record for another URL, size or hash, or a `.part` longer
/// than the file, is not trusted: the download starts over.
pub fn inspect(host: &dyn Host, file: &ModelFile, dest: &Path) -> Result<Resume> {
    let Some(part) = host.stat(&part_path(dest))? else {
        return Ok(Resume::Fresh);
    };
    let record = host
        .read_opt(&state_path(dest))?
        .and_then(|data| serde_json::from_slice::<PartState>(&data).ok());
    Ok(match record {
        Some(s)
            if s.url == super::redact::url(&file.url)
                && s.url_sha256
                    .as_ref()
                    .is_none_or(|h| *h == super::redact::url_hash(&file.url))
                && s.size == file.size
                && s.sha256 == file.sha256
                && part.size == file.size =>
        {
            Resume::Recorded(s)
        }
        None if part.size <= file.size => Resume::Prefix(part.size),
        _ => Resume::Fresh,
    })
}

/// Forget a download: the `.part` and its record.
pub fn discard(host: &dyn Host, dest: &Path) -> Result<()> {
    host.remove_file(&state_path(dest))?;
    host.remove_file(&part_path(dest))
}

/// Merge sorted-or-not ranges into sorted, disjoint, non-adjacent ones.
pub fn merge(mut ranges: Vec<[u64; 2]>) -> Vec<[u64; 2]> {
    ranges.retain(|[a, b]| a < b);
    ranges.sort_unstable();
    let mut out: Vec<[u64; 2]> = Vec::with_capacity(ranges.len());
    for [a, b] in ranges {
        match out.last_mut() {
            Some(last) if a <= last[1] => last[1] = last[1].max(b),
            _ => out.push([a, b]),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::LocalHost;

    #[test]
    fn merges_ranges() {
        assert_eq!(
            merge(vec![[8, 12], [0, 4], [4, 6], [7, 7]]),
            vec![[0, 6], [8, 12]]
        );
    }

    #[test]
    fn inspect_trusts_only_a_matching_record() {
        let dir = tempfile::tempdir().unwrap();
        let host = LocalHost::new();
        let dest = dir.path().join("m.bin");
        let file = ModelFile {
            id: "m".into(),
            url: "http://x/m".into(),
            dest: "m.bin".into(),
            size: 10,
            sha256: None,
        };
        assert_eq!(inspect(&host, &file, &dest).unwrap(), Resume::Fresh);
        std::fs::write(part_path(&dest), b"abcd").unwrap();
        assert_eq!(inspect(&host, &file, &dest).unwrap(), Resume::Prefix(4));
        std::fs::write(part_path(&dest), [0u8; 10]).unwrap();
        let state = PartState {
            url: file.url.clone(),
            url_sha256: None,
            size: 10,
            sha256: None,
            validator: Some("\"e1\"".into()),
            done: vec![[0, 4], [8, 10]],
        };
        std::fs::write(state_path(&dest), serde_json::to_vec(&state).unwrap()).unwrap();
        let resume = inspect(&host, &file, &dest).unwrap();
        assert_eq!(resume.bytes(), 6);
        assert_eq!(resume, Resume::Recorded(state.clone()));
        let moved = ModelFile {
            url: "http://y/m".into(),
            ..file
        };
        assert_eq!(inspect(&host, &moved, &dest).unwrap(), Resume::Fresh);
    }
}
