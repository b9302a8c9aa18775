//! Collection statistics.

use std::time::Duration;

/// What the collector has done so far in one store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Collections run.
    pub collections: u64,
    /// Distinct references found on the stack by the last collection.
    pub last_stack_roots: usize,
    /// Sum over all collections of references found on the stack.
    pub total_stack_roots: u64,
    /// References freed by collections (payloads dropped).
    pub freed: u64,
    /// Size of the root set after the last collection.
    pub set_len_after_last: usize,
    /// Pause of the last collection.
    pub last_pause: Duration,
    /// Sum of all pauses.
    pub total_pause: Duration,
    /// Longest pause.
    pub max_pause: Duration,
}

impl GcStats {
    pub(crate) fn record(&mut self, roots: usize, freed: usize, set_len: usize, pause: Duration) {
        self.collections += 1;
        self.last_stack_roots = roots;
        self.total_stack_roots += roots as u64;
        self.freed += freed as u64;
        self.set_len_after_last = set_len;
        self.last_pause = pause;
        self.total_pause += pause;
        self.max_pause = self.max_pause.max(pause);
    }
}

impl std::fmt::Display for GcStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "gc: {} collections, {} stack roots found (last {}), {} references freed, pause total {:?} max {:?} last {:?}",
            self.collections,
            self.total_stack_roots,
            self.last_stack_roots,
            self.freed,
            self.total_pause,
            self.max_pause,
            self.last_pause
        )
    }
}
