//! Progress of a pull: indicatif bars (one per active file, and a total) on a terminal;
//! otherwise one line per file started and finished. The `Printer` decides which.

use std::time::{Duration, Instant};

use bytesize::ByteSize;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::ui::Printer;

#[derive(Clone)]
pub struct Progress {
    bars: Option<(MultiProgress, ProgressBar)>,
    /// Lines when there are no bars; `false` with `-q`.
    lines: bool,
}

impl Progress {
    pub fn new(printer: &Printer, total_bytes: u64) -> Progress {
        if !printer.progress_bars {
            return Progress {
                bars: None,
                lines: printer.verbosity != crate::ui::Verbosity::Quiet,
            };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let total = multi.add(ProgressBar::new(total_bytes));
        total.set_style(style(
            "{prefix:>12.bold} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        ));
        total.set_prefix("total");
        total.enable_steady_tick(Duration::from_millis(200));
        Progress {
            bars: Some((multi, total)),
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

    /// A file starts; `done` bytes of it were already there.
    pub fn start(&self, id: &str, size: u64, done: u64) -> FileProgress {
        let bar = self.bars.as_ref().map(|(multi, total)| {
            total.inc(done);
            let bar = multi.insert_before(total, ProgressBar::new(size));
            bar.set_style(style(
                "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
            ));
            bar.set_prefix(super::report::truncate_cell(id, 12));
            bar.set_position(done);
            bar
        });
        let resumed = if done > 0 {
            format!(", resuming at {}", ByteSize(done))
        } else {
            String::new()
        };
        if bar.is_none() {
            self.line(&format!("fetching `{id}` ({}{resumed})", ByteSize(size)));
        }
        FileProgress {
            bar,
            total: self.bars.as_ref().map(|(_, t)| t.clone()),
        }
    }

    /// A file is in place (hash checked).
    pub fn finished(&self, id: &str, fetched: u64, started: Instant) {
        let secs = started.elapsed().as_secs_f64().max(0.001);
        self.line(&format!(
            "fetched `{id}`: {} in {secs:.1} s ({}/s), sha256 ok",
            ByteSize(fetched),
            ByteSize((fetched as f64 / secs) as u64)
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
}

impl FileProgress {
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

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("valid progress template")
        .progress_chars("=> ")
}
