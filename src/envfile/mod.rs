//! Life-OS's `.env` on a host: `set` as a step (check, diff, atomic write keeping mode and
//! owner, backup beside it), `get` and `show`. The text editing itself is `dotenv`, pure.

pub mod dotenv;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::file_change::FileChange;
use crate::host::{FileKind, Host};
use crate::step::{unified_diff, Outcome};
use crate::ui::HintExt;

/// A new `.env` holds secrets: owner-only.
const NEW_FILE_MODE: u32 = 0o600;

#[derive(Debug, Clone)]
pub struct SetOptions {
    /// As given (`~` allowed), on the host.
    pub file: String,
    pub updates: Vec<(String, String)>,
    /// Create the file when it does not exist (otherwise a typo in `--file` is an error).
    pub create: bool,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SetReport {
    pub host: String,
    pub path: PathBuf,
    pub status: Outcome,
    /// Keys whose value changed or that were added.
    pub changed_keys: Vec<String>,
    /// Unified diff, secret-looking values masked; empty when nothing changes.
    pub diff: String,
    pub backup: Option<PathBuf>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Variable {
    pub key: String,
    pub value: String,
    /// The value was replaced by `********` because the key looks like a secret.
    pub masked: bool,
}

/// `KEY=VALUE` from the command line; the value may itself contain `=`.
pub fn parse_assignment(arg: &str) -> Result<(String, String)> {
    let (key, value) = arg
        .split_once('=')
        .with_context(|| format!("`{arg}` is not KEY=VALUE"))
        .hint("e.g. `COMFYUI_URL=http://192.168.1.101:8188`")?;
    dotenv::check_key(key)?;
    dotenv::check_one_line(key, value)?;
    check_lifeos_value(key, value)?;
    Ok((key.to_string(), value.to_string()))
}

pub fn set(host: &dyn Host, opts: &SetOptions) -> Result<SetReport> {
    let path = host.expand_home(&opts.file)?;
    let mut warnings = Vec::new();
    for (key, value) in &opts.updates {
        warnings.extend(check_lifeos_value(key, value)?);
    }
    let real = editable(host, &path)?;
    let change = FileChange::plan(host, &real, |before| {
        let text = match before {
            Some(bytes) => text_of(bytes, &path)?,
            None if opts.create => String::new(),
            None => {
                return Err(anyhow::anyhow!(
                    "`{}` does not exist on {}",
                    path.display(),
                    host.name()
                ))
                .hint("check `--file`, or pass `--create` to start a new file")
            }
        };
        Ok(dotenv::set(&text, &opts.updates)?.into_bytes())
    })?;
    let before = change
        .before
        .as_deref()
        .map(|b| text_of(b, &path))
        .transpose()?;
    let after = text_of(&change.after, &path)?;
    let changed_keys = opts
        .updates
        .iter()
        .filter(|(k, _)| {
            before.as_deref().and_then(|t| dotenv::get(t, k)) != dotenv::get(&after, k)
        })
        .map(|(k, _)| k.clone())
        .collect();
    let mask = |t: &str| dotenv::masked(t, is_secret);
    let diff = unified_diff(&path, &mask(before.as_deref().unwrap_or("")), &mask(&after));
    let (status, backup) = match (change.is_noop(), opts.dry_run) {
        (true, _) => (Outcome::Ok, None),
        (false, true) => (Outcome::WouldChange, None),
        (false, false) => (Outcome::Changed, change.apply(host, NEW_FILE_MODE, true)?),
    };
    Ok(SetReport {
        host: host.name().to_string(),
        path,
        status,
        changed_keys,
        diff,
        backup,
        warnings,
    })
}

/// The value in effect for `key` (the last assignment), `None` when the file lacks it.
pub fn get(host: &dyn Host, file: &str, key: &str) -> Result<Option<String>> {
    let path = host.expand_home(file)?;
    readable(host, &path)?;
    Ok(dotenv::get(&text_of(&host.read(&path)?, &path)?, key))
}

/// Every variable in effect, in the order of first appearance; secret-looking values masked
/// unless `reveal`.
pub fn show(host: &dyn Host, file: &str, reveal: bool) -> Result<Vec<Variable>> {
    let path = host.expand_home(file)?;
    readable(host, &path)?;
    let text = text_of(&host.read(&path)?, &path)?;
    let mut vars: Vec<Variable> = Vec::new();
    for a in dotenv::parse(&text) {
        let masked = !reveal && is_secret(&a.key) && !a.value.is_empty();
        let value = if masked {
            "********".to_string()
        } else {
            a.value
        };
        let var = Variable {
            key: a.key,
            value,
            masked,
        };
        match vars.iter_mut().find(|v| v.key == var.key) {
            Some(existing) => *existing = var,
            None => vars.push(var),
        }
    }
    Ok(vars)
}

/// The file an edit of `path` must replace: a symlink's target (dotfile managers link `.env`
/// files; replacing the link would leave the real file with the old value), never a FIFO or a
/// device (reading one could block forever), never one name of several hard links (the
/// rename would split them: the other names would keep the old content).
fn editable(host: &dyn Host, path: &std::path::Path) -> Result<PathBuf> {
    let resolved = readable(host, path)?;
    if resolved.links > 1 {
        return Err(anyhow::anyhow!(
            "`{}` has {} hard links: replacing it would leave the other names with the old content",
            path.display(),
            resolved.links
        ))
        .hint("edit the file under one name: replace the other hard links with symlinks (`ln -sf`), then run again");
    }
    Ok(resolved.real)
}

/// `path` resolved, refusing anything but a regular file (or nothing yet) before it is opened.
fn readable(host: &dyn Host, path: &std::path::Path) -> Result<crate::host::Resolved> {
    let resolved = host.resolve(path)?;
    match &resolved.kind {
        Some(FileKind::Regular) | None => Ok(resolved),
        Some(FileKind::Directory) => Err(anyhow::anyhow!(
            "`{}` is a directory, not a `.env` file",
            path.display()
        ))
        .hint("give the file itself: `--file <dir>/.env`"),
        Some(FileKind::Other(kind)) => Err(anyhow::anyhow!(
            "`{}` is a {kind}, not a regular file",
            path.display()
        ))
        .hint("point `--file` at the `.env` file itself"),
    }
}

fn text_of(bytes: &[u8], path: &std::path::Path) -> Result<String> {
    String::from_utf8(bytes.to_vec())
        .with_context(|| format!("`{}` is not UTF-8 text", path.display()))
}

/// Keys whose values must not be printed by default (API keys, tokens, passwords).
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_uppercase();
    [
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "PRIVATE",
        "CREDENTIAL",
        "API_KEY",
    ]
    .iter()
    .any(|s| key.contains(s))
        || key.ends_with("_KEY")
}

/// The seed guide's Life-OS keys: a wrong value is refused here rather than found later by
/// Life-OS; another `COMFYUI_` key is probably a typo and earns a warning.
fn check_lifeos_value(key: &str, value: &str) -> Result<Option<String>> {
    let expect = |ok: bool, what: &str| -> Result<Option<String>> {
        if ok {
            return Ok(None);
        }
        bail!("`{key}` must be {what}, not `{value}`")
    };
    match key {
        "COMFYUI_URL" => expect(
            value.starts_with("http://") || value.starts_with("https://"),
            "an http:// or https:// URL (e.g. `http://192.168.1.101:8188`)",
        ),
        "COMFYUI_ENABLED" => expect(matches!(value, "true" | "false"), "`true` or `false`"),
        "COMFYUI_TIMEOUT" | "COMFYUI_MEMORY_GB" => expect(
            value.parse::<u64>().is_ok_and(|n| n > 0),
            "a whole number above 0",
        ),
        "COMFYUI_DEVICE_TYPE" => expect(
            matches!(value, "dgx_spark" | "rtx_4090"),
            "`dgx_spark` or `rtx_4090`",
        ),
        k if k.starts_with("COMFYUI_") => Ok(Some(format!(
            "`{k}` is not one of Life-OS's keys (COMFYUI_URL, COMFYUI_ENABLED, COMFYUI_TIMEOUT, COMFYUI_DEVICE_TYPE, COMFYUI_MEMORY_GB); set anyway"
        ))),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifeos_values_are_checked() {
        assert!(check_lifeos_value("COMFYUI_URL", "http://10.0.0.2:8188")
            .unwrap()
            .is_none());
        assert!(check_lifeos_value("COMFYUI_URL", "10.0.0.2:8188").is_err());
        assert!(check_lifeos_value("COMFYUI_ENABLED", "yes").is_err());
        assert!(check_lifeos_value("COMFYUI_TIMEOUT", "0").is_err());
        assert!(check_lifeos_value("COMFYUI_DEVICE_TYPE", "h100").is_err());
        assert!(check_lifeos_value("COMFYUI_DEVICE_TYPE", "dgx_spark")
            .unwrap()
            .is_none());
        assert!(check_lifeos_value("COMFYUI_URLL", "x").unwrap().is_some());
        assert!(check_lifeos_value("OTHER", "x").unwrap().is_none());
    }

    #[test]
    fn secret_looking_keys() {
        assert!(is_secret("OPENAI_API_KEY"));
        assert!(is_secret("hf_token"));
        assert!(is_secret("SSH_KEY"));
        assert!(!is_secret("COMFYUI_URL"));
        assert!(!is_secret("KEYBOARD"));
    }

    #[test]
    fn assignment_argument() {
        assert_eq!(
            parse_assignment("A=b=c").unwrap(),
            ("A".to_string(), "b=c".to_string())
        );
        assert!(parse_assignment("A").is_err());
        assert!(parse_assignment("1A=x").is_err());
    }
}
