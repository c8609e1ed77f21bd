//! Running one command on every selected host of the inventory at once, as Ansible does:
//! at most `forks` hosts at a time, each host's output buffered and printed as one block,
//! one recap line per host at the end. One failing host does not stop the others.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use crate::inventory::Selected;
use crate::step::Outcome;

/// How a host's run ended, for the recap and the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HostState {
    Ok,
    Failed,
    /// No session could be opened (or the service did not answer).
    Unreachable,
}

/// Ansible's recap counters.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Counts {
    pub ok: usize,
    pub changed: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl Counts {
    /// Would-change counts as changed, as Ansible's `--check` does.
    pub fn of(outcomes: impl IntoIterator<Item = Outcome>) -> Counts {
        let mut c = Counts::default();
        for o in outcomes {
            match o {
                Outcome::Changed | Outcome::WouldChange => c.changed += 1,
                // A blocked change is a run that would fail there.
                Outcome::Failed | Outcome::Blocked => c.failed += 1,
                Outcome::Skipped => c.skipped += 1,
                Outcome::Ok => c.ok += 1,
            }
        }
        c
    }
}

/// One host's result: the text block, and the command's own JSON document.
#[derive(Debug, Serialize)]
pub struct HostResult {
    pub host: String,
    pub state: HostState,
    pub counts: Counts,
    pub elapsed_ms: u128,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub result: serde_json::Value,
    #[serde(skip)]
    pub text: String,
}

impl HostResult {
    /// A host whose run returned an error before it had a report.
    pub fn error(
        host: &str,
        state: HostState,
        err: &anyhow::Error,
        printer: &crate::ui::Printer,
    ) -> HostResult {
        HostResult {
            host: host.to_string(),
            state,
            // Ansible counts an unreachable host apart from failed tasks.
            counts: Counts {
                failed: usize::from(state == HostState::Failed),
                ..Counts::default()
            },
            elapsed_ms: 0,
            error: Some(crate::ui::one_line(err)),
            result: serde_json::Value::Null,
            text: printer.render_error(err),
        }
    }
}

/// Run `job` for each host, at most `forks` at once (a worker per fork takes the next host).
/// `on_done` sees each result as it finishes (to print its block); results come back in the
/// hosts' order.
pub fn run<F, D>(hosts: &[Selected], forks: usize, job: F, on_done: D) -> Vec<HostResult>
where
    F: Fn(&Selected) -> HostResult + Sync,
    D: Fn(&HostResult) + Sync,
{
    let next = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<HostResult>>> =
        Mutex::new((0..hosts.len()).map(|_| None).collect());
    let print = Mutex::new(());
    std::thread::scope(|s| {
        for _ in 0..forks.clamp(1, hosts.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(host) = hosts.get(i) else { break };
                let start = std::time::Instant::now();
                let mut result = job(host);
                result.elapsed_ms = start.elapsed().as_millis();
                {
                    // One block at a time: a block is never cut by another host's lines.
                    let _guard = print.lock().unwrap_or_else(|e| e.into_inner());
                    on_done(&result);
                }
                slots.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(result);
            });
        }
    });
    slots
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .flatten()
        .collect()
}

/// A host's block: a header line, then its text.
pub fn block(r: &HostResult) -> String {
    let mut out = format!("=== {} [{}] ===\n", r.host, state_label(r.state));
    out += &r.text;
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

fn state_label(s: HostState) -> &'static str {
    match s {
        HostState::Ok => "ok",
        HostState::Failed => "failed",
        HostState::Unreachable => "unreachable",
    }
}

/// `PLAY RECAP`: one line per host, in Ansible's shape.
pub fn recap(results: &[HostResult]) -> String {
    let width = results.iter().map(|r| r.host.len()).max().unwrap_or(0);
    let mut out = String::from("RECAP\n");
    for r in results {
        let unreachable = usize::from(r.state == HostState::Unreachable);
        out += &format!(
            "{:width$} : ok={:<4} changed={:<4} unreachable={:<4} failed={:<4} skipped={:<4} elapsed={:.1}s\n",
            r.host,
            r.counts.ok,
            r.counts.changed,
            unreachable,
            r.counts.failed,
            r.counts.skipped,
            r.elapsed_ms as f64 / 1000.0,
        );
    }
    out
}

pub fn any_failed(results: &[HostResult]) -> bool {
    results.iter().any(|r| r.state != HostState::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{HostEntry, Role};

    fn hosts(n: usize) -> Vec<Selected> {
        (0..n)
            .map(|i| Selected {
                name: format!("h{i}"),
                entry: HostEntry {
                    ssh: "local".into(),
                    playbook: None,
                    root: None,
                    url: None,
                    role: Role::Primary,
                    priority: None,
                    capabilities: None,
                    batch_size: None,
                    seconds_per_image: None,
                },
            })
            .collect()
    }

    #[test]
    fn forks_bound_the_hosts_running_at_once_and_order_is_kept() {
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let results = run(
            &hosts(7),
            3,
            |h| {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(30));
                running.fetch_sub(1, Ordering::SeqCst);
                let state = if h.name == "h2" {
                    HostState::Failed
                } else {
                    HostState::Ok
                };
                HostResult {
                    host: h.name.clone(),
                    state,
                    counts: Counts::default(),
                    elapsed_ms: 0,
                    error: None,
                    result: serde_json::Value::Null,
                    text: String::new(),
                }
            },
            |_| {},
        );
        assert_eq!(peak.load(Ordering::SeqCst), 3);
        let names: Vec<_> = results.iter().map(|r| r.host.as_str()).collect();
        assert_eq!(names, ["h0", "h1", "h2", "h3", "h4", "h5", "h6"]);
        assert!(any_failed(&results));
        assert!(recap(&results).contains("h2 : ok=0"));
    }
}
