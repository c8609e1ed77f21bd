//! The workflow folders on a host, listed and hashed through `Host`.
//!
//! Listing runs `find` on the host: `Host` has no directory listing, and `find -print0` is on
//! every target (GNU, BSD/macOS, busybox), keeps any file name intact (spaces, newlines,
//! unicode) and classifies symlinks without following them. Contents are streamed with
//! `Host::open_read` (SFTP over SSH), never copied to disk.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::manifest::{Entry, Manifest};
use crate::defaults::WORKFLOW_FOLDERS;
use crate::host::{Command, Host};

/// Something in a workflow folder that a backup leaves out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Tree {
    pub manifest: Manifest,
    /// Workflow folders that exist on the host (relative to the root).
    pub folders: Vec<String>,
    pub skipped: Vec<Skipped>,
}

/// List and hash the workflow folders under `root`. Symlinks, sockets and devices are skipped
/// (reported), never followed: a backup holds files and folders only.
pub fn scan(host: &dyn Host, root: &Path) -> Result<Tree> {
    let mut entries = Vec::new();
    let mut folders = Vec::new();
    let mut skipped = Vec::new();
    for folder in WORKFLOW_FOLDERS {
        let dir = root.join(folder);
        if !host.stat(&dir)?.is_some_and(|s| s.is_dir) {
            continue;
        }
        folders.push(folder.to_string());
        for path in find(host, root, &dir, &["-type", "d"], &mut skipped)? {
            entries.push(Entry::Dir { path });
        }
        for path in find(host, root, &dir, &["-type", "f"], &mut skipped)? {
            entries.push(file_entry(host, root, path)?);
        }
        for path in find(
            host,
            root,
            &dir,
            &["!", "-type", "d", "!", "-type", "f"],
            &mut skipped,
        )? {
            skipped.push(Skipped {
                path,
                reason: "not a regular file or folder (symlink, socket, device)".to_string(),
            });
        }
    }
    Ok(Tree {
        manifest: Manifest::new(entries),
        folders,
        skipped,
    })
}

/// Paths under `dir` matching `test`, relative to `root`. `-H` follows a workflow folder that
/// is itself a symlink (a layout choice of the operator), nothing below it.
fn find(
    host: &dyn Host,
    root: &Path,
    dir: &Path,
    test: &[&str],
    skipped: &mut Vec<Skipped>,
) -> Result<Vec<String>> {
    let dir_str = dir.to_str().context("the root is not UTF-8")?;
    let cmd = Command::new("find")
        .arg("-H")
        .arg(dir_str)
        .args(test.iter().copied())
        .arg("-print0");
    let out = host.run_ok(&cmd)?;
    let prefix = format!(
        "{}/",
        root.to_str()
            .context("the root is not UTF-8")?
            .trim_end_matches('/')
    );
    let mut paths = Vec::new();
    for raw in out.stdout.split(|&b| b == 0).filter(|p| !p.is_empty()) {
        match String::from_utf8(raw.to_vec()) {
            Ok(p) => match p.strip_prefix(&prefix) {
                Some(rel) => paths.push(rel.to_string()),
                None => bail!("`find` printed `{p}`, which is not under `{prefix}`"),
            },
            Err(_) => skipped.push(Skipped {
                path: String::from_utf8_lossy(raw).into_owned(),
                reason: "the name is not UTF-8".to_string(),
            }),
        }
    }
    Ok(paths)
}

fn file_entry(host: &dyn Host, root: &Path, path: String) -> Result<Entry> {
    let full = root.join(&path);
    let stat = host
        .stat(&full)?
        .with_context(|| format!("`{}` vanished during the backup", full.display()))?;
    let (size, sha256) = hash(host.open_read(&full, 0)?)
        .with_context(|| format!("cannot read `{}` on {}", full.display(), host.name()))?;
    Ok(Entry::File {
        path,
        size,
        sha256,
        mode: stat.mode & 0o777,
    })
}

/// Size and sha256 of a stream.
pub fn hash(mut reader: impl Read) -> std::io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok((size, hex::encode(hasher.finalize())));
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
}
