//! The only paths of identity that cross owners, on the system role
//! (`bizops_identity_system`, BYPASSRLS). Keep this module small and auditable:
//!
//! - sign-in lookup by email (no owner is known before the password is checked);
//! - the failed-login throttle, keyed by hashes of email and source address;
//! - sweeping throttle rows older than the window, and expired or idle sessions;
//! - forgetting throttle rows of a deleted account's email;
//! - account deletions in progress (the record, the steps, the final delete).

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

    /// Takes the lock on `owner`'s deletion, so one runner at a time (the request,
    /// the background loop, another replica) works on it; `None` when another
    /// runner holds it. The lock is a session advisory lock on a connection that
    /// is closed (not returned to the pool) when the guard drops, so even a
    /// cancelled task never leaves it held.
    pub async fn try_lock_deletion(&self, owner: OwnerId) -> Result<Option<DeletionLock>, sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        conn.close_on_drop();
        let key = deletion_lock_key(owner);
        let locked = sqlx::query_scalar!("SELECT pg_try_advisory_lock($1) AS \"locked!\"", key)
            .fetch_one(&mut *conn)
            .await?;
        Ok(locked.then_some(DeletionLock { _conn: conn }))
    }

    /// Records that `owner`'s deletion has begun (idempotent); sign-in is refused
    /// from now on.
    pub async fn begin_deletion(&self, owner: OwnerId, email: &str) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "INSERT INTO identity.account_deletions (owner_id, email) VALUES ($1, $2) ON CONFLICT (owner_id) DO NOTHING",
            owner.as_uuid(),
            email
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The step a deletion reached and the account's email, if one is in progress.
    pub async fn deletion(&self, owner: OwnerId) -> Result<Option<(i16, String)>, sqlx::Error> {
        Ok(sqlx::query!(
            "SELECT step, email FROM identity.account_deletions WHERE owner_id = $1",
            owner.as_uuid()
        )
        .fetch_optional(&self.pool)
        .await?
        .map(|r| (r.step, r.email)))
    }

    /// Whether the account with this email is being deleted.
    pub async fn is_deleting(&self, owner: OwnerId) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar!(
            "SELECT EXISTS (SELECT 1 FROM identity.account_deletions WHERE owner_id = $1) AS \"e!\"",
            owner.as_uuid()
        )
        .fetch_one(&self.pool)
        .await
    }

    /// Records a finished step.
    pub async fn advance_deletion(&self, owner: OwnerId, step: i16) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "UPDATE identity.account_deletions SET step = GREATEST(step, $2), last_error = NULL, updated_at = now()
             WHERE owner_id = $1",
            owner.as_uuid(),
            step
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a failed attempt (the background loop retries).
    pub async fn deletion_failed(&self, owner: OwnerId, error: &str) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "UPDATE identity.account_deletions SET attempts = attempts + 1, last_error = $2, updated_at = now()
             WHERE owner_id = $1",
            owner.as_uuid(),
            error
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletions not finished yet.
    pub async fn pending_deletions(&self) -> Result<Vec<OwnerId>, sqlx::Error> {
        Ok(sqlx::query_scalar!("SELECT owner_id FROM identity.account_deletions ORDER BY started_at")
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(OwnerId)
            .collect())
    }

    /// Ends every session of an owner.
    pub async fn revoke_sessions(&self, owner: OwnerId) -> Result<u64, sqlx::Error> {
        let done = sqlx::query!("DELETE FROM identity.sessions WHERE owner_id = $1", owner.as_uuid())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// The last step: the account's own rows, its throttle rows and the deletion
    /// record itself, in one transaction.
    pub async fn finish_deletion(&self, owner: OwnerId, email_key: &[u8]) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query!("DELETE FROM identity.sessions WHERE owner_id = $1", owner.as_uuid())
            .execute(&mut *tx)
            .await?;
        sqlx::query!("DELETE FROM identity.known_sources WHERE owner_id = $1", owner.as_uuid())
            .execute(&mut *tx)
            .await?;
        sqlx::query!("DELETE FROM identity.accounts WHERE id = $1", owner.as_uuid())
            .execute(&mut *tx)
            .await?;
        sqlx::query!("DELETE FROM identity.login_failures WHERE email_key = $1", email_key)
            .execute(&mut *tx)
            .await?;
        sqlx::query!("DELETE FROM identity.account_deletions WHERE owner_id = $1", owner.as_uuid())
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }
}

/// Holds the lock on one account's deletion until dropped.
pub struct DeletionLock {
    _conn: sqlx::pool::PoolConnection<sqlx::Postgres>,
}

/// The advisory-lock key of an owner's deletion (a collision only serialises two
/// deletions).
fn deletion_lock_key(owner: OwnerId) -> i64 {
    let bytes = owner.as_uuid().as_u128();
    ((bytes >> 64) as u64 ^ bytes as u64) as i64
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
