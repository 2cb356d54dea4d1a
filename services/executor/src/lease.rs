//! The writes of a run this executor holds the lease of: claim, renew, record
//! steps, pause for an approval, finish, release. The engine works on runs of
//! every owner, so this store is on the system role (`bizops_executor_system`,
//! BYPASSRLS), like [`crate::system`]; every statement names one run, and every
//! write but the skipped steps' requires the lease (`lease_owner = me`).
//!
//! The intake creates runs already leased (see [`crate::system::SystemStore::intake`]);
//! from there on a run's lease is taken, renewed and given back only here.

use std::{future::Future, time::Duration};

use serde_json::Value;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    model::{Claimed, RunState, StepRecord, approval, run, step},
    pg::{interval, pg_json, pg_text},
};

/// A decision on an approval: (`ApprovalStatus`, decided by, comment).
pub type Decision = (i16, Option<Uuid>, Option<String>);

/// Storage of leased runs, as the engine needs it. `me` is the executor
/// instance holding (or taking) the lease. A write that finds the run no longer
/// ours (cancelled, deleted, taken over) writes nothing and returns `None`/`false`.
pub trait LeaseStore: Clone + Send + Sync + 'static {
    /// Takes (or renews) the lease of a run that is queued or running and not held
    /// by a live executor; returns what is needed to execute it. Taking a lease
    /// that ran out in another executor's hands counts a takeover.
    fn claim(
        &self,
        id: Uuid,
        me: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<Option<Claimed>, sqlx::Error>> + Send;

    /// Extends a lease; false if the run is no longer ours (deleted, taken over).
    /// A cancelled run's lease is extended too: its step may still be in flight.
    fn renew(
        &self,
        id: Uuid,
        me: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<bool, sqlx::Error>> + Send;

    /// Stores step records — one step's state, or steps that ran back to back
    /// without leaving the server (local steps, whose records are kept in memory
    /// until something else happens) — and moves the run's cursor to `next_step`,
    /// in one transaction, while we hold the lease. `None` if the run is no longer
    /// ours (then nothing is written).
    fn record_steps(
        &self,
        run_id: Uuid,
        me: &str,
        recs: &[StepRecord],
        next_step: i32,
    ) -> impl Future<Output = Result<Option<RunState>, sqlx::Error>> + Send;

    /// Stores the records of steps passed over (skipped).
    fn skip_steps(
        &self,
        run_id: Uuid,
        owner: Uuid,
        steps: &[StepRecord],
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// Pauses a run before step `rec.idx` for a human decision (creating the
    /// approval once) and releases the lease. Returns the state, or None if not ours.
    /// `executed` is the time it held its slot since it took it.
    fn await_approval(
        &self,
        run_id: Uuid,
        me: &str,
        rec: &StepRecord,
        message: &str,
        expires_at: OffsetDateTime,
        executed: Duration,
    ) -> impl Future<Output = Result<Option<RunState>, sqlx::Error>> + Send;

    /// Takes execution slots of `owner` for runs we hold, oldest first, as many
    /// as it has free of `limit` (over every replica); the runs that got one.
    /// Runs no longer ours (or no longer running) get none.
    fn take_slots(
        &self,
        run_ids: &[Uuid],
        me: &str,
        owner: Uuid,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<Uuid>, sqlx::Error>> + Send;

    /// A step's attempt failed and it is tried again after `backoff`: stores the
    /// step's state (attempts so far, the last error) and gives back the lease
    /// and the slot; whoever claims the run once `backoff` has passed continues
    /// it. `executed` is the time it held its slot since it took it. None if the
    /// run is no longer ours.
    fn wait_retry(
        &self,
        run_id: Uuid,
        me: &str,
        rec: &StepRecord,
        backoff: Duration,
        executed: Duration,
    ) -> impl Future<Output = Result<Option<RunState>, sqlx::Error>> + Send;

    /// The owner's oldest runs nobody holds that may be claimed now (waiting for a
    /// slot, done waiting for a retry, or left by an executor that died), as many
    /// as it has slots free of `limit`, and whether there are any.
    fn waiting(&self, owner: Uuid, limit: i64) -> impl Future<Output = Result<Waiting, sqlx::Error>> + Send;

    /// The decision on step `idx` of a run, if any.
    fn approval(
        &self,
        run_id: Uuid,
        idx: i32,
    ) -> impl Future<Output = Result<Option<Decision>, sqlx::Error>> + Send;

    /// Ends a run we hold: the steps not stored yet (`steps`, see
    /// [`LeaseStore::record_steps`]), terminal status, error, lease released, job
    /// finished — in one transaction.
    fn finish(
        &self,
        run_id: Uuid,
        me: &str,
        status: i16,
        error: Option<&str>,
        steps: &[StepRecord],
    ) -> impl Future<Output = Result<Option<RunState>, sqlx::Error>> + Send;

    /// Gives up a lease without finishing (shutdown, a dependency down): the run
    /// is retried after `delay` by whichever executor's reaper sees it first (no
    /// one claims it before; a release is not a takeover).
    fn release(
        &self,
        run_id: Uuid,
        me: &str,
        delay: Duration,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// Releases every lease this executor holds (graceful shutdown).
    fn release_all(&self, me: &str) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

    /// A run's status (None if it is gone).
    fn status(&self, id: Uuid) -> impl Future<Output = Result<Option<i16>, sqlx::Error>> + Send;

    /// Reserves `tokens` of `owner`'s server-key budget for `day` if the day's use
    /// stays within `budget`; the day's use after it, or None if it would not fit.
    fn reserve_ai_tokens(
        &self,
        owner: Uuid,
        day: time::Date,
        tokens: i64,
        budget: i64,
    ) -> impl Future<Output = Result<Option<i64>, sqlx::Error>> + Send;

    /// Replaces a reservation of `reserved` tokens by the `used` ones.
    fn settle_ai_tokens(
        &self,
        owner: Uuid,
        day: time::Date,
        reserved: i64,
        used: i64,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
}

/// The runs of an owner waiting to be claimed: the oldest, as many as it has
/// slots free, and whether any wait at all.
#[derive(Debug, Clone, Default)]
pub struct Waiting {
    pub ids: Vec<Uuid>,
    pub waiting: bool,
}

/// The Postgres implementation, on the system role's pool.
#[derive(Debug, Clone)]
pub struct PgLeaseStore {
    pool: PgPool,
}

impl PgLeaseStore {
    /// A store on `pool` (connected as `bizops_executor_system`).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

impl LeaseStore for PgLeaseStore {
    async fn claim(&self, id: Uuid, me: &str, lease: Duration) -> Result<Option<Claimed>, sqlx::Error> {
        // One statement: the lease, the payload and the finished steps' outputs.
        let row = sqlx::query!(
            // A lease taken from another holder whose lease ran out is a takeover:
            // that holder stopped without finishing or releasing the run.
            r#"UPDATE executor.runs r
             SET lease_owner = $2, lease_until = now() + $3, status = $5,
                 started_at = COALESCE(r.started_at, now()),
                 takeovers = r.takeovers
                     + CASE WHEN r.lease_owner IS NOT NULL AND r.lease_owner <> $2 THEN 1 ELSE 0 END,
                 -- A holder that stopped while executing (this replica included,
                 -- when a release failed): its stretch counts up to the end of its
                 -- lease, and its slot is free. A run being executed here is never
                 -- claimed again.
                 executed_ms = r.executed_ms + CASE WHEN r.executing
                     THEN GREATEST((extract(epoch FROM LEAST(now(), r.lease_until) - r.slot_taken_at) * 1000)::bigint, 0)
                     ELSE 0 END,
                 executing = false
             WHERE r.id = $1 AND r.status IN ($4, $5)
               AND (r.lease_owner = $2 OR r.lease_until < now()
                    OR (r.lease_owner IS NULL AND r.lease_until IS NULL))
             RETURNING r.owner_id, r.pilot_id, r.pilot_version, r.next_step, r.takeovers, r.executed_ms,
                 (SELECT s.attempts FROM executor.step_runs s
                  WHERE s.run_id = r.id AND s.idx = r.next_step AND s.status = $7) AS attempts_done,
                 (SELECT j.payload FROM executor.jobs j WHERE j.id = r.job_id) AS payload,
                 (SELECT j.content_type FROM executor.jobs j WHERE j.id = r.job_id) AS content_type,
                 (SELECT jsonb_agg(jsonb_build_array(s.idx, s.step_key, s.output) ORDER BY s.idx)
                  FROM executor.step_runs s WHERE s.run_id = r.id AND s.status = $6) AS outputs"#,
            id,
            me,
            interval(lease),
            run::QUEUED,
            run::RUNNING,
            step::SUCCEEDED,
            step::RUNNING,
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let payload = row.payload.zip(row.content_type);
        let outputs = match row.outputs {
            Some(Value::Array(steps)) => steps
                .into_iter()
                .filter_map(|s| {
                    let idx = i32::try_from(s.get(0)?.as_i64()?).ok()?;
                    let key = s.get(1)?.as_str()?.to_owned();
                    let output = s.get(2).filter(|o| !o.is_null()).cloned();
                    Some((idx, key, output))
                })
                .collect(),
            _ => Vec::new(),
        };
        Ok(Some(Claimed {
            id,
            owner_id: row.owner_id,
            pilot_id: row.pilot_id,
            pilot_version: row.pilot_version,
            next_step: row.next_step,
            takeovers: row.takeovers,
            payload,
            outputs,
            attempts_done: row.attempts_done.unwrap_or(0),
            executed_ms: row.executed_ms,
        }))
    }

    async fn renew(&self, id: Uuid, me: &str, lease: Duration) -> Result<bool, sqlx::Error> {
        let done = sqlx::query!(
            // Whatever the run's status: a run cancelled while a step is in
            // flight keeps its slot (and so its lease) until that step is over
            // and the engine lets it go.
            "UPDATE executor.runs SET lease_until = now() + $3 WHERE id = $1 AND lease_owner = $2",
            id,
            me,
            interval(lease),
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn record_steps(
        &self,
        run_id: Uuid,
        me: &str,
        recs: &[StepRecord],
        next_step: i32,
    ) -> Result<Option<RunState>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let state = sqlx::query!(
            "UPDATE executor.runs SET next_step = $3, event_seq = event_seq + $5,
                 takeovers = CASE WHEN $3 > next_step THEN 0 ELSE takeovers END
             WHERE id = $1 AND lease_owner = $2 AND status = $4
             RETURNING owner_id, pilot_id, event_seq",
            run_id,
            me,
            next_step,
            run::RUNNING,
            i64::try_from(recs.len()).unwrap_or(i64::MAX),
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(state) = state else {
            tx.rollback().await?;
            return Ok(None);
        };
        for rec in recs {
            upsert_step(&mut tx, run_id, state.owner_id, rec).await?;
        }
        tx.commit().await?;
        Ok(Some(RunState {
            id: run_id,
            owner_id: state.owner_id,
            pilot_id: state.pilot_id,
            status: run::RUNNING,
            seq: state.event_seq,
        }))
    }

    async fn skip_steps(&self, run_id: Uuid, owner: Uuid, steps: &[StepRecord]) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        for rec in steps {
            upsert_step(&mut tx, run_id, owner, rec).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn await_approval(
        &self,
        run_id: Uuid,
        me: &str,
        rec: &StepRecord,
        message: &str,
        expires_at: OffsetDateTime,
        executed: Duration,
    ) -> Result<Option<RunState>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let state = sqlx::query!(
            "UPDATE executor.runs
             SET status = $4, next_step = $5, lease_owner = NULL, lease_until = NULL, event_seq = event_seq + 1,
                 executing = false, executed_ms = executed_ms + $6
             WHERE id = $1 AND lease_owner = $2 AND status = $3
             RETURNING owner_id, pilot_id, event_seq",
            run_id,
            me,
            run::RUNNING,
            run::AWAITING_APPROVAL,
            rec.idx,
            millis(executed),
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(state) = state else {
            tx.rollback().await?;
            return Ok(None);
        };
        upsert_step(&mut tx, run_id, state.owner_id, rec).await?;
        sqlx::query!(
            "INSERT INTO executor.approvals (id, owner_id, run_id, pilot_id, step_idx, step_key, status, message, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now(), $9)
             ON CONFLICT (run_id, step_idx) DO NOTHING",
            Uuid::now_v7(),
            state.owner_id,
            run_id,
            state.pilot_id,
            rec.idx,
            rec.key,
            approval::PENDING,
            pg_text(message),
            expires_at,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(RunState {
            id: run_id,
            owner_id: state.owner_id,
            pilot_id: state.pilot_id,
            status: run::AWAITING_APPROVAL,
            seq: state.event_seq,
        }))
    }

    async fn approval(&self, run_id: Uuid, idx: i32) -> Result<Option<Decision>, sqlx::Error> {
        Ok(sqlx::query!(
            "SELECT status, decided_by, comment FROM executor.approvals WHERE run_id = $1 AND step_idx = $2",
            run_id,
            idx
        )
        .fetch_optional(&self.pool)
        .await?
        .map(|r| (r.status, r.decided_by, r.comment)))
    }

    async fn finish(
        &self,
        run_id: Uuid,
        me: &str,
        status: i16,
        error: Option<&str>,
        steps: &[StepRecord],
    ) -> Result<Option<RunState>, sqlx::Error> {
        // One statement (so one round trip, committed on its own): the run's end,
        // its steps, its job. Nothing is written unless the run is still ours.
        let state = sqlx::query!(
            "WITH run AS (
                 UPDATE executor.runs
                 SET status = $3, error = $4, finished_at = now(), lease_owner = NULL, lease_until = NULL,
                     executing = false, event_seq = event_seq + 1 + $6
                 WHERE id = $1 AND lease_owner = $2 AND status = $5
                 RETURNING owner_id, pilot_id, event_seq, job_id
             ), steps AS (
                 INSERT INTO executor.step_runs (run_id, idx, owner_id, step_key, kind, status, attempts, provider,
                                                 output, output_truncated, error, started_at, finished_at)
                 SELECT $1, s.idx, run.owner_id, s.step_key, s.kind, s.status, s.attempts, s.provider, s.output,
                        s.output_truncated, s.error, s.started_at, s.finished_at
                 FROM run, UNNEST($7::int4[], $8::text[], $9::text[], $10::int2[], $11::int4[], $12::text[],
                                  $13::jsonb[], $14::bool[], $15::text[], $16::timestamptz[], $17::timestamptz[])
                      AS s(idx, step_key, kind, status, attempts, provider, output, output_truncated, error,
                           started_at, finished_at)
                 ON CONFLICT (run_id, idx) DO UPDATE SET
                     status = EXCLUDED.status, attempts = EXCLUDED.attempts, provider = EXCLUDED.provider,
                     output = EXCLUDED.output, output_truncated = EXCLUDED.output_truncated, error = EXCLUDED.error,
                     started_at = COALESCE(executor.step_runs.started_at, EXCLUDED.started_at),
                     finished_at = EXCLUDED.finished_at
                 -- A step stored as succeeded stays so (its side effect happened).
                 WHERE executor.step_runs.status <> $18
             ), job AS (
                 UPDATE executor.jobs SET finished_at = now()
                 WHERE id = (SELECT job_id FROM run) AND finished_at IS NULL
             )
             SELECT owner_id, pilot_id, event_seq FROM run",
            run_id,
            me,
            status,
            error.map(pg_text),
            run::RUNNING,
            i64::try_from(steps.len()).unwrap_or(i64::MAX),
            steps.iter().map(|s| s.idx).collect::<Vec<i32>>() as _,
            steps.iter().map(|s| s.key.clone()).collect::<Vec<String>>() as _,
            steps.iter().map(|s| s.kind.to_owned()).collect::<Vec<String>>() as _,
            steps.iter().map(|s| s.status).collect::<Vec<i16>>() as _,
            steps.iter().map(|s| s.attempts).collect::<Vec<i32>>() as _,
            steps.iter().map(|s| s.provider.clone()).collect::<Vec<Option<String>>>() as _,
            steps.iter().map(|s| s.output.as_ref().map(pg_json)).collect::<Vec<Option<Value>>>() as _,
            steps.iter().map(|s| s.truncated).collect::<Vec<bool>>() as _,
            steps.iter().map(|s| s.error.as_deref().map(pg_text)).collect::<Vec<Option<String>>>() as _,
            steps.iter().map(|s| s.started_at).collect::<Vec<Option<OffsetDateTime>>>() as _,
            steps.iter().map(|s| s.finished_at).collect::<Vec<Option<OffsetDateTime>>>() as _,
            step::SUCCEEDED,
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some(state) = state else {
            return Ok(None);
        };
        Ok(Some(RunState {
            id: run_id,
            owner_id: state.owner_id,
            pilot_id: state.pilot_id,
            status,
            seq: state.event_seq,
        }))
    }

    async fn release(&self, run_id: Uuid, me: &str, delay: Duration) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "UPDATE executor.runs SET lease_owner = NULL, lease_until = now() + $3, executing = false,
                 executed_ms = executed_ms + CASE WHEN executing
                     THEN GREATEST((extract(epoch FROM now() - slot_taken_at) * 1000)::bigint, 0) ELSE 0 END
             WHERE id = $1 AND lease_owner = $2",
            run_id,
            me,
            interval(delay),
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn release_all(&self, me: &str) -> Result<u64, sqlx::Error> {
        let done = sqlx::query!(
            "UPDATE executor.runs SET lease_owner = NULL, lease_until = NULL, executing = false,
                 executed_ms = executed_ms + CASE WHEN executing
                     THEN GREATEST((extract(epoch FROM now() - slot_taken_at) * 1000)::bigint, 0) ELSE 0 END
             WHERE lease_owner = $1 AND status = $2",
            me,
            run::RUNNING,
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn status(&self, id: Uuid) -> Result<Option<i16>, sqlx::Error> {
        sqlx::query_scalar!("SELECT status FROM executor.runs WHERE id = $1", id)
            .fetch_optional(&self.pool)
            .await
    }

    async fn take_slots(
        &self,
        run_ids: &[Uuid],
        me: &str,
        owner: Uuid,
        limit: i64,
    ) -> Result<Vec<Uuid>, sqlx::Error> {
        // The owner's lock orders concurrent takers on every replica: each counts
        // after the one before it committed (a count in the same statement as the
        // lock would see a snapshot from before it).
        let mut tx = self.pool.begin().await?;
        // The flags need no flush to disk before the runs go on, and the lock is
        // held until the commit: without the flush, an owner's runs take slots at
        // memory speed. The price: after a crash of the database itself, runs
        // that went on may have lost their flag, and their owner may run more
        // than its slots until those end.
        sqlx::query!(
            "SELECT set_config('synchronous_commit', 'off', true), pg_advisory_xact_lock($1)",
            slot_lock(owner)
        )
        .fetch_one(&mut *tx)
        .await?;
        // The stretch starts now, not when the transaction began (that was before
        // the wait for the lock).
        let taken = sqlx::query_scalar!(
            "UPDATE executor.runs SET executing = true, slot_taken_at = clock_timestamp()
             WHERE id IN (
                 SELECT id FROM executor.runs
                 WHERE id = ANY($1) AND lease_owner = $2 AND status = $3
                 ORDER BY created_at, id
                 LIMIT GREATEST($5 - (SELECT count(*) FROM executor.runs x
                                      WHERE x.owner_id = $4 AND x.executing AND x.lease_until > now()
                                        AND x.id <> ALL($1)), 0))
             RETURNING id",
            run_ids,
            me,
            run::RUNNING,
            owner,
            limit,
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(taken)
    }

    async fn wait_retry(
        &self,
        run_id: Uuid,
        me: &str,
        rec: &StepRecord,
        backoff: Duration,
        executed: Duration,
    ) -> Result<Option<RunState>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let state = sqlx::query!(
            "UPDATE executor.runs
             SET next_step = $4, lease_owner = NULL, lease_until = now() + $5, executing = false,
                 executed_ms = executed_ms + $6, event_seq = event_seq + 1
             WHERE id = $1 AND lease_owner = $2 AND status = $3
             RETURNING owner_id, pilot_id, event_seq",
            run_id,
            me,
            run::RUNNING,
            rec.idx,
            interval(backoff),
            millis(executed),
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(state) = state else {
            tx.rollback().await?;
            return Ok(None);
        };
        upsert_step(&mut tx, run_id, state.owner_id, rec).await?;
        tx.commit().await?;
        Ok(Some(RunState {
            id: run_id,
            owner_id: state.owner_id,
            pilot_id: state.pilot_id,
            status: run::RUNNING,
            seq: state.event_seq,
        }))
    }

    async fn waiting(&self, owner: Uuid, limit: i64) -> Result<Waiting, sqlx::Error> {
        // Free slots: the limit less the runs held (executing, or claimed and
        // about to ask for a slot: handing out more would only see them turned
        // away). Both reads stop early, however long the owner's backlog.
        let row = sqlx::query!(
            r#"WITH claimable AS (
                 SELECT id, created_at FROM executor.runs
                 WHERE owner_id = $1 AND status IN ($2, $3)
                   AND ((lease_owner IS NULL AND lease_until IS NULL) OR lease_until < now())
             ), held AS (
                 SELECT count(*) AS n FROM (
                     SELECT 1 FROM executor.runs
                     WHERE owner_id = $1 AND status IN ($2, $3) AND lease_owner IS NOT NULL AND lease_until > now()
                     LIMIT $4) h
             )
             SELECT EXISTS (SELECT 1 FROM claimable) AS "waiting!",
                    ARRAY(SELECT id FROM claimable ORDER BY created_at, id
                          LIMIT GREATEST($4 - (SELECT n FROM held), 0)) AS "ids!""#,
            owner,
            run::QUEUED,
            run::RUNNING,
            limit,
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Waiting { ids: row.ids, waiting: row.waiting })
    }

    async fn reserve_ai_tokens(
        &self,
        owner: Uuid,
        day: time::Date,
        tokens: i64,
        budget: i64,
    ) -> Result<Option<i64>, sqlx::Error> {
        // One statement: the row is created at zero or updated, and the update
        // happens only while the sum fits (the row lock orders concurrent calls).
        sqlx::query_scalar!(
            "INSERT INTO executor.ai_usage AS u (owner_id, day, tokens) SELECT $1, $2, $3::bigint WHERE $3::bigint <= $4::bigint
             ON CONFLICT (owner_id, day) DO UPDATE SET tokens = u.tokens + EXCLUDED.tokens
                 WHERE u.tokens + EXCLUDED.tokens <= $4::bigint
             RETURNING tokens",
            owner,
            day,
            tokens,
            budget,
        )
        .fetch_optional(&self.pool)
        .await
    }

    async fn settle_ai_tokens(
        &self,
        owner: Uuid,
        day: time::Date,
        reserved: i64,
        used: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "UPDATE executor.ai_usage SET tokens = GREATEST(tokens - $3 + $4, 0) WHERE owner_id = $1 AND day = $2",
            owner,
            day,
            reserved,
            used,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

async fn upsert_step(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    run_id: Uuid,
    owner: Uuid,
    rec: &StepRecord,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO executor.step_runs (run_id, idx, owner_id, step_key, kind, status, attempts, provider, output,
                                         output_truncated, error, started_at, finished_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         ON CONFLICT (run_id, idx) DO UPDATE SET
             status = EXCLUDED.status, attempts = EXCLUDED.attempts, provider = EXCLUDED.provider,
             output = EXCLUDED.output, output_truncated = EXCLUDED.output_truncated, error = EXCLUDED.error,
             started_at = COALESCE(executor.step_runs.started_at, EXCLUDED.started_at),
             finished_at = EXCLUDED.finished_at
         WHERE executor.step_runs.status <> $14",
        run_id,
        rec.idx,
        owner,
        rec.key,
        rec.kind,
        rec.status,
        rec.attempts,
        rec.provider,
        rec.output.as_ref().map(pg_json) as Option<Value>,
        rec.truncated,
        rec.error.as_deref().map(pg_text),
        rec.started_at,
        rec.finished_at,
        step::SUCCEEDED,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A duration in whole milliseconds, for `executed_ms`.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The advisory lock key of an owner's execution slots: the last eight bytes of
/// the owner id (a UUIDv7's random bits), tagged. Another lock that happened to
/// share a key would only wait for this one, never break it.
pub(crate) fn slot_lock(owner: Uuid) -> i64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&owner.as_bytes()[8..]);
    i64::from_be_bytes(bytes) ^ 0x5107_0000_0000_0000
}
