//! `models pull | verify | list` on one host.
//!
//! Over SSH the bytes travel through this machine: HTTP here, then SFTP positioned writes into
//! the `.part` on the target, with the same resume, record and verification as a local pull.
//! That needs nothing on the target but sshd (no curl, no Python, no token copied there), keeps
//! the Hugging Face token on the operator's machine, and lets one code path be tested; the cost
//! is that the data crosses this machine's link twice, which is what a LAN-attached Spark
//! driven from a laptop on the same LAN can afford.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use futures_util::StreamExt;
use tokio::sync::watch;

use super::copy::ModelSource;
use tokio::signal::unix::{signal, Signal, SignalKind};

use super::fetch::{self, blocking, Connections, FetchOptions, Fetched, Interrupted, Request};
use super::http::Transport;
use super::hub::Hub;
use super::manifest::{Manifest, ModelFile};
use super::partial::{self, Resume};
use super::progress::Progress;
use super::report::*;
use super::verify::{self, Presence, Stamp};
use crate::host::{Command, Host};
use crate::lock::{held, RootLock};
use crate::system;
use crate::ui::{HintExt, Printer};

/// Where the models go.
pub struct Target {
    pub host: Arc<dyn Host>,
    /// The deployment root as given (`~` allowed).
    pub root: String,
}

impl Target {
    fn root(&self) -> Result<PathBuf> {
        self.host.expand_home(&self.root)
    }
}

pub struct PullOptions {
    pub only: Vec<String>,
    pub jobs: usize,
    pub fetch: FetchOptions,
    pub dry_run: bool,
    pub hub: Hub,
    /// Files copied from another host instead of downloaded (`migrate`): same pipeline.
    pub from: Option<ModelSource>,
}

/// What to do for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    Present,
    /// There with the right size but no stamp: hash it, fetch it if wrong.
    Check,
    Fetch {
        reused: u64,
    },
    /// Same sha256 as the file at this index: link or copy it once that one is in place.
    Link {
        from: usize,
    },
}

pub fn pull(
    target: &Target,
    manifest: &Manifest,
    opts: &PullOptions,
    printer: &Printer,
) -> Result<PullReport> {
    let host = target.host.as_ref();
    let root = target.root()?;
    // Held from the plan to the last stamp: another run's bytes never get this run's stamp.
    let lock = match opts.dry_run {
        true => None,
        false => Some(RootLock::acquire(host, &root, printer)?),
    };
    let files = on_endpoint(manifest.select(&opts.only)?, &opts.hub, printer);
    let dests: Vec<PathBuf> = files.iter().map(|f| root.join(&f.dest)).collect();
    let mut plans = files
        .iter()
        .zip(&dests)
        .map(|(f, d)| plan_file(host, f, d))
        .collect::<Result<Vec<_>>>()?;
    if !opts.dry_run {
        check_unstamped(host, &files, &dests, &mut plans, printer, held(&lock)?)?;
    }
    link_duplicates(&files, &mut plans);
    let needed_bytes = needed(&files, &plans);
    let free_bytes = system::free_bytes(host, &root)?;
    let mut report = PullReport {
        manifest: manifest.name.clone(),
        host: host.name().to_string(),
        root: root.clone(),
        dry_run: opts.dry_run,
        needed_bytes,
        free_bytes,
        fetched_bytes: 0,
        interrupted: false,
        files: files
            .iter()
            .zip(&dests)
            .zip(&plans)
            .map(|((f, d), p)| entry(f, d, p, &files, opts.from.as_ref()))
            .collect(),
    };
    if opts.dry_run {
        return Ok(report);
    }
    if free_bytes < needed_bytes {
        return Err(anyhow!(
            "not enough free space under `{}` on {}: {} to download, {} free",
            root.display(),
            host.name(),
            crate::units::size(needed_bytes),
            crate::units::size(free_bytes)
        ))
        .hint("free some space, or choose a root on a larger disk with `--root`");
    }
    for (d, p) in dests.iter().zip(&plans) {
        if *p != Plan::Present {
            host.mkdir_p(d.parent().unwrap_or(&root))?;
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let run = Run {
        target,
        files: &files,
        dests: &dests,
        plans: &plans,
        lock: held(&lock)?,
    };
    runtime.block_on(execute(&run, opts, printer, &mut report))?;
    report.fetched_bytes = report.files.iter().map(|f| f.fetched_bytes).sum();
    Ok(report)
}

/// The files with their hub URLs moved to `HF_ENDPOINT`; `-v` shows where each comes from.
fn on_endpoint(files: Vec<ModelFile>, hub: &Hub, printer: &Printer) -> Vec<ModelFile> {
    files
        .into_iter()
        .map(|f| {
            let url = hub.rewrite(&f.url);
            printer.debug(format!(
                "`{}` from `{}`",
                super::report::truncate_cell(&f.id, 80),
                super::redact::url(&url)
            ));
            ModelFile { url, ..f }
        })
        .collect()
}

fn plan_file(host: &dyn Host, file: &ModelFile, dest: &Path) -> Result<Plan> {
    Ok(match verify::presence(host, file, dest)? {
        Presence::Verified => Plan::Present,
        Presence::Unverified => Plan::Check,
        Presence::Absent => Plan::Fetch {
            reused: partial::inspect(host, file, dest)?.bytes(),
        },
    })
}

/// Hash files that are there without a stamp; the right ones get a stamp, the others a fetch.
fn check_unstamped(
    host: &dyn Host,
    files: &[ModelFile],
    dests: &[PathBuf],
    plans: &mut [Plan],
    printer: &Printer,
    lock: &RootLock,
) -> Result<()> {
    for ((file, dest), plan) in files.iter().zip(dests).zip(plans.iter_mut()) {
        if *plan != Plan::Check {
            continue;
        }
        printer.status(format!(
            "verifying `{}` (already there, never verified)",
            file.id
        ));
        *plan = if verify::verify_and_stamp(host, file, dest, lock)? {
            Plan::Present
        } else {
            printer.warn(format!(
                "`{}` has other bytes than the manifest names; fetching it again",
                dest.display()
            ));
            Plan::Fetch {
                reused: partial::inspect(host, file, dest)?.bytes(),
            }
        };
    }
    Ok(())
}

/// Identical files (same sha256) are fetched once: the others link to a present copy, or to
/// the first one fetched.
fn link_duplicates(files: &[ModelFile], plans: &mut [Plan]) {
    let mut source: HashMap<&str, usize> = HashMap::new();
    for (i, f) in files.iter().enumerate() {
        if let (Some(sha), Plan::Present | Plan::Check) = (&f.sha256, &plans[i]) {
            source.entry(sha).or_insert(i);
        }
    }
    for (i, f) in files.iter().enumerate() {
        let Some(sha) = &f.sha256 else { continue };
        if !matches!(plans[i], Plan::Fetch { .. }) {
            continue;
        }
        match source.get(sha.as_str()) {
            Some(&from) => plans[i] = Plan::Link { from },
            None => {
                source.insert(sha, i);
            }
        }
    }
}

fn needed(files: &[ModelFile], plans: &[Plan]) -> u64 {
    files
        .iter()
        .zip(plans)
        .map(|(f, p)| match p {
            Plan::Fetch { reused } => f.size - reused,
            _ => 0,
        })
        .sum()
}

fn entry(
    file: &ModelFile,
    dest: &Path,
    plan: &Plan,
    files: &[ModelFile],
    from: Option<&ModelSource>,
) -> PullEntry {
    let copied_from = from.and_then(|s| s.file(&file.id));
    let (status, reused, same_as) = match plan {
        Plan::Present => (PullStatus::Present, 0, None),
        Plan::Check => (PullStatus::WouldVerify, 0, None),
        Plan::Fetch { reused } => (PullStatus::WouldFetch, *reused, None),
        Plan::Link { from } => (PullStatus::WouldLink, 0, Some(files[*from].id.clone())),
    };
    PullEntry {
        id: file.id.clone(),
        url: copied_from
            .as_ref()
            .map_or_else(|| super::redact::url(&file.url), |f| f.describe()),
        copied: copied_from.is_some(),
        dest: dest.to_path_buf(),
        size: file.size,
        status,
        fetched_bytes: 0,
        reused_bytes: reused,
        same_as,
        error: None,
        hint: None,
        failure: None,
    }
}

/// Fetch every `Fetch` file, `jobs` at a time, then the links; Ctrl-C / SIGTERM stops all
/// of them cleanly (partials recorded).
/// What a pull acts on once planned, under the root's lock.
struct Run<'a> {
    target: &'a Target,
    files: &'a [ModelFile],
    dests: &'a [PathBuf],
    plans: &'a [Plan],
    lock: &'a RootLock,
}

async fn execute(
    run: &Run<'_>,
    opts: &PullOptions,
    printer: &Printer,
    report: &mut PullReport,
) -> Result<()> {
    let Run {
        target,
        files,
        dests,
        plans,
        lock,
    } = *run;
    let transport = Transport::new(opts.hub.clone())?;
    let fetching = plans
        .iter()
        .filter(|p| matches!(p, Plan::Fetch { .. }))
        .count();
    let jobs = opts.jobs.clamp(1, fetching.max(1));
    // A host that keeps few write runs open at once (SSH: one channel each) gets fewer
    // segments per file, rather than runs that push each other out.
    let fetch_opts = FetchOptions {
        connections: Connections::Exactly(
            match (opts.fetch.connections, target.host.write_streams()) {
                (Connections::Auto, Some(_)) => 1,
                (asked, Some(streams)) => asked.count().min((streams / jobs).max(1)),
                (asked, None) => asked.count(),
            },
        ),
        ..opts.fetch
    };
    let total = files
        .iter()
        .zip(plans)
        .filter(|(_, p)| matches!(p, Plan::Fetch { .. }))
        .map(|(f, _)| f.size)
        .sum();
    let progress = Progress::new(printer, total);
    let (cancel_tx, cancel) = watch::channel(false);
    // The first Ctrl-C is this pull's: the pieces in flight are recorded before the run ends.
    // Its listeners exist before the pull claims the signal, so none falls between the two.
    let listeners = (
        signal(SignalKind::interrupt())?,
        signal(SignalKind::terminate())?,
    );
    let handled = crate::interrupt::handled_here();
    let signals = tokio::spawn(watch_signals(listeners, cancel_tx));
    let fetches = futures_util::stream::iter(
        plans
            .iter()
            .enumerate()
            .filter(|(_, p)| matches!(p, Plan::Fetch { .. })),
    )
    .map(|(i, _)| {
        let request = Request {
            transport: &transport,
            host: target.host.clone(),
            file: &files[i],
            dest: dests[i].clone(),
            from: opts.from.as_ref().and_then(|s| s.file(&files[i].id)),
        };
        let (progress, cancel) = (&progress, cancel.clone());
        let fetch_opts = &fetch_opts;
        async move {
            (
                i,
                pull_one(request, fetch_opts, progress, cancel, lock).await,
            )
        }
    })
    .buffer_unordered(jobs)
    .collect::<Vec<_>>()
    .await;
    progress.finish();
    signals.abort();
    drop(handled);
    for (i, result) in fetches {
        let e = &mut report.files[i];
        match result {
            Ok(f) => {
                e.status = PullStatus::Fetched;
                e.fetched_bytes = f.fetched;
                e.reused_bytes = f.reused;
            }
            Err(err) => record_failure(e, err, &mut report.interrupted),
        }
    }
    for (i, plan) in plans.iter().enumerate() {
        if let Plan::Link { from } = plan {
            let ready = matches!(
                report.files[*from].status,
                PullStatus::Present | PullStatus::Fetched
            );
            let result = match ready {
                true => {
                    link_or_copy(
                        target.host.clone(),
                        &dests[*from],
                        &dests[i],
                        files[i].sha256.clone(),
                        lock.clone(),
                    )
                    .await
                }
                false => Err(anyhow!("`{}` was not fetched", files[*from].id)),
            };
            let e = &mut report.files[i];
            match result {
                Ok(()) => e.status = PullStatus::Linked,
                Err(_) if report.interrupted => e.status = PullStatus::Interrupted,
                Err(err) => record_failure(e, err, &mut report.interrupted),
            }
        }
    }
    Ok(())
}

fn record_failure(entry: &mut PullEntry, err: anyhow::Error, interrupted: &mut bool) {
    if let Some(stop) = err.downcast_ref::<Interrupted>() {
        *interrupted = true;
        entry.status = PullStatus::Interrupted;
        entry.fetched_bytes = stop.fetched;
        return;
    }
    entry.status = PullStatus::Failed;
    let hint = err.downcast_ref::<crate::ui::Hint>().map(|h| h.0.clone());
    let causes: Vec<String> = err
        .chain()
        .map(|e| e.to_string())
        .filter(|m| Some(m) != hint.as_ref())
        .collect();
    entry.error = Some(causes.join(": "));
    entry.hint = hint;
    entry.failure = Some(err);
}

async fn watch_signals((mut int, mut term): (Signal, Signal), cancel: watch::Sender<bool>) {
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    crate::interrupt::took_the_signal();
    let _ = cancel.send(true);
}

/// Fetch, check the hash, and only then give the file its name. A wrong hash removes the
/// bytes and tries once more from zero.
async fn pull_one(
    req: Request<'_>,
    opts: &FetchOptions,
    progress: &Progress,
    cancel: watch::Receiver<bool>,
    lock: &RootLock,
) -> Result<Fetched> {
    let file = req.file;
    let mut fetched_total = 0;
    let started = std::time::Instant::now();
    for attempt in 0..2 {
        let fetched = fetch::fetch(&req, opts, progress, cancel.clone()).await?;
        fetched_total += fetched.fetched;
        let host = req.host.clone();
        let dest = req.dest.clone();
        if file.sha256.as_ref().is_none_or(|s| *s == fetched.sha256) {
            let (sha, lock) = (fetched.sha256.clone(), lock.clone());
            blocking(move || finalize(host.as_ref(), &dest, &sha, &lock)).await?;
            progress.finished(&file.id, fetched_total, started, req.from.is_some());
            return Ok(Fetched {
                fetched: fetched_total,
                ..fetched
            });
        }
        blocking(move || partial::discard(host.as_ref(), &dest)).await?;
        let expected = file.sha256.as_deref().unwrap_or_default();
        if attempt == 0 {
            progress.line(&format!("warning: `{}` arrived with sha256 {}, expected {expected}; removed, fetching again from zero", file.id, fetched.sha256));
            continue;
        }
        return Err(anyhow!("sha256 mismatch for `{}`: expected {expected}, got {} (twice; the bad bytes were removed)", file.id, fetched.sha256))
            .hint("the server sends other bytes than the manifest names: check `sha256` and `url` of this file in the manifest");
    }
    unreachable!("the loop returns on its second pass")
}

/// The `.part` becomes the file: sync happened in the sink; rename, stamp, drop the record.
fn finalize(host: &dyn Host, dest: &Path, sha256: &str, lock: &RootLock) -> Result<()> {
    host.rename(&partial::part_path(dest), dest)?;
    Stamp::record(host, dest, sha256, lock)?;
    host.remove_file(&partial::state_path(dest))
}

/// A second name for the same bytes: a hard link, or a copy across filesystems. The copy goes
/// to `<to>.part` and is renamed once complete, so the final name never holds part of it (an
/// interrupted copy is a prefix the next run's plan sees, then copies over).
async fn link_or_copy(
    host: Arc<dyn Host>,
    from: &Path,
    to: &Path,
    sha256: Option<String>,
    lock: RootLock,
) -> Result<()> {
    let (from, to) = (from.to_path_buf(), to.to_path_buf());
    blocking(move || {
        let host = host.as_ref();
        let from_s = from.to_str().context("path is not UTF-8")?;
        let to_s = to.to_str().context("path is not UTF-8")?;
        let linked = host.run(&Command::new("ln").args(["-f", from_s, to_s]))?;
        if !linked.success() {
            copy_beside(host, &from, &to)?;
        }
        if let Some(sha) = sha256 {
            Stamp::record(host, &to, &sha, &lock)?;
        }
        partial::discard(host, &to)
    })
    .await
}

/// `cp` into `<to>.part` (a record left by an earlier fetch removed first), check the size,
/// rename.
fn copy_beside(host: &dyn Host, from: &Path, to: &Path) -> Result<()> {
    let part = partial::part_path(to);
    let from_s = from.to_str().context("path is not UTF-8")?;
    let part_s = part.to_str().context("path is not UTF-8")?;
    partial::discard(host, to)?;
    host.run_ok(&Command::new("cp").args(["-f", from_s, part_s]))?;
    let size = |p: &Path| -> Result<u64> {
        Ok(host
            .stat(p)?
            .with_context(|| format!("`{}` vanished while copying", p.display()))?
            .size)
    };
    let (want, got) = (size(from)?, size(&part)?);
    if got != want {
        return Err(anyhow!(
            "copying `{}` to `{}` on {} stopped at {got} of {want} bytes",
            from.display(),
            part.display(),
            host.name()
        ));
    }
    host.rename(&part, to)
}

/// Re-hash every file on the target, `jobs` at a time.
pub fn verify(
    target: &Target,
    manifest: &Manifest,
    only: &[String],
    jobs: usize,
    printer: &Printer,
) -> Result<VerifyReport> {
    let host = target.host.as_ref();
    let root = target.root()?;
    // Verification writes stamps: only while no other run is changing the files.
    let lock = RootLock::acquire(host, &root, printer)?;
    let files = manifest.select(only)?;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Result<VerifyEntry>>>> =
        files.iter().map(|_| Default::default()).collect();
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, files.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(file) = files.get(i) else { break };
                let entry = verify_file(host, file, &root.join(&file.dest), &lock);
                if let Ok(e) = &entry {
                    printer.status(format!("verified `{}`: {}", e.id, e.status.label()));
                }
                *results[i].lock().expect("result slot") = Some(entry);
            });
        }
    });
    let files = results
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .expect("result slot")
                .expect("every file verified")
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(VerifyReport {
        manifest: manifest.name.clone(),
        host: host.name().to_string(),
        root,
        ok: files.iter().all(|f| f.status.is_ok()),
        files,
    })
}

fn verify_file(
    host: &dyn Host,
    file: &ModelFile,
    dest: &Path,
    lock: &RootLock,
) -> Result<VerifyEntry> {
    let mut entry = VerifyEntry {
        id: file.id.clone(),
        dest: dest.to_path_buf(),
        status: VerifyStatus::Missing,
        size: file.size,
        actual_size: None,
        sha256: file.sha256.clone(),
        actual_sha256: None,
    };
    let Some(stat) = host.stat(dest)?.filter(|s| !s.is_dir) else {
        return Ok(entry);
    };
    entry.actual_size = Some(stat.size);
    if stat.size != file.size {
        entry.status = VerifyStatus::WrongSize;
        return Ok(entry);
    }
    let Some(expected) = &file.sha256 else {
        entry.status = VerifyStatus::SizeOnly;
        return Ok(entry);
    };
    let actual = verify::hash_file(host, dest)?;
    entry.status = if actual == *expected {
        Stamp::record(host, dest, &actual, lock)?;
        VerifyStatus::Ok
    } else {
        VerifyStatus::WrongHash
    };
    entry.actual_sha256 = Some(actual);
    Ok(entry)
}

/// What the manifest holds and what of it is on the target (stamps only; no hashing).
pub fn list(target: &Target, manifest: &Manifest, only: &[String]) -> Result<ListReport> {
    let host = target.host.as_ref();
    let root = target.root()?;
    let mut entries = Vec::new();
    for file in manifest.select(only)? {
        let dest = root.join(&file.dest);
        let (state, partial_bytes) = match verify::presence(host, &file, &dest)? {
            Presence::Verified => (ListState::Present, 0),
            Presence::Unverified => (ListState::Unverified, 0),
            Presence::Absent => match partial::inspect(host, &file, &dest)? {
                Resume::Fresh => (ListState::Missing, 0),
                r => (ListState::Partial, r.bytes()),
            },
        };
        entries.push(ListEntry {
            id: file.id.clone(),
            dest,
            url: super::redact::url(&file.url),
            size: file.size,
            sha256: file.sha256.clone(),
            state,
            partial_bytes,
        });
    }
    Ok(ListReport {
        manifest: manifest.name.clone(),
        description: manifest.description.clone(),
        host: host.name().to_string(),
        root,
        total_bytes: entries.iter().map(|e| e.size).sum(),
        disk_bytes: manifest.disk_bytes(),
        present_bytes: entries
            .iter()
            .filter(|e| e.state == ListState::Present)
            .map(|e| e.size)
            .sum(),
        files: entries,
    })
}
