//! How the tool talks to the operator: one `Printer` decides quiet / verbose / JSON / colour /
//! progress, and renders errors as `error:` / `Caused by:` / `hint:` (uv's style).

use std::fmt;
use std::io::{IsTerminal, Write};

use console::Style;

/// A hint attached to an error with [`HintExt::hint`]; rendered after the error as `hint: ...`.
#[derive(Debug)]
pub struct Hint(pub String);

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Attach a `hint:` line to an error. The hint is added as context, so it never replaces the
/// message that says what failed.
pub trait HintExt<T> {
    fn hint(self, hint: impl Into<String>) -> anyhow::Result<T>;
}

impl<T, E> HintExt<T> for Result<T, E>
where
    E: Into<anyhow::Error>,
{
    fn hint(self, hint: impl Into<String>) -> anyhow::Result<T> {
        self.map_err(|e| e.into().context(Hint(hint.into())))
    }
}

/// The error's messages joined with `: `, without its hint: a one-line detail for a report
/// (the hint is printed with the error itself).
pub fn one_line(err: &anyhow::Error) -> String {
    let hint = err.downcast_ref::<Hint>().map(|h| h.0.clone());
    err.chain()
        .map(|e| e.to_string())
        .filter(|m| Some(m) != hint.as_ref())
        .collect::<Vec<_>>()
        .join(": ")
}

/// Marks an error as a usage mistake (exit code 2), like clap's own errors.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

#[derive(Debug, Clone)]
pub struct Printer {
    pub verbosity: Verbosity,
    pub json: bool,
    pub color: bool,
    /// Progress bars only on a terminal, never with `--no-progress`, `--json` or `-v`
    /// (bars and log lines would interleave).
    pub progress_bars: bool,
}

impl Printer {
    pub fn new(verbosity: Verbosity, json: bool, no_progress: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        let color = tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        console::set_colors_enabled(color);
        console::set_colors_enabled_stderr(color);
        Printer {
            verbosity,
            json,
            color,
            progress_bars: tty && !no_progress && !json && verbosity == Verbosity::Normal,
        }
    }

    /// A status line on stderr (suppressed by `-q`).
    pub fn status(&self, msg: impl fmt::Display) {
        if self.verbosity != Verbosity::Quiet {
            eprintln!("{msg}");
        }
    }

    /// A log line shown only with `-v`.
    pub fn debug(&self, msg: impl fmt::Display) {
        if self.verbosity == Verbosity::Verbose {
            eprintln!("{} {msg}", self.style(Style::new().dim(), "debug:"));
        }
    }

    /// An actionable warning: always shown, even with `-q`.
    pub fn warn(&self, msg: impl fmt::Display) {
        eprintln!(
            "{} {msg}",
            self.style(Style::new().yellow().bold(), "warning:")
        );
    }

    /// Data for stdout (tables, files, JSON documents).
    pub fn data(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        if !text.ends_with('\n') {
            let _ = out.write_all(b"\n");
        }
    }

    /// The result of a command: one JSON document with `--json`, else its text rendering.
    pub fn emit<T: serde::Serialize>(
        &self,
        value: &T,
        render: impl FnOnce(&T) -> String,
    ) -> anyhow::Result<()> {
        if self.json {
            self.json_doc(value)
        } else {
            self.data(&render(value));
            Ok(())
        }
    }

    /// One JSON document on stdout.
    pub fn json_doc(&self, value: &impl serde::Serialize) -> anyhow::Result<()> {
        self.data(&serde_json::to_string_pretty(value)?);
        Ok(())
    }

    /// Ask a yes/no question on the terminal; `false` without asking when stdin or stderr is
    /// not a terminal (unattended runs never hang on a prompt).
    pub fn confirm(&self, question: &str) -> anyhow::Result<bool> {
        if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
            return Ok(false);
        }
        eprint!("{question} [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
    }

    /// A spinner on a terminal; hidden otherwise (the caller prints a line instead).
    pub fn spinner(&self, msg: String) -> indicatif::ProgressBar {
        if !self.progress_bars {
            self.status(&msg);
            return indicatif::ProgressBar::hidden();
        }
        let bar = indicatif::ProgressBar::new_spinner().with_message(msg);
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    }

    pub fn style(&self, style: Style, text: &str) -> String {
        if self.color {
            style.apply_to(text).to_string()
        } else {
            text.to_string()
        }
    }

    pub fn print_error(&self, err: &anyhow::Error) {
        eprint!("{}", self.render_error(err));
    }

    pub fn render_error(&self, err: &anyhow::Error) -> String {
        // anyhow finds the outermost `Hint` context anywhere in the chain; its text is not a cause.
        let hint = err.downcast_ref::<Hint>().map(|h| h.0.clone());
        let mut messages = err
            .chain()
            .map(|e| e.to_string())
            .filter(|m| Some(m) != hint.as_ref());
        let mut out = String::new();
        let head = messages.next().unwrap_or_default();
        out += &format!(
            "{} {head}\n",
            self.style(Style::new().red().bold(), "error:")
        );
        let causes: Vec<String> = messages.collect();
        if !causes.is_empty() {
            out += &format!("{}\n", self.style(Style::new().red(), "Caused by:"));
            for cause in causes {
                out += &format!("  {cause}\n");
            }
        }
        if let Some(hint) = hint {
            out += &format!(
                "\n{} {hint}\n",
                self.style(Style::new().cyan().bold(), "hint:")
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> Printer {
        Printer {
            verbosity: Verbosity::Normal,
            json: false,
            color: false,
            progress_bars: false,
        }
    }

    #[test]
    fn one_line_leaves_the_hint_out() {
        let err: anyhow::Result<()> = Err(anyhow::anyhow!("the `docker` client is not installed"));
        let err = err
            .hint("install Docker")
            .map_err(|e| e.context("doctor: `docker` failed"))
            .unwrap_err();
        assert_eq!(
            one_line(&err),
            "doctor: `docker` failed: the `docker` client is not installed"
        );
    }

    #[test]
    fn renders_error_causes_and_hint() {
        let err: anyhow::Result<()> = Err(anyhow::anyhow!("connection refused"));
        let err = err
            .hint("start sshd on the target")
            .map_err(|e| e.context("cannot reach `spark`"))
            .unwrap_err();
        let text = plain().render_error(&err);
        assert_eq!(
            text,
            "error: cannot reach `spark`\nCaused by:\n  connection refused\n\nhint: start sshd on the target\n"
        );
    }
}
