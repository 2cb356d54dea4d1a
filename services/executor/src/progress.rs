//! What the executor has done and is doing, as counters anyone holding a
//! [`Progress`] can read or watch: runs in flight, intake batches being taken in,
//! and the passes each background loop has completed. They let a caller (a test,
//! a probe) wait for a fact — "a sweep ran after I moved the clock", "nothing is in
//! flight" — instead of for time to pass.

use tokio::sync::watch;

/// A count that only its owner changes; readers see its latest value.
#[derive(Debug, Clone, Default)]
pub struct Counter(watch::Sender<u64>);

impl Counter {
    /// The current value.
    pub fn get(&self) -> u64 {
        *self.0.borrow()
    }

    /// A receiver that sees every later value (`changed`, `wait_for`).
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }

    /// Returns once a whole pass that started after this call has completed (the
    /// count moved on by two: the pass under way when called may have begun before).
    pub async fn full_pass(&self) {
        let from = self.get();
        let mut seen = self.watch();
        // The sender lives as long as `self`: `wait_for` cannot see it closed.
        let _ = seen.wait_for(|n| *n >= from + 2).await;
    }

    /// One more (a pass completed).
    pub(crate) fn bump(&self) {
        self.0.send_modify(|n| *n += 1);
    }

    /// One more until the returned guard is dropped (work in flight).
    pub(crate) fn hold(&self) -> Held {
        self.bump();
        Held(self.clone())
    }
}

/// Holds one unit of a [`Counter`] (work in flight) until dropped.
#[derive(Debug)]
pub(crate) struct Held(Counter);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// The executor's counters; cheap to clone (clones share the counters).
#[derive(Debug, Clone, Default)]
pub struct Progress {
    runs: Counter,
    intake: Counter,
    reaper: Counter,
    expiry: Counter,
    sweeps: Counter,
    scheduler: Counter,
}

impl Progress {
    /// Runs queued in this executor's engine or executing there.
    pub fn runs_in_flight(&self) -> &Counter {
        &self.runs
    }

    /// Batches of triggers the intake has received and not yet fully taken in
    /// (stored, acked and handed to the engine).
    pub fn intake_in_flight(&self) -> &Counter {
        &self.intake
    }

    /// Whether neither the intake nor the engine has work in hand. (Read in the
    /// order work moves: a batch the intake finishes hands its runs to the engine
    /// before it stops counting, so nothing slips between the two reads.) Messages
    /// not yet delivered by JetStream are not seen here: check the consumer too.
    pub fn idle(&self) -> bool {
        self.intake.get() == 0 && self.runs.get() == 0
    }

    /// Passes the reaper has completed.
    pub fn reaper_passes(&self) -> &Counter {
        &self.reaper
    }

    /// Passes of approval expiry completed.
    pub fn expiry_passes(&self) -> &Counter {
        &self.expiry
    }

    /// Retention sweeps (job sweep and run prune) completed.
    pub fn sweeps(&self) -> &Counter {
        &self.sweeps
    }

    /// Scheduler ticks completed (whether or not they fired anything).
    pub fn scheduler_passes(&self) -> &Counter {
        &self.scheduler
    }
}
