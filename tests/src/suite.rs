//! The whole suite in one test process: identity, pilot-catalog, credential-vault,
//! executor and gateway, each on a runtime of its own (so a test can kill one the
//! way a crash would), on one fresh database, one NATS prefix, and wiremock for
//! the outside APIs (Slack, Resend, Anthropic).

use std::{net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use async_nats::jetstream;
use base64::{Engine as _, engine::general_purpose::STANDARD};
use bizops_authn::{ServiceSigner, SigningKey};
use bizops_bus::Subjects;
use bizops_proto::{
    catalog::v1::catalog_service_client::CatalogServiceClient,
    executor::v1::{self as xpb, executor_service_client::ExecutorServiceClient},
    identity::v1::{self as ipb, identity_service_client::IdentityServiceClient},
    vault::v1::vault_service_client::VaultServiceClient,
};
use bizops_runtime::clock::ShiftedClock;
use bizops_testkit::{InProcess, LogCapture, TestDb, Until, any_port, capture_logs};
use credential_vault::VaultConfig;
use executor::ExecutorConfig;
use gateway::GatewayConfig;
use identity::IdentityConfig;
use pilot_catalog::CatalogConfig;
use tonic::transport::Channel;
use uuid::Uuid;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path, path_regex},
};

use crate::browser::Browser;

/// A password every test account uses.
pub const PASSWORD: &str = "correct horse battery staple 42";

/// What a browser sends as `Origin`: the gateway's configured public origin.
pub const ORIGIN: &str = "https://gateway.test";

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
    running: Vec<(Svc, InProcess)>,
}

type RunFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

fn db_urls(db: &TestDb, config: &mut bizops_config::DatabaseConfig, role: &str) {
    config.url = Some(db.url(&format!("bizops_{role}")).into());
    config.system_url = Some(db.url(&format!("bizops_{role}_system")).into());
    config.migrate_url = Some(db.url("bizops_migrator").into());
    config.max_connections = 6;
    config.system_max_connections = 4;
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
        let (slack, resend, anthropic) = outside_fakes().await;

        let prefix = bizops_testkit::nats_prefix();
        let Keys {
            session: session_key,
            session_public,
            identity: identity_key,
            executor: executor_key,
            gateway: gateway_key,
            identity_pub,
            executor_pub,
            gateway_pub,
        } = Keys::generate();

        let nats = |c: &mut bizops_bus::NatsConfig| {
            c.url = bizops_testkit::nats_url().into();
            c.prefix = prefix.clone();
        };
        let fast = (Duration::ZERO, Duration::from_secs(5));

        let mut identity = IdentityConfig::default();
        db_urls(&db, &mut identity.database, "identity");
        identity.keys.signing_key = Some(session_key.to_secret_string());
        identity.scrypt.log_n = 10;
        identity.service_auth.trusted_callers = vec![gateway_pub.clone()];
        identity.service_auth.service_key = Some(identity_key.to_secret_string());
        identity.login_limits.register_per_source_per_hour = 10_000;
        identity.deletion.retry_interval = Duration::from_millis(500);
        identity.deletion.call_timeout = Duration::from_secs(10);
        identity.notifications.resend_base_url = resend.uri();
        nats(&mut identity.nats);
        (identity.shutdown_drain, identity.shutdown_grace) = fast;

        let mut catalog = CatalogConfig::default();
        db_urls(&db, &mut catalog.database, "catalog");
        catalog.auth.session_public_keys = vec![session_public.clone()];
        catalog.auth.trusted_callers = vec![gateway_pub.clone(), executor_pub.clone(), identity_pub.clone()];
        catalog.webhooks.encryption_keys = vec![format!("e2e:{}", STANDARD.encode([5u8; 32])).into()];
        nats(&mut catalog.nats);
        (catalog.shutdown_drain, catalog.shutdown_grace) = fast;

        let mut vault = VaultConfig::default();
        db_urls(&db, &mut vault.database, "vault");
        vault.auth.session_public_keys = vec![session_public.clone()];
        vault.auth.trusted_callers = vec![gateway_pub.clone(), executor_pub.clone(), identity_pub.clone()];
        vault.keys.keyring = vec![format!("1:{}", STANDARD.encode([7u8; 32])).into()];
        vault.keys.active_version = 1;
        vault.connectors.slack_allowed_hosts = vec!["127.0.0.1".into()];
        vault.connectors.slack_require_https = false;
        vault.connectors.resend_base_url = resend.uri();
        vault.connectors.anthropic_base_url = anthropic.uri();
        (vault.shutdown_drain, vault.shutdown_grace) = fast;

        let mut executor = ExecutorConfig::default();
        db_urls(&db, &mut executor.database, "executor");
        executor.auth.session_public_keys = vec![session_public.clone()];
        executor.auth.service_key = Some(executor_key.to_secret_string());
        executor.auth.trusted_callers = vec![gateway_pub.clone(), identity_pub.clone()];
        nats(&mut executor.nats);
        executor.runs.reaper_interval = Duration::from_millis(200);
        executor.runs.sweep_interval = Duration::from_millis(300);
        executor.steps.default_initial_backoff = Duration::from_millis(20);
        executor.steps.default_max_backoff = Duration::from_millis(100);
        executor.scheduler.tick = Duration::from_millis(500);
        executor.providers.slack_allowed_hosts = vec!["127.0.0.1".into()];
        executor.providers.slack_require_https = false;
        executor.providers.resend_base_url = resend.uri();
        executor.providers.anthropic_base_url = anthropic.uri();
        executor.http.allowed_networks = vec!["127.0.0.0/8".into()];
        (executor.shutdown_drain, executor.shutdown_grace) = fast;

        let mut gateway = GatewayConfig {
            public_origin: ORIGIN.into(),
            csrf_key: Some(STANDARD.encode([9u8; 32]).into()),
            ..GatewayConfig::default()
        };
        gateway.auth.service_key = Some(gateway_key.to_secret_string());
        nats(&mut gateway.nats);
        gateway.timeouts.rpc = Duration::from_secs(10);
        (gateway.shutdown_drain, gateway.shutdown_grace) = fast;

        let mut configs = Configs { identity, catalog, vault, executor, gateway };
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
        };
        // Order: each service is started after the ones it calls.
        for svc in [Svc::Catalog, Svc::Vault, Svc::Executor, Svc::Identity, Svc::Gateway] {
            suite.launch(svc);
        }
        suite
    }

    /// Builds and starts `svc` on its own runtime with its current configuration;
    /// the bound address is written back, so a restart listens where it did.
    pub fn launch(&mut self, svc: Svc) {
        let url = |a: SocketAddr| format!("http://{a}");
        let c = &mut self.configs;
        c.executor.catalog_url = url(c.catalog.grpc_addr);
        c.executor.vault_url = url(c.vault.grpc_addr);
        c.identity.deletion.catalog_url = url(c.catalog.grpc_addr);
        c.identity.deletion.executor_url = url(c.executor.grpc_addr);
        c.identity.deletion.vault_url = url(c.vault.grpc_addr);
        c.gateway.identity_url = url(c.identity.grpc_addr);
        c.gateway.catalog_url = url(c.catalog.grpc_addr);
        c.gateway.vault_url = url(c.vault.grpc_addr);
        c.gateway.executor_url = url(c.executor.grpc_addr);
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
                isolated(move || async move {
                    let app = executor::App::build(config).await?.with_clock(clock);
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

    /// The runs of `pilot` as the executor lists them for the session `token`.
    pub async fn runs(&self, token: &str, pilot: &str) -> Vec<xpb::Run> {
        self.executor()
            .list_runs(bearer(
                token,
                xpb::ListRunsRequest { pilot_id: pilot.into(), page_size: 100, page_token: String::new() },
            ))
            .await
            .expect("list runs")
            .into_inner()
            .runs
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

/// Fakes of the outside APIs: Slack incoming webhooks (`POST /services/...`
/// answers `ok`), Resend (`POST /emails`) and Anthropic (nothing mounted: tests
/// mount what they need).
pub async fn outside_fakes() -> (MockServer, MockServer, MockServer) {
    let (slack, resend, anthropic) =
        (MockServer::start().await, MockServer::start().await, MockServer::start().await);
    Mock::given(method("POST"))
        .and(path_regex("^/services/"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;
    Mock::given(method("POST"))
        .and(path("/emails"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"id": "email_1"})))
        .mount(&resend)
        .await;
    (slack, resend, anthropic)
}

/// A suite's keys: identity's session signing key, and the service identities of
/// identity, executor and gateway with the public forms the others trust.
pub struct Keys {
    pub session: SigningKey,
    pub session_public: String,
    pub identity: SigningKey,
    pub executor: SigningKey,
    pub gateway: SigningKey,
    pub identity_pub: String,
    pub executor_pub: String,
    pub gateway_pub: String,
}

impl Keys {
    /// Fresh keys.
    pub fn generate() -> Self {
        let key = |kid: &str| SigningKey::generate(kid).unwrap();
        let public = |k: &SigningKey| ServiceSigner::new(k.kid(), k.clone()).public_key().to_config_string();
        let (session, identity, executor, gateway) =
            (key("e2e-session"), key("identity"), key("executor"), key("gateway"));
        Self {
            session_public: session.public().to_config_string(),
            identity_pub: public(&identity),
            executor_pub: public(&executor),
            gateway_pub: public(&gateway),
            session,
            identity,
            executor,
            gateway,
        }
    }
}

/// Adds a bearer token to a gRPC request.
pub fn bearer<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

type Built = (SocketAddr, Box<dyn FnOnce(Until) -> RunFuture + Send>);

fn isolated<B, F>(build: B) -> InProcess
where
    B: FnOnce() -> F + Send,
    F: Future<Output = anyhow::Result<Built>>,
{
    InProcess::start_isolated(build).unwrap_or_else(|e| panic!("service failed to start: {e:#}"))
}

/// Waits until `check` is true, polling every 50 ms, or panics with `what`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
