//! Bulk writes over exec channels into `dd` on the target, instead of SFTP: libssh2's SFTP
//! waits on a reply per 30 KiB request and ran at 0.4x of `curl | ssh host 'cat > f'`; a plain
//! channel streams at the pace of the link. Each contiguous run of writes (one per download
//! segment) gets its own `dd` at its offset; `sync` ends them all, checks their exit status and
//! fsyncs the file, so a checkpoint never names bytes still in a pipe or only in page cache.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use ssh2::Channel;

use super::Link;
use crate::host::{Command, Durable, RandomWrite};

/// Open `dd` channels per session, over all files: sshd's `MaxSessions` (default 10) counts
/// every channel, and SFTP, a command and a liveness probe may be open beside them.
pub(super) const SESSION_STREAMS: usize = 6;

pub(super) struct DdWriter {
    link: Arc<Link>,
    path: String,
    streams: Vec<Stream>,
    /// A `set_len` not yet applied: the first `dd` applies it (one round trip less before the
    /// first byte), or `sync` does when nothing was written.
    pending_len: Option<u64>,
}

struct Stream {
    channel: Channel,
    /// The offset its next byte lands at.
    next: u64,
}

impl DdWriter {
    /// Create `path` if missing, never truncating it (it may hold a resumable download), and
    /// fsync what it already holds: the prefix a resumed record names. `None` when the
    /// target's `dd` does not take `oflag=seek_bytes` (not GNU): the caller uses SFTP.
    pub(super) fn open(link: Arc<Link>, path: &str) -> Result<Option<DdWriter>> {
        let out = link.exec(&fsync_line(path), None)?;
        if !out.success() {
            if out.stderr_text().contains("seek_bytes") {
                return Ok(None);
            }
            bail!(
                "cannot open `{path}` for writing on `{}`: {}",
                link.name,
                out.stderr_text().trim()
            );
        }
        Ok(Some(DdWriter {
            link,
            path: path.to_string(),
            streams: Vec::new(),
            pending_len: None,
        }))
    }

    fn start(&mut self, offset: u64) -> Result<Stream> {
        let dd = Command::new("dd")
            .arg(format!("of={}", self.path))
            .args(["bs=1M", "oflag=seek_bytes", "conv=notrunc", "status=none"])
            .arg(format!("seek={offset}"));
        let line = match self.pending_len.take() {
            Some(len) => Command::new("sh")
                .args([
                    "-c",
                    r#"truncate -s "$1" "$2" && shift 2 && exec "$@""#,
                    "sh",
                ])
                .arg(len.to_string())
                .arg(&self.path)
                .arg(dd.program)
                .args(dd.args)
                .shell_line(),
            None => dd.shell_line(),
        };
        let _g = self.link.gate.hold();
        let mut channel = self.link.session.channel_session()?;
        self.link.dd_streams.fetch_add(1, Ordering::SeqCst);
        self.link.trace(&line);
        if let Err(e) = channel.exec(&line) {
            self.link.dd_streams.fetch_sub(1, Ordering::SeqCst);
            return Err(e.into());
        }
        Ok(Stream {
            channel,
            next: offset,
        })
    }

    fn finish_all(&mut self) -> Result<()> {
        if let Some(len) = self.pending_len.take() {
            self.truncate(len)?;
        }
        let streams = std::mem::take(&mut self.streams);
        let mut first_err = None;
        for stream in streams {
            if let Err(e) = finish(&self.link, &self.path, stream) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Wait until the session has room for one more `dd`: end this writer's least recently
    /// used one, or wait for other files' writers, which end theirs at every checkpoint.
    fn free_a_slot(&mut self) -> Result<()> {
        while self.link.dd_streams.load(Ordering::SeqCst) >= SESSION_STREAMS {
            if self.streams.is_empty() {
                std::thread::sleep(Duration::from_millis(10));
            } else {
                let oldest = self.streams.remove(0);
                finish(&self.link, &self.path, oldest)?;
            }
        }
        Ok(())
    }

    fn truncate(&self, len: u64) -> Result<()> {
        let cmd = Command::new("truncate").args(["-s", &len.to_string(), &self.path]);
        run_ok(&self.link, &cmd.shell_line(), || {
            format!("`truncate` on `{}` failed", self.path)
        })
    }

    fn write(&mut self, offset: u64, buf: &[u8]) -> Result<()> {
        let index = match self.streams.iter().position(|s| s.next == offset) {
            Some(i) => i,
            None => {
                self.free_a_slot()?;
                let stream = self.start(offset)?;
                self.streams.push(stream);
                self.streams.len() - 1
            }
        };
        let stream = &mut self.streams[index];
        let _g = self.link.gate.hold();
        stream.channel.write_all(buf)?;
        stream.next += buf.len() as u64;
        Ok(())
    }
}

/// Close `dd`'s input and wait for it to exit, the gate free meanwhile (the writer goes on
/// with the next `dd`); its stderr says why when it failed.
fn finish(link: &Link, path: &str, mut stream: Stream) -> Result<()> {
    let sent = {
        let _g = link.gate.hold();
        stream.channel.send_eof()
    };
    let out = match sent {
        Ok(()) => link.complete(stream.channel),
        Err(e) => {
            let _g = link.gate.hold();
            drop(stream);
            Err(e.into())
        }
    };
    // The channel is done with, whatever happened.
    link.dd_streams.fetch_sub(1, Ordering::SeqCst);
    let out = out?;
    if !out.success() {
        bail!(
            "`dd` writing `{path}` on `{}` exited with {}: {}",
            link.name,
            out.status.map_or("a signal".into(), |c| c.to_string()),
            out.stderr_text().trim()
        );
    }
    Ok(())
}

/// fsync `path` with a `dd` of its own: an fsync of any descriptor flushes the whole file, so
/// this covers the bytes every `dd` that already exited wrote.
fn fsync(link: &Link, path: &str) -> Result<()> {
    run_ok(link, &fsync_line(path), || {
        format!("cannot fsync `{path}` on `{}`", link.name)
    })
}

/// Run `line`; when it fails, `what` and its stderr are the error.
fn run_ok(link: &Link, line: &str, what: impl FnOnce() -> String) -> Result<()> {
    let out = link.exec(line, None)?;
    if !out.success() {
        bail!("{}: {}", what(), out.stderr_text().trim());
    }
    Ok(())
}

impl RandomWrite for DdWriter {
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        self.write(offset, buf).map_err(std::io::Error::other)
    }

    fn set_len(&mut self, len: u64) -> std::io::Result<()> {
        // Streams still open may write past `len`: end them first, as a file would.
        self.finish_all().map_err(std::io::Error::other)?;
        self.pending_len = Some(len);
        Ok(())
    }

    fn sync(&mut self) -> std::io::Result<()> {
        self.finish_all().map_err(std::io::Error::other)?;
        fsync(&self.link, &self.path).map_err(std::io::Error::other)
    }

    /// Later writes start new `dd`s; closing these, waiting for them to exit and the fsync run
    /// in the returned work, beside those writes.
    fn sync_later(&mut self) -> std::io::Result<Durable> {
        if let Some(len) = self.pending_len.take() {
            self.truncate(len).map_err(std::io::Error::other)?;
        }
        let streams = std::mem::take(&mut self.streams);
        let (link, path) = (self.link.clone(), self.path.clone());
        Ok(Box::new(move || {
            let mut first_err = None;
            for stream in streams {
                if let Err(e) = finish(&link, &path, stream) {
                    first_err.get_or_insert(e);
                }
            }
            first_err
                .map_or(Ok(()), Err)
                .and_then(|()| fsync(&link, &path))
                .map_err(std::io::Error::other)
        }))
    }
}

impl Drop for DdWriter {
    fn drop(&mut self) {
        // Bytes already sent still land; an error here has no one left to report to.
        let _ = self.finish_all();
    }
}

/// `dd` that writes nothing: creates `path` if missing, never truncates, fsyncs it; and fails
/// naming `seek_bytes` on a `dd` that is not GNU's.
fn fsync_line(path: &str) -> String {
    Command::new("dd")
        .args([
            "if=/dev/null",
            &format!("of={path}"),
            "oflag=seek_bytes",
            "conv=notrunc,fsync",
            "status=none",
        ])
        .shell_line()
}
