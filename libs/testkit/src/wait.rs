//! Waiting for facts: the one place a test may pause. A test waits for something it
//! can observe (a row, a status, a message, a metric) with a deadline, never for time
//! to pass; "nothing happened" is checked after the work that would have made it
//! happen is known to be finished (see `quiesce` helpers), not after a sleep.

use std::{
    fmt::{self, Debug, Display},
    future::Future,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use tokio::time::Instant;

/// How long a test waits for a fact unless it says otherwise.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Polls `check` until it yields `Some`, at most `within`; panics naming `what`
/// otherwise. Polls quickly at first (5 ms) and backs off to every 100 ms.
pub async fn eventually<T, F, Fut>(what: impl Display, within: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match poll(within, check).await {
        Some(value) => value,
        None => panic!("timed out after {within:?} waiting for {what}"),
    }
}

/// The polling behind [`eventually`], for harness code that reports a missed
/// deadline as an error instead of a panic: `None` when `within` passed.
pub async fn poll<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let mut polling = Polling::new(within);
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if !polling.again().await {
            return None;
        }
    }
}

/// A deadline-bounded poll written as a loop, for checks that need a `&mut`
/// borrow across the await (which a closure passed to [`eventually`] cannot
/// hold):
///
/// ```no_run
/// # async fn demo(mut check: impl FnMut() -> bool) {
/// let mut wait = bizops_testkit::wait::Polling::new(bizops_testkit::PATIENCE);
/// while !check() {
///     wait.next("the fact").await;
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Polling {
    within: Duration,
    deadline: Instant,
    pause: Duration,
}

impl Polling {
    /// A poll that gives up `within` from now.
    pub fn new(within: Duration) -> Self {
        Self { within, deadline: Instant::now() + within, pause: Duration::from_millis(5) }
    }

    /// Pauses before the next look (5 ms at first, backing off to 100 ms); panics
    /// naming `what` once the deadline has passed.
    pub async fn next(&mut self, what: impl Display) {
        let within = self.within;
        assert!(self.again().await, "timed out after {within:?} waiting for {what}");
    }

    /// Pauses before the next look; `false` (at once) once the deadline has
    /// passed, for a caller that reports a missed deadline itself.
    pub async fn again(&mut self) -> bool {
        let now = Instant::now();
        if now >= self.deadline {
            return false;
        }
        tokio::time::sleep(self.pause.min(self.deadline - now)).await;
        self.pause = (self.pause * 2).min(Duration::from_millis(100));
        true
    }
}

/// Polls `check` until it is true, at most `within`; panics naming `what` otherwise.
pub async fn until<F, Fut>(what: impl Display, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually(what, within, || {
        let fut = check();
        async move { fut.await.then_some(()) }
    })
    .await;
}

/// What a wait expects and, shown only if it times out, the last thing it saw:
/// pass `&seen` as the `what` of [`eventually`] and call [`Seen::saw`] in the check.
#[derive(Debug)]
pub struct Seen {
    what: String,
    last: Mutex<String>,
}

impl Seen {
    /// Expects `what`; nothing seen yet.
    pub fn new(what: impl Into<String>) -> Self {
        Self { what: what.into(), last: Mutex::new("nothing yet".into()) }
    }

    /// Remembers the last thing seen.
    pub fn saw(&self, last: impl Debug) {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = format!("{last:?}");
    }
}

impl Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        write!(f, "{}; last seen: {last}", self.what)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    };

    use super::*;

    #[tokio::test]
    async fn returns_the_first_value_that_holds() {
        let calls = Arc::new(AtomicU32::new(0));
        let seen = eventually("the third call", PATIENCE, || {
            let calls = calls.clone();
            async move {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                (n == 3).then_some(n)
            }
        })
        .await;
        assert_eq!(seen, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after 30ms waiting for the loop's fact")]
    async fn a_polling_loop_gives_up_at_its_deadline() {
        let mut wait = Polling::new(Duration::from_millis(30));
        loop {
            wait.next("the loop's fact").await;
        }
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for the answer 42; last seen: 41")]
    async fn a_timeout_names_the_last_thing_seen() {
        let seen = Seen::new("the answer 42");
        eventually(&seen, Duration::from_millis(50), || async {
            seen.saw(41);
            None::<()>
        })
        .await;
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after 50ms waiting for a fact that never holds")]
    async fn gives_up_at_the_deadline() {
        until("a fact that never holds", Duration::from_millis(50), || async { false }).await;
    }
}
