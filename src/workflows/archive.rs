//! The `.tar.gz` itself: written deterministically (manifest first, entries in manifest order,
//! mtime 0, owner 0:0, no user names, fixed gzip header), so the same tree always gives the
//! same bytes; read back with every entry checked against the manifest before anyone sees it.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::path::Path;

use anyhow::{anyhow, bail, ensure, Context, Result};
use flate2::{read::GzDecoder, write::GzEncoder, Compression};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use super::manifest::{self, Entry, Manifest, MANIFEST_NAME, MAX_MANIFEST_BYTES};
use crate::host::Host;

/// Write the archive of `manifest`'s entries, reading each file from `root` on `host`. A file
/// whose bytes no longer match the manifest (changed since the scan) fails the backup.
pub fn write<W: Write>(host: &dyn Host, root: &Path, manifest: &Manifest, out: W) -> Result<W> {
    let mut tar = tar::Builder::new(GzEncoder::new(out, Compression::default()));
    let json = manifest.to_json();
    tar.append_data(
        &mut header(EntryType::Regular, json.len() as u64, 0o644),
        MANIFEST_NAME,
        json.as_slice(),
    )?;
    for entry in &manifest.entries {
        match entry {
            Entry::Dir { path } => tar.append_data(
                &mut header(EntryType::Directory, 0, 0o755),
                path,
                io::empty(),
            )?,
            Entry::File {
                path,
                size,
                sha256,
                mode,
            } => {
                let full = root.join(path);
                let mut reader = Checked::new(host.open_read(&full, 0)?, *size);
                tar.append_data(
                    &mut header(EntryType::Regular, *size, *mode),
                    path,
                    &mut reader,
                )
                .with_context(|| {
                    format!("cannot archive `{}` on {}", full.display(), host.name())
                })?;
                ensure!(
                    reader.sha256() == *sha256,
                    "`{}` changed during the backup; run it again",
                    full.display()
                );
            }
        }
    }
    Ok(tar.into_inner()?.finish()?)
}

fn header(kind: EntryType, size: u64, mode: u32) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// Exactly `size` bytes of `inner`, hashed on the way through; a shorter stream is an error
/// (the file shrank), a longer one is cut (and then fails the hash check).
struct Checked<R> {
    inner: io::Take<R>,
    left: u64,
    hasher: Sha256,
}

impl<R: Read> Checked<R> {
    fn new(inner: R, size: u64) -> Self {
        Checked {
            inner: inner.take(size),
            left: size,
            hasher: Sha256::new(),
        }
    }

    fn sha256(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }
}

impl<R: Read> Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank during the backup",
            ));
        }
        self.hasher.update(&buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

/// Where a file entry's bytes go while they are read and hashed: a temp file beside the
/// destination, or nowhere (a verification pass, an entry left alone). Nothing takes the
/// final name before [`Staged::commit`], which runs only once size and sha256 matched.
pub trait Staged {
    fn write(&mut self, chunk: &[u8]) -> Result<()>;
    /// The bytes were verified: give them their final name.
    fn commit(self: Box<Self>) -> Result<()>;
    /// The bytes were wrong: remove whatever was staged.
    fn abort(self: Box<Self>);
}

/// Bytes verified and dropped.
pub struct Discard;

impl Staged for Discard {
    fn write(&mut self, _: &[u8]) -> Result<()> {
        Ok(())
    }
    fn commit(self: Box<Self>) -> Result<()> {
        Ok(())
    }
    fn abort(self: Box<Self>) {}
}

/// What a reader hands the verified archive to: a dry pass, or an extraction.
pub trait Sink {
    /// Called once, with the validated manifest, before any other entry.
    fn manifest(&mut self, manifest: &Manifest) -> Result<()>;
    /// A folder listed in the manifest.
    fn dir(&mut self, path: &str) -> Result<()>;
    /// Where the bytes of the file at `path` (of `size` bytes, with `mode`) are staged.
    fn file(&mut self, path: &str, size: u64, mode: u32) -> Result<Box<dyn Staged + '_>>;
}

/// Read size while streaming an entry: memory stays bounded whatever the entry size.
const CHUNK: usize = 1 << 20;

/// Read an archive: the manifest first, then each entry checked against it; at the end every
/// manifest entry must have been seen. A file is streamed, hashed on the way, into what the
/// sink stages it in, and committed only once its size and hash match: no unverified byte
/// ever takes a final name, and memory stays bounded (one chunk) whatever the entry size.
pub fn read(input: impl Read, sink: &mut dyn Sink) -> Result<Manifest> {
    let mut archive = tar::Archive::new(GzDecoder::new(input));
    let mut entries = archive.entries().context("not a .tar.gz archive")?;
    let manifest = read_manifest(entries.next())?;
    sink.manifest(&manifest)?;
    let expected = manifest.by_path();
    let mut seen = BTreeSet::new();
    for entry in entries {
        let entry = entry.context("the archive is damaged")?;
        let path = entry_path(&entry)?;
        check_kind(&entry, &path)?;
        let listed = *expected
            .get(path.as_str())
            .ok_or_else(|| anyhow!("`{path}` is in the archive but not in its manifest"))?;
        ensure!(
            seen.insert(path.clone()),
            "`{path}` appears twice in the archive"
        );
        stream(entry, listed, sink)?;
    }
    if let Some(missing) = expected.keys().find(|p| !seen.contains(**p)) {
        bail!("`{missing}` is in the manifest but missing from the archive");
    }
    Ok(manifest)
}

fn read_manifest<R: Read>(first: Option<io::Result<tar::Entry<'_, R>>>) -> Result<Manifest> {
    let mut entry = first
        .context("the archive is empty")?
        .context("not a .tar.gz archive")?;
    let name = entry.path_bytes().into_owned();
    ensure!(
        name == MANIFEST_NAME.as_bytes() && entry.header().entry_type() == EntryType::Regular,
        "the archive does not start with `{MANIFEST_NAME}`; it was not written by `lifeos-spark workflows backup`"
    );
    ensure!(
        entry.size() <= MAX_MANIFEST_BYTES,
        "the manifest is larger than {MAX_MANIFEST_BYTES} bytes"
    );
    let mut json = Vec::new();
    entry
        .read_to_end(&mut json)
        .context("cannot read the manifest")?;
    Manifest::from_json(&json)
}

/// The entry's path, checked to be a safe relative path inside a workflow folder.
fn entry_path<R: Read>(entry: &tar::Entry<'_, R>) -> Result<String> {
    let raw = entry.path_bytes();
    let path = std::str::from_utf8(&raw)
        .map_err(|_| anyhow!("`{}` is not a UTF-8 path", String::from_utf8_lossy(&raw)))?;
    let path = path.strip_suffix('/').unwrap_or(path);
    manifest::check_path(path)
        .context("refusing an entry that could write outside the target folder")?;
    Ok(path.to_string())
}

/// Only files and folders are restored; links and device nodes are refused, with the reason.
fn check_kind<R: Read>(entry: &tar::Entry<'_, R>, path: &str) -> Result<()> {
    let kind = entry.header().entry_type();
    match kind {
        EntryType::Regular | EntryType::Continuous | EntryType::Directory => Ok(()),
        EntryType::Symlink | EntryType::Link => {
            let target = entry
                .link_name_bytes()
                .map(|t| String::from_utf8_lossy(&t).into_owned());
            let target = target.unwrap_or_default();
            let what = if kind == EntryType::Link {
                "hardlink"
            } else {
                "symlink"
            };
            let hard = kind == EntryType::Link;
            let escapes = link_escapes(path, &target, hard);
            let where_ = if escapes {
                "points outside the target folder"
            } else {
                "links are never restored"
            };
            bail!("`{path}` is a {what} to `{target}`: {where_}")
        }
        EntryType::Char | EntryType::Block | EntryType::Fifo => {
            bail!("`{path}` is a device file or FIFO; only files and folders are restored")
        }
        other => bail!("`{path}` has an unsupported entry type ({other:?})"),
    }
}

/// Whether a link at `path` to `target` resolves (lexically) outside the archive's root.
/// A symlink is relative to its folder, a hardlink to the archive root.
fn link_escapes(path: &str, target: &str, hard: bool) -> bool {
    if target.starts_with('/') {
        return true;
    }
    let mut depth: i64 = if hard {
        0
    } else {
        path.matches('/').count() as i64
    };
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => depth -= 1,
            _ => depth += 1,
        }
        if depth < 0 {
            return true;
        }
    }
    false
}

fn stream<R: Read>(entry: tar::Entry<'_, R>, listed: &Entry, sink: &mut dyn Sink) -> Result<()> {
    let is_dir = entry.header().entry_type() == EntryType::Directory;
    match (listed, is_dir) {
        (Entry::Dir { path }, true) => sink.dir(path),
        (
            Entry::File {
                path,
                size,
                sha256,
                mode,
            },
            false,
        ) => {
            let mut staged = sink.file(path, *size, *mode)?;
            match copy_checked(entry, *size, sha256, path, staged.as_mut()) {
                Ok(()) => staged.commit(),
                Err(e) => {
                    staged.abort();
                    Err(e)
                }
            }
        }
        (listed, _) => bail!(
            "`{}` is a file in the manifest and a folder in the archive, or the reverse",
            listed.path()
        ),
    }
}

/// Copy the entry's bytes into `staged` chunk by chunk, hashing them; then check that there
/// were exactly `size` of them with the manifest's sha256.
fn copy_checked(
    entry: impl Read,
    size: u64,
    sha256: &str,
    path: &str,
    staged: &mut dyn Staged,
) -> Result<()> {
    let mut reader = entry.take(size + 1);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("the archive is damaged"),
        };
        total += n as u64;
        ensure!(
            total <= size,
            "`{path}` holds more bytes than the manifest's {size}"
        );
        hasher.update(&buf[..n]);
        staged.write(&buf[..n])?;
    }
    ensure!(
        total == size,
        "`{path}` holds {total} bytes, the manifest says {size}"
    );
    let actual = hex::encode(hasher.finalize());
    ensure!(
        actual == sha256,
        "`{path}` does not match the manifest: sha256 {actual}, expected {sha256}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_targets_that_escape() {
        assert!(link_escapes("workflows/a", "/etc/passwd", false));
        assert!(link_escapes("workflows/a", "../../x", false));
        assert!(!link_escapes("workflows/a", "../workflows/b", false));
        assert!(!link_escapes("workflows/sub/a", "../b", false));
        assert!(link_escapes("workflows/a", "../x", true));
        assert!(!link_escapes("workflows/a", "workflows/b", true));
    }
}
