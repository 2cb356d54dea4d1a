//! The whole suite as real processes: the five service binaries (the ones `cargo
//! build --workspace --bins` made), a NATS server of the suite's own (so a test
//! can `kill -9` it and start it again on the same store), one fresh database,
//! wiremock for Slack, Resend and Anthropic, and optionally an OTLP endpoint for
//! the services' spans. Tests drive it through the gateway's public HTTP API.

use std::{
    collections::BTreeMap,
    net::TcpListener,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use bizops_authn::SigningKey;
use bizops_testkit::TestDb;
use secrecy::ExposeSecret as _;
use tokio::process::{Child, Command};
use uuid::Uuid;
use wiremock::MockServer;

use crate::{
    Service,
    browser::Browser,
    database_env, migrate,
    suite::{Keys, outside_fakes},
};

/// The five binaries, in the order they start (each after the ones it calls).
pub const SERVICES: [&str; 5] = ["pilot-catalog", "credential-vault", "executor", "identity", "gateway"];

/// The public origin the gateway is configured with (what a browser sends).
pub const ORIGIN: &str = "https://gateway.test";

/// The workspace root (the folder of the top `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The project's pinned NATS server (`scripts/dev-services` installs it) with the
/// project's configuration (`sync_interval: always`), on a port and a store
/// directory of its own.
pub struct NatsServer {
    /// Its client port.
    pub port: u16,
    store: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server and waits (≤ 10 s) until it accepts connections.
    pub async fn start() -> Self {
        let store = std::env::temp_dir().join(format!("bizops-e2e-nats-{}", Uuid::now_v7().simple()));
        std::fs::create_dir_all(&store).unwrap();
        let mut server = Self { port: free_port(), store, child: None };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        let root = workspace_root();
        let bin = root.join(".dev/venv/bin/nats-server");
        assert!(bin.exists(), "{} is missing: run scripts/dev-services (make test does)", bin.display());
        let child = Command::new(bin)
            .arg("-c")
            .arg(root.join("scripts/nats-dev.conf"))
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "nats-server did not start on {}", self.port);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `kill -9`: the server gets no chance to flush anything.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().unwrap();
            let _ = child.wait().await;
        }
    }

    /// Starts it again on the same port and store.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn().await;
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// What to change before the suite starts.
#[derive(Default)]
pub struct Options {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` for every service (spans exported over OTLP/gRPC).
    pub otlp_endpoint: Option<String>,
    /// Extra variables per binary name (applied last).
    pub extra: Vec<(&'static str, String, String)>,
}

/// The running suite of processes.
pub struct Procs {
    pub db: TestDb,
    pub nats: NatsServer,
    /// The NATS subject/stream prefix of this suite.
    pub prefix: String,
    /// Slack incoming webhooks (`POST /services/...` answers `ok`).
    pub slack: MockServer,
    /// Resend (`POST /emails`).
    pub resend: MockServer,
    /// Anthropic (nothing mounted: tests mount what they need).
    pub anthropic: MockServer,
    /// `http://<gateway>`.
    pub base: String,
    env: BTreeMap<&'static str, Vec<(String, String)>>,
    running: BTreeMap<&'static str, Service>,
    /// Logs of processes already ended (killed or stopped), by binary name.
    ended_logs: Vec<(String, String)>,
}

fn var(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_owned(), v.into())
}

impl Procs {
    /// Migrates a fresh database with each binary's `migrate` and starts the five
    /// services and a NATS server of their own.
    pub async fn start(options: Options) -> Self {
        bizops_telemetry::install_crypto_provider();
        let db = TestDb::empty().await.expect("test database (scripts/dev-services)");
        let nats = NatsServer::start().await;
        let (slack, resend, anthropic) = outside_fakes().await;

        let prefix = bizops_testkit::nats_prefix();
        let secret = |k: &SigningKey| k.to_secret_string().expose_secret().to_owned();
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

        let common = |svc: &str| {
            let mut env = vec![var("BIZOPS_SHUTDOWN_GRACE", "5s")];
            if svc != "credential-vault" {
                // The vault is the one service without NATS.
                env.extend([var("BIZOPS_NATS__URL", nats.url()), var("BIZOPS_NATS__PREFIX", prefix.clone())]);
            }
            if let Some(endpoint) = &options.otlp_endpoint {
                env.push(var("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()));
                env.push(var("OTEL_BSP_SCHEDULE_DELAY", "100"));
            }
            if svc != "gateway" {
                env.extend(database_env(&db, svc_role(svc)));
                env.extend([
                    var("BIZOPS_DATABASE__MAX_CONNECTIONS", "6"),
                    var("BIZOPS_DATABASE__SYSTEM_MAX_CONNECTIONS", "4"),
                ]);
            }
            env
        };
        let mut env = BTreeMap::new();
        let mut catalog = common("pilot-catalog");
        catalog.extend([
            var("BIZOPS_AUTH__SESSION_PUBLIC_KEYS", session_public.clone()),
            var("BIZOPS_AUTH__TRUSTED_CALLERS", format!("{gateway_pub},{executor_pub},{identity_pub}")),
            var("BIZOPS_WEBHOOKS__ENCRYPTION_KEYS", format!("e2e:{}", STANDARD.encode([5u8; 32]))),
        ]);
        env.insert("pilot-catalog", catalog);
        let mut vault = common("credential-vault");
        vault.extend([
            var("BIZOPS_AUTH__SESSION_PUBLIC_KEYS", session_public.clone()),
            var("BIZOPS_AUTH__TRUSTED_CALLERS", format!("{gateway_pub},{executor_pub},{identity_pub}")),
            var("BIZOPS_KEYS__KEYRING", format!("1:{}", STANDARD.encode([7u8; 32]))),
            var("BIZOPS_KEYS__ACTIVE_VERSION", "1"),
            var("BIZOPS_CONNECTORS__SLACK_ALLOWED_HOSTS", "127.0.0.1"),
            var("BIZOPS_CONNECTORS__SLACK_REQUIRE_HTTPS", "false"),
            var("BIZOPS_CONNECTORS__RESEND_BASE_URL", resend.uri()),
            var("BIZOPS_CONNECTORS__ANTHROPIC_BASE_URL", anthropic.uri()),
        ]);
        env.insert("credential-vault", vault);
        let mut executor = common("executor");
        executor.extend([
            var("BIZOPS_AUTH__SESSION_PUBLIC_KEYS", session_public.clone()),
            var("BIZOPS_AUTH__SERVICE_KEY", secret(&executor_key)),
            var("BIZOPS_AUTH__TRUSTED_CALLERS", format!("{gateway_pub},{identity_pub}")),
            var("BIZOPS_RUNS__REAPER_INTERVAL", "200ms"),
            var("BIZOPS_RUNS__SWEEP_INTERVAL", "300ms"),
            var("BIZOPS_STEPS__DEFAULT_INITIAL_BACKOFF", "20ms"),
            var("BIZOPS_STEPS__DEFAULT_MAX_BACKOFF", "100ms"),
            var("BIZOPS_SCHEDULER__TICK", "500ms"),
            var("BIZOPS_PROVIDERS__SLACK_ALLOWED_HOSTS", "127.0.0.1"),
            var("BIZOPS_PROVIDERS__SLACK_REQUIRE_HTTPS", "false"),
            var("BIZOPS_PROVIDERS__RESEND_BASE_URL", resend.uri()),
            var("BIZOPS_PROVIDERS__ANTHROPIC_BASE_URL", anthropic.uri()),
            var("BIZOPS_HTTP__ALLOWED_NETWORKS", "127.0.0.0/8"),
        ]);
        env.insert("executor", executor);
        let mut identity = common("identity");
        identity.extend([
            var("BIZOPS_KEYS__SIGNING_KEY", secret(&session_key)),
            var("BIZOPS_SCRYPT__LOG_N", "10"),
            var("BIZOPS_SERVICE_AUTH__TRUSTED_CALLERS", gateway_pub.clone()),
            var("BIZOPS_SERVICE_AUTH__SERVICE_KEY", secret(&identity_key)),
            var("BIZOPS_LOGIN_LIMITS__REGISTER_PER_SOURCE_PER_HOUR", "10000"),
            var("BIZOPS_DELETION__RETRY_INTERVAL", "500ms"),
            var("BIZOPS_DELETION__CALL_TIMEOUT", "10s"),
            var("BIZOPS_NOTIFICATIONS__RESEND_BASE_URL", resend.uri()),
        ]);
        env.insert("identity", identity);
        let mut gateway = common("gateway");
        gateway.extend([
            var("BIZOPS_HTTP_ADDR", "127.0.0.1:0"),
            var("BIZOPS_PUBLIC_ORIGIN", ORIGIN),
            var("BIZOPS_CSRF_KEY", STANDARD.encode([9u8; 32])),
            var("BIZOPS_AUTH__SERVICE_KEY", secret(&gateway_key)),
            var("BIZOPS_TIMEOUTS__RPC", "10s"),
        ]);
        env.insert("gateway", gateway);
        for (svc, k, v) in options.extra {
            env.get_mut(svc).unwrap_or_else(|| panic!("no service {svc}")).push((k, v));
        }

        for svc in ["identity", "pilot-catalog", "credential-vault", "executor"] {
            migrate(svc, &env[svc]).await;
        }
        let mut procs = Self {
            db,
            nats,
            prefix,
            slack,
            resend,
            anthropic,
            base: String::new(),
            env,
            running: BTreeMap::new(),
            ended_logs: Vec::new(),
        };
        for svc in SERVICES {
            procs.launch(svc).await;
        }
        procs
    }

    fn addr_of(&self, svc: &str) -> String {
        self.running.get(svc).map(|s| s.addr.clone()).unwrap_or_else(|| panic!("{svc} is not running"))
    }

    /// Starts `svc` (again). A restart listens where the process before it did,
    /// so the others reach it at the address they know.
    pub async fn launch(&mut self, svc: &'static str) {
        let url = |s: &Self, name: &str| format!("http://{}", s.addr_of(name));
        let mut env = self.env[svc].clone();
        match svc {
            "executor" => env.extend([
                var("BIZOPS_CATALOG_URL", url(self, "pilot-catalog")),
                var("BIZOPS_VAULT_URL", url(self, "credential-vault")),
            ]),
            "identity" => env.extend([
                var("BIZOPS_DELETION__CATALOG_URL", url(self, "pilot-catalog")),
                var("BIZOPS_DELETION__EXECUTOR_URL", url(self, "executor")),
                var("BIZOPS_DELETION__VAULT_URL", url(self, "credential-vault")),
            ]),
            "gateway" => env.extend([
                var("BIZOPS_IDENTITY_URL", url(self, "identity")),
                var("BIZOPS_CATALOG_URL", url(self, "pilot-catalog")),
                var("BIZOPS_VAULT_URL", url(self, "credential-vault")),
                var("BIZOPS_EXECUTOR_URL", url(self, "executor")),
            ]),
            _ => {}
        }
        // The address of an earlier process of this service, kept for restarts.
        if let Some((addr, metrics)) = self.env[svc].iter().find(|(k, _)| k == "__ADDR").map(|(_, v)| {
            let (a, m) = v.split_once(' ').unwrap();
            (a.to_owned(), m.to_owned())
        }) {
            let key = if svc == "gateway" { "BIZOPS_HTTP_ADDR" } else { "BIZOPS_GRPC_ADDR" };
            env.extend([var(key, addr), var("BIZOPS_METRICS_ADDR", metrics)]);
        }
        env.retain(|(k, _)| k != "__ADDR");
        let service = Service::start(svc, &env).await;
        let remembered = format!("{} {}", service.addr, service.metrics_addr);
        let own = self.env.get_mut(svc).unwrap();
        own.retain(|(k, _)| k != "__ADDR");
        own.push(var("__ADDR", remembered));
        if svc == "gateway" {
            self.base = format!("http://{}", service.addr);
        }
        self.running.insert(svc, service);
    }

    /// `kill -9` of `svc`; its logs are kept for [`Procs::all_logs`].
    pub async fn kill(&mut self, svc: &'static str) {
        let service = self.running.remove(svc).unwrap_or_else(|| panic!("{svc} is not running"));
        let logs = service.kill().await;
        self.ended_logs.push((svc.to_owned(), logs));
    }

    /// SIGTERM to every service (the gateway first); each must exit with success.
    /// Every line every process of the suite logged, by binary name.
    pub async fn stop_all(&mut self) -> Vec<(String, String)> {
        for svc in SERVICES.iter().rev() {
            if let Some(service) = self.running.remove(svc) {
                let (status, logs) = service.stop().await;
                assert!(status.success(), "{svc} exited with {status}: {}", tail(&logs));
                self.ended_logs.push(((*svc).to_owned(), logs));
            }
        }
        self.ended_logs.clone()
    }

    /// `http://<metrics addr>/metrics` of a running service.
    pub fn metrics_url(&self, svc: &str) -> String {
        let s = self.running.get(svc).unwrap_or_else(|| panic!("{svc} is not running"));
        format!("http://{}/metrics", s.metrics_addr)
    }

    /// What the running `svc` exports on `/metrics`.
    pub async fn metrics(&self, svc: &str) -> String {
        reqwest::get(self.metrics_url(svc)).await.unwrap().text().await.unwrap()
    }

    /// A browser at the gateway, signed out.
    pub fn browser(&self) -> Browser {
        Browser::new(&self.base)
    }

    /// A Slack incoming-webhook URL on the Slack mock.
    pub fn slack_url(&self) -> String {
        format!("{}/services/T000/B000/{}", self.slack.uri(), Uuid::now_v7().simple())
    }

    /// A superuser pool on the suite's database (bypasses row-level security).
    pub async fn superuser(&self) -> sqlx::PgPool {
        self.db.superuser_pool().await.unwrap()
    }
}

/// The database role stem of a binary (`bizops_<stem>`).
fn svc_role(svc: &str) -> &'static str {
    match svc {
        "identity" => "identity",
        "pilot-catalog" => "catalog",
        "credential-vault" => "vault",
        "executor" => "executor",
        other => panic!("{other} has no database"),
    }
}

fn tail(logs: &str) -> String {
    let lines: Vec<&str> = logs.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Standard Webhooks headers for `body` signed with a `whsec_…` secret:
/// (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
pub fn sign_webhook(secret: &str, id: &str, body: &[u8]) -> [(&'static str, String); 3] {
    let ts = time::OffsetDateTime::now_utc().unix_timestamp();
    let signature = standardwebhooks::Webhook::new(secret).unwrap().sign(id, ts, body).unwrap();
    [("webhook-id", id.to_owned()), ("webhook-timestamp", ts.to_string()), ("webhook-signature", signature)]
}
