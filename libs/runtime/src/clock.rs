//! Where "now" comes from, injectable so a test can move a service's clock (a week
//! ahead for retention, past an idle timeout or a grace period) without waiting and
//! without rewriting timestamps. Every service reads the time through a [`Clock`].

use std::sync::{Arc, Mutex};

use time::OffsetDateTime;

/// Where "now" comes from.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that runs with the system clock plus an offset the test sets.
#[derive(Debug, Clone, Default)]
pub struct ShiftedClock {
    offset: Arc<Mutex<time::Duration>>,
}

impl ShiftedClock {
    /// Moves the clock to the system time plus `offset`.
    pub fn set_offset(&self, offset: time::Duration) {
        *self.offset.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = offset;
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + *self.offset.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
