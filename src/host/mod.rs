//! One abstraction under every action on a machine, local or over SSH: run a command, read,
//! write atomically, stat, mkdir -p, stream a file in and out. Capabilities never touch
//! `std::process` or `std::fs` for a target directly; that is what makes `--host`, tests and
//! `--dry-run` uniform.

mod known_hosts;
mod local;
mod memo;
mod ssh;
mod target;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

pub use local::LocalHost;
pub use memo::Memo;
pub use ssh::{SshHost, SshOptions};
pub use target::{check_destination, HostKeyConfig, SshTarget, StrictHostKeyChecking};

/// A command to run on a host. Arguments are kept apart and quoted for the remote shell, so a
/// path with spaces stays one argument on either side.
#[derive(Debug, Clone, Default)]
pub struct Command {
    pub program: String,
    pub args: Vec<String>,
    pub stdin: Option<Vec<u8>>,
    pub timeout: Option<Duration>,
}

impl Command {
    pub fn new(program: impl Into<String>) -> Self {
        Command {
            program: program.into(),
            ..Default::default()
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The command as one POSIX shell line (what an SSH server hands to the login shell).
    pub fn shell_line(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| shell_escape::unix::escape(a.into()).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What a finished command left behind.
#[derive(Debug, Clone)]
pub struct Output {
    /// `None` when the command was killed by a signal or timed out.
    pub status: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// The last `n` lines of stderr: where a failing build or install says why.
    pub fn stderr_tail(&self, n: usize) -> String {
        let text = self.stderr_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub mtime: i64,
    /// Permission bits (`0o644`).
    pub mode: u32,
    pub is_dir: bool,
    /// Numeric owner, so a rewrite can hand the file back to its owner; `None` when unknown.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// A file open for positioned writes: the sink of a (segmented) download or an upload.
pub trait RandomWrite: Send {
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> std::io::Result<()>;
    fn set_len(&mut self, len: u64) -> std::io::Result<()>;
    fn sync(&mut self) -> std::io::Result<()>;

    /// `sync` in two halves: what must happen before the next write, here, and the rest (the
    /// wait on the disk), returned to run on another thread while writing goes on. Once that
    /// returns `Ok`, every byte written before this call is on disk. By default all of it
    /// happens here.
    fn sync_later(&mut self) -> std::io::Result<Durable> {
        self.sync()?;
        Ok(Box::new(|| Ok(())))
    }
}

/// The second half of [`RandomWrite::sync_later`].
pub type Durable = Box<dyn FnOnce() -> std::io::Result<()> + Send>;

/// What a path is once symlinks are followed (see [`Host::resolve`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The path with every symlink followed (the file a write must replace).
    pub real: PathBuf,
    /// `None` when nothing is there (a missing file, or a dangling link's target).
    pub kind: Option<FileKind>,
    /// Hard links to the file (1 for a file with one name).
    pub links: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKind {
    Regular,
    Directory,
    /// A FIFO, socket or device, named as `stat` names it.
    Other(String),
}

/// An advisory lock held on a host (see [`Host::try_lock`]); dropping it lets go.
/// `probe`'s answer, asked once per run on `host` (see [`Memo`]).
pub fn memoized<T: Clone + Send + Sync + 'static>(
    host: &dyn Host,
    probe: impl FnOnce() -> Result<T>,
) -> Result<T> {
    match host.memo() {
        Some(memo) => memo.get_or_probe(probe),
        None => probe(),
    }
}

pub trait HostLock: Send + Sync {}

pub trait Host: Send + Sync {
    /// `local`, or the SSH destination as the operator named it.
    fn name(&self) -> &str;

    fn is_local(&self) -> bool;

    fn run(&self, cmd: &Command) -> Result<Output>;

    /// The whole file, or `None` when it does not exist.
    fn read_opt(&self, path: &Path) -> Result<Option<Vec<u8>>>;

    fn stat(&self, path: &Path) -> Result<Option<FileStat>>;

    fn mkdir_p(&self, path: &Path) -> Result<()>;

    /// Write `data` to a temp file in the same folder, fsync, rename over `path`. `mode` defaults
    /// to the mode of the file being replaced (0644 for a new file).
    fn write_atomic(&self, path: &Path, data: &[u8], mode: Option<u32>) -> Result<()>;

    /// Stream a file out, starting at `offset`.
    fn open_read(&self, path: &Path, offset: u64) -> Result<Box<dyn Read + Send>>;

    /// Open (creating if missing, never truncating) for positioned writes: stream a file in.
    fn open_write(&self, path: &Path) -> Result<Box<dyn RandomWrite>>;

    /// Rename, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> Result<()>;

    fn remove_file(&self, path: &Path) -> Result<()>;

    /// The home folder of the user the tool acts as on this host (where `~` is).
    fn home(&self) -> Result<PathBuf>;

    /// Where probes keep what holds for the whole run (see [`memoized`]); `None`: nowhere,
    /// every probe asks again.
    fn memo(&self) -> Option<&Memo> {
        None
    }

    /// Take an exclusive advisory lock (`flock`) on `path` on this host, creating the file if
    /// missing, without waiting: `None` while another process holds it. It is released when
    /// the guard is dropped, or when this process dies: the kernel lets go of a local lock, and
    /// over SSH sshd closes the session, which ends the remote holder.
    fn try_lock(&self, path: &Path) -> Result<Option<Box<dyn HostLock>>>;

    /// Follow `path`'s symlinks and say what is at the end, without opening it (opening a FIFO
    /// would block). This default runs GNU `readlink -f` and `stat -L` on the host.
    fn resolve(&self, path: &Path) -> Result<Resolved> {
        let path_s = path.to_str().context("path is not UTF-8")?;
        let script =
            r#"readlink -f -- "$1" && { stat -L -c '%F|%h' -- "$1" 2>/dev/null || echo missing; }"#;
        let out = self.run_ok(&Command::new("sh").args(["-c", script, "sh", path_s]))?;
        let text = out.stdout_text();
        let mut lines = text.lines();
        let real = PathBuf::from(lines.next().unwrap_or(path_s));
        let (kind, links) = match lines.next().and_then(|l| l.rsplit_once('|')) {
            None => (None, 0),
            Some((kind, links)) => (
                Some(match kind {
                    "regular file" | "regular empty file" => FileKind::Regular,
                    "directory" => FileKind::Directory,
                    other => FileKind::Other(other.to_string()),
                }),
                links.trim().parse().unwrap_or(1),
            ),
        };
        Ok(Resolved { real, kind, links })
    }

    /// How many `open_write` write runs (download segments) the host keeps open at once, over
    /// all files; `None` when there is no such limit.
    fn write_streams(&self) -> Option<usize> {
        None
    }

    fn read(&self, path: &Path) -> Result<Vec<u8>> {
        self.read_opt(path)?
            .with_context(|| format!("`{}` does not exist on {}", path.display(), self.name()))
    }

    /// Run and require exit status 0; the error carries the command's stderr.
    fn run_ok(&self, cmd: &Command) -> Result<Output> {
        let out = self.run(cmd)?;
        if !out.success() {
            let status = out
                .status
                .map_or_else(|| "was killed".to_string(), |s| format!("exited with {s}"));
            bail!(
                "`{}` {status} on {}: {}",
                cmd.shell_line(),
                self.name(),
                out.stderr_text().trim()
            );
        }
        Ok(out)
    }

    /// Expand a leading `~` against this host's home folder.
    fn expand_home(&self, path: &str) -> Result<PathBuf> {
        Ok(match path.strip_prefix('~') {
            Some("") => self.home()?,
            Some(rest) if rest.starts_with('/') => self.home()?.join(&rest[1..]),
            _ => PathBuf::from(path),
        })
    }
}

/// Which machine to act on, from `--host`.
pub fn connect(target: &str, opts: &SshOptions) -> Result<Box<dyn Host>> {
    if target == "local" {
        return Ok(Box::new(LocalHost::new()));
    }
    let target = SshTarget::resolve(target, opts.home.as_deref())?;
    Ok(Box::new(SshHost::connect(target, opts)?))
}

/// A temp-file name beside `path` for an atomic replace.
pub(crate) fn temp_sibling(path: &Path) -> Result<PathBuf> {
    let name = path
        .file_name()
        .with_context(|| format!("`{}` has no file name", path.display()))?;
    let suffix: u32 = rand::random();
    Ok(path.with_file_name(format!(
        ".{}.tmp-{}-{suffix:08x}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_line_quotes_each_argument() {
        let cmd = Command::new("ls").args(["-l", "my models", "it's"]);
        assert_eq!(cmd.shell_line(), r#"ls -l 'my models' 'it'\''s'"#);
    }
}
