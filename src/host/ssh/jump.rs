//! `ProxyJump` with one hop, as `ssh -J` does it: a session to the jump host (its own
//! host-key check and authentication), a `direct-tcpip` channel from there to the target, and
//! the target's session run over a local socket pair whose other end a thread pumps into that
//! channel (libssh2 needs a file descriptor, not a channel, under a session).

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ssh2::Channel;

use super::{Link, SshHost, SshOptions};
use crate::host::SshTarget;
use crate::ui::HintExt;

/// The socket the target's session runs over; the pump thread owns the jump session.
pub(super) fn through(target: &SshTarget, opts: &SshOptions) -> Result<UnixStream> {
    let hop = match target.proxy_jump.as_slice() {
        [hop] => hop,
        hops => {
            return Err(anyhow::anyhow!(
                "`ProxyJump {}` names {} hops; lifeos-spark supports one",
                hops.join(","),
                hops.len()
            ))
            .hint("jump through the first host only, or forward a port with `ssh -L`")
        }
    };
    let jump = SshTarget::resolve(hop, Some(&target.home))
        .with_context(|| format!("cannot use `ProxyJump {hop}`"))?;
    if !jump.proxy_jump.is_empty() {
        bail!("`ProxyJump {hop}` itself has a ProxyJump; lifeos-spark supports one hop");
    }
    let jump = SshHost::connect(jump, opts)
        .with_context(|| format!("cannot reach the jump host `{hop}`"))?;
    let link = jump.link.clone();
    let channel = {
        let _g = link.gate.hold();
        link.session
            .channel_direct_tcpip(&target.host_name, target.port, None)
            .with_context(|| {
                format!(
                    "the jump host `{hop}` cannot open a connection to {}:{}",
                    target.host_name, target.port
                )
            })
            .hint("check `AllowTcpForwarding` in the jump host's sshd_config, and the target's address from there")?
    };
    let (ours, theirs) = UnixStream::pair()?;
    std::thread::spawn(move || pump(link, channel, theirs));
    Ok(ours)
}

/// Move bytes both ways until either side closes. The jump session is used by this thread
/// only, so it can stay non-blocking; an idle link sleeps at most 5 ms between polls.
fn pump(link: Arc<Link>, mut channel: Channel, mut sock: UnixStream) {
    if sock.set_nonblocking(true).is_err() {
        return;
    }
    link.session.set_blocking(false);
    let (mut up, mut down) = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; 64 * 1024];
    let mut nap = Duration::from_millis(1);
    while let Ok(Some(moved)) = step(&mut channel, &mut sock, &mut buf, &mut up, &mut down) {
        if moved > 0 {
            nap = Duration::from_millis(1);
        } else {
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(5));
        }
    }
    let _ = channel.close();
}

/// One pass: bytes moved, or `None` once a side has closed.
fn step(
    channel: &mut Channel,
    sock: &mut UnixStream,
    buf: &mut [u8],
    up: &mut Vec<u8>,
    down: &mut Vec<u8>,
) -> std::io::Result<Option<usize>> {
    let mut moved = 0;
    if up.is_empty() {
        match sock.read(buf) {
            Ok(0) => return Ok(None),
            Ok(n) => up.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    if !up.is_empty() {
        match channel.write(up) {
            Ok(n) => {
                up.drain(..n);
                moved += n;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    if down.is_empty() {
        match channel.read(buf) {
            Ok(0) if channel.eof() => return Ok(None),
            Ok(n) => down.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    if !down.is_empty() {
        match sock.write(down) {
            Ok(n) => {
                down.drain(..n);
                moved += n;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(moved))
}
