//! Capacity one client may hold: open live views (per session and in all).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

/// Open live views: at most `per_session` per session (429 beyond: one browser
/// tab per run is plenty) and `total` on this replica (503 beyond), so one account
/// opening hundreds of streams cannot hold the replica's tasks and NATS
/// subscriptions.
#[derive(Debug)]
pub struct LiveViews {
    per_session: usize,
    open: Arc<Mutex<HashMap<Uuid, usize>>>,
    total: Arc<Semaphore>,
}

/// One open live view; closing it (dropping this) frees its place.
#[derive(Debug)]
pub struct LiveViewSlot {
    open: Arc<Mutex<HashMap<Uuid, usize>>>,
    session: Uuid,
    _total: OwnedSemaphorePermit,
}

impl LiveViews {
    /// Limits of `per_session` per session and `total` in all.
    pub fn new(per_session: usize, total: usize) -> Self {
        Self {
            per_session: per_session.max(1),
            open: Arc::default(),
            total: Arc::new(Semaphore::new(total.max(1))),
        }
    }

    /// A place for one more live view of `session`.
    pub fn open(&self, session: Uuid) -> Result<LiveViewSlot, bizops_errors::Error> {
        use bizops_errors::{Error, ErrorCode};
        let Ok(total) = self.total.clone().try_acquire_owned() else {
            return Err(Error::new(ErrorCode::Unavailable, "too many live views are open; try again later")
                .with_retry_after(Duration::from_secs(5)));
        };
        let mut open = self.open.lock().map_err(|_| Error::internal(std::io::Error::other("poisoned")))?;
        let mine = open.entry(session).or_insert(0);
        if *mine >= self.per_session {
            return Err(Error::new(
                ErrorCode::RateLimited,
                format!("this session has {} live views open already; close one first", self.per_session),
            )
            .with_retry_after(Duration::from_secs(5)));
        }
        *mine += 1;
        Ok(LiveViewSlot { open: self.open.clone(), session, _total: total })
    }

    /// Live views open now for `session`.
    pub fn open_for(&self, session: Uuid) -> usize {
        self.open.lock().map(|o| o.get(&session).copied().unwrap_or(0)).unwrap_or(0)
    }
}

impl Drop for LiveViewSlot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.open.lock()
            && let Some(n) = open.get_mut(&self.session)
        {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.session);
            }
        }
    }
}
