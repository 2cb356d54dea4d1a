//! Waiting for facts: the one place a test may pause. A test waits for something it
//! can observe (a row, a status, a message, a metric) with a deadline, never for time
//! to pass; "nothing happened" is checked after the work that would have made it
//! happen is known to be finished (see `quiesce` helpers), not after a sleep.

use std::{fmt::Display, future::Future, time::Duration};

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
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
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
    #[should_panic(expected = "timed out after 50ms waiting for a fact that never holds")]
    async fn gives_up_at_the_deadline() {
        until("a fact that never holds", Duration::from_millis(50), || async { false }).await;
    }
}
