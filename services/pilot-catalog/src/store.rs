//! Owner-scoped storage of Pilots. Every method runs in one transaction that sets
//! `app.owner_id`, as the service role (NOBYPASSRLS): row-level security makes
//! another owner's Pilot invisible (NOT_FOUND). Cross-owner paths are in `system.rs`.

use std::future::Future;

use bizops_authn::OwnerId;
use bizops_proto::catalog::v1 as pb;
use prost::Message as _;
use sqlx::{PgPool, Postgres, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such Pilot for this owner.
    #[error("pilot not found")]
    NotFound,
    /// The caller edited an older version.
    #[error("stale version: current is {current}")]
    Stale {
        /// The current version.
        current: i64,
    },
    /// The owner has the maximum number of Pilots.
    #[error("pilot limit reached")]
    LimitReached {
        /// The limit.
        max: u32,
    },
    /// The owner's Pilots would have more schedules than allowed.
    #[error("schedule limit reached")]
    ScheduleLimit {
        /// The limit.
        max: u32,
    },
    /// Stored content that does not decode (a bug or corruption).
    #[error("stored pilot version does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
    /// Anything else from the database.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<StoreError> for bizops_errors::Error {
    fn from(e: StoreError) -> Self {
        use bizops_errors::{Error, ErrorCode};
        match e {
            StoreError::NotFound => Error::not_found("pilot"),
            StoreError::Stale { current } => Error::new(
                ErrorCode::StaleVersion,
                format!(
                    "expected_version: the Pilot was changed since (current version is {current}); reload and save again"
                ),
            ),
            StoreError::LimitReached { max } => Error::new(
                ErrorCode::LimitExceeded,
                format!("an account can have at most {max} Pilots; delete one first"),
            ),
            StoreError::ScheduleLimit { max } => Error::new(
                ErrorCode::LimitExceeded,
                format!("an account can have at most {max} schedules over all its Pilots; remove one first"),
            )
            .with_field("schedules", format!("at most {max} schedules per account")),
            StoreError::Decode(e) => Error::internal(e),
            StoreError::Db(e) => Error::internal(e),
        }
    }
}

/// A Pilot at its current version.
#[derive(Debug, Clone, PartialEq)]
pub struct PilotRow {
    /// Pilot id.
    pub id: Uuid,
    /// Owner.
    pub owner_id: Uuid,
    /// Current version.
    pub version: i64,
    /// Content of the current version.
    pub spec: pb::PilotSpec,
    /// Accepts triggers.
    pub enabled: bool,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Current version written.
    pub updated_at: OffsetDateTime,
    /// Webhook secret last issued.
    pub webhook_secret_issued_at: OffsetDateTime,
}

/// One immutable version.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionRow {
    /// Version number.
    pub version: i64,
    /// Title at that version.
    pub title: String,
    /// Steps at that version.
    pub step_count: i32,
    /// Content (GetVersion only; empty in listings).
    pub spec: Option<pb::PilotSpec>,
    /// Written.
    pub created_at: OffsetDateTime,
}

/// A webhook secret, encrypted.
#[derive(Debug, Clone)]
pub struct SealedSecret {
    /// Row id.
    pub id: Uuid,
    /// Catalog key that encrypted it.
    pub key_id: String,
    /// nonce || ciphertext.
    pub ciphertext: Vec<u8>,
}

/// An event to publish after the transaction commits (outbox).
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    /// NATS subject.
    pub subject: String,
    /// `Nats-Msg-Id`.
    pub msg_id: String,
    /// Encoded protobuf.
    pub payload: Vec<u8>,
}

/// Owner-scoped storage of Pilots.
pub trait PilotStore: Send + Sync + 'static {
    /// Creates a Pilot (version 1) with its webhook secret; `LimitReached` when the
    /// owner already has `max_pilots`.
    fn create(
        &self,
        owner: OwnerId,
        spec: &pb::PilotSpec,
        enabled: bool,
        secret: &SealedSecret,
        pilot_id: Uuid,
        max_pilots: u32,
    ) -> impl Future<Output = Result<PilotRow, StoreError>> + Send;
    /// One Pilot.
    fn get(&self, owner: OwnerId, id: Uuid) -> impl Future<Output = Result<PilotRow, StoreError>> + Send;
    /// Pilots newest first, with ids below `before`.
    fn list(
        &self,
        owner: OwnerId,
        before: Option<Uuid>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<PilotRow>, StoreError>> + Send;
    /// Writes version `expected + 1`; `Stale` if the current version is not `expected`.
    fn update(
        &self,
        owner: OwnerId,
        id: Uuid,
        expected: i64,
        spec: &pb::PilotSpec,
    ) -> impl Future<Output = Result<PilotRow, StoreError>> + Send;
    /// Deletes a Pilot with everything it has, and queues `event` in the outbox.
    fn delete(
        &self,
        owner: OwnerId,
        id: Uuid,
        event: &OutboxEvent,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Enables or disables a Pilot.
    fn set_enabled(
        &self,
        owner: OwnerId,
        id: Uuid,
        enabled: bool,
    ) -> impl Future<Output = Result<PilotRow, StoreError>> + Send;
    /// Versions newest first, below `before`.
    fn list_versions(
        &self,
        owner: OwnerId,
        id: Uuid,
        before: Option<i64>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<VersionRow>, StoreError>> + Send;
    /// One version.
    fn get_version(
        &self,
        owner: OwnerId,
        id: Uuid,
        version: i64,
    ) -> impl Future<Output = Result<VersionRow, StoreError>> + Send;
    /// Replaces the webhook secret; the current one stays valid until `previous_valid_until`
    /// (an older previous one ends now).
    fn rotate_secret(
        &self,
        owner: OwnerId,
        id: Uuid,
        secret: &SealedSecret,
        previous_valid_until: OffsetDateTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The Postgres implementation, on the service role's pool.
#[derive(Debug, Clone)]
pub struct PgPilotStore {
    pool: PgPool,
    max_schedules: u32,
}

impl PgPilotStore {
    /// A store on `pool` (connected as `bizops_catalog`).
    pub fn new(pool: PgPool) -> Self {
        Self { pool, max_schedules: crate::config::LimitsConfig::default().max_schedules }
    }

    /// At most `max` schedules per owner, over all their Pilots.
    #[must_use]
    pub fn with_max_schedules(mut self, max: u32) -> Self {
        self.max_schedules = max;
        self
    }

    async fn scoped(&self, owner: OwnerId) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query!("SELECT set_config('app.owner_id', $1, true)", owner.to_string())
            .fetch_one(&mut *tx)
            .await?;
        Ok(tx)
    }
}

struct RawPilot {
    id: Uuid,
    owner_id: Uuid,
    current_version: i64,
    enabled: bool,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    webhook_secret_issued_at: OffsetDateTime,
    spec: Vec<u8>,
}

impl TryFrom<RawPilot> for PilotRow {
    type Error = StoreError;
    fn try_from(r: RawPilot) -> Result<Self, StoreError> {
        Ok(PilotRow {
            id: r.id,
            owner_id: r.owner_id,
            version: r.current_version,
            spec: pb::PilotSpec::decode(r.spec.as_slice())?,
            enabled: r.enabled,
            created_at: r.created_at,
            updated_at: r.updated_at,
            webhook_secret_issued_at: r.webhook_secret_issued_at,
        })
    }
}

async fn fetch_pilot(tx: &mut Transaction<'static, Postgres>, id: Uuid) -> Result<PilotRow, StoreError> {
    let raw = sqlx::query_as!(
        RawPilot,
        "SELECT p.id, p.owner_id, p.current_version, p.enabled, p.created_at, p.updated_at,
                p.webhook_secret_issued_at, v.spec
         FROM catalog.pilots p
         JOIN catalog.pilot_versions v ON v.pilot_id = p.id AND v.version = p.current_version
         WHERE p.id = $1",
        id
    )
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound)?;
    raw.try_into()
}

async fn insert_version(
    tx: &mut Transaction<'static, Postgres>,
    owner: OwnerId,
    id: Uuid,
    version: i64,
    spec: &pb::PilotSpec,
    now: OffsetDateTime,
    max_schedules: u32,
) -> Result<(), StoreError> {
    sqlx::query!(
        "INSERT INTO catalog.pilot_versions (pilot_id, owner_id, version, title, step_count, spec, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        id,
        owner.as_uuid(),
        version,
        spec.title,
        i32::try_from(spec.steps.len()).unwrap_or(i32::MAX),
        spec.encode_to_vec(),
        now,
    )
    .execute(&mut **tx)
    .await?;
    let had = sqlx::query!("DELETE FROM catalog.schedules WHERE pilot_id = $1", id)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    let ids: Vec<Uuid> = spec.schedules.iter().filter_map(|s| s.id.parse().ok()).collect();
    let crons: Vec<String> = spec.schedules.iter().map(|s| s.cron.clone()).collect();
    let zones: Vec<String> = spec.schedules.iter().map(|s| s.timezone.clone()).collect();
    let enabled: Vec<bool> = spec.schedules.iter().map(|s| s.enabled).collect();
    sqlx::query!(
        "INSERT INTO catalog.schedules (pilot_id, id, owner_id, cron, timezone, enabled)
         SELECT $1, s.id, $2, s.cron, s.timezone, s.enabled
         FROM UNNEST($3::uuid[], $4::text[], $5::text[], $6::bool[]) AS s(id, cron, timezone, enabled)",
        id,
        owner.as_uuid(),
        &ids,
        &crons,
        &zones,
        &enabled,
    )
    .execute(&mut **tx)
    .await?;
    if !spec.schedules.is_empty() {
        // Serialised per owner (the lock is held to the end of the transaction),
        // so concurrent saves cannot pass the limit together.
        sqlx::query!(
            "SELECT pg_advisory_xact_lock(hashtextextended('catalog.schedules:' || $1, 0))",
            owner.to_string()
        )
        .fetch_one(&mut **tx)
        .await?;
        let count = sqlx::query_scalar!(
            "SELECT count(*) AS \"n!\" FROM catalog.schedules WHERE owner_id = $1",
            owner.as_uuid()
        )
        .fetch_one(&mut **tx)
        .await?;
        // An account over the limit (it was lowered) may still save a Pilot with
        // as many schedules as it had, or fewer.
        let grows = spec.schedules.len() as u64 > had;
        if count > i64::from(max_schedules) && grows {
            return Err(StoreError::ScheduleLimit { max: max_schedules });
        }
    }
    Ok(())
}

async fn insert_secret(
    tx: &mut Transaction<'static, Postgres>,
    owner: OwnerId,
    id: Uuid,
    secret: &SealedSecret,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    sqlx::query!(
        "INSERT INTO catalog.webhook_secrets (id, pilot_id, owner_id, key_id, ciphertext, created_at, valid_until)
         VALUES ($1, $2, $3, $4, $5, $6, NULL)",
        secret.id,
        id,
        owner.as_uuid(),
        secret.key_id,
        secret.ciphertext,
        now,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl PilotStore for PgPilotStore {
    async fn create(
        &self,
        owner: OwnerId,
        spec: &pb::PilotSpec,
        enabled: bool,
        secret: &SealedSecret,
        pilot_id: Uuid,
        max_pilots: u32,
    ) -> Result<PilotRow, StoreError> {
        let now = OffsetDateTime::now_utc();
        let mut tx = self.scoped(owner).await?;
        // Serialise creations per owner so the limit holds under concurrency.
        sqlx::query!(
            "SELECT pg_advisory_xact_lock(hashtextextended('catalog.pilots:' || $1, 0))",
            owner.to_string()
        )
        .fetch_one(&mut *tx)
        .await?;
        let count =
            sqlx::query_scalar!("SELECT count(*) AS \"n!\" FROM catalog.pilots").fetch_one(&mut *tx).await?;
        if count >= i64::from(max_pilots) {
            return Err(StoreError::LimitReached { max: max_pilots });
        }
        sqlx::query!(
            "INSERT INTO catalog.pilots (id, owner_id, current_version, enabled, title, created_at, updated_at, webhook_secret_issued_at)
             VALUES ($1, $2, 1, $3, $4, $5, $5, $5)",
            pilot_id,
            owner.as_uuid(),
            enabled,
            spec.title,
            now,
        )
        .execute(&mut *tx)
        .await?;
        insert_version(&mut tx, owner, pilot_id, 1, spec, now, self.max_schedules).await?;
        insert_secret(&mut tx, owner, pilot_id, secret, now).await?;
        let row = fetch_pilot(&mut tx, pilot_id).await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn get(&self, owner: OwnerId, id: Uuid) -> Result<PilotRow, StoreError> {
        let mut tx = self.scoped(owner).await?;
        let row = fetch_pilot(&mut tx, id).await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn list(
        &self,
        owner: OwnerId,
        before: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<PilotRow>, StoreError> {
        let mut tx = self.scoped(owner).await?;
        let rows = sqlx::query_as!(
            RawPilot,
            "SELECT p.id, p.owner_id, p.current_version, p.enabled, p.created_at, p.updated_at,
                    p.webhook_secret_issued_at, v.spec
             FROM catalog.pilots p
             JOIN catalog.pilot_versions v ON v.pilot_id = p.id AND v.version = p.current_version
             WHERE p.owner_id = $1 AND ($2::uuid IS NULL OR p.id < $2)
             ORDER BY p.id DESC
             LIMIT $3",
            owner.as_uuid(),
            before,
            limit,
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.into_iter().map(PilotRow::try_from).collect()
    }

    async fn update(
        &self,
        owner: OwnerId,
        id: Uuid,
        expected: i64,
        spec: &pb::PilotSpec,
    ) -> Result<PilotRow, StoreError> {
        let now = OffsetDateTime::now_utc();
        let mut tx = self.scoped(owner).await?;
        let current =
            sqlx::query_scalar!("SELECT current_version FROM catalog.pilots WHERE id = $1 FOR UPDATE", id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound)?;
        if current != expected {
            return Err(StoreError::Stale { current });
        }
        let next = current + 1;
        insert_version(&mut tx, owner, id, next, spec, now, self.max_schedules).await?;
        sqlx::query!(
            "UPDATE catalog.pilots SET current_version = $2, title = $3, updated_at = $4 WHERE id = $1",
            id,
            next,
            spec.title,
            now,
        )
        .execute(&mut *tx)
        .await?;
        let row = fetch_pilot(&mut tx, id).await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn delete(&self, owner: OwnerId, id: Uuid, event: &OutboxEvent) -> Result<(), StoreError> {
        let mut tx = self.scoped(owner).await?;
        let deleted = sqlx::query!("DELETE FROM catalog.pilots WHERE id = $1", id).execute(&mut *tx).await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        sqlx::query!(
            "INSERT INTO catalog.outbox (owner_id, subject, msg_id, payload) VALUES ($1, $2, $3, $4)",
            owner.as_uuid(),
            event.subject,
            event.msg_id,
            event.payload,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_enabled(&self, owner: OwnerId, id: Uuid, enabled: bool) -> Result<PilotRow, StoreError> {
        let mut tx = self.scoped(owner).await?;
        let done = sqlx::query!("UPDATE catalog.pilots SET enabled = $2 WHERE id = $1", id, enabled)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let row = fetch_pilot(&mut tx, id).await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn list_versions(
        &self,
        owner: OwnerId,
        id: Uuid,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<VersionRow>, StoreError> {
        let mut tx = self.scoped(owner).await?;
        let exists =
            sqlx::query_scalar!("SELECT EXISTS (SELECT 1 FROM catalog.pilots WHERE id = $1) AS \"e!\"", id)
                .fetch_one(&mut *tx)
                .await?;
        if !exists {
            return Err(StoreError::NotFound);
        }
        let rows = sqlx::query!(
            "SELECT version, title, step_count, created_at FROM catalog.pilot_versions
             WHERE pilot_id = $1 AND ($2::bigint IS NULL OR version < $2)
             ORDER BY version DESC LIMIT $3",
            id,
            before,
            limit,
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows
            .into_iter()
            .map(|r| VersionRow {
                version: r.version,
                title: r.title,
                step_count: r.step_count,
                spec: None,
                created_at: r.created_at,
            })
            .collect())
    }

    async fn get_version(&self, owner: OwnerId, id: Uuid, version: i64) -> Result<VersionRow, StoreError> {
        let mut tx = self.scoped(owner).await?;
        let r = sqlx::query!(
            "SELECT version, title, step_count, spec, created_at FROM catalog.pilot_versions
             WHERE pilot_id = $1 AND version = $2",
            id,
            version,
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        tx.commit().await?;
        Ok(VersionRow {
            version: r.version,
            title: r.title,
            step_count: r.step_count,
            spec: Some(pb::PilotSpec::decode(r.spec.as_slice())?),
            created_at: r.created_at,
        })
    }

    async fn rotate_secret(
        &self,
        owner: OwnerId,
        id: Uuid,
        secret: &SealedSecret,
        previous_valid_until: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let now = OffsetDateTime::now_utc();
        let mut tx = self.scoped(owner).await?;
        let touched =
            sqlx::query!("UPDATE catalog.pilots SET webhook_secret_issued_at = $2 WHERE id = $1", id, now)
                .execute(&mut *tx)
                .await?;
        if touched.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        // Keep at most the current secret (now the previous one, for its grace
        // period) and the new one.
        sqlx::query!(
            "DELETE FROM catalog.webhook_secrets WHERE pilot_id = $1 AND valid_until IS NOT NULL",
            id
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "UPDATE catalog.webhook_secrets SET valid_until = $2 WHERE pilot_id = $1 AND valid_until IS NULL",
            id,
            previous_valid_until,
        )
        .execute(&mut *tx)
        .await?;
        insert_secret(&mut tx, owner, id, secret, now).await?;
        tx.commit().await?;
        Ok(())
    }
}
