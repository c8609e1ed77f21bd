//! Putting a verified archive's entries on a host under the deployment root: a plan made
//! from the manifest alone (new / unchanged / conflicting), then writes through `Host`, each
//! file atomically with its archived mode. Nothing is written outside the root: archive paths
//! are checked by `archive::read`, and symlinks already inside the workflow folders on the
//! host are refused rather than written through.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::archive::{Sink, Verified};
use super::manifest::{Entry, Manifest};
use super::tree;
use crate::defaults::WORKFLOW_FOLDERS;
use crate::file_change::FileChange;
use crate::host::{Command, Host};
use crate::ui::HintExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Create,
    Unchanged,
    /// Differs from the archive and `--force` was not given: left alone.
    Conflict,
    /// Differs, `--force`: replaced, the old one kept beside it.
    Replace,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreOutcome {
    /// Files written (new or replaced with `--force`); with `--dry-run`, those that would be.
    pub restored: Vec<String>,
    pub unchanged: Vec<String>,
    /// Files that differ on the host and were left alone (no `--force`).
    pub conflicting: Vec<String>,
    /// Backups of replaced files.
    pub backups: Vec<PathBuf>,
    pub folders_created: usize,
    pub bytes_written: u64,
}

/// Writes (or, with `dry_run`, only plans) the archive's entries under `root` on `host`.
pub struct Extractor<'a> {
    host: &'a dyn Host,
    root: PathBuf,
    force: bool,
    dry_run: bool,
    plan: BTreeMap<String, Action>,
    pub outcome: RestoreOutcome,
}

impl<'a> Extractor<'a> {
    pub fn new(host: &'a dyn Host, root: PathBuf, force: bool, dry_run: bool) -> Self {
        Extractor {
            host,
            root,
            force,
            dry_run,
            plan: BTreeMap::new(),
            outcome: RestoreOutcome::default(),
        }
    }

    fn plan_entry(&self, entry: &Entry, links: &BTreeSet<String>) -> Result<Action> {
        let path = entry.path();
        if let Some(link) = links
            .iter()
            .find(|l| path == *l || path.starts_with(&format!("{l}/")))
        {
            return Err(anyhow::anyhow!(
                "`{}` is a symlink on {}; refusing to write `{path}` through it",
                self.root.join(link).display(),
                self.host.name()
            ))
            .hint("replace the symlink with a real folder, or restore into another `--root`");
        }
        let dest = self.root.join(path);
        let stat = self.host.stat(&dest)?;
        let differs = match (entry, stat) {
            (_, None) => return Ok(Action::Create),
            (Entry::Dir { .. }, Some(s)) if s.is_dir => return Ok(Action::Unchanged),
            (Entry::Dir { .. }, Some(_)) => bail!(
                "`{}` is a file on {}, the archive has a folder there",
                dest.display(),
                self.host.name()
            ),
            (Entry::File { .. }, Some(s)) if s.is_dir => bail!(
                "`{}` is a folder on {}, the archive has a file there",
                dest.display(),
                self.host.name()
            ),
            (Entry::File { size, sha256, .. }, Some(s)) => {
                s.size != *size || hash_on(self.host, &dest)? != *sha256
            }
        };
        Ok(match (differs, self.force) {
            (false, _) => Action::Unchanged,
            (true, false) => Action::Conflict,
            (true, true) => Action::Replace,
        })
    }

    fn write_file(&mut self, path: &str, mode: u32, data: Vec<u8>) -> Result<()> {
        let action = self.plan[path];
        let bucket = match action {
            Action::Unchanged => &mut self.outcome.unchanged,
            Action::Conflict => &mut self.outcome.conflicting,
            Action::Create | Action::Replace => &mut self.outcome.restored,
        };
        bucket.push(path.to_string());
        if self.dry_run || matches!(action, Action::Unchanged | Action::Conflict) {
            return Ok(());
        }
        let dest = self.root.join(path);
        self.outcome.bytes_written += data.len() as u64;
        if action == Action::Replace {
            // Keeps the replaced file's mode and owner, and a backup of it beside it.
            let change = FileChange::plan(self.host, &dest, |_| Ok(data))?;
            self.outcome
                .backups
                .extend(change.apply(self.host, mode, true)?);
            return Ok(());
        }
        if let Some(parent) = dest.parent() {
            self.host.mkdir_p(parent)?;
        }
        self.host.write_atomic(&dest, &data, Some(mode & 0o777))
    }
}

impl Sink for Extractor<'_> {
    fn manifest(&mut self, manifest: &Manifest) -> Result<()> {
        let links = symlinks_in_folders(self.host, &self.root)?;
        for entry in &manifest.entries {
            let action = self.plan_entry(entry, &links)?;
            self.plan.insert(entry.path().to_string(), action);
        }
        Ok(())
    }

    fn entry(&mut self, entry: Verified<'_>) -> Result<()> {
        match entry {
            Verified::Dir(path) => {
                if self.plan[path] == Action::Create && !self.dry_run {
                    self.host.mkdir_p(&self.root.join(path))?;
                    self.outcome.folders_created += 1;
                }
                Ok(())
            }
            Verified::File { path, mode, data } => self.write_file(path, mode, data),
        }
    }
}

/// Checks only: every entry is read and verified, nothing is written anywhere.
pub struct VerifyOnly;

impl Sink for VerifyOnly {
    fn manifest(&mut self, _: &Manifest) -> Result<()> {
        Ok(())
    }

    fn entry(&mut self, _: Verified<'_>) -> Result<()> {
        Ok(())
    }
}

fn hash_on(host: &dyn Host, path: &Path) -> Result<String> {
    let (_, sha256) = tree::hash(host.open_read(path, 0)?)
        .with_context(|| format!("cannot read `{}` on {}", path.display(), host.name()))?;
    Ok(sha256)
}

/// Symlinks below the workflow folders on the host, relative to `root`. The folders
/// themselves may be symlinks (`-H`: the operator's layout); what is inside may not.
fn symlinks_in_folders(host: &dyn Host, root: &Path) -> Result<BTreeSet<String>> {
    let root_str = root
        .to_str()
        .context("the root is not UTF-8")?
        .trim_end_matches('/');
    let mut links = BTreeSet::new();
    for folder in WORKFLOW_FOLDERS {
        let dir = format!("{root_str}/{folder}");
        if host.stat(Path::new(&dir))?.is_none() {
            continue;
        }
        let cmd = Command::new("find").args(["-H", &dir, "-type", "l", "-print0"]);
        let out = host.run_ok(&cmd)?;
        for raw in out.stdout.split(|&b| b == 0).filter(|p| !p.is_empty()) {
            let path = String::from_utf8_lossy(raw);
            if let Some(rel) = path.strip_prefix(&format!("{root_str}/")) {
                links.insert(rel.to_string());
            }
        }
    }
    Ok(links)
}

/// Re-read every restored or unchanged file on the host and compare it with the manifest.
pub fn verify_on_host(
    host: &dyn Host,
    root: &Path,
    manifest: &Manifest,
    skip: &[String],
) -> Result<usize> {
    let mut checked = 0;
    for (path, _, sha256) in manifest
        .files()
        .filter(|(p, _, _)| !skip.iter().any(|s| s == p))
    {
        let actual = hash_on(host, &root.join(path))?;
        if actual != sha256 {
            bail!(
                "`{path}` on {} does not match the archive after the restore",
                host.name()
            );
        }
        checked += 1;
    }
    Ok(checked)
}
