//! Owner-scoped storage for the user RPCs (runs, steps, approvals), as the service
//! role under row-level security: another owner's run is NOT_FOUND.

use std::future::Future;

use bizops_authn::OwnerId;
use serde_json::Value;
use sqlx::{PgPool, Postgres, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::model::{approval, run, step};

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such run or approval for this owner.
    #[error("not found")]
    NotFound(&'static str),
    /// The state does not allow it.
    #[error("{0}")]
    State(String),
    /// Anything else.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<StoreError> for bizops_errors::Error {
    fn from(e: StoreError) -> Self {
        use bizops_errors::{Error, ErrorCode};
        match e {
            StoreError::NotFound(what) => Error::not_found(what),
            StoreError::State(m) => Error::new(ErrorCode::FailedPrecondition, m),
            StoreError::Db(e) => Error::internal(e),
        }
    }
}

/// A run row.
#[derive(Debug, Clone)]
pub struct RunRow {
    /// Id.
    pub id: Uuid,
    /// Owner.
    pub owner_id: Uuid,
    /// Pilot.
    pub pilot_id: Uuid,
    /// Pinned version.
    pub pilot_version: i64,
    /// Trigger.
    pub trigger_id: Uuid,
    /// `TriggerSource`.
    pub source: i16,
    /// `RunStatus`.
    pub status: i16,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Started.
    pub started_at: Option<OffsetDateTime>,
    /// Finished.
    pub finished_at: Option<OffsetDateTime>,
    /// Error.
    pub error: Option<String>,
    /// Replay of.
    pub replay_of_run_id: Option<Uuid>,
}

/// A step row.
#[derive(Debug, Clone)]
pub struct StepRow {
    /// Index.
    pub idx: i32,
    /// Key.
    pub step_key: String,
    /// Kind.
    pub kind: String,
    /// `StepStatus`.
    pub status: i16,
    /// Attempts.
    pub attempts: i32,
    /// Provider.
    pub provider: Option<String>,
    /// Output.
    pub output: Option<Value>,
    /// Cut to the preview size.
    pub output_truncated: bool,
    /// Error.
    pub error: Option<String>,
    /// Started.
    pub started_at: Option<OffsetDateTime>,
    /// Finished.
    pub finished_at: Option<OffsetDateTime>,
}

/// An approval row.
#[derive(Debug, Clone)]
pub struct ApprovalRow {
    /// Id.
    pub id: Uuid,
    /// Run.
    pub run_id: Uuid,
    /// Pilot.
    pub pilot_id: Uuid,
    /// Step key.
    pub step_key: String,
    /// `ApprovalStatus`.
    pub status: i16,
    /// Message.
    pub message: String,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Deadline.
    pub expires_at: OffsetDateTime,
    /// Decided.
    pub decided_at: Option<OffsetDateTime>,
    /// By.
    pub decided_by: Option<Uuid>,
    /// Comment.
    pub comment: Option<String>,
}

/// What a replay needs from the original run.
#[derive(Debug, Clone)]
pub struct ReplaySource {
    /// The original run.
    pub run: RunRow,
    /// Its trigger payload and media type (None once the job was swept).
    pub payload: Option<(Vec<u8>, String)>,
    /// The key of the step that failed, if any.
    pub failed_step: Option<String>,
}

/// Owner-scoped storage of runs and approvals.
pub trait RunStore: Send + Sync + 'static {
    /// A run with its steps.
    fn get(
        &self,
        owner: OwnerId,
        id: Uuid,
    ) -> impl Future<Output = Result<(RunRow, Vec<StepRow>), StoreError>> + Send;
    /// Runs of a Pilot, newest first, older than `before` (created_at, id).
    fn list(
        &self,
        owner: OwnerId,
        pilot: Uuid,
        before: Option<(OffsetDateTime, Uuid)>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<RunRow>, StoreError>> + Send;
    /// Cancels a run that has not finished.
    fn cancel(&self, owner: OwnerId, id: Uuid) -> impl Future<Output = Result<RunRow, StoreError>> + Send;
    /// Pending approvals, oldest first, after `after` (created_at, id).
    fn pending(
        &self,
        owner: OwnerId,
        after: Option<(OffsetDateTime, Uuid)>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<ApprovalRow>, StoreError>> + Send;
    /// Records a decision; an approval resumes the run (QUEUED), a rejection ends
    /// it REJECTED.
    fn decide(
        &self,
        owner: OwnerId,
        id: Uuid,
        approve: bool,
        by: Uuid,
        comment: Option<String>,
    ) -> impl Future<Output = Result<ApprovalRow, StoreError>> + Send;
    /// The original run and payload of a replay.
    fn replay_source(
        &self,
        owner: OwnerId,
        id: Uuid,
    ) -> impl Future<Output = Result<ReplaySource, StoreError>> + Send;
}

/// The Postgres implementation on the service role's pool.
#[derive(Debug, Clone)]
pub struct PgRunStore {
    pool: PgPool,
}

impl PgRunStore {
    /// A store on `pool` (connected as `bizops_executor`).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    async fn scoped(&self, owner: OwnerId) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query!("SELECT set_config('app.owner_id', $1, true)", owner.to_string())
            .fetch_one(&mut *tx)
            .await?;
        Ok(tx)
    }
}

async fn fetch_run(tx: &mut Transaction<'static, Postgres>, id: Uuid) -> Result<RunRow, StoreError> {
    sqlx::query_as!(
        RunRow,
        "SELECT id, owner_id, pilot_id, pilot_version, trigger_id, source, status, created_at, started_at, finished_at,
                error, replay_of_run_id
         FROM executor.runs WHERE id = $1",
        id
    )
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound("run"))
}

async fn fetch_approval(
    tx: &mut Transaction<'static, Postgres>,
    id: Uuid,
) -> Result<ApprovalRow, StoreError> {
    sqlx::query_as!(
        ApprovalRow,
        "SELECT id, run_id, pilot_id, step_key, status, message, created_at, expires_at, decided_at, decided_by, comment
         FROM executor.approvals WHERE id = $1",
        id
    )
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound("approval"))
}

impl RunStore for PgRunStore {
    async fn get(&self, owner: OwnerId, id: Uuid) -> Result<(RunRow, Vec<StepRow>), StoreError> {
        let mut tx = self.scoped(owner).await?;
        let run = fetch_run(&mut tx, id).await?;
        let steps = sqlx::query_as!(
            StepRow,
            "SELECT idx, step_key, kind, status, attempts, provider, output, output_truncated, error, started_at, finished_at
             FROM executor.step_runs WHERE run_id = $1 ORDER BY idx",
            id
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((run, steps))
    }

    async fn list(
        &self,
        owner: OwnerId,
        pilot: Uuid,
        before: Option<(OffsetDateTime, Uuid)>,
        limit: i64,
    ) -> Result<Vec<RunRow>, StoreError> {
        let mut tx = self.scoped(owner).await?;
        let (before_at, before_id) = before.map(|(a, i)| (Some(a), Some(i))).unwrap_or((None, None));
        let rows = sqlx::query_as!(
            RunRow,
            "SELECT id, owner_id, pilot_id, pilot_version, trigger_id, source, status, created_at, started_at, finished_at,
                    error, replay_of_run_id
             FROM executor.runs
             WHERE pilot_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
             ORDER BY created_at DESC, id DESC LIMIT $4",
            pilot,
            before_at,
            before_id,
            limit,
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows)
    }

    async fn cancel(&self, owner: OwnerId, id: Uuid) -> Result<RunRow, StoreError> {
        let mut tx = self.scoped(owner).await?;
        let current = fetch_run(&mut tx, id).await?;
        if run::is_terminal(current.status) {
            return Err(StoreError::State("the run has already finished".into()));
        }
        sqlx::query!(
            // The lease and slot stay with the executor holding the run, if any:
            // a step in flight there goes on until it ends (so cancelling cannot
            // free a slot early); then that executor gives both up.
            "UPDATE executor.runs SET status = $2, finished_at = now(), error = 'cancelled by the owner',
                    event_seq = event_seq + 1
             WHERE id = $1",
            id,
            run::CANCELLED,
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "UPDATE executor.step_runs SET status = $2, finished_at = now() WHERE run_id = $1 AND status IN ($3, $4, $5)",
            id,
            step::CANCELLED,
            step::PENDING,
            step::RUNNING,
            step::AWAITING_APPROVAL,
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "DELETE FROM executor.approvals WHERE run_id = $1 AND status = $2",
            id,
            approval::PENDING
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "UPDATE executor.jobs SET finished_at = now()
             WHERE id = (SELECT job_id FROM executor.runs WHERE id = $1) AND finished_at IS NULL",
            id
        )
        .execute(&mut *tx)
        .await?;
        let run = fetch_run(&mut tx, id).await?;
        tx.commit().await?;
        Ok(run)
    }

    async fn pending(
        &self,
        owner: OwnerId,
        after: Option<(OffsetDateTime, Uuid)>,
        limit: i64,
    ) -> Result<Vec<ApprovalRow>, StoreError> {
        let mut tx = self.scoped(owner).await?;
        let (after_at, after_id) = after.map(|(a, i)| (Some(a), Some(i))).unwrap_or((None, None));
        let rows = sqlx::query_as!(
            ApprovalRow,
            "SELECT id, run_id, pilot_id, step_key, status, message, created_at, expires_at, decided_at, decided_by, comment
             FROM executor.approvals
             WHERE status = $1 AND expires_at > now() AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3))
             ORDER BY created_at, id LIMIT $4",
            approval::PENDING,
            after_at,
            after_id,
            limit,
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows)
    }

    async fn decide(
        &self,
        owner: OwnerId,
        id: Uuid,
        approve: bool,
        by: Uuid,
        comment: Option<String>,
    ) -> Result<ApprovalRow, StoreError> {
        let mut tx = self.scoped(owner).await?;
        let current = fetch_approval(&mut tx, id).await?;
        if current.status != approval::PENDING {
            return Err(StoreError::State("this approval has already been decided or has expired".into()));
        }
        if current.expires_at <= OffsetDateTime::now_utc() {
            return Err(StoreError::State("this approval has expired".into()));
        }
        let status = if approve { approval::APPROVED } else { approval::REJECTED };
        sqlx::query!(
            "UPDATE executor.approvals SET status = $2, decided_at = now(), decided_by = $3, comment = $4 WHERE id = $1",
            id,
            status,
            by,
            comment,
        )
        .execute(&mut *tx)
        .await?;
        if approve {
            sqlx::query!(
                "UPDATE executor.runs SET status = $2, lease_owner = NULL, lease_until = NULL, event_seq = event_seq + 1
                 WHERE id = $1 AND status = $3",
                current.run_id,
                run::QUEUED,
                run::AWAITING_APPROVAL,
            )
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query!(
                "UPDATE executor.step_runs SET status = $3, finished_at = now() WHERE run_id = $1 AND step_key = $2",
                current.run_id,
                current.step_key,
                step::REJECTED,
            )
            .execute(&mut *tx)
            .await?;
            sqlx::query!(
                "UPDATE executor.runs SET status = $2, finished_at = now(), error = 'rejected by the approver',
                        event_seq = event_seq + 1
                 WHERE id = $1 AND status = $3",
                current.run_id,
                run::REJECTED,
                run::AWAITING_APPROVAL,
            )
            .execute(&mut *tx)
            .await?;
            sqlx::query!(
                "UPDATE executor.jobs SET finished_at = now()
                 WHERE id = (SELECT job_id FROM executor.runs WHERE id = $1) AND finished_at IS NULL",
                current.run_id
            )
            .execute(&mut *tx)
            .await?;
        }
        let decided = fetch_approval(&mut tx, id).await?;
        tx.commit().await?;
        Ok(decided)
    }

    async fn replay_source(&self, owner: OwnerId, id: Uuid) -> Result<ReplaySource, StoreError> {
        let mut tx = self.scoped(owner).await?;
        let run = fetch_run(&mut tx, id).await?;
        let payload = sqlx::query!(
            "SELECT j.payload, j.content_type FROM executor.jobs j JOIN executor.runs r ON r.job_id = j.id WHERE r.id = $1",
            id
        )
        .fetch_optional(&mut *tx)
        .await?
        .map(|j| (j.payload, j.content_type));
        let failed_step = sqlx::query_scalar!(
            "SELECT step_key FROM executor.step_runs WHERE run_id = $1 AND status = $2 ORDER BY idx LIMIT 1",
            id,
            step::FAILED,
        )
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ReplaySource { run, payload, failed_step })
    }
}
