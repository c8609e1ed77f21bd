//! Ctrl-C (SIGINT) or SIGTERM ends every command with exit 130 (`128 + SIGINT`, as shells
//! report it), from one place: the watcher `main` starts. An operation with something to keep
//! (a model download saves its finished pieces and its `.part` record first) listens itself
//! while it holds `handled_here()`; the watcher then leaves the first signal to it, and a
//! second one ends the run at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use anyhow::Result;
use tokio::signal::unix::{signal, SignalKind};

/// 128 + SIGINT.
pub const EXIT_INTERRUPTED: u8 = 130;

/// How many operations are handling the signal themselves right now.
static HANDLERS: AtomicUsize = AtomicUsize::new(0);

/// What the run says last when a signal ends it here (the `--json` document), set once.
static LAST_WORDS: OnceLock<Box<dyn Fn() + Send + Sync>> = OnceLock::new();

/// Run `f` just before a signal ends the run (a command that returns by itself after a
/// signal prints its own document).
pub fn on_interrupt(f: impl Fn() + Send + Sync + 'static) {
    let _ = LAST_WORDS.set(Box::new(f));
}

/// Signals a holder of `handled_here()` acted on. The watcher may look at `HANDLERS` only
/// after the holder has acted on the signal and let go (a busy machine schedules the watcher
/// late): this count tells it that signal was taken.
static TAKEN: AtomicUsize = AtomicUsize::new(0);

/// While held, the first signal is the holder's to act on.
pub struct HandledHere(());

/// Say that a holder of `handled_here()` is acting on a signal; call it before letting go.
pub fn took_the_signal() {
    TAKEN.fetch_add(1, Ordering::SeqCst);
}

pub fn handled_here() -> HandledHere {
    HANDLERS.fetch_add(1, Ordering::SeqCst);
    HandledHere(())
}

impl Drop for HandledHere {
    fn drop(&mut self) {
        HANDLERS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Install the handlers now (a signal from here on is caught), and watch on a thread of its own.
pub fn watch() -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut int, mut term) = {
        let _in = rt.enter();
        (
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        )
    };
    std::thread::spawn(move || {
        rt.block_on(async {
            let mut seen = 0;
            loop {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                seen += 1;
                let held = HANDLERS.load(Ordering::SeqCst) > 0;
                let taken = TAKEN.load(Ordering::SeqCst) > 0;
                if seen > 1 || !(held || taken) {
                    // Past any progress bar's line.
                    eprintln!("\nerror: interrupted");
                    if let Some(last_words) = LAST_WORDS.get() {
                        last_words();
                    }
                    std::process::exit(EXIT_INTERRUPTED.into());
                }
            }
        })
    });
    Ok(())
}
