//! Where `--host` points: `[user@]host[:port]` or a `~/.ssh/config` alias, resolved the way
//! `ssh` would (the command line wins over the config file, the config file over defaults).

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ssh2_config::{HostParams, ParseRule, SshConfig};

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
    /// Host-key policy options of `~/.ssh/config`, as OpenSSH applies them.
    pub host_keys: HostKeyConfig,
    /// `ProxyJump` hops, in order (`none` clears them, as for `ssh`).
    pub proxy_jump: Vec<String>,
}

/// `StrictHostKeyChecking`: what to do with a key no known_hosts file lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StrictHostKeyChecking {
    /// Refuse it.
    Yes,
    /// Record it in the first user file, then connect.
    AcceptNew,
    /// OpenSSH also records it; a changed key is still refused here (see README).
    No,
    /// OpenSSH's default: it would prompt; this tool never prompts, so it refuses as `yes`.
    #[default]
    Ask,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKeyConfig {
    /// `UserKnownHostsFile` (default `~/.ssh/known_hosts ~/.ssh/known_hosts2`); new keys go to
    /// the first one.
    pub user_files: Vec<PathBuf>,
    /// `GlobalKnownHostsFile` (default `/etc/ssh/ssh_known_hosts /etc/ssh/ssh_known_hosts2`).
    pub global_files: Vec<PathBuf>,
    pub strict: StrictHostKeyChecking,
    /// `HostKeyAlias`: the name looked up and recorded instead of `host` / `[host]:port`.
    pub alias: Option<String>,
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
        let identity_files = params.identity_file.clone().unwrap_or_else(|| {
            ["id_ed25519", "id_ecdsa", "id_rsa"]
                .iter()
                .map(|k| home.join(".ssh").join(k))
                .collect()
        });
        let user = match user.map(str::to_string).or(params.user.clone()) {
            Some(u) => u,
            None => std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .context("no user given and $USER is not set")
                .hint(format!("name one: `--host user@{host}`"))?,
        };
        let host_name = params.host_name.clone().unwrap_or_else(|| host.to_string());
        let port = port.or(params.port).unwrap_or(22);
        let tokens = Tokens {
            home: &home,
            host: &host_name,
            port,
            user: &user,
        };
        let host_keys = host_key_config(&params, &tokens)?;
        let proxy_jump = match params.proxy_jump.as_deref() {
            Some([only]) if only.eq_ignore_ascii_case("none") => Vec::new(),
            Some(hops) => hops.to_vec(),
            None => Vec::new(),
        };
        Ok(SshTarget {
            alias: dest.to_string(),
            host_name,
            port,
            user,
            identity_files,
            home,
            host_keys,
            proxy_jump,
        })
    }
}

/// What `%`-tokens and `~` expand to in file options (ssh_config(5) "TOKENS").
struct Tokens<'a> {
    home: &'a Path,
    host: &'a str,
    port: u16,
    user: &'a str,
}

impl Tokens<'_> {
    fn expand(&self, raw: &str) -> Result<PathBuf> {
        let mut out = String::new();
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('%') => out.push('%'),
                Some('d') => out += &self.home.to_string_lossy(),
                Some('h') => out += self.host,
                Some('p') => out += &self.port.to_string(),
                Some('r') => out += self.user,
                Some(t) => bail!("`%{t}` in `{raw}` is not a token lifeos-spark expands (it knows %d %h %p %r %%)"),
                None => bail!("`{raw}` ends in a lone `%`"),
            }
        }
        Ok(match out.strip_prefix('~') {
            Some("") => self.home.to_path_buf(),
            Some(rest) if rest.starts_with('/') => self.home.join(&rest[1..]),
            _ => PathBuf::from(out),
        })
    }
}

/// The options ssh2-config parses but keeps as raw strings (it has no typed field for them);
/// the first value given for the host wins, as in `ssh`.
fn raw_option<'a>(params: &'a HostParams, name: &str) -> Option<&'a [String]> {
    params
        .unsupported_fields
        .get(name)
        .or_else(|| params.ignored_fields.get(name))
        .map(Vec::as_slice)
}

fn file_list(
    params: &HostParams,
    option: &str,
    default: &[&str],
    tokens: &Tokens,
) -> Result<Vec<PathBuf>> {
    let raw: Vec<String> = match raw_option(params, &option.to_ascii_lowercase()) {
        Some(values) => values
            .iter()
            .flat_map(|v| v.split_whitespace())
            .map(str::to_string)
            .collect(),
        None => default.iter().map(|d| d.to_string()).collect(),
    };
    if raw.len() == 1 && raw[0].eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    raw.iter()
        .map(|f| tokens.expand(f))
        .collect::<Result<_>>()
        .with_context(|| format!("cannot use `{option}` from ~/.ssh/config"))
}

fn host_key_config(params: &HostParams, tokens: &Tokens) -> Result<HostKeyConfig> {
    let strict = match raw_option(params, "stricthostkeychecking").and_then(|v| v.first()) {
        None => StrictHostKeyChecking::default(),
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "yes" | "true" => StrictHostKeyChecking::Yes,
            "accept-new" => StrictHostKeyChecking::AcceptNew,
            "no" | "off" | "false" => StrictHostKeyChecking::No,
            "ask" => StrictHostKeyChecking::Ask,
            other => bail!("`StrictHostKeyChecking {other}` in ~/.ssh/config is not one of yes, accept-new, no, off, ask"),
        },
    };
    Ok(HostKeyConfig {
        user_files: file_list(
            params,
            "UserKnownHostsFile",
            &["~/.ssh/known_hosts", "~/.ssh/known_hosts2"],
            tokens,
        )?,
        global_files: file_list(
            params,
            "GlobalKnownHostsFile",
            &["/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"],
            tokens,
        )?,
        strict,
        alias: raw_option(params, "hostkeyalias")
            .and_then(|v| v.first())
            .cloned(),
    })
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
    fn known_hosts_options_strictness_alias_and_proxy_jump() {
        let home = home_with_config(
            "Host spark\n  HostName 10.0.0.7\n  Port 2222\n  User nvidia\n  UserKnownHostsFile ~/.ssh/kh_%h_%p %d/other\n  GlobalKnownHostsFile none\n  StrictHostKeyChecking accept-new\n  HostKeyAlias spark-box\n  ProxyJump jump.lan\n\nHost *\n  UserKnownHostsFile /never/used\n  StrictHostKeyChecking yes\n",
        );
        let t = SshTarget::resolve("spark", Some(home.path())).unwrap();
        let h = home.path();
        assert_eq!(
            t.host_keys,
            HostKeyConfig {
                user_files: vec![h.join(".ssh/kh_10.0.0.7_2222"), h.join("other")],
                global_files: vec![],
                strict: StrictHostKeyChecking::AcceptNew,
                alias: Some("spark-box".into()),
            }
        );
        assert_eq!(t.proxy_jump, vec!["jump.lan".to_string()]);
        let other = SshTarget::resolve("me@elsewhere", Some(h)).unwrap();
        assert_eq!(
            other.host_keys.user_files,
            vec![PathBuf::from("/never/used")]
        );
        assert_eq!(other.host_keys.strict, StrictHostKeyChecking::Yes);
        assert!(other.proxy_jump.is_empty());
    }

    #[test]
    fn default_known_hosts_files_and_bad_strictness() {
        let home = home_with_config("Host bad\n  StrictHostKeyChecking maybe\n");
        let t = SshTarget::resolve("me@spark", Some(home.path())).unwrap();
        assert_eq!(
            t.host_keys.user_files,
            vec![
                home.path().join(".ssh/known_hosts"),
                home.path().join(".ssh/known_hosts2")
            ]
        );
        assert_eq!(
            t.host_keys.global_files[0],
            PathBuf::from("/etc/ssh/ssh_known_hosts")
        );
        assert_eq!(t.host_keys.strict, StrictHostKeyChecking::Ask);
        let err = SshTarget::resolve("me@bad", Some(home.path())).unwrap_err();
        assert!(
            format!("{err:#}").contains("StrictHostKeyChecking maybe"),
            "{err:#}"
        );
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
