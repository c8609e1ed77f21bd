//! A machine reached over SSH with libssh2 (`ssh2`). One session per run, shared by every step.
//! Commands go over exec channels, small files over SFTP, bulk writes (model downloads) over
//! exec channels into `dd` (see `stream_write`); replacing a file uses `mv -f` because SFTPv3
//! rename refuses an existing target.
//!
//! Every libssh2 call holds `Gate`: exec channels are drained in non-blocking mode (so stdout
//! and stderr are read together), and blocking mode is a session-wide switch in libssh2.

use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use ssh2::{Channel, ErrorCode, HashType, HostKeyType, OpenFlags, OpenType, Session, Sftp};

use super::known_hosts::{self, KnownHosts, Verdict};
use super::target::StrictHostKeyChecking;
use super::{
    temp_sibling, Command, FileStat, Host, HostLock, Memo, Output, RandomWrite, SshTarget,
};
use crate::ui::HintExt;

mod dd;
mod jump;

/// What the remote `flock -n -E` exits with when another process holds the lock.
const FLOCK_BUSY: i32 = 75;
/// The remote holder: `flock` takes the lock, says so, then waits for stdin to close (the
/// guard dropped, or the SSH session gone); `-o` keeps the lock out of the child's hands.
const FLOCK_HOLDER: &str = "echo locked; exec cat >/dev/null";

/// SFTP status for "no such file" (draft-ietf-secsh-filexfer-02, SSH_FX_NO_SUCH_FILE).
const SFTP_NO_SUCH_FILE: i32 = 2;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// The longest any blocking libssh2 call (a handshake, an SFTP request, a channel open) may wait
/// for the server. This is what ends a dead link on macOS, which has no TCP user timeout.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// A command that prints nothing for this long gets a liveness probe (a channel open the server
/// must answer within `IO_TIMEOUT`): a long silent `docker build` is fine, a dead link is not.
const PROBE_AFTER: Duration = Duration::from_secs(20);

/// The longest an exec drain sleeps between polls of a quiet channel: what a short command's
/// end may wait to be noticed (libssh2 offers no wait on a channel that spares the gate).
const MAX_NAP: Duration = Duration::from_millis(5);

/// Serialises libssh2 calls; see the module comment.
#[derive(Clone, Default)]
struct Gate(Arc<Mutex<()>>);

impl Gate {
    fn hold(&self) -> MutexGuard<'_, ()> {
        // A panic elsewhere leaves nothing half-done in `()`.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, Clone, Default)]
pub struct SshOptions {
    /// Record an unknown host key instead of refusing (OpenSSH's `StrictHostKeyChecking=accept-new`).
    pub accept_new_host_key: bool,
    /// Where `~` is on this machine (config, keys, known_hosts); `$HOME` when `None`.
    pub home: Option<PathBuf>,
}

/// The session and its gate, shared with the writers `open_write` hands out.
struct Link {
    name: String,
    session: Session,
    gate: Gate,
    /// `dd` channels open over this session (see `dd::SESSION_STREAMS`).
    dd_streams: std::sync::atomic::AtomicUsize,
}

pub struct SshHost {
    target: SshTarget,
    link: Arc<Link>,
    sftp: OnceLock<Sftp>,
    home: OnceLock<PathBuf>,
    /// Whether the target's `dd` takes `oflag=seek_bytes` (GNU coreutils), learnt on the first
    /// `open_write`; without it bulk writes go over SFTP.
    dd_seeks: OnceLock<bool>,
    memo: Memo,
}

impl SshHost {
    pub fn connect(target: SshTarget, opts: &SshOptions) -> Result<SshHost> {
        let session = if target.proxy_jump.is_empty() {
            tcp_connect(&target).and_then(|tcp| open_session(&target, tcp))
        } else {
            jump::through(&target, opts).and_then(|sock| open_session(&target, sock))
        }
        .with_context(|| format!("cannot connect to `{}`", target.alias))?;
        verify_host_key(&session, &target, opts.accept_new_host_key)?;
        authenticate(&session, &target)?;
        Ok(SshHost {
            link: Arc::new(Link {
                name: target.alias.clone(),
                session,
                gate: Gate::default(),
                dd_streams: Default::default(),
            }),
            target,
            sftp: OnceLock::new(),
            home: OnceLock::new(),
            dd_seeks: OnceLock::new(),
            memo: Memo::default(),
        })
    }

    fn sftp(&self) -> Result<&Sftp> {
        if let Some(sftp) = self.sftp.get() {
            return Ok(sftp);
        }
        let _g = self.link.gate.hold();
        if let Some(sftp) = self.sftp.get() {
            return Ok(sftp);
        }
        let sftp = self
            .link
            .session
            .sftp()
            .with_context(|| format!("cannot start SFTP on `{}`", self.target.alias))
            .hint("enable the SFTP subsystem in the target's sshd_config")?;
        Ok(self.sftp.get_or_init(|| sftp))
    }

    /// `write_atomic` in one round trip, for a target known to have GNU `dd` (the SFTP way
    /// takes six): a download's record is rewritten every second. The temp file is created
    /// exclusively and private (umask 077), fsynced, given its mode, then renamed over `path`.
    fn write_atomic_exec(&self, tmp: &Path, path: &Path, data: &[u8], mode: u32) -> Result<()> {
        let script = r#"umask 077 && dd of="$1" conv=excl,fsync status=none && chmod "$3" "$1" && mv -f "$1" "$2" || { status=$?; rm -f "$1"; exit "$status"; }"#;
        let cmd = Command::new("sh")
            .args(["-c", script, "sh"])
            .arg(self.path_str(tmp)?)
            .arg(self.path_str(path)?)
            .arg(format!("{:o}", mode & 0o7777))
            .stdin(data);
        self.run_ok(&cmd)
            .with_context(|| format!("cannot write `{}` on `{}`", path.display(), self.name()))?;
        Ok(())
    }

    fn path_str<'a>(&self, path: &'a Path) -> Result<&'a str> {
        path.to_str()
            .with_context(|| format!("`{}` is not valid UTF-8", path.display()))
    }
}

impl Link {
    fn exec(&self, line: &str, stdin: Option<&[u8]>) -> Result<Output> {
        self.trace(line);
        let channel = {
            let _g = self.gate.hold();
            let mut channel = self.session.channel_session()?;
            channel.exec(line)?;
            if let Some(data) = stdin {
                channel.write_all(data)?;
            }
            channel.send_eof()?;
            channel
        };
        self.complete(channel)
    }

    /// Wait for a command whose input is closed to end, without holding the gate while it
    /// runs: its output, its exit status; the channel is freed.
    fn complete(&self, mut channel: Channel) -> Result<Output> {
        let drained = self.drain(&mut channel);
        let _g = self.gate.hold();
        let status = match drained {
            Ok(_) => exit_status(&mut channel),
            Err(_) => Ok(None),
        };
        // Freed under the gate: see `SftpFile`'s drop.
        drop(channel);
        let (stdout, stderr) = drained?;
        Ok(Output {
            status: status?,
            stdout,
            stderr,
        })
    }

    /// `-v`: the command line, as the remote shell gets it (secrets masked by `trace`).
    fn trace(&self, line: &str) {
        crate::trace::line(format_args!("ssh `{}`: {line}", self.name));
    }

    /// Read stdout and stderr together until the remote end closes them: reading one to its
    /// end first would leave the other's window full, and the command blocked on it.
    fn drain(&self, channel: &mut Channel) -> Result<(Vec<u8>, Vec<u8>)> {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let mut buf = vec![0u8; 64 * 1024];
        let mut nap = Duration::from_millis(1);
        let mut last_data = Instant::now();
        loop {
            let (got, eof) = {
                let _g = self.gate.hold();
                self.session.set_blocking(false);
                let read = read_available(channel, &mut buf, &mut stdout, &mut stderr);
                self.session.set_blocking(true);
                read?
            };
            if eof {
                return Ok((stdout, stderr));
            }
            if got > 0 {
                last_data = Instant::now();
                nap = Duration::from_millis(1);
                continue;
            }
            if last_data.elapsed() >= PROBE_AFTER {
                self.probe()?;
                last_data = Instant::now();
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(MAX_NAP);
        }
    }

    /// Fails when the server does not answer a channel open within `IO_TIMEOUT`.
    fn probe(&self) -> Result<()> {
        let _g = self.gate.hold();
        let mut channel = self
            .session
            .channel_session()
            .map_err(anyhow::Error::from)
            .and_then(|mut c| c.close().map(|_| c).map_err(anyhow::Error::from));
        if let Ok(c) = channel.as_mut() {
            let _ = c.wait_close();
        }
        channel
            .map(|_| ())
            .with_context(|| {
                format!(
                    "the SSH connection to `{}` stopped answering (no reply for {} s)",
                    self.name,
                    IO_TIMEOUT.as_secs()
                )
            })
            .hint(
                "check the network between this machine and the target, then run the command again",
            )
    }
}

impl Host for SshHost {
    fn name(&self) -> &str {
        &self.target.alias
    }

    fn is_local(&self) -> bool {
        false
    }

    fn memo(&self) -> Option<&Memo> {
        Some(&self.memo)
    }

    fn run(&self, cmd: &Command) -> Result<Output> {
        let line = match cmd.timeout {
            // The remote `timeout` kills the process there too; a local timer could not.
            Some(t) => format!(
                "timeout -k 5 {} sh -c {}",
                t.as_secs().max(1),
                shell_escape::unix::escape(cmd.shell_line().into())
            ),
            None => cmd.shell_line(),
        };
        let mut out = self
            .link
            .exec(&line, cmd.stdin.as_deref())
            .with_context(|| format!("cannot run `{}` on `{}`", cmd.program, self.name()))?;
        if cmd.timeout.is_some() && matches!(out.status, Some(124) | Some(137)) {
            out.status = None;
        }
        Ok(out)
    }

    fn read_opt(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        let sftp = self.sftp()?;
        let _g = self.link.gate.hold();
        let mut file = match sftp.open(path) {
            Ok(f) => f,
            Err(e) if e.code() == ErrorCode::SFTP(SFTP_NO_SUCH_FILE) => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot read `{}` on `{}`", path.display(), self.name())
                })
            }
        };
        let mut data = Vec::new();
        file.read_to_end(&mut data)
            .with_context(|| format!("cannot read `{}` on `{}`", path.display(), self.name()))?;
        Ok(Some(data))
    }

    fn stat(&self, path: &Path) -> Result<Option<FileStat>> {
        let sftp = self.sftp()?;
        let _g = self.link.gate.hold();
        match sftp.stat(path) {
            Ok(s) => Ok(Some(FileStat {
                size: s.size.unwrap_or(0),
                mtime: s.mtime.unwrap_or(0) as i64,
                mode: s.perm.unwrap_or(0) & 0o7777,
                is_dir: s.is_dir(),
                uid: s.uid,
                gid: s.gid,
            })),
            Err(e) if e.code() == ErrorCode::SFTP(SFTP_NO_SUCH_FILE) => Ok(None),
            Err(e) => Err(e)
                .with_context(|| format!("cannot stat `{}` on `{}`", path.display(), self.name())),
        }
    }

    fn mkdir_p(&self, path: &Path) -> Result<()> {
        self.run_ok(&Command::new("mkdir").arg("-p").arg(self.path_str(path)?))?;
        Ok(())
    }

    fn write_atomic(&self, path: &Path, data: &[u8], mode: Option<u32>) -> Result<()> {
        let mode = match mode {
            Some(m) => m,
            None => self.stat(path)?.map_or(0o644, |s| s.mode),
        };
        let tmp = temp_sibling(path)?;
        if self.dd_seeks.get() == Some(&true) {
            return self.write_atomic_exec(&tmp, path, data, mode);
        }
        let sftp = self.sftp()?;
        let written = (|| -> Result<()> {
            let _g = self.link.gate.hold();
            // Opened with its final mode, and the mode set again before any byte is written
            // (the server applies its umask on create): secrets never sit world-readable.
            let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUSIVE;
            let mut file = sftp.open_mode(&tmp, flags, (mode & 0o777) as i32, OpenType::File)?;
            sftp.setstat(&tmp, perm_stat(mode))?;
            file.write_all(data)?;
            file.fsync()?;
            Ok(())
        })()
        .and_then(|()| self.rename(&tmp, path));
        if written.is_err() {
            let _g = self.link.gate.hold();
            let _ = sftp.unlink(&tmp);
        }
        written.with_context(|| format!("cannot write `{}` on `{}`", path.display(), self.name()))
    }

    fn open_read(&self, path: &Path, offset: u64) -> Result<Box<dyn Read + Send>> {
        let sftp = self.sftp()?;
        let _g = self.link.gate.hold();
        let mut file = sftp
            .open(path)
            .with_context(|| format!("cannot open `{}` on `{}`", path.display(), self.name()))?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(SftpFile {
            file,
            gate: self.link.gate.clone(),
        }))
    }

    fn open_write(&self, path: &Path) -> Result<Box<dyn RandomWrite>> {
        if self.dd_seeks.get() != Some(&false) {
            let writer = dd::DdWriter::open(self.link.clone(), self.path_str(path)?)?;
            self.dd_seeks.get_or_init(|| writer.is_some());
            if let Some(writer) = writer {
                return Ok(Box::new(writer));
            }
        }
        let sftp = self.sftp()?;
        let _g = self.link.gate.hold();
        let file = sftp
            .open_mode(
                path,
                OpenFlags::WRITE | OpenFlags::CREATE,
                0o644,
                OpenType::File,
            )
            .with_context(|| {
                format!(
                    "cannot open `{}` for writing on `{}`",
                    path.display(),
                    self.name()
                )
            })?;
        Ok(Box::new(SftpFile {
            file,
            gate: self.link.gate.clone(),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let cmd = Command::new("mv")
            .arg("-f")
            .arg(self.path_str(from)?)
            .arg(self.path_str(to)?);
        self.run_ok(&cmd)?;
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        let sftp = self.sftp()?;
        let _g = self.link.gate.hold();
        match sftp.unlink(path) {
            Err(e) if e.code() != ErrorCode::SFTP(SFTP_NO_SUCH_FILE) => Err(e).with_context(|| {
                format!("cannot remove `{}` on `{}`", path.display(), self.name())
            }),
            _ => Ok(()),
        }
    }

    fn try_lock(&self, path: &Path) -> Result<Option<Box<dyn HostLock>>> {
        let line = Command::new("flock")
            .args(["-n", "-o", "-E", &FLOCK_BUSY.to_string()])
            .arg(self.path_str(path)?)
            .args(["sh", "-c", FLOCK_HOLDER])
            .shell_line();
        let ctx = || format!("cannot lock `{}` on `{}`", path.display(), self.name());
        // Blocking reads under the gate: the session is in blocking mode whenever the gate is free.
        let _g = self.link.gate.hold();
        let mut channel = self.link.session.channel_session().with_context(ctx)?;
        self.link.trace(&line);
        channel.exec(&line).with_context(ctx)?;
        let mut first = Vec::new();
        let mut byte = [0u8; 1];
        while first.len() < 16 && channel.read(&mut byte).with_context(ctx)? == 1 {
            if byte[0] == b'\n' {
                break;
            }
            first.push(byte[0]);
        }
        if first == b"locked" {
            return Ok(Some(Box::new(SshLock {
                channel: std::sync::Mutex::new(Some(channel)),
                gate: self.link.gate.clone(),
            })));
        }
        let mut stderr = String::new();
        let _ = channel.stderr().read_to_string(&mut stderr);
        channel.wait_close().with_context(ctx)?;
        match channel.exit_status().with_context(ctx)? {
            FLOCK_BUSY => Ok(None),
            127 => Err(anyhow!("`flock` is not installed on `{}`", self.name()))
                .hint("install util-linux on the target (`sudo apt-get install util-linux`)"),
            status => {
                Err(anyhow!("`flock` exited with {status}: {}", stderr.trim())).with_context(ctx)
            }
        }
    }

    /// As many write runs as the session keeps `dd` channels (`dd::SESSION_STREAMS`), shared
    /// by the files in flight. Fewer segments are faster on loopback (bench/ssh.sh, loaded
    /// 2-core box: 1 segment 20 s, 3 segments 31 s, 6 segments 41 s), but a download still
    /// needs segments to resume per piece and to fill a link a CDN caps per connection. With
    /// all of them open, a checkpoint's next `dd`s wait for its ending ones (see
    /// `DdWriter::sync_later`).
    fn write_streams(&self) -> Option<usize> {
        Some(dd::SESSION_STREAMS)
    }

    fn home(&self) -> Result<PathBuf> {
        if let Some(home) = self.home.get() {
            return Ok(home.clone());
        }
        let out = self.run_ok(&Command::new("sh").args(["-c", "printf %s \"$HOME\""]))?;
        let home = PathBuf::from(out.stdout_text());
        if home.as_os_str().is_empty() {
            bail!("$HOME is not set on `{}`", self.name());
        }
        Ok(self.home.get_or_init(|| home).clone())
    }
}

/// The exec channel running the remote `flock`; closing its stdin ends the holder.
struct SshLock {
    channel: std::sync::Mutex<Option<ssh2::Channel>>,
    gate: Gate,
}

impl HostLock for SshLock {}

impl Drop for SshLock {
    fn drop(&mut self) {
        let _g = self.gate.hold();
        if let Ok(Some(channel)) = self.channel.get_mut() {
            let _ = channel.send_eof();
            let _ = channel.wait_close();
        }
        // Freed here, under the gate (see `SftpFile`'s drop), not after this function returns.
        let channel = std::mem::replace(&mut self.channel, std::sync::Mutex::new(None));
        drop(channel);
    }
}

fn perm_stat(mode: u32) -> ssh2::FileStat {
    ssh2::FileStat {
        size: None,
        uid: None,
        gid: None,
        perm: Some(mode),
        atime: None,
        mtime: None,
    }
}

/// The exit status (`None` when a signal ended the command), valid only once the remote side
/// closed the channel.
fn exit_status(channel: &mut Channel) -> Result<Option<i32>> {
    channel.wait_close()?;
    if channel.exit_signal()?.exit_signal.is_some() {
        return Ok(None);
    }
    Ok(Some(channel.exit_status()?))
}

/// An SFTP file whose every call holds the session's gate.
struct SftpFile {
    file: ssh2::File,
    gate: Gate,
}

impl Drop for SftpFile {
    fn drop(&mut self) {
        // Dropping the handle sends FXP_CLOSE: under the gate like every other libssh2 call,
        // or it may be sent while another thread's drain has the session non-blocking, and a
        // packet cut short by EAGAIN corrupts the stream ("message authentication code
        // incorrect" on the server).
        let _g = self.gate.hold();
        let _ = self.file.close();
    }
}

impl Read for SftpFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let _g = self.gate.hold();
        self.file.read(buf)
    }
}

impl RandomWrite for SftpFile {
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        let _g = self.gate.hold();
        self.file.seek(SeekFrom::Start(offset))?;
        self.file.write_all(buf)
    }

    fn set_len(&mut self, len: u64) -> std::io::Result<()> {
        let mut stat = perm_stat(0);
        stat.perm = None;
        stat.size = Some(len);
        let _g = self.gate.hold();
        self.file.setstat(stat).map_err(std::io::Error::other)
    }

    fn sync(&mut self) -> std::io::Result<()> {
        let _g = self.gate.hold();
        self.file.fsync().map_err(std::io::Error::other)
    }
}

/// One non-blocking pass over both streams: everything already readable is appended; the
/// stream reports end of file only once no data is left queued for it.
fn read_available(
    channel: &mut Channel,
    buf: &mut [u8],
    stdout: &mut Vec<u8>,
    stderr: &mut Vec<u8>,
) -> Result<(usize, bool)> {
    let mut got = 0;
    for (stream, sink) in [(0, stdout), (1, stderr)] {
        let mut reader = channel.stream(stream);
        loop {
            match reader.read(buf) {
                Ok(0) => break,
                Ok(n) => {
                    got += n;
                    sink.extend_from_slice(&buf[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok((got, channel.eof()))
}

fn tcp_connect(target: &SshTarget) -> Result<TcpStream> {
    let addrs: Vec<_> = (target.host_name.as_str(), target.port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve `{}`", target.host_name))?
        .collect();
    let mut last_err = None;
    let tcp = addrs.iter().find_map(|a| {
        TcpStream::connect_timeout(a, CONNECT_TIMEOUT)
            .map_err(|e| last_err = Some(e))
            .ok()
    });
    let tcp = tcp
        .ok_or_else(|| anyhow!(last_err.map_or("no address".to_string(), |e| e.to_string())))
        .with_context(|| {
            format!(
                "TCP connection to {}:{} failed",
                target.host_name, target.port
            )
        })
        .hint("check the address and that sshd runs on the target (`sudo systemctl status ssh`)")?;
    detect_dead_links(&tcp)?;
    Ok(tcp)
}

/// The SSH transport over `stream`: a TCP connection, or a socket a `ProxyJump` pump serves.
fn open_session(
    target: &SshTarget,
    stream: impl std::os::unix::io::AsRawFd + 'static,
) -> Result<Session> {
    let mut session = Session::new()?;
    session.set_tcp_stream(stream);
    if let Some(prefs) = host_key_prefs(target) {
        // Ask for the key type known_hosts holds, or libssh2 may pick another type and report
        // a false mismatch.
        session.method_pref(ssh2::MethodType::HostKey, &prefs)?;
    }
    prefer_fast_ciphers(&session)?;
    session.set_timeout(IO_TIMEOUT.as_millis() as u32);
    session.handshake().context("SSH handshake failed")?;
    Ok(session)
}

/// AES-GCM first, every other cipher libssh2 offers after it, in its own order. libssh2 puts
/// chacha20-poly1305 first, in its portable C code (no SIMD), which held a model download to
/// ~50 MiB/s on loopback; AES-GCM goes through OpenSSL, which uses the CPU's AES instructions
/// (x86 AES-NI, ARMv8 crypto extensions: the Spark and Apple silicon). Both are AEAD ciphers
/// OpenSSH offers by default, so no server that took the old order refuses this one.
fn prefer_fast_ciphers(session: &Session) -> Result<()> {
    for method in [ssh2::MethodType::CryptCs, ssh2::MethodType::CryptSc] {
        let mut algs = session.supported_algs(method)?;
        // Stable: the GCM ones keep their relative order (256 before 128), as do the rest.
        algs.sort_by_key(|a| !a.contains("-gcm@"));
        session.method_pref(method, &algs.join(","))?;
    }
    Ok(())
}

/// libssh2's blocking calls have no timeout of their own, and a long `docker build` may print
/// nothing for minutes, so the link itself is watched: TCP keepalive probes an idle link, and
/// (on Linux) unacknowledged data fails the socket after a minute. A Wi-Fi drop or a NAT that
/// forgets the connection then ends in an error instead of a hang.
fn detect_dead_links(tcp: &TcpStream) -> Result<()> {
    let sock = socket2::SockRef::from(tcp);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10))
        .with_retries(3);
    sock.set_tcp_keepalive(&keepalive)?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    sock.set_tcp_user_timeout(Some(Duration::from_secs(60)))?;
    Ok(())
}

/// The name known_hosts files list this host under: `HostKeyAlias`, else `host` / `[host]:port`.
fn known_hosts_name(target: &SshTarget) -> String {
    match &target.host_keys.alias {
        Some(alias) => alias.clone(),
        None => known_hosts::host_port_name(&target.host_name, target.port),
    }
}

fn known_hosts_files(target: &SshTarget) -> Vec<PathBuf> {
    let keys = &target.host_keys;
    keys.user_files
        .iter()
        .chain(&keys.global_files)
        .cloned()
        .collect()
}

/// Key types recorded in known_hosts for this host, put first in the host-key preference list.
fn host_key_prefs(target: &SshTarget) -> Option<String> {
    let known = KnownHosts::load(&known_hosts_files(target)).ok()?;
    let mut types = known.key_types(&known_hosts_name(target));
    if types.is_empty() {
        return None;
    }
    for fallback in [
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "rsa-sha2-512",
        "rsa-sha2-256",
        "ssh-rsa",
    ] {
        if !types.iter().any(|t| t == fallback) {
            types.push(fallback.to_string());
        }
    }
    Some(types.join(","))
}

fn key_type_name(kind: HostKeyType) -> &'static str {
    match kind {
        HostKeyType::Rsa => "ssh-rsa",
        HostKeyType::Dss => "ssh-dss",
        HostKeyType::Ecdsa256 => "ecdsa-sha2-nistp256",
        HostKeyType::Ecdsa384 => "ecdsa-sha2-nistp384",
        HostKeyType::Ecdsa521 => "ecdsa-sha2-nistp521",
        HostKeyType::Ed25519 => "ssh-ed25519",
        HostKeyType::Unknown => "unknown",
    }
}

/// `SHA256:<base64>` as `ssh-keygen -l` prints it.
fn fingerprint(session: &Session) -> String {
    let hash = session.host_key_hash(HashType::Sha256).unwrap_or_default();
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(hash)
    )
}

/// OpenSSH's policy over `UserKnownHostsFile` and `GlobalKnownHostsFile`: a revoked key is
/// always refused, a known key must match, a changed key is always refused, and an unknown key
/// is recorded only under `StrictHostKeyChecking accept-new`/`no` or `--accept-new-host-key`.
fn verify_host_key(session: &Session, target: &SshTarget, accept_new: bool) -> Result<()> {
    let (key, kind) = session.host_key().context("the server sent no host key")?;
    let files = known_hosts_files(target);
    let known = KnownHosts::load(&files)?;
    let name = known_hosts_name(target);
    let fp = fingerprint(session);
    let kind = key_type_name(kind);
    let strict = if accept_new {
        StrictHostKeyChecking::AcceptNew
    } else {
        target.host_keys.strict
    };
    match known.check(&name, kind, key) {
        Verdict::Match => Ok(()),
        Verdict::Revoked(at) => Err(anyhow!(
            "@@@ WARNING: REVOKED HOST KEY DETECTED! @@@\nThe {kind} host key for {name} is marked as revoked ({at}).\nThis could mean that a stolen key is being used to impersonate this host.\n{kind} {fp}"
        ))
        .hint("a revoked key is never accepted: get the host's current key from its administrator"),
        Verdict::Changed(at) => Err(anyhow!(
            "@@@ WARNING: THE HOST KEY OF `{name}` HAS CHANGED @@@\nthe server offered {kind} {fp}, which does not match the key in {at}; someone may be intercepting the connection, or the host was reinstalled",
        ))
        .hint(format!(
            "if the host was reinstalled, remove the old key with `ssh-keygen -R '{name}' -f '{}'` and connect again",
            at.file.display()
        )),
        Verdict::CertAuthorityOnly(at) => Err(anyhow!(
            "the only known_hosts entry for `{name}` is an @cert-authority line ({at}): host certificates are not supported by lifeos-spark"
        ))
        .hint(format!(
            "add the host's own key beside it: `ssh-keyscan -p {} {} >> ~/.ssh/known_hosts` (check its fingerprint {fp} first)",
            target.port, target.host_name
        )),
        Verdict::NotFound => match (strict, target.host_keys.user_files.first()) {
            (StrictHostKeyChecking::AcceptNew | StrictHostKeyChecking::No, Some(file)) => {
                let line = format!(
                    "{name} {kind} {}\n",
                    base64::engine::general_purpose::STANDARD.encode(key)
                );
                known_hosts::append(file, &line)?;
                eprintln!("warning: recorded new host key for `{name}` ({fp}) in `{}`", file.display());
                Ok(())
            }
            _ => Err(anyhow!("the host key of `{name}` is not known: {kind} {fp}")).hint(format!(
                "check the fingerprint on the target (`ssh-keygen -lf /etc/ssh/ssh_host_{}_key.pub`), then re-run with `--accept-new-host-key`{}",
                kind.trim_start_matches("ssh-").split('-').next().unwrap_or("ed25519"),
                if strict == StrictHostKeyChecking::Ask {
                    " (StrictHostKeyChecking ask would prompt; lifeos-spark never prompts)"
                } else {
                    ""
                }
            )),
        },
    }
}

/// Every ssh-agent identity (libssh2's `userauth_agent` tries only the first), then key files.
fn authenticate(session: &Session, target: &SshTarget) -> Result<()> {
    let user = &target.user;
    let mut tried = Vec::new();
    if std::env::var_os("SSH_AUTH_SOCK").is_some() {
        if let Ok(mut agent) = session.agent() {
            if agent.connect().is_ok() && agent.list_identities().is_ok() {
                for id in agent.identities().unwrap_or_default() {
                    tried.push(format!("agent key {}", id.comment()));
                    if agent.userauth(user, &id).is_ok() && session.authenticated() {
                        return Ok(());
                    }
                }
            }
        }
    }
    for key in target.identity_files.iter().filter(|k| k.exists()) {
        tried.push(format!("`{}`", key.display()));
        let public = key.with_extension("pub");
        let public = public.exists().then_some(public.as_path());
        if session
            .userauth_pubkey_file(user, public, key, None)
            .is_ok()
            && session.authenticated()
        {
            return Ok(());
        }
    }
    let tried = if tried.is_empty() {
        "no agent identity and no key file found".to_string()
    } else {
        format!("tried {}", tried.join(", "))
    };
    Err(anyhow!(
        "authentication as `{user}` on `{}` failed ({tried})",
        target.alias
    ))
    .hint(format!(
        "add your public key to ~{user}/.ssh/authorized_keys on the target (`ssh-copy-id {user}@{}`), or name a key with IdentityFile in ~/.ssh/config",
        target.host_name
    ))
}
