//! Passwords: the policy for new ones (length, zxcvbn score) and scrypt hashing.
//!
//! Hashing runs on the blocking pool behind a semaphore sized to the core count, so
//! a login burst queues instead of allocating one scrypt working set (128 MiB at
//! production parameters) per request. A login for an unknown email verifies
//! against a dummy hash made with the same parameters, so it costs the same time.

use std::{sync::Arc, time::Instant};

use bizops_errors::{Error, ErrorCode};
use scrypt::{
    Params, Scrypt,
    password_hash::{PasswordHasher as _, PasswordVerifier as _, phc::PasswordHash},
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

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

/// scrypt hashing with bounded concurrency.
pub struct Hasher {
    params: Params,
    permits: Arc<Semaphore>,
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
        let permits = match cfg.max_concurrent {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            n => n,
        };
        let mut hasher = Self { params, permits: Arc::new(Semaphore::new(permits)), dummy: String::new() };
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
        let permit = self.permits.clone().acquire_owned().await.map_err(Error::internal)?;
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
        let cheap = ScryptConfig { log_n: 4, r: 8, p: 1, max_concurrent: 2 };
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
    fn production_defaults_are_owasp() {
        let d = ScryptConfig::default();
        assert!(d.log_n >= 17 && d.r >= 8 && d.p >= 1);
    }
}
