//! The executor's paths that must cross owners, on the system role
//! (`bizops_executor_system`, BYPASSRLS): intake (which creates runs already
//! leased), the reaper's search for orphaned runs, approval expiry, retention
//! sweeps, scheduler state, and Pilot/owner deletion. Keep it auditable.
//!
//! The writes of a run under its lease (claim, renew, steps, finish) are the
//! engine's, in [`crate::lease`], on the same role.

use std::time::Duration;

use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    model::{NewRun, RunState, approval, run, step},
    pg::interval,
};

/// The system-role store.
#[derive(Debug, Clone)]
pub struct SystemStore {
    pool: PgPool,
}

/// See [`SystemStore::workload`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    /// Runs an executor could start now.
    pub ready: i64,
    /// Runs holding a slot.
    pub executing: i64,
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

    /// What the executors have to do, over every owner: the runs executing now,
    /// and the runs an executor could start now — per owner, its runs waiting to
    /// execute (queued, claimed and waiting for a permit, left by an executor that
    /// died or released at a shutdown; not those waiting out a retry's back-off),
    /// at most the slots of `per_owner` it has free. An owner's runs beyond its
    /// slots are not counted: more executors would not run them sooner.
    pub async fn workload(&self, per_owner: i64) -> Result<Workload, sqlx::Error> {
        let row = sqlx::query!(
            r#"SELECT COALESCE(sum(LEAST(w.ready, GREATEST($3 - w.busy, 0))), 0)::bigint AS "ready!",
                      COALESCE(sum(w.busy), 0)::bigint AS "executing!"
             FROM (
                 SELECT count(*) FILTER (WHERE NOT (executing AND COALESCE(lease_until > now(), false))
                                           AND NOT (lease_owner IS NULL AND COALESCE(lease_until > now(), false)))
                            AS ready,
                        count(*) FILTER (WHERE executing AND COALESCE(lease_until > now(), false)) AS busy
                 FROM executor.runs WHERE status IN ($1, $2) GROUP BY owner_id
             ) w"#,
            run::QUEUED,
            run::RUNNING,
            per_owner,
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Workload { ready: row.ready, executing: row.executing })
    }

    /// Unfinished runs nobody holds: queued and never picked up (after a grace of
    /// `unclaimed_after`), running with an expired lease, waiting for a slot, or
    /// done waiting for a retry, with their owners. Oldest first, and per owner
    /// no more than the slots it has free of `per_owner` (the rest would only be
    /// turned away).
    pub async fn orphans(
        &self,
        unclaimed_after: Duration,
        limit: i64,
        per_owner: i64,
    ) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error> {
        let rows = sqlx::query!(
            r#"SELECT o.id AS "id!", o.owner_id AS "owner_id!" FROM (
                 SELECT r.id, r.owner_id, r.created_at,
                        row_number() OVER (PARTITION BY r.owner_id ORDER BY r.created_at, r.id) AS nth,
                        (SELECT count(*) FROM executor.runs x
                         WHERE x.owner_id = r.owner_id AND x.executing AND x.lease_until > now()) AS busy
                 FROM executor.runs r
                 WHERE r.status IN ($1, $2)
                   AND ((r.lease_owner IS NULL AND r.lease_until IS NULL AND r.created_at < now() - $3::interval)
                        OR r.lease_until < now())
             ) o
             WHERE o.nth <= $5 - o.busy
             ORDER BY o.created_at, o.id LIMIT $4"#,
            run::QUEUED,
            run::RUNNING,
            interval(unclaimed_after),
            limit,
            per_owner,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.id, r.owner_id)).collect())
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

    /// Deletes the AI usage of days before `before`.
    pub async fn sweep_ai_usage(&self, before: time::Date) -> Result<u64, sqlx::Error> {
        let done =
            sqlx::query!("DELETE FROM executor.ai_usage WHERE day < $1", before).execute(&self.pool).await?;
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

    /// Deletes everything of an owner: runs (steps, approvals), jobs and AI usage.
    pub async fn delete_owner(&self, owner: Uuid) -> Result<(u64, u64), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let runs =
            sqlx::query!("DELETE FROM executor.runs WHERE owner_id = $1", owner).execute(&mut *tx).await?;
        let jobs =
            sqlx::query!("DELETE FROM executor.jobs WHERE owner_id = $1", owner).execute(&mut *tx).await?;
        // Step rows and approvals go with their runs; these catch any stragglers.
        sqlx::query!("DELETE FROM executor.step_runs WHERE owner_id = $1", owner).execute(&mut *tx).await?;
        sqlx::query!("DELETE FROM executor.approvals WHERE owner_id = $1", owner).execute(&mut *tx).await?;
        sqlx::query!("DELETE FROM executor.ai_usage WHERE owner_id = $1", owner).execute(&mut *tx).await?;
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
}
