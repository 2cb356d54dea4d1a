//! Starts the executor in-process against a fresh database, a unique NATS prefix
//! and the fakes; helpers to publish triggers and wait for runs.

use std::{net::SocketAddr, time::Duration};

use async_nats::jetstream;
use bizops_authn::{OwnerId, ServiceSigner, SessionSigner, SessionVerifier, SigningKey};
use bizops_bus::Subjects;
use bizops_proto::{
    catalog::v1 as cpb,
    events::v1 as ev,
    executor::v1::{self as pb, executor_service_client::ExecutorServiceClient},
    timestamp::to_proto,
};
use bizops_testkit::{
    InProcess, LogCapture, PATIENCE, TestDb, any_port, capture_logs, eventually, wait::Seen,
};
pub use bizops_testkit::{
    authed,
    steps::{http, step, transform},
};
use executor::{
    App, ExecutorConfig, MIGRATOR,
    progress::{Counter, Progress},
};
use time::OffsetDateTime;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::fakes::{self, CatalogData, VaultData};

pub struct Env {
    pub db: TestDb,
    pub catalog: CatalogData,
    pub vault: VaultData,
    pub fakes_addr: SocketAddr,
    pub sessions: SessionSigner,
    pub session_public: String,
    pub executor_key: SigningKey,
    pub identity: ServiceSigner,
    pub prefix: String,
    pub subjects: Subjects,
    pub nats: async_nats::Client,
    pub js: jetstream::Context,
    pub logs: LogCapture,
}

pub struct Exec {
    pub client: ExecutorServiceClient<Channel>,
    /// What the executor has done and has in hand.
    pub progress: Progress,
    server: InProcess,
}

impl Exec {
    /// Stops the executor gracefully.
    pub async fn stop(self) {
        self.server.stop().await.expect("executor stops gracefully");
    }
}

impl Env {
    pub async fn new() -> Self {
        let logs = capture_logs();
        bizops_telemetry::install_crypto_provider();
        let db = TestDb::create(&MIGRATOR).await.expect("test database");
        let session_key = SigningKey::generate("test-session").unwrap();
        let catalog = CatalogData::default();
        *catalog.sessions.lock().unwrap() =
            Some(SessionVerifier::access([&session_key.public()], "bizops-identity", "bizops"));
        let vault = VaultData::default();
        let fakes_addr = fakes::serve(catalog.clone(), vault.clone()).await;
        let prefix = bizops_testkit::nats_prefix();
        let nats = async_nats::connect(bizops_testkit::nats_url()).await.unwrap();
        let js = jetstream::new(nats.clone());
        Self {
            db,
            catalog,
            vault,
            fakes_addr,
            session_public: session_key.public().to_config_string(),
            sessions: SessionSigner::new(session_key, "bizops-identity", "bizops"),
            executor_key: SigningKey::generate("executor").unwrap(),
            identity: ServiceSigner::new("identity", SigningKey::generate("identity").unwrap()),
            subjects: Subjects::new(&prefix).unwrap(),
            prefix,
            nats,
            js,
            logs,
        }
    }

    pub fn config(&self) -> ExecutorConfig {
        let mut c =
            ExecutorConfig { grpc_addr: any_port(), metrics_addr: any_port(), ..ExecutorConfig::default() };
        c.database.url = Some(self.db.url("bizops_executor").into());
        c.database.system_url = Some(self.db.url("bizops_executor_system").into());
        c.database.max_connections = 6;
        c.database.system_max_connections = 6;
        c.auth.session_public_keys = vec![self.session_public.clone()];
        c.auth.service_key = Some(self.executor_key.to_secret_string());
        c.auth.trusted_callers = vec![self.identity.public_key().to_config_string()];
        c.nats.url = bizops_testkit::nats_url().into();
        c.nats.prefix = self.prefix.clone();
        c.catalog_url = format!("http://{}", self.fakes_addr);
        c.vault_url = format!("http://{}", self.fakes_addr);
        c.runs.reaper_interval = Duration::from_millis(200);
        c.runs.sweep_interval = Duration::from_millis(300);
        c.steps.default_initial_backoff = Duration::from_millis(20);
        c.steps.default_max_backoff = Duration::from_millis(100);
        c.scheduler.tick = Duration::from_millis(200);
        c.providers.slack_allowed_hosts = vec!["127.0.0.1".into()];
        c.providers.slack_require_https = false;
        c.http.allowed_networks = vec!["127.0.0.0/8".into()];
        c.shutdown_drain = Duration::ZERO;
        c.shutdown_grace = Duration::from_secs(5);
        // Templates render in the executor binary (this test binary is not it).
        c.templates.worker = Some(env!("CARGO_BIN_EXE_executor").into());
        c
    }

    pub async fn start(&self, config: ExecutorConfig) -> Exec {
        self.start_with_clock(config, std::sync::Arc::new(bizops_runtime::clock::SystemClock)).await
    }

    /// An executor whose retention uses `clock`.
    pub async fn start_with_clock(
        &self,
        config: ExecutorConfig,
        clock: std::sync::Arc<dyn bizops_runtime::clock::Clock>,
    ) -> Exec {
        let app = App::build(config).await.expect("executor builds").with_clock(clock);
        let addr = app.grpc_addr().unwrap();
        let progress = app.progress();
        let server = InProcess::start(addr, |until| app.run_until(until));
        let client = ExecutorServiceClient::connect(server.url()).await.unwrap();
        Exec { client, progress, server }
    }

    /// An executor on a runtime of its own, to be killed like a crashed process.
    pub fn start_killable(&self, config: ExecutorConfig) -> InProcess {
        InProcess::start_isolated(move || async move {
            let app = App::build(config).await?;
            let addr = app.grpc_addr()?;
            Ok((addr, move |until| {
                Box::pin(app.run_until(until))
                    as std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>
            }))
        })
        .unwrap()
    }

    pub fn user(&self, owner: OwnerId) -> String {
        let now = OffsetDateTime::now_utc();
        self.sessions.sign_access(owner, Uuid::now_v7(), now, now + time::Duration::seconds(55)).unwrap()
    }

    /// Registers a Pilot version with the fake catalog.
    pub fn pilot(&self, owner: Uuid, steps: Vec<cpb::Step>) -> Uuid {
        let pilot = Uuid::now_v7();
        self.catalog.put(owner, pilot, 1, cpb::PilotSpec { title: "T".into(), steps, ..Default::default() });
        pilot
    }

    /// Publishes a webhook-like trigger the way the gateway does.
    pub async fn trigger(&self, owner: Uuid, pilot: Uuid, key: &str, payload: serde_json::Value) -> Uuid {
        let trigger_id = Uuid::now_v7();
        let t = ev::Trigger {
            trigger_id: trigger_id.to_string(),
            owner_id: owner.to_string(),
            pilot_id: pilot.to_string(),
            pilot_version: 1,
            idempotency_key: key.into(),
            source: ev::TriggerSource::Webhook as i32,
            payload: serde_json::to_vec(&payload).unwrap().into(),
            content_type: "application/json".into(),
            accepted_at: Some(to_proto(OffsetDateTime::now_utc())),
            ..Default::default()
        };
        bizops_bus::publish(
            &self.js,
            self.subjects.trigger(owner, pilot),
            Some(&format!("{pilot}:{key}:{trigger_id}")),
            bizops_bus::encode(&t),
        )
        .await
        .unwrap();
        trigger_id
    }

    /// Waits until the Pilot has a run in one of `statuses`, and returns it (with steps).
    pub async fn wait_run(
        &self,
        exec: &Exec,
        owner: OwnerId,
        pilot: Uuid,
        statuses: &[ev::RunStatus],
    ) -> pb::Run {
        let token = self.user(owner);
        let seen = Seen::new(format!("a run of Pilot {pilot} in {statuses:?}"));
        let found = eventually(&seen, PATIENCE, || async {
            let runs = exec
                .client
                .clone()
                .list_runs(authed(
                    &token,
                    pb::ListRunsRequest {
                        pilot_id: pilot.to_string(),
                        page_size: 100,
                        page_token: String::new(),
                    },
                ))
                .await
                .unwrap()
                .into_inner()
                .runs;
            seen.saw(&runs);
            runs.into_iter().find(|r| statuses.iter().any(|s| *s as i32 == r.status))
        })
        .await;
        exec.client
            .clone()
            .get_run(authed(&token, pb::GetRunRequest { run_id: found.id }))
            .await
            .unwrap()
            .into_inner()
            .run
            .unwrap()
    }

    /// Waits until the executors in `execs` have taken in every trigger and
    /// pilot-deleted event published so far and have nothing in hand: no batch
    /// being taken in, no run queued or executing. Whatever those could have
    /// caused has happened by then.
    pub async fn quiesce(&self, execs: &[&Exec]) {
        let consumers =
            executor::intake::durable_consumers(&ExecutorConfig::default().intake, &self.subjects);
        let consumers: Vec<(&str, &str)> = consumers.iter().map(|(s, c)| (s.as_str(), c.as_str())).collect();
        bizops_testkit::quiesce_with(&self.js, &consumers, || execs.iter().all(|e| e.progress.idle())).await;
    }

    pub async fn superuser(&self) -> sqlx::PgPool {
        self.db.superuser_pool().await.unwrap()
    }
}

pub fn owner() -> OwnerId {
    OwnerId(Uuid::now_v7())
}

pub const TERMINAL: &[ev::RunStatus] = &[
    ev::RunStatus::Succeeded,
    ev::RunStatus::Failed,
    ev::RunStatus::Skipped,
    ev::RunStatus::Rejected,
    ev::RunStatus::Expired,
    ev::RunStatus::Cancelled,
];

pub fn output(run: &pb::Run, key: &str) -> serde_json::Value {
    let s =
        run.steps.iter().find(|s| s.step_key == key).unwrap_or_else(|| panic!("no step {key} in {run:?}"));
    serde_json::from_str(&s.output_preview).unwrap_or(serde_json::Value::Null)
}

pub fn step_of<'a>(run: &'a pb::Run, key: &str) -> &'a pb::StepRun {
    run.steps.iter().find(|s| s.step_key == key).unwrap_or_else(|| panic!("no step {key} in {run:?}"))
}

/// Waits until a background loop has completed a whole pass that started after
/// this call (its counter moved on by two), e.g. a sweep that read a clock just
/// moved, or a reaper pass after a run ended.
pub async fn full_pass(what: &str, passes: &Counter) {
    let from = passes.get();
    tokio::time::timeout(PATIENCE, passes.full_pass())
        .await
        .unwrap_or_else(|_| panic!("no whole {what} pass after pass {from} within {PATIENCE:?}"));
}
