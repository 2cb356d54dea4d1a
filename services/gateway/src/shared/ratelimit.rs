//! Rate limits (governor, in memory per replica): sign-in per client address and
//! per email, API per session, webhooks per Pilot and per client address, and
//! invalid session cookies per client address. A refused request gets 429 with
//! `Retry-After`.

use std::{
    collections::HashMap,
    hash::Hash,
    net::{IpAddr, Ipv6Addr},
    num::NonZeroU32,
    sync::Mutex,
    time::{Duration, Instant},
};

use governor::{DefaultKeyedRateLimiter, Quota, clock::Clock as _};
use uuid::Uuid;

use crate::config::{Rate, RateLimitsConfig};

/// One keyed limit; `None` inside when turned off.
pub struct Limiter<K: Hash + Eq + Clone> {
    inner: Option<DefaultKeyedRateLimiter<K>>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// A limiter for `rate` (off when `per_minute` is 0).
    pub fn new(rate: Rate) -> Self {
        let inner = NonZeroU32::new(rate.per_minute).and_then(|per_minute| {
            let period = Duration::from_secs(60) / per_minute.get();
            let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
            Quota::with_period(period).map(|q| DefaultKeyedRateLimiter::keyed(q.allow_burst(burst)))
        });
        Self { inner }
    }

    /// Takes one request for `key`; `Err(wait)` when over the limit.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let Some(limiter) = &self.inner else { return Ok(()) };
        limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(governor::clock::DefaultClock::default().now()))
    }

    fn prune(&self) {
        if let Some(limiter) = &self.inner {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// A budget of failures per key: each failure takes one; once it is used up the
/// key is refused (before any work is done for it) until the budget would allow
/// one again. Unlike [`Limiter`], successes cost nothing.
pub struct FailureBudget<K: Hash + Eq + Clone> {
    limiter: Limiter<K>,
    blocked: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq + Clone> FailureBudget<K> {
    /// A budget of `rate` failures (off when `per_minute` is 0).
    pub fn new(rate: Rate) -> Self {
        Self { limiter: Limiter::new(rate), blocked: Mutex::default() }
    }

    /// `Some(wait)` while `key` has used up its budget.
    pub fn blocked(&self, key: &K) -> Option<Duration> {
        let now = Instant::now();
        self.lock().get(key).filter(|until| **until > now).map(|until| *until - now)
    }

    /// Records a failure of `key`.
    pub fn charge(&self, key: &K) {
        if let Err(wait) = self.limiter.check(key) {
            self.lock().insert(key.clone(), Instant::now() + wait);
        }
    }

    fn prune(&self) {
        self.limiter.prune();
        let now = Instant::now();
        self.lock().retain(|_, until| *until > now);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Instant>> {
        match self.blocked.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

/// Every limit of the gateway.
pub struct RateLimits {
    /// Sign-in and sign-up attempts per client network.
    pub login_per_source: Limiter<IpAddr>,
    /// Requests per session.
    pub api_per_session: Limiter<Uuid>,
    /// Webhooks per Pilot.
    pub webhook_per_pilot: Limiter<Uuid>,
    /// Webhooks per client network.
    pub webhook_per_source: Limiter<IpAddr>,
    /// Session cookies identity refused, per client network: random cookies
    /// cannot make the gateway call identity without bound.
    pub invalid_session_per_source: FailureBudget<IpAddr>,
}

impl RateLimits {
    /// Limiters for the configured rates.
    pub fn new(config: &RateLimitsConfig) -> Self {
        Self {
            login_per_source: Limiter::new(config.login_per_source),
            api_per_session: Limiter::new(config.api_per_session),
            webhook_per_pilot: Limiter::new(config.webhook_per_pilot),
            webhook_per_source: Limiter::new(config.webhook_per_source),
            invalid_session_per_source: FailureBudget::new(config.invalid_session_per_source),
        }
    }

    /// Forgets keys whose limit has fully recovered (called periodically).
    pub fn prune(&self) {
        self.login_per_source.prune();
        self.api_per_session.prune();
        self.webhook_per_pilot.prune();
        self.webhook_per_source.prune();
        self.invalid_session_per_source.prune();
    }
}

/// The key of a client address: IPv4 as is, IPv6 by its /64 (one subscriber's
/// prefix), so rotating through a prefix does not multiply the allowance.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bursts_then_refuses_with_a_wait() {
        let l: Limiter<u8> = Limiter::new(Rate::new(60, 3));
        for _ in 0..3 {
            assert!(l.check(&1).is_ok());
        }
        let wait = l.check(&1).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(l.check(&2).is_ok(), "other keys are independent");
    }

    #[test]
    fn a_failure_budget_blocks_only_after_its_failures() {
        let b: FailureBudget<u8> = FailureBudget::new(Rate::new(60, 2));
        assert!(b.blocked(&1).is_none());
        b.charge(&1);
        b.charge(&1);
        assert!(b.blocked(&1).is_none(), "the burst is allowed");
        b.charge(&1);
        let wait = b.blocked(&1).unwrap();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(b.blocked(&2).is_none(), "other keys are independent");
        let off: FailureBudget<u8> = FailureBudget::new(Rate::new(0, 0));
        for _ in 0..100 {
            off.charge(&1);
        }
        assert!(off.blocked(&1).is_none());
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let l: Limiter<u8> = Limiter::new(Rate::new(0, 0));
        for _ in 0..1000 {
            assert!(l.check(&1).is_ok());
        }
    }

    #[test]
    fn ipv6_is_keyed_by_its_64_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_key(a), source_key(b));
        assert_ne!(source_key(a), source_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(source_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }
}
