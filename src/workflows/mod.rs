//! Workflows: back up a host's workflow folders into a `.tar.gz` on this machine, restore one
//! onto a host, or stream one host's workflows into another.
//!
//! One archive format serves all three (`archive`): a manifest first, then folders and files in
//! manifest order. Reading always checks every entry against the manifest, so a restore from a
//! file and a transfer share the same guards; the host side of both is `extract`.

mod archive;
mod extract;
mod manifest;
mod tree;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

pub use extract::RestoreOutcome;
pub use tree::Skipped;

use crate::host::{temp_sibling, Host, RandomWrite};
use crate::ui::HintExt;
use manifest::Manifest;

#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    pub host: String,
    pub root: PathBuf,
    /// Where the archive was written on this machine; `None` with `--dry-run`.
    pub archive: Option<PathBuf>,
    /// Workflow folders found on the host.
    pub folders: Vec<String>,
    pub files: usize,
    /// Bytes of file content.
    pub bytes: u64,
    pub archive_bytes: u64,
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub host: String,
    pub root: PathBuf,
    /// The source host of a transfer.
    pub from: Option<String>,
    pub files: usize,
    #[serde(flatten)]
    pub outcome: RestoreOutcome,
    /// Files re-read on the host after writing and found equal to the manifest.
    pub verified: usize,
    /// What the source's backup left out (transfer only).
    pub skipped: Vec<Skipped>,
    pub dry_run: bool,
}

/// Back up the workflow folders under `root` on `host` into `out` on `local` (this machine),
/// written to a temp file beside it and renamed, so `out` is never a partial archive.
pub fn backup(
    host: &dyn Host,
    root: &str,
    local: &dyn Host,
    out: &Path,
    dry_run: bool,
) -> Result<BackupReport> {
    let root = host.expand_home(root)?;
    let tree = scan(host, &root)?;
    let archive_bytes = match dry_run {
        true => 0,
        false => write_archive(host, &root, &tree.manifest, local, out)?,
    };
    Ok(BackupReport {
        host: host.name().to_string(),
        root,
        archive: (!dry_run).then(|| out.to_path_buf()),
        folders: tree.folders,
        files: tree.manifest.files().count(),
        bytes: tree.manifest.file_bytes(),
        archive_bytes,
        skipped: tree.skipped,
    })
}

fn scan(host: &dyn Host, root: &Path) -> Result<tree::Tree> {
    let tree = tree::scan(host, root)?;
    if tree.folders.is_empty() {
        return Err(anyhow::anyhow!(
            "no workflow folder under `{}` on {} (looked for {})",
            root.display(),
            host.name(),
            crate::defaults::WORKFLOW_FOLDERS.join(", ")
        ))
        .hint("name the deployment root with `--root`");
    }
    Ok(tree)
}

fn write_archive(
    host: &dyn Host,
    root: &Path,
    manifest: &Manifest,
    local: &dyn Host,
    out: &Path,
) -> Result<u64> {
    let tmp = temp_sibling(out)?;
    let written = (|| -> Result<u64> {
        let file = Sequential {
            inner: local.open_write(&tmp)?,
            offset: 0,
        };
        let mut file = archive::write(host, root, manifest, file)?;
        file.inner.sync()?;
        local.rename(&tmp, out)?;
        Ok(file.offset)
    })();
    if written.is_err() {
        let _ = local.remove_file(&tmp);
    }
    written.with_context(|| format!("cannot write `{}`", out.display()))
}

/// A `RandomWrite` written front to back.
struct Sequential {
    inner: Box<dyn RandomWrite>,
    offset: u64,
}

impl Write for Sequential {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write_at(self.offset, buf)?;
        self.offset += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Restore `archive` (on `local`, this machine) under `root` on `host`. The whole archive is
/// verified before anything is written; then it is read again and extracted.
pub fn restore(
    local: &dyn Host,
    archive: &Path,
    host: &dyn Host,
    root: &str,
    force: bool,
    dry_run: bool,
) -> Result<RestoreReport> {
    archive::read(local.open_read(archive, 0)?, &mut extract::VerifyOnly).with_context(|| {
        format!(
            "`{}` failed verification; nothing was written",
            archive.display()
        )
    })?;
    let root = host.expand_home(root)?;
    let mut extractor = extract::Extractor::new(host, root.clone(), force, dry_run);
    let manifest = archive::read(local.open_read(archive, 0)?, &mut extractor)?;
    finish(
        host,
        root,
        manifest,
        extractor.outcome,
        None,
        Vec::new(),
        dry_run,
    )
}

/// Stream the workflows of `from` into `to`: an archive is written into a pipe on one thread
/// and read, verified and extracted on this one, so no copy touches a disk in between. Every
/// file is checked against the manifest before it is written, and re-read on `to` after.
pub fn transfer(
    from: &dyn Host,
    from_root: &str,
    to: &dyn Host,
    to_root: &str,
    force: bool,
    dry_run: bool,
) -> Result<RestoreReport> {
    let from_root = from.expand_home(from_root)?;
    let to_root = to.expand_home(to_root)?;
    let tree = scan(from, &from_root)?;
    let mut extractor = extract::Extractor::new(to, to_root.clone(), force, dry_run);
    let (reader, writer) = io::pipe()?;
    let manifest = &tree.manifest;
    let streamed = std::thread::scope(|s| {
        let producer = s.spawn(|| archive::write(from, &from_root, manifest, writer).map(drop));
        let consumed = archive::read(reader, &mut extractor);
        let produced = producer.join().expect("the archive writer panicked");
        match (produced, consumed) {
            (Ok(()), consumed) => consumed,
            // The reader stopped first (a refusal): the writer's broken pipe is only an echo.
            (Err(p), Err(c)) if is_broken_pipe(&p) => Err(c),
            (Err(p), _) => Err(p),
        }
    });
    let manifest = streamed
        .with_context(|| format!("transfer from {} to {} failed", from.name(), to.name()))?;
    let from_name = Some(from.name().to_string());
    finish(
        to,
        to_root,
        manifest,
        extractor.outcome,
        from_name,
        tree.skipped,
        dry_run,
    )
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|e| e.downcast_ref::<io::Error>())
        .any(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

fn finish(
    host: &dyn Host,
    root: PathBuf,
    manifest: Manifest,
    outcome: RestoreOutcome,
    from: Option<String>,
    skipped: Vec<Skipped>,
    dry_run: bool,
) -> Result<RestoreReport> {
    let verified = match dry_run {
        true => 0,
        false => extract::verify_on_host(host, &root, &manifest, &outcome.conflicting)?,
    };
    Ok(RestoreReport {
        host: host.name().to_string(),
        root,
        from,
        files: manifest.files().count(),
        outcome,
        verified,
        skipped,
        dry_run,
    })
}
