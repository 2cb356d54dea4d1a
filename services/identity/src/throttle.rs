//! Failed-password throttling for Login (and password re-entry on ChangePassword
//! and DeleteAccount), backed by `login_failures` so every replica sees the same
//! counts.
//!
//! Order of limits: the (email, source) pair trips first (default 5 failures per
//! 15 minutes), so one attacking address is stopped long before it could move the
//! per-email count; once throttled, its attempts are not even checked or counted.
//! The per-email limit (default 50, needing many addresses) never blocks an address
//! the owner has signed in from before, so an attacker cannot lock the owner out.

use std::{net::IpAddr, time::Duration};

use bizops_errors::{Error, ErrorCode};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::{
    config::LoginLimitsConfig,
    system::{SystemStore, ThrottleKey},
};

/// Hashed throttle keys for one attempt. Raw emails and addresses are never stored.
#[derive(Debug, Clone)]
pub struct Keys {
    pair: Vec<u8>,
    email: Vec<u8>,
    source: Vec<u8>,
}

fn digest(parts: &[&[u8]]) -> Vec<u8> {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().to_vec()
}

impl Keys {
    /// Keys for a normalised email and the caller's address (if known).
    pub fn new(email: &str, source: Option<IpAddr>) -> Self {
        let source = source.map(|ip| ip.to_string()).unwrap_or_else(|| "unknown".into());
        Self {
            pair: digest(&[b"bizops/throttle/pair", email.as_bytes(), source.as_bytes()]),
            email: digest(&[b"bizops/throttle/email", email.as_bytes()]),
            source: Self::source_hash(&source),
        }
    }

    /// The hash of a source address as stored in `known_sources`.
    pub fn source_hash(source: &str) -> Vec<u8> {
        digest(&[b"bizops/throttle/source", source.as_bytes()])
    }

    /// This attempt's source hash.
    pub fn source(&self) -> &[u8] {
        &self.source
    }

    /// The email hash (to forget an account's failures when it is deleted).
    pub fn email(&self) -> &[u8] {
        &self.email
    }
}

/// The throttle.
#[derive(Debug, Clone)]
pub struct Throttle {
    store: SystemStore,
    limits: LoginLimitsConfig,
}

impl Throttle {
    /// A throttle on the system store.
    pub fn new(store: SystemStore, limits: LoginLimitsConfig) -> Self {
        Self { store, limits }
    }

    fn window_start(&self, now: OffsetDateTime) -> OffsetDateTime {
        now - self.limits.window
    }

    /// `RATE_LIMITED` with a retry-after if this attempt must not be checked.
    pub async fn check(&self, email: &str, keys: &Keys, now: OffsetDateTime) -> Result<(), Error> {
        let since = self.window_start(now);
        let counts = self
            .store
            .failure_counts(&keys.pair, &keys.email, &keys.source, since)
            .await
            .map_err(Error::internal)?;
        let tripped = if counts.pair >= i64::from(self.limits.per_pair) {
            Some((ThrottleKey::Pair, &keys.pair, self.limits.per_pair))
        } else if counts.source >= i64::from(self.limits.per_source) {
            Some((ThrottleKey::Source, &keys.source, self.limits.per_source))
        } else if counts.email >= i64::from(self.limits.per_email)
            && !self.store.is_known_source(email, &keys.source).await.map_err(Error::internal)?
        {
            Some((ThrottleKey::Email, &keys.email, self.limits.per_email))
        } else {
            None
        };
        let Some((which, key, limit)) = tripped else { return Ok(()) };
        let nth = self
            .store
            .nth_newest_failure(which, key, i64::from(limit), since)
            .await
            .map_err(Error::internal)?
            .unwrap_or(now);
        let wait = (nth + self.limits.window - now).max(time::Duration::seconds(1));
        let wait = Duration::try_from(wait).unwrap_or(Duration::from_secs(1));
        metrics::counter!("identity_login_throttled_total", "key" => format!("{which:?}").to_lowercase())
            .increment(1);
        tracing::warn!(key = ?which, retry_after_secs = wait.as_secs(), "login throttled");
        Err(Error::new(
            ErrorCode::RateLimited,
            format!("too many failed attempts; try again in {} seconds", wait.as_secs().max(1)),
        )
        .with_retry_after(wait))
    }

    /// Counts a failed password check.
    pub async fn failed(&self, keys: &Keys, now: OffsetDateTime) -> Result<(), Error> {
        self.store.record_failure(&keys.pair, &keys.email, &keys.source, now).await.map_err(Error::internal)
    }

    /// A correct password: the pair starts afresh.
    pub async fn succeeded(&self, keys: &Keys) -> Result<(), Error> {
        self.store.clear_pair(&keys.pair).await.map_err(Error::internal)
    }

    /// Deletes rows outside the window; returns how many.
    pub async fn sweep(&self, now: OffsetDateTime) -> Result<u64, sqlx::Error> {
        self.store.sweep_failures(self.window_start(now)).await
    }
}
