//! Model files copied host to host (`migrate`): a file on the source host is one more byte
//! source of the download pipeline (`fetch`). Pieces, the `.part` and its `.part.json` record,
//! the sink, the ordered hasher, progress and Ctrl-C are the download's own; only where a
//! piece's bytes come from differs (a positioned read on the source instead of a `Range`
//! request). So a copy resumes any record (a download's segmented one too), and a download
//! finishes what a copy started.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::host::Host;
use crate::ui::HintExt;

/// Read size of a copy and of a rehash: one chunk in the sink's queue.
const CHUNK: u64 = 1 << 20;

/// Where `setup` copies manifest files from instead of downloading them: the source host and,
/// per manifest id, the file there with the manifest's bytes (maybe not at the manifest's own
/// place: `migrate` matches them by sha256). Ids not named are downloaded.
#[derive(Clone)]
pub struct ModelSource {
    pub host: Arc<dyn Host>,
    pub files: BTreeMap<String, PathBuf>,
}

impl ModelSource {
    /// The source of manifest file `id`, if it is copied.
    pub fn file(&self, id: &str) -> Option<HostFile> {
        self.files.get(id).map(|path| HostFile {
            host: self.host.clone(),
            path: path.clone(),
        })
    }
}

/// One file on another host, read in place of the manifest's URL.
#[derive(Clone)]
pub struct HostFile {
    pub host: Arc<dyn Host>,
    pub path: PathBuf,
}

impl HostFile {
    /// `rtx:/home/me/ComfyUI/models/...`: where the bytes come from, for reports.
    pub fn describe(&self) -> String {
        format!("{}:{}", self.host.name(), self.path.display())
    }

    /// The source must hold `size` bytes (the plan hashed it; it may have changed since).
    pub fn check_size(&self, size: u64) -> Result<()> {
        match self.host.stat(&self.path)? {
            Some(s) if s.size == size && !s.is_dir => Ok(()),
            _ => Err(anyhow!(
                "{} has no `{}` of {size} bytes to copy",
                self.host.name(),
                self.path.display(),
            ))
            .hint("use `--models-from internet` to download it instead"),
        }
    }
}

/// Read `[start, end)` of `path` on `host` on a blocking thread (`Host` is blocking), handing
/// `(offset, chunk)` to the async side through a small channel; the reader stops when the
/// receiver is dropped (Ctrl-C, a failed write).
pub fn read_range(
    host: Arc<dyn Host>,
    path: PathBuf,
    start: u64,
    end: u64,
) -> (mpsc::Receiver<(u64, Bytes)>, JoinHandle<Result<()>>) {
    let (tx, rx) = mpsc::channel(2);
    let reader = tokio::task::spawn_blocking(move || -> Result<()> {
        let ctx = || format!("cannot read `{}` on {}", path.display(), host.name());
        let mut input = host.open_read(&path, start).with_context(ctx)?;
        let mut pos = start;
        while pos < end {
            let mut buf = vec![0; CHUNK.min(end - pos) as usize];
            input.read_exact(&mut buf).with_context(ctx)?;
            let n = buf.len() as u64;
            if tx.blocking_send((pos, Bytes::from(buf))).is_err() {
                break;
            }
            pos += n;
        }
        Ok(())
    });
    (rx, reader)
}

/// Wait for a `read_range` reader: its error, or a panic as one.
pub async fn joined(reader: JoinHandle<Result<()>>) -> Result<()> {
    reader
        .await
        .map_err(|e| anyhow!("a reading thread failed: {e}"))?
}
