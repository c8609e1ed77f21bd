//! What a probe learnt about a host, kept for as long as the tool holds that host (one command
//! run). `setup` asks for Docker's state in doctor and again in compose, up and nodes: four
//! rounds of `docker version`, `docker info` and `docker compose version` that cannot change
//! in between (no phase installs or reconfigures Docker), each a few round trips over SSH.
//! Only facts that hold for the whole run belong here: never a file's content or a container's
//! state, which the run itself changes.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Result;

/// One value per type: the type says what was probed (`docker::Docker`, `system::Platform`).
#[derive(Default)]
pub struct Memo(Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>);

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Memo({} facts)", self.lock().len())
    }
}

impl Memo {
    /// The value kept for `T`, else `probe`'s, kept when it succeeds (a failure is retried by
    /// the next caller). Two threads asking at once may both probe; the first answer stays.
    pub fn get_or_probe<T: Clone + Send + Sync + 'static>(
        &self,
        probe: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        if let Some(v) = self.lock().get(&TypeId::of::<T>()) {
            return Ok(v.downcast_ref::<T>().expect("keyed by its type").clone());
        }
        // Not under the lock: a probe is a round trip, and other probes may run beside it.
        let value = probe()?;
        let kept = self
            .lock()
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Arc::new(value))
            .clone();
        Ok(kept.downcast_ref::<T>().expect("keyed by its type").clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TypeId, Arc<dyn Any + Send + Sync>>> {
        // A panic elsewhere leaves the map whole (inserts are single calls).
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn probes_once_per_type_and_retries_a_failure() {
        let memo = Memo::default();
        let calls = Cell::new(0);
        let probe = |v: u32| {
            calls.set(calls.get() + 1);
            Ok(v)
        };
        assert_eq!(memo.get_or_probe(|| probe(1)).unwrap(), 1);
        assert_eq!(memo.get_or_probe(|| probe(2)).unwrap(), 1);
        assert_eq!(calls.get(), 1);
        assert_eq!(
            memo.get_or_probe(|| Ok("other type")).unwrap(),
            "other type"
        );
        assert!(memo
            .get_or_probe::<i64>(|| Err(anyhow::anyhow!("down")))
            .is_err());
        assert_eq!(memo.get_or_probe::<i64>(|| Ok(7)).unwrap(), 7);
    }
}
