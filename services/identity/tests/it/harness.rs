//! Starts identity in-process on port 0 against a fresh database.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bizops_authn::{ServiceSigner, SigningKey};
use bizops_proto::identity::v1::{self as pb, identity_service_client::IdentityServiceClient};
use bizops_runtime::clock::{Clock, SystemClock};
use bizops_testkit::{InProcess, LogCapture, TestDb, any_port, capture_logs};
pub use bizops_testkit::{assert_status, authed, code_of};
use identity::{
    App, IdentityConfig, MIGRATOR,
    config::{LoginLimitsConfig, ScryptConfig},
};
use tonic::{Request, Status, transport::Channel};

pub use crate::fakes::Fakes;

pub use bizops_testkit::PASSWORD;
pub const NEW_PASSWORD: &str = "velvet otter juggling seven lanterns";

/// Cheap scrypt for tests (production parameters are exercised in `ops`).
pub fn cheap_scrypt() -> ScryptConfig {
    ScryptConfig { log_n: 4, r: 8, p: 1, max_concurrent: 2, ..ScryptConfig::default() }
}

pub struct Identity {
    pub db: TestDb,
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub client: IdentityServiceClient<Channel>,
    pub signing_key: SigningKey,
    pub gateway: ServiceSigner,
    pub logs: LogCapture,
    pub config: IdentityConfig,
    /// The fake catalog, executor and vault account deletion calls (set by `start`).
    pub fakes: Option<Fakes>,
    server: InProcess,
}

pub fn base_config(db: &TestDb, key: &SigningKey, gateway: &ServiceSigner) -> IdentityConfig {
    let mut config =
        IdentityConfig { grpc_addr: any_port(), metrics_addr: any_port(), ..IdentityConfig::default() };
    config.database.url = Some(db.url("bizops_identity").into());
    config.database.system_url = Some(db.url("bizops_identity_system").into());
    config.database.migrate_url = Some(db.url("bizops_migrator").into());
    config.database.max_connections = 4;
    config.database.system_max_connections = 2;
    config.scrypt = cheap_scrypt();
    config.keys.signing_key = Some(key.to_secret_string());
    config.auth.trusted_callers = vec![gateway.public_key().to_config_string()];
    config.login_limits =
        LoginLimitsConfig { register_per_source_per_hour: 1000, ..LoginLimitsConfig::default() };
    config.shutdown_grace = Duration::from_secs(5);
    config.shutdown_drain = Duration::ZERO;
    // Nothing listens on the discard port: deletions stop at the catalog step
    // unless a test points them at fakes.
    config.catalog_url = "http://127.0.0.1:9".into();
    config.executor_url = "http://127.0.0.1:9".into();
    config.vault_url = "http://127.0.0.1:9".into();
    config.deletion.call_timeout = Duration::from_secs(5);
    config.nats.url = bizops_testkit::nats_url().into();
    config.nats.prefix = bizops_testkit::nats_prefix();
    config
}

impl Identity {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut IdentityConfig)) -> Self {
        Self::start_with_clock(Arc::new(SystemClock), adjust).await
    }

    /// Like [`Identity::start_with`], reading "now" from `clock`.
    pub async fn start_with_clock(clock: Arc<dyn Clock>, adjust: impl FnOnce(&mut IdentityConfig)) -> Self {
        let logs = capture_logs();
        bizops_telemetry::install_crypto_provider();
        let db = TestDb::create(&MIGRATOR).await.expect("test database");
        let signing_key = SigningKey::generate("test-k1").unwrap();
        let gateway = ServiceSigner::new("gateway", SigningKey::generate("gateway").unwrap());
        let mut config = base_config(&db, &signing_key, &gateway);
        let service_key = SigningKey::generate("identity").unwrap();
        let fakes = Fakes::start(service_key.public()).await;
        config.auth.service_key = Some(service_key.to_secret_string());
        config.catalog_url = fakes.url();
        config.executor_url = fakes.url();
        config.vault_url = fakes.url();
        adjust(&mut config);
        let mut id = Self::launch_with_clock(db, signing_key, gateway, logs, config, clock).await;
        id.fakes = Some(fakes);
        id
    }

    pub fn fakes(&self) -> &Fakes {
        self.fakes.as_ref().expect("started with fakes")
    }

    pub async fn launch(
        db: TestDb,
        signing_key: SigningKey,
        gateway: ServiceSigner,
        logs: LogCapture,
        config: IdentityConfig,
    ) -> Self {
        Self::launch_with_clock(db, signing_key, gateway, logs, config, Arc::new(SystemClock)).await
    }

    async fn launch_with_clock(
        db: TestDb,
        signing_key: SigningKey,
        gateway: ServiceSigner,
        logs: LogCapture,
        config: IdentityConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let app = App::build(config.clone()).await.expect("identity builds").with_clock(clock);
        let addr = app.grpc_addr().unwrap();
        let metrics_addr = app.metrics_addr().unwrap();
        let server = InProcess::start(addr, |until| app.run_until(until));
        let client = IdentityServiceClient::connect(server.url()).await.expect("connect");
        Self { db, addr, metrics_addr, client, signing_key, gateway, logs, config, fakes: None, server }
    }

    /// Stops the server gracefully and returns the database (to restart on it).
    pub async fn stop(self) -> TestDb {
        let Identity { db, server, .. } = self;
        server.stop().await.expect("identity stops gracefully");
        db
    }

    pub fn client(&self) -> IdentityServiceClient<Channel> {
        self.client.clone()
    }

    pub async fn register(&self, email: &str) -> pb::Account {
        self.client()
            .register(pb::RegisterRequest {
                email: email.into(),
                password: PASSWORD.into(),
                display_name: String::new(),
            })
            .await
            .expect("register")
            .into_inner()
            .account
            .unwrap()
    }

    /// A registration as the gateway would forward it for an end user at `source`.
    pub async fn register_from(&self, source: &str, email: &str) -> pb::Account {
        let mut req = Request::new(pb::RegisterRequest {
            email: email.into(),
            password: PASSWORD.into(),
            display_name: String::new(),
        });
        req.metadata_mut().insert("x-bizops-source", source.parse().unwrap());
        let token = self.gateway.token_for("identity").unwrap();
        req.metadata_mut().insert("x-bizops-service-token", token.parse().unwrap());
        self.client().register(req).await.expect("register").into_inner().account.unwrap()
    }

    pub async fn login(&self, email: &str, password: &str) -> Result<pb::LoginResponse, Status> {
        self.client()
            .login(pb::LoginRequest { email: email.into(), password: password.into() })
            .await
            .map(|r| r.into_inner())
    }

    /// A login as the gateway would forward it for an end user at `source`.
    pub async fn login_from(
        &self,
        source: &str,
        email: &str,
        password: &str,
    ) -> Result<pb::LoginResponse, Status> {
        let mut req = Request::new(pb::LoginRequest { email: email.into(), password: password.into() });
        req.metadata_mut().insert("x-bizops-source", source.parse().unwrap());
        let token = self.gateway.token_for("identity").unwrap();
        req.metadata_mut().insert("x-bizops-service-token", token.parse().unwrap());
        self.client().login(req).await.map(|r| r.into_inner())
    }

    pub async fn token(&self, email: &str) -> String {
        self.login(email, PASSWORD).await.expect("login").session.unwrap().token
    }

    pub async fn verify(&self, token: &str) -> Result<pb::VerifySessionResponse, Status> {
        self.client()
            .verify_session(pb::VerifySessionRequest { token: token.into() })
            .await
            .map(|r| r.into_inner())
    }

    /// ExchangeToken of the session `token`.
    pub async fn exchange(&self, token: &str) -> Result<pb::ExchangeTokenResponse, Status> {
        self.client()
            .exchange_token(pb::ExchangeTokenRequest { subject_token: token.into() })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn superuser(&self) -> sqlx::PgPool {
        self.db.superuser_pool().await.unwrap()
    }
}

pub fn unique_email(tag: &str) -> String {
    format!("{tag}.{}@example.com", &uuid::Uuid::now_v7().simple().to_string()[20..])
}
