//! Ctrl-C and SIGTERM: the default action (the process ends, the shell reports 130) except
//! while a model transfer handles them itself (`models::ops`: partials recorded, exit 130).
//!
//! Why this exists: tokio's signal handling, once set up, replaces the default action for the
//! rest of the process. Without this, a Ctrl-C after the models phase of `setup` or `migrate`
//! (installing nodes, carrying user files) would reach tokio's handler, which no runtime
//! listens to any more, and do nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGINT, SIGTERM};

/// `true` while nothing handles the signals itself: then the default action runs.
fn unhandled() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(true));
        for sig in [SIGINT, SIGTERM] {
            // Registering fails only for signals that cannot be caught; these two can.
            let _ = signal_hook::flag::register_conditional_default(sig, flag.clone());
        }
        flag
    })
}

/// While alive, Ctrl-C and SIGTERM are left to the caller's own handler (tokio's). One
/// transfer runs at a time in a process.
pub struct Handled(());

impl Handled {
    pub fn start() -> Handled {
        unhandled().store(false, Ordering::SeqCst);
        Handled(())
    }
}

impl Drop for Handled {
    fn drop(&mut self) {
        unhandled().store(true, Ordering::SeqCst);
    }
}
