//! The only cross-owner paths of pilot-catalog, on the system role
//! (`bizops_catalog_system`, BYPASSRLS). Keep this module small and auditable:
//!
//! - webhook lookup by Pilot id (one indexed query; the caller is the gateway);
//! - the enabled schedules of enabled Pilots (the executor's scheduler);
//! - one version of a Pilot for running it (the executor);
//! - deleting everything of an owner (account deletion);
//! - the outbox relay (publishing committed events, then deleting them).

use bizops_authn::OwnerId;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

/// What VerifyWebhook needs: one query.
#[derive(Debug, Clone)]
pub struct WebhookRecord {
    /// Owner of the Pilot.
    pub owner_id: Uuid,
    /// Current version.
    pub version: i64,
    /// Accepts triggers.
    pub enabled: bool,
    /// Secrets still valid: (key id, sealed, valid until — None for the current one).
    pub secrets: Vec<(String, Vec<u8>, Option<OffsetDateTime>)>,
}

/// An enabled schedule of an enabled Pilot.
#[derive(Debug, Clone)]
pub struct ScheduleRow {
    /// Pilot.
    pub pilot_id: Uuid,
    /// Schedule.
    pub id: Uuid,
    /// Owner.
    pub owner_id: Uuid,
    /// Cron expression.
    pub cron: String,
    /// IANA time zone.
    pub timezone: String,
    /// The Pilot's current version.
    pub version: i64,
}

/// A version for a run.
#[derive(Debug, Clone)]
pub struct RunVersion {
    /// Encoded `PilotSpec`.
    pub spec: Vec<u8>,
    /// Written.
    pub created_at: OffsetDateTime,
    /// Whether the Pilot is enabled now.
    pub enabled: bool,
}

/// A pending outbox event.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    /// Row id.
    pub id: i64,
    /// Subject.
    pub subject: String,
    /// `Nats-Msg-Id`.
    pub msg_id: String,
    /// Payload.
    pub payload: Vec<u8>,
}

/// The system-role store.
#[derive(Debug, Clone)]
pub struct SystemStore {
    pool: PgPool,
}

impl SystemStore {
    /// A store on `pool` (connected as `bizops_catalog_system`).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The Pilot's owner, version, state and valid secrets; `None` if it does not exist.
    pub async fn webhook(
        &self,
        pilot: Uuid,
        now: OffsetDateTime,
    ) -> Result<Option<WebhookRecord>, sqlx::Error> {
        let rows = sqlx::query!(
            "SELECT p.owner_id, p.current_version, p.enabled, s.key_id AS \"key_id?\", s.ciphertext AS \"ciphertext?\",
                    s.valid_until
             FROM catalog.pilots p
             LEFT JOIN catalog.webhook_secrets s
                    ON s.pilot_id = p.id AND (s.valid_until IS NULL OR s.valid_until > $2)
             WHERE p.id = $1",
            pilot,
            now,
        )
        .fetch_all(&self.pool)
        .await?;
        let Some(first) = rows.first() else { return Ok(None) };
        let mut record = WebhookRecord {
            owner_id: first.owner_id,
            version: first.current_version,
            enabled: first.enabled,
            secrets: Vec::new(),
        };
        for r in rows {
            if let (Some(key_id), Some(ct)) = (r.key_id, r.ciphertext) {
                record.secrets.push((key_id, ct, r.valid_until));
            }
        }
        Ok(Some(record))
    }

    /// Every enabled schedule of every enabled Pilot.
    pub async fn schedules(&self) -> Result<Vec<ScheduleRow>, sqlx::Error> {
        sqlx::query_as!(
            ScheduleRow,
            "SELECT s.pilot_id, s.id, s.owner_id, s.cron, s.timezone, p.current_version AS version
             FROM catalog.schedules s JOIN catalog.pilots p ON p.id = s.pilot_id
             WHERE s.enabled AND p.enabled
             ORDER BY s.pilot_id, s.id"
        )
        .fetch_all(&self.pool)
        .await
    }

    /// One version of a Pilot, if it exists and belongs to `owner`.
    pub async fn version_for_run(
        &self,
        owner: OwnerId,
        pilot: Uuid,
        version: i64,
    ) -> Result<Option<RunVersion>, sqlx::Error> {
        sqlx::query_as!(
            RunVersion,
            "SELECT v.spec, v.created_at, p.enabled
             FROM catalog.pilot_versions v JOIN catalog.pilots p ON p.id = v.pilot_id
             WHERE v.pilot_id = $1 AND v.version = $2 AND p.owner_id = $3",
            pilot,
            version,
            owner.as_uuid(),
        )
        .fetch_optional(&self.pool)
        .await
    }

    /// Deletes every Pilot of `owner` (versions, schedules and secrets go with
    /// them) and the owner's pending outbox events. Returns the Pilots deleted.
    pub async fn delete_owner(&self, owner: OwnerId) -> Result<u64, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let pilots = sqlx::query!("DELETE FROM catalog.pilots WHERE owner_id = $1", owner.as_uuid())
            .execute(&mut *tx)
            .await?;
        sqlx::query!("DELETE FROM catalog.outbox WHERE owner_id = $1", owner.as_uuid())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(pilots.rows_affected())
    }

    /// The oldest outbox events that are due (new, or past their retry backoff).
    pub async fn outbox(&self, limit: i64) -> Result<Vec<OutboxRow>, sqlx::Error> {
        sqlx::query_as!(
            OutboxRow,
            "SELECT id, subject, msg_id, payload FROM catalog.outbox
             WHERE next_attempt_at <= now() ORDER BY id LIMIT $1",
            limit
        )
        .fetch_all(&self.pool)
        .await
    }

    /// Postpones an event that failed to publish (exponential backoff, ≤ 5 min).
    pub async fn outbox_retry_later(&self, id: i64) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "UPDATE catalog.outbox SET attempts = attempts + 1,
                    next_attempt_at = now() + least(interval '5 minutes', interval '1 second' * power(2, attempts))
             WHERE id = $1",
            id
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Checks each configured key against the check value stored for its id (and
    /// stores it for a new id). Returns the ids whose stored value differs.
    pub async fn verify_key_checks(&self, checks: &[(String, Vec<u8>)]) -> Result<Vec<String>, sqlx::Error> {
        let mut mismatched = Vec::new();
        for (id, check) in checks {
            sqlx::query!(
                "INSERT INTO catalog.webhook_key_checks (key_id, check_value) VALUES ($1, $2)
                 ON CONFLICT (key_id) DO NOTHING",
                id,
                check,
            )
            .execute(&self.pool)
            .await?;
            let stored = sqlx::query_scalar!(
                "SELECT check_value FROM catalog.webhook_key_checks WHERE key_id = $1",
                id
            )
            .fetch_one(&self.pool)
            .await?;
            if stored != *check {
                mismatched.push(id.clone());
            }
        }
        Ok(mismatched)
    }

    /// Key ids that stored webhook secrets use, with how many secrets each.
    pub async fn secret_key_ids(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        Ok(sqlx::query!("SELECT key_id, count(*) AS \"n!\" FROM catalog.webhook_secrets GROUP BY key_id")
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| (r.key_id, r.n))
            .collect())
    }

    /// Removes published events.
    pub async fn outbox_done(&self, ids: &[i64]) -> Result<(), sqlx::Error> {
        sqlx::query!("DELETE FROM catalog.outbox WHERE id = ANY($1)", ids).execute(&self.pool).await?;
        Ok(())
    }
}
