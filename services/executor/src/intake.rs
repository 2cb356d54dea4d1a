//! Intake: a durable pull consumer on `<P>_TRIGGERS` (explicit ack, ack-wait,
//! max-deliver) turns each trigger into a job and a run in one transaction per
//! batch, and only then acks. A redelivery never creates a second run (unique on
//! Pilot + idempotency key). Messages that cannot be taken in go to `<P>_DLQ`.
//! Also: the pilot-deleted events consumer.

use std::{collections::HashMap, time::Duration};

use async_nats::jetstream::{
    self, AckKind,
    consumer::{AckPolicy, pull},
};
use bizops_bus::Subjects;
use bizops_proto::{
    events::v1 as ev,
    timestamp::{from_proto, to_proto},
};
use futures_util::StreamExt as _;
use prost::Message as _;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    clients::{Clients, Lookup},
    config::IntakeConfig,
    engine::Engine,
    model::{Claimed, NewRun},
    system::SystemStore,
};

/// The intake loop's dependencies.
#[derive(Clone)]
pub struct Intake {
    /// JetStream.
    pub js: jetstream::Context,
    /// Names.
    pub subjects: Subjects,
    /// Settings.
    pub config: IntakeConfig,
    /// System store.
    pub system: SystemStore,
    /// Catalog/vault.
    pub clients: Clients,
    /// Where new runs go.
    pub engine: Engine,
    /// Runs kept per Pilot.
    pub keep: i64,
    /// Runs taken in per Pilot since its history was last pruned.
    pub unpruned: std::sync::Arc<std::sync::Mutex<HashMap<Uuid, i64>>>,
}

impl Intake {
    /// Creates (idempotently) the durable consumer and pulls until `stopped`.
    pub async fn run(self, stopped: bizops_runtime::Stopped) {
        let stop = stopped.clone().wait();
        tokio::pin!(stop);
        loop {
            let result = tokio::select! {
                () = &mut stop => return,
                r = self.pull(stopped.clone()) => r,
            };
            match result {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "intake interrupted; reconnecting");
                    tokio::select! {
                        () = &mut stop => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    async fn pull(&self, stopped: bizops_runtime::Stopped) -> anyhow::Result<()> {
        let stream = self.js.get_stream(self.subjects.triggers_stream()).await?;
        let consumer = stream
            .get_or_create_consumer(
                &self.config.consumer,
                pull::Config {
                    durable_name: Some(self.config.consumer.clone()),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: self.config.ack_wait,
                    max_deliver: self.config.max_deliver,
                    max_ack_pending: 20_000,
                    ..Default::default()
                },
            )
            .await?;
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(self.config.batch)
            .expires(Duration::from_secs(5))
            .messages()
            .await?;
        loop {
            if stopped.is_stopped() {
                return Ok(());
            }
            let Some(first) = messages.next().await else { return Ok(()) };
            // In flight until its runs are with the engine (or it is handed back).
            let _held = self.engine.progress().intake_in_flight().hold();
            let mut batch = vec![first?];
            while batch.len() < self.config.batch {
                match tokio::time::timeout(Duration::from_millis(2), messages.next()).await {
                    Ok(Some(m)) => batch.push(m?),
                    _ => break,
                }
            }
            self.process(batch).await;
        }
    }

    async fn dead_letter(&self, msg: &jetstream::Message, trigger: Option<ev::Trigger>, reason: &str) {
        let (owner, pilot) = trigger
            .as_ref()
            .and_then(|t| Some((t.owner_id.parse::<Uuid>().ok()?, t.pilot_id.parse::<Uuid>().ok()?)))
            .unwrap_or((Uuid::nil(), Uuid::nil()));
        let deliveries = msg.info().map(|i| u64::try_from(i.delivered).unwrap_or(0)).unwrap_or(0);
        let raw = if trigger.is_none() { msg.payload.to_vec() } else { Vec::new() };
        let letter = ev::DeadLetter {
            trigger,
            raw,
            reason: reason.to_owned(),
            deliveries,
            dead_lettered_at: Some(to_proto(OffsetDateTime::now_utc())),
        };
        match bizops_bus::publish(
            &self.js,
            self.subjects.dlq(owner, pilot),
            None,
            bizops_bus::encode(&letter),
        )
        .await
        {
            Ok(_) => {
                metrics::counter!("executor_dead_letters_total").increment(1);
                tracing::warn!(reason, "trigger dead-lettered");
                let _ = msg.ack_with(AckKind::Term).await;
            }
            Err(e) => tracing::warn!(error = %e, "could not dead-letter; the message will be redelivered"),
        }
    }

    fn last_delivery(&self, msg: &jetstream::Message) -> bool {
        msg.info().is_ok_and(|i| i.delivered >= self.config.max_deliver)
    }

    async fn process(&self, batch: Vec<jetstream::Message>) {
        let started = std::time::Instant::now();
        let mut accepted: Vec<(jetstream::Message, NewRun)> = Vec::with_capacity(batch.len());
        for msg in batch {
            match self.decode(&msg) {
                Ok(run) => accepted.push((msg, run)),
                Err(rejected) => {
                    let (trigger, reason) = *rejected;
                    self.dead_letter(&msg, trigger, &reason).await;
                }
            }
        }

        // The pinned versions must exist (a deleted Pilot's late triggers are dropped).
        let mut versions: HashMap<(Uuid, Uuid, i64), Result<bool, ()>> = HashMap::new();
        for (_, r) in &accepted {
            versions.entry((r.owner_id, r.pilot_id, r.pilot_version)).or_insert(Err(()));
        }
        let lookups = futures_util::future::join_all(versions.keys().copied().map(|(o, p, v)| {
            let clients = self.clients.clone();
            async move { ((o, p, v), clients.fetch_version(o, p, v).await) }
        }))
        .await;
        for (key, lookup) in lookups {
            versions.insert(
                key,
                match lookup {
                    Ok(Lookup::Found(_)) => Ok(true),
                    Ok(Lookup::Gone) => Ok(false),
                    Err(_) => Err(()),
                },
            );
        }
        let mut batch = Vec::with_capacity(accepted.len());
        let now = OffsetDateTime::now_utc();
        for (msg, run) in accepted {
            match versions.get(&(run.owner_id, run.pilot_id, run.pilot_version)) {
                Some(Ok(true)) => {
                    metrics::histogram!("executor_queue_lag_seconds")
                        .record((now - run.accepted_at).as_seconds_f64().max(0.0));
                    let span = trigger_span(&msg, &run);
                    batch.push((msg, run, span));
                }
                Some(Ok(false)) => {
                    tracing::info!(pilot_id = %run.pilot_id, "trigger for a Pilot that no longer exists dropped");
                    let _ = msg.ack().await;
                }
                _ if self.last_delivery(&msg) => {
                    self.dead_letter(&msg, None, "the catalog was unavailable").await
                }
                _ => {
                    let _ = msg.ack_with(AckKind::Nak(Some(Duration::from_secs(2)))).await;
                }
            }
        }
        if !batch.is_empty() {
            self.record(batch, started).await;
        }
    }

    /// Records taken triggers as jobs and runs in one transaction, then acks them
    /// and hands the runs to the engine. If the database refuses the batch, each
    /// trigger is tried on its own, so one it cannot store (redelivered until
    /// dead-lettered) never holds up the others.
    async fn record(
        &self,
        batch: Vec<(jetstream::Message, NewRun, tracing::Span)>,
        started: std::time::Instant,
    ) {
        let mut to_ack = Vec::with_capacity(batch.len());
        let mut runs = Vec::with_capacity(batch.len());
        let mut spans = HashMap::with_capacity(batch.len());
        for (msg, run, span) in batch {
            spans.insert(run.run_id, span);
            to_ack.push(msg);
            runs.push(run);
        }
        // Pruning a Pilot's history walks its newest `keep` runs, so it is done
        // once per `keep / 10` new runs of that Pilot, not in every batch; the
        // history may hold up to a tenth more until then or the next sweep.
        let prune: Vec<Uuid> = match self.unpruned.lock() {
            Ok(mut counts) => {
                if counts.len() > 100_000 {
                    counts.clear(); // the sweep prunes what this forgets
                }
                let every = (self.keep / 10).max(1);
                for r in &runs {
                    *counts.entry(r.pilot_id).or_default() += 1;
                }
                let due: Vec<Uuid> = counts.iter().filter(|(_, n)| **n >= every).map(|(p, _)| *p).collect();
                for p in &due {
                    counts.remove(p);
                }
                due
            }
            Err(_) => runs.iter().map(|r| r.pilot_id).collect(),
        };
        let lease = self.engine.lease();
        // Claimed with the insert. The engine renews a third of a lease after a run
        // starts; starting within a sixth keeps half a lease of margin. A run that
        // waits longer is claimed (and so renewed) as usual.
        let valid_until = std::time::Instant::now() + lease / 6;
        match self.system.intake(&runs, self.keep, &prune, self.engine.me(), lease).await {
            Ok(created) => {
                for msg in &to_ack {
                    let _ = msg.ack().await;
                }
                metrics::counter!("executor_triggers_taken_total").increment(to_ack.len() as u64);
                metrics::histogram!("executor_intake_batch_seconds").record(started.elapsed().as_secs_f64());
                for run in created {
                    metrics::counter!("executor_runs_created_total").increment(1);
                    let enqueue = || match run.replay {
                        // A replay from a step starts from the copied outputs: claimed as usual.
                        Some((_, Some(_))) => self.engine.enqueue(run.run_id),
                        _ => self.engine.enqueue_claimed(
                            Claimed {
                                id: run.run_id,
                                owner_id: run.owner_id,
                                pilot_id: run.pilot_id,
                                pilot_version: run.pilot_version,
                                next_step: 0,
                                takeovers: 0,
                                payload: Some((run.payload.clone(), run.content_type.clone())),
                                outputs: Vec::new(),
                                attempts_done: 0,
                                executed_ms: 0,
                            },
                            valid_until,
                        ),
                    };
                    match spans.get(&run.run_id) {
                        Some(span) => span.in_scope(enqueue),
                        None => enqueue(),
                    }
                }
            }
            Err(e) if runs.len() > 1 => {
                // One trigger the database refuses must not hold up the others:
                // take them in one at a time.
                tracing::warn!(error = %e, triggers = runs.len(), "could not record a batch; recording one by one");
                for (msg, run) in to_ack.into_iter().zip(runs) {
                    let span = spans.remove(&run.run_id).unwrap_or_else(tracing::Span::none);
                    Box::pin(self.record(vec![(msg, run, span)], started)).await;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not record a trigger; it will be redelivered");
                for msg in &to_ack {
                    if self.last_delivery(msg) {
                        self.dead_letter(msg, None, "the database refused it").await;
                    } else {
                        let _ = msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
                    }
                }
            }
        }
    }

    /// A trigger message as a new run, or (trigger if decodable, reason) to dead-letter.
    fn decode(&self, msg: &jetstream::Message) -> Result<NewRun, Box<(Option<ev::Trigger>, String)>> {
        let t = ev::Trigger::decode(msg.payload.as_ref())
            .map_err(|_| Box::new((None, "not a Trigger message".to_owned())))?;
        let bad = |reason: &str| Box::new((Some(t.clone()), reason.to_owned()));
        let owner: Uuid = t.owner_id.parse().map_err(|_| bad("owner_id is not a UUID"))?;
        let pilot: Uuid = t.pilot_id.parse().map_err(|_| bad("pilot_id is not a UUID"))?;
        let trigger_id: Uuid = t.trigger_id.parse().map_err(|_| bad("trigger_id is not a UUID"))?;
        if msg.subject.as_str() != self.subjects.trigger(owner, pilot) {
            return Err(bad("the subject does not match the trigger's owner and Pilot"));
        }
        if t.pilot_version < 1 {
            return Err(bad("pilot_version is missing"));
        }
        if t.idempotency_key.is_empty() || t.idempotency_key.len() > 256 {
            return Err(bad("idempotency_key must be 1-256 characters"));
        }
        // Postgres text cannot hold NUL: such a trigger would fail its whole batch.
        if t.idempotency_key.contains('\0') || t.content_type.contains('\0') {
            return Err(bad("idempotency_key and content_type must not contain NUL"));
        }
        if t.payload.len() > self.config.max_payload_bytes {
            return Err(bad("the payload is too large"));
        }
        let accepted_at = t.accepted_at.as_ref().and_then(from_proto).unwrap_or_else(OffsetDateTime::now_utc);
        let replay = match t.replay_of_run_id.parse::<Uuid>() {
            Ok(original) => Some((original, Some(t.replay_from_step_key.clone()).filter(|k| !k.is_empty()))),
            Err(_) => None,
        };
        Ok(NewRun {
            run_id: Uuid::now_v7(),
            trigger_id,
            owner_id: owner,
            pilot_id: pilot,
            pilot_version: t.pilot_version,
            idempotency_key: t.idempotency_key,
            source: i16::try_from(t.source).unwrap_or(0),
            payload: t.payload.to_vec(),
            content_type: t.content_type,
            accepted_at,
            replay,
        })
    }
}

/// The span of one taken trigger, continuing the trace the publisher (the gateway's
/// webhook request, a manual run's RPC) put in the message headers.
fn trigger_span(msg: &jetstream::Message, run: &NewRun) -> tracing::Span {
    let span = tracing::info_span!(
        "executor.trigger",
        otel.kind = "consumer",
        messaging.system = "nats",
        trigger_id = %run.trigger_id,
        pilot_id = %run.pilot_id,
    );
    if let Some(headers) = &msg.headers {
        bizops_telemetry::propagation::set_remote_parent(
            &span,
            bizops_telemetry::propagation::extract_nats(headers),
        );
    }
    span
}

/// Consumes pilot-deleted events and removes that Pilot's runs, jobs and queued
/// triggers.
pub async fn pilot_deleted(
    js: jetstream::Context,
    subjects: Subjects,
    deleter: crate::deletion::Deleter,
    stopped: bizops_runtime::Stopped,
) {
    let stop = stopped.clone().wait();
    tokio::pin!(stop);
    loop {
        let result = tokio::select! {
            () = &mut stop => return,
            r = consume_deletions(&js, &subjects, &deleter) => r,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "pilot-deleted consumer interrupted; reconnecting");
        }
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// The durable consumer of pilot-deleted events (shared by every replica).
pub const PILOT_DELETED_CONSUMER: &str = "executor-pilot-deleted";

/// The durable consumers the executor reads, as (stream, consumer): triggers and
/// pilot-deleted events. With nothing pending or awaiting an ack on them and its
/// [`crate::progress::Progress::idle`], the executor has done all it was given.
pub fn durable_consumers(config: &IntakeConfig, subjects: &Subjects) -> [(String, String); 2] {
    [
        (subjects.triggers_stream(), config.consumer.clone()),
        (subjects.events_stream(), PILOT_DELETED_CONSUMER.to_owned()),
    ]
}

async fn consume_deletions(
    js: &jetstream::Context,
    subjects: &Subjects,
    deleter: &crate::deletion::Deleter,
) -> anyhow::Result<()> {
    let stream = js.get_stream(subjects.events_stream()).await?;
    let consumer = stream
        .get_or_create_consumer(
            PILOT_DELETED_CONSUMER,
            pull::Config {
                durable_name: Some(PILOT_DELETED_CONSUMER.into()),
                filter_subject: format!("{}.events.*.pilot_deleted", subjects.prefix()),
                ack_policy: AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await?;
    let mut messages = consumer.messages().await?;
    while let Some(msg) = messages.next().await {
        let msg = msg?;
        match ev::PilotDeleted::decode(msg.payload.as_ref()) {
            Ok(event) => match (event.owner_id.parse::<Uuid>(), event.pilot_id.parse::<Uuid>()) {
                (Ok(owner), Ok(pilot)) => match deleter.pilot(owner, pilot).await {
                    Ok((runs, jobs)) => {
                        tracing::info!(pilot_id = %pilot, runs, jobs, "deleted Pilot's runs removed");
                        let _ = msg.ack().await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not delete a Pilot's runs; will retry");
                        let _ = msg.ack_with(AckKind::Nak(Some(Duration::from_secs(2)))).await;
                    }
                },
                _ => {
                    let _ = msg.ack_with(AckKind::Term).await;
                }
            },
            Err(_) => {
                let _ = msg.ack_with(AckKind::Term).await;
            }
        }
    }
    Ok(())
}
