//! Docker Engine and Compose as the host has them: versions, reachability (and whether `sudo`
//! is needed), the Compose flavour, the NVIDIA runtime. Parsers are pure; `probe` runs them.

use anyhow::Result;
use serde::Serialize;

use crate::host::{Command, Host};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ComposeFlavor {
    /// The `docker compose` plugin (or a v2 standalone binary).
    V2,
    /// The Python `docker-compose` 1.x (Debian 12 ships 1.29.2).
    V1,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Compose {
    pub flavor: Option<ComposeFlavor>,
    pub version: Option<String>,
    /// How to invoke it: `["docker", "compose"]` or `["docker-compose"]`.
    #[serde(skip)]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Docker {
    pub client_version: Option<String>,
    pub engine_version: Option<String>,
    pub reachable: bool,
    /// The daemon answered only through `sudo -n` (the user is not in group `docker`).
    pub needs_sudo: bool,
    /// Why the daemon could not be reached, as the client said it.
    pub error: Option<String>,
    pub compose: Compose,
    pub runtimes: Vec<String>,
    pub nvidia_runtime: bool,
}

/// `docker version --format '{{json .}}'`: `Client.Version`, and `Server.Version` when the
/// daemon answered (`Server` is null otherwise).
pub fn parse_version_json(text: &str) -> (Option<String>, Option<String>) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text.trim()) else {
        return (None, None);
    };
    let get = |part: &str| {
        v.get(part)
            .and_then(|p| p.get("Version"))
            .and_then(|s| s.as_str())
            .map(str::to_string)
    };
    (get("Client"), get("Server"))
}

/// Runtime names from `docker info --format '{{json .Runtimes}}'`.
pub fn parse_runtimes_json(text: &str) -> Vec<String> {
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text.trim()).unwrap_or_default();
    let mut names: Vec<String> = map.keys().cloned().collect();
    names.sort();
    names
}

/// Runtime names from the human `docker info` line `Runtimes: io.containerd.runc.v2 nvidia runc`.
pub fn parse_runtimes_line(info: &str) -> Vec<String> {
    info.lines()
        .find_map(|l| l.trim().strip_prefix("Runtimes:"))
        .map(|r| r.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// A Compose version from any of its spellings: `Docker Compose version v2.27.0`, `2.27.0`
/// (`--short`), `{"version":"v2.27.0"}` (`--format json`), `docker-compose version 1.29.2, build
/// unknown`.
pub fn parse_compose_version(text: &str) -> Option<(ComposeFlavor, String)> {
    let text = text.trim();
    let raw = if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
        v.get("version")?.as_str()?.to_string()
    } else {
        let first = text.lines().next()?;
        let word = first.split_whitespace().find(|w| {
            w.trim_start_matches('v')
                .starts_with(|c: char| c.is_ascii_digit())
        })?;
        word.trim_end_matches(',').to_string()
    };
    let version = raw.trim_start_matches('v').to_string();
    let flavor = match version.split('.').next()?.parse::<u32>().ok()? {
        1 => ComposeFlavor::V1,
        _ => ComposeFlavor::V2,
    };
    Some((flavor, version))
}

/// `PROGRAM ARGS...`, behind `sudo -n` (never a password prompt) when the daemon needs it.
fn maybe_sudo(sudo: bool, argv: &[&str]) -> Command {
    let (program, args) = match sudo {
        true => (
            "sudo",
            std::iter::once("-n")
                .chain(argv.iter().copied())
                .collect::<Vec<_>>(),
        ),
        false => (argv[0], argv[1..].to_vec()),
    };
    Command::new(program).args(args)
}

impl Docker {
    /// `docker ARGS...` as this host must run it.
    pub fn command(&self, args: &[&str]) -> Command {
        maybe_sudo(self.needs_sudo, &[&["docker"], args].concat())
    }

    /// `docker compose ARGS...` or `docker-compose ARGS...` as this host must run it.
    pub fn compose_command(&self, args: &[&str]) -> Option<Command> {
        let flavor: Vec<&str> = self.compose.command.iter().map(String::as_str).collect();
        (!flavor.is_empty()).then(|| maybe_sudo(self.needs_sudo, &[&flavor, args].concat()))
    }
}

fn docker_version(host: &dyn Host, sudo: bool) -> Result<crate::host::Output> {
    let cmd = maybe_sudo(sudo, &["docker", "version", "--format", "{{json .}}"]);
    host.run(&cmd.timeout(std::time::Duration::from_secs(30)))
}

/// Runtime names from `docker info`: the JSON form, or the human `Runtimes:` line from clients
/// whose `--format` cannot print them.
fn probe_runtimes(host: &dyn Host, sudo: bool) -> Result<Vec<String>> {
    let json = host.run(&maybe_sudo(
        sudo,
        &["docker", "info", "--format", "{{json .Runtimes}}"],
    ))?;
    let runtimes = parse_runtimes_json(&json.stdout_text());
    if !runtimes.is_empty() {
        return Ok(runtimes);
    }
    Ok(parse_runtimes_line(
        &host
            .run(&maybe_sudo(sudo, &["docker", "info"]))?
            .stdout_text(),
    ))
}

/// Docker as `host` has it, probed once per run (see `host::Memo`).
pub fn probe(host: &dyn Host) -> Result<Docker> {
    crate::host::memoized(host, || probe_now(host))
}

fn probe_now(host: &dyn Host) -> Result<Docker> {
    // Compose does not depend on the daemon: asked beside it.
    std::thread::scope(|s| {
        let compose = s.spawn(|| probe_compose(host));
        let engine = probe_engine(host);
        let compose = compose
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        Ok(Docker {
            compose: compose?,
            ..engine?
        })
    })
}

/// Everything but `compose` (left empty).
fn probe_engine(host: &dyn Host) -> Result<Docker> {
    let out = docker_version(host, false)?;
    let (client_version, mut engine_version) = parse_version_json(&out.stdout_text());
    let mut needs_sudo = false;
    let mut error = None;
    if engine_version.is_none() && client_version.is_some() {
        let stderr = out.stderr_text();
        if stderr.contains("permission denied") {
            let sudo = docker_version(host, true)?;
            engine_version = parse_version_json(&sudo.stdout_text()).1;
            needs_sudo = engine_version.is_some();
        }
        if engine_version.is_none() {
            error = stderr
                .lines()
                .find(|l| !l.trim().is_empty())
                .map(|l| l.trim().to_string());
        }
    }
    let runtimes = match engine_version {
        Some(_) => probe_runtimes(host, needs_sudo)?,
        None => Vec::new(),
    };
    Ok(Docker {
        client_version,
        reachable: engine_version.is_some(),
        engine_version,
        needs_sudo,
        error,
        compose: Compose::default(),
        nvidia_runtime: runtimes.iter().any(|r| r == "nvidia"),
        runtimes,
    })
}

/// Prefer the v2 plugin; fall back to a standalone `docker-compose` (v1 or v2).
fn probe_compose(host: &dyn Host) -> Result<Compose> {
    let candidates: [&[&str]; 2] = [&["docker", "compose"], &["docker-compose"]];
    for command in candidates {
        let cmd = Command::new(command[0])
            .args(command[1..].iter().copied())
            .arg("version");
        let out = host.run(&cmd)?;
        if !out.success() {
            continue;
        }
        if let Some((flavor, version)) = parse_compose_version(&out.stdout_text()) {
            return Ok(Compose {
                flavor: Some(flavor),
                version: Some(version),
                command: command.iter().map(|s| s.to_string()).collect(),
            });
        }
    }
    Ok(Compose::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_versions_every_spelling() {
        let v2 = Some((ComposeFlavor::V2, "2.27.0".to_string()));
        assert_eq!(
            parse_compose_version("Docker Compose version v2.27.0\n"),
            v2
        );
        assert_eq!(parse_compose_version("2.27.0\n"), v2);
        assert_eq!(parse_compose_version(r#"{"version":"v2.27.0"}"#), v2);
        assert_eq!(
            parse_compose_version("docker-compose version 1.29.2, build unknown\n"),
            Some((ComposeFlavor::V1, "1.29.2".to_string()))
        );
        assert_eq!(
            parse_compose_version("unknown command: docker compose"),
            None
        );
    }

    #[test]
    fn runtimes_with_and_without_nvidia() {
        assert_eq!(
            parse_runtimes_line(
                " Runtimes: io.containerd.runc.v2 nvidia runc\n Default Runtime: runc"
            ),
            ["io.containerd.runc.v2", "nvidia", "runc"]
        );
        assert!(!parse_runtimes_line("Runtimes: io.containerd.runc.v2 runc")
            .contains(&"nvidia".to_string()));
        let json = r#"{"io.containerd.runc.v2":{"path":"runc"},"nvidia":{"path":"nvidia-container-runtime"},"runc":{"path":"runc"}}"#;
        assert_eq!(
            parse_runtimes_json(json),
            ["io.containerd.runc.v2", "nvidia", "runc"]
        );
    }

    #[test]
    fn version_json_with_and_without_server() {
        let both = r#"{"Client":{"Version":"28.2.2"},"Server":{"Version":"20.10.24+dfsg1"}}"#;
        assert_eq!(
            parse_version_json(both),
            (Some("28.2.2".into()), Some("20.10.24+dfsg1".into()))
        );
        let client_only = r#"{"Client":{"Version":"28.2.2"},"Server":null}"#;
        assert_eq!(
            parse_version_json(client_only),
            (Some("28.2.2".into()), None)
        );
    }
}
