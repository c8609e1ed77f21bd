//! Hashing: while streaming (in file order, whatever order the pieces arrive in), of a file on
//! a host (`models verify`), and the stamp that lets a verified file be skipped next time.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::manifest::ModelFile;
use crate::host::{Command, FileStat, Host};
use crate::lock::RootLock;

/// SHA-256 over chunks that may arrive out of order (parallel range connections). Chunks at the
/// hash position are hashed at once; later ones wait here until the gap before them is filled.
/// The downloader bounds how far ahead it fetches, which bounds this buffer.
#[derive(Default)]
pub struct OrderedHasher {
    sha: Sha256,
    position: u64,
    pending: BTreeMap<u64, Bytes>,
}

impl OrderedHasher {
    /// Bytes hashed so far (everything before this offset).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Feed the chunk that starts at `offset`. Returns whether the position moved.
    pub fn feed(&mut self, offset: u64, chunk: Bytes) -> bool {
        let before = self.position;
        if offset > self.position {
            self.pending.insert(offset, chunk);
            return false;
        }
        self.consume(offset, chunk);
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > self.position {
                break;
            }
            let (offset, chunk) = entry.remove_entry();
            self.consume(offset, chunk);
        }
        self.position != before
    }

    /// Hash the part of `chunk` beyond the position (a chunk never overlaps in practice, but
    /// hashing a byte twice would be a silent corruption of the digest).
    fn consume(&mut self, offset: u64, chunk: Bytes) {
        let skip = (self.position - offset) as usize;
        if skip < chunk.len() {
            self.sha.update(&chunk[skip..]);
            self.position += (chunk.len() - skip) as u64;
        }
    }

    pub fn finish(self) -> String {
        hex::encode(self.sha.finalize())
    }
}

/// The sha256 of a file on `host`. Over SSH `sha256sum` runs on the target, so the file is not
/// pulled back over the network; locally (or without `sha256sum`) it is streamed and hashed here.
pub fn hash_file(host: &dyn Host, path: &Path) -> Result<String> {
    if !host.is_local() {
        let path_str = path.to_str().context("path is not UTF-8")?;
        let out = host.run(&Command::new("sha256sum").arg("--").arg(path_str))?;
        if out.success() {
            let text = out.stdout_text();
            if let Some(hash) = text.split_whitespace().next().filter(|h| h.len() == 64) {
                return Ok(hash.to_ascii_lowercase());
            }
        }
    }
    let reader = host.open_read(path, 0)?;
    let (sha, _) = hash_reader(reader, u64::MAX)
        .with_context(|| format!("cannot read `{}` on {}", path.display(), host.name()))?;
    Ok(hex::encode(sha.finalize()))
}

/// Feed up to `limit` bytes of `reader` (all of them with `u64::MAX`) into a fresh SHA-256.
/// Returns the state, to finish or to keep feeding, and the bytes hashed.
pub fn hash_reader(reader: impl Read, limit: u64) -> std::io::Result<(Sha256, u64)> {
    let mut reader = reader.take(limit);
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok((sha, total)),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        sha.update(&buf[..n]);
        total += n as u64;
    }
}

/// What is at a model file's place, told by `stat` and the stamp alone (nothing is hashed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// The right size with a current stamp (or the manifest has no sha256 to check).
    Verified,
    /// The right size, not verified since it last changed: [`verify_and_stamp`] tells.
    Unverified,
    /// Missing, a directory, or another size.
    Absent,
}

/// How `file` stands at `dest` on `host`, without hashing or writing anything.
pub fn presence(host: &dyn Host, file: &ModelFile, dest: &Path) -> Result<Presence> {
    let Some(stat) = host
        .stat(dest)?
        .filter(|s| s.size == file.size && !s.is_dir)
    else {
        return Ok(Presence::Absent);
    };
    Ok(match &file.sha256 {
        Some(sha) if !Stamp::is_current(host, dest, &stat, sha)? => Presence::Unverified,
        _ => Presence::Verified,
    })
}

/// Hash an [`Presence::Unverified`] file; stamp it when it has the manifest's sha256.
/// Whether it has.
pub fn verify_and_stamp(
    host: &dyn Host,
    file: &ModelFile,
    dest: &Path,
    lock: &RootLock,
) -> Result<bool> {
    let Some(want) = &file.sha256 else {
        return Ok(true);
    };
    let sha = hash_file(host, dest)?;
    if sha != *want {
        return Ok(false);
    }
    Stamp::record(host, dest, &sha, lock)?;
    Ok(true)
}

/// A record that `dest` was verified at this size and mtime: `.<name>.verified` beside it
/// (hidden, so ComfyUI's model lists and InsightFace's `*.onnx` scan never see it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub sha256: String,
    pub size: u64,
    pub mtime: i64,
}

impl Stamp {
    pub fn path(dest: &Path) -> PathBuf {
        let name = dest.file_name().unwrap_or_default().to_string_lossy();
        dest.with_file_name(format!(".{name}.verified"))
    }

    /// Whether `dest` is still the file that was verified to have `sha256`.
    pub fn is_current(host: &dyn Host, dest: &Path, stat: &FileStat, sha256: &str) -> Result<bool> {
        let Some(data) = host.read_opt(&Stamp::path(dest))? else {
            return Ok(false);
        };
        let Ok(stamp) = serde_json::from_slice::<Stamp>(&data) else {
            return Ok(false);
        };
        Ok(stamp.sha256 == sha256 && stamp.size == stat.size && stamp.mtime == stat.mtime)
    }

    /// Record that `dest`, as it is now, has `sha256`: only a run holding the root's lock
    /// (`_held`) may, so another run's bytes never get this run's stamp.
    pub fn record(host: &dyn Host, dest: &Path, sha256: &str, _held: &RootLock) -> Result<()> {
        let stat = host
            .stat(dest)?
            .with_context(|| format!("`{}` vanished after verification", dest.display()))?;
        let stamp = Stamp {
            sha256: sha256.to_string(),
            size: stat.size,
            mtime: stat.mtime,
        };
        host.write_atomic(
            &Stamp::path(dest),
            &serde_json::to_vec(&stamp)?,
            Some(0o644),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    #[test]
    fn out_of_order_chunks_hash_like_the_file() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut h = OrderedHasher::default();
        let chunk = |a: usize, b: usize| Bytes::copy_from_slice(&data[a..b]);
        assert!(!h.feed(6000, chunk(6000, 10_000)));
        assert!(!h.feed(3000, chunk(3000, 6000)));
        assert!(h.feed(0, chunk(0, 1000)));
        assert_eq!(h.position(), 1000);
        assert!(h.feed(1000, chunk(1000, 3000)));
        assert_eq!(h.position(), 10_000);
        assert_eq!(h.finish(), sha(&data));
    }

    #[test]
    fn a_repeated_chunk_is_not_hashed_twice() {
        let mut h = OrderedHasher::default();
        h.feed(0, Bytes::from_static(b"abcd"));
        h.feed(2, Bytes::from_static(b"cdef"));
        assert_eq!(h.finish(), sha(b"abcdef"));
    }

    #[test]
    fn stamp_matches_only_the_same_size_and_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let host = crate::host::LocalHost::new();
        let dest = dir.path().join("m.bin");
        std::fs::write(&dest, b"abc").unwrap();
        let printer = crate::ui::Printer::plain(crate::ui::Verbosity::Quiet);
        let lock = RootLock::acquire(&host, dir.path(), &printer).unwrap();
        Stamp::record(&host, &dest, &sha(b"abc"), &lock).unwrap();
        let stat = host.stat(&dest).unwrap().unwrap();
        assert!(Stamp::is_current(&host, &dest, &stat, &sha(b"abc")).unwrap());
        assert!(!Stamp::is_current(&host, &dest, &stat, &sha(b"abd")).unwrap());
        let touched = FileStat {
            mtime: stat.mtime + 1,
            ..stat
        };
        assert!(!Stamp::is_current(&host, &dest, &touched, &sha(b"abc")).unwrap());
        assert_eq!(hash_file(&host, &dest).unwrap(), sha(b"abc"));
    }

    #[test]
    fn hash_reader_stops_at_the_limit_and_counts() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let (state, n) = hash_reader(&data[..], u64::MAX).unwrap();
        assert_eq!((hex::encode(state.finalize()), n), (sha(&data), 3_000_000));
        let (mut state, n) = hash_reader(&data[..], 1_500_000).unwrap();
        assert_eq!(n, 1_500_000);
        state.update(&data[1_500_000..]);
        assert_eq!(hex::encode(state.finalize()), sha(&data));
        let (_, n) = hash_reader(&b"abc"[..], 10).unwrap();
        assert_eq!(n, 3);
    }
}
