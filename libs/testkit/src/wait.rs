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
pub async fn eventually<T, F, Fut>(what: impl Display, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        let now = Instant::now();
        assert!(now < deadline, "timed out after {within:?} waiting for {what}");
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_millis(100));
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
