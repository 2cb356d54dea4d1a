//! The only paths of the vault that cross owners, on the system role
//! (`bizops_vault_system`, BYPASSRLS). Keep this module small and auditable:
//!
//! - key-check values of the KEKs (not per owner), checked at start-up;
//! - the minimum decryption version (a service-wide setting);
//! - key rotation: jobs, batches of wrapped keys across every owner;
//! - deleting all credentials of an owner (account deletion, called by identity).
//!
//! Nothing here reads or writes a value ciphertext: rotation touches wrapped data
//! keys only.

use bizops_authn::OwnerId;
use sqlx::{Connection as _, PgConnection, PgPool, Postgres, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

/// Advisory-lock key held (session-level) by the replica that works on a rotation
/// job: `"vaultrot"` in ASCII.
const ROTATION_LOCK: i64 = 0x7661_756c_7472_6f74;

/// A key-rotation job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    /// Job id.
    pub id: Uuid,
    /// `running`, `completed` or `failed`.
    pub state: String,
    /// KEK version data keys are rewrapped under.
    pub target_version: i32,
    /// Credentials per batch.
    pub batch_size: i32,
    /// The largest credential id that existed when the job started.
    pub upto_id: Option<Uuid>,
    /// The last credential id visited.
    pub cursor_id: Option<Uuid>,
    /// Credentials to visit.
    pub total: i64,
    /// Rewrapped or already under the target.
    pub done: i64,
    /// Could not be rewrapped.
    pub failed: i64,
    /// Why the job failed, if it did (no secrets).
    pub last_error: Option<String>,
    /// Started.
    pub started_at: OffsetDateTime,
    /// Finished.
    pub finished_at: Option<OffsetDateTime>,
}

/// One credential's wrapped key, as rotation needs it.
#[derive(Clone)]
pub struct WrappedRow {
    /// Credential id.
    pub id: Uuid,
    /// Owner.
    pub owner_id: Uuid,
    /// Name.
    pub name: String,
    /// Connector kind name.
    pub kind: String,
    /// Wrapped data key.
    pub wrapped_key: Vec<u8>,
    /// Its KEK version.
    pub kek_version: i32,
}

impl std::fmt::Debug for WrappedRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrappedRow")
            .field("id", &self.id)
            .field("kek_version", &self.kek_version)
            .finish_non_exhaustive()
    }
}

/// A rewrapped key to store if the row still holds `old`.
#[derive(Debug, Clone)]
pub struct Rewrap {
    /// Credential id.
    pub id: Uuid,
    /// The wrapped key read.
    pub old: Vec<u8>,
    /// The wrapped key under the target version.
    pub new: Vec<u8>,
}

/// What SetMinDecryptionVersion did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinVersion {
    /// Stored; `below` credentials are wrapped under a lower version.
    Set {
        /// Credentials wrapped under a lower version.
        below: i64,
    },
    /// Not stored: it would raise (or keep) the minimum above `below` credentials,
    /// and the caller did not force it.
    Refused {
        /// Credentials wrapped under a lower version.
        below: i64,
    },
}

/// The system-role store.
#[derive(Debug, Clone)]
pub struct SystemStore {
    pool: PgPool,
}

impl SystemStore {
    /// A store on `pool` (connected as `bizops_vault_system`).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Stores the key-check value of a KEK version unless one exists, and returns
    /// the stored one (the existing value when there was one).
    pub async fn key_check_value(&self, version: u32, value: &[u8]) -> Result<Vec<u8>, sqlx::Error> {
        let version = to_i32(version)?;
        sqlx::query!(
            "INSERT INTO vault.kek_checks (version, check_value) VALUES ($1, $2) ON CONFLICT (version) DO NOTHING",
            version,
            value
        )
        .execute(&self.pool)
        .await?;
        sqlx::query_scalar!("SELECT check_value FROM vault.kek_checks WHERE version = $1", version)
            .fetch_one(&self.pool)
            .await
    }

    /// How many credentials are wrapped under each KEK version.
    pub async fn version_census(&self) -> Result<Vec<(i32, i64)>, sqlx::Error> {
        let rows = sqlx::query!(
            "SELECT kek_version, count(*) AS \"n!\" FROM vault.credentials GROUP BY kek_version ORDER BY kek_version"
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.kek_version, r.n)).collect())
    }

    /// The minimum decryption version in force.
    pub async fn min_decryption_version(&self) -> Result<i32, sqlx::Error> {
        sqlx::query_scalar!("SELECT min_decryption_version FROM vault.settings").fetch_one(&self.pool).await
    }

    /// The highest KEK version any credential is wrapped under.
    pub async fn max_kek_version(&self) -> Result<Option<i32>, sqlx::Error> {
        sqlx::query_scalar!("SELECT max(kek_version) FROM vault.credentials").fetch_one(&self.pool).await
    }

    /// Sets the minimum decryption version, unless credentials are still wrapped
    /// under a lower version and `force` is false: then nothing changes. Lowering
    /// the minimum (an emergency) is always allowed.
    pub async fn set_min_decryption_version(
        &self,
        version: u32,
        force: bool,
    ) -> Result<MinVersion, sqlx::Error> {
        let version = to_i32(version)?;
        let mut tx = self.pool.begin().await?;
        // Serialises concurrent calls, so "lowering" is judged against the value in force.
        let current = sqlx::query_scalar!("SELECT min_decryption_version FROM vault.settings FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
        let below = sqlx::query_scalar!(
            "SELECT count(*) AS \"n!\" FROM vault.credentials WHERE kek_version < $1",
            version
        )
        .fetch_one(&mut *tx)
        .await?;
        if below > 0 && !force && version >= current {
            tx.rollback().await?;
            return Ok(MinVersion::Refused { below });
        }
        sqlx::query!("UPDATE vault.settings SET min_decryption_version = $1, updated_at = now()", version)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(MinVersion::Set { below })
    }

    /// Deletes every credential of `owner` (hard delete); returns how many.
    pub async fn delete_owner_data(&self, owner: OwnerId) -> Result<u64, sqlx::Error> {
        let done = sqlx::query!("DELETE FROM vault.credentials WHERE owner_id = $1", owner.as_uuid())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// The running rotation job, or a new one targeting `target`. The bool is true
    /// when the job was created by this call.
    pub async fn start_rotation(&self, target: u32, batch_size: u32) -> Result<(JobRow, bool), sqlx::Error> {
        let target = to_i32(target)?;
        let batch_size = to_i32(batch_size)?;
        // Two replicas may race to create a job; the unique index lets one win and
        // the other then finds it.
        for _ in 0..3 {
            if let Some(job) = self.running_job().await? {
                return Ok((job, false));
            }
            let mut tx = self.pool.begin().await?;
            let snapshot = sqlx::query!(
                "SELECT (SELECT id FROM vault.credentials ORDER BY id DESC LIMIT 1) AS upto,
                        (SELECT count(*) FROM vault.credentials) AS \"total!\""
            )
            .fetch_one(&mut *tx)
            .await?;
            let inserted = sqlx::query!(
                "INSERT INTO vault.rotation_jobs (id, state, target_version, batch_size, upto_id, total)
                 VALUES ($1, 'running', $2, $3, $4, $5)
                 ON CONFLICT DO NOTHING",
                Uuid::now_v7(),
                target,
                batch_size,
                snapshot.upto,
                snapshot.total,
            )
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            if inserted.rows_affected() == 1
                && let Some(job) = self.running_job().await?
            {
                return Ok((job, true));
            }
        }
        Err(sqlx::Error::Protocol("could not create or find a running rotation job".into()))
    }

    /// A rotation job.
    pub async fn job(&self, id: Uuid) -> Result<Option<JobRow>, sqlx::Error> {
        sqlx::query_as!(
            JobRow,
            "SELECT id, state, target_version, batch_size, upto_id, cursor_id, total, done, failed, last_error,
                    started_at, finished_at
             FROM vault.rotation_jobs WHERE id = $1",
            id
        )
        .fetch_optional(&self.pool)
        .await
    }

    /// The running rotation job, if any.
    pub async fn running_job(&self) -> Result<Option<JobRow>, sqlx::Error> {
        sqlx::query_as!(
            JobRow,
            "SELECT id, state, target_version, batch_size, upto_id, cursor_id, total, done, failed, last_error,
                    started_at, finished_at
             FROM vault.rotation_jobs WHERE state = 'running'"
        )
        .fetch_optional(&self.pool)
        .await
    }

    /// A connection holding the rotation lock, or `None` when another replica holds
    /// it. The connection is detached from the pool: dropping it (even on a panic or
    /// a cancelled task) closes it and so releases the lock.
    pub async fn lock_rotation(&self) -> Result<Option<PgConnection>, sqlx::Error> {
        let mut conn = self.pool.acquire().await?.detach();
        let locked = sqlx::query_scalar!("SELECT pg_try_advisory_lock($1) AS \"locked!\"", ROTATION_LOCK)
            .fetch_one(&mut conn)
            .await?;
        if locked {
            Ok(Some(conn))
        } else {
            conn.close().await.ok();
            Ok(None)
        }
    }

    /// Releases the rotation lock and closes its connection.
    pub async fn unlock_rotation(&self, mut conn: PgConnection) {
        let _ =
            sqlx::query_scalar!("SELECT pg_advisory_unlock($1)", ROTATION_LOCK).fetch_one(&mut conn).await;
        conn.close().await.ok();
    }

    /// The next batch of a job: credentials after its cursor, up to the snapshot.
    pub async fn rotation_batch(
        &self,
        conn: &mut PgConnection,
        job: &JobRow,
    ) -> Result<Vec<WrappedRow>, sqlx::Error> {
        sqlx::query_as!(
            WrappedRow,
            "SELECT id, owner_id, name, kind, wrapped_key, kek_version FROM vault.credentials
             WHERE ($1::uuid IS NULL OR id > $1) AND id <= $2
             ORDER BY id LIMIT $3",
            job.cursor_id,
            job.upto_id,
            i64::from(job.batch_size),
        )
        .fetch_all(conn)
        .await
    }

    /// Opens the transaction of one batch, locking the job's row; `None` (nothing
    /// open) when the job is no longer running. The batch's rewrapped keys and the
    /// job's progress and cursor are written in this transaction, so a batch is
    /// applied whole or not at all, wherever the worker stops.
    pub async fn begin_batch<'c>(
        &self,
        conn: &'c mut PgConnection,
        job: Uuid,
    ) -> Result<Option<Transaction<'c, Postgres>>, sqlx::Error> {
        let mut tx = conn.begin().await?;
        let state =
            sqlx::query_scalar!("SELECT state FROM vault.rotation_jobs WHERE id = $1 FOR UPDATE", job)
                .fetch_optional(&mut *tx)
                .await?;
        if state.as_deref() != Some("running") {
            tx.rollback().await?;
            return Ok(None);
        }
        Ok(Some(tx))
    }

    /// Stores rewrapped keys under `target` where each row still holds the wrapped
    /// key that was read (compare-and-swap); returns the ids written.
    pub async fn swap_wrapped_keys(
        &self,
        tx: &mut PgConnection,
        rewraps: &[Rewrap],
        target: i32,
    ) -> Result<Vec<Uuid>, sqlx::Error> {
        if rewraps.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = rewraps.iter().map(|r| r.id).collect();
        let olds: Vec<Vec<u8>> = rewraps.iter().map(|r| r.old.clone()).collect();
        let news: Vec<Vec<u8>> = rewraps.iter().map(|r| r.new.clone()).collect();
        sqlx::query_scalar!(
            "UPDATE vault.credentials c SET wrapped_key = u.new, kek_version = $4
             FROM unnest($1::uuid[], $2::bytea[], $3::bytea[]) AS u(id, old, new)
             WHERE c.id = u.id AND c.wrapped_key = u.old
             RETURNING c.id",
            &ids,
            &olds,
            &news,
            target,
        )
        .fetch_all(tx)
        .await
    }

    /// Re-reads credentials whose wrapped key changed since the batch read them,
    /// locking them until the batch's transaction ends. Deleted ones are missing.
    pub async fn lock_wrapped(
        &self,
        tx: &mut PgConnection,
        ids: &[Uuid],
    ) -> Result<Vec<WrappedRow>, sqlx::Error> {
        sqlx::query_as!(
            WrappedRow,
            "SELECT id, owner_id, name, kind, wrapped_key, kek_version FROM vault.credentials
             WHERE id = ANY($1) ORDER BY id FOR UPDATE",
            ids
        )
        .fetch_all(tx)
        .await
    }

    /// Records a batch in the job: its cursor and counts.
    pub async fn record_batch(
        &self,
        tx: &mut PgConnection,
        job: Uuid,
        cursor: Uuid,
        done: i64,
        failed: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "UPDATE vault.rotation_jobs
             SET cursor_id = $2, done = done + $3, failed = failed + $4, updated_at = now()
             WHERE id = $1",
            job,
            cursor,
            done,
            failed
        )
        .execute(tx)
        .await?;
        Ok(())
    }

    /// Marks a job completed. Credentials deleted while it ran were never visited,
    /// so the total becomes what was visited.
    pub async fn finish_rotation(&self, conn: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "UPDATE vault.rotation_jobs
             SET state = 'completed', total = done + failed, finished_at = now(), updated_at = now()
             WHERE id = $1 AND state = 'running'",
            id
        )
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Marks a job failed with a reason (no secrets); a new StartKeyRotation starts over.
    pub async fn fail_rotation(&self, id: Uuid, reason: &str) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "UPDATE vault.rotation_jobs
             SET state = 'failed', last_error = $2, finished_at = now(), updated_at = now()
             WHERE id = $1 AND state = 'running'",
            id,
            reason
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

fn to_i32(v: u32) -> Result<i32, sqlx::Error> {
    i32::try_from(v).map_err(|_| sqlx::Error::Protocol(format!("{v} is out of range")))
}
