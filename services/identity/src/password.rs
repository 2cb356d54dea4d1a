//! Passwords: the policy for new ones (length, zxcvbn score) and scrypt hashing.
//!
//! Hashing runs on the blocking pool behind a [`Gate`]: as many hashes at once as
//! the service's memory holds scrypt working sets (128 MiB each at production
//! parameters; at most one per core), a bounded number waiting, and UNAVAILABLE
//! beyond — so a login flood can neither OOM-kill the service nor queue without
//! end. A login for an unknown email verifies against a dummy hash made with the
//! same parameters, so it costs the same time.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use bizops_errors::{Error, ErrorCode};
use scrypt::{
    Params, Scrypt,
    password_hash::{PasswordHasher as _, PasswordVerifier as _, phc::PasswordHash},
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{config::ScryptConfig, email::Email};

/// Shortest accepted password, in characters.
pub const MIN_LEN: usize = 12;
/// Longest accepted password, in characters.
pub const MAX_LEN: usize = 1024;
/// Lowest accepted zxcvbn score (0–4).
pub const MIN_SCORE: u8 = 3;
/// zxcvbn looks at this many leading characters (its matching is superlinear;
/// anything longer that scores well on its first 100 characters is strong).
const SCORED_PREFIX: usize = 100;

/// Checks a new password: 12–1,024 characters and a zxcvbn score of at least 3,
/// judged against the email and display name. The error carries zxcvbn's feedback.
pub fn check_policy(password: &str, email: &Email, display_name: &str) -> Result<(), Error> {
    let len = password.chars().count();
    if len < MIN_LEN {
        return Err(Error::new(
            ErrorCode::WeakPassword,
            format!("password: must be at least {MIN_LEN} characters (it has {len})"),
        ));
    }
    if len > MAX_LEN {
        return Err(Error::new(
            ErrorCode::WeakPassword,
            format!("password: must be at most {MAX_LEN} characters"),
        ));
    }
    let scored: String = password.chars().take(SCORED_PREFIX).collect();
    let mut hints = vec![email.as_str(), email.local_part()];
    if !display_name.is_empty() {
        hints.push(display_name);
    }
    let entropy = zxcvbn::zxcvbn(&scored, &hints);
    let score = entropy.score() as u8;
    if score >= MIN_SCORE {
        return Ok(());
    }
    let mut message =
        format!("password: too easy to guess (strength {score} of 4, at least {MIN_SCORE} needed)");
    if let Some(feedback) = entropy.feedback() {
        if let Some(warning) = feedback.warning() {
            message.push_str(&format!(". {warning}"));
        }
        for suggestion in feedback.suggestions() {
            message.push_str(&format!(" {suggestion}"));
        }
    }
    Err(Error::new(ErrorCode::WeakPassword, message))
}

/// Result of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The password matches.
    pub ok: bool,
    /// The hash uses other parameters than configured; rehash now.
    pub needs_upgrade: bool,
}

/// Memory kept for the service itself when sizing hash concurrency.
const RESERVED_MIB: u64 = 96;

/// Hashes at once and hashes waiting: a semaphore with a bounded queue.
#[derive(Debug)]
pub struct Gate {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
}

impl Gate {
    /// `concurrent` at once, `max_waiting` in line.
    pub fn new(concurrent: usize, max_waiting: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrent.max(1))),
            waiting: AtomicUsize::new(0),
            max_waiting,
        }
    }

    /// A turn, or UNAVAILABLE at once when the line is full.
    pub async fn enter(&self) -> Result<OwnedSemaphorePermit, Error> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let line = self.waiting.fetch_add(1, Ordering::SeqCst);
        struct Leave<'a>(&'a AtomicUsize);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _leave = Leave(&self.waiting);
        if line >= self.max_waiting {
            metrics::counter!("identity_password_hash_refused_total").increment(1);
            return Err(Error::new(
                ErrorCode::Unavailable,
                "too many sign-ins are being checked right now; try again in a few seconds",
            ));
        }
        self.permits.clone().acquire_owned().await.map_err(Error::internal)
    }

    /// Hashes waiting for a turn now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Hashes allowed at once.
    pub fn concurrent(&self) -> usize {
        self.permits.available_permits()
    }
}

/// How many hashes fit at once: the memory left after [`RESERVED_MIB`] over one
/// working set (128·r·N bytes), at least one, at most `cores`.
pub fn concurrency(cfg: &ScryptConfig, memory_mib: u64, cores: usize) -> usize {
    if cfg.max_concurrent > 0 {
        return cfg.max_concurrent;
    }
    let working_set = 128u64.saturating_mul(u64::from(cfg.r)).saturating_mul(1u64 << cfg.log_n.min(63));
    let budget = memory_mib.saturating_sub(RESERVED_MIB).saturating_mul(1024 * 1024);
    let fit = usize::try_from(budget / working_set.max(1)).unwrap_or(usize::MAX);
    fit.clamp(1, cores.max(1))
}

/// The memory this service may use: configured, else the cgroup's limit, else 512 MiB.
pub fn memory_mib(configured: u64) -> u64 {
    if configured > 0 {
        return configured;
    }
    std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|m| m.trim().parse::<u64>().ok())
        .map(|bytes| bytes / (1024 * 1024))
        .unwrap_or(512)
}

/// scrypt hashing with bounded concurrency.
pub struct Hasher {
    params: Params,
    gate: Gate,
    dummy: String,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("log_n", &self.params.log_n())
            .field("r", &self.params.r())
            .field("p", &self.params.p())
            .finish_non_exhaustive()
    }
}

impl Hasher {
    /// Validates the parameters and computes the dummy hash (one hash at start-up).
    pub async fn new(cfg: &ScryptConfig) -> anyhow::Result<Self> {
        let params = Params::new(cfg.log_n, cfg.r, cfg.p).map_err(|_| {
            anyhow::anyhow!("invalid scrypt parameters log_n={} r={} p={}", cfg.log_n, cfg.r, cfg.p)
        })?;
        let cores = std::thread::available_parallelism().map(std::num::NonZero::get).unwrap_or(2);
        let memory = memory_mib(cfg.memory_mib);
        let concurrent = concurrency(cfg, memory, cores);
        tracing::info!(concurrent, memory_mib = memory, max_waiting = cfg.max_waiting, "password hashing");
        let mut hasher = Self { params, gate: Gate::new(concurrent, cfg.max_waiting), dummy: String::new() };
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        hasher.dummy = hasher
            .hash(SecretString::from(base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                seed,
            )))
            .await
            .map_err(|e| anyhow::anyhow!("computing the dummy hash: {e}"))?;
        Ok(hasher)
    }

    /// A PHC string for `password` with a fresh random salt.
    pub async fn hash(&self, password: SecretString) -> Result<String, Error> {
        let params = self.params;
        self.blocking(move || {
            Scrypt::new_with_params(params)
                .hash_password(password.expose_secret().as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| Error::internal(format!("scrypt hash: {e}")))
        })
        .await
    }

    /// Checks `password` against `stored` (or against the dummy hash when the
    /// account does not exist, which always fails but costs the same).
    pub async fn verify(&self, password: SecretString, stored: Option<String>) -> Result<Verified, Error> {
        let (phc, real) = match stored {
            Some(s) => (s, true),
            None => (self.dummy.clone(), false),
        };
        let configured = self.params;
        self.blocking(move || {
            let hash = PasswordHash::new(&phc)
                .map_err(|e| Error::internal(format!("stored hash unreadable: {e}")))?;
            let stored_params = Params::try_from(&hash).ok();
            let ok = Scrypt::default().verify_password(password.expose_secret().as_bytes(), &hash).is_ok();
            let needs_upgrade = stored_params.is_none_or(|p| {
                (p.log_n(), p.r(), p.p()) != (configured.log_n(), configured.r(), configured.p())
            });
            Ok(Verified { ok: ok && real, needs_upgrade })
        })
        .await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let permit = self.gate.enter().await?;
        let started = Instant::now();
        let out = tokio::task::spawn_blocking(move || {
            let out = work();
            drop(permit);
            out
        })
        .await
        .map_err(Error::internal)?;
        metrics::histogram!("identity_password_hash_seconds").record(started.elapsed().as_secs_f64());
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn email() -> Email {
        Email::parse("ann.lee@example.com").unwrap()
    }

    #[test]
    fn policy_explains_what_is_wrong() {
        let e = check_policy("short", &email(), "").unwrap_err();
        assert_eq!(e.code(), ErrorCode::WeakPassword);
        assert!(e.message().contains("at least 12 characters"), "{}", e.message());

        let e = check_policy(&"x".repeat(1025), &email(), "").unwrap_err();
        assert!(e.message().contains("at most 1024"), "{}", e.message());

        let e = check_policy("password1234", &email(), "").unwrap_err();
        assert!(e.message().contains("too easy to guess"), "{}", e.message());

        // Built from the user's own email: weak for this user.
        let e = check_policy("ann.lee@example.com", &email(), "").unwrap_err();
        assert!(e.message().contains("too easy to guess"), "{}", e.message());

        // Long repetition is caught by scoring the prefix.
        assert!(check_policy(&"a".repeat(1024), &email(), "").is_err());

        assert!(check_policy("correct horse battery staple 42!", &email(), "").is_ok());
        assert!(check_policy(&format!("Tr0ub4dor&3-{}", "q".repeat(1000)), &email(), "").is_ok());
    }

    #[tokio::test]
    async fn hash_verify_and_upgrade() {
        let cheap = ScryptConfig { log_n: 4, r: 8, p: 1, max_concurrent: 2, ..ScryptConfig::default() };
        let hasher = Hasher::new(&cheap).await.unwrap();
        let phc = hasher.hash("correct horse battery staple".into()).await.unwrap();
        assert!(phc.starts_with("$scrypt$ln=4,r=8,p=1$"), "{phc}");
        let again = hasher.hash("correct horse battery staple".into()).await.unwrap();
        assert_ne!(phc, again, "per-hash random salt");

        let v = hasher.verify("correct horse battery staple".into(), Some(phc.clone())).await.unwrap();
        assert_eq!(v, Verified { ok: true, needs_upgrade: false });
        let v = hasher.verify("wrong".into(), Some(phc.clone())).await.unwrap();
        assert!(!v.ok);
        // Unknown account: the dummy never matches, whatever the password.
        assert!(!hasher.verify("anything".into(), None).await.unwrap().ok);

        let stronger = Hasher::new(&ScryptConfig { log_n: 5, ..cheap }).await.unwrap();
        let v = stronger.verify("correct horse battery staple".into(), Some(phc)).await.unwrap();
        assert_eq!(v, Verified { ok: true, needs_upgrade: true });
    }

    #[test]
    fn concurrency_follows_memory_not_cores() {
        let production = ScryptConfig::default();
        // 1 GiB container on a 64-core node: 7 working sets of 128 MiB fit, not 64.
        assert_eq!(concurrency(&production, 1024, 64), 7);
        assert_eq!(concurrency(&production, 1024, 2), 2, "never more than the cores");
        assert_eq!(concurrency(&production, 128, 8), 1, "always at least one");
        assert_eq!(concurrency(&ScryptConfig { max_concurrent: 3, ..production }, 1024, 64), 3);
        assert_eq!(memory_mib(300), 300);
    }

    #[tokio::test]
    async fn a_full_line_is_answered_unavailable_at_once() {
        let gate = Arc::new(Gate::new(1, 1));
        let held = gate.enter().await.unwrap();
        let queued = tokio::spawn({
            let gate = gate.clone();
            async move { gate.enter().await.map(drop) }
        });
        let seen = bizops_testkit::wait::Seen::new("one hash waiting");
        bizops_testkit::eventually(&seen, bizops_testkit::PATIENCE, || async {
            seen.saw(gate.waiting());
            (gate.waiting() == 1).then_some(())
        })
        .await;
        let refused = gate.enter().await.unwrap_err();
        assert_eq!(refused.code(), ErrorCode::Unavailable);
        assert_eq!(gate.waiting(), 1, "a refusal does not stay in line");
        drop(held);
        queued.await.unwrap().unwrap();
        assert_eq!(gate.waiting(), 0);
    }

    #[test]
    fn production_defaults_are_owasp() {
        let d = ScryptConfig::default();
        assert!(d.log_n >= 17 && d.r >= 8 && d.p >= 1);
    }
}
