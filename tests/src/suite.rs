//! The whole suite in one test process: identity, pilot-catalog, credential-vault,
//! executor and gateway, each on a runtime of its own (so a test can kill one the
//! way a crash would), on one fresh database, one NATS prefix, and wiremock for
//! the outside APIs (Slack, Resend, Anthropic).

use std::{net::SocketAddr, pin::Pin, sync::Arc};

use async_nats::jetstream;
use bizops_bus::Subjects;
use bizops_proto::{
    catalog::v1::catalog_service_client::CatalogServiceClient,
    executor::v1::{self as xpb, executor_service_client::ExecutorServiceClient},
    identity::v1::{self as ipb, identity_service_client::IdentityServiceClient},
    vault::v1::vault_service_client::VaultServiceClient,
};
use bizops_runtime::clock::ShiftedClock;
use bizops_testkit::{InProcess, LogCapture, TestDb, Until, any_port, capture_logs, procs::generate_keys};
use bizops_topology::{Topology, Wiring};
use credential_vault::VaultConfig;
use executor::ExecutorConfig;
use gateway::GatewayConfig;
use identity::IdentityConfig;
use pilot_catalog::CatalogConfig;
use serde::de::DeserializeOwned;
use tonic::transport::Channel;
use uuid::Uuid;
use wiremock::MockServer;

pub use bizops_testkit::browser::{ORIGIN, PASSWORD};

use crate::{browser::Browser, profile};

/// One of the five services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Svc {
    /// identity
    Identity,
    /// pilot-catalog
    Catalog,
    /// credential-vault
    Vault,
    /// executor
    Executor,
    /// gateway
    Gateway,
}

impl Svc {
    /// Every service.
    pub const ALL: [Svc; 5] = [Svc::Identity, Svc::Catalog, Svc::Vault, Svc::Executor, Svc::Gateway];

    /// Its name in the topology.
    pub fn name(self) -> &'static str {
        match self {
            Svc::Identity => "identity",
            Svc::Catalog => "catalog",
            Svc::Vault => "vault",
            Svc::Executor => "executor",
            Svc::Gateway => "gateway",
        }
    }

    /// The service named `name` in the topology.
    pub fn named(name: &str) -> Self {
        Self::ALL.into_iter().find(|s| s.name() == name).unwrap_or_else(|| panic!("no service {name}"))
    }
}

/// The configurations of the five services. Cross-service URLs and listen
/// addresses are filled in by the suite when it starts each service.
#[derive(Clone)]
pub struct Configs {
    pub identity: IdentityConfig,
    pub catalog: CatalogConfig,
    pub vault: VaultConfig,
    pub executor: ExecutorConfig,
    pub gateway: GatewayConfig,
}

/// A signed-in account (gRPC view).
#[derive(Debug, Clone)]
pub struct User {
    pub owner: Uuid,
    pub email: String,
    pub token: String,
}

/// The running suite.
pub struct Suite {
    pub db: TestDb,
    pub configs: Configs,
    pub prefix: String,
    pub subjects: Subjects,
    pub nats: async_nats::Client,
    pub js: jetstream::Context,
    /// The executor's retention clock.
    pub clock: ShiftedClock,
    /// Slack incoming webhooks (`POST /services/...` answers `ok`).
    pub slack: MockServer,
    /// Resend (`POST /emails`).
    pub resend: MockServer,
    /// Anthropic (nothing mounted: tests mount what they need).
    pub anthropic: MockServer,
    pub logs: LogCapture,
    /// `http://<gateway>`.
    pub base: String,
    http: reqwest::Client,
    topology: Topology,
    /// The running executor's counters (replaced when it restarts).
    executor_progress: Arc<std::sync::Mutex<Option<executor::progress::Progress>>>,
    running: Vec<(Svc, InProcess)>,
}

type RunFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// A configuration from the variables a process of the service would get.
fn config<T: DeserializeOwned>(vars: &[(String, String)], renamed: &[bizops_config::Renamed]) -> T {
    let loaded = bizops_config::from_vars(vars.iter().map(|(k, v)| (k, v)), renamed)
        .unwrap_or_else(|e| panic!("the suite's configuration: {e}"));
    assert!(loaded.deprecated.is_empty(), "the suite uses deprecated names: {:?}", loaded.deprecated);
    loaded.config
}

/// Where the configuration of `svc` keeps the URL of `callee` (`BIZOPS_<CALLEE>_URL`).
fn url_field<'a>(c: &'a mut Configs, svc: Svc, callee: &str) -> &'a mut String {
    match (svc, callee) {
        (Svc::Identity, "catalog") => &mut c.identity.catalog_url,
        (Svc::Identity, "executor") => &mut c.identity.executor_url,
        (Svc::Identity, "vault") => &mut c.identity.vault_url,
        (Svc::Executor, "catalog") => &mut c.executor.catalog_url,
        (Svc::Executor, "vault") => &mut c.executor.vault_url,
        (Svc::Gateway, "identity") => &mut c.gateway.identity_url,
        (Svc::Gateway, "catalog") => &mut c.gateway.catalog_url,
        (Svc::Gateway, "vault") => &mut c.gateway.vault_url,
        (Svc::Gateway, "executor") => &mut c.gateway.executor_url,
        _ => panic!("the topology has {svc:?} call {callee}, but its configuration has no URL for it"),
    }
}

impl Suite {
    /// Starts the suite with the test defaults.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts the suite after `adjust` changed the configurations.
    pub async fn start_with(adjust: impl FnOnce(&mut Configs)) -> Self {
        let logs = capture_logs();
        bizops_telemetry::install_crypto_provider();
        let db = TestDb::empty().await.expect("test database");
        for migrator in
            [&identity::MIGRATOR, &pilot_catalog::MIGRATOR, &credential_vault::MIGRATOR, &executor::MIGRATOR]
        {
            db.migrate(migrator).await.expect("migrations");
        }
        let fakes = profile::Fakes::start().await;
        let prefix = bizops_testkit::nats_prefix();

        // The wiring from the topology (identity's public session key instead of
        // its URL, so identity can start last; the other URLs are set at launch),
        // then the tests' profile, read like a process reads its environment.
        let topology = Topology::get();
        let keys = generate_keys(&topology).unwrap();
        let profile = profile::env(&topology, &db, &prefix, &fakes);
        let nats_url = bizops_testkit::nats_url();
        let unset = |_: &str| String::new();
        let wiring = Wiring { keys: &keys, url: &unset, static_session_keys: true, nats_url: &nats_url };
        let vars = |svc: Svc| {
            let mut vars = topology.env(svc.name(), &wiring).unwrap();
            let binary = &topology.service(svc.name()).unwrap().binary;
            vars.extend(profile[binary].iter().cloned());
            vars
        };
        let identity: IdentityConfig = config(&vars(Svc::Identity), identity::config::RENAMED);
        let catalog: CatalogConfig = config(&vars(Svc::Catalog), pilot_catalog::config::RENAMED);
        let vault: VaultConfig = config(&vars(Svc::Vault), credential_vault::config::RENAMED);
        let executor: ExecutorConfig = config(&vars(Svc::Executor), executor::config::RENAMED);
        let gateway: GatewayConfig = config(&vars(Svc::Gateway), gateway::config::RENAMED);
        let profile::Fakes { slack, resend, anthropic } = fakes;

        let mut configs = Configs { identity, catalog, vault, executor, gateway };
        // The executor runs in this test binary; templates render in its own binary.
        configs.executor.templates.worker = Some(crate::bin_dir().join("executor"));
        for addr in [
            &mut configs.identity.grpc_addr,
            &mut configs.identity.metrics_addr,
            &mut configs.catalog.grpc_addr,
            &mut configs.catalog.metrics_addr,
            &mut configs.vault.grpc_addr,
            &mut configs.vault.metrics_addr,
            &mut configs.executor.grpc_addr,
            &mut configs.executor.metrics_addr,
            &mut configs.gateway.http_addr,
            &mut configs.gateway.metrics_addr,
        ] {
            *addr = any_port();
        }
        adjust(&mut configs);

        let client =
            async_nats::connect(bizops_testkit::nats_url()).await.expect("NATS (scripts/dev-services)");
        let mut suite = Self {
            db,
            configs,
            subjects: Subjects::new(&prefix).unwrap(),
            prefix,
            js: jetstream::new(client.clone()),
            nats: client,
            clock: ShiftedClock::default(),
            slack,
            resend,
            anthropic,
            logs,
            base: String::new(),
            http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
            running: Vec::new(),
            topology,
            executor_progress: Arc::default(),
        };
        // Each service is started after the ones it calls.
        let order: Vec<Svc> =
            suite.topology.start_order().unwrap().iter().map(|s| Svc::named(&s.name)).collect();
        for svc in order {
            suite.launch(svc);
        }
        suite
    }

    /// Builds and starts `svc` on its own runtime with its current configuration
    /// and the URLs of the services it calls (the topology's); the bound address
    /// is written back, so a restart listens where it did.
    pub fn launch(&mut self, svc: Svc) {
        let service = self.topology.service(svc.name()).unwrap();
        for callee in &service.calls {
            if !service.calls_only_for_session_keys(callee) {
                let url = self.url(Svc::named(callee));
                *url_field(&mut self.configs, svc, callee) = url;
            }
        }
        let c = &mut self.configs;
        let server = match svc {
            Svc::Identity => {
                let config = c.identity.clone();
                isolated(move || async move {
                    let app = identity::App::build(config).await?;
                    Ok::<Built, anyhow::Error>((
                        app.grpc_addr()?,
                        Box::new(move |u: Until| Box::pin(app.run_until(u)) as RunFuture),
                    ))
                })
            }
            Svc::Catalog => {
                let config = c.catalog.clone();
                isolated(move || async move {
                    let app = pilot_catalog::App::build(config).await?;
                    Ok::<Built, anyhow::Error>((
                        app.grpc_addr()?,
                        Box::new(move |u: Until| Box::pin(app.run_until(u)) as RunFuture),
                    ))
                })
            }
            Svc::Vault => {
                let config = c.vault.clone();
                isolated(move || async move {
                    let app = credential_vault::App::build(config).await?;
                    Ok::<Built, anyhow::Error>((
                        app.grpc_addr()?,
                        Box::new(move |u: Until| Box::pin(app.run_until(u)) as RunFuture),
                    ))
                })
            }
            Svc::Executor => {
                let (config, clock) = (c.executor.clone(), Arc::new(self.clock.clone()));
                let progress = self.executor_progress.clone();
                isolated(move || async move {
                    let app = executor::App::build(config).await?.with_clock(clock);
                    *progress.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                        Some(app.progress());
                    Ok::<Built, anyhow::Error>((
                        app.grpc_addr()?,
                        Box::new(move |u: Until| Box::pin(app.run_until(u)) as RunFuture),
                    ))
                })
            }
            Svc::Gateway => {
                let config = c.gateway.clone();
                isolated(move || async move {
                    let app = gateway::App::build(config).await?;
                    Ok::<Built, anyhow::Error>((
                        app.http_addr()?,
                        Box::new(move |u: Until| Box::pin(app.run_until(u)) as RunFuture),
                    ))
                })
            }
        };
        let addr = server.addr();
        match svc {
            Svc::Identity => c.identity.grpc_addr = addr,
            Svc::Catalog => c.catalog.grpc_addr = addr,
            Svc::Vault => c.vault.grpc_addr = addr,
            Svc::Executor => c.executor.grpc_addr = addr,
            Svc::Gateway => {
                c.gateway.http_addr = addr;
                self.base = format!("http://{addr}");
            }
        }
        self.running.retain(|(s, _)| *s != svc);
        self.running.push((svc, server));
    }

    fn take(&mut self, svc: Svc) -> InProcess {
        let i = self
            .running
            .iter()
            .position(|(s, _)| *s == svc)
            .unwrap_or_else(|| panic!("{svc:?} is not running"));
        self.running.remove(i).1
    }

    /// Stops `svc` gracefully.
    pub async fn stop(&mut self, svc: Svc) {
        self.take(svc).stop().await.unwrap_or_else(|e| panic!("{svc:?} did not stop gracefully: {e:#}"));
    }

    /// Ends `svc` abruptly, like `kill -9`.
    pub fn kill(&mut self, svc: Svc) {
        self.take(svc).kill();
    }

    /// `http://<addr>` of a gRPC service.
    pub fn url(&self, svc: Svc) -> String {
        let c = &self.configs;
        let addr = match svc {
            Svc::Identity => c.identity.grpc_addr,
            Svc::Catalog => c.catalog.grpc_addr,
            Svc::Vault => c.vault.grpc_addr,
            Svc::Executor => c.executor.grpc_addr,
            Svc::Gateway => c.gateway.http_addr,
        };
        format!("http://{addr}")
    }

    fn channel(&self, svc: Svc) -> Channel {
        tonic::transport::Endpoint::from_shared(self.url(svc)).unwrap().connect_lazy()
    }

    pub fn identity(&self) -> IdentityServiceClient<Channel> {
        IdentityServiceClient::new(self.channel(Svc::Identity))
    }

    pub fn catalog(&self) -> CatalogServiceClient<Channel> {
        CatalogServiceClient::new(self.channel(Svc::Catalog))
    }

    pub fn vault(&self) -> VaultServiceClient<Channel> {
        VaultServiceClient::new(self.channel(Svc::Vault))
    }

    pub fn executor(&self) -> ExecutorServiceClient<Channel> {
        ExecutorServiceClient::new(self.channel(Svc::Executor))
    }

    /// A superuser pool (bypasses row-level security).
    pub async fn superuser(&self) -> sqlx::PgPool {
        self.db.superuser_pool().await.unwrap()
    }

    /// A pool logged in as `role` (e.g. `bizops_catalog_system`).
    pub async fn pool_as(&self, role: &str) -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(&self.db.url(role)).await.unwrap()
    }

    /// Registers and signs in a fresh account.
    pub async fn user(&self, tag: &str) -> User {
        let email = format!("{tag}-{}@example.com", Uuid::now_v7().simple());
        let account = self
            .identity()
            .register(ipb::RegisterRequest {
                email: email.clone(),
                password: PASSWORD.into(),
                display_name: tag.into(),
            })
            .await
            .expect("register")
            .into_inner()
            .account
            .unwrap();
        let token = self.login(&email).await.expect("login");
        User { owner: account.id.parse().unwrap(), email, token }
    }

    /// Signs in; the session token.
    pub async fn login(&self, email: &str) -> Result<String, tonic::Status> {
        Ok(self
            .identity()
            .login(ipb::LoginRequest { email: email.into(), password: PASSWORD.into() })
            .await?
            .into_inner()
            .session
            .unwrap()
            .token)
    }

    /// A Slack incoming-webhook URL on the Slack mock.
    pub fn slack_url(&self) -> String {
        format!("{}/services/T000/B000/{}", self.slack.uri(), Uuid::now_v7().simple())
    }

    /// Sends a webhook through the gateway with the simple `X-Pilot-Secret` form;
    /// the status and the JSON answer.
    pub async fn hook(&self, pilot: &str, secret: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(format!("{}/hooks/{pilot}", self.base))
            .header("x-pilot-secret", secret)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("the gateway answers");
        let status = r.status().as_u16();
        let json = r.json().await.unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    /// A browser at the gateway, signed out.
    pub fn browser(&self) -> Browser {
        Browser::new(&self.base)
    }

    /// A browser of a fresh account, registered and signed in through the
    /// gateway's API (the CSRF token remembered).
    pub async fn web_user(&self, tag: &str) -> Browser {
        let mut b = self.browser();
        b.sign_up_and_in(&format!("{tag}-{}@example.com", Uuid::now_v7().simple())).await;
        b
    }

    /// An access token of the session `token` (identity's ExchangeToken): what
    /// pilot-catalog, credential-vault and executor accept from a user.
    pub async fn access(&self, token: &str) -> String {
        self.identity()
            .exchange_token(ipb::ExchangeTokenRequest { subject_token: token.to_owned() })
            .await
            .expect("exchange the session for an access token")
            .into_inner()
            .access_token
    }

    /// The runs of `pilot` as the executor lists them for the session `token`.
    pub async fn runs(&self, token: &str, pilot: &str) -> Vec<xpb::Run> {
        let access = self.access(token).await;
        self.executor()
            .list_runs(bizops_testkit::authed(
                &access,
                xpb::ListRunsRequest { pilot_id: pilot.into(), page_size: 100, page_token: String::new() },
            ))
            .await
            .expect("list runs")
            .into_inner()
            .runs
    }

    /// Waits until the executor has taken in every trigger and pilot-deleted
    /// event published so far and has nothing in hand (no batch being taken in, no
    /// run queued or executing): whatever those could cause has happened by then.
    pub async fn quiesce(&self) {
        let progress = self.executor_progress();
        self.quiesce_with(|| progress.idle()).await;
    }

    /// Waits until the executor has taken in every trigger and pilot-deleted
    /// event published so far (stored or dropped them): runs still executing, of
    /// any account, do not count.
    pub async fn quiesce_intake(&self) {
        let progress = self.executor_progress();
        self.quiesce_with(|| progress.intake_in_flight().get() == 0).await;
    }

    async fn quiesce_with(&self, idle: impl Fn() -> bool) {
        let consumers = executor::intake::durable_consumers(&self.configs.executor.intake, &self.subjects);
        let consumers: Vec<(&str, &str)> = consumers.iter().map(|(s, c)| (s.as_str(), c.as_str())).collect();
        bizops_testkit::quiesce_with(&self.js, &consumers, idle).await;
    }

    /// Waits until the executor has completed a whole retention sweep that began
    /// after this call (e.g. one that read a clock just moved).
    pub async fn full_sweep(&self) {
        let sweeps = self.executor_progress().sweeps().clone();
        tokio::time::timeout(bizops_testkit::PATIENCE, sweeps.full_pass()).await.expect("a whole sweep");
    }

    /// Waits until the executor's engine and intake have nothing in hand (for a
    /// test whose streams are gone, so their consumers cannot be asked).
    pub async fn quiesce_engine(&self) {
        let progress = self.executor_progress();
        bizops_testkit::until("the executor to be idle", bizops_testkit::PATIENCE, || {
            let idle = progress.idle();
            async move { idle }
        })
        .await;
    }

    /// The running executor's counters (runs in flight, background passes).
    pub fn executor_progress(&self) -> executor::progress::Progress {
        self.executor_progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .expect("the executor has run")
    }

    /// Messages stored for `owner` in each stream (name, count).
    pub async fn owner_messages(&self, owner: Uuid) -> Vec<(String, u64)> {
        use futures_util::StreamExt as _;
        let mut out = Vec::new();
        for (stream, filter) in self.subjects.owner_filters(owner) {
            let s = self.js.get_stream(&stream).await.unwrap();
            let mut info = s.info_with_subjects(&filter).await.unwrap();
            let mut total = 0;
            while let Some(entry) = info.next().await {
                total += entry.unwrap().1 as u64;
            }
            out.push((stream, total));
        }
        out
    }
}

type Built = (SocketAddr, Box<dyn FnOnce(Until) -> RunFuture + Send>);

fn isolated<B, F>(build: B) -> InProcess
where
    B: FnOnce() -> F + Send,
    F: Future<Output = anyhow::Result<Built>>,
{
    InProcess::start_isolated(build).unwrap_or_else(|e| panic!("service failed to start: {e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The services' built-in defaults (what `make run` relies on) are the
    /// topology's ports, and each default URL of a called service points at them.
    #[test]
    fn the_topology_s_ports_are_the_services_defaults() {
        let t = Topology::get();
        let ports = |name: &str| {
            let s = t.service(name).unwrap();
            (s.port(), s.metrics_port)
        };
        let url = |name: &str| format!("http://127.0.0.1:{}", ports(name).0);
        let (i, c, v, x, g) = (
            IdentityConfig::default(),
            CatalogConfig::default(),
            VaultConfig::default(),
            ExecutorConfig::default(),
            GatewayConfig::default(),
        );
        assert_eq!(ports("identity"), (i.grpc_addr.port(), i.metrics_addr.port()));
        assert_eq!(ports("catalog"), (c.grpc_addr.port(), c.metrics_addr.port()));
        assert_eq!(ports("vault"), (v.grpc_addr.port(), v.metrics_addr.port()));
        assert_eq!(ports("executor"), (x.grpc_addr.port(), x.metrics_addr.port()));
        assert_eq!(ports("gateway"), (g.http_addr.port(), g.metrics_addr.port()));
        assert_eq!(
            [i.catalog_url, i.executor_url, i.vault_url],
            [url("catalog"), url("executor"), url("vault")]
        );
        assert_eq!([x.catalog_url, x.vault_url], [url("catalog"), url("vault")]);
        assert_eq!(
            [g.identity_url, g.catalog_url, g.vault_url, g.executor_url],
            [url("identity"), url("catalog"), url("vault"), url("executor")]
        );
    }
}
