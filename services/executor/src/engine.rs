//! Executes runs: takes the lease, loads the pinned Pilot version, resolves this
//! run's credentials, renders and runs each step with timeout and retries, pauses
//! for approvals, records every step (redacted) and publishes live events. A run
//! resumes at its first unfinished step, so a finished step never runs again.
//!
//! One step goes: flush what local steps kept in memory (if this one may leave the
//! server) → the approval gate (`Engine::approval_gate`) → its attempts under its
//! [`StepPolicy`] → where the run goes next (`flow`) → its record. AI steps pick
//! their provider with `ai_provider`. The run's writes go through a [`LeaseStore`].

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bizops_proto::{
    catalog::v1::{self as pb, step::Kind},
    events::v1 as ev,
};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::{
    ai,
    clients::{Clients, Lookup},
    config::{ExecutorConfig, StepsConfig},
    events::Events,
    lease::{LeaseStore, PgLeaseStore},
    model::{Claimed, RunState, StepRecord, approval, run, step},
    net::{Guard, Network},
    progress::{Held, Progress},
    redact::Redactor,
    sandbox::Templates,
    steps::{self, Credential, StepEnv, StepError},
    template,
};

/// Everything run execution needs; cheap to clone.
#[derive(Clone)]
pub struct Engine<L = PgLeaseStore> {
    inner: Arc<Inner<L>>,
}

struct Inner<L> {
    me: String,
    config: ExecutorConfig,
    leases: L,
    clients: Clients,
    events: Events,
    templates: Templates,
    guard: Guard,
    http: reqwest::Client,
    permits: Arc<Semaphore>,
    running: Mutex<HashSet<Uuid>>,
    /// Owners with runs this replica turned away for want of a slot (or handed
    /// out from the reaper), each with a count of such notes: when one of their
    /// runs gives its slot up here, the oldest waiting one is handed out.
    waiting: Mutex<HashMap<Uuid, u64>>,
    /// Slot requests per owner: one transaction at a time per owner from this
    /// replica takes the slots of every request that arrived meanwhile (they wait
    /// here, not each holding a database connection in the owner's lock).
    slot_requests: Mutex<HashMap<Uuid, Vec<SlotRequest>>>,
    queue: mpsc::UnboundedSender<Queued>,
    progress: Progress,
}

/// How a step ended.
enum Outcome {
    /// Continue with the next step.
    Next,
    /// A condition stopped the run.
    Stop,
    /// Continue at this index.
    Jump(usize),
    /// Paused for an approval, or the run ended or is no longer ours.
    Paused,
}

/// What the approval gate decided about a step.
enum Gate {
    /// Run the step; for an approved step, the decision (an approval step's output).
    Open(Option<Value>),
    /// Not now: the run paused for a decision, was rejected, or failed.
    Closed,
}

/// One run in progress: what its steps share.
struct RunCtx<'a> {
    claimed: &'a Claimed,
    spec: &'a pb::PilotSpec,
    /// This run's credentials by name.
    credentials: &'a HashMap<String, Credential>,
    /// Hides the credentials' values in everything stored, published or logged.
    redactor: &'a Redactor,
    /// What templates see: `trigger`, `steps.<key>.output`, `secrets`.
    scope: Value,
    /// Local steps that ran and are not stored yet (see [`Engine::is_local`]).
    pending: Vec<Pending>,
    /// When the run took its slot (this stretch of execution began).
    slot_since: Instant,
}

/// A run's inputs, loaded before its first step.
struct Prepared {
    spec: Arc<pb::PilotSpec>,
    credentials: HashMap<String, Credential>,
    redactor: Redactor,
    scope: Value,
}

/// What an attempt produced: the output and, for AI steps, the provider's label.
type Produced = (Value, Option<String>);

/// How a step's attempts ended.
struct Tried {
    result: Result<Produced, StepError>,
    attempts: u32,
}

/// How a step is tried: the timeout of each attempt and the retries of
/// retryable failures. Each comes from the step, or the configured default
/// where the step leaves it unset (0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepPolicy {
    /// Per attempt.
    pub timeout: Duration,
    /// At least 1.
    pub max_attempts: u32,
    /// Before the second attempt (then doubling, with jitter).
    pub initial_backoff: Duration,
    /// The longest pause between attempts.
    pub max_backoff: Duration,
}

impl StepPolicy {
    /// The policy of `step`.
    pub fn of(step: &pb::Step, defaults: &StepsConfig) -> Self {
        let ms =
            |v: u32, default: Duration| if v > 0 { Duration::from_millis(u64::from(v)) } else { default };
        let retry = step.retry.unwrap_or_default();
        let max_attempts =
            if retry.max_attempts > 0 { retry.max_attempts } else { defaults.default_max_attempts }.max(1);
        Self {
            timeout: ms(step.timeout_ms, defaults.default_timeout),
            max_attempts,
            initial_backoff: ms(retry.initial_backoff_ms, defaults.default_initial_backoff),
            max_backoff: ms(retry.max_backoff_ms, defaults.default_max_backoff),
        }
    }

    /// The pause after failed attempt number `attempt` (from 1).
    pub fn backoff(&self, attempt: u32) -> Duration {
        backoff(self.initial_backoff, self.max_backoff, attempt)
    }
}

impl<L: LeaseStore> Engine<L> {
    /// An engine; the returned receiver feeds [`Engine::dispatch`]. Runs queued
    /// or executing count in `progress`' runs in flight.
    pub fn new(
        me: String,
        config: ExecutorConfig,
        leases: L,
        clients: Clients,
        events: Events,
        progress: Progress,
        templates: Templates,
    ) -> anyhow::Result<(Self, mpsc::UnboundedReceiver<Queued>)> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        let guard =
            Guard::new(config.http.allowed_networks.iter().filter_map(|n| Network::parse(n).ok()).collect());
        let (queue, rx) = mpsc::unbounded_channel();
        let permits = Arc::new(Semaphore::new(config.runs.concurrency.max(1)));
        let inner = Inner {
            me,
            config,
            leases,
            clients,
            events,
            templates,
            guard,
            http,
            permits,
            running: Mutex::new(HashSet::new()),
            waiting: Mutex::new(HashMap::new()),
            slot_requests: Mutex::new(HashMap::new()),
            queue,
            progress,
        };
        Ok((Self { inner: Arc::new(inner) }, rx))
    }

    /// This executor instance's id (the lease owner).
    pub fn me(&self) -> &str {
        &self.inner.me
    }

    /// How long a run's lease lasts.
    pub fn lease(&self) -> Duration {
        self.inner.config.runs.lease
    }

    /// Runs of one owner executing at once, over every replica.
    pub fn owner_concurrency(&self) -> i64 {
        self.inner.config.runs.owner_concurrency.max(1)
    }

    /// The template sandbox.
    pub fn templates(&self) -> &Templates {
        &self.inner.templates
    }

    /// The executor's progress counters.
    pub fn progress(&self) -> &Progress {
        &self.inner.progress
    }

    /// Asks for `run` to be executed here soon. The run's span is a child of the
    /// current span, so a run continues the trace of whatever queued it (the
    /// trigger's, carried over NATS, or an approval's RPC).
    pub fn enqueue(&self, run: Uuid) {
        self.send(run, None);
    }

    /// Like [`Engine::enqueue`] for a run the intake created already leased to
    /// this executor: executing it needs no claim, as long as it starts before
    /// `valid_until` (well within the lease); after that it is claimed as usual.
    pub fn enqueue_claimed(&self, claimed: Claimed, valid_until: Instant) {
        self.send(claimed.id, Some((claimed, valid_until)));
    }

    fn send(&self, id: Uuid, claimed: Option<(Claimed, Instant)>) {
        let held = self.inner.progress.runs_in_flight().hold();
        let _ = self.inner.queue.send(Queued { id, parent: tracing::Span::current(), claimed, held });
    }

    /// Runs queued runs, at most `runs.concurrency` at once, until `stopped`;
    /// then waits up to `grace` for the runs in flight.
    pub async fn dispatch(
        self,
        mut rx: mpsc::UnboundedReceiver<Queued>,
        stopped: bizops_runtime::Stopped,
        grace: Duration,
    ) {
        let mut tasks = tokio::task::JoinSet::new();
        let stop = stopped.wait();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                Some(Queued { id, parent, claimed, held }) = rx.recv() => {
                    let Ok(permit) = self.inner.permits.clone().acquire_owned().await else { break };
                    if !self.inner.running.lock().map(|mut s| s.insert(id)).unwrap_or(false) {
                        continue;
                    }
                    let engine = self.clone();
                    let span = tracing::info_span!(parent: parent.id(), "executor.run", run_id = %id);
                    tasks.spawn(async move {
                        engine.execute(id, claimed).instrument(span).await;
                        if let Ok(mut s) = engine.inner.running.lock() {
                            s.remove(&id);
                        }
                        drop(permit);
                        drop(held);
                    });
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        let deadline = tokio::time::sleep(grace);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => {
                    tracing::warn!(in_flight = tasks.len(), "runs still in flight at the end of the grace period");
                    tasks.abort_all();
                    break;
                }
                next = tasks.join_next() => if next.is_none() { break },
            }
        }
        match self.inner.leases.release_all(&self.inner.me).await {
            Ok(n) if n > 0 => tracing::info!(released = n, "released run leases for other executors"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not release run leases"),
        }
    }

    /// Executes one run to its end or its next pause, from the claim the intake
    /// made (if still fresh) or a claim of its own. Errors are logged; the run is
    /// retried by the reaper when its lease runs out.
    async fn execute(&self, id: Uuid, pre: Option<(Claimed, Instant)>) {
        let me = &self.inner.me;
        let fresh = pre.filter(|(_, valid_until)| Instant::now() < *valid_until).map(|(c, _)| c);
        let claimed = match fresh {
            Some(c) => Ok(Some(c)),
            None => self.inner.leases.claim(id, me, self.lease()).await,
        };
        let claimed = match claimed {
            Ok(Some(c)) => c,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim run");
                return;
            }
        };
        let (done, renewer) = self.renew_until_done(id);
        let started = Instant::now();
        let result = if claimed.takeovers >= self.inner.config.runs.max_takeovers.max(1) {
            self.poison(&claimed).await
        } else {
            self.run_in_slot(claimed).await
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "run interrupted; it will be retried");
            let _ = self.inner.leases.release(id, me, Duration::from_secs(5)).await;
        }
        let _ = done.send(());
        let _ = renewer.await;
        metrics::histogram!("executor_run_duration_seconds").record(started.elapsed().as_secs_f64());
    }

    /// Runs a claimed run in one of its owner's slots, or gives it back to wait
    /// for one. Afterwards the slot it held is free (the run ended, paused, or
    /// waits for a retry): the owner's oldest waiting run is handed out.
    async fn run_in_slot(&self, claimed: Claimed) -> anyhow::Result<()> {
        let (id, owner, me) = (claimed.id, claimed.owner_id, &self.inner.me);
        if !self.take_slot(id, owner).await? {
            // Every slot of the owner is in use, here or elsewhere: the run waits,
            // unleased, until one frees up (then this replica or any reaper hands
            // it out, oldest first). Giving the lease back is not a takeover.
            // Noted only once given back, so a wake that saw no run waiting
            // before cannot forget it; a slot freed meanwhile is looked for now.
            tracing::debug!("every slot of the owner is in use; the run waits for one");
            metrics::counter!("executor_slot_waits_total").increment(1);
            self.inner.leases.release(id, me, Duration::ZERO).await?;
            self.note_waiting(owner);
            self.wake(owner).await;
            return Ok(());
        }
        let result = self.run(claimed, Instant::now()).await;
        if result.is_err() {
            // Its slot is given back before the owner's next run is looked for
            // (the reaper retries it after the delay).
            let _ = self.inner.leases.release(id, me, Duration::from_secs(5)).await;
        }
        self.wake(owner).await;
        result
    }

    /// Asks for one of `owner`'s slots for run `id`. Requests of one owner are
    /// taken together: while one transaction is under way, the requests that
    /// arrive wait for the next, which takes them all (oldest runs first).
    async fn take_slot(&self, id: Uuid, owner: Uuid) -> anyhow::Result<bool> {
        let (tx, rx) = oneshot::channel();
        let lead = {
            let mut requests =
                self.inner.slot_requests.lock().map_err(|_| anyhow::anyhow!("slot requests"))?;
            match requests.get_mut(&owner) {
                Some(queued) => {
                    queued.push((id, tx));
                    None
                }
                None => {
                    requests.insert(owner, Vec::new());
                    Some(tx)
                }
            }
        };
        if let Some(tx) = lead {
            // This request goes first, alone; whoever arrives meanwhile waits for
            // the taker that carries on after it.
            let engine = self.clone();
            tokio::spawn(
                async move { engine.take_slots(owner, vec![(id, tx)]).await }
                    .instrument(tracing::Span::current()),
            );
        }
        rx.await.map_err(|_| anyhow::anyhow!("could not take an execution slot"))
    }

    /// Takes slots for `batch`, then for whatever requests of `owner` arrived
    /// meanwhile, until none are left.
    async fn take_slots(&self, owner: Uuid, mut batch: Vec<SlotRequest>) {
        loop {
            let ids: Vec<Uuid> = batch.iter().map(|(id, _)| *id).collect();
            match self.inner.leases.take_slots(&ids, &self.inner.me, owner, self.owner_concurrency()).await {
                Ok(taken) => {
                    for (id, tx) in batch {
                        let _ = tx.send(taken.contains(&id));
                    }
                }
                // Dropping the senders fails the requests: their runs are retried.
                Err(e) => tracing::warn!(error = %e, "could not take execution slots"),
            }
            let Ok(mut requests) = self.inner.slot_requests.lock() else { return };
            match requests.get_mut(&owner).map(std::mem::take) {
                Some(next) if !next.is_empty() => batch = next,
                _ => {
                    requests.remove(&owner);
                    return;
                }
            }
        }
    }

    /// Marks `owner` as one whose runs may wait for a slot: when one of its runs
    /// here ends, pauses or backs off, [`Engine::wake`] looks for the next.
    pub fn note_waiting(&self, owner: Uuid) {
        if let Ok(mut w) = self.inner.waiting.lock() {
            *w.entry(owner).or_default() += 1;
        }
    }

    /// Hands out the oldest runs of `owner` waiting for a slot, as many as it
    /// has slots free, if this replica turned any away or handed any out from
    /// the reaper. (Runs another replica turned away are handed out by that
    /// replica when its own runs of the owner end, or by the next reaper pass.)
    async fn wake(&self, owner: Uuid) {
        let Some(noted) = self.inner.waiting.lock().ok().and_then(|w| w.get(&owner).copied()) else {
            return;
        };
        match self.inner.leases.waiting(owner, self.owner_concurrency()).await {
            Ok(w) => {
                // Forgotten only if nothing waits and no run was turned away since
                // the query began (it may not have seen that one).
                if !w.waiting
                    && let Ok(mut owners) = self.inner.waiting.lock()
                    && owners.get(&owner) == Some(&noted)
                {
                    owners.remove(&owner);
                }
                w.ids.into_iter().for_each(|id| self.enqueue(id));
            }
            Err(e) => tracing::warn!(error = %e, "could not look for runs waiting for a slot"),
        }
    }

    /// Hands run `id` out again here once its retry's back-off has passed (any
    /// replica's reaper would, later).
    fn retry_after(&self, id: Uuid, backoff: Duration) {
        let engine = self.clone();
        let parent = tracing::Span::current();
        tokio::spawn(async move {
            tokio::time::sleep(backoff).await;
            parent.in_scope(|| engine.enqueue(id));
        });
    }

    /// Renews the lease of run `id` every third of a lease until the returned
    /// sender is used (or dropped), or the run is no longer ours.
    fn renew_until_done(&self, id: Uuid) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let (done_tx, mut done_rx) = oneshot::channel::<()>();
        let (leases, me, lease) = (self.inner.leases.clone(), self.inner.me.clone(), self.lease());
        let renewer = tokio::spawn(async move {
            let mut tick = tokio::time::interval(lease / 3);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = &mut done_rx => return,
                    _ = tick.tick() => {
                        // A failed renewal is tried again at the next tick (the
                        // lease outlasts two of them).
                        match leases.renew(id, &me, lease).await {
                            Ok(false) => return,
                            Ok(true) => {}
                            Err(e) => tracing::warn!(error = %e, "could not renew a run's lease"),
                        }
                    }
                }
            }
        });
        (done_tx, renewer)
    }

    /// Fails a run that executors kept stopping on (out of memory, killed) rather
    /// than handing it to the next one: the step it was at records why.
    async fn poison(&self, claimed: &Claimed) -> anyhow::Result<()> {
        let spec =
            match self.inner.clients.version(claimed.owner_id, claimed.pilot_id, claimed.pilot_version).await
            {
                Ok(Lookup::Found(v)) => Some(v.spec),
                _ => None,
            };
        let at = usize::try_from(claimed.next_step).unwrap_or(0);
        let at_step = spec.as_ref().and_then(|s| s.steps.get(at));
        let error = format!(
            "poisoned: the executor stopped {} times while running this run (out of memory or killed), so it is \
             not tried again{}",
            claimed.takeovers,
            at_step.map(|s| format!("; it was at step \"{}\" or a later one", s.key)).unwrap_or_default()
        );
        tracing::warn!(takeovers = claimed.takeovers, "run poisoned");
        metrics::counter!("executor_runs_poisoned_total").increment(1);
        let pending = at_step
            .map(|s| {
                let rec = StepRecord {
                    status: step::FAILED,
                    error: Some(error.clone()),
                    finished_at: Some(OffsetDateTime::now_utc()),
                    ..started(at, s)
                };
                vec![Pending { rec, elapsed: None }]
            })
            .unwrap_or_default();
        self.finish_with(claimed.id, run::FAILED, Some(&error), pending).await
    }

    async fn finish(&self, id: Uuid, status: i16, error: Option<&str>) -> anyhow::Result<()> {
        self.finish_with(id, status, error, Vec::new()).await
    }

    /// Ends the run, storing the steps still in memory in the same transaction.
    async fn finish_with(
        &self,
        id: Uuid,
        status: i16,
        error: Option<&str>,
        pending: Vec<Pending>,
    ) -> anyhow::Result<()> {
        let recs: Vec<StepRecord> = pending.iter().map(|p| p.rec.clone()).collect();
        if let Some(state) = self.inner.leases.finish(id, &self.inner.me, status, error, &recs).await? {
            self.publish_steps(&state, &pending, 1).await;
            self.inner.events.publish(&state, None).await;
            let label =
                ev::RunStatus::try_from(i32::from(status)).map(|s| s.as_str_name()).unwrap_or("UNKNOWN");
            metrics::counter!("executor_runs_total", "status" => label).increment(1);
        } else {
            self.let_go(id).await;
        }
        Ok(())
    }

    /// Gives up the lease (and slot) of a run that is no longer running here —
    /// cancelled while a step was in flight, which keeps its slot until then.
    async fn let_go(&self, id: Uuid) {
        if let Err(e) = self.inner.leases.release(id, &self.inner.me, Duration::ZERO).await {
            tracing::warn!(error = %e, "could not give up a run's lease");
        }
    }

    /// Stores the steps kept in memory and moves the cursor to `next`; false if
    /// the run is no longer ours (cancelled, deleted, taken over).
    async fn flush(&self, cx: &mut RunCtx<'_>, next: usize) -> anyhow::Result<bool> {
        if cx.pending.is_empty() {
            return Ok(true);
        }
        let recs: Vec<StepRecord> = cx.pending.iter().map(|p| p.rec.clone()).collect();
        let next = i32::try_from(next).unwrap_or(i32::MAX);
        match self.inner.leases.record_steps(cx.claimed.id, &self.inner.me, &recs, next).await? {
            Some(state) => {
                self.publish_steps(&state, &cx.pending, 0).await;
                cx.pending.clear();
                Ok(true)
            }
            None => {
                self.let_go(cx.claimed.id).await;
                Ok(false)
            }
        }
    }

    /// Stores one step's record, moves the cursor to `next` and publishes the
    /// step (with its duration since `started`, if given); false if the run is no
    /// longer ours.
    async fn store_step(
        &self,
        cx: &RunCtx<'_>,
        rec: &StepRecord,
        next: usize,
        started: Option<Instant>,
    ) -> anyhow::Result<bool> {
        let next = i32::try_from(next).unwrap_or(i32::MAX);
        let stored = self
            .inner
            .leases
            .record_steps(cx.claimed.id, &self.inner.me, std::slice::from_ref(rec), next)
            .await?;
        let Some(state) = stored else {
            self.let_go(cx.claimed.id).await;
            return Ok(false);
        };
        self.inner.events.publish(&state, Some(step_event(rec, started.map(|s| s.elapsed())))).await;
        Ok(true)
    }

    /// The live events of steps stored together; `after` more changes were
    /// stored after them in the same transaction (the run's end).
    async fn publish_steps(&self, state: &RunState, pending: &[Pending], after: i64) {
        let n = i64::try_from(pending.len()).unwrap_or(i64::MAX);
        for (k, p) in (0i64..).zip(pending) {
            let at = RunState { status: run::RUNNING, seq: state.seq - after - (n - 1 - k), ..*state };
            self.inner.events.publish(&at, Some(step_event(&p.rec, p.elapsed))).await;
        }
    }

    /// Whether a step runs without leaving the server and without side effects
    /// (transform, condition, AI with neither the owner's nor the server's key):
    /// such steps run back to back with their records kept in memory, stored in
    /// one transaction with whatever comes next. If the executor dies meanwhile,
    /// they simply run again.
    fn is_local(&self, step: &pb::Step, credentials: &HashMap<String, Credential>) -> bool {
        match &step.kind {
            Some(Kind::Transform(_) | Kind::Condition(_)) => true,
            Some(Kind::Ai(a)) => {
                let server_key = self.inner.config.ai.server_key.as_ref();
                ai_provider(credentials, &a.connector, server_key).0 == ai::Provider::Local
            }
            _ => false,
        }
    }

    /// Loads what the run needs before its first step: the pinned version, this
    /// run's credentials, and the template scope. `None` if the run cannot start
    /// (its Pilot or payload is gone, its credentials refused) and was ended
    /// FAILED; an error if a dependency is down (the run is retried).
    async fn prepare(&self, claimed: &Claimed) -> anyhow::Result<Option<Prepared>> {
        let id = claimed.id;
        let transient =
            |s: &tonic::Status| matches!(s.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded);
        let version =
            match self.inner.clients.version(claimed.owner_id, claimed.pilot_id, claimed.pilot_version).await
            {
                Ok(Lookup::Found(v)) => v,
                Ok(Lookup::Gone) => {
                    self.finish(id, run::FAILED, Some("the Pilot or its version no longer exists")).await?;
                    return Ok(None);
                }
                Err(status) if transient(&status) => {
                    anyhow::bail!("the catalog is unavailable: {}", status.code());
                }
                Err(status) => anyhow::bail!("the catalog answered {}", status.code()),
            };
        let Some((payload, content_type)) = claimed.payload.clone() else {
            self.finish(id, run::FAILED, Some("the trigger payload is gone (kept 7 days)")).await?;
            return Ok(None);
        };

        // This run's credentials, and the redactor that hides them everywhere.
        let resolved =
            match self.inner.clients.resolve(claimed.owner_id, id, version.credential_names.to_vec()).await {
                Ok(r) => r,
                Err(status) if transient(&status) => {
                    anyhow::bail!("the vault is unavailable: {}", status.code());
                }
                Err(status) => {
                    let message = bizops_errors::Error::from_status(&status).message().to_owned();
                    let error = format!("credentials could not be resolved: {message}");
                    self.finish(id, run::FAILED, Some(&error)).await?;
                    return Ok(None);
                }
            };
        let credentials: HashMap<String, Credential> = resolved
            .credentials
            .iter()
            .map(|c| {
                (c.name.clone(), Credential { kind: c.kind, value: SecretString::from(c.value.clone()) })
            })
            .collect();
        let redactor = Redactor::new(resolved.credentials.iter().map(|c| c.value.as_str()));
        drop(resolved);

        let mut scope = json!({
            "trigger": trigger_value(&payload, &content_type),
            "steps": {},
            "secrets": credentials.iter().map(|(k, v)| (k.clone(), Value::String(v.value.expose_secret().to_owned()))).collect::<serde_json::Map<_, _>>(),
        });
        for (_, key, output) in &claimed.outputs {
            scope["steps"][key] = json!({ "output": output.clone().unwrap_or(Value::Null) });
        }
        Ok(Some(Prepared { spec: version.spec, credentials, redactor, scope }))
    }

    /// Executes the run from its cursor until it ends or pauses, within what is
    /// left of its execution deadline; `slot_since` is when it took its slot.
    async fn run(&self, claimed: Claimed, slot_since: Instant) -> anyhow::Result<()> {
        let Some(prepared) = self.prepare(&claimed).await? else {
            return Ok(());
        };
        let spec = &*prepared.spec;
        let mut cx = RunCtx {
            claimed: &claimed,
            spec,
            credentials: &prepared.credentials,
            redactor: &prepared.redactor,
            scope: prepared.scope,
            pending: Vec::new(),
            slot_since,
        };
        let limit = self.deadline(spec);
        let executed = Duration::from_millis(u64::try_from(claimed.executed_ms).unwrap_or(0));
        let left = limit.saturating_sub(executed).saturating_sub(slot_since.elapsed());
        let mut idx = usize::try_from(claimed.next_step).unwrap_or(0);
        let steps = async {
            while idx < spec.steps.len() {
                match self.step(&mut cx, idx).await? {
                    Outcome::Next => idx += 1,
                    Outcome::Paused => return Ok(true),
                    Outcome::Stop => {
                        let mut steps = std::mem::take(&mut cx.pending);
                        steps.extend(
                            skipped(spec, idx + 1, spec.steps.len())
                                .map(|rec| Pending { rec, elapsed: None }),
                        );
                        self.finish_with(claimed.id, run::SKIPPED, None, steps).await?;
                        return Ok(true);
                    }
                    Outcome::Jump(target) => {
                        if !self.flush(&mut cx, idx + 1).await? {
                            return Ok(true);
                        }
                        self.skip_from(&claimed, spec, idx + 1, target).await?;
                        idx = target;
                    }
                }
                // Cancelled (or deleted) while we worked? (Steps kept in memory are
                // checked when stored: only a run still ours is written.)
                if cx.pending.is_empty()
                    && matches!(self.inner.leases.status(claimed.id).await?, Some(s) if s != run::RUNNING)
                {
                    self.let_go(claimed.id).await;
                    return Ok(true);
                }
            }
            anyhow::Ok(false)
        };
        match tokio::time::timeout(left, steps).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => self.finish_with(claimed.id, run::SUCCEEDED, None, cx.pending).await,
            Ok(Err(e)) => Err(e),
            Err(_) => {
                // Whatever the step at the cursor was doing was dropped with it.
                let error = format!(
                    "deadline: the run executed for {} in all, its limit (waiting for approvals, retries and \
                     execution slots does not count)",
                    human(limit)
                );
                tracing::info!(limit_s = limit.as_secs(), "run passed its execution deadline");
                metrics::counter!("executor_runs_deadline_total").increment(1);
                let mut steps = std::mem::take(&mut cx.pending);
                if let Some(step) = spec.steps.get(idx) {
                    let rec = StepRecord {
                        status: step::FAILED,
                        error: Some(error.clone()),
                        finished_at: Some(OffsetDateTime::now_utc()),
                        ..started(idx, step)
                    };
                    steps.push(Pending { rec, elapsed: None });
                }
                self.finish_with(claimed.id, run::FAILED, Some(&error), steps).await
            }
        }
    }

    /// How long a run of `spec` may execute in all: the Pilot's own limit (cut
    /// to the server's maximum) or the server's default.
    fn deadline(&self, spec: &pb::PilotSpec) -> Duration {
        let runs = &self.inner.config.runs;
        match spec.max_execution_seconds {
            0 => runs.execution_deadline,
            s => Duration::from_secs(u64::from(s)).min(runs.max_execution_deadline),
        }
    }

    async fn skip_from(
        &self,
        claimed: &Claimed,
        spec: &pb::PilotSpec,
        from: usize,
        to: usize,
    ) -> anyhow::Result<()> {
        let skipped: Vec<StepRecord> = skipped(spec, from, to).collect();
        if !skipped.is_empty() {
            self.inner.leases.skip_steps(claimed.id, claimed.owner_id, &skipped).await?;
        }
        Ok(())
    }

    /// Runs step `idx` of the run: the approval gate, its attempts, its record.
    async fn step(&self, cx: &mut RunCtx<'_>, idx: usize) -> anyhow::Result<Outcome> {
        let spec = cx.spec;
        let step = &spec.steps[idx];
        let local = self.is_local(step, cx.credentials);
        // Anything that may leave the server starts from stored state.
        if !local && !self.flush(cx, idx).await? {
            return Ok(Outcome::Paused);
        }
        let mut base = started(idx, step);
        // Resuming after a retry's back-off: the attempts made before count.
        let resumed = i32::try_from(idx).is_ok_and(|i| i == cx.claimed.next_step);
        if resumed {
            base.attempts = cx.claimed.attempts_done;
        }
        let approval = match self.approval_gate(cx, step, &base).await? {
            Gate::Open(approval) => approval,
            Gate::Closed => return Ok(Outcome::Paused),
        };
        if !local && !self.store_step(cx, &base, idx, None).await? {
            return Ok(Outcome::Paused);
        }

        let started = Instant::now();
        let Some(Tried { result, attempts }) = self.attempts(cx, step, &base, approval).await? else {
            return Ok(Outcome::Paused);
        };
        metrics::histogram!("executor_step_duration_seconds", "kind" => base.kind)
            .record(started.elapsed().as_secs_f64());
        let (output, provider) = match result {
            Ok(out) => out,
            Err(e) => {
                let message = cx.redactor.text(&e.message);
                return self.fail(cx, base, attempts, &message).await;
            }
        };
        let output = cx.redactor.json(&output);
        let (stored, truncated) = preview(&output, self.inner.config.steps.preview_bytes);
        let (outcome, next) = match flow(spec, idx, &output) {
            Ok(flow) => flow,
            Err(message) => return self.fail(cx, base, attempts, &message).await,
        };
        let rec = StepRecord {
            status: step::SUCCEEDED,
            attempts: i32::try_from(attempts).unwrap_or(i32::MAX),
            provider,
            output: Some(stored),
            truncated,
            finished_at: Some(OffsetDateTime::now_utc()),
            ..base
        };
        if local {
            cx.pending.push(Pending { rec, elapsed: Some(started.elapsed()) });
        } else if !self.store_step(cx, &rec, next, Some(started)).await? {
            return Ok(Outcome::Paused);
        }
        cx.scope["steps"][&step.key] = json!({ "output": output });
        Ok(outcome)
    }

    /// Confirm before mutate: approval steps, and mutating steps that ask for it,
    /// run only once approved. The first time, the run pauses for a decision
    /// (creating the approval); a rejected or expired decision keeps it closed.
    async fn approval_gate(
        &self,
        cx: &mut RunCtx<'_>,
        step: &pb::Step,
        base: &StepRecord,
    ) -> anyhow::Result<Gate> {
        if !needs_approval(step) {
            return Ok(Gate::Open(None));
        }
        match self.inner.leases.approval(cx.claimed.id, base.idx).await? {
            Some((s, by, comment)) if s == approval::APPROVED => Ok(Gate::Open(Some(json!({
                "approved": true,
                "decided_by": by.map(|u| u.to_string()),
                "comment": comment.unwrap_or_default(),
            })))),
            Some(_) => Ok(Gate::Closed),
            None => {
                self.ask_approval(cx, step, base).await?;
                Ok(Gate::Closed)
            }
        }
    }

    /// Pauses the run before `step` for a decision (or fails it if the approval
    /// message cannot be rendered).
    async fn ask_approval(
        &self,
        cx: &mut RunCtx<'_>,
        step: &pb::Step,
        base: &StepRecord,
    ) -> anyhow::Result<()> {
        let message = match &step.kind {
            Some(Kind::Approval(a)) => {
                self.inner.templates.render_as(Some(cx.claimed.owner_id), &a.message, &cx.scope).await
            }
            _ => Ok(format!("Step \"{}\" ({}) is about to run. Approve?", step.key, base.kind)),
        };
        let message = match message {
            Ok(m) => cx.redactor.text(&m),
            Err(e) => {
                let message = cx.redactor.text(&format!("approval.message: {e}"));
                self.fail(cx, base.clone(), 0, &message).await?;
                return Ok(());
            }
        };
        let expires = match &step.kind {
            Some(Kind::Approval(a)) if a.expires_after_seconds > 0 => {
                Duration::from_secs(u64::from(a.expires_after_seconds))
            }
            _ => self.inner.config.runs.approval_expiry,
        };
        let rec = StepRecord { status: step::AWAITING_APPROVAL, ..base.clone() };
        let expires_at = OffsetDateTime::now_utc() + expires;
        if let Some(state) = self
            .inner
            .leases
            .await_approval(
                cx.claimed.id,
                &self.inner.me,
                &rec,
                &message,
                expires_at,
                cx.slot_since.elapsed(),
            )
            .await?
        {
            self.inner.events.publish(&state, Some(step_event(&rec, None))).await;
            tracing::info!(step = %step.key, "run paused for approval");
        } else {
            self.let_go(cx.claimed.id).await;
        }
        Ok(())
    }

    /// Tries `step` under its [`StepPolicy`]: each attempt within the timeout. A
    /// retryable failure with attempts left gives the run's slot and lease back
    /// for the back-off (the step's record keeps the attempts and the error) and
    /// the run is continued once it has passed. `None` if the run paused so, or
    /// stopped being ours.
    async fn attempts(
        &self,
        cx: &mut RunCtx<'_>,
        step: &pb::Step,
        base: &StepRecord,
        approval: Option<Value>,
    ) -> anyhow::Result<Option<Tried>> {
        let policy = StepPolicy::of(step, &self.inner.config.steps);
        let attempt = u32::try_from(base.attempts).unwrap_or(0) + 1;
        let env = StepEnv {
            http: &self.inner.http,
            providers: &self.inner.config.providers,
            guard: &self.inner.guard,
            templates: &self.inner.templates,
            ctx: &cx.scope,
            credentials: cx.credentials,
            owner: cx.claimed.owner_id,
            idempotency_key: format!("{}/{}", cx.claimed.id, step.key),
            timeout: policy.timeout,
        };
        let result = match tokio::time::timeout(policy.timeout, self.attempt(&env, step, approval)).await {
            Ok(r) => r,
            Err(_) => Err(StepError {
                message: format!("the step timed out after {} ms", policy.timeout.as_millis()),
                retryable: true,
            }),
        };
        match result {
            Err(e) if e.retryable && attempt < policy.max_attempts => {
                let backoff = policy.backoff(attempt);
                let message = cx.redactor.text(&e.message);
                tracing::info!(step = %step.key, attempt, error = %message, backoff_ms = backoff.as_millis() as u64, "step attempt failed; retrying after the back-off");
                // Steps kept in memory are stored first (the cursor stays here).
                let idx = usize::try_from(base.idx).unwrap_or(0);
                if !self.flush(cx, idx).await? {
                    return Ok(None);
                }
                let rec = StepRecord {
                    attempts: i32::try_from(attempt).unwrap_or(i32::MAX),
                    error: Some(format!(
                        "attempt {attempt} failed: {message}; trying again in {}",
                        human(backoff)
                    )),
                    ..base.clone()
                };
                let executed = cx.slot_since.elapsed();
                if let Some(state) = self
                    .inner
                    .leases
                    .wait_retry(cx.claimed.id, &self.inner.me, &rec, backoff, executed)
                    .await?
                {
                    self.inner.events.publish(&state, Some(step_event(&rec, None))).await;
                    self.retry_after(cx.claimed.id, backoff);
                } else {
                    self.let_go(cx.claimed.id).await;
                }
                Ok(None)
            }
            result => Ok(Some(Tried { result, attempts: attempt })),
        }
    }

    /// Ends the run FAILED at this step (storing the steps kept in memory with it).
    async fn fail(
        &self,
        cx: &mut RunCtx<'_>,
        base: StepRecord,
        attempts: u32,
        message: &str,
    ) -> anyhow::Result<Outcome> {
        let rec = StepRecord {
            status: step::FAILED,
            attempts: i32::try_from(attempts).unwrap_or(i32::MAX),
            error: Some(message.to_owned()),
            finished_at: Some(OffsetDateTime::now_utc()),
            ..base
        };
        tracing::info!(step = %rec.key, error = %message, "step failed");
        let error = format!("step \"{}\" failed: {message}", rec.key);
        let mut steps = std::mem::take(&mut cx.pending);
        steps.push(Pending { rec, elapsed: None });
        self.finish_with(cx.claimed.id, run::FAILED, Some(&error), steps).await?;
        Ok(Outcome::Paused)
    }

    /// One attempt of a step.
    async fn attempt(
        &self,
        env: &StepEnv<'_>,
        step: &pb::Step,
        approval: Option<Value>,
    ) -> Result<Produced, StepError> {
        match step.kind.as_ref() {
            None => Err(StepError::permanent("the step has no kind")),
            Some(Kind::Transform(t)) => steps::transform(env, t).await.map(|v| (v, None)),
            Some(Kind::Condition(c)) => {
                steps::condition(env, c).await.map(|b| (json!({ "result": b }), None))
            }
            Some(Kind::Slack(s)) => steps::slack(env, s).await.map(|v| (v, None)),
            Some(Kind::Email(e)) => steps::email(env, e).await.map(|v| (v, None)),
            Some(Kind::Http(h)) => {
                steps::http(env, h, self.inner.config.steps.max_output_bytes).await.map(|v| (v, None))
            }
            Some(Kind::Approval(_)) => Ok((approval.unwrap_or(json!({ "approved": true })), None)),
            Some(Kind::Ai(a)) => self.ai(env, a).await,
        }
    }

    async fn ai(&self, env: &StepEnv<'_>, a: &pb::AiStep) -> Result<Produced, StepError> {
        /// Room for the instructions `ai::anthropic` wraps around a task (under
        /// 1 KiB today) in a reservation.
        const AI_INSTRUCTION_BYTES: usize = 4096;
        let ai_config = &self.inner.config.ai;
        let mut request = ai::Request {
            task: a.task(),
            input: env.render("ai.input", &a.input).await?,
            prompt: env.render("ai.prompt", &a.prompt).await?,
            labels: a.labels.clone(),
            fields: a.fields.clone(),
            model: if a.model.is_empty() { ai_config.default_model.clone() } else { a.model.clone() },
            max_tokens: if a.max_tokens > 0 { a.max_tokens } else { ai_config.default_max_tokens },
        };
        let (provider, key) = ai_provider(env.credentials, &a.connector, ai_config.server_key.as_ref());
        let Some(key) = key else {
            return Ok(local_answer(&request, None));
        };
        if provider != ai::Provider::Server {
            // The owner's own key: their model, their bill, no budget.
            let answer = self.call_anthropic(env, key, &request).await;
            return answer.output.map(|o| labelled(o, provider));
        }
        // The server's key: an allowed model, bounded output, the owner's daily budget.
        if !ai_config.server_models.contains(&request.model) {
            let note = format!(
                "the model \"{}\" is not available with the server's key (available: {}); connect your own \
                 Anthropic key to use it",
                request.model,
                ai_config.server_models.join(", ")
            );
            return Ok(local_answer(&request, Some(note)));
        }
        request.max_tokens = request.max_tokens.min(ai_config.server_max_tokens);
        // The most the call can use: a token stands for at least one byte of
        // text, so the bytes of everything sent (with room for the instructions
        // around it) bound the input tokens; plus every output token.
        let sent = request.input.len()
            + request.prompt.len()
            + request.labels.iter().chain(&request.fields).map(|s| s.len() + 8).sum::<usize>()
            + AI_INSTRUCTION_BYTES;
        let reserve = i64::try_from(sent).unwrap_or(i64::MAX).saturating_add(i64::from(request.max_tokens));
        let budget = i64::try_from(ai_config.server_daily_tokens).unwrap_or(i64::MAX);
        let day = OffsetDateTime::now_utc().date();
        let leases = &self.inner.leases;
        let reserved = leases.reserve_ai_tokens(env.owner, day, reserve, budget).await.map_err(|_| {
            StepError { message: "the AI budget could not be checked".into(), retryable: true }
        })?;
        if reserved.is_none() {
            metrics::counter!("executor_ai_server_budget_exhausted_total").increment(1);
            let note = format!(
                "today's budget of {budget} tokens on the server's AI key is used up; this step ran the local \
                 fallback (connect your own Anthropic key to go on)"
            );
            return Ok(local_answer(&request, Some(note)));
        }
        let answer = self.call_anthropic(env, key, &request).await;
        // What the call used as reported (nothing when refused); where nobody can
        // know, the reservation stands.
        let used = answer.tokens.and_then(|t| i64::try_from(t).ok()).unwrap_or(reserve);
        if let Err(e) = leases.settle_ai_tokens(env.owner, day, reserve, used).await {
            tracing::warn!(error = %e, "could not settle AI token use; the reservation stands");
        }
        metrics::counter!("executor_ai_server_tokens_total").increment(u64::try_from(used).unwrap_or(0));
        answer.output.map(|o| labelled(o, provider))
    }

    async fn call_anthropic(
        &self,
        env: &StepEnv<'_>,
        key: &SecretString,
        request: &ai::Request,
    ) -> ai::Answer {
        ai::anthropic(
            env.http,
            &self.inner.config.providers.anthropic_base_url,
            key.expose_secret(),
            request,
            env.timeout,
        )
        .await
    }
}

/// An AI output with the provider that answered.
fn labelled(mut output: Value, provider: ai::Provider) -> Produced {
    output["provider"] = Value::String(provider.label().to_owned());
    (output, Some(provider.label().to_owned()))
}

/// The local fallback's answer, with why it ran instead of a model (if it did).
fn local_answer(request: &ai::Request, note: Option<String>) -> Produced {
    let (mut output, provider) = labelled(ai::local(request), ai::Provider::Local);
    if let Some(note) = note {
        output["note"] = Value::String(note);
    }
    (output, provider)
}

/// A request for an execution slot: the run, and where to say whether it got one.
type SlotRequest = (Uuid, oneshot::Sender<bool>);

/// A run waiting for a free slot; it counts as in flight until its execution ends.
pub struct Queued {
    id: Uuid,
    parent: tracing::Span,
    claimed: Option<(Claimed, Instant)>,
    held: Held,
}

/// A step that ran without leaving the server, not stored yet.
struct Pending {
    rec: StepRecord,
    elapsed: Option<Duration>,
}

/// The provider chain of AI steps: the owner's own key (the credential the step
/// names, `anthropic` by default), else the server's key, else the local fallback
/// (no key, nothing leaves the server).
fn ai_provider<'a>(
    credentials: &'a HashMap<String, Credential>,
    connector: &str,
    server_key: Option<&'a SecretString>,
) -> (ai::Provider, Option<&'a SecretString>) {
    match (credentials.get(&template::connector(connector, "anthropic")), server_key) {
        (Some(own), _) => (ai::Provider::User, Some(&own.value)),
        (None, Some(server)) => (ai::Provider::Server, Some(server)),
        (None, None) => (ai::Provider::Local, None),
    }
}

/// Whether `step` waits for a human decision before it runs: approval steps,
/// and Slack, email and mutating HTTP steps marked `requires_approval`.
fn needs_approval(step: &pb::Step) -> bool {
    match &step.kind {
        Some(Kind::Approval(_)) => true,
        Some(Kind::Slack(_) | Kind::Email(_)) => step.requires_approval,
        Some(Kind::Http(h)) => step.requires_approval && h.method() != pb::HttpMethod::Get,
        _ => false,
    }
}

/// Where the run goes after step `idx` succeeded with `output`: on, stopped by a
/// false condition, or on at a condition's jump target — with the cursor to
/// store. `Err` (the step fails) if the jump target is not a later step.
fn flow(spec: &pb::PilotSpec, idx: usize, output: &Value) -> Result<(Outcome, usize), String> {
    match (&spec.steps[idx].kind, output) {
        (Some(Kind::Condition(c)), Value::Object(o)) if o.get("result") == Some(&Value::Bool(false)) => {
            if c.on_false() == pb::OnFalse::Jump {
                // Validated at save time to be a later step of the same version.
                match spec.steps.iter().position(|s| s.key == c.jump_to).filter(|t| *t > idx) {
                    Some(target) => Ok((Outcome::Jump(target), target)),
                    None => Err(format!("condition.jump_to: no later step \"{}\"", c.jump_to)),
                }
            } else {
                Ok((Outcome::Stop, idx + 1))
            }
        }
        _ => Ok((Outcome::Next, idx + 1)),
    }
}

/// The record of step `idx` as it starts.
fn started(idx: usize, step: &pb::Step) -> StepRecord {
    StepRecord {
        idx: i32::try_from(idx).unwrap_or(i32::MAX),
        key: step.key.clone(),
        kind: step.kind.as_ref().map(bizops_pilot_spec::kind_name).unwrap_or("unknown"),
        status: step::RUNNING,
        attempts: 0,
        provider: None,
        output: None,
        truncated: false,
        error: None,
        started_at: Some(OffsetDateTime::now_utc()),
        finished_at: None,
    }
}

/// Records for steps `from..to`, skipped.
fn skipped(spec: &pb::PilotSpec, from: usize, to: usize) -> impl Iterator<Item = StepRecord> + '_ {
    (from..to.min(spec.steps.len())).map(|i| StepRecord {
        idx: i32::try_from(i).unwrap_or(i32::MAX),
        key: spec.steps[i].key.clone(),
        kind: spec.steps[i].kind.as_ref().map(bizops_pilot_spec::kind_name).unwrap_or("unknown"),
        status: step::SKIPPED,
        attempts: 0,
        provider: None,
        output: None,
        truncated: false,
        error: None,
        started_at: None,
        finished_at: None,
    })
}

/// Exponential backoff with jitter (50–100 % of the nominal delay).
/// A duration as people read it: "250 ms", "12 s", "5 min", "1 h 30 min".
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{} ms", d.as_millis()),
        1..60 => format!("{s} s"),
        60..3600 if s.is_multiple_of(60) => format!("{} min", s / 60),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ if s.is_multiple_of(3600) => format!("{} h", s / 3600),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

fn backoff(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let nominal = initial.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1))).min(max);
    let mut b = [0u8; 1];
    let _ = getrandom::fill(&mut b);
    nominal.mul_f64(0.5 + f64::from(b[0]) / 510.0)
}

/// The JSON stored for a step: the output, or (when larger than `limit` bytes) a
/// preview string cut at `limit`.
fn preview(output: &Value, limit: usize) -> (Value, bool) {
    let text = output.to_string();
    if text.len() <= limit {
        return (output.clone(), false);
    }
    let mut cut = limit;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    (json!({ "preview": &text[..cut] }), true)
}

/// `trigger` in templates: the JSON payload; form fields as an object; anything
/// else as `{"text": ...}`.
pub fn trigger_value(payload: &[u8], content_type: &str) -> Value {
    let ct = content_type.to_ascii_lowercase();
    if (ct.contains("json") || ct.is_empty())
        && let Ok(v) = serde_json::from_slice::<Value>(payload)
    {
        return v;
    }
    if ct.starts_with("application/x-www-form-urlencoded") {
        let fields: serde_json::Map<String, Value> = url::form_urlencoded::parse(payload)
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect();
        return Value::Object(fields);
    }
    json!({ "text": String::from_utf8_lossy(payload) })
}

fn step_event(rec: &StepRecord, elapsed: Option<Duration>) -> ev::StepEvent {
    ev::StepEvent {
        step_key: rec.key.clone(),
        status: i32::from(rec.status),
        attempt: u32::try_from(rec.attempts).unwrap_or(0),
        provider: rec.provider.clone().unwrap_or_default(),
        error: rec.error.clone().unwrap_or_default(),
        duration_ms: elapsed.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn trigger_payloads_become_template_values() {
        assert_eq!(trigger_value(br#"{"a":1}"#, "application/json"), json!({"a": 1}));
        assert_eq!(
            trigger_value(b"a=1&b=x+y", "application/x-www-form-urlencoded"),
            json!({"a": "1", "b": "x y"})
        );
        assert_eq!(trigger_value(b"hello", "text/plain"), json!({"text": "hello"}));
        assert_eq!(trigger_value(b"not json", "application/json"), json!({"text": "not json"}));
    }

    #[test]
    fn durations_read_like_people_say_them() {
        let cases = [(250, "250 ms"), (12_000, "12 s"), (300_000, "5 min"), (90_000, "1 min 30 s")];
        for (ms, text) in cases {
            assert_eq!(human(Duration::from_millis(ms)), text);
        }
        assert_eq!(human(Duration::from_secs(3600)), "1 h");
        assert_eq!(human(Duration::from_secs(5400)), "1 h 30 min");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let (i, m) = (Duration::from_millis(100), Duration::from_millis(1000));
        for attempt in 1..8 {
            let b = backoff(i, m, attempt);
            let nominal = (i * 2u32.pow(attempt - 1)).min(m);
            assert!(b >= nominal / 2 && b <= nominal, "{attempt}: {b:?}");
        }
    }

    #[test]
    fn previews_are_cut_at_a_char_boundary() {
        let v = json!({"t": "é".repeat(100)});
        let (p, cut) = preview(&v, 50);
        assert!(cut && p["preview"].as_str().unwrap().len() <= 50);
        assert_eq!(preview(&json!({"a": 1}), 50), (json!({"a": 1}), false));
    }

    #[test]
    fn a_step_policy_takes_the_steps_settings_and_the_defaults_for_the_rest() {
        let defaults = StepsConfig::default();
        let plain = pb::Step { key: "s".into(), ..Default::default() };
        assert_eq!(
            StepPolicy::of(&plain, &defaults),
            StepPolicy {
                timeout: defaults.default_timeout,
                max_attempts: defaults.default_max_attempts.max(1),
                initial_backoff: defaults.default_initial_backoff,
                max_backoff: defaults.default_max_backoff,
            }
        );
        let own = pb::Step {
            timeout_ms: 1500,
            retry: Some(pb::RetryPolicy { max_attempts: 7, initial_backoff_ms: 10, max_backoff_ms: 0 }),
            ..plain.clone()
        };
        assert_eq!(
            StepPolicy::of(&own, &defaults),
            StepPolicy {
                timeout: Duration::from_millis(1500),
                max_attempts: 7,
                initial_backoff: Duration::from_millis(10),
                max_backoff: defaults.default_max_backoff,
            }
        );
        let never = StepsConfig { default_max_attempts: 0, ..defaults };
        assert_eq!(StepPolicy::of(&plain, &never).max_attempts, 1, "a step is tried at least once");
    }

    #[test]
    fn the_owners_key_comes_first_then_the_servers_then_none() {
        let server = SecretString::from("server-key".to_owned());
        let own = Credential { kind: 0, value: SecretString::from("own-key".to_owned()) };
        let mine = HashMap::from([("anthropic".to_owned(), own.clone()), ("work".to_owned(), own)]);
        let none = HashMap::new();
        let pick = |creds, connector, server| {
            let (p, key): (ai::Provider, Option<&SecretString>) = ai_provider(creds, connector, server);
            (p, key.map(|k| k.expose_secret().to_owned()))
        };
        assert_eq!(pick(&mine, "", Some(&server)), (ai::Provider::User, Some("own-key".into())));
        assert_eq!(pick(&mine, "work", None), (ai::Provider::User, Some("own-key".into())));
        assert_eq!(pick(&mine, "other", Some(&server)), (ai::Provider::Server, Some("server-key".into())));
        assert_eq!(pick(&none, "", None), (ai::Provider::Local, None));
    }

    #[test]
    fn a_false_condition_stops_or_jumps_forward_only() {
        let cond = |on_false: pb::OnFalse, jump_to: &str| pb::Step {
            key: "c".into(),
            kind: Some(Kind::Condition(pb::ConditionStep {
                expression: "false".into(),
                on_false: on_false as i32,
                jump_to: jump_to.into(),
            })),
            ..Default::default()
        };
        let plain = |key: &str| pb::Step { key: key.into(), ..Default::default() };
        let spec = |steps| pb::PilotSpec { steps, ..Default::default() };
        let (yes, no) = (json!({"result": true}), json!({"result": false}));

        let stop = spec(vec![plain("a"), cond(pb::OnFalse::Stop, ""), plain("b")]);
        assert!(matches!(flow(&stop, 1, &yes), Ok((Outcome::Next, 2))));
        assert!(matches!(flow(&stop, 1, &no), Ok((Outcome::Stop, 2))));
        assert!(matches!(flow(&stop, 0, &no), Ok((Outcome::Next, 1))), "only conditions steer");

        let jump = spec(vec![plain("a"), cond(pb::OnFalse::Jump, "d"), plain("b"), plain("d")]);
        assert!(matches!(flow(&jump, 1, &no), Ok((Outcome::Jump(3), 3))));
        let back = spec(vec![plain("a"), cond(pb::OnFalse::Jump, "a")]);
        assert_eq!(flow(&back, 1, &no).err().unwrap(), "condition.jump_to: no later step \"a\"");
    }
}
