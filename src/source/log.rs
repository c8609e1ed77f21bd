//! The record every migration leaves beside its backups (`migrate-<host>-<stamp>.json` on this
//! machine): what moved with its sha256, the `.env` values before and after (secrets masked)
//! with the `.env` backup, and the container `--stop-source` stopped. `migrate --rollback`
//! reads the newest one for an `.env` file and undoes what it says.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};

use super::transfer::Moved;
use crate::envfile::{self, SetOptions};
use crate::host::{Command, Host};
use crate::step::{FileStep, Mode, Outcome, Replace, StepReport};
use crate::ui::{HintExt, Printer};

const MASK: &str = "********";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MigrationLog {
    pub version: u32,
    pub at: String,
    pub from: String,
    pub to: String,
    /// Where the source's ComfyUI was found.
    pub source: String,
    pub env: Option<EnvRecord>,
    /// The source's container that `--stop-source` stopped.
    pub stopped_container: Option<String>,
    /// Manifest files and nodes with what happened to each (`copy-from-source`, `download`...).
    pub items: Vec<LoggedItem>,
    /// User files copied, with the sha256 checked on the destination.
    pub files: Vec<Moved>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoggedItem {
    pub kind: String,
    pub name: String,
    pub action: String,
    pub bytes: u64,
    pub sha256: Option<String>,
    pub commit: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnvRecord {
    pub file: PathBuf,
    /// The `.env` as it was, kept by the edit.
    pub backup: Option<PathBuf>,
    /// Per changed key: its value before (`None`: absent), secrets masked.
    pub before: BTreeMap<String, Option<String>>,
    pub after: BTreeMap<String, String>,
}

pub fn mask(key: &str, value: &str) -> String {
    match envfile::is_secret(key) && !value.is_empty() {
        true => MASK.to_string(),
        false => value.to_string(),
    }
}

/// Write the log into `dir` on `local`; returns its path.
pub fn write(local: &dyn Host, dir: &Path, log: &MigrationLog) -> Result<PathBuf> {
    let name = log
        .from
        .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_");
    local.mkdir_p(dir)?;
    let mut path = dir.join(format!("migrate-{name}-{}.json", log.at));
    // Two migrations within a second keep both logs.
    for n in 2.. {
        if local.stat(&path)?.is_none() {
            break;
        }
        path = dir.join(format!("migrate-{name}-{}-{n}.json", log.at));
    }
    local.write_atomic(&path, &serde_json::to_vec_pretty(log)?, Some(0o600))?;
    Ok(path)
}

/// The newest log in `dir` whose `.env` is `env_file`.
fn newest_for(local: &dyn Host, dir: &Path, env_file: &Path) -> Result<(PathBuf, MigrationLog)> {
    let dir_s = dir.to_str().context("path is not UTF-8")?;
    let out = local.run(&Command::new("find").args([
        dir_s,
        "-maxdepth",
        "1",
        "-name",
        "migrate-*.json",
    ]))?;
    let mut paths: Vec<PathBuf> = out.stdout_text().lines().map(PathBuf::from).collect();
    // `<stamp>` sorts by time; newest first.
    paths.sort_by_key(|p| std::cmp::Reverse(p.file_name().map(|n| n.to_os_string())));
    for path in paths {
        let data = local.read(&path)?;
        let log: MigrationLog = serde_json::from_slice(&data)
            .with_context(|| format!("`{}` is not a migration log", path.display()))?;
        if log.env.as_ref().is_some_and(|e| e.file == env_file) {
            return Ok((path, log));
        }
    }
    Err(anyhow!(
        "no migration log for `{}` in `{}`",
        env_file.display(),
        dir.display()
    ))
    .hint("`--backup-dir` names where `migrate` kept its backups and logs")
}

/// Undo the newest migration of `env_file`: the `.env` from its backup (else the logged values
/// set back), then the source's container started again if `--stop-source` stopped it.
pub fn rollback(
    local: &dyn Host,
    backup_dir: &Path,
    env_file: &str,
    connect: impl Fn(&str) -> Result<Box<dyn Host>>,
    dry_run: bool,
    printer: &Printer,
) -> Result<Vec<StepReport>> {
    let file = local.expand_home(env_file)?;
    let (path, log) = newest_for(local, backup_dir, &file)?;
    let mut steps = vec![StepReport::new(
        "log",
        Outcome::Ok,
        format!(
            "{} ({} -> {} on {})",
            path.display(),
            log.from,
            log.to,
            log.at
        ),
    )];
    let env = log.env.as_ref().expect("newest_for matched its env");
    let mode = Mode {
        dry_run,
        replace: Replace::Yes,
    };
    match env
        .backup
        .as_ref()
        .map(|b| local.read_opt(b))
        .transpose()?
        .flatten()
    {
        Some(old) => {
            let text = String::from_utf8(old).context("the .env backup is not UTF-8")?;
            let step = FileStep {
                path: file.clone(),
                content: &text,
                mode: None,
            };
            let mut report = step.run(local, mode, printer)?;
            report.detail = format!(
                "{} (from `{}`)",
                report.detail,
                env.backup
                    .as_ref()
                    .map(|b| b.display().to_string())
                    .unwrap_or_default()
            );
            steps.push(report);
        }
        None => {
            // No backup left: the logged values (secrets were masked, so only the others).
            let updates: Vec<(String, String)> = env
                .before
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
                .filter(|(_, v)| v != MASK)
                .collect();
            let r = envfile::set(
                local,
                &SetOptions {
                    file: env_file.to_string(),
                    updates,
                    create: false,
                    dry_run,
                },
            )?;
            steps.push(StepReport::new(
                format!(".env {}", r.path.display()),
                r.status,
                format!(
                    "set back {} keys from the log (no backup left)",
                    r.changed_keys.len()
                ),
            ));
        }
    }
    if let Some(name) = &log.stopped_container {
        let host = connect(&log.from)?;
        let docker = crate::service::ready_docker(host.as_ref())?;
        let (outcome, detail) = match dry_run {
            true => (Outcome::WouldChange, format!("would start `{name}` again")),
            false => {
                host.run_ok(&docker.command(&["start", name]))?;
                (Outcome::Changed, format!("started `{name}` again"))
            }
        };
        steps.push(StepReport::new(
            format!("source {}", log.from),
            outcome,
            detail,
        ));
    }
    Ok(steps)
}
