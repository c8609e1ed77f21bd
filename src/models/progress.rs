//! Progress of a pull: indicatif bars (one per active file, and a total) on a terminal;
//! otherwise one line per file started and finished. The `Printer` decides which.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::ui::Printer;
use crate::units;

#[derive(Clone)]
pub struct Progress {
    bars: Option<(MultiProgress, ProgressBar)>,
    /// Bytes the total bar started with (kept from earlier runs): not part of the rate.
    resumed: Arc<AtomicU64>,
    /// Lines when there are no bars; `false` with `-q`.
    lines: bool,
}

impl Progress {
    pub fn new(printer: &Printer, total_bytes: u64) -> Progress {
        if !printer.progress_bars {
            return Progress {
                bars: None,
                resumed: Arc::default(),
                lines: printer.verbosity != crate::ui::Verbosity::Quiet,
            };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let total = multi.add(ProgressBar::new(total_bytes));
        let resumed: Arc<AtomicU64> = Arc::default();
        let kept = resumed.clone();
        total.set_style(style("{prefix:>12.bold}", move || {
            kept.load(Ordering::Relaxed)
        }));
        total.set_prefix("total");
        total.enable_steady_tick(Duration::from_millis(200));
        Progress {
            bars: Some((multi, total)),
            resumed,
            lines: false,
        }
    }

    /// A message that must not tear the bars (printed above them).
    pub fn line(&self, msg: &str) {
        match &self.bars {
            Some((multi, _)) => {
                let _ = multi.println(msg);
            }
            None if self.lines => eprintln!("{msg}"),
            None => {}
        }
    }

    /// A file starts; `done` bytes of it were already there. `from`: the host a copy reads
    /// (`None` for a download).
    pub fn start(&self, id: &str, size: u64, done: u64, from: Option<&str>) -> FileProgress {
        let bar = self.bars.as_ref().map(|(multi, total)| {
            total.inc(done);
            self.resumed.fetch_add(done, Ordering::Relaxed);
            let bar = multi.insert_before(total, ProgressBar::new(size));
            bar.set_style(style("{prefix:>12}", move || done));
            bar.set_prefix(super::report::truncate_cell(id, 12));
            bar.set_position(done);
            bar
        });
        let resumed = if done > 0 {
            format!(", resuming at {}", units::size(done))
        } else {
            String::new()
        };
        if bar.is_none() {
            let what = match from {
                Some(host) => format!("copying `{id}` from {host}"),
                None => format!("fetching `{id}`"),
            };
            self.line(&format!("{what} ({}{resumed})", units::size(size)));
        }
        FileProgress {
            bar,
            total: self.bars.as_ref().map(|(_, t)| t.clone()),
            owner: self.clone(),
            id: id.to_string(),
        }
    }

    /// A file is in place (hash checked); `copied`: it came from another host.
    pub fn finished(&self, id: &str, fetched: u64, started: Instant, copied: bool) {
        let took = started.elapsed();
        // Above the bars the line must fit 80 columns; a log keeps the whole id.
        let id = match self.bars {
            Some(_) => super::report::truncate_cell(id, 24),
            None => id.to_string(),
        };
        let verb = if copied { "copied" } else { "fetched" };
        self.line(&format!(
            "{verb} `{id}`: {} in {}, {}, sha256 ok",
            units::size(fetched),
            units::duration(took),
            units::rate(fetched, took)
        ));
    }

    pub fn finish(&self) {
        if let Some((_, total)) = &self.bars {
            total.finish_and_clear();
        }
    }
}

pub struct FileProgress {
    bar: Option<ProgressBar>,
    total: Option<ProgressBar>,
    owner: Progress,
    id: String,
}

impl FileProgress {
    /// A line about this file, above the bars or in the log.
    pub fn note(&self, msg: &str) {
        let id = match self.bar {
            Some(_) => super::report::truncate_cell(&self.id, 24),
            None => self.id.clone(),
        };
        self.owner.line(&format!("`{id}`: {msg}"));
    }

    pub fn inc(&self, bytes: u64) {
        if let (Some(bar), Some(total)) = (&self.bar, &self.total) {
            bar.inc(bytes);
            total.inc(bytes);
        }
    }

    /// Back to `done` bytes (a restart from zero).
    pub fn reset(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }

    pub fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `<prefix> [bar] 1.07 GB/13.9 GB 8.39 MB/s ETA 2 min 05 s`: at most 79 columns, in the
/// units of every summary. The rate and ETA count only bytes that arrived in this run, not
/// the `resumed()` ones the bar started with (indicatif's own would count the jump).
fn style(prefix: &str, resumed: impl Fn() -> u64 + Send + Sync + Clone + 'static) -> ProgressStyle {
    let moved = move |s: &ProgressState| s.pos().saturating_sub(resumed());
    let eta_moved = moved.clone();
    ProgressStyle::with_template(&format!(
        "{prefix} [{{bar:20}}] {{sizes}} {{rate}} ETA {{left}}"
    ))
    .expect("valid progress template")
    .with_key("sizes", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
        let _ = write!(
            w,
            "{}/{}",
            units::size(s.pos()),
            units::size(s.len().unwrap_or(0))
        );
    })
    .with_key(
        "rate",
        move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&units::rate(moved(s), s.elapsed()));
        },
    )
    .with_key(
        "left",
        move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let left = s.len().unwrap_or(0).saturating_sub(s.pos());
            let per_sec = eta_moved(s) as f64 / s.elapsed().as_secs_f64().max(0.001);
            let text = Duration::try_from_secs_f64(left as f64 / per_sec)
                .map_or("-".to_string(), units::duration);
            let _ = w.write_str(&text);
        },
    )
    .progress_chars("=> ")
}
