//! A machine reached over SSH with libssh2 (`ssh2`). One session per run, shared by every step.
//! Commands go over exec channels, files over SFTP; replacing a file uses `mv -f` because
//! SFTPv3 rename refuses an existing target.

use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use ssh2::{
    CheckResult, ErrorCode, HashType, HostKeyType, KnownHostFileKind, OpenFlags, OpenType, Session,
    Sftp,
};

use super::{temp_sibling, Command, FileStat, Host, HostLock, Output, RandomWrite, SshTarget};
use crate::ui::HintExt;

/// What the remote `flock -n -E` exits with when another process holds the lock.
const FLOCK_BUSY: i32 = 75;
/// The remote holder: `flock` takes the lock, says so, then waits for stdin to close (the
/// guard dropped, or the SSH session gone); `-o` keeps the lock out of the child's hands.
const FLOCK_HOLDER: &str = "echo locked; exec cat >/dev/null";

/// SFTP status for "no such file" (draft-ietf-secsh-filexfer-02, SSH_FX_NO_SUCH_FILE).
const SFTP_NO_SUCH_FILE: i32 = 2;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Default)]
pub struct SshOptions {
    /// Record an unknown host key instead of refusing (OpenSSH's `StrictHostKeyChecking=accept-new`).
    pub accept_new_host_key: bool,
    /// Where `~` is on this machine (config, keys, known_hosts); `$HOME` when `None`.
    pub home: Option<PathBuf>,
}

pub struct SshHost {
    target: SshTarget,
    session: Session,
    sftp: OnceLock<Sftp>,
    home: OnceLock<PathBuf>,
}

impl SshHost {
    pub fn connect(target: SshTarget, opts: &SshOptions) -> Result<SshHost> {
        let session = open_session(&target)
            .with_context(|| format!("cannot connect to `{}`", target.alias))?;
        verify_host_key(&session, &target, opts.accept_new_host_key)?;
        authenticate(&session, &target)?;
        Ok(SshHost {
            target,
            session,
            sftp: OnceLock::new(),
            home: OnceLock::new(),
        })
    }

    fn sftp(&self) -> Result<&Sftp> {
        if let Some(sftp) = self.sftp.get() {
            return Ok(sftp);
        }
        let sftp = self
            .session
            .sftp()
            .with_context(|| format!("cannot start SFTP on `{}`", self.target.alias))
            .hint("enable the SFTP subsystem in the target's sshd_config")?;
        Ok(self.sftp.get_or_init(|| sftp))
    }

    fn exec(&self, line: &str, stdin: Option<&[u8]>) -> Result<Output> {
        let mut channel = self.session.channel_session()?;
        channel.exec(line)?;
        if let Some(data) = stdin {
            channel.write_all(data)?;
        }
        channel.send_eof()?;
        let mut stdout = Vec::new();
        channel.read_to_end(&mut stdout)?;
        let mut stderr = Vec::new();
        channel.stderr().read_to_end(&mut stderr)?;
        // The exit status is only valid after the remote side closed the channel.
        channel.wait_close()?;
        let signal = channel.exit_signal()?.exit_signal;
        let status = if signal.is_some() {
            None
        } else {
            Some(channel.exit_status()?)
        };
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }

    fn path_str<'a>(&self, path: &'a Path) -> Result<&'a str> {
        path.to_str()
            .with_context(|| format!("`{}` is not valid UTF-8", path.display()))
    }
}

impl Host for SshHost {
    fn name(&self) -> &str {
        &self.target.alias
    }

    fn is_local(&self) -> bool {
        false
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
            .exec(&line, cmd.stdin.as_deref())
            .with_context(|| format!("cannot run `{}` on `{}`", cmd.program, self.name()))?;
        if cmd.timeout.is_some() && matches!(out.status, Some(124) | Some(137)) {
            out.status = None;
        }
        Ok(out)
    }

    fn read_opt(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        let mut file = match self.sftp()?.open(path) {
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
        match self.sftp()?.stat(path) {
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
        let sftp = self.sftp()?;
        let written = (|| -> Result<()> {
            // Opened with its final mode, and the mode set again before any byte is written
            // (the server applies its umask on create): secrets never sit world-readable.
            let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUSIVE;
            let mut file = sftp.open_mode(&tmp, flags, (mode & 0o777) as i32, OpenType::File)?;
            sftp.setstat(&tmp, perm_stat(mode))?;
            file.write_all(data)?;
            file.fsync()?;
            drop(file);
            self.rename(&tmp, path)
        })();
        if written.is_err() {
            let _ = sftp.unlink(&tmp);
        }
        written.with_context(|| format!("cannot write `{}` on `{}`", path.display(), self.name()))
    }

    fn open_read(&self, path: &Path, offset: u64) -> Result<Box<dyn Read + Send>> {
        let mut file = self
            .sftp()?
            .open(path)
            .with_context(|| format!("cannot open `{}` on `{}`", path.display(), self.name()))?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(file))
    }

    fn open_write(&self, path: &Path) -> Result<Box<dyn RandomWrite>> {
        let file = self
            .sftp()?
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
        Ok(Box::new(SftpFile(file)))
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
        match self.sftp()?.unlink(path) {
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
        let mut channel = self.session.channel_session().with_context(ctx)?;
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
            return Ok(Some(Box::new(SshLock(std::sync::Mutex::new(channel)))));
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
struct SshLock(std::sync::Mutex<ssh2::Channel>);

impl HostLock for SshLock {}

impl Drop for SshLock {
    fn drop(&mut self) {
        if let Ok(channel) = self.0.get_mut() {
            let _ = channel.send_eof();
            let _ = channel.wait_close();
        }
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

struct SftpFile(ssh2::File);

impl RandomWrite for SftpFile {
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        self.0.seek(SeekFrom::Start(offset))?;
        self.0.write_all(buf)
    }

    fn set_len(&mut self, len: u64) -> std::io::Result<()> {
        let mut stat = perm_stat(0);
        stat.perm = None;
        stat.size = Some(len);
        self.0.setstat(stat).map_err(std::io::Error::other)
    }

    fn sync(&mut self) -> std::io::Result<()> {
        self.0.fsync().map_err(std::io::Error::other)
    }
}

fn open_session(target: &SshTarget) -> Result<Session> {
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
    let mut session = Session::new()?;
    session.set_tcp_stream(tcp);
    if let Some(prefs) = host_key_prefs(target) {
        // Ask for the key type known_hosts holds, or libssh2 may pick another type and report
        // a false mismatch.
        session.method_pref(ssh2::MethodType::HostKey, &prefs)?;
    }
    session.handshake().context("SSH handshake failed")?;
    Ok(session)
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

/// `host` or `[host]:port`, as OpenSSH writes names in known_hosts.
fn known_hosts_name(target: &SshTarget) -> String {
    if target.port == 22 {
        target.host_name.clone()
    } else {
        format!("[{}]:{}", target.host_name, target.port)
    }
}

/// Key types recorded in known_hosts for this host (plain names only; hashed names are checked
/// by libssh2 but cannot be read back), put first in the host-key preference list.
fn host_key_prefs(target: &SshTarget) -> Option<String> {
    let text = std::fs::read_to_string(target.known_hosts_path()).ok()?;
    let name = known_hosts_name(target);
    let mut types: Vec<&str> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let names = f.next()?;
            let kind = f.next()?;
            names.split(',').any(|n| n == name).then_some(kind)
        })
        .collect();
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
        if !types.contains(&fallback) {
            types.push(fallback);
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

/// OpenSSH's policy: a known key must match; an unknown key is refused unless the operator
/// asked to accept new keys; a changed key is always refused.
fn verify_host_key(session: &Session, target: &SshTarget, accept_new: bool) -> Result<()> {
    let (key, kind) = session.host_key().context("the server sent no host key")?;
    let path = target.known_hosts_path();
    let mut known = session.known_hosts()?;
    if path.exists() {
        known
            .read_file(&path, KnownHostFileKind::OpenSSH)
            .with_context(|| format!("cannot read `{}`", path.display()))?;
    }
    let name = known_hosts_name(target);
    let fp = fingerprint(session);
    match known.check_port(&target.host_name, target.port, key) {
        CheckResult::Match => Ok(()),
        CheckResult::NotFound if accept_new => {
            let line = format!(
                "{name} {} {}\n",
                key_type_name(kind),
                base64::engine::general_purpose::STANDARD.encode(key)
            );
            append_known_host(&path, &line)?;
            eprintln!("warning: recorded new host key for `{name}` ({fp}) in `{}`", path.display());
            Ok(())
        }
        CheckResult::NotFound => Err(anyhow!(
            "the host key of `{name}` is not known: {} {fp}",
            key_type_name(kind)
        ))
        .hint(format!(
            "check the fingerprint on the target (`ssh-keygen -lf /etc/ssh/ssh_host_{}_key.pub`), then re-run with `--accept-new-host-key`",
            key_type_name(kind).trim_start_matches("ssh-").split('-').next().unwrap_or("ed25519")
        )),
        CheckResult::Mismatch => Err(anyhow!(
            "@@@ WARNING: THE HOST KEY OF `{name}` HAS CHANGED @@@\nthe server offered {} {fp}, which does not match `{}`; someone may be intercepting the connection, or the host was reinstalled",
            key_type_name(kind),
            path.display()
        ))
        .hint(format!(
            "if the host was reinstalled, remove the old key with `ssh-keygen -R '{name}'` and connect again"
        )),
        CheckResult::Failure => bail!("cannot check the host key of `{name}` against `{}`", path.display()),
    }
}

fn append_known_host(path: &Path, line: &str) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .open(path)
        .with_context(|| format!("cannot record the host key in `{}`", path.display()))?;
    file.write_all(line.as_bytes())?;
    file.sync_all()?;
    Ok(())
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
