//! One file on a host replaced by new content, as a step: plan (read-only: what is there, the
//! diff), then apply (atomic write that keeps mode and owner, and optionally a backup of the
//! old bytes beside it). `env set` and `connection-info` are both this step.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::host::{temp_sibling, Command, FileStat, Host};
use crate::ui::HintExt;

/// How a step ended, in the words Ansible operators read fluently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    /// Already as wanted.
    Ok,
    /// `--dry-run`: the check found a change to make.
    WouldChange,
    Changed,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Ok => "ok",
            StepStatus::WouldChange => "would-change",
            StepStatus::Changed => "changed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct FileChange {
    pub path: PathBuf,
    /// The current bytes, `None` when the file does not exist yet.
    pub before: Option<Vec<u8>>,
    pub after: Vec<u8>,
    stat: Option<FileStat>,
}

impl FileChange {
    /// Read what is there now and compute the wanted content from it; changes nothing.
    pub fn plan(
        host: &dyn Host,
        path: &Path,
        want: impl FnOnce(Option<&[u8]>) -> Result<Vec<u8>>,
    ) -> Result<FileChange> {
        let before = host.read_opt(path)?;
        Ok(FileChange {
            path: path.to_path_buf(),
            after: want(before.as_deref())?,
            before,
            stat: host.stat(path)?,
        })
    }

    pub fn is_noop(&self) -> bool {
        self.before.as_deref() == Some(self.after.as_slice())
    }

    /// Write `after` atomically. The mode is the old file's (`new_mode` for a new file); the
    /// owner is the old file's too, set on the temp file before the rename so the file never
    /// exists with the wrong owner. With `backup`, the old bytes are first kept as
    /// `<name>.bak-<timestamp>` with the same mode and owner (it may hold secrets).
    pub fn apply(&self, host: &dyn Host, new_mode: u32, backup: bool) -> Result<Option<PathBuf>> {
        let mode = self.stat.map_or(new_mode, |s| s.mode);
        let backup_path = match (&self.before, backup) {
            (Some(old), true) => Some(self.write_backup(host, old, mode)?),
            _ => None,
        };
        let tmp = temp_sibling(&self.path)?;
        host.write_atomic(&tmp, &self.after, Some(mode))?;
        let placed = self
            .keep_owner(host, &tmp)
            .and_then(|()| host.rename(&tmp, &self.path));
        if placed.is_err() {
            let _ = host.remove_file(&tmp);
        }
        placed?;
        Ok(backup_path)
    }

    fn write_backup(&self, host: &dyn Host, old: &[u8], mode: u32) -> Result<PathBuf> {
        let path = backup_path(host, &self.path)?;
        host.write_atomic(&path, old, Some(mode))?;
        self.keep_owner(host, &path)?;
        Ok(path)
    }

    /// Give `path` the owner of the file being replaced when it differs (root editing a user's
    /// file); a user who is not root cannot, and is told so instead of leaving the file theirs.
    fn keep_owner(&self, host: &dyn Host, path: &Path) -> Result<()> {
        let Some(FileStat {
            uid: Some(uid),
            gid: Some(gid),
            ..
        }) = self.stat
        else {
            return Ok(());
        };
        let now = host.stat(path)?;
        if now.is_some_and(|s| s.uid == Some(uid) && s.gid == Some(gid)) {
            return Ok(());
        }
        let target = path.to_str().context("path is not UTF-8")?;
        host.run_ok(
            &Command::new("chown")
                .arg(format!("{uid}:{gid}"))
                .arg(target),
        )
        .with_context(|| {
            format!(
                "cannot keep the owner ({uid}:{gid}) of `{}`",
                self.path.display()
            )
        })
        .hint("run as the file's owner, or as root")?;
        Ok(())
    }
}

/// `<path>.bak-<YYYYmmdd-HHMMSS>`, with `-2`, `-3`... when one from the same second exists.
pub fn backup_path(host: &dyn Host, path: &Path) -> Result<PathBuf> {
    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
    let name = path
        .file_name()
        .with_context(|| format!("`{}` has no file name", path.display()))?
        .to_string_lossy();
    let mut n = 1;
    loop {
        let suffix = if n == 1 {
            String::new()
        } else {
            format!("-{n}")
        };
        let candidate = path.with_file_name(format!("{name}.bak-{stamp}{suffix}"));
        if host.stat(&candidate)?.is_none() {
            return Ok(candidate);
        }
        n += 1;
    }
}

/// A unified diff (`--- PATH` / `+++ PATH`, as `diff -u` names one file), empty when nothing
/// differs.
pub fn unified_diff(path: &Path, before: &str, after: &str) -> String {
    if before == after {
        return String::new();
    }
    let label = path.display().to_string();
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header(&label, &label)
        .missing_newline_hint(true)
        .to_string()
}
