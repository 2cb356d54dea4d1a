//! Executes runs: takes the lease, loads the pinned Pilot version, resolves this
//! run's credentials, renders and runs each step with timeout and retries, pauses
//! for approvals, records every step (redacted) and publishes live events. A run
//! resumes at its first unfinished step, so a finished step never runs again.

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
use tokio::sync::{Semaphore, mpsc};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::{
    ai,
    clients::{Clients, Lookup},
    config::ExecutorConfig,
    events::Events,
    model::{Claimed, StepRecord, approval, run, step},
    net::Guard,
    redact::Redactor,
    steps::{self, Credential, StepEnv, StepError},
    system::{RunState, SystemStore},
    template::{self, Templates},
};

/// Everything run execution needs; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    me: String,
    config: ExecutorConfig,
    system: SystemStore,
    clients: Clients,
    events: Events,
    templates: Templates,
    guard: Guard,
    http: reqwest::Client,
    permits: Arc<Semaphore>,
    running: Mutex<HashSet<Uuid>>,
    queue: mpsc::UnboundedSender<Queued>,
}

/// How a step ended.
enum Outcome {
    /// Continue with the next step.
    Next,
    /// A condition stopped the run.
    Stop,
    /// Continue at this index.
    Jump(usize),
    /// Paused for an approval.
    Paused,
}

impl Engine {
    /// An engine; the returned receiver feeds [`Engine::dispatch`].
    pub fn new(
        me: String,
        config: ExecutorConfig,
        system: SystemStore,
        clients: Clients,
        events: Events,
        guard: Guard,
    ) -> anyhow::Result<(Self, mpsc::UnboundedReceiver<Queued>)> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        let templates = Templates::new(config.steps.template_fuel, config.steps.max_output_bytes);
        let (queue, rx) = mpsc::unbounded_channel();
        let permits = Arc::new(Semaphore::new(config.runs.concurrency.max(1)));
        let inner = Inner {
            me,
            config,
            system,
            clients,
            events,
            templates,
            guard,
            http,
            permits,
            running: Mutex::new(HashSet::new()),
            queue,
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

    /// Asks for `run` to be executed here soon. The run's span is a child of the
    /// current span, so a run continues the trace of whatever queued it (the
    /// trigger's, carried over NATS, or an approval's RPC).
    pub fn enqueue(&self, run: Uuid) {
        let _ = self.inner.queue.send(Queued { id: run, parent: tracing::Span::current(), claimed: None });
    }

    /// Like [`Engine::enqueue`] for a run the intake created already leased to
    /// this executor: executing it needs no claim, as long as it starts before
    /// `valid_until` (well within the lease); after that it is claimed as usual.
    pub fn enqueue_claimed(&self, claimed: Claimed, valid_until: Instant) {
        let _ = self.inner.queue.send(Queued {
            id: claimed.id,
            parent: tracing::Span::current(),
            claimed: Some((claimed, valid_until)),
        });
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
                Some(Queued { id, parent, claimed }) = rx.recv() => {
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
        match self.inner.system.release_all(&self.inner.me).await {
            Ok(n) if n > 0 => tracing::info!(released = n, "released run leases for other executors"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not release run leases"),
        }
    }

    /// Executes one run to its end or its next pause, from the claim the intake
    /// made (if still fresh) or a claim of its own. Errors are logged; the run is
    /// retried by the reaper when its lease runs out.
    async fn execute(&self, id: Uuid, pre: Option<(Claimed, Instant)>) {
        let me = self.inner.me.clone();
        let lease = self.inner.config.runs.lease;
        let fresh = pre.filter(|(_, valid_until)| Instant::now() < *valid_until).map(|(c, _)| c);
        let claimed = match fresh {
            Some(c) => Ok(Some(c)),
            None => self.inner.system.claim(id, &me, lease).await,
        };
        let claimed = match claimed {
            Ok(Some(c)) => c,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim run");
                return;
            }
        };
        // Renew the lease while working; stop renewing when done.
        let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
        let renewer = {
            let system = self.inner.system.clone();
            let me = me.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(lease / 3);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = &mut done_rx => return,
                        _ = tick.tick() => {
                            if !matches!(system.renew(id, &me, lease).await, Ok(true)) {
                                return;
                            }
                        }
                    }
                }
            })
        };
        let started = Instant::now();
        if let Err(e) = self.run(claimed).await {
            tracing::warn!(error = %e, "run interrupted; it will be retried");
            let _ = self.inner.system.release(id, &me, Duration::from_secs(5)).await;
        }
        let _ = done_tx.send(());
        let _ = renewer.await;
        metrics::histogram!("executor_run_duration_seconds").record(started.elapsed().as_secs_f64());
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
        if let Some(state) = self.inner.system.finish(id, &self.inner.me, status, error, &recs).await? {
            self.publish_steps(&state, &pending, 1).await;
            self.inner.events.publish(&state, None).await;
            let label =
                ev::RunStatus::try_from(i32::from(status)).map(|s| s.as_str_name()).unwrap_or("UNKNOWN");
            metrics::counter!("executor_runs_total", "status" => label).increment(1);
        }
        Ok(())
    }

    /// Stores the steps kept in memory and moves the cursor to `next`; false if
    /// the run is no longer ours (cancelled, deleted, taken over).
    async fn flush(
        &self,
        claimed: &Claimed,
        pending: &mut Vec<Pending>,
        next: usize,
    ) -> anyhow::Result<bool> {
        if pending.is_empty() {
            return Ok(true);
        }
        let recs: Vec<StepRecord> = pending.iter().map(|p| p.rec.clone()).collect();
        let next = i32::try_from(next).unwrap_or(i32::MAX);
        match self.inner.system.record_steps(claimed.id, &self.inner.me, &recs, next).await? {
            Some(state) => {
                self.publish_steps(&state, pending, 0).await;
                pending.clear();
                Ok(true)
            }
            None => Ok(false),
        }
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
                self.inner.config.ai.server_key.is_none()
                    && !credentials.contains_key(&template::connector(&a.connector, "anthropic"))
            }
            _ => false,
        }
    }

    async fn run(&self, claimed: Claimed) -> anyhow::Result<()> {
        let id = claimed.id;
        let version =
            match self.inner.clients.version(claimed.owner_id, claimed.pilot_id, claimed.pilot_version).await
            {
                Ok(Lookup::Found(v)) => v,
                Ok(Lookup::Gone) => {
                    return self
                        .finish(id, run::FAILED, Some("the Pilot or its version no longer exists"))
                        .await;
                }
                Err(status)
                    if status.code() == tonic::Code::Unavailable
                        || status.code() == tonic::Code::DeadlineExceeded =>
                {
                    anyhow::bail!("the catalog is unavailable: {}", status.code());
                }
                Err(status) => anyhow::bail!("the catalog answered {}", status.code()),
            };
        let (spec, names) = (version.spec, version.credential_names);
        let Some((payload, content_type)) = claimed.payload.clone() else {
            return self.finish(id, run::FAILED, Some("the trigger payload is gone (kept 7 days)")).await;
        };

        // This run's credentials, and the redactor that hides them everywhere.
        let resolved = match self.inner.clients.resolve(claimed.owner_id, id, names.to_vec()).await {
            Ok(r) => r,
            Err(status)
                if status.code() == tonic::Code::Unavailable
                    || status.code() == tonic::Code::DeadlineExceeded =>
            {
                anyhow::bail!("the vault is unavailable: {}", status.code());
            }
            Err(status) => {
                let message = bizops_errors::Error::from_status(&status).message().to_owned();
                return self
                    .finish(id, run::FAILED, Some(&format!("credentials could not be resolved: {message}")))
                    .await;
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

        let mut ctx = json!({
            "trigger": trigger_value(&payload, &content_type),
            "steps": {},
            "secrets": credentials.iter().map(|(k, v)| (k.clone(), Value::String(v.value.expose_secret().to_owned()))).collect::<serde_json::Map<_, _>>(),
        });
        for (_, key, output) in &claimed.outputs {
            ctx["steps"][key] = json!({ "output": output.clone().unwrap_or(Value::Null) });
        }

        let mut idx = usize::try_from(claimed.next_step).unwrap_or(0);
        let mut pending = Vec::new();
        while idx < spec.steps.len() {
            let step = &spec.steps[idx];
            let outcome = self
                .step(&claimed, &spec, idx, step, &mut ctx, &credentials, &redactor, &mut pending)
                .await?;
            match outcome {
                Outcome::Next => idx += 1,
                Outcome::Paused => return Ok(()),
                Outcome::Stop => {
                    pending.extend(
                        skipped(&spec, idx + 1, spec.steps.len()).map(|rec| Pending { rec, elapsed: None }),
                    );
                    return self.finish_with(id, run::SKIPPED, None, pending).await;
                }
                Outcome::Jump(target) => {
                    if !self.flush(&claimed, &mut pending, idx + 1).await? {
                        return Ok(());
                    }
                    self.skip_from(&claimed, &spec, idx + 1, target).await?;
                    idx = target;
                }
            }
            // Cancelled (or deleted) while we worked? (Steps kept in memory are
            // checked when stored: only a run still ours is written.)
            if pending.is_empty()
                && matches!(self.inner.system.status(id).await?, Some(s) if s != run::RUNNING)
            {
                return Ok(());
            }
        }
        self.finish_with(id, run::SUCCEEDED, None, pending).await
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
            self.inner.system.skip_steps(claimed.id, claimed.owner_id, &skipped).await?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_lines)]
    #[allow(clippy::too_many_arguments)]
    async fn step(
        &self,
        claimed: &Claimed,
        spec: &pb::PilotSpec,
        idx: usize,
        step: &pb::Step,
        ctx: &mut Value,
        credentials: &HashMap<String, Credential>,
        redactor: &Redactor,
        pending: &mut Vec<Pending>,
    ) -> anyhow::Result<Outcome> {
        let id = claimed.id;
        let me = &self.inner.me;
        let kind = step.kind.as_ref().map(kind_name).unwrap_or("unknown");
        let i = i32::try_from(idx).unwrap_or(i32::MAX);
        let local = self.is_local(step, credentials);
        // Anything that may leave the server starts from stored state.
        if !local && !self.flush(claimed, pending, idx).await? {
            return Ok(Outcome::Paused);
        }
        let base = StepRecord {
            idx: i,
            key: step.key.clone(),
            kind,
            status: step::RUNNING,
            attempts: 0,
            provider: None,
            output: None,
            truncated: false,
            error: None,
            started_at: Some(OffsetDateTime::now_utc()),
            finished_at: None,
        };

        // Confirm before mutate: approval steps, and mutating steps that ask for it.
        let needs_approval = match &step.kind {
            Some(Kind::Approval(_)) => true,
            Some(Kind::Slack(_) | Kind::Email(_)) => step.requires_approval,
            Some(Kind::Http(h)) => step.requires_approval && h.method() != pb::HttpMethod::Get,
            _ => false,
        };
        let mut approval_output = None;
        if needs_approval {
            match self.inner.system.approval(id, i).await? {
                Some((s, by, comment)) if s == approval::APPROVED => {
                    approval_output = Some(json!({
                        "approved": true,
                        "decided_by": by.map(|u| u.to_string()),
                        "comment": comment.unwrap_or_default(),
                    }));
                }
                Some(_) => return Ok(Outcome::Paused),
                None => {
                    let message = match &step.kind {
                        Some(Kind::Approval(a)) => self.inner.templates.render(&a.message, ctx),
                        _ => Ok(format!("Step \"{}\" ({kind}) is about to run. Approve?", step.key)),
                    };
                    let message = match message {
                        Ok(m) => redactor.text(&m),
                        Err(e) => {
                            return self
                                .fail(
                                    claimed,
                                    base,
                                    0,
                                    &redactor.text(&format!("approval.message: {e}")),
                                    pending,
                                )
                                .await;
                        }
                    };
                    let expires = match &step.kind {
                        Some(Kind::Approval(a)) if a.expires_after_seconds > 0 => {
                            Duration::from_secs(u64::from(a.expires_after_seconds))
                        }
                        _ => self.inner.config.runs.approval_expiry,
                    };
                    let rec = StepRecord { status: step::AWAITING_APPROVAL, ..base.clone() };
                    if let Some(state) = self
                        .inner
                        .system
                        .await_approval(id, me, &rec, &message, OffsetDateTime::now_utc() + expires)
                        .await?
                    {
                        self.inner.events.publish(&state, Some(step_event(&rec, None))).await;
                        tracing::info!(step = %step.key, "run paused for approval");
                    }
                    return Ok(Outcome::Paused);
                }
            }
        }

        if !local {
            if let Some(state) = self.inner.system.record_step(id, me, &base, i).await? {
                self.inner.events.publish(&state, Some(step_event(&base, None))).await;
            } else {
                return Ok(Outcome::Paused);
            }
        }

        // Run with timeout and retries.
        let started = Instant::now();
        let timeout = if step.timeout_ms > 0 {
            Duration::from_millis(u64::from(step.timeout_ms))
        } else {
            self.inner.config.steps.default_timeout
        };
        let retry = step.retry.unwrap_or_default();
        let defaults = &self.inner.config.steps;
        let max_attempts =
            if retry.max_attempts > 0 { retry.max_attempts } else { defaults.default_max_attempts }.max(1);
        let initial = if retry.initial_backoff_ms > 0 {
            Duration::from_millis(u64::from(retry.initial_backoff_ms))
        } else {
            defaults.default_initial_backoff
        };
        let max_backoff = if retry.max_backoff_ms > 0 {
            Duration::from_millis(u64::from(retry.max_backoff_ms))
        } else {
            defaults.default_max_backoff
        };

        let mut attempt = 0u32;
        let result = loop {
            attempt += 1;
            let env = StepEnv {
                http: &self.inner.http,
                providers: &self.inner.config.providers,
                guard: &self.inner.guard,
                templates: &self.inner.templates,
                ctx,
                credentials,
                idempotency_key: format!("{id}/{}", step.key),
                timeout,
            };
            let attempt_result = match tokio::time::timeout(
                timeout,
                self.attempt(&env, step, claimed, approval_output.clone()),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(StepError {
                    message: format!("the step timed out after {} ms", timeout.as_millis()),
                    retryable: true,
                }),
            };
            match attempt_result {
                Err(e) if e.retryable && attempt < max_attempts => {
                    let backoff = backoff(initial, max_backoff, attempt);
                    tracing::info!(step = %step.key, attempt, error = %redactor.text(&e.message), backoff_ms = backoff.as_millis() as u64, "step attempt failed; retrying");
                    tokio::time::sleep(backoff).await;
                    if !self.inner.system.renew(id, me, self.inner.config.runs.lease).await? {
                        return Ok(Outcome::Paused);
                    }
                }
                other => break other,
            }
        };
        metrics::histogram!("executor_step_duration_seconds", "kind" => kind)
            .record(started.elapsed().as_secs_f64());

        let (output, provider) = match result {
            Ok(out) => out,
            Err(e) => {
                let message = redactor.text(&e.message);
                return self.fail(claimed, base, attempt, &message, pending).await;
            }
        };
        let output = redactor.json(&output);
        let (stored, truncated) = preview(&output, self.inner.config.steps.preview_bytes);
        let (outcome, next) = match (&step.kind, &output) {
            (Some(Kind::Condition(c)), Value::Object(o)) if o.get("result") == Some(&Value::Bool(false)) => {
                if c.on_false() == pb::OnFalse::Jump {
                    // Validated at save time to be a later step of the same version.
                    match spec.steps.iter().position(|s| s.key == c.jump_to).filter(|t| *t > idx) {
                        Some(target) => (Outcome::Jump(target), target),
                        None => {
                            return self
                                .fail(
                                    claimed,
                                    base,
                                    attempt,
                                    &format!("condition.jump_to: no later step \"{}\"", c.jump_to),
                                    pending,
                                )
                                .await;
                        }
                    }
                } else {
                    (Outcome::Stop, idx + 1)
                }
            }
            _ => (Outcome::Next, idx + 1),
        };
        let rec = StepRecord {
            status: step::SUCCEEDED,
            attempts: i32::try_from(attempt).unwrap_or(i32::MAX),
            provider: provider.clone(),
            output: Some(stored),
            truncated,
            finished_at: Some(OffsetDateTime::now_utc()),
            ..base
        };
        if local {
            pending.push(Pending { rec, elapsed: Some(started.elapsed()) });
        } else {
            let Some(state) =
                self.inner.system.record_step(id, me, &rec, i32::try_from(next).unwrap_or(i32::MAX)).await?
            else {
                return Ok(Outcome::Paused);
            };
            self.inner.events.publish(&state, Some(step_event(&rec, Some(started.elapsed())))).await;
        }
        ctx["steps"][&step.key] = json!({ "output": output });
        Ok(outcome)
    }

    async fn fail(
        &self,
        claimed: &Claimed,
        base: StepRecord,
        attempts: u32,
        message: &str,
        pending: &mut Vec<Pending>,
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
        let mut steps = std::mem::take(pending);
        steps.push(Pending { rec, elapsed: None });
        self.finish_with(claimed.id, run::FAILED, Some(&error), steps).await?;
        Ok(Outcome::Paused)
    }

    /// One attempt of a step: (output, AI provider label).
    async fn attempt(
        &self,
        env: &StepEnv<'_>,
        step: &pb::Step,
        claimed: &Claimed,
        approval_output: Option<Value>,
    ) -> Result<(Value, Option<String>), StepError> {
        match step.kind.as_ref() {
            None => Err(StepError::permanent("the step has no kind")),
            Some(Kind::Transform(t)) => steps::transform(env, t).map(|v| (v, None)),
            Some(Kind::Condition(c)) => steps::condition(env, c).map(|b| (json!({ "result": b }), None)),
            Some(Kind::Slack(s)) => steps::slack(env, s).await.map(|v| (v, None)),
            Some(Kind::Email(e)) => steps::email(env, e).await.map(|v| (v, None)),
            Some(Kind::Http(h)) => {
                steps::http(env, h, self.inner.config.steps.max_output_bytes).await.map(|v| (v, None))
            }
            Some(Kind::Approval(_)) => Ok((approval_output.unwrap_or(json!({ "approved": true })), None)),
            Some(Kind::Ai(a)) => self.ai(env, a, claimed).await,
        }
    }

    async fn ai(
        &self,
        env: &StepEnv<'_>,
        a: &pb::AiStep,
        _claimed: &Claimed,
    ) -> Result<(Value, Option<String>), StepError> {
        let render = |field: &str, source: &str| {
            env.templates.render(source, env.ctx).map_err(|e| StepError::permanent(format!("{field}: {e}")))
        };
        let request = ai::Request {
            task: a.task(),
            input: render("ai.input", &a.input)?,
            prompt: render("ai.prompt", &a.prompt)?,
            labels: a.labels.clone(),
            fields: a.fields.clone(),
            model: if a.model.is_empty() {
                self.inner.config.ai.default_model.clone()
            } else {
                a.model.clone()
            },
            max_tokens: if a.max_tokens > 0 { a.max_tokens } else { self.inner.config.ai.default_max_tokens },
        };
        let name = template::connector(&a.connector, "anthropic");
        let (provider, key) = match (env.credentials.get(&name), &self.inner.config.ai.server_key) {
            (Some(user), _) => (ai::Provider::User, Some(user.value.clone())),
            (None, Some(server)) => (ai::Provider::Server, Some(server.clone())),
            (None, None) => (ai::Provider::Local, None),
        };
        let mut output = match key {
            Some(key) => {
                ai::anthropic(
                    env.http,
                    &self.inner.config.providers.anthropic_base_url,
                    key.expose_secret(),
                    &request,
                    env.timeout,
                )
                .await?
            }
            None => ai::local(&request),
        };
        output["provider"] = Value::String(provider.label().to_owned());
        Ok((output, Some(provider.label().to_owned())))
    }
}

/// A run waiting for a free slot.
pub struct Queued {
    id: Uuid,
    parent: tracing::Span,
    claimed: Option<(Claimed, Instant)>,
}

/// A step that ran without leaving the server, not stored yet.
struct Pending {
    rec: StepRecord,
    elapsed: Option<Duration>,
}

/// Records for steps `from..to`, skipped.
fn skipped(spec: &pb::PilotSpec, from: usize, to: usize) -> impl Iterator<Item = StepRecord> + '_ {
    (from..to.min(spec.steps.len())).map(|i| StepRecord {
        idx: i32::try_from(i).unwrap_or(i32::MAX),
        key: spec.steps[i].key.clone(),
        kind: spec.steps[i].kind.as_ref().map(kind_name).unwrap_or("unknown"),
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

fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::Ai(_) => "ai",
        Kind::Slack(_) => "slack",
        Kind::Email(_) => "email",
        Kind::Http(_) => "http",
        Kind::Transform(_) => "transform",
        Kind::Condition(_) => "condition",
        Kind::Approval(_) => "approval",
    }
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
}
