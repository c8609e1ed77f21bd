//! One phase runner for `setup` and `migrate`. A phase is a name and a run over a shared
//! context that produces step reports; the runner announces and times each, skips the ones not
//! selected, and renders the phases and Ansible's recap line. After a failure, or when a phase
//! says the run ends there, a real run stops (the phases after it are reported skipped, with
//! why); a plan (`Flow::PlanThrough`) goes on, and each change a real run would not reach is
//! reported `blocked`, with the blocker.

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
    /// In a plan: why a real run would stop here, before this phase's own changes (they and
    /// those of every later phase are reported blocked with it).
    pub blocked_by: Option<String>,
}

/// What the runner does after a failure or a stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// A real run: the phases after it are skipped.
    StopAtFailure,
    /// A dry run that plans every phase: the later phases run their checks, and the changes a
    /// real run would not reach are `blocked`.
    PlanThrough,
}

impl PhaseOutput {
    pub fn new(steps: Vec<StepReport>, detail: impl Into<String>) -> Self {
        PhaseOutput {
            steps,
            detail: detail.into(),
            stop: None,
            blocked_by: None,
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
            blocked_by: None,
        }
    }
}

/// The outcome of a phase from its steps: failed > blocked > changed > would change > ok.
pub fn summarize(steps: &[StepReport]) -> Outcome {
    let has = |o: Outcome| steps.iter().any(|s| s.outcome == o);
    if !steps.is_empty() && steps.iter().all(|s| s.outcome == Outcome::Skipped) {
        Outcome::Skipped
    } else if has(Outcome::Failed) {
        Outcome::Failed
    } else if has(Outcome::Blocked) {
        Outcome::Blocked
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
    flow: Flow,
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
        if let (Some(why), Flow::StopAtFailure) = (&blocked, flow) {
            reports.push(skipped(phase, why));
            continue;
        }
        printer.status(format!("== {} on {host}", phase.name()));
        let t = Instant::now();
        let report = match run(ctx, phase) {
            Ok(mut out) => {
                if flow == Flow::PlanThrough {
                    blocked = blocked.or(out.blocked_by.take());
                    if let Some(why) = &blocked {
                        block_changes(&mut out, why);
                    }
                }
                blocked = blocked.or(out.stop);
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

/// In a plan after a blocker: each change is one a real run would not reach.
fn block_changes(out: &mut PhaseOutput, why: &str) {
    if crate::step::block(&mut out.steps, why) {
        out.detail = format!("{} — blocked: {why}", out.detail);
    }
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
        "\nRECAP {} : ok={} changed={} would_change={} skipped={} failed={} blocked={}   downloaded {}   {}\n",
        host,
        count(Outcome::Ok),
        count(Outcome::Changed),
        count(Outcome::WouldChange),
        count(Outcome::Skipped),
        count(Outcome::Failed),
        count(Outcome::Blocked),
        crate::units::size(moved),
        crate::units::duration(Duration::from_millis(elapsed_ms as u64))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
    enum T {
        Check,
        Write,
        Start,
    }

    impl PhaseId for T {
        fn name(self) -> &'static str {
            match self {
                T::Check => "check",
                T::Write => "write",
                T::Start => "start",
            }
        }
    }

    const ALL: [T; 3] = [T::Check, T::Write, T::Start];

    /// `check` fails (a blocker in a plan), `write` would change a file and has one in place,
    /// `start` fails outright.
    fn phases(flow: Flow) -> (Vec<PhaseReport<T>>, Vec<T>) {
        let printer = Printer::new(crate::ui::Verbosity::Quiet, false, true);
        let mut ran = Vec::new();
        let reports = run(&ALL, &ALL, flow, "h", &printer, &mut ran, |ran, p| {
            ran.push(p);
            match p {
                T::Check => {
                    let mut out = PhaseOutput::new(
                        vec![StepReport::new("gpu", Outcome::Failed, "none")],
                        "1 failed",
                    );
                    out.blocked_by = Some("doctor `gpu`".into());
                    Ok(out)
                }
                T::Write => Ok(vec![
                    StepReport::new("a", Outcome::Ok, "in place"),
                    StepReport::new("b", Outcome::WouldChange, "would create"),
                ]
                .into()),
                T::Start => Err(anyhow::anyhow!("no daemon")),
            }
        });
        (reports, ran)
    }

    #[test]
    fn a_plan_runs_every_phase_and_blocks_the_changes_after_a_blocker() {
        let (reports, ran) = phases(Flow::PlanThrough);
        assert_eq!(ran, ALL);
        let outcomes: Vec<Outcome> = reports.iter().map(|r| r.outcome).collect();
        assert_eq!(
            outcomes,
            [Outcome::Failed, Outcome::Blocked, Outcome::Failed]
        );
        let write = &reports[1].steps;
        assert_eq!(write[0].outcome, Outcome::Ok, "what is in place stays ok");
        assert_eq!(write[1].outcome, Outcome::Blocked);
        assert_eq!(write[1].detail, "would create — blocked: doctor `gpu`");
    }

    #[test]
    fn a_real_run_stops_at_the_first_failure() {
        let (reports, ran) = phases(Flow::StopAtFailure);
        assert_eq!(ran, [T::Check]);
        assert_eq!(reports[1].outcome, Outcome::Skipped);
        assert_eq!(reports[1].detail, "`check` failed");
        assert_eq!(reports[2].outcome, Outcome::Skipped);
    }
}
