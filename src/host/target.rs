//! Where `--host` points: `[user@]host[:port]` or a `~/.ssh/config` alias, resolved the way
//! `ssh` would (the command line wins over the config file, the config file over defaults).

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ssh2_config::{ParseRule, SshConfig};

use crate::ui::HintExt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// What the operator typed; used in messages.
    pub alias: String,
    pub host_name: String,
    pub port: u16,
    pub user: String,
    /// From `IdentityFile`, or OpenSSH's default key names when none is configured.
    pub identity_files: Vec<PathBuf>,
    pub home: PathBuf,
}

/// `[user@]host[:port]` split apart; `[v6addr]:port` keeps the colons of an IPv6 address.
fn split_destination(dest: &str) -> Result<(Option<&str>, &str, Option<u16>)> {
    let (user, rest) = match dest.rsplit_once('@') {
        Some((u, r)) => (Some(u), r),
        None => (None, dest),
    };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (addr, tail) = v6.split_once(']').context("unclosed `[` in host")?;
        (addr, tail.strip_prefix(':'))
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .with_context(|| format!("port `{p}` is not a number from 1 to 65535"))
        })
        .transpose()?;
    if host.is_empty() || user == Some("") {
        bail!("`{dest}` is not a valid SSH destination");
    }
    Ok((user, host, port))
}

/// Checks `[user@]host[:port]` syntax only (for `--host`'s value parser).
pub fn check_destination(dest: &str) -> Result<()> {
    split_destination(dest).map(|_| ())
}

impl SshTarget {
    /// Resolve `dest` against `<home>/.ssh/config`. `home` defaults to `$HOME`, which decides
    /// where `~` is for the config file, the keys and known_hosts.
    pub fn resolve(dest: &str, home: Option<&Path>) -> Result<SshTarget> {
        let home = match home {
            Some(h) => h.to_path_buf(),
            None => std::env::var_os("HOME")
                .map(PathBuf::from)
                .context("$HOME is not set")?,
        };
        let (user, host, port) = split_destination(dest)
            .with_context(|| format!("cannot use `--host {dest}`"))
            .hint("use `local`, `[user@]host[:port]` or a Host alias from ~/.ssh/config")?;
        let params = read_config(&home)?.query(host);
        let identity_files = params.identity_file.unwrap_or_else(|| {
            ["id_ed25519", "id_ecdsa", "id_rsa"]
                .iter()
                .map(|k| home.join(".ssh").join(k))
                .collect()
        });
        let user = match user.map(str::to_string).or(params.user) {
            Some(u) => u,
            None => std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .context("no user given and $USER is not set")
                .hint(format!("name one: `--host user@{host}`"))?,
        };
        Ok(SshTarget {
            alias: dest.to_string(),
            host_name: params.host_name.unwrap_or_else(|| host.to_string()),
            port: port.or(params.port).unwrap_or(22),
            user,
            identity_files,
            home,
        })
    }

    pub fn known_hosts_path(&self) -> PathBuf {
        self.home.join(".ssh").join("known_hosts")
    }
}

fn read_config(home: &Path) -> Result<SshConfig> {
    let path = home.join(".ssh").join("config");
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SshConfig::default()),
        Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", path.display())),
    };
    // Options we do not use (ControlMaster, ...) are fine; a malformed line is not.
    SshConfig::default()
        .home_dir(home)
        .parse(
            &mut BufReader::new(file),
            ParseRule::ALLOW_UNKNOWN_FIELDS | ParseRule::ALLOW_UNSUPPORTED_FIELDS,
        )
        .with_context(|| format!("cannot parse `{}`", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home_with_config(config: &str) -> tempfile::TempDir {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".ssh")).unwrap();
        std::fs::write(home.path().join(".ssh/config"), config).unwrap();
        home
    }

    #[test]
    fn alias_takes_hostname_user_port_and_identity_from_config() {
        let home = home_with_config(
            "Host spark\n  HostName 192.168.1.101\n  User nvidia\n  Port 2222\n  IdentityFile ~/.ssh/spark_key\n",
        );
        let t = SshTarget::resolve("spark", Some(home.path())).unwrap();
        assert_eq!(t.host_name, "192.168.1.101");
        assert_eq!(t.user, "nvidia");
        assert_eq!(t.port, 2222);
        assert_eq!(t.identity_files, vec![home.path().join(".ssh/spark_key")]);
    }

    #[test]
    fn command_line_user_and_port_win_over_config() {
        let home = home_with_config("Host spark\n  User nvidia\n  Port 2222\n");
        let t = SshTarget::resolve("ops@spark:2022", Some(home.path())).unwrap();
        assert_eq!(
            (t.user.as_str(), t.port, t.host_name.as_str()),
            ("ops", 2022, "spark")
        );
        assert_eq!(t.identity_files[0], home.path().join(".ssh/id_ed25519"));
    }

    #[test]
    fn ipv6_and_bad_port() {
        let home = home_with_config("");
        let t = SshTarget::resolve("me@[::1]:2200", Some(home.path())).unwrap();
        assert_eq!((t.host_name.as_str(), t.port), ("::1", 2200));
        let err = SshTarget::resolve("me@spark:99999", Some(home.path())).unwrap_err();
        assert!(format!("{err:#}").contains("port `99999`"), "{err:#}");
    }
}
