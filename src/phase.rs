//! One phase runner for `setup` and `migrate`. A phase is a name and a run over a shared
//! context that produces step reports; the runner announces and times each, skips the ones not
//! selected, stops after a failure (the phases after it are reported skipped, with why) or when
//! a phase says the run ends there, and renders the phases and Ansible's recap line.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use crate::step::{Outcome, StepReport};
use crate::ui::Printer;

/// A closed set of phases (an enum), in run order.
pub trait PhaseId: Copy + PartialEq + Serialize {
    fn name(self) -> &'static str;
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport<P> {
    pub phase: P,
    pub outcome: Outcome,
    pub detail: String,
    pub steps: Vec<StepReport>,
    pub elapsed_ms: u128,
}

/// What a phase produced: its steps, a one-line summary, and whether the run ends here.
pub struct PhaseOutput {
    pub steps: Vec<StepReport>,
    pub detail: String,
    /// Why the phases after this one do not run (they are reported skipped with it).
    pub stop: Option<String>,
}

impl PhaseOutput {
    pub fn new(steps: Vec<StepReport>, detail: impl Into<String>) -> Self {
        PhaseOutput {
            steps,
            detail: detail.into(),
            stop: None,
        }
    }
}

impl From<Vec<StepReport>> for PhaseOutput {
    fn from(steps: Vec<StepReport>) -> Self {
        let changed = steps
            .iter()
            .filter(|s| matches!(s.outcome, Outcome::Changed | Outcome::WouldChange))
            .count();
        let detail = match changed {
            0 => format!("{} steps ok", steps.len()),
            n => format!(
                "{n} of {} steps {}",
                steps.len(),
                if steps.iter().any(|s| s.outcome == Outcome::WouldChange) {
                    "would change"
                } else {
                    "changed"
                }
            ),
        };
        PhaseOutput {
            steps,
            detail,
            stop: None,
        }
    }
}

/// The outcome of a phase from its steps: failed > changed > would change > ok.
pub fn summarize(steps: &[StepReport]) -> Outcome {
    let has = |o: Outcome| steps.iter().any(|s| s.outcome == o);
    if !steps.is_empty() && steps.iter().all(|s| s.outcome == Outcome::Skipped) {
        Outcome::Skipped
    } else if has(Outcome::Failed) {
        Outcome::Failed
    } else if has(Outcome::Changed) {
        Outcome::Changed
    } else if has(Outcome::WouldChange) {
        Outcome::WouldChange
    } else {
        Outcome::Ok
    }
}

fn skipped<P>(phase: P, why: &str) -> PhaseReport<P> {
    PhaseReport {
        phase,
        outcome: Outcome::Skipped,
        detail: why.to_string(),
        steps: Vec::new(),
        elapsed_ms: 0,
    }
}

/// Run `phases` in order over `ctx`, those in `selected` only.
pub fn run<P: PhaseId, C>(
    phases: &[P],
    selected: &[P],
    host: &str,
    printer: &Printer,
    ctx: &mut C,
    mut run: impl FnMut(&mut C, P) -> Result<PhaseOutput>,
) -> Vec<PhaseReport<P>> {
    let mut reports = Vec::new();
    let mut blocked: Option<String> = None;
    for &phase in phases {
        if !selected.contains(&phase) {
            reports.push(skipped(phase, "not selected"));
            continue;
        }
        if let Some(why) = &blocked {
            reports.push(skipped(phase, why));
            continue;
        }
        printer.status(format!("== {} on {host}", phase.name()));
        let t = Instant::now();
        let report = match run(ctx, phase) {
            Ok(out) => {
                blocked = out.stop;
                PhaseReport {
                    phase,
                    outcome: summarize(&out.steps),
                    detail: out.detail,
                    steps: out.steps,
                    elapsed_ms: t.elapsed().as_millis(),
                }
            }
            Err(e) => {
                printer.print_error(&e);
                PhaseReport {
                    phase,
                    outcome: Outcome::Failed,
                    detail: crate::ui::one_line(&e),
                    steps: Vec::new(),
                    elapsed_ms: t.elapsed().as_millis(),
                }
            }
        };
        if report.outcome == Outcome::Failed && blocked.is_none() {
            blocked = Some(format!("`{}` failed", phase.name()));
        }
        reports.push(report);
    }
    reports
}

/// Per phase a line, and under it the steps that are not ok (with their diff in a plan).
pub fn render<P: PhaseId>(phases: &[PhaseReport<P>], dry_run: bool) -> String {
    let mut out = String::new();
    for p in phases {
        out += &format!(
            "{:16} {:13} {}\n",
            p.phase.name(),
            p.outcome.label(),
            p.detail
        );
        for s in p.steps.iter().filter(|s| s.outcome != Outcome::Ok) {
            out += &format!(
                "  {:14} {:13} {}: {}\n",
                "",
                s.outcome.label(),
                s.name,
                s.detail
            );
            if let (Some(diff), true) = (&s.diff, dry_run) {
                out += diff;
            }
        }
    }
    out
}

/// Ansible's recap line: phases per outcome, bytes moved, time taken.
pub fn recap<P>(host: &str, phases: &[PhaseReport<P>], moved: u64, elapsed_ms: u128) -> String {
    let count = |o: Outcome| phases.iter().filter(|p| p.outcome == o).count();
    format!(
        "\nRECAP {} : ok={} changed={} would_change={} skipped={} failed={}   downloaded {}   {}\n",
        host,
        count(Outcome::Ok),
        count(Outcome::Changed),
        count(Outcome::WouldChange),
        count(Outcome::Skipped),
        count(Outcome::Failed),
        crate::units::size(moved),
        crate::units::duration(Duration::from_millis(elapsed_ms as u64))
    )
}
