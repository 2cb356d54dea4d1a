//! Starts pilot-catalog in-process on port 0 against a fresh database.

use std::{sync::Arc, time::Duration};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use bizops_authn::{OwnerId, ServiceSigner, SessionSigner, SigningKey};
use bizops_proto::catalog::v1::{self as pb, catalog_service_client::CatalogServiceClient, step::Kind};
use bizops_runtime::clock::{Clock, SystemClock};
use bizops_testkit::{InProcess, LogCapture, TestDb, any_port, capture_logs, steps::step};
pub use bizops_testkit::{assert_status, authed};
use pilot_catalog::{App, CatalogConfig, MIGRATOR};
use time::OffsetDateTime;
use tonic::{Request, transport::Channel};
use uuid::Uuid;

pub struct Catalog {
    pub db: TestDb,
    pub client: CatalogServiceClient<Channel>,
    pub sessions: SessionSigner,
    pub gateway: ServiceSigner,
    pub executor: ServiceSigner,
    pub identity: ServiceSigner,
    pub logs: LogCapture,
    pub nats: async_nats::Client,
    pub prefix: String,
    _server: InProcess,
}

impl Catalog {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut CatalogConfig)) -> Self {
        Self::start_with_clock(Arc::new(SystemClock), adjust).await
    }

    /// Like [`Catalog::start_with`], reading "now" from `clock`.
    pub async fn start_with_clock(clock: Arc<dyn Clock>, adjust: impl FnOnce(&mut CatalogConfig)) -> Self {
        let logs = capture_logs();
        bizops_telemetry::install_crypto_provider();
        let db = TestDb::create(&MIGRATOR).await.expect("test database");
        let session_key = SigningKey::generate("test-session").unwrap();
        let gateway = ServiceSigner::new("gateway", SigningKey::generate("gateway").unwrap());
        let executor = ServiceSigner::new("executor", SigningKey::generate("executor").unwrap());
        let identity = ServiceSigner::new("identity", SigningKey::generate("identity").unwrap());
        let prefix = bizops_testkit::nats_prefix();
        let mut config =
            CatalogConfig { grpc_addr: any_port(), metrics_addr: any_port(), ..CatalogConfig::default() };
        config.database.url = Some(db.url("bizops_catalog").into());
        config.database.system_url = Some(db.url("bizops_catalog_system").into());
        config.database.max_connections = 4;
        config.database.system_max_connections = 2;
        config.auth.session_public_keys = vec![session_key.public().to_config_string()];
        config.auth.trusted_callers =
            [&gateway, &executor, &identity].iter().map(|s| s.public_key().to_config_string()).collect();
        config.nats.url = bizops_testkit::nats_url().into();
        config.nats.prefix = prefix.clone();
        config.keys.keyring = vec![format!("test1:{}", STANDARD.encode([42u8; 32])).into()];
        config.shutdown_drain = Duration::ZERO;
        config.shutdown_grace = Duration::from_secs(5);
        adjust(&mut config);
        let app = App::build(config).await.expect("catalog builds").with_clock(clock);
        let addr = app.grpc_addr().unwrap();
        let server = InProcess::start(addr, |until| app.run_until(until));
        let client = CatalogServiceClient::connect(server.url()).await.expect("connect");
        let nats = async_nats::connect(bizops_testkit::nats_url()).await.unwrap();
        let sessions = SessionSigner::new(session_key, "bizops-identity", "bizops");
        Self { db, client, sessions, gateway, executor, identity, logs, nats, prefix, _server: server }
    }

    /// An access token for a new (or given) owner.
    pub fn user(&self, owner: OwnerId) -> String {
        let now = OffsetDateTime::now_utc();
        self.sessions.sign_access(owner, Uuid::now_v7(), now, now + time::Duration::seconds(55)).unwrap()
    }

    pub fn client(&self) -> CatalogServiceClient<Channel> {
        self.client.clone()
    }

    pub async fn create(&self, token: &str, spec: pb::PilotSpec) -> pb::CreatePilotResponse {
        self.client()
            .create_pilot(authed(token, pb::CreatePilotRequest { spec: Some(spec), enabled: true }))
            .await
            .expect("create pilot")
            .into_inner()
    }

    pub async fn superuser(&self) -> sqlx::PgPool {
        self.db.superuser_pool().await.unwrap()
    }
}

pub fn owner() -> OwnerId {
    OwnerId(Uuid::now_v7())
}

pub fn as_service<T>(signer: &ServiceSigner, message: T) -> Request<T> {
    authed(&signer.token_for("catalog").unwrap(), message)
}

/// A Pilot with one step of every kind and a schedule.
pub fn sample_spec() -> pb::PilotSpec {
    pb::PilotSpec {
        title: "Triage support email".into(),
        description: "Classify, summarise, ask before posting.".into(),
        steps: vec![
            step(
                "classify",
                Kind::Ai(pb::AiStep {
                    task: pb::AiTask::Classify as i32,
                    input: "{{ trigger.body }}".into(),
                    labels: vec!["urgent".into(), "normal".into()],
                    ..Default::default()
                }),
            ),
            step(
                "is_urgent",
                Kind::Condition(pb::ConditionStep {
                    expression: "steps.classify.output.label == 'urgent'".into(),
                    on_false: pb::OnFalse::Stop as i32,
                    jump_to: String::new(),
                }),
            ),
            step(
                "shape",
                Kind::Transform(pb::TransformStep {
                    template: "{\"l\": {{ steps.classify.output | tojson }}}".into(),
                }),
            ),
            pb::Step {
                requires_approval: true,
                timeout_ms: 10_000,
                retry: Some(pb::RetryPolicy {
                    max_attempts: 3,
                    initial_backoff_ms: 200,
                    max_backoff_ms: 2000,
                }),
                ..step(
                    "notify",
                    Kind::Slack(pb::SlackStep {
                        connector: "slack".into(),
                        text: "Urgent: {{ steps.shape.output.l }}".into(),
                    }),
                )
            },
            step(
                "mail",
                Kind::Email(pb::EmailStep {
                    connector: "resend".into(),
                    from: "ops@example.com".into(),
                    to: vec!["{{ trigger.reply_to }}".into()],
                    subject: "We got it".into(),
                    html: String::new(),
                    text: "Thanks!".into(),
                }),
            ),
            step(
                "crm",
                Kind::Http(pb::HttpStep {
                    method: pb::HttpMethod::Post as i32,
                    url: "https://crm.example.com/tickets".into(),
                    headers: vec![pb::HttpHeaderTemplate { name: "X-Source".into(), value: "bizops".into() }],
                    body: "{\"subject\": {{ trigger.subject | tojson }}}".into(),
                    bearer_connector: "crm-token".into(),
                }),
            ),
            step(
                "ok",
                Kind::Approval(pb::ApprovalStep {
                    message: "Close the ticket?".into(),
                    expires_after_seconds: 3600,
                }),
            ),
        ],
        schedules: vec![pb::Schedule {
            id: String::new(),
            cron: "0 9 * * 1-5".into(),
            timezone: "Europe/Berlin".into(),
            enabled: true,
        }],
        max_execution_seconds: 1800,
    }
}

pub fn python() -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.dev/venv/bin/python");
    assert!(path.exists(), "{} is missing: run scripts/dev-services (make test does)", path.display());
    path
}
