//! Builds the executor from configuration and runs it until shutdown.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use bizops_authn::AuthLayer;
use bizops_config::DbRole;
use bizops_proto::executor::v1::executor_service_server::ExecutorServiceServer;
use bizops_runtime::{
    GrpcServer, Shutdown,
    clock::{Clock, SystemClock},
};
use tonic::service::Routes;
use uuid::Uuid;

use crate::{
    clients::Clients,
    config::{ExecutorConfig, GRPC_SERVICE, SERVICE_NAME},
    deletion::Deleter,
    engine::Engine,
    events::Events,
    grpc::Executor,
    intake::{self, Intake},
    lease::PgLeaseStore,
    maintenance::{self, Scheduler},
    net::Network,
    progress::Progress,
    sandbox::{Limits, Templates},
    store::PgRunStore,
    system::SystemStore,
};

/// A built, bound, not yet running executor.
pub struct App {
    server: GrpcServer,
    config: ExecutorConfig,
    auth: AuthLayer,
    system: SystemStore,
    leases: PgLeaseStore,
    store: PgRunStore,
    clients: Clients,
    nats: async_nats::Client,
    js: async_nats::jetstream::Context,
    me: String,
    clock: Arc<dyn Clock>,
    progress: Progress,
    templates: Templates,
}

impl App {
    /// Validates configuration, connects to Postgres and NATS (creating the
    /// streams) and binds the listeners.
    pub async fn build(config: ExecutorConfig) -> anyhow::Result<Self> {
        let signer = config.auth.signer(SERVICE_NAME)?.ok_or_else(|| {
            anyhow::anyhow!(
                "no service key: set BIZOPS_AUTH__SERVICE_KEY=executor:<base64 seed> (the executor calls the catalog and \
                 the vault as itself; `executor keygen --kid executor` prints one)"
            )
        })?;
        for n in &config.http.allowed_networks {
            Network::parse(n).map_err(|e| anyhow::anyhow!("BIZOPS_HTTP__ALLOWED_NETWORKS: {e}"))?;
        }
        let templates = Templates::new(
            &config.templates,
            Limits { fuel: config.steps.template_fuel, max_output: config.steps.max_output_bytes },
        )?;
        templates.check().await?;
        let auth = AuthLayer::new(config.auth.authenticator(SERVICE_NAME, config.identity_url.as_deref())?);
        let service_pool = bizops_runtime::db::pool(&config.database, SERVICE_NAME, DbRole::Service).await?;
        let system_pool = bizops_runtime::db::pool(&config.database, SERVICE_NAME, DbRole::System).await?;
        let (nats, js) = config.nats.connect(SERVICE_NAME).await?;
        let clients = Clients::new(&config.catalog_url, &config.vault_url, &signer)?;
        let server = GrpcServer::bind(SERVICE_NAME, GRPC_SERVICE, config.grpc_addr, config.metrics_addr)
            .await?
            .with_shutdown(config.shutdown_drain, config.shutdown_grace);
        Ok(Self {
            server,
            auth,
            system: SystemStore::new(system_pool.clone()),
            leases: PgLeaseStore::new(system_pool),
            store: PgRunStore::new(service_pool),
            clients,
            nats,
            js,
            me: format!("executor-{}", Uuid::now_v7().simple()),
            clock: Arc::new(SystemClock),
            progress: Progress::default(),
            templates,
            config,
        })
    }

    /// Uses `clock` for retention (the job sweep) instead of the system clock.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> anyhow::Result<SocketAddr> {
        self.server.grpc_addr()
    }

    /// The bound metrics address.
    pub fn metrics_addr(&self) -> anyhow::Result<SocketAddr> {
        self.server.metrics_addr()
    }

    /// This instance's lease-owner id.
    pub fn instance(&self) -> &str {
        &self.me
    }

    /// The counters of what this executor has done and has in hand (runs in
    /// flight, passes of its background loops), to wait for facts rather than time.
    pub fn progress(&self) -> Progress {
        self.progress.clone()
    }

    /// Runs until SIGTERM or Ctrl-C.
    pub async fn run(self) -> anyhow::Result<()> {
        self.run_until(bizops_telemetry::shutdown_signal()).await
    }

    /// Runs until `shutdown` resolves: stops pulling, lets in-flight steps finish
    /// within the grace period, releases leases.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let config = self.config;
        let subjects = config.nats.subjects()?;
        let events = Events::new(self.nats.clone(), subjects.clone());
        let (engine, queue) = Engine::new(
            self.me.clone(),
            config.clone(),
            self.leases,
            self.clients.clone(),
            events.clone(),
            self.progress.clone(),
            self.templates,
        )?;
        let deleter = Deleter {
            system: self.system.clone(),
            js: self.js.clone(),
            subjects: subjects.clone(),
            clients: self.clients.clone(),
            second_pass: Duration::from_millis(500),
        };

        let stop = Shutdown::new();
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(engine.clone().dispatch(queue, stop.stopped(), config.shutdown_grace)));
        let intake = Intake {
            js: self.js.clone(),
            subjects: subjects.clone(),
            config: config.intake.clone(),
            system: self.system.clone(),
            clients: self.clients.clone(),
            engine: engine.clone(),
            keep: config.runs.max_per_pilot,
            unpruned: std::sync::Arc::default(),
        };
        tasks.push(tokio::spawn(intake.run(stop.stopped())));
        tasks.push(tokio::spawn(intake::pilot_deleted(
            self.js.clone(),
            subjects.clone(),
            deleter.clone(),
            stop.stopped(),
        )));
        tasks.push(tokio::spawn(maintenance::reaper(
            self.system.clone(),
            engine.clone(),
            config.runs.reaper_interval,
            stop.stopped(),
        )));
        tasks.push(tokio::spawn(maintenance::workload(
            self.system.clone(),
            self.js.clone(),
            (subjects.triggers_stream(), config.intake.consumer.clone()),
            engine.owner_concurrency(),
            config.runs.reaper_interval,
            stop.stopped(),
        )));
        tasks.push(tokio::spawn(maintenance::approvals(
            self.system.clone(),
            events.clone(),
            config.runs.reaper_interval,
            self.progress.expiry_passes().clone(),
            stop.stopped(),
        )));
        tasks.push(tokio::spawn(maintenance::sweeper(
            self.system.clone(),
            self.clock.clone(),
            config.runs.clone(),
            self.progress.sweeps().clone(),
            stop.stopped(),
        )));
        let scheduler = Scheduler {
            system: self.system.clone(),
            clients: self.clients.clone(),
            js: self.js.clone(),
            subjects: subjects.clone(),
            tick: config.scheduler.tick,
            max_catch_up: config.scheduler.max_catch_up,
            passes: self.progress.scheduler_passes().clone(),
        };
        tasks.push(tokio::spawn(scheduler.run(stop.stopped())));

        let executor = Executor {
            store: self.store,
            engine,
            events,
            clients: self.clients,
            js: self.js,
            subjects,
            deleter,
        };
        let service = ExecutorServiceServer::new(executor).max_decoding_message_size(2 * 1024 * 1024);
        self.server.run(self.auth, Routes::new(service), stop, tasks, shutdown).await
    }
}
