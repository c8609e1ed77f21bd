//! Host-key policy against a real OpenSSH server, decided the way `ssh` decides it: every case
//! also runs the real `ssh` client with the same config file and must reach the same verdict.

mod support;

use std::path::{Path, PathBuf};

use lifeos_spark::host::{self, Command, SshOptions};
use support::*;

struct Case {
    client: ClientHome,
    server: SshServer,
}

impl Case {
    fn start() -> Option<Case> {
        let client = ClientHome::new();
        let server = SshServer::for_client(&client)?;
        Some(Case { client, server })
    }

    fn file(&self, name: &str) -> PathBuf {
        self.client.path().join(".ssh").join(name)
    }

    /// `Host box` with absolute paths (OpenSSH expands `~` from the password database, not
    /// `$HOME`), plus `extra` option lines. The global file is pinned so /etc never counts.
    fn config(&self, extra: &str) {
        let mut text = format!(
            "Host box\n  HostName 127.0.0.1\n  Port {}\n  User root\n  IdentityFile {}\n  BatchMode yes\n",
            self.server.port,
            self.client.key.display()
        );
        for line in extra.lines() {
            text += &format!("  {line}\n");
        }
        if !extra.contains("GlobalKnownHostsFile") {
            text += &format!("  GlobalKnownHostsFile {}\n", self.file("global").display());
        }
        if !extra.contains("UserKnownHostsFile") {
            text += &format!(
                "  UserKnownHostsFile {}\n",
                self.client.known_hosts().display()
            );
        }
        std::fs::write(self.file("config"), text).unwrap();
    }

    fn write(&self, path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
    }

    /// Replace `~/.ssh/known_hosts` (the file `config("")` names).
    fn known(&self, text: &str) {
        self.write(&self.client.known_hosts(), text);
    }

    /// The server's key as `<type> <base64>`.
    fn key(&self) -> String {
        let line = self.server.known_hosts_line();
        line.split_once(' ').unwrap().1.trim().to_string()
    }

    /// The key of a throwaway server: what a reinstalled host's old key looks like.
    fn stale_key() -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        sh(&format!(
            "ssh-keygen -q -t ed25519 -N '' -f '{}'",
            path.display()
        ));
        let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
        let mut f = public.split_whitespace();
        format!("{} {}", f.next().unwrap(), f.next().unwrap())
    }

    /// Connect and run a command, as every `--host` action does.
    fn ours(&self) -> Result<String, String> {
        let opts = SshOptions {
            home: Some(self.client.path().to_path_buf()),
            ..Default::default()
        };
        let host = host::connect("box", &opts).map_err(|e| format!("{e:#}"))?;
        let out = host
            .run(&Command::new("echo").arg("connected"))
            .map_err(|e| format!("{e:#}"))?;
        Ok(out.stdout_text())
    }

    /// What OpenSSH does with the same config file.
    fn openssh_connects(&self) -> bool {
        std::process::Command::new("ssh")
            .arg("-F")
            .arg(self.file("config"))
            .args(["box", "true"])
            .env("HOME", self.client.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
            .status
            .success()
    }

    fn assert_connects(&self) {
        assert!(
            self.openssh_connects(),
            "OpenSSH refused: the case is wrong"
        );
        assert_eq!(self.ours().unwrap(), "connected\n");
    }

    fn assert_refused(&self, wording: &str) -> String {
        assert!(
            !self.openssh_connects(),
            "OpenSSH connected: the case is wrong"
        );
        let err = self.ours().unwrap_err();
        assert!(err.contains(wording), "expected `{wording}` in: {err}");
        err
    }
}

#[test]
fn user_known_hosts_file_replaces_the_default_file() {
    let Some(case) = Case::start() else { return };
    let configured = case.file("kh_configured");
    case.config(&format!("UserKnownHostsFile {}", configured.display()));
    let name = format!("[127.0.0.1]:{}", case.server.port);
    // Right key only in the configured file: connects.
    case.write(&configured, &format!("{name} {}\n", case.key()));
    case.assert_connects();
    // Stale key in the configured file, right one in ~/.ssh/known_hosts: refused as changed.
    case.write(&configured, &format!("{name} {}\n", Case::stale_key()));
    case.known(&case.server.known_hosts_line());
    let err = case.assert_refused("HAS CHANGED");
    assert!(
        err.contains(&format!("{}:1", configured.display())),
        "{err}"
    );
    // Neither file was rewritten.
    assert_eq!(
        std::fs::read_to_string(&configured)
            .unwrap()
            .lines()
            .count(),
        1
    );
}

#[test]
fn global_known_hosts_file_is_read_after_the_user_file() {
    let Some(case) = Case::start() else { return };
    let global = case.file("global_custom");
    case.config(&format!("GlobalKnownHostsFile {}", global.display()));
    case.write(&global, &case.server.known_hosts_line());
    assert!(!case.client.known_hosts().exists());
    case.assert_connects();
}

#[test]
fn revoked_key_is_refused_even_when_also_listed_as_known() {
    let Some(case) = Case::start() else { return };
    case.config("");
    case.known(&format!(
        "{}@revoked * {}\n",
        case.server.known_hosts_line(),
        case.key()
    ));
    let err = case.assert_refused("REVOKED HOST KEY");
    assert!(err.contains("marked as revoked"), "{err}");
}

#[test]
fn wildcard_entries_match_and_negations_veto() {
    let Some(case) = Case::start() else { return };
    case.config("");
    let port = case.server.port;
    case.known(&format!(
        "[127.0.0.*]:{port},[localhost]:{port} {}\n",
        case.key()
    ));
    case.assert_connects();
    case.known(&format!(
        "[127.0.0.*]:{port},![127.0.0.1]:{port} {}\n",
        case.key()
    ));
    case.assert_refused("is not known");
}

#[test]
fn host_key_alias_names_the_entry() {
    let Some(case) = Case::start() else { return };
    case.config("HostKeyAlias spark-box");
    case.known(&format!("spark-box {}\n", case.key()));
    case.assert_connects();
    // Under its real name only: not known under the alias.
    case.known(&case.server.known_hosts_line());
    case.assert_refused("`spark-box` is not known");
}

#[test]
fn strict_host_key_checking_accept_new_records_in_the_configured_file() {
    let Some(case) = Case::start() else { return };
    let configured = case.file("kh_configured");
    case.config(&format!(
        "StrictHostKeyChecking accept-new\nUserKnownHostsFile {}",
        configured.display()
    ));
    assert_eq!(case.ours().unwrap(), "connected\n");
    assert_eq!(
        std::fs::read_to_string(&configured).unwrap(),
        case.server.known_hosts_line()
    );
    assert!(!case.client.known_hosts().exists());
    // OpenSSH, told to refuse anything unknown, accepts what was recorded.
    case.config(&format!(
        "StrictHostKeyChecking yes\nUserKnownHostsFile {}",
        configured.display()
    ));
    case.assert_connects();
}

#[test]
fn cert_authority_lines_are_reported_not_trusted() {
    let Some(case) = Case::start() else { return };
    case.config("");
    case.known(&format!("@cert-authority * {}\n", Case::stale_key()));
    case.assert_refused("@cert-authority");
}

#[test]
fn proxy_jump_goes_through_a_second_sshd() {
    let Some(case) = Case::start() else { return };
    let Some(jump) = SshServer::for_client(&case.client) else {
        return;
    };
    case.config("ProxyJump jump");
    let mut config = std::fs::read_to_string(case.file("config")).unwrap();
    config += &format!(
        "Host jump\n  HostName 127.0.0.1\n  Port {}\n  User root\n  IdentityFile {}\n  BatchMode yes\n  UserKnownHostsFile {}\n  GlobalKnownHostsFile none\n",
        jump.port,
        case.client.key.display(),
        case.client.known_hosts().display()
    );
    case.write(&case.file("config"), &config);
    // Both host keys known: each hop is checked on its own.
    case.known(&(case.server.known_hosts_line() + &jump.known_hosts_line()));
    case.assert_connects();
    let logins = |log: String| log.matches("Accepted publickey").count();
    // OpenSSH and lifeos-spark each logged in once on both: the target was reached through
    // the jump host (both listen on loopback, so the logs are what tells).
    assert_eq!(logins(jump.log()), 2, "{}", jump.log());
    assert_eq!(logins(case.server.log()), 2, "{}", case.server.log());
    // The jump host's key is checked like any other.
    case.known(&case.server.known_hosts_line());
    let err = case.assert_refused("is not known");
    assert!(err.contains("jump host `jump`"), "{err}");
}

#[test]
fn proxy_jump_with_two_hops_is_refused_naming_the_option() {
    let Some(case) = Case::start() else { return };
    case.config("ProxyJump root@127.0.0.1:1,root@127.0.0.1:2");
    case.known(&case.server.known_hosts_line());
    let err = case.ours().unwrap_err();
    assert!(
        err.contains("`ProxyJump root@127.0.0.1:1,root@127.0.0.1:2`"),
        "{err}"
    );
    assert!(err.contains("supports one"), "{err}");
    assert!(
        !case.server.log().contains("Accepted publickey"),
        "it connected directly: {}",
        case.server.log()
    );
}
