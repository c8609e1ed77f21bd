//! The machine the tool runs on.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::{
    temp_sibling, Command, FileKind, FileStat, Host, HostLock, Memo, Output, RandomWrite, Resolved,
};

#[derive(Debug, Default)]
pub struct LocalHost {
    memo: Memo,
}

impl LocalHost {
    pub fn new() -> Self {
        LocalHost::default()
    }
}

impl Host for LocalHost {
    fn name(&self) -> &str {
        "local"
    }

    fn is_local(&self) -> bool {
        true
    }

    fn memo(&self) -> Option<&Memo> {
        Some(&self.memo)
    }

    fn run(&self, cmd: &Command) -> Result<Output> {
        let child = std::process::Command::new(&cmd.program)
            .args(&cmd.args)
            .stdin(if cmd.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout kills its children too (`sudo docker ...`),
            // which would otherwise keep the pipes open.
            .process_group(0)
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            // Report a missing program as a shell would (127), as it is over SSH.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Output {
                    status: Some(127),
                    stdout: Vec::new(),
                    stderr: format!("{}: command not found\n", cmd.program).into_bytes(),
                })
            }
            Err(e) => return Err(e).with_context(|| format!("cannot start `{}`", cmd.program)),
        };
        // Feed stdin and drain both pipes on their own threads so no pipe fills and blocks.
        let stdin = child.stdin.take().zip(cmd.stdin.clone());
        let feeder = stdin.map(|(mut pipe, data)| thread::spawn(move || pipe.write_all(&data)));
        let mut out_pipe = child.stdout.take().expect("piped stdout");
        let mut err_pipe = child.stderr.take().expect("piped stderr");
        let out_reader = thread::spawn(move || {
            let mut buf = Vec::new();
            out_pipe.read_to_end(&mut buf).map(|_| buf)
        });
        let err_reader = thread::spawn(move || {
            let mut buf = Vec::new();
            err_pipe.read_to_end(&mut buf).map(|_| buf)
        });
        let status = wait_with_timeout(&mut child, cmd.timeout)?;
        if let Some(feeder) = feeder {
            // A command that exits without reading its stdin gives EPIPE: not our failure.
            let _ = feeder.join();
        }
        let stdout = out_reader.join().expect("stdout reader")?;
        let stderr = err_reader.join().expect("stderr reader")?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }

    fn read_opt(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        match fs::read(path) {
            Ok(data) => Ok(Some(data)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read `{}`", path.display())),
        }
    }

    fn stat(&self, path: &Path) -> Result<Option<FileStat>> {
        match fs::metadata(path) {
            Ok(m) => Ok(Some(FileStat {
                size: m.len(),
                mtime: m.mtime(),
                mode: m.mode() & 0o7777,
                is_dir: m.is_dir(),
                uid: Some(m.uid()),
                gid: Some(m.gid()),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot stat `{}`", path.display())),
        }
    }

    fn mkdir_p(&self, path: &Path) -> Result<()> {
        fs::create_dir_all(path).with_context(|| format!("cannot create `{}`", path.display()))
    }

    fn write_atomic(&self, path: &Path, data: &[u8], mode: Option<u32>) -> Result<()> {
        let mode = match mode {
            Some(m) => m,
            None => self.stat(path)?.map_or(0o644, |s| s.mode),
        };
        let tmp = temp_sibling(path)?;
        let result = (|| -> std::io::Result<()> {
            // Created with its final mode (at most; the umask may remove bits, set_permissions
            // restores them): a `.env` never sits world-readable, not even as a temp file.
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode & 0o777)
                .open(&tmp)?;
            file.set_permissions(fs::Permissions::from_mode(mode))?;
            file.write_all(data)?;
            file.sync_all()?;
            fs::rename(&tmp, path)?;
            // The rename is durable only once the folder itself is synced.
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.with_context(|| format!("cannot write `{}`", path.display()))
    }

    fn open_read(&self, path: &Path, offset: u64) -> Result<Box<dyn Read + Send>> {
        let mut file =
            File::open(path).with_context(|| format!("cannot open `{}`", path.display()))?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(file))
    }

    fn open_write(&self, path: &Path) -> Result<Box<dyn RandomWrite>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open `{}` for writing", path.display()))?;
        Ok(Box::new(LocalFile(file)))
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        fs::rename(from, to)
            .with_context(|| format!("cannot rename `{}` to `{}`", from.display(), to.display()))
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        match fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove `{}`", path.display()))
            }
            _ => Ok(()),
        }
    }

    fn home(&self) -> Result<PathBuf> {
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .context("$HOME is not set")
    }

    fn resolve(&self, path: &Path) -> Result<Resolved> {
        use std::os::unix::fs::FileTypeExt;
        let real = follow_links(path)?;
        let meta = match fs::metadata(&real) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Resolved {
                    real,
                    kind: None,
                    links: 0,
                })
            }
            Err(e) => return Err(e).with_context(|| format!("cannot stat `{}`", path.display())),
        };
        let t = meta.file_type();
        let kind = match () {
            _ if t.is_file() => FileKind::Regular,
            _ if t.is_dir() => FileKind::Directory,
            _ if t.is_fifo() => FileKind::Other("fifo".into()),
            _ if t.is_socket() => FileKind::Other("socket".into()),
            _ if t.is_char_device() => FileKind::Other("character special file".into()),
            _ => FileKind::Other("block special file".into()),
        };
        Ok(Resolved {
            real,
            kind: Some(kind),
            links: meta.nlink(),
        })
    }

    fn try_lock(&self, path: &Path) -> Result<Option<Box<dyn HostLock>>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open lock file `{}`", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Box::new(LocalLock(file)))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock `{}`", path.display()))
            }
        }
    }
}

/// `path` with its symlinks followed, also when the last one dangles (its target is where a
/// new file goes); at most 40 links, as Linux allows.
fn follow_links(path: &Path) -> Result<PathBuf> {
    let mut path = path.to_path_buf();
    for _ in 0..40 {
        match fs::read_link(&path) {
            Ok(target) => {
                let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
                path = dir.join(target);
            }
            Err(_) => {
                return Ok(match (path.parent(), path.file_name()) {
                    (Some(dir), Some(name)) if !dir.as_os_str().is_empty() => fs::canonicalize(dir)
                        .unwrap_or(dir.to_path_buf())
                        .join(name),
                    _ => path,
                })
            }
        }
    }
    anyhow::bail!("too many levels of symbolic links at `{}`", path.display())
}

/// The open file whose `flock` is the lock; closing it (drop) releases it.
struct LocalLock(#[allow(dead_code)] File);

impl HostLock for LocalLock {}

fn wait_with_timeout(
    child: &mut std::process::Child,
    timeout: Option<Duration>,
) -> Result<Option<i32>> {
    let Some(timeout) = timeout else {
        return Ok(child.wait()?.code());
    };
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status.code());
        }
        if Instant::now() >= deadline {
            let group = format!("-{}", child.id());
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &group])
                .status();
            let _ = child.kill();
            child.wait()?;
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

struct LocalFile(File);

impl RandomWrite for LocalFile {
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn set_len(&mut self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }

    fn sync(&mut self) -> std::io::Result<()> {
        self.0.sync_all()
    }

    /// An fsync of another descriptor of the file flushes the same inode.
    fn sync_later(&mut self) -> std::io::Result<super::Durable> {
        let file = self.0.try_clone()?;
        Ok(Box::new(move || file.sync_all()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_kills_the_children_too() {
        let started = Instant::now();
        // The grandchild `sleep` holds stdout open; only killing the group ends the read.
        let cmd = Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30"])
            .timeout(Duration::from_millis(300));
        let out = LocalHost::new().run(&cmd).unwrap();
        assert_eq!(out.status, None);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn write_atomic_keeps_secrets_private_and_missing_programs_are_127() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        LocalHost::new()
            .write_atomic(&path, b"HF_TOKEN=x\n", Some(0o600))
            .unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temp file left behind"
        );
        let out = LocalHost::new()
            .run(&Command::new("no-such-program-here"))
            .unwrap();
        assert_eq!(out.status, Some(127));
    }
}
