//! One file on a host replaced by new content, as a step: plan (read-only: what is there, the
//! diff), then apply (atomic write that keeps mode and owner, and optionally a backup of the
//! old bytes beside it). `env set`, `connection-info` and `workflows restore --force` use it.
//! Unlike `step::FileStep` it keeps the owner, gives the backup the file's own mode (a `.env`
//! backup holds the same secrets) and computes the new content from the current one.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::host::{temp_sibling, Command, FileStat, Host};
use crate::ui::HintExt;

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

/// `step::backup_path`, made unique with `-2`, `-3`...: two edits within one second must not
/// overwrite the first backup (the one holding the original).
fn backup_path(host: &dyn Host, path: &Path) -> Result<PathBuf> {
    let base = crate::step::backup_path(path);
    let mut candidate = base.clone();
    for n in 2.. {
        if host.stat(&candidate)?.is_none() {
            break;
        }
        let mut name = base.clone().into_os_string();
        name.push(format!("-{n}"));
        candidate = PathBuf::from(name);
    }
    Ok(candidate)
}
