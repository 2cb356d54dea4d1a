//! Starts the vault in-process on port 0 against a fresh database, with its own
//! test keys: a session key for users and service keys for the executor, identity,
//! an operator ("ops") and the gateway (trusted, but allowed nothing here).

use std::{future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use bizops_authn::{OwnerId, ServiceSigner, SessionSigner, SigningKey};
use bizops_proto::vault::v1::{self as pb, vault_service_client::VaultServiceClient};
use bizops_runtime::clock::{Clock, SystemClock};
use bizops_testkit::{InProcess, LogCapture, Seen, TestDb, Until, any_port, capture_logs, eventually};
pub use bizops_testkit::{assert_status, authed};
use credential_vault::{App, MIGRATOR, VaultConfig};
use secrecy::SecretString;
use time::OffsetDateTime;
use tonic::{Request, Status, transport::Channel};
use uuid::Uuid;

/// A Slack webhook URL on the (allowed) real host; never contacted.
pub const SLACK_URL: &str = "https://hooks.slack.com/services/T0001/B0001/s3cr3tSlackPathXyZ123";
pub const RESEND_KEY: &str = "re_live_SecretResendKey_7f3a9c";
pub const ANTHROPIC_KEY: &str = "sk-ant-api03-SecretAnthropicKey_Q9w8e7";
pub const BEARER: &str = "bearer-Secret-Token.ZX81+/=";

/// Every secret value the tests store; none may ever appear in a log line.
pub const SECRETS: &[&str] = &[
    SLACK_URL,
    "s3cr3tSlackPathXyZ123",
    RESEND_KEY,
    "SecretResendKey",
    ANTHROPIC_KEY,
    "SecretAnthropicKey",
    BEARER,
];

/// The keys a test's vault trusts; kept across restarts.
#[derive(Clone)]
pub struct Keys {
    pub sessions: SessionSigner,
    session_public: String,
    pub executor: ServiceSigner,
    pub identity: ServiceSigner,
    pub ops: ServiceSigner,
    pub gateway: ServiceSigner,
}

impl Keys {
    pub fn generate() -> Self {
        let session_key = SigningKey::generate("test-session").unwrap();
        let session_public = session_key.public().to_config_string();
        let svc = |name: &str| ServiceSigner::new(name, SigningKey::generate(name).unwrap());
        Self {
            sessions: SessionSigner::new(session_key, "bizops-identity", "bizops"),
            session_public,
            executor: svc("executor"),
            identity: svc("identity"),
            ops: svc("ops"),
            gateway: svc("gateway"),
        }
    }
}

/// A KEK `<version>:<base64>` from a one-byte pattern (tests only).
pub fn kek(version: u32, fill: u8) -> SecretString {
    SecretString::from(format!("{version}:{}", STANDARD.encode([fill; 32])))
}

pub fn base_config(db: &TestDb, keys: &Keys) -> VaultConfig {
    let mut config =
        VaultConfig { grpc_addr: any_port(), metrics_addr: any_port(), ..VaultConfig::default() };
    config.database.url = Some(db.url("bizops_vault").into());
    config.database.system_url = Some(db.url("bizops_vault_system").into());
    config.database.migrate_url = Some(db.url("bizops_migrator").into());
    config.database.max_connections = 4;
    config.database.system_max_connections = 3;
    config.auth.session_public_keys = vec![keys.session_public.clone()];
    config.auth.trusted_callers = [&keys.executor, &keys.identity, &keys.ops, &keys.gateway]
        .iter()
        .map(|s| s.public_key().to_config_string())
        .collect();
    config.keys.keyring = vec![kek(1, 0x11)];
    config.keys.active = Some(1);
    // The fake Slack of the connector tests listens on loopback over http.
    config.connectors.slack_allowed_hosts = vec!["hooks.slack.com".into(), "127.0.0.1".into()];
    config.connectors.slack_require_https = false;
    config.connectors.timeout = Duration::from_secs(2);
    config.rotation.batch_pause = Duration::ZERO;
    config.shutdown_grace = Duration::from_secs(5);
    config.shutdown_drain = Duration::ZERO;
    config
}

/// A running vault on a fresh database; its RPC helpers are those of [`Api`].
pub struct Vault {
    pub db: TestDb,
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub logs: LogCapture,
    pub config: VaultConfig,
    api: Api,
    server: InProcess,
}

impl std::ops::Deref for Vault {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

/// Another replica of a [`Vault`]: same database, its own configuration (e.g. an
/// older or newer keyring).
pub struct Replica {
    api: Api,
    server: InProcess,
}

impl std::ops::Deref for Replica {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Replica {
    pub async fn stop(self) {
        self.server.stop().await.expect("replica stops gracefully");
    }
}

/// Builds and starts an App on a runtime of its own (so it can be killed); returns
/// it with its metrics address.
fn start_isolated(config: VaultConfig) -> (InProcess, SocketAddr) {
    let metrics = std::sync::Mutex::new(None);
    let server = InProcess::start_isolated(|| async {
        let app = App::build(config).await?;
        let addr = app.grpc_addr()?;
        *metrics.lock().unwrap() = Some(app.metrics_addr()?);
        let run = move |until: Until| -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>> {
            Box::pin(app.run_until(until))
        };
        Ok((addr, run))
    })
    .expect("vault builds");
    let metrics_addr = metrics.lock().unwrap().expect("metrics address");
    (server, metrics_addr)
}

impl Vault {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut VaultConfig)) -> Self {
        Self::start_with_clock(Arc::new(SystemClock), adjust).await
    }

    /// Like [`Vault::start_with`], reading "now" from `clock`.
    pub async fn start_with_clock(clock: Arc<dyn Clock>, adjust: impl FnOnce(&mut VaultConfig)) -> Self {
        capture_logs();
        bizops_telemetry::install_crypto_provider();
        let db = TestDb::create(&MIGRATOR).await.expect("test database");
        let keys = Keys::generate();
        let mut config = base_config(&db, &keys);
        adjust(&mut config);
        Self::launch_with_clock(db, keys, config, clock).await
    }

    pub async fn launch(db: TestDb, keys: Keys, config: VaultConfig) -> Self {
        Self::launch_with_clock(db, keys, config, Arc::new(SystemClock)).await
    }

    async fn launch_with_clock(db: TestDb, keys: Keys, config: VaultConfig, clock: Arc<dyn Clock>) -> Self {
        let logs = capture_logs();
        bizops_telemetry::install_crypto_provider();
        let app = App::build(config.clone()).await.expect("vault builds").with_clock(clock);
        let addr = app.grpc_addr().unwrap();
        let metrics_addr = app.metrics_addr().unwrap();
        let server = InProcess::start(addr, |until| app.run_until(until));
        let client = VaultServiceClient::connect(server.url()).await.expect("connect");
        Self { db, addr, metrics_addr, logs, config, api: Api { client, keys }, server }
    }

    /// Like [`Vault::launch`], on a runtime of its own so that [`Vault::kill`] can
    /// end it like `kill -9`.
    pub async fn launch_isolated(db: TestDb, keys: Keys, config: VaultConfig) -> Self {
        let logs = capture_logs();
        bizops_telemetry::install_crypto_provider();
        let (server, metrics_addr) = start_isolated(config.clone());
        let addr = server.addr();
        let client = VaultServiceClient::connect(server.url()).await.expect("connect");
        Self { db, addr, metrics_addr, logs, config, api: Api { client, keys }, server }
    }

    /// Another replica on the same database, with this vault's configuration
    /// (fresh ports) and `adjust` applied.
    pub async fn replica(&self, adjust: impl FnOnce(&mut VaultConfig)) -> Replica {
        let mut config = self.config.clone();
        config.grpc_addr = any_port();
        config.metrics_addr = any_port();
        adjust(&mut config);
        let (server, _) = start_isolated(config);
        let client = VaultServiceClient::connect(server.url()).await.expect("connect");
        Replica { api: Api { client, keys: self.keys.clone() }, server }
    }

    /// Stops the vault gracefully; returns what a restart needs.
    pub async fn stop(self) -> (TestDb, Keys, VaultConfig) {
        let Vault { db, server, api, config, .. } = self;
        server.stop().await.expect("vault stops gracefully");
        (db, api.keys, config)
    }

    /// Kills a vault started with [`Vault::launch_isolated`] abruptly, like
    /// `kill -9`: its tasks stop wherever they are and its connections drop.
    pub fn kill(self) -> (TestDb, Keys, VaultConfig) {
        let Vault { db, server, api, config, .. } = self;
        server.kill();
        (db, api.keys, config)
    }

    /// Stops and starts again with `adjust` applied to the configuration.
    pub async fn restart(self, adjust: impl FnOnce(&mut VaultConfig)) -> Self {
        let (db, keys, mut config) = self.stop().await;
        config.grpc_addr = any_port();
        config.metrics_addr = any_port();
        adjust(&mut config);
        Self::launch(db, keys, config).await
    }

    pub async fn superuser(&self) -> sqlx::PgPool {
        self.db.superuser_pool().await.unwrap()
    }
}

/// A client of one vault replica, with the test keys.
pub struct Api {
    pub client: VaultServiceClient<Channel>,
    pub keys: Keys,
}

impl Api {
    pub fn client(&self) -> VaultServiceClient<Channel> {
        self.client.clone()
    }

    /// An access token of a new user.
    pub fn new_user(&self) -> User {
        let owner = OwnerId(Uuid::now_v7());
        let now = OffsetDateTime::now_utc();
        let token = self
            .keys
            .sessions
            .sign_access(owner, Uuid::now_v7(), now, now + time::Duration::seconds(55))
            .unwrap();
        User { owner, token }
    }

    pub async fn put(
        &self,
        user: &User,
        name: &str,
        kind: pb::ConnectorKind,
        value: &str,
    ) -> Result<pb::CredentialInfo, Status> {
        let req = pb::PutCredentialRequest { name: name.into(), kind: kind as i32, value: value.into() };
        self.client()
            .put_credential(authed(&user.token, req))
            .await
            .map(|r| r.into_inner().credential.unwrap())
    }

    pub async fn list(&self, user: &User) -> Vec<pb::CredentialInfo> {
        self.client()
            .list_credentials(authed(&user.token, pb::ListCredentialsRequest {}))
            .await
            .unwrap()
            .into_inner()
            .credentials
    }

    pub async fn delete(&self, user: &User, name: &str) -> Result<(), Status> {
        self.client()
            .delete_credential(authed(&user.token, pb::DeleteCredentialRequest { name: name.into() }))
            .await
            .map(|_| ())
    }

    pub async fn test(&self, user: &User, name: &str) -> Result<pb::TestCredentialResponse, Status> {
        self.client()
            .test_credential(authed(&user.token, pb::TestCredentialRequest { name: name.into() }))
            .await
            .map(|r| r.into_inner())
    }

    /// ResolveForRun as the executor.
    pub async fn resolve(&self, owner: OwnerId, names: &[&str]) -> Result<pb::ResolveForRunResponse, Status> {
        let req = resolve_request(owner, names);
        self.client().resolve_for_run(as_service(&self.keys.executor, req)).await.map(|r| r.into_inner())
    }

    /// The one resolved value of `name`, as the executor.
    pub async fn value_of(&self, owner: OwnerId, name: &str) -> Result<String, Status> {
        let r = self.resolve(owner, &[name]).await?;
        assert!(r.missing.is_empty(), "{name} missing");
        Ok(r.credentials.into_iter().next().unwrap().value)
    }

    pub async fn start_rotation(&self, batch_size: u32) -> String {
        self.try_start_rotation(batch_size).await.unwrap()
    }

    pub async fn try_start_rotation(&self, batch_size: u32) -> Result<String, Status> {
        self.client()
            .start_key_rotation(as_service(&self.keys.ops, pb::StartKeyRotationRequest { batch_size }))
            .await
            .map(|r| r.into_inner().job_id)
    }

    pub async fn rotation(&self, job_id: &str) -> pb::KeyRotation {
        self.client()
            .get_key_rotation(as_service(&self.keys.ops, pb::GetKeyRotationRequest { job_id: job_id.into() }))
            .await
            .unwrap()
            .into_inner()
            .rotation
            .unwrap()
    }

    /// Polls a rotation job until `done(job)` holds (at most 30 s).
    pub async fn wait_rotation(
        &self,
        job_id: &str,
        done: impl Fn(&pb::KeyRotation) -> bool,
    ) -> pb::KeyRotation {
        let (seen, done) = (&Seen::new(format!("rotation job {job_id} to get there")), &done);
        eventually(seen, Duration::from_secs(30), || async move {
            let job = self.rotation(job_id).await;
            seen.saw(&job);
            Some(job).filter(done)
        })
        .await
    }

    pub async fn set_min_version(&self, version: u32) -> Result<pb::SetMinDecryptionVersionResponse, Status> {
        self.set_min_version_with(version, false).await
    }

    pub async fn set_min_version_with(
        &self,
        version: u32,
        force: bool,
    ) -> Result<pb::SetMinDecryptionVersionResponse, Status> {
        self.client()
            .set_min_decryption_version(as_service(
                &self.keys.ops,
                pb::SetMinDecryptionVersionRequest { min_decryption_version: version, force },
            ))
            .await
            .map(|r| r.into_inner())
    }
}

/// A user with a session token.
#[derive(Clone)]
pub struct User {
    pub owner: OwnerId,
    pub token: String,
}

pub fn resolve_request(owner: OwnerId, names: &[&str]) -> pb::ResolveForRunRequest {
    pb::ResolveForRunRequest {
        owner_id: owner.to_string(),
        names: names.iter().map(|n| (*n).to_owned()).collect(),
        run_id: Uuid::now_v7().to_string(),
    }
}

/// A request carrying a service token of `signer` addressed to the vault.
pub fn as_service<T>(signer: &ServiceSigner, message: T) -> Request<T> {
    authed(&signer.token_for("vault").unwrap(), message)
}

/// Asserts that no secret value appears in a status (message or metadata).
#[track_caller]
pub fn assert_no_secret(status: &Status) {
    let text = format!("{status:?}");
    for s in SECRETS {
        assert!(!text.contains(s), "a secret appeared in an error: {text}");
    }
}
