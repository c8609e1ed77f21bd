//! One file's download: probe, resume, parallel range pieces, retries, restarts.
//!
//! The file is cut into pieces (`MODEL_PIECE_BYTES`). Up to `connections` workers each take the
//! lowest piece not yet taken and fetch it with a `Range` request into the preallocated `.part`
//! (positioned writes through the `Sink`). Every chunk also goes to an `OrderedHasher`, so the
//! hash is done when the last byte lands. A worker may not run more than `connections` pieces
//! ahead of the hash position: that bounds the chunks waiting in memory to be hashed.
//!
//! Resuming: pieces the `.part.json` record names as finished are read back from the `.part`
//! once to rebuild the hash (SHA-256 state cannot be saved with `sha2`); the others are fetched
//! with `If-Range: <etag>`. A 200 to a range request or another ETag restarts from zero (never a
//! whole body appended to a partial); a server that ignores ranges gets one plain GET instead.
//!
//! A copy from another host (`Request::from`, `migrate`) is the same download with another
//! byte source: pieces are read from the source's file (`copy::read_range`) by one worker, in
//! order; everything else (record, sink, hash, progress, Ctrl-C) is shared.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use bytes::Bytes;
use reqwest::Url;
use tokio::sync::{watch, Notify};

use super::copy::{self, HostFile};
use super::http::{FetchError, Probe, Span, Transport};
use super::hub;
use super::manifest::ModelFile;
use super::partial::{self, PartState, Resume};
use super::progress::FileProgress;
use super::redact;
use super::sink::{Sink, SinkClosed, SinkHandle};
use super::verify::OrderedHasher;
use crate::host::Host;
use crate::ui::HintExt;

/// How often the finished ranges are recorded (each record syncs the `.part` first).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// Restarts from zero (changed file, ignored ranges) before giving up on a file.
const MAX_RESTARTS: u32 = 3;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Failed tries in a row (without a byte of progress) before giving up.
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 8,
            base: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with jitter (half to full), never sooner than `Retry-After`.
    fn delay(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = self
            .base
            .saturating_mul(1 << failures.min(16))
            .min(self.max);
        let jittered = backoff.mul_f64(0.5 + rand::random::<f64>() / 2.0);
        retry_after.map_or(jittered, |r| r.max(jittered))
    }
}

/// Range connections per file: as many as asked, or the target's best (`Auto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connections {
    /// One over SSH (each segment is a `dd` channel of the one session, restarted at every
    /// checkpoint: bench/ssh.sh measured one segment 4-5x faster than six), else
    /// `defaults::MODEL_CONNECTIONS`.
    Auto,
    Exactly(usize),
}

impl Connections {
    /// `--connections N`, or `Auto` without it.
    pub fn given(n: Option<u16>) -> Connections {
        n.map_or(Connections::Auto, |n| Connections::Exactly(n.into()))
    }

    /// How many for a target without a limit of its own.
    pub fn count(self) -> usize {
        match self {
            Connections::Auto => crate::defaults::MODEL_CONNECTIONS.into(),
            Connections::Exactly(n) => n,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct FetchOptions {
    pub connections: Connections,
    pub piece_bytes: u64,
    pub retry: RetryPolicy,
}

/// One file to fetch into `<dest>.part` on `host`.
pub struct Request<'a> {
    pub transport: &'a Transport,
    pub host: Arc<dyn Host>,
    pub file: &'a ModelFile,
    pub dest: PathBuf,
    /// Copy the bytes from this file on another host instead of the manifest's URL.
    pub from: Option<HostFile>,
}

#[derive(Debug, Clone)]
pub struct Fetched {
    pub sha256: String,
    /// Bytes received over the network this run.
    pub fetched: u64,
    /// Bytes a previous run had left in the `.part`.
    pub reused: u64,
}

/// Ctrl-C or SIGTERM: the `.part` and its record are kept.
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted {
    /// Bytes received before the stop.
    pub fetched: u64,
}

/// Download `req.file` into `<dest>.part` and hash it. The caller compares the hash and renames.
pub async fn fetch(
    req: &Request<'_>,
    opts: &FetchOptions,
    progress: &super::progress::Progress,
    mut cancel: watch::Receiver<bool>,
) -> Result<Fetched> {
    let file = req.file;
    let url = Url::parse(&file.url)?;
    let data_url = match &req.from {
        Some(src) => {
            let (src, size) = (src.clone(), file.size);
            blocking(move || src.check_size(size)).await?;
            url.clone()
        }
        None => {
            let probe = tokio::select! {
                r = retrying(&opts.retry, |m| progress.line(&format!("`{}`: {m}", file.id)), || req.transport.probe(&url)) => r.map_err(|e| explain(e, req, Kept::Nothing))?,
                _ = cancelled(&mut cancel) => return Err(Interrupted { fetched: 0 }.into()),
            };
            check_probe(&probe, file)?;
            probe.data_url
        }
    };
    let resume = blocking({
        let (host, file, dest) = (req.host.clone(), file.clone(), req.dest.clone());
        move || partial::inspect(host.as_ref(), &file, &dest)
    })
    .await?;
    let dl = Download::new(req, *opts, url, data_url, &resume);
    let origin = req.from.as_ref().map(|f| f.host.name().to_string());
    let bar = progress.start(&file.id, file.size, dl.reused, origin.as_deref());
    if resume == Resume::Prefix(file.size) && req.from.is_none() {
        dl.confirm_complete().await;
    }
    // What is known now (nothing, for a fresh download) is recorded before the preallocation.
    let sink = Sink::open(
        req.host.clone(),
        partial::part_path(&req.dest),
        partial::state_path(&req.dest),
        file.size,
        dl.record(),
    );
    let result = tokio::select! {
        r = dl.run_until_done(&sink, &bar) => r,
        _ = cancelled(&mut cancel) => Err(Interrupted { fetched: dl.lock().fetched }.into()),
    };
    if result.is_err() {
        // Keep what is finished for the next run.
        let _ = sink.handle().checkpoint(dl.record()).await;
    }
    let written = sink.finish().await;
    bar.clear();
    // A failed writer (full disk, dropped SSH link) is the cause; the workers only saw it stop.
    if let Err(e) = written {
        return Err(e.context(format!("cannot store `{}` on {}", file.id, req.host.name()))).hint(
            "finished pieces are recorded beside the file: fix the cause, then run the same command again to resume",
        );
    }
    result?;
    let mut state = dl.lock();
    if state.hasher.position() != file.size {
        bail!(
            "internal error: hashed {} of {} bytes",
            state.hasher.position(),
            file.size
        );
    }
    Ok(Fetched {
        sha256: std::mem::take(&mut state.hasher).finish(),
        fetched: state.fetched,
        reused: dl.reused,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    Todo,
    /// In the `.part` from a previous run; needs hashing.
    Stored,
    Busy {
        stored: bool,
    },
    /// Every byte handed to the sink and the hasher.
    Delivered,
}

#[derive(Debug, Clone, Copy)]
struct Claim {
    first: usize,
    end: usize,
    stored: bool,
}

/// Why an attempt stopped.
enum Stop {
    Restart {
        validator: Option<String>,
        whole: bool,
    },
    Fetch(FetchError),
    Fail(anyhow::Error),
}

impl From<FetchError> for Stop {
    fn from(e: FetchError) -> Stop {
        Stop::Fetch(e)
    }
}

impl From<SinkClosed> for Stop {
    fn from(e: SinkClosed) -> Stop {
        Stop::Fail(e.into())
    }
}

enum Next {
    Got(Claim),
    Wait,
    Finished,
}

struct State {
    data_url: Url,
    validator: Option<String>,
    /// The server ignores ranges: one plain GET from zero.
    whole: bool,
    pieces: Vec<Piece>,
    hasher: OrderedHasher,
    fetched: u64,
}

struct Download<'a> {
    req: &'a Request<'a>,
    opts: FetchOptions,
    url: Url,
    reused: u64,
    state: Mutex<State>,
    frontier_moved: Notify,
}

impl<'a> Download<'a> {
    fn new(
        req: &'a Request<'a>,
        opts: FetchOptions,
        url: Url,
        data_url: Url,
        resume: &Resume,
    ) -> Self {
        let size = req.file.size;
        let count = size.div_ceil(opts.piece_bytes) as usize;
        let (done, validator) = match resume {
            Resume::Fresh => (vec![], None),
            Resume::Recorded(s) => (s.done.clone(), s.validator.clone()),
            Resume::Prefix(n) => (vec![[0, *n]], None),
        };
        let pieces: Vec<Piece> = (0..count)
            .map(|i| {
                let (a, b) = piece_bounds(i, opts.piece_bytes, size);
                let stored = done.iter().any(|[s, e]| *s <= a && b <= *e);
                if stored {
                    Piece::Stored
                } else {
                    Piece::Todo
                }
            })
            .collect();
        let reused = (0..count)
            .filter(|i| pieces[*i] == Piece::Stored)
            .map(|i| piece_bounds(i, opts.piece_bytes, size))
            .map(|(a, b)| b - a)
            .sum();
        Download {
            req,
            opts,
            url,
            reused,
            state: Mutex::new(State {
                data_url,
                validator,
                whole: false,
                pieces,
                hasher: OrderedHasher::default(),
                fetched: 0,
            }),
            frontier_moved: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("download state lock")
    }

    fn size(&self) -> u64 {
        self.req.file.size
    }

    fn bounds(&self, claim: Claim) -> (u64, u64) {
        let p = self.opts.piece_bytes;
        (
            piece_bounds(claim.first, p, self.size()).0,
            piece_bounds(claim.end - 1, p, self.size()).1,
        )
    }

    /// The record of what is on disk: `Stored` and `Delivered` pieces.
    fn record(&self) -> Vec<u8> {
        let s = self.lock();
        let p = self.opts.piece_bytes;
        let done = s
            .pieces
            .iter()
            .enumerate()
            .filter(|(_, piece)| {
                matches!(
                    piece,
                    Piece::Stored | Piece::Delivered | Piece::Busy { stored: true }
                )
            })
            .map(|(i, _)| {
                let (a, b) = piece_bounds(i, p, self.size());
                [a, b]
            })
            .collect();
        let state = PartState::new(
            self.req.file,
            self.size(),
            s.validator.clone(),
            partial::merge(done),
        );
        serde_json::to_vec(&state).expect("a record serializes")
    }

    /// A record-less `.part` as long as the file: ask for the bytes after it. 416 says the
    /// server has no more, so the partial is complete: verify it. More bytes: start over.
    async fn confirm_complete(&self) {
        let size = self.size();
        let url = self.lock().data_url.clone();
        let span = Span {
            start: size,
            end: size,
            total: size,
        };
        match self.req.transport.get(&url, span, None).await {
            Err(FetchError::RangeNotSatisfiable { total, .. })
                if total.is_none_or(|t| t == size) => {}
            Ok(_)
            | Err(FetchError::RangeNotSatisfiable { .. })
            | Err(FetchError::RangeIgnored { .. }) => self.reset(None, false),
            // The server cannot be asked now; the hash will tell whether the partial is right.
            Err(_) => {}
        }
    }

    fn reset(&self, validator: Option<String>, whole: bool) {
        let mut s = self.lock();
        s.validator = validator;
        s.whole = whole;
        s.pieces.iter_mut().for_each(|p| *p = Piece::Todo);
        s.hasher = OrderedHasher::default();
    }

    async fn run_until_done(&self, sink: &Sink, bar: &FileProgress) -> Result<()> {
        let mut restarts = 0;
        loop {
            match self.run(sink, bar).await {
                Ok(()) => return Ok(()),
                Err(Stop::Restart { validator, whole }) if restarts < MAX_RESTARTS => {
                    restarts += 1;
                    bar.note(match whole {
                        true => "server ignores Range: starting over from zero",
                        false => "the file changed on the server: starting over from zero",
                    });
                    self.reset(validator, whole);
                    bar.reset(0);
                    sink.handle().checkpoint(self.record()).await?;
                }
                Err(Stop::Restart { .. }) => bail!(
                    "the server kept changing `{}` or ignoring ranges; gave up after {MAX_RESTARTS} restarts from zero",
                    redact::url(&self.req.file.url)
                ),
                Err(Stop::Fetch(e)) => return Err(explain(e, self.req, Kept::Partial)),
                Err(Stop::Fail(e)) => return Err(e),
            }
        }
    }

    /// One attempt: workers until every piece is delivered, with a checkpoint every second.
    async fn run(&self, sink: &Sink, bar: &FileProgress) -> Result<(), Stop> {
        let workers = {
            let s = self.lock();
            // A copy reads its source in order, one stream: no server to spread over.
            if s.whole || self.req.from.is_some() {
                1
            } else {
                self.opts
                    .connections
                    .count()
                    .clamp(1, s.pieces.len().max(1))
            }
        };
        let all = futures_util::future::try_join_all(
            (0..workers).map(|_| self.worker(sink.handle(), bar, workers == 1)),
        );
        tokio::select! {
            r = all => r.map(|_| ()),
            r = self.checkpoints(sink.handle()) => r,
        }
    }

    async fn checkpoints(&self, sink: SinkHandle) -> Result<(), Stop> {
        let mut last = Vec::new();
        loop {
            tokio::time::sleep(CHECKPOINT_EVERY).await;
            let record = self.record();
            if record != last {
                sink.checkpoint(record.clone()).await?;
                last = record;
            }
        }
    }

    async fn worker(&self, sink: SinkHandle, bar: &FileProgress, runs: bool) -> Result<(), Stop> {
        while let Some(claim) = self.claim(runs).await {
            if claim.stored {
                self.rehash(claim).await?;
            } else {
                self.download(claim, &sink, bar).await?;
            }
        }
        Ok(())
    }

    async fn claim(&self, runs: bool) -> Option<Claim> {
        loop {
            let moved = self.frontier_moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            let next = self
                .lock()
                .next(self.opts.piece_bytes, self.opts.connections.count(), runs);
            match next {
                Next::Got(claim) => return Some(claim),
                Next::Finished => return None,
                Next::Wait => moved.await,
            }
        }
    }

    /// Fetch the claim's bytes, resuming within it after a transient failure.
    async fn download(
        &self,
        claim: Claim,
        sink: &SinkHandle,
        bar: &FileProgress,
    ) -> Result<(), Stop> {
        let (start, end) = self.bounds(claim);
        let mut pos = start;
        let mut failures = 0;
        let mut reprobed = false;
        while pos < end {
            let before = pos;
            let err = match self.stream(claim, &mut pos, end, sink, bar).await {
                Ok(()) => continue,
                Err(Stop::Fetch(e)) => e,
                Err(other) => return Err(other),
            };
            if pos > before {
                failures = 0;
            }
            let data_url = self.lock().data_url.clone();
            match err {
                FetchError::RangeIgnored { etag } => return Err(self.restart_for(etag)),
                // A CDN link from the hub expires; ask the hub for a fresh one, once.
                FetchError::Status {
                    status: 401 | 403 | 404 | 410,
                    ..
                } if data_url != self.url && !reprobed => {
                    reprobed = true;
                    let probe = retrying(
                        &self.opts.retry,
                        |m| bar.note(m),
                        || self.req.transport.probe(&self.url),
                    )
                    .await?;
                    self.lock().data_url = probe.data_url;
                }
                e if e.is_transient() && failures < e.max_failures(self.opts.retry.attempts) => {
                    let wait = self.opts.retry.delay(failures, e.retry_after());
                    failures += 1;
                    let most = e.max_failures(self.opts.retry.attempts);
                    bar.note(&retry_line(failures, most, &e, wait));
                    tokio::time::sleep(wait).await;
                }
                e => return Err(Stop::Fetch(e)),
            }
        }
        Ok(())
    }

    /// One request for `[pos, end)`, streamed into the sink and the hasher.
    async fn stream(
        &self,
        claim: Claim,
        pos: &mut u64,
        end: u64,
        sink: &SinkHandle,
        bar: &FileProgress,
    ) -> Result<(), Stop> {
        if let Some(src) = &self.req.from {
            return self.copy(src, claim, pos, end, sink, bar).await;
        }
        let (url, validator) = {
            let s = self.lock();
            (s.data_url.clone(), s.validator.clone())
        };
        let span = Span {
            start: *pos,
            end,
            total: self.size(),
        };
        let mut body = self
            .req
            .transport
            .get(&url, span, validator.as_deref())
            .await?;
        self.adopt_validator(body.etag.take())?;
        while let Some(chunk) = body.chunk().await? {
            self.land(claim, pos, chunk, sink, bar).await?;
        }
        Ok(())
    }

    /// A chunk of the source's bytes at `*pos`: to the sink, the hasher and the progress.
    async fn land(
        &self,
        claim: Claim,
        pos: &mut u64,
        chunk: Bytes,
        sink: &SinkHandle,
        bar: &FileProgress,
    ) -> Result<(), Stop> {
        let n = chunk.len() as u64;
        sink.write(*pos, chunk.clone()).await?;
        self.deliver(claim, *pos, chunk, true);
        *pos += n;
        bar.inc(n);
        Ok(())
    }

    /// `[pos, end)` read from the source host's file, into the sink and the hasher.
    async fn copy(
        &self,
        src: &HostFile,
        claim: Claim,
        pos: &mut u64,
        end: u64,
        sink: &SinkHandle,
        bar: &FileProgress,
    ) -> Result<(), Stop> {
        let (mut chunks, reader) = copy::read_range(src.host.clone(), src.path.clone(), *pos, end);
        while let Some((offset, chunk)) = chunks.recv().await {
            debug_assert_eq!(offset, *pos, "a range is read in order");
            self.land(claim, pos, chunk, sink, bar).await?;
        }
        copy::joined(reader).await.map_err(|e| {
            Stop::Fail(
                e.context(format!("copying `{}` from {}", self.req.file.id, src.describe()))
                    .context(crate::ui::Hint(
                        "the copied pieces are recorded beside the file: run the same command again to resume, or use `--models-from internet`".into(),
                    )),
            )
        })
    }

    /// Hand a chunk to the hasher and mark the claim's pieces that are now complete.
    fn deliver(&self, claim: Claim, offset: u64, chunk: Bytes, network: bool) {
        let end = offset + chunk.len() as u64;
        let moved = {
            let mut s = self.lock();
            if network {
                s.fetched += chunk.len() as u64;
            }
            let p = self.opts.piece_bytes;
            for i in claim.first..claim.end {
                if piece_bounds(i, p, self.size()).1 <= end {
                    s.pieces[i] = Piece::Delivered;
                }
            }
            s.hasher.feed(offset, chunk)
        };
        if moved {
            self.frontier_moved.notify_waiters();
        }
    }

    /// Read finished pieces back from the `.part` to rebuild the hash.
    async fn rehash(&self, claim: Claim) -> Result<(), Stop> {
        let (start, end) = self.bounds(claim);
        let part = partial::part_path(&self.req.dest);
        let (mut chunks, reader) = copy::read_range(self.req.host.clone(), part, start, end);
        while let Some((offset, chunk)) = chunks.recv().await {
            self.deliver(claim, offset, chunk, false);
        }
        copy::joined(reader).await.map_err(Stop::Fail)
    }

    /// The first ETag seen becomes the validator; a different one later means the file changed.
    fn adopt_validator(&self, etag: Option<String>) -> Result<(), Stop> {
        let mut s = self.lock();
        match (&s.validator, etag) {
            (None, Some(e)) => s.validator = Some(e),
            (Some(v), Some(e)) if *v != e => {
                return Err(Stop::Restart {
                    validator: Some(e),
                    whole: false,
                })
            }
            _ => {}
        }
        Ok(())
    }

    /// A 200 to a range request: with a new ETag the file changed (restart with ranges);
    /// otherwise the server ignores ranges (restart with one plain GET).
    fn restart_for(&self, etag: Option<String>) -> Stop {
        let s = self.lock();
        let changed = matches!((&s.validator, &etag), (Some(v), Some(e)) if v != e);
        Stop::Restart {
            validator: etag,
            whole: !changed,
        }
    }
}

impl State {
    /// The lowest piece to work on, if it is within `window` pieces of the hash position.
    /// With `runs`, a lone worker takes every following piece of the same kind in one request.
    fn next(&mut self, piece: u64, window: usize, runs: bool) -> Next {
        let Some(first) = self
            .pieces
            .iter()
            .position(|p| matches!(p, Piece::Todo | Piece::Stored))
        else {
            return Next::Finished;
        };
        let frontier = (self.hasher.position() / piece) as usize;
        if !runs && first >= frontier + window.max(1) {
            return Next::Wait;
        }
        let kind = self.pieces[first];
        let mut end = first + 1;
        while runs && !self.whole && end < self.pieces.len() && self.pieces[end] == kind {
            end += 1;
        }
        if self.whole {
            end = self.pieces.len();
        }
        let stored = kind == Piece::Stored;
        self.pieces[first..end]
            .iter_mut()
            .for_each(|p| *p = Piece::Busy { stored });
        Next::Got(Claim { first, end, stored })
    }
}

fn piece_bounds(i: usize, piece: u64, size: u64) -> (u64, u64) {
    let a = i as u64 * piece;
    (a, (a + piece).min(size))
}

/// The hub's own word about the file, before downloading GBs: a different sha256 or size
/// stops this file.
fn check_probe(probe: &Probe, file: &ModelFile) -> Result<()> {
    let fix = "the file changed upstream or the manifest is wrong: check the file's page and update `size` and `sha256` in the manifest";
    if let (Some(theirs), Some(ours)) = (&probe.linked.sha256, &file.sha256) {
        // X-Linked-Etag is a sha256 only for LFS files (64 hex digits); a git blob id otherwise.
        if theirs.len() == 64 && theirs != ours {
            return Err(anyhow!(
                "the hub says `{}` has sha256 {theirs}, the manifest says {ours}",
                file.id
            ))
            .hint(fix);
        }
    }
    let theirs = probe.linked.size.or(probe.length);
    if let Some(theirs) = theirs.filter(|s| *s != file.size) {
        return Err(anyhow!(
            "the server says `{}` is {theirs} bytes, the manifest says {}",
            file.id,
            file.size
        ))
        .hint(fix);
    }
    Ok(())
}

/// `try 2 of 9 failed: HTTP 503 from `host`; next in 1.21 s`: one line per retry, with or
/// without a terminal, so a long wait is never silent.
fn retry_line(failures: u32, most: u32, e: &FetchError, wait: Duration) -> String {
    format!(
        "try {failures} of {} failed: {e}; next in {}",
        most + 1,
        crate::units::duration(wait)
    )
}

/// What a failed fetch leaves for the next run, so the hint promises only that.
#[derive(Debug, Clone, Copy)]
enum Kept {
    /// It failed before this run wrote a byte.
    Nothing,
    /// The `.part` (and its record of finished pieces) is on the host.
    Partial,
}

impl Kept {
    fn resume_note(self) -> &'static str {
        match self {
            Kept::Nothing => {
                "nothing was written: run the same command again once the server answers"
            }
            Kept::Partial => "the partial download is kept: run the same command again to resume",
        }
    }
}

/// A fetch error as the operator should read it: what, for which file, and what to do.
fn explain(e: FetchError, req: &Request<'_>, kept: Kept) -> anyhow::Error {
    let id = &req.file.id;
    match &e {
        FetchError::Status {
            status,
            gated,
            host,
            ..
        } if !e.is_transient() => {
            let token = req.transport.hub().token_use(host);
            let hint = hub::refusal_hint(*status, *gated, token, id);
            anyhow!(e)
                .context(format!(
                    "cannot fetch `{id}` from `{}`",
                    redact::url(&req.file.url)
                ))
                .context(crate::ui::Hint(hint))
        }
        FetchError::Unreachable(_) => {
            let host = Url::parse(&req.file.url).map_or("?".into(), |u| super::http::authority(&u));
            anyhow!(e)
                .context(format!("cannot fetch `{id}`: nothing answers at `{host}`"))
                .context(crate::ui::Hint(format!(
                    "check the network, the `url` of `{id}` in the manifest, `HF_ENDPOINT` and any proxy; {}",
                    kept.resume_note()
                )))
        }
        _ if e.is_transient() => anyhow!(e)
            .context(format!("cannot fetch `{id}`: still failing after retries"))
            .context(crate::ui::Hint(kept.resume_note().to_string())),
        _ => anyhow!(e).context(format!(
            "cannot fetch `{id}` from `{}`",
            redact::url(&req.file.url)
        )),
    }
}

async fn retrying<T, F, Fut>(
    policy: &RetryPolicy,
    report: impl Fn(&str),
    mut attempt: F,
) -> Result<T, FetchError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, FetchError>>,
{
    let mut failures = 0;
    loop {
        match attempt().await {
            Err(e) if e.is_transient() && failures < e.max_failures(policy.attempts) => {
                let wait = policy.delay(failures, e.retry_after());
                failures += 1;
                report(&retry_line(
                    failures,
                    e.max_failures(policy.attempts),
                    &e,
                    wait,
                ));
                tokio::time::sleep(wait).await;
            }
            result => return result,
        }
    }
}

/// Resolves once the cancel flag is set; never if its sender is gone without setting it.
pub async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    while !*cancel.borrow_and_update() {
        if cancel.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Run a blocking `Host` call off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| anyhow!("a blocking task failed: {e}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(pieces: Vec<Piece>) -> State {
        State {
            data_url: Url::parse("http://x/").unwrap(),
            validator: None,
            whole: false,
            pieces,
            hasher: OrderedHasher::default(),
            fetched: 0,
        }
    }

    #[test]
    fn claims_stay_within_the_window_of_the_hash_position() {
        let mut s = state(vec![Piece::Todo; 6]);
        for want in 0..2 {
            assert!(
                matches!(s.next(10, 2, false), Next::Got(Claim { first, end, stored: false }) if first == want && end == want + 1)
            );
        }
        assert!(matches!(s.next(10, 2, false), Next::Wait));
        s.hasher.feed(0, Bytes::from(vec![0u8; 10]));
        assert!(matches!(
            s.next(10, 2, false),
            Next::Got(Claim { first: 2, .. })
        ));
    }

    #[test]
    fn a_lone_worker_takes_runs_of_one_kind() {
        let mut s = state(vec![Piece::Stored, Piece::Stored, Piece::Todo, Piece::Todo]);
        assert!(matches!(
            s.next(10, 1, true),
            Next::Got(Claim {
                first: 0,
                end: 2,
                stored: true
            })
        ));
        assert!(matches!(
            s.next(10, 1, true),
            Next::Got(Claim {
                first: 2,
                end: 4,
                stored: false
            })
        ));
        assert!(matches!(s.next(10, 1, true), Next::Finished));
    }

    #[test]
    fn backoff_grows_and_honours_retry_after() {
        let p = RetryPolicy {
            attempts: 5,
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert!(p.delay(0, None) <= Duration::from_millis(100));
        assert!(p.delay(3, None) >= Duration::from_millis(400));
        assert!(p.delay(10, None) <= Duration::from_secs(1));
        assert!(p.delay(0, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
    }
}
