//! The only paths of identity that cross owners, on the system role
//! (`bizops_identity_system`, BYPASSRLS). Keep this module small and auditable:
//!
//! - sign-in lookup by email (no owner is known before the password is checked);
//! - the failed-login throttle, keyed by hashes of email and source address;
//! - sweeping throttle rows older than the window, and expired or idle sessions;
//! - forgetting throttle rows of a deleted account's email.

use bizops_authn::OwnerId;
use sqlx::PgPool;
use time::OffsetDateTime;

/// What sign-in needs to know about an email.
#[derive(Clone)]
pub struct LoginRecord {
    /// The account.
    pub owner: OwnerId,
    /// Its scrypt PHC string.
    pub password_hash: String,
}

/// Failure counts in the throttle window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FailureCounts {
    /// For this (email, source) pair.
    pub pair: i64,
    /// For this email, from anywhere.
    pub email: i64,
    /// From this source, for any email.
    pub source: i64,
}

/// Which throttle key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleKey {
    /// (email, source)
    Pair,
    /// email
    Email,
    /// source
    Source,
}

/// The system-role store.
#[derive(Debug, Clone)]
pub struct SystemStore {
    pool: PgPool,
}

impl SystemStore {
    /// A store on `pool` (connected as `bizops_identity_system`).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The account with this normalised email, if any.
    pub async fn find_login(&self, email: &str) -> Result<Option<LoginRecord>, sqlx::Error> {
        let row = sqlx::query!("SELECT id, password_hash FROM identity.accounts WHERE email = $1", email)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| LoginRecord { owner: OwnerId(r.id), password_hash: r.password_hash }))
    }

    /// Whether the account with this email has signed in from `source_hash` before.
    pub async fn is_known_source(&self, email: &str, source_hash: &[u8]) -> Result<bool, sqlx::Error> {
        let row = sqlx::query_scalar!(
            "SELECT EXISTS (SELECT 1 FROM identity.known_sources k JOIN identity.accounts a ON a.id = k.owner_id
                            WHERE a.email = $1 AND k.source_hash = $2) AS \"known!\"",
            email,
            source_hash
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row)
    }

    /// Atomically checks the counts and, when `allow` accepts them, records this
    /// attempt as a failure *before* the password is checked; returns the row id
    /// (deleted again by [`SystemStore::forgive`] when the password was right).
    /// Advisory locks on the three keys serialise concurrent attempts, so parallel
    /// guesses cannot all slip under a limit before any of them is counted.
    pub async fn reserve_attempt(
        &self,
        pair: &[u8],
        email: &[u8],
        source: &[u8],
        since: OffsetDateTime,
        at: OffsetDateTime,
        allow: impl FnOnce(FailureCounts) -> bool,
    ) -> Result<Option<i64>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let mut locks = [lock_id(pair), lock_id(email), lock_id(source)];
        locks.sort_unstable();
        for id in locks {
            sqlx::query!("SELECT pg_advisory_xact_lock($1)", id).fetch_one(&mut *tx).await?;
        }
        let counts = failure_counts(&mut *tx, pair, email, source, since).await?;
        if !allow(counts) {
            tx.rollback().await?;
            return Ok(None);
        }
        let id = sqlx::query_scalar!(
            "INSERT INTO identity.login_failures (pair_key, email_key, source_key, failed_at)
             VALUES ($1, $2, $3, $4) RETURNING id",
            pair,
            email,
            source,
            at
        )
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(id))
    }

    /// The password was right: forgets the reserved attempt and the pair's failures.
    pub async fn forgive(&self, reservation: i64, pair: &[u8]) -> Result<(), sqlx::Error> {
        sqlx::query!("DELETE FROM identity.login_failures WHERE id = $1 OR pair_key = $2", reservation, pair)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The time of the `nth` newest failure (1-based) for a key since `since`: once
    /// it leaves the window, the count drops below `nth`.
    pub async fn nth_newest_failure(
        &self,
        which: ThrottleKey,
        key: &[u8],
        nth: i64,
        since: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, sqlx::Error> {
        let offset = (nth - 1).max(0);
        let at = match which {
            ThrottleKey::Pair => {
                sqlx::query_scalar!(
                    "SELECT failed_at FROM identity.login_failures WHERE pair_key = $1 AND failed_at > $2
                 ORDER BY failed_at DESC OFFSET $3 LIMIT 1",
                    key,
                    since,
                    offset
                )
                .fetch_optional(&self.pool)
                .await?
            }
            ThrottleKey::Email => {
                sqlx::query_scalar!(
                    "SELECT failed_at FROM identity.login_failures WHERE email_key = $1 AND failed_at > $2
                 ORDER BY failed_at DESC OFFSET $3 LIMIT 1",
                    key,
                    since,
                    offset
                )
                .fetch_optional(&self.pool)
                .await?
            }
            ThrottleKey::Source => {
                sqlx::query_scalar!(
                    "SELECT failed_at FROM identity.login_failures WHERE source_key = $1 AND failed_at > $2
                 ORDER BY failed_at DESC OFFSET $3 LIMIT 1",
                    key,
                    since,
                    offset
                )
                .fetch_optional(&self.pool)
                .await?
            }
        };
        Ok(at)
    }

    /// Forgets every failure recorded for an email (account deletion).
    pub async fn forget_email(&self, email: &[u8]) -> Result<u64, sqlx::Error> {
        let done = sqlx::query!("DELETE FROM identity.login_failures WHERE email_key = $1", email)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Ends sessions past their absolute expiry or idle since before `idle_before`.
    pub async fn sweep_sessions(
        &self,
        now: OffsetDateTime,
        idle_before: OffsetDateTime,
    ) -> Result<u64, sqlx::Error> {
        let done = sqlx::query!(
            "DELETE FROM identity.sessions WHERE expires_at <= $1 OR last_seen_at < $2",
            now,
            idle_before
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Deletes failures older than `before` (outside every window).
    pub async fn sweep_failures(&self, before: OffsetDateTime) -> Result<u64, sqlx::Error> {
        let done = sqlx::query!("DELETE FROM identity.login_failures WHERE failed_at < $1", before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

/// Counts failures per key since `since`.
async fn failure_counts<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    pair: &[u8],
    email: &[u8],
    source: &[u8],
    since: OffsetDateTime,
) -> Result<FailureCounts, sqlx::Error> {
    let r = sqlx::query!(
        "SELECT count(*) FILTER (WHERE pair_key = $1) AS \"pair!\",
                count(*) FILTER (WHERE email_key = $2) AS \"email!\",
                count(*) FILTER (WHERE source_key = $3) AS \"source!\"
         FROM identity.login_failures
         WHERE failed_at > $4 AND (pair_key = $1 OR email_key = $2 OR source_key = $3)",
        pair,
        email,
        source,
        since
    )
    .fetch_one(executor)
    .await?;
    Ok(FailureCounts { pair: r.pair, email: r.email, source: r.source })
}

/// An advisory-lock id for a throttle key (its first 8 bytes).
fn lock_id(key: &[u8]) -> i64 {
    let mut b = [0u8; 8];
    for (dst, src) in b.iter_mut().zip(key) {
        *dst = *src;
    }
    i64::from_be_bytes(b)
}
