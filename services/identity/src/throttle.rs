//! Failed-password throttling for Login (and password re-entry on ChangePassword
//! and DeleteAccount), backed by `login_failures` so every replica sees the same
//! counts.
//!
//! - Every attempt is counted as a failure *before* its password is checked (and
//!   forgiven when it was right), under advisory locks: parallel guesses cannot
//!   all pass the check before any is counted.
//! - The (email, source) pair trips first (default 5 failures per 15 minutes), so
//!   one attacking address is stopped long before it moves the other counts; once
//!   throttled, its attempts are neither checked nor counted.
//! - No limit of a sign-in blocks an address the owner has signed in from (or
//!   registered from) before — not the per-source or per-email limits, and not the
//!   (email, source) pair either, which someone else behind the same address (an
//!   office, a carrier's NAT) could otherwise trip: an attacker cannot lock the
//!   owner out. Guesses from such an address are bounded by the gateway's
//!   per-address rate and the cost of a hash. Password re-entry by a signed-in
//!   session ([`Scope::Reentry`]) keeps the pair limit for every address.
//! - IPv6 sources count per /64 (one subscriber's network), IPv4 per address.
//! - Emails and addresses are stored only as HMAC-SHA256 under a key derived from
//!   the session signing key, so the table cannot be reversed by brute force.

use std::{
    net::{IpAddr, Ipv6Addr},
    time::Duration,
};

use bizops_errors::{Error, ErrorCode};
use hmac::{KeyInit as _, Mac as _};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::{
    config::LoginLimitsConfig,
    system::{FailureCounts, SystemStore, ThrottleKey},
};

/// The HMAC key of throttle and known-source hashes.
#[derive(Clone)]
pub struct HashKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashKey([REDACTED])")
    }
}

impl HashKey {
    /// A key from 32 secret bytes.
    pub fn new(bytes: Zeroizing<[u8; 32]>) -> Self {
        Self(bytes)
    }

    fn mac(&self, parts: &[&[u8]]) -> Vec<u8> {
        let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(self.0.as_ref()) else {
            return Vec::new();
        };
        for p in parts {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p);
        }
        mac.finalize().into_bytes().to_vec()
    }

    /// Keys for a normalised email and the caller's address (if known).
    pub fn keys(&self, email: &str, source: Option<IpAddr>) -> Keys {
        let source = source_label(source);
        Keys {
            pair: self.mac(&[b"pair", email.as_bytes(), source.as_bytes()]),
            email: self.mac(&[b"email", email.as_bytes()]),
            source: self.mac(&[b"source", source.as_bytes()]),
        }
    }
}

/// How a source address is counted: IPv4 per address, IPv6 per /64.
fn source_label(source: Option<IpAddr>) -> String {
    match source {
        None => "unknown".into(),
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{}/64", Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Hashed throttle keys for one attempt. Raw emails and addresses are never stored.
#[derive(Debug, Clone)]
pub struct Keys {
    pair: Vec<u8>,
    email: Vec<u8>,
    source: Vec<u8>,
}

impl Keys {
    /// This attempt's source hash (also what `known_sources` stores).
    pub fn source(&self) -> &[u8] {
        &self.source
    }

    /// The email hash (to forget an account's failures when it is deleted).
    pub fn email(&self) -> &[u8] {
        &self.email
    }
}

/// An attempt that passed the throttle and is counted as a failure until
/// [`Throttle::succeeded`] forgives it.
#[derive(Debug)]
#[must_use = "a reservation is a counted failure until forgiven"]
pub struct Attempt {
    id: i64,
}

/// What an attempt is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Signing in: nothing blocks an address the owner used before.
    Login,
    /// Re-entering the password of a signed-in session (to change it or delete the
    /// account): the pair limit holds everywhere, so a stolen session cannot guess.
    Reentry,
}

/// The throttle.
#[derive(Debug, Clone)]
pub struct Throttle {
    store: SystemStore,
    limits: LoginLimitsConfig,
    key: HashKey,
}

impl Throttle {
    /// A throttle on the system store.
    pub fn new(store: SystemStore, limits: LoginLimitsConfig, key: HashKey) -> Self {
        Self { store, limits, key }
    }

    /// Keys of one attempt.
    pub fn keys(&self, email: &str, source: Option<IpAddr>) -> Keys {
        self.key.keys(email, source)
    }

    fn window_start(&self, now: OffsetDateTime) -> OffsetDateTime {
        now - self.limits.window
    }

    /// Lets the attempt through (counted as a failure until forgiven), or answers
    /// `RATE_LIMITED` with a retry-after.
    pub async fn begin(
        &self,
        email: &str,
        keys: &Keys,
        scope: Scope,
        now: OffsetDateTime,
    ) -> Result<Attempt, Error> {
        let since = self.window_start(now);
        let known = self.store.is_known_source(email, &keys.source).await.map_err(Error::internal)?;
        let pair_applies = !known || scope == Scope::Reentry;
        let limits = self.limits.clone();
        let mut tripped = None;
        let decide = |c: FailureCounts| {
            tripped = if pair_applies && c.pair >= i64::from(limits.per_pair) {
                Some((ThrottleKey::Pair, limits.per_pair))
            } else if !known && c.source >= i64::from(limits.per_source) {
                Some((ThrottleKey::Source, limits.per_source))
            } else if !known && c.email >= i64::from(limits.per_email) {
                Some((ThrottleKey::Email, limits.per_email))
            } else {
                None
            };
            tripped.is_none()
        };
        let reserved = self
            .store
            .reserve_attempt(&keys.pair, &keys.email, &keys.source, since, now, decide)
            .await
            .map_err(Error::internal)?;
        if let Some(id) = reserved {
            return Ok(Attempt { id });
        }
        let (which, limit) = tripped.unwrap_or((ThrottleKey::Pair, self.limits.per_pair));
        let key = match which {
            ThrottleKey::Pair => &keys.pair,
            ThrottleKey::Email => &keys.email,
            ThrottleKey::Source => &keys.source,
        };
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

    /// The password was right: the attempt and the pair's failures are forgiven.
    pub async fn succeeded(&self, attempt: Attempt, keys: &Keys) -> Result<(), Error> {
        self.store.forgive(attempt.id, &keys.pair).await.map_err(Error::internal)
    }

    /// Deletes rows outside the window; returns how many.
    pub async fn sweep(&self, now: OffsetDateTime) -> Result<u64, sqlx::Error> {
        self.store.sweep_failures(self.window_start(now)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap_or(IpAddr::V4([0, 0, 0, 0].into()));
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap_or(IpAddr::V4([0, 0, 0, 0].into()));
        assert_eq!(source_label(Some(a)), source_label(Some(b)));
        assert_eq!(source_label(Some(a)), "2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:203.0.113.9".parse().unwrap_or(IpAddr::V4([0, 0, 0, 0].into()));
        assert_eq!(source_label(Some(mapped)), "203.0.113.9");
    }

    #[test]
    fn hashes_depend_on_the_key() {
        let k1 = HashKey::new(Zeroizing::new([1; 32]));
        let k2 = HashKey::new(Zeroizing::new([2; 32]));
        let ip = Some(IpAddr::V4([203, 0, 113, 1].into()));
        assert_ne!(k1.keys("a@b.c", ip).source, k2.keys("a@b.c", ip).source);
        assert_eq!(k1.keys("a@b.c", ip).pair, k1.keys("a@b.c", ip).pair);
        assert_ne!(k1.keys("a@b.c", ip).pair, k1.keys("x@b.c", ip).pair);
    }
}
