//! The list inside every workflows archive: each folder, and each file's path, size, sha256
//! and mode. It is the archive's first entry, so a reader knows what to expect before any
//! data arrives, and it is the only thing a restore will ever write.

use std::collections::BTreeMap;

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use crate::defaults::WORKFLOW_FOLDERS;

/// Name of the manifest entry (the archive's first).
pub const MANIFEST_NAME: &str = "lifeos-spark-manifest.json";
const FORMAT: &str = "lifeos-spark-workflows/1";
/// A manifest larger than this is not one of ours (100k files is about 20 MB of JSON).
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;
/// The most entries a restore accepts: a workflows folder with more is not one a person made.
pub const MAX_ENTRIES: usize = 100_000;
/// The largest file a restore accepts (workflows are JSON; a few GB is already an oddity).
pub const MAX_FILE_BYTES: u64 = 4 << 30;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Entry {
    Dir {
        path: String,
    },
    File {
        path: String,
        size: u64,
        sha256: String,
        /// Permission bits (`0o600` stays `0o600`).
        mode: u32,
    },
}

impl Entry {
    pub fn path(&self) -> &str {
        match self {
            Entry::Dir { path } | Entry::File { path, .. } => path,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    /// Sorted by path (byte order), each path once.
    pub entries: Vec<Entry>,
}

impl Manifest {
    /// Entries are sorted here, so the same tree always gives the same manifest.
    pub fn new(mut entries: Vec<Entry>) -> Manifest {
        entries.sort_by(|a, b| a.path().cmp(b.path()));
        Manifest {
            format: FORMAT.to_string(),
            entries,
        }
    }

    pub fn from_json(bytes: &[u8]) -> Result<Manifest> {
        let manifest: Manifest =
            serde_json::from_slice(bytes).context("the manifest is not valid")?;
        manifest.validate()?;
        Ok(manifest)
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut json = serde_json::to_vec_pretty(self).expect("a manifest always serializes");
        json.push(b'\n');
        json
    }

    /// Every path safe and inside a workflow folder, each once, in order; hashes well formed.
    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.format == FORMAT,
            "unknown manifest format `{}` (this tool reads `{FORMAT}`)",
            self.format
        );
        ensure!(
            self.entries.len() <= MAX_ENTRIES,
            "the manifest lists {} entries; a workflows archive holds at most {MAX_ENTRIES}",
            self.entries.len()
        );
        for pair in self.entries.windows(2) {
            ensure!(
                pair[0].path() < pair[1].path(),
                "the manifest lists `{}` twice or out of order",
                pair[1].path()
            );
        }
        for entry in &self.entries {
            check_path(entry.path())?;
            if let Entry::File {
                path, size, sha256, ..
            } = entry
            {
                ensure!(
                    *size <= MAX_FILE_BYTES,
                    "`{path}` is {size} bytes; a restore accepts files up to {MAX_FILE_BYTES} bytes"
                );
                let hex = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
                ensure!(
                    hex,
                    "the manifest's sha256 for `{path}` is not 64 hex digits"
                );
            }
        }
        Ok(())
    }

    pub fn by_path(&self) -> BTreeMap<&str, &Entry> {
        self.entries.iter().map(|e| (e.path(), e)).collect()
    }

    pub fn files(&self) -> impl Iterator<Item = (&str, u64, &str)> {
        self.entries.iter().filter_map(|e| match e {
            Entry::File {
                path, size, sha256, ..
            } => Some((path.as_str(), *size, sha256.as_str())),
            Entry::Dir { .. } => None,
        })
    }

    pub fn file_bytes(&self) -> u64 {
        self.files().map(|(_, size, _)| size).sum()
    }
}

/// A path a restore may write: relative, `/`-separated, no `.`/`..`/empty component, no NUL
/// or backslash, and inside one of the workflow folders.
pub fn check_path(path: &str) -> Result<()> {
    if path.starts_with('/') {
        bail!("`{path}` is an absolute path");
    }
    if path.split('/').any(|c| c == "..") {
        bail!("`{path}` has a `..` component");
    }
    if path.split('/').any(|c| c.is_empty() || c == ".") || path.contains(['\0', '\\']) {
        bail!("`{path}` is not a plain relative path");
    }
    let inside = WORKFLOW_FOLDERS
        .iter()
        .any(|f| path == *f || path.strip_prefix(f).is_some_and(|r| r.starts_with('/')));
    if !inside {
        bail!(
            "`{path}` is not inside a workflow folder ({})",
            WORKFLOW_FOLDERS.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> Entry {
        Entry::File {
            path: path.into(),
            size: 1,
            sha256: "a".repeat(64),
            mode: 0o644,
        }
    }

    #[test]
    fn paths_outside_or_odd_are_refused() {
        for ok in [
            "workflows",
            "workflows/a b/é.json",
            "user/default/workflows/x.json",
        ] {
            check_path(ok).unwrap();
        }
        for (bad, why) in [
            ("/etc/passwd", "absolute"),
            ("workflows/../x", "`..`"),
            ("workflows//x", "plain"),
            ("workflows/./x", "plain"),
            ("workflowsx/y", "not inside"),
            ("models/x", "not inside"),
            ("", "plain"),
        ] {
            let err = check_path(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn sorted_json_round_trip_and_validation() {
        let m = Manifest::new(vec![
            file("workflows/b"),
            Entry::Dir {
                path: "workflows".into(),
            },
            file("workflows/a"),
        ]);
        let paths: Vec<_> = m.entries.iter().map(Entry::path).collect();
        assert_eq!(paths, ["workflows", "workflows/a", "workflows/b"]);
        assert_eq!(Manifest::from_json(&m.to_json()).unwrap(), m);
        let mut dup = m.clone();
        dup.entries.push(file("workflows/b"));
        assert!(dup.validate().is_err());
        let json = String::from_utf8(m.to_json())
            .unwrap()
            .replace("\"file\"", "\"symlink\"");
        assert!(Manifest::from_json(json.as_bytes()).is_err());
    }

    #[test]
    fn entry_count_and_size_are_capped() {
        let big = Manifest::new(vec![Entry::File {
            path: "workflows/big".into(),
            size: MAX_FILE_BYTES + 1,
            sha256: "a".repeat(64),
            mode: 0o644,
        }]);
        let err = big.validate().unwrap_err().to_string();
        assert!(err.contains("`workflows/big` is 4294967297 bytes"), "{err}");
        let many = Manifest::new(
            (0..=MAX_ENTRIES)
                .map(|i| file(&format!("workflows/{i:06}")))
                .collect(),
        );
        let err = many.validate().unwrap_err().to_string();
        assert!(err.contains("100001 entries"), "{err}");
    }
}
