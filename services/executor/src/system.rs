//! The executor's cross-owner paths, on the system role (`bizops_executor_system`,
//! BYPASSRLS): intake, leases and the reaper, step records, approval expiry,
//! retention sweeps, scheduler state, and Pilot/owner deletion. Keep it auditable.

use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::model::{Claimed, NewRun, StepRecord, approval, run, step};

/// A finished or changed run, for live events.
#[derive(Debug, Clone, Copy)]
pub struct RunState {
    /// Run.
    pub id: Uuid,
    /// Owner.
    pub owner_id: Uuid,
    /// Pilot.
    pub pilot_id: Uuid,
    /// New status.
    pub status: i16,
    /// Event sequence after the change.
    pub seq: i64,
}

/// The system-role store.
#[derive(Debug, Clone)]
pub struct SystemStore {
    pool: PgPool,
}

fn interval(d: Duration) -> sqlx::postgres::types::PgInterval {
    sqlx::postgres::types::PgInterval {
        months: 0,
        days: 0,
        microseconds: i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
    }
}

impl SystemStore {
    /// A store on `pool` (connected as `bizops_executor_system`).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Records triggers as jobs and runs in one transaction. A trigger whose
    /// (Pilot, key) exists already creates nothing (redelivery, duplicate webhook).
    /// Keeps only the newest `keep` runs of each Pilot in `prune`: older finished
    /// runs are deleted. An older run still unfinished (queued, running, awaiting a
    /// decision) is never deleted — that would lose an accepted trigger — and goes
    /// with the next prune after it finishes. Returns the new runs.
    ///
    /// The new runs are leased to `me` for `lease` already (the intake hands them to
    /// its own engine), which spares each run a claim.
    pub async fn intake(
        &self,
        runs: &[NewRun],
        keep: i64,
        prune: &[Uuid],
        me: &str,
        lease: Duration,
    ) -> Result<Vec<NewRun>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        // The whole batch in two statements: jobs, then the runs of the jobs.
        sqlx::query!(
            "INSERT INTO executor.jobs (id, owner_id, pilot_id, idempotency_key, source, payload, content_type, accepted_at)
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::int2[], $6::bytea[], $7::text[],
                                  $8::timestamptz[])
             ON CONFLICT (pilot_id, idempotency_key) DO NOTHING",
            runs.iter().map(|r| r.trigger_id).collect::<Vec<Uuid>>() as _,
            runs.iter().map(|r| r.owner_id).collect::<Vec<Uuid>>() as _,
            runs.iter().map(|r| r.pilot_id).collect::<Vec<Uuid>>() as _,
            runs.iter().map(|r| r.idempotency_key.clone()).collect::<Vec<String>>() as _,
            runs.iter().map(|r| r.source).collect::<Vec<i16>>() as _,
            runs.iter().map(|r| r.payload.clone()).collect::<Vec<Vec<u8>>>() as _,
            runs.iter().map(|r| r.content_type.clone()).collect::<Vec<String>>() as _,
            runs.iter().map(|r| r.accepted_at).collect::<Vec<OffsetDateTime>>() as _,
        )
        .execute(&mut *tx)
        .await?;
        let inserted: std::collections::HashSet<Uuid> = sqlx::query_scalar!(
            "INSERT INTO executor.runs (id, owner_id, pilot_id, pilot_version, idempotency_key, job_id, trigger_id,
                                        source, status, created_at, replay_of_run_id, lease_owner, lease_until,
                                        started_at)
             SELECT r.id, r.owner_id, r.pilot_id, r.pilot_version, r.key, j.id, r.trigger_id, r.source, $9,
                    r.created_at, r.replay_of, $11, now() + $12, now()
             FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::int8[], $5::text[], $6::uuid[], $7::int2[],
                         $8::timestamptz[], $10::uuid[])
                  AS r(id, owner_id, pilot_id, pilot_version, key, trigger_id, source, created_at, replay_of)
             JOIN executor.jobs j ON j.pilot_id = r.pilot_id AND j.idempotency_key = r.key
             ON CONFLICT (pilot_id, idempotency_key) DO NOTHING
             RETURNING id",
            runs.iter().map(|r| r.run_id).collect::<Vec<Uuid>>() as _,
            runs.iter().map(|r| r.owner_id).collect::<Vec<Uuid>>() as _,
            runs.iter().map(|r| r.pilot_id).collect::<Vec<Uuid>>() as _,
            runs.iter().map(|r| r.pilot_version).collect::<Vec<i64>>() as _,
            runs.iter().map(|r| r.idempotency_key.clone()).collect::<Vec<String>>() as _,
            runs.iter().map(|r| r.trigger_id).collect::<Vec<Uuid>>() as _,
            runs.iter().map(|r| r.source).collect::<Vec<i16>>() as _,
            runs.iter().map(|r| r.accepted_at).collect::<Vec<OffsetDateTime>>() as _,
            run::RUNNING,
            runs.iter().map(|r| r.replay.as_ref().map(|(orig, _)| *orig)).collect::<Vec<Option<Uuid>>>() as _,
            me,
            interval(lease),
        )
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        let mut created = Vec::new();
        for r in runs.iter().filter(|r| inserted.contains(&r.run_id)) {
            if let Some((original, Some(from_key))) = &r.replay {
                // Resume a replay at the failed step: earlier results are copied.
                let from_idx = sqlx::query_scalar!(
                    "SELECT idx FROM executor.step_runs WHERE run_id = $1 AND step_key = $2 AND owner_id = $3",
                    original,
                    from_key,
                    r.owner_id,
                )
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(from_idx) = from_idx {
                    sqlx::query!(
                        "INSERT INTO executor.step_runs (run_id, idx, owner_id, step_key, kind, status, attempts, provider,
                                                        output, output_truncated, error, started_at, finished_at)
                         SELECT $1, idx, owner_id, step_key, kind, status, attempts, provider, output, output_truncated,
                                error, started_at, finished_at
                         FROM executor.step_runs WHERE run_id = $2 AND idx < $3 AND owner_id = $4",
                        r.run_id,
                        original,
                        from_idx,
                        r.owner_id,
                    )
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query!("UPDATE executor.runs SET next_step = $2 WHERE id = $1", r.run_id, from_idx)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            created.push(r.clone());
        }
        for &pilot in prune {
            sqlx::query!(
                "DELETE FROM executor.runs WHERE pilot_id = $1 AND status NOT IN ($3, $4, $5) AND id IN (
                     SELECT id FROM executor.runs WHERE pilot_id = $1 ORDER BY created_at DESC, id DESC OFFSET $2)",
                pilot,
                keep,
                run::QUEUED,
                run::RUNNING,
                run::AWAITING_APPROVAL,
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(created)
    }

    /// Takes (or renews) the lease of a run that is queued or running and not held
    /// by a live executor; returns what is needed to execute it.
    pub async fn claim(&self, id: Uuid, me: &str, lease: Duration) -> Result<Option<Claimed>, sqlx::Error> {
        // One statement: the lease, the payload and the finished steps' outputs.
        let row = sqlx::query!(
            r#"UPDATE executor.runs r
             SET lease_owner = $2, lease_until = now() + $3, status = $5,
                 started_at = COALESCE(r.started_at, now())
             WHERE r.id = $1 AND r.status IN ($4, $5)
               AND (r.lease_owner IS NULL OR r.lease_until < now() OR r.lease_owner = $2)
             RETURNING r.owner_id, r.pilot_id, r.pilot_version, r.next_step,
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
            payload,
            outputs,
        }))
    }

    /// Extends a lease; false if the run is no longer ours (cancelled, deleted, taken).
    pub async fn renew(&self, id: Uuid, me: &str, lease: Duration) -> Result<bool, sqlx::Error> {
        let done = sqlx::query!(
            "UPDATE executor.runs SET lease_until = now() + $3
             WHERE id = $1 AND lease_owner = $2 AND status = $4",
            id,
            me,
            interval(lease),
            run::RUNNING,
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Stores a step's state and moves the run's cursor, while we hold the lease.
    /// `None` if the run is no longer ours.
    pub async fn record_step(
        &self,
        run_id: Uuid,
        me: &str,
        rec: &StepRecord,
        next_step: i32,
    ) -> Result<Option<RunState>, sqlx::Error> {
        self.record_steps(run_id, me, std::slice::from_ref(rec), next_step).await
    }

    /// Stores steps that ran back to back without leaving the server (local
    /// steps, whose records are kept in memory until something else happens) and
    /// moves the run's cursor, in one transaction, while we hold the lease. `None`
    /// if the run is no longer ours (then nothing is written).
    pub async fn record_steps(
        &self,
        run_id: Uuid,
        me: &str,
        recs: &[StepRecord],
        next_step: i32,
    ) -> Result<Option<RunState>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let state = sqlx::query!(
            "UPDATE executor.runs SET next_step = $3, event_seq = event_seq + $5
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

    /// Stores the records of steps passed over (skipped).
    pub async fn skip_steps(
        &self,
        run_id: Uuid,
        owner: Uuid,
        steps: &[StepRecord],
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        for rec in steps {
            upsert_step(&mut tx, run_id, owner, rec).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Pauses a run before step `idx` for a human decision (creating the approval
    /// once) and releases the lease. Returns the state, or None if not ours.
    #[allow(clippy::too_many_arguments)]
    pub async fn await_approval(
        &self,
        run_id: Uuid,
        me: &str,
        rec: &StepRecord,
        message: &str,
        expires_at: OffsetDateTime,
    ) -> Result<Option<RunState>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let state = sqlx::query!(
            "UPDATE executor.runs
             SET status = $4, next_step = $5, lease_owner = NULL, lease_until = NULL, event_seq = event_seq + 1
             WHERE id = $1 AND lease_owner = $2 AND status = $3
             RETURNING owner_id, pilot_id, event_seq",
            run_id,
            me,
            run::RUNNING,
            run::AWAITING_APPROVAL,
            rec.idx,
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

    /// The decision on step `idx` of a run, if any: (status, decided_by, comment).
    pub async fn approval(
        &self,
        run_id: Uuid,
        idx: i32,
    ) -> Result<Option<(i16, Option<Uuid>, Option<String>)>, sqlx::Error> {
        Ok(sqlx::query!(
            "SELECT status, decided_by, comment FROM executor.approvals WHERE run_id = $1 AND step_idx = $2",
            run_id,
            idx
        )
        .fetch_optional(&self.pool)
        .await?
        .map(|r| (r.status, r.decided_by, r.comment)))
    }

    /// Ends a run we hold: the steps not stored yet (`steps`, see
    /// [`SystemStore::record_steps`]), terminal status, error, lease released, job
    /// finished — in one transaction.
    pub async fn finish(
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
                     event_seq = event_seq + 1 + $6
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

    /// Gives up a lease without finishing (shutdown, a dependency down): the run
    /// is retried after `delay` by whichever executor's reaper sees it first.
    pub async fn release(&self, run_id: Uuid, me: &str, delay: Duration) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "UPDATE executor.runs SET lease_until = now() + $3 WHERE id = $1 AND lease_owner = $2",
            run_id,
            me,
            interval(delay),
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Releases every lease this executor holds (graceful shutdown).
    pub async fn release_all(&self, me: &str) -> Result<u64, sqlx::Error> {
        let done = sqlx::query!(
            "UPDATE executor.runs SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1 AND status = $2",
            me,
            run::RUNNING,
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Unfinished runs nobody holds: queued and never picked up (after a grace of
    /// `unclaimed_after`), or running with an expired lease.
    pub async fn orphans(&self, unclaimed_after: Duration, limit: i64) -> Result<Vec<Uuid>, sqlx::Error> {
        sqlx::query_scalar!(
            "SELECT id FROM executor.runs
             WHERE status IN ($1, $2)
               AND ((lease_owner IS NULL AND lease_until IS NULL AND created_at < now() - $3::interval)
                    OR lease_until < now())
             ORDER BY created_at LIMIT $4",
            run::QUEUED,
            run::RUNNING,
            interval(unclaimed_after),
            limit,
        )
        .fetch_all(&self.pool)
        .await
    }

    /// Expires pending approvals past their deadline; their runs end EXPIRED.
    pub async fn expire_approvals(&self) -> Result<Vec<RunState>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let runs = sqlx::query!(
            "UPDATE executor.approvals SET status = $2, decided_at = now()
             WHERE status = $1 AND expires_at < now()
             RETURNING run_id, step_idx",
            approval::PENDING,
            approval::EXPIRED,
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut states = Vec::new();
        for r in runs {
            sqlx::query!(
                "UPDATE executor.step_runs SET status = $3, error = 'the approval expired', finished_at = now()
                 WHERE run_id = $1 AND idx = $2",
                r.run_id,
                r.step_idx,
                step::CANCELLED,
            )
            .execute(&mut *tx)
            .await?;
            let state = sqlx::query!(
                "UPDATE executor.runs SET status = $2, error = 'the approval expired before anyone decided',
                        finished_at = now(), event_seq = event_seq + 1
                 WHERE id = $1 AND status = $3
                 RETURNING owner_id, pilot_id, event_seq, job_id",
                r.run_id,
                run::EXPIRED,
                run::AWAITING_APPROVAL,
            )
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(s) = state {
                if let Some(job) = s.job_id {
                    sqlx::query!(
                        "UPDATE executor.jobs SET finished_at = now() WHERE id = $1 AND finished_at IS NULL",
                        job
                    )
                    .execute(&mut *tx)
                    .await?;
                }
                states.push(RunState {
                    id: r.run_id,
                    owner_id: s.owner_id,
                    pilot_id: s.pilot_id,
                    status: run::EXPIRED,
                    seq: s.event_seq,
                });
            }
        }
        tx.commit().await?;
        Ok(states)
    }

    /// Deletes jobs (trigger payloads) that finished before `before`.
    pub async fn sweep_jobs(&self, before: OffsetDateTime) -> Result<u64, sqlx::Error> {
        let done = sqlx::query!("DELETE FROM executor.jobs WHERE finished_at < $1", before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Deletes finished runs beyond the newest `keep` of every Pilot (those the
    /// intake could not delete yet because they were unfinished then).
    pub async fn prune_runs(&self, keep: i64) -> Result<u64, sqlx::Error> {
        let done = sqlx::query!(
            "DELETE FROM executor.runs WHERE status NOT IN ($2, $3, $4) AND id IN (
                 SELECT id FROM (
                     SELECT id, row_number() OVER (PARTITION BY pilot_id ORDER BY created_at DESC, id DESC) AS n
                     FROM executor.runs
                     WHERE pilot_id IN (SELECT pilot_id FROM executor.runs GROUP BY pilot_id HAVING count(*) > $1)
                 ) ranked
                 WHERE n > $1)",
            keep,
            run::QUEUED,
            run::RUNNING,
            run::AWAITING_APPROVAL,
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Deletes a Pilot's runs (with steps and approvals) and jobs.
    pub async fn delete_pilot(&self, owner: Uuid, pilot: Uuid) -> Result<(u64, u64), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let runs =
            sqlx::query!("DELETE FROM executor.runs WHERE owner_id = $1 AND pilot_id = $2", owner, pilot)
                .execute(&mut *tx)
                .await?;
        let jobs =
            sqlx::query!("DELETE FROM executor.jobs WHERE owner_id = $1 AND pilot_id = $2", owner, pilot)
                .execute(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok((runs.rows_affected(), jobs.rows_affected()))
    }

    /// Deletes everything of an owner: runs (steps, approvals) and jobs.
    pub async fn delete_owner(&self, owner: Uuid) -> Result<(u64, u64), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let runs =
            sqlx::query!("DELETE FROM executor.runs WHERE owner_id = $1", owner).execute(&mut *tx).await?;
        let jobs =
            sqlx::query!("DELETE FROM executor.jobs WHERE owner_id = $1", owner).execute(&mut *tx).await?;
        // Step rows and approvals go with their runs; these catch any stragglers.
        sqlx::query!("DELETE FROM executor.step_runs WHERE owner_id = $1", owner).execute(&mut *tx).await?;
        sqlx::query!("DELETE FROM executor.approvals WHERE owner_id = $1", owner).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok((runs.rows_affected(), jobs.rows_affected()))
    }

    /// The scheduler's last fired tick, set to `default` the first time.
    pub async fn last_tick(&self, default: OffsetDateTime) -> Result<OffsetDateTime, sqlx::Error> {
        sqlx::query_scalar!(
            "INSERT INTO executor.scheduler_state (id, last_tick) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET last_tick = executor.scheduler_state.last_tick
             RETURNING last_tick",
            default
        )
        .fetch_one(&self.pool)
        .await
    }

    /// Advances the scheduler's high-water mark (never backwards).
    pub async fn advance_tick(&self, to: OffsetDateTime) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "UPDATE executor.scheduler_state SET last_tick = GREATEST(last_tick, $1) WHERE id = 1",
            to
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A run's status (None if it is gone).
    pub async fn status(&self, id: Uuid) -> Result<Option<i16>, sqlx::Error> {
        sqlx::query_scalar!("SELECT status FROM executor.runs WHERE id = $1", id)
            .fetch_optional(&self.pool)
            .await
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
             finished_at = EXCLUDED.finished_at",
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
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Postgres `text` and `jsonb` cannot hold NUL (U+0000). A step output, error or
/// message carrying one (copied from a trigger payload, say) is stored with U+FFFD
/// in its place, so the run still ends instead of failing to be stored forever.
fn pg_text(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

/// [`pg_text`] for every string and key of a JSON value.
fn pg_json(v: &Value) -> Value {
    fn has_nul(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(a) => a.iter().any(has_nul),
            Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            _ => false,
        }
    }
    fn clean(v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(pg_text(s)),
            Value::Array(a) => Value::Array(a.iter().map(clean).collect()),
            Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (pg_text(k), clean(v))).collect()),
            other => other.clone(),
        }
    }
    if has_nul(v) { clean(v) } else { v.clone() }
}
