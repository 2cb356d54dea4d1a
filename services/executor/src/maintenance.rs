//! Background loops: the reaper (runs with an expired lease), approval expiry,
//! the job retention sweeper, and the scheduler.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream;
use bizops_bus::Subjects;
use bizops_proto::{
    events::v1 as ev,
    timestamp::{from_proto, to_proto},
};
use bizops_runtime::{Stopped, clock::Clock};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    clients::Clients, config::RunsConfig, engine::Engine, events::Events, progress::Counter,
    system::SystemStore,
};

/// Runs `work` every `every` until `stopped`, counting completed passes in `passes`.
async fn every<F, Fut>(every: Duration, passes: Counter, stopped: Stopped, mut work: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let stop = stopped.wait();
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => {
                work().await;
                passes.bump();
            }
        }
    }
}

/// Hands runs nobody holds (an executor died, or intake's hand-off was lost) to
/// this executor.
pub async fn reaper(system: SystemStore, engine: Engine, interval: Duration, stopped: Stopped) {
    let passes = engine.progress().reaper_passes().clone();
    every(interval, passes, stopped, || {
        let (system, engine) = (system.clone(), engine.clone());
        async move {
            match system.orphans(Duration::from_secs(2), 256, engine.owner_concurrency()).await {
                Ok(ids) => {
                    if !ids.is_empty() {
                        tracing::debug!(count = ids.len(), "reaper found runs to resume");
                        metrics::counter!("executor_runs_reaped_total").increment(ids.len() as u64);
                    }
                    for (id, owner) in ids {
                        // The owner may have more runs waiting than it had free
                        // slots: each of these hands out the next as it ends.
                        engine.note_waiting(owner);
                        engine.enqueue(id);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reaper query failed"),
            }
        }
    })
    .await;
}

/// Publishes the executors' workload, what the chart's autoscaler scales on:
/// the queue lag — triggers not yet taken in (the intake consumer's pending and
/// unacknowledged messages, `executor_triggers_pending`) plus runs an executor
/// could start now (`executor_runs_ready`, see [`SystemStore::workload`]), as
/// `executor_queue_lag` — and with the runs executing (`executor_runs_executing`)
/// as `executor_load`. Lag alone would fall to zero whenever the executors keep
/// up and scale away the replicas doing the work. Every replica reports the same
/// suite-wide figures (the metrics adapter takes their maximum). Runs waiting
/// for their owner's slots are not counted: more executors would not run them
/// sooner.
pub async fn workload(
    system: SystemStore,
    js: jetstream::Context,
    stream: (String, String),
    per_owner: i64,
    interval: Duration,
    stopped: Stopped,
) {
    every(interval, Counter::default(), stopped, || {
        let (system, js, (stream, consumer)) = (system.clone(), js.clone(), stream.clone());
        async move {
            let pending = match js.get_stream(&stream).await {
                Ok(s) => match s.consumer_info(&consumer).await {
                    Ok(info) => Some(info.num_pending + info.num_ack_pending as u64),
                    Err(e) => {
                        tracing::debug!(error = %e, "no intake consumer info");
                        None
                    }
                },
                Err(e) => {
                    tracing::debug!(error = %e, "no triggers stream info");
                    None
                }
            };
            let work = match system.workload(per_owner).await {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "could not measure the executors' workload");
                    None
                }
            };
            if let Some(p) = pending {
                metrics::gauge!("executor_triggers_pending").set(p as f64);
            }
            if let Some(w) = work {
                metrics::gauge!("executor_runs_ready").set(w.ready as f64);
                metrics::gauge!("executor_runs_executing").set(w.executing as f64);
            }
            if let (Some(p), Some(w)) = (pending, work) {
                let lag = p as f64 + w.ready as f64;
                metrics::gauge!("executor_queue_lag").set(lag);
                metrics::gauge!("executor_load").set(lag + w.executing as f64);
            }
        }
    })
    .await;
}

/// Ends runs whose approval passed its deadline (EXPIRED).
pub async fn approvals(
    system: SystemStore,
    events: Events,
    interval: Duration,
    passes: Counter,
    stopped: Stopped,
) {
    every(interval, passes, stopped, || {
        let (system, events) = (system.clone(), events.clone());
        async move {
            match system.expire_approvals().await {
                Ok(states) => {
                    for state in states {
                        tracing::info!(run_id = %state.id, "approval expired; run ended");
                        events.publish(&state, None).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "approval expiry failed"),
            }
        }
    })
    .await;
}

/// Every `runs.sweep_interval`: deletes finished jobs (trigger payloads) older
/// than `runs.job_retention` by `clock`, and finished runs beyond the newest
/// `runs.max_per_pilot` of each Pilot.
pub async fn sweeper(
    system: SystemStore,
    clock: Arc<dyn Clock>,
    runs: RunsConfig,
    passes: Counter,
    stopped: Stopped,
) {
    let (retention, keep) = (runs.job_retention, runs.max_per_pilot);
    every(runs.sweep_interval, passes, stopped, || {
        let (system, now) = (system.clone(), clock.now());
        async move {
            match system.sweep_jobs(now - retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "swept finished jobs past retention"),
                Err(e) => tracing::warn!(error = %e, "job sweep failed"),
            }
            match system.prune_runs(keep).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "pruned finished runs beyond the per-Pilot cap"),
                Err(e) => tracing::warn!(error = %e, "run prune failed"),
            }
            // AI usage counts only today's; earlier days are kept one day more.
            if let Err(e) = system.sweep_ai_usage((now - Duration::from_secs(24 * 3600)).date()).await {
                tracing::warn!(error = %e, "AI usage sweep failed");
            }
        }
    })
    .await;
}

/// Pages of due ticks one scheduler pass fires at most (1,000 ticks each).
const MAX_PAGES_PER_PASS: usize = 20;

/// The scheduler: fires due schedule ticks through the same path as webhooks.
/// Several replicas may fire the same tick; the trigger's `Nats-Msg-Id`
/// (`<pilot>:schedule:<schedule>:<tick>`) and the runs' unique key make it one run.
#[derive(Clone)]
pub struct Scheduler {
    /// Store for the shared high-water mark.
    pub system: SystemStore,
    /// Catalog access.
    pub clients: Clients,
    /// JetStream.
    pub js: jetstream::Context,
    /// Names.
    pub subjects: Subjects,
    /// Tick interval.
    pub tick: Duration,
    /// Longest catch-up after downtime.
    pub max_catch_up: Duration,
    /// Ticks completed.
    pub passes: Counter,
}

impl Scheduler {
    /// Runs until `stopped`.
    pub async fn run(self, stopped: Stopped) {
        let tick = self.tick;
        every(tick, self.passes.clone(), stopped, || {
            let s = self.clone();
            async move {
                if let Err(e) = s.fire(OffsetDateTime::now_utc()).await {
                    tracing::warn!(error = %e, "scheduler tick failed; will catch up");
                }
            }
        })
        .await;
    }

    /// Fires every tick in `(last fired, now]`, page by page, and advances the
    /// mark to what was handed out: the window's end once every page is fired, or
    /// — when a pass stops after `MAX_PAGES_PER_PASS` pages — to just before the
    /// last tick fired (ticks at that instant on a later page are fired by the
    /// next pass; those already fired collapse on their message id). A failure
    /// mid-window leaves the mark where it was.
    pub async fn fire(&self, now: OffsetDateTime) -> anyhow::Result<usize> {
        let floor = now - self.max_catch_up;
        let last = self.system.last_tick(now - self.tick).await?.max(floor);
        if last >= now {
            return Ok(0);
        }
        // The catalog answers windows of at most 24 hours.
        let until = now.min(last + Duration::from_secs(24 * 3600));
        let mut fired = 0;
        let mut token = String::new();
        let mut mark = until;
        for page in 0.. {
            let (due, next) = self.clients.due(to_proto(last), to_proto(until), token).await?;
            fired += self.publish(&due, now).await?;
            if next.is_empty() {
                break;
            }
            let before_last = due
                .last()
                .and_then(|d| d.tick.as_ref())
                .and_then(from_proto)
                .map(|tick| tick - time::Duration::microseconds(1));
            // Stop early only when that moves the mark (a page of one instant's
            // ticks never stalls the scheduler).
            if page + 1 >= MAX_PAGES_PER_PASS
                && let Some(before_last) = before_last.filter(|m| *m > last)
            {
                mark = before_last;
                break;
            }
            token = next;
        }
        self.system.advance_tick(mark.max(last)).await?;
        if fired > 0 {
            metrics::counter!("executor_schedule_ticks_fired_total").increment(fired as u64);
            tracing::info!(fired, "schedule ticks fired");
        }
        Ok(fired)
    }

    /// Publishes due ticks as triggers; how many.
    async fn publish(
        &self,
        due: &[bizops_proto::catalog::v1::DueSchedule],
        now: OffsetDateTime,
    ) -> anyhow::Result<usize> {
        let mut fired = 0;
        for d in due {
            let (Ok(owner), Ok(pilot), Some(tick)) = (
                d.owner_id.parse::<Uuid>(),
                d.pilot_id.parse::<Uuid>(),
                d.tick.as_ref().and_then(from_proto),
            ) else {
                continue;
            };
            let key = format!("schedule:{}:{}", d.schedule_id, tick.unix_timestamp());
            let trigger = ev::Trigger {
                trigger_id: Uuid::now_v7().to_string(),
                owner_id: owner.to_string(),
                pilot_id: pilot.to_string(),
                pilot_version: d.pilot_version,
                idempotency_key: key.clone(),
                source: ev::TriggerSource::Schedule as i32,
                payload: serde_json::to_vec(&serde_json::json!({
                    "schedule_id": d.schedule_id,
                    "scheduled_for": tick.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                }))?
                .into(),
                content_type: "application/json".into(),
                accepted_at: Some(to_proto(now)),
                schedule_id: d.schedule_id.clone(),
                scheduled_for: d.tick,
                ..Default::default()
            };
            bizops_bus::publish(
                &self.js,
                self.subjects.trigger(owner, pilot),
                Some(&Subjects::trigger_msg_id(pilot, &key)),
                bizops_bus::encode(&trigger),
            )
            .await?;
            fired += 1;
        }
        Ok(fired)
    }
}
