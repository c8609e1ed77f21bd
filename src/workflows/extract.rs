//! Putting a verified archive's entries on a host under the deployment root: a plan made
//! from the manifest alone (new / unchanged / conflicting), then writes through `Host`, each
//! file atomically with its archived mode. Nothing is written outside the root: archive paths
//! are checked by `archive::read`, and symlinks already inside the workflow folders on the
//! host are refused rather than written through.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::archive::{Discard, Sink, Staged};
use super::manifest::{Entry, Manifest};
use super::tree;
use crate::defaults::WORKFLOW_FOLDERS;
use crate::file_change::FileChange;
use crate::host::{temp_sibling, Command, Host, RandomWrite};
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

    /// Stage the file at `path`: in memory when small (written atomically at commit, as
    /// before), else streamed into a temp file beside its destination.
    fn stage(&mut self, path: &str, size: u64, mode: u32) -> Result<Box<dyn Staged + '_>> {
        let action = self.plan[path];
        let bucket = match action {
            Action::Unchanged => &mut self.outcome.unchanged,
            Action::Conflict => &mut self.outcome.conflicting,
            Action::Create | Action::Replace => &mut self.outcome.restored,
        };
        bucket.push(path.to_string());
        if self.dry_run || matches!(action, Action::Unchanged | Action::Conflict) {
            return Ok(Box::new(Discard));
        }
        let dest = self.root.join(path);
        self.outcome.bytes_written += size;
        if let Some(parent) = dest.parent() {
            self.host.mkdir_p(parent)?;
        }
        let body = match size <= IN_MEMORY_MAX {
            true => Body::Memory(Vec::with_capacity(size as usize)),
            false => {
                let tmp = temp_sibling(&dest)?;
                let file = self.host.open_write(&tmp)?;
                Body::File {
                    tmp,
                    file,
                    offset: 0,
                }
            }
        };
        Ok(Box::new(ToHost {
            host: self.host,
            dest,
            mode,
            replace: action == Action::Replace,
            backups: &mut self.outcome.backups,
            body,
        }))
    }
}

/// Files up to this size are staged in memory (workflows are small JSON files); larger ones
/// go to a temp file, so memory stays bounded whatever an archive holds.
const IN_MEMORY_MAX: u64 = 8 << 20;

enum Body {
    Memory(Vec<u8>),
    File {
        tmp: PathBuf,
        file: Box<dyn RandomWrite>,
        offset: u64,
    },
}

/// A file entry on its way to `dest` on `host`.
struct ToHost<'a> {
    host: &'a dyn Host,
    dest: PathBuf,
    mode: u32,
    replace: bool,
    backups: &'a mut Vec<PathBuf>,
    body: Body,
}

impl Staged for ToHost<'_> {
    fn write(&mut self, chunk: &[u8]) -> Result<()> {
        match &mut self.body {
            Body::Memory(data) => data.extend_from_slice(chunk),
            Body::File { tmp, file, offset } => {
                file.write_at(*offset, chunk)
                    .with_context(|| format!("cannot write `{}`", tmp.display()))?;
                *offset += chunk.len() as u64;
            }
        }
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<()> {
        let ToHost {
            host,
            dest,
            mode,
            replace,
            backups,
            body,
        } = *self;
        match body {
            // Keeps the replaced file's mode and owner, and a backup of it beside it.
            Body::Memory(data) if replace => {
                let change = FileChange::plan(host, &dest, |_| Ok(data))?;
                backups.extend(change.apply(host, mode, true)?);
                Ok(())
            }
            Body::Memory(data) => host.write_atomic(&dest, &data, Some(mode & 0o777)),
            Body::File { tmp, mut file, .. } => {
                let placed = (|| -> Result<()> {
                    file.sync()
                        .with_context(|| format!("cannot write `{}`", tmp.display()))?;
                    drop(file);
                    let tmp_s = tmp.to_str().context("path is not UTF-8")?;
                    let mode_s = format!("{:o}", mode & 0o7777);
                    host.run_ok(&Command::new("chmod").args([mode_s.as_str(), "--", tmp_s]))?;
                    if replace {
                        // The old bytes keep their inode (mode, owner) under the backup name.
                        let backup = crate::step::backup_path(&dest);
                        host.rename(&dest, &backup)?;
                        backups.push(backup);
                    }
                    host.rename(&tmp, &dest)
                })();
                if placed.is_err() {
                    let _ = host.remove_file(&tmp);
                }
                placed
            }
        }
    }

    fn abort(self: Box<Self>) {
        if let Body::File { tmp, file, .. } = self.body {
            drop(file);
            let _ = self.host.remove_file(&tmp);
        }
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

    fn dir(&mut self, path: &str) -> Result<()> {
        if self.plan[path] == Action::Create && !self.dry_run {
            self.host.mkdir_p(&self.root.join(path))?;
            self.outcome.folders_created += 1;
        }
        Ok(())
    }

    fn file(&mut self, path: &str, size: u64, mode: u32) -> Result<Box<dyn Staged + '_>> {
        self.stage(path, size, mode)
    }
}

/// Checks only: every entry is read and verified, nothing is written anywhere.
pub struct VerifyOnly;

impl Sink for VerifyOnly {
    fn manifest(&mut self, _: &Manifest) -> Result<()> {
        Ok(())
    }

    fn dir(&mut self, _: &str) -> Result<()> {
        Ok(())
    }

    fn file(&mut self, _: &str, _: u64, _: u32) -> Result<Box<dyn Staged + '_>> {
        Ok(Box::new(Discard))
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
