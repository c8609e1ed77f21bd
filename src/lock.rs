//! One model-writing run at a time per deployment root: an advisory lock on the target.
//!
//! The lock is `flock(2)` on `<root>/.lifeos/lock`, taken through the `Host`: locally on an
//! open file, over SSH by a `flock` process on the target that holds it until its SSH channel
//! closes. A kernel lock needs no stale-lock detection: it dies with its holder (a killed run,
//! or an SSH session sshd has closed), unlike a pid file that a kill -9 leaves behind. Who holds
//! it is written beside it (`lock.holder`) for the message of the run that waits, as cargo
//! prints "Blocking waiting for file lock on …".
//!
//! The lock is re-entrant within one process: `setup` takes it at its start and the model pull
//! inside it takes it again for free.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};

use crate::host::{Host, HostLock};
use crate::ui::{HintExt, Printer};

/// The tool's own folder under a deployment root (no manifest `dest` may point into it).
pub const LOCK_DIR: &str = ".lifeos";
const LOCK_FILE: &str = "lock";
const HOLDER_FILE: &str = "lock.holder";
/// How often a waiting run tries again.
const POLL: Duration = Duration::from_millis(250);

/// `--no-wait`: fail at once instead of waiting for another run. Process-wide because the
/// lock is taken deep inside `setup` and `migrate`, far from the arguments.
static NO_WAIT: AtomicBool = AtomicBool::new(false);

pub fn set_no_wait(no_wait: bool) {
    NO_WAIT.store(no_wait, Ordering::SeqCst);
}

/// Who holds the lock, as the waiting run reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub since: String,
}

/// A held root lock; the last clone dropped releases it.
#[derive(Clone)]
pub struct RootLock(#[allow(dead_code)] Arc<Held>);

struct Held {
    key: (String, PathBuf),
    _guard: Box<dyn HostLock>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Ok(mut held) = HELD.lock() {
            held.remove(&self.key);
        }
    }
}

type Registry = Mutex<HashMap<(String, PathBuf), Weak<Held>>>;
static HELD: std::sync::LazyLock<Registry> = std::sync::LazyLock::new(Default::default);

/// The lock a run that writes must hold: `None` only in a dry run, which writes nothing.
pub fn held(lock: &Option<RootLock>) -> Result<&RootLock> {
    lock.as_ref()
        .ok_or_else(|| anyhow!("internal error: a write without the root's lock"))
}

/// The lock file of `root`.
pub fn lock_path(root: &Path) -> PathBuf {
    root.join(LOCK_DIR).join(LOCK_FILE)
}

impl RootLock {
    /// Take the lock of `root` on `host`, waiting (with a message) while another run holds it,
    /// or failing at once with `--no-wait`.
    pub fn acquire(host: &dyn Host, root: &Path, printer: &Printer) -> Result<RootLock> {
        let key = (host.name().to_string(), root.to_path_buf());
        let registry = || HELD.lock().map_err(|_| anyhow!("lock registry poisoned"));
        if let Some(lock) = registry()?.get(&key).and_then(Weak::upgrade) {
            return Ok(RootLock(lock));
        }
        host.mkdir_p(&root.join(LOCK_DIR))?;
        let path = lock_path(root);
        let mut told = false;
        let guard = loop {
            if let Some(guard) = host.try_lock(&path)? {
                break guard;
            }
            let holder = holder(host, root);
            if NO_WAIT.load(Ordering::SeqCst) {
                return Err(anyhow!(
                    "another run holds the lock on `{}` on {}{holder}",
                    path.display(),
                    host.name()
                ))
                .hint("wait for it to finish, or run again without `--no-wait` to wait for it");
            }
            if !told {
                printer.status(format!(
                    "Blocking waiting for file lock on `{}` on {}{holder}",
                    path.display(),
                    host.name()
                ));
                told = true;
            }
            std::thread::sleep(POLL);
        };
        let me = Holder {
            pid: std::process::id(),
            host: this_machine(),
            since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        let info = serde_json::to_vec(&me)?;
        host.write_atomic(&root.join(LOCK_DIR).join(HOLDER_FILE), &info, Some(0o644))?;
        let lock = Arc::new(Held {
            key: key.clone(),
            _guard: guard,
        });
        registry()?.insert(key, Arc::downgrade(&lock));
        Ok(RootLock(lock))
    }
}

/// ` (held by pid N on HOST since T)`, or nothing when the holder did not say.
fn holder(host: &dyn Host, root: &Path) -> String {
    host.read_opt(&root.join(LOCK_DIR).join(HOLDER_FILE))
        .ok()
        .flatten()
        .and_then(|data| serde_json::from_slice::<Holder>(&data).ok())
        .map_or(String::new(), |h| {
            format!(" (held by pid {} on {} since {})", h.pid, h.host, h.since)
        })
}

/// This machine's name, for the holder record: gethostname(3), which a Mac has too (it has no
/// /proc, and zsh does not export `HOSTNAME`).
fn this_machine() -> String {
    let name = gethostname::gethostname()
        .to_string_lossy()
        .trim()
        .to_string();
    if name.is_empty() {
        "this machine".to_string()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::LocalHost;

    fn quiet() -> Printer {
        Printer::plain(crate::ui::Verbosity::Quiet)
    }

    #[test]
    fn the_holder_record_names_this_machine_as_uname_does() {
        let out = std::process::Command::new("uname")
            .arg("-n")
            .output()
            .unwrap();
        let uname = String::from_utf8(out.stdout).unwrap();
        assert_eq!(this_machine(), uname.trim());
    }

    #[test]
    fn reentrant_in_one_process_and_exclusive_against_another_holder() {
        let dir = tempfile::tempdir().unwrap();
        let host = LocalHost::new();
        let a = RootLock::acquire(&host, dir.path(), &quiet()).unwrap();
        let b = RootLock::acquire(&host, dir.path(), &quiet()).unwrap();
        // Another open file description (as another process would have) cannot take it.
        assert!(host.try_lock(&lock_path(dir.path())).unwrap().is_none());
        drop(a);
        assert!(host.try_lock(&lock_path(dir.path())).unwrap().is_none());
        drop(b);
        assert!(host.try_lock(&lock_path(dir.path())).unwrap().is_some());
        let holder: Holder =
            serde_json::from_slice(&std::fs::read(dir.path().join(".lifeos/lock.holder")).unwrap())
                .unwrap();
        assert_eq!(holder.pid, std::process::id());
    }
}
