//! The one JSON document a command prints with `--json`, success or failure (docs/json-schema.json):
//! `{"command", "host", "dry_run", "ok", <the command's fields>, "error"}`.
//!
//! Commands hand their data to the `Printer` (`emit`, `emit_field`) instead of printing it; `main`
//! prints the document once the command has returned, so a failure after some output, or before
//! any, still gives exactly one object on stdout.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::ui::Hint;

/// Keys the envelope owns; a command's data never overrides them.
const RESERVED: [&str; 5] = ["command", "host", "dry_run", "ok", "error"];

#[derive(Debug, Serialize)]
pub struct Envelope {
    /// The subcommand path, e.g. `models pull`.
    pub command: String,
    /// The host the command acted on (`--host` resolved; the destination of `migrate` and
    /// `workflows transfer`), or null when it acted on several (an inventory) or none (`pool`).
    pub host: Option<String>,
    pub dry_run: bool,
    /// True exactly when the exit code is 0.
    pub ok: bool,
    #[serde(flatten)]
    pub data: Map<String, Value>,
    /// Null exactly when `ok`.
    pub error: Option<ErrorDoc>,
}

/// An error as `error:` / `Caused by:` / `hint:` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorDoc {
    pub message: String,
    pub causes: Vec<String>,
    pub hint: Option<String>,
}

impl ErrorDoc {
    pub fn of(err: &anyhow::Error) -> ErrorDoc {
        // anyhow finds the outermost `Hint` context anywhere in the chain; its text is not a cause.
        let hint = err.downcast_ref::<Hint>().map(|h| h.0.clone());
        let mut messages = err
            .chain()
            .map(|e| e.to_string())
            .filter(|m| Some(m) != hint.as_ref());
        ErrorDoc {
            message: messages.next().unwrap_or_default(),
            causes: messages.collect(),
            hint,
        }
    }
}

/// What a command has handed over for its document so far. Shared by a printer's clones (the
/// fleet's per-host printers never emit: they are not in JSON mode).
#[derive(Debug, Clone, Default)]
pub struct Collected(Arc<Mutex<State>>);

#[derive(Debug, Default)]
struct State {
    host: Option<String>,
    dry_run: bool,
    /// Set when a command fails without an error value (e.g. `doctor` with a failed check).
    failure: Option<ErrorDoc>,
    data: Map<String, Value>,
}

impl Collected {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind: still usable.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_dry_run(&self, dry_run: bool) {
        self.state().dry_run = dry_run;
    }

    pub fn set_host(&self, host: &str) {
        self.state().host = Some(host.to_string());
    }

    /// Why the command fails when it returns a failing exit code rather than an error.
    pub fn set_failure(&self, message: String, hint: Option<String>) {
        self.state().failure = Some(ErrorDoc {
            message,
            causes: Vec::new(),
            hint,
        });
    }

    /// A value's fields become the document's (an object's), or the value becomes field `name`.
    pub fn add(&self, name: Option<&str>, value: Value) {
        let mut state = self.state();
        match (name, value) {
            (None, Value::Object(fields)) => {
                for (key, value) in fields {
                    if !RESERVED.contains(&key.as_str()) {
                        state.data.insert(key, value);
                    }
                }
            }
            (name, value) => {
                state
                    .data
                    .insert(name.unwrap_or("result").to_string(), value);
            }
        }
    }

    /// The document for a command that ended with `result`.
    pub fn envelope(&self, command: &str, result: &anyhow::Result<ExitCode>) -> Envelope {
        let state = self.state();
        let (ok, error) = match result {
            Ok(code) if *code == ExitCode::SUCCESS => (true, None),
            Ok(_) => (
                false,
                Some(state.failure.clone().unwrap_or_else(|| ErrorDoc {
                    message: format!(
                        "`{command}` did not succeed; the report above says which part failed"
                    ),
                    causes: Vec::new(),
                    hint: None,
                })),
            ),
            Err(err) => (false, Some(ErrorDoc::of(err))),
        };
        Envelope {
            command: command.to_string(),
            host: state.host.clone(),
            dry_run: state.dry_run,
            ok,
            data: state.data.clone(),
            error,
        }
    }
}

/// The document for arguments clap refused, when they ask for `--json` (clap then prints its
/// own message on stderr and exits 2). None for `--help`/`--version` and without `--json`.
pub fn usage_error(args: &[String], err: &clap::Error) -> Option<Envelope> {
    if !err.use_stderr() || !args.iter().any(|a| a == "--json") {
        return None;
    }
    // The subcommand words among the arguments, as far as they name subcommands.
    let mut cmd = <crate::cli::Cli as clap::CommandFactory>::command();
    let mut words = Vec::new();
    for arg in args.iter().skip(1) {
        let Some(sub) = cmd.find_subcommand(arg).cloned() else {
            continue;
        };
        words.push(sub.get_name().to_string());
        cmd = sub;
    }
    let command = words.join(" ");
    let text = err.to_string();
    let first = text.lines().next().unwrap_or_default();
    // A hint our value parsers add (`  hint: ...`), else where to read the usage.
    let hint = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("hint: "))
        .map(String::from)
        .unwrap_or_else(|| format!("see `lifeos-spark {command} --help`").replace("  ", " "));
    Some(Envelope {
        host: None,
        dry_run: args.iter().any(|a| a == "--dry-run"),
        ok: false,
        data: Map::new(),
        error: Some(ErrorDoc {
            message: first.strip_prefix("error: ").unwrap_or(first).to_string(),
            causes: Vec::new(),
            hint: Some(hint),
        }),
        command,
    })
}

/// The subcommand path the arguments chose, e.g. `models pull` (`lifeos-spark` alone: empty).
pub fn command_path(matches: &clap::ArgMatches) -> String {
    let mut words = Vec::new();
    let mut m = matches;
    while let Some((name, sub)) = m.subcommand() {
        words.push(name.to_string());
        m = sub;
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::HintExt;

    #[test]
    fn an_error_becomes_message_causes_and_hint() {
        let err: anyhow::Result<()> = Err(anyhow::anyhow!("connection refused"));
        let err = err
            .hint("start sshd")
            .map_err(|e| e.context("cannot reach `spark`"))
            .unwrap_err();
        let doc = ErrorDoc::of(&err);
        assert_eq!(doc.message, "cannot reach `spark`");
        assert_eq!(doc.causes, ["connection refused"]);
        assert_eq!(doc.hint.as_deref(), Some("start sshd"));
    }

    #[test]
    fn data_never_overrides_the_envelope_and_failure_has_an_error() {
        let c = Collected::default();
        c.set_host("spark");
        c.add(
            None,
            serde_json::json!({"ok": true, "host": "x", "files": [1]}),
        );
        c.add(Some("vars"), serde_json::json!([]));
        let doc = c.envelope("models verify", &Ok(ExitCode::FAILURE));
        let v = serde_json::to_value(&doc).unwrap();
        assert_eq!(v["ok"], false);
        assert_eq!(v["host"], "spark");
        assert_eq!(v["files"], serde_json::json!([1]));
        assert_eq!(v["vars"], serde_json::json!([]));
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("models verify"));
        let ok = serde_json::to_value(c.envelope("x", &Ok(ExitCode::SUCCESS))).unwrap();
        assert_eq!(ok["error"], Value::Null);
    }
}
