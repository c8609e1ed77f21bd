//! A change to a host is a step: a read-only check first, then (unless `--dry-run`) the change.
//! Each reports ok / would-change (with a diff) / changed / skipped / failed, as Ansible does;
//! in a plan, a change that an earlier blocker (a failed doctor check) would stop is `blocked`.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use serde::Serialize;

use crate::file_change::FileChange;
use crate::host::Host;
use crate::ui::HintExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    WouldChange,
    Changed,
    Skipped,
    Failed,
    /// A dry run's change that a real run would not reach: an earlier step failed.
    Blocked,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::WouldChange => "would change",
            Outcome::Changed => "changed",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
            Outcome::Blocked => "blocked",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub name: String,
    pub outcome: Outcome,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

impl StepReport {
    pub fn new(name: impl Into<String>, outcome: Outcome, detail: impl Into<String>) -> StepReport {
        StepReport {
            name: name.into(),
            outcome,
            detail: detail.into(),
            diff: None,
        }
    }
}

/// How a step may act.
#[derive(Debug, Clone, Copy)]
pub struct Mode {
    pub dry_run: bool,
    /// Replace a file whose content differs (`--yes`, or the operator said yes at a prompt).
    pub replace: Replace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    Yes,
    /// Ask on a terminal; refuse otherwise.
    Ask,
    /// Refuse without asking: hosts run at once cannot share one terminal.
    Refuse,
}

/// A file that must hold exactly `content`.
pub struct FileStep<'a> {
    pub path: PathBuf,
    pub content: &'a str,
    pub mode: Option<u32>,
}

pub fn unified_diff(path: &Path, old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(
            &format!("{} (on host)", path.display()),
            &format!("{} (wanted)", path.display()),
        )
        .to_string()
}

/// `<file>.bak-YYYYmmdd-HHMMSS` beside the file.
pub fn backup_path(path: &Path) -> PathBuf {
    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{name}.bak-{stamp}"))
}

impl FileStep<'_> {
    pub fn run(
        &self,
        host: &dyn Host,
        mode: Mode,
        printer: &crate::ui::Printer,
    ) -> Result<StepReport> {
        let name = self.path.display().to_string();
        let change = FileChange::plan(host, &self.path, |_| Ok(self.content.as_bytes().to_vec()))?;
        if change.is_noop() {
            return Ok(StepReport::new(name, Outcome::Ok, "unchanged"));
        }
        let old = change.before.as_deref().map(String::from_utf8_lossy);
        let diff = unified_diff(&self.path, old.as_deref().unwrap_or(""), self.content);
        let exists = change.before.is_some();
        let (outcome, detail) = match (mode.dry_run, exists) {
            (true, false) => (Outcome::WouldChange, "would create".to_string()),
            (true, true) => (
                Outcome::WouldChange,
                "would replace (backup kept)".to_string(),
            ),
            (false, false) => {
                change.apply(host, self.mode.unwrap_or(0o644), false)?;
                (Outcome::Changed, "created".to_string())
            }
            (false, true) => {
                self.confirm_replace(host, mode, &diff, printer)?;
                let backup = change.apply(host, self.mode.unwrap_or(0o644), true)?;
                let at = backup.map(|b| b.display().to_string()).unwrap_or_default();
                (Outcome::Changed, format!("replaced; backup at `{at}`"))
            }
        };
        let mut report = StepReport::new(name, outcome, detail);
        if outcome == Outcome::WouldChange || exists {
            report.diff = Some(diff);
        }
        Ok(report)
    }

    fn confirm_replace(
        &self,
        host: &dyn Host,
        mode: Mode,
        diff: &str,
        printer: &crate::ui::Printer,
    ) -> Result<()> {
        if mode.replace == Replace::Yes {
            return Ok(());
        }
        printer.status(diff);
        let question = format!("replace `{}` on {}?", self.path.display(), host.name());
        if mode.replace == Replace::Ask && printer.confirm(&question)? {
            return Ok(());
        }
        Err(anyhow!("`{}` on {} differs from what lifeos-spark would write", self.path.display(), host.name()))
            .hint("review the diff above, then re-run with `--yes` to replace it (a timestamped backup is kept)")
    }
}

/// In a plan: each change in `steps` is one a real run would not reach, for `why`. Whether
/// any was.
pub fn block(steps: &mut [StepReport], why: &str) -> bool {
    let mut any = false;
    for s in steps {
        if matches!(s.outcome, Outcome::WouldChange | Outcome::Changed) {
            s.outcome = Outcome::Blocked;
            s.detail = format!("{} — blocked: {why}", s.detail);
            any = true;
        }
    }
    any
}

/// One line per step (`ok`, `changed`, ...), diffs under the steps that have one.
pub fn render(reports: &[StepReport], printer: &crate::ui::Printer) -> String {
    use console::Style;
    let mut out = String::new();
    for r in reports {
        let style = match r.outcome {
            Outcome::Ok | Outcome::Skipped => Style::new().green(),
            Outcome::WouldChange | Outcome::Changed => Style::new().yellow(),
            Outcome::Failed => Style::new().red().bold(),
            Outcome::Blocked => Style::new().red(),
        };
        let label = format!("{:12}", r.outcome.label());
        out += &format!(
            "{} {}: {}\n",
            printer.style(style, &label),
            r.name,
            r.detail
        );
        if let Some(diff) = &r.diff {
            out += diff;
        }
    }
    out
}
