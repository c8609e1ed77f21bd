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
    let doc = crate::envelope::ErrorDoc::of(err);
    std::iter::once(doc.message)
        .chain(doc.causes)
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
    /// What the command hands over for its `--json` document (printed once, by `finish`).
    pub out: crate::envelope::Collected,
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
            out: Default::default(),
        }
    }

    /// No colour, bars, prompts or JSON: for tests and buffered output.
    pub fn plain(verbosity: Verbosity) -> Self {
        Printer {
            verbosity,
            json: false,
            color: false,
            progress_bars: false,
            out: Default::default(),
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

    /// Text data for stdout (tables, files). Nothing with `--json`: there stdout carries only the
    /// one document `finish` prints.
    pub fn data(&self, text: &str) {
        if self.json {
            return;
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        if !text.ends_with('\n') {
            let _ = out.write_all(b"\n");
        }
    }

    /// The result of a command: its fields join the `--json` document, else its text rendering
    /// goes to stdout. A value that is not an object (a list) needs a name: use `emit_field`.
    pub fn emit<T: serde::Serialize>(
        &self,
        value: &T,
        render: impl FnOnce(&T) -> String,
    ) -> anyhow::Result<()> {
        self.emit_as(None, value, render)
    }

    /// Like `emit`, the value being the document's field `name` (`"nodes": [...]`).
    pub fn emit_field<T: serde::Serialize + ?Sized>(
        &self,
        name: &str,
        value: &T,
        render: impl FnOnce(&T) -> String,
    ) -> anyhow::Result<()> {
        self.emit_as(Some(name), value, render)
    }

    /// A value's fields for the `--json` document, for a command that renders its text itself.
    pub fn to_document(&self, value: &impl serde::Serialize) -> anyhow::Result<()> {
        self.out.add(None, serde_json::to_value(value)?);
        Ok(())
    }

    fn emit_as<T: serde::Serialize + ?Sized>(
        &self,
        name: Option<&str>,
        value: &T,
        render: impl FnOnce(&T) -> String,
    ) -> anyhow::Result<()> {
        if self.json {
            self.out.add(name, serde_json::to_value(value)?);
        } else {
            self.data(&render(value));
        }
        Ok(())
    }

    /// The end of a command: its `--json` document on stdout, and its error (if any) on stderr.
    pub fn finish(&self, command: &str, result: &anyhow::Result<std::process::ExitCode>) {
        if let Err(err) = result {
            self.print_error(err);
        }
        if self.json {
            let doc = self.out.envelope(command, result);
            // Strings, bools and JSON values only: encoding cannot fail.
            let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
        }
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
        let doc = crate::envelope::ErrorDoc::of(err);
        let mut out = format!(
            "{} {}\n",
            self.style(Style::new().red().bold(), "error:"),
            doc.message
        );
        if !doc.causes.is_empty() {
            out += &format!("{}\n", self.style(Style::new().red(), "Caused by:"));
            for cause in doc.causes {
                out += &format!("  {cause}\n");
            }
        }
        if let Some(hint) = doc.hint {
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
        Printer::plain(Verbosity::Normal)
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
