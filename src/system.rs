//! The operating system side of a host: OS and architecture, free disk, listening ports.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::host::{Command, Host};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Platform {
    /// `uname -m`: `aarch64` on a Spark, `x86_64` on an RTX PC.
    pub arch: String,
    /// `PRETTY_NAME` from /etc/os-release.
    pub os: String,
    /// DGX OS leaves /etc/dgx-release behind.
    pub dgx_os: bool,
    pub memory_total_mib: Option<u64>,
}

/// `PRETTY_NAME` (or `NAME`) from /etc/os-release, unquoted.
pub fn parse_os_release(text: &str) -> Option<String> {
    let field = |key: &str| {
        text.lines().find_map(|l| {
            let v = l.strip_prefix(key)?.strip_prefix('=')?;
            Some(v.trim().trim_matches('"').trim_matches('\'').to_string())
        })
    };
    field("PRETTY_NAME").or_else(|| field("NAME"))
}

/// What the host is, probed once per run (see `host::Memo`).
pub fn probe_platform(host: &dyn Host) -> Result<Platform> {
    crate::host::memoized(host, || probe_platform_now(host))
}

fn probe_platform_now(host: &dyn Host) -> Result<Platform> {
    let arch = host.run_ok(&Command::new("uname").arg("-m"))?.stdout_text();
    let os = host
        .read_opt(Path::new("/etc/os-release"))?
        .and_then(|t| parse_os_release(&String::from_utf8_lossy(&t)))
        .unwrap_or_else(|| "unknown".to_string());
    let meminfo = host.read_opt(Path::new("/proc/meminfo"))?;
    Ok(Platform {
        arch: arch.trim().to_string(),
        os,
        dgx_os: host.stat(Path::new("/etc/dgx-release"))?.is_some(),
        memory_total_mib: meminfo
            .and_then(|m| crate::gpu::parse_meminfo_total_mib(&String::from_utf8_lossy(&m))),
    })
}

/// Available bytes from `df -P -k PATH` (POSIX format and 1024-byte blocks, which GNU and
/// macOS `df` both print; `-B1` is GNU only), one filesystem line after the header.
pub fn parse_df_available(text: &str) -> Option<u64> {
    let kib: u64 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// The deepest existing folder of `path`: where a not-yet-created root will live.
pub fn existing_ancestor(host: &dyn Host, path: &Path) -> Result<PathBuf> {
    let mut p = path.to_path_buf();
    loop {
        if host.stat(&p)?.is_some() || !p.pop() {
            return Ok(if p.as_os_str().is_empty() {
                PathBuf::from("/")
            } else {
                p
            });
        }
    }
}

/// Free bytes on the filesystem that holds (or will hold) `path`.
pub fn free_bytes(host: &dyn Host, path: &Path) -> Result<u64> {
    let existing = existing_ancestor(host, path)?;
    let dir = existing.to_str().context("path is not UTF-8")?;
    let out = host.run_ok(&Command::new("df").args(["-P", "-k", dir]))?;
    parse_df_available(&out.stdout_text())
        .with_context(|| format!("cannot read free space from `df` for `{dir}`"))
}

/// Whether a TCP socket listens on `port`, from `ss -Hltn` (local address is column 4).
pub fn parse_ss_listening(text: &str, port: u16) -> bool {
    let suffix = format!(":{port}");
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .any(|addr| addr.ends_with(&suffix))
}

/// `None` when the host has no `ss` to ask.
pub fn port_listening(host: &dyn Host, port: u16) -> Result<Option<bool>> {
    let out = host.run(&Command::new("ss").arg("-Hltn"))?;
    Ok(out
        .success()
        .then(|| parse_ss_listening(&out.stdout_text(), port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_pretty_name() {
        let t = "NAME=\"Ubuntu\"\nPRETTY_NAME=\"Ubuntu 24.04.3 LTS\"\nID=ubuntu\n";
        assert_eq!(parse_os_release(t).as_deref(), Some("Ubuntu 24.04.3 LTS"));
        assert_eq!(parse_os_release("NAME=Debian\n").as_deref(), Some("Debian"));
    }

    #[test]
    fn df_available_bytes() {
        // GNU coreutils, then macOS.
        let t = "Filesystem     1024-blocks     Used Available Capacity Mounted on\n/dev/vda         264126392 11534336  83886080      13% /\n";
        assert_eq!(parse_df_available(t), Some(85_899_345_920));
        let t = "Filesystem     1024-blocks      Used Available Capacity  Mounted on\n/dev/disk3s1s1   971350180  10485760 488636240     3%    /\n";
        assert_eq!(parse_df_available(t), Some(500_363_509_760));
        assert_eq!(
            parse_df_available("df: /nope: No such file or directory\n"),
            None
        );
    }

    #[test]
    fn ss_listening_port() {
        let t = "LISTEN 0      4096         0.0.0.0:8188      0.0.0.0:*\nLISTEN 0      128        127.0.0.1:22        0.0.0.0:*\nLISTEN 0 4096 [::]:81880 [::]:*\n";
        assert!(parse_ss_listening(t, 8188));
        assert!(parse_ss_listening(t, 22));
        assert!(!parse_ss_listening(t, 8080));
        assert!(!parse_ss_listening(
            "LISTEN 0 4096 [::]:81880 [::]:*\n",
            8188
        ));
    }
}
