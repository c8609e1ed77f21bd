//! Where downloaded bytes land: the `.part` on the target, through `Host::open_write`, so the
//! same code writes a local file or a remote one over SFTP. `Host` is blocking, so one thread
//! per file owns the open file; async workers hand it chunks through a bounded channel, which
//! also slows the network down to the speed of the disk (or of the SSH link).

use std::path::PathBuf;
use std::sync::mpsc::SendError;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::host::{Durable, Host};

/// Chunks in flight between the network and the disk (each at most a few hundred KiB).
const QUEUE: usize = 8;

enum Op {
    Write(u64, Bytes),
    /// Sync the `.part`, then record this state: the record never names unsynced bytes.
    Checkpoint(Vec<u8>),
}

pub struct Sink {
    tx: mpsc::Sender<Op>,
    result: oneshot::Receiver<Result<()>>,
}

/// The sender half, cloned into every worker.
#[derive(Clone)]
pub struct SinkHandle(mpsc::Sender<Op>);

#[derive(Debug, thiserror::Error)]
#[error("the writer of the `.part` file stopped")]
pub struct SinkClosed;

impl SinkHandle {
    pub async fn write(&self, offset: u64, data: Bytes) -> Result<(), SinkClosed> {
        self.0
            .send(Op::Write(offset, data))
            .await
            .map_err(|_| SinkClosed)
    }

    pub async fn checkpoint(&self, record: Vec<u8>) -> Result<(), SinkClosed> {
        self.0
            .send(Op::Checkpoint(record))
            .await
            .map_err(|_| SinkClosed)
    }
}

/// The writer thread: opens the `.part`, writes what the workers send, and hands each
/// checkpoint's wait on the disk, then its record, to a second thread, so the bytes after a
/// checkpoint flow while the ones before it are synced.
fn write_all(
    host: Arc<dyn Host>,
    part: PathBuf,
    record: PathBuf,
    size: u64,
    initial: Vec<u8>,
    mut rx: mpsc::Receiver<Op>,
) -> Result<()> {
    let ctx = || format!("cannot write `{}` on {}", part.display(), host.name());
    let mut file = host.open_write(&part)?;
    // The bytes a resumed record names (a prefix kept from before) are synced too.
    file.sync().with_context(ctx)?;
    host.write_atomic(&record, &initial, Some(0o644))?;
    file.set_len(size).with_context(ctx)?;
    // No room: a checkpoint waits for the one before it, so records land in order and at most
    // one is being synced.
    let (checkpoints, queue) = std::sync::mpsc::sync_channel::<(Durable, Vec<u8>)>(0);
    let recorder = {
        let (host, record, part) = (host.clone(), record, part.clone());
        std::thread::spawn(move || -> Result<()> {
            for (durable, state) in queue {
                durable().with_context(|| {
                    format!("cannot write `{}` on {}", part.display(), host.name())
                })?;
                host.write_atomic(&record, &state, Some(0o644))?;
            }
            Ok(())
        })
    };
    let written = (|| -> Result<()> {
        while let Some(op) = rx.blocking_recv() {
            match op {
                Op::Write(offset, data) => file.write_at(offset, &data).with_context(ctx)?,
                Op::Checkpoint(state) => {
                    let durable = file.sync_later().with_context(ctx)?;
                    // A closed queue means the recorder failed: its error is the one to tell.
                    // The handed-over half still runs here, so its channels end properly.
                    if let Err(SendError((durable, _))) = checkpoints.send((durable, state)) {
                        let _ = durable();
                        break;
                    }
                }
            }
        }
        Ok(())
    })();
    drop(checkpoints);
    let recorded = recorder
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the checkpoint thread panicked")));
    written.and(recorded)?;
    file.sync().with_context(ctx)
}

impl Sink {
    /// Open `part` on `host` (never truncating: it may hold a resumable download), write
    /// `initial` as its record, then size it to `size` up front, so pieces can land anywhere.
    /// The record comes first: a preallocated `.part` without one would pass, after a kill,
    /// for a complete download of another tool (see `partial::Resume::Prefix`).
    pub fn open(
        host: Arc<dyn Host>,
        part: PathBuf,
        record: PathBuf,
        size: u64,
        initial: Vec<u8>,
    ) -> Sink {
        let (tx, rx) = mpsc::channel::<Op>(QUEUE);
        let (result_tx, result) = oneshot::channel();
        std::thread::spawn(move || {
            let _ = result_tx.send(write_all(host, part, record, size, initial, rx));
        });
        Sink { tx, result }
    }

    pub fn handle(&self) -> SinkHandle {
        SinkHandle(self.tx.clone())
    }

    /// Close the channel and wait until every queued chunk is written and synced; the first
    /// write error, if any (a full disk, a dropped SSH connection).
    pub async fn finish(self) -> Result<()> {
        drop(self.tx);
        self.result
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the writer thread panicked")))
    }
}
