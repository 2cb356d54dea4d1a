//! The whole suite as real processes: the five service binaries (the ones `cargo
//! build --workspace --bins` made), a NATS server of the suite's own (so a test
//! can `kill -9` it and start it again on the same store), one fresh database,
//! wiremock for Slack, Resend and Anthropic, and optionally an OTLP endpoint for
//! the services' spans. Tests drive it through the gateway's public HTTP API.

use std::path::{Path, PathBuf};

use bizops_testkit::{
    TestDb,
    procs::{Cluster, ClusterSpec, NatsOptions, NatsServer, Output, generate_keys, var},
};
use bizops_topology::Topology;
use uuid::Uuid;
use wiremock::MockServer;

use crate::{LOG_FILTER, bin_dir, browser::Browser, profile};

/// The public origin the gateway is configured with (what a browser sends).
pub const ORIGIN: &str = crate::suite::ORIGIN;

/// The workspace root (the folder of the top `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The project's pinned NATS server (`scripts/dev-services` installs it) with the
/// project's configuration (`sync_interval: always`), on a port and a store
/// directory of its own.
pub struct Nats(NatsServer);

impl Nats {
    /// Starts a server and waits (≤ 10 s) until it accepts connections.
    pub async fn start() -> Self {
        let root = workspace_root();
        let options = NatsOptions {
            binary: root.join(".dev/venv/bin/nats-server"),
            config: root.join("scripts/nats-dev.conf"),
            store: std::env::temp_dir().join(format!("bizops-e2e-nats-{}", Uuid::now_v7().simple())),
            log: None,
        };
        Self(NatsServer::start(options).await.unwrap_or_else(|e| panic!("{e:#} (make test does)")))
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.0.url()
    }

    /// `kill -9`: the server gets no chance to flush anything.
    pub async fn kill(&mut self) {
        self.0.kill().await;
    }

    /// Starts it again on the same port and store.
    pub async fn restart(&mut self) {
        self.0.restart().await.unwrap();
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
    pub nats: Nats,
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
    cluster: Cluster,
}

impl Procs {
    /// Migrates a fresh database with each binary's `migrate` and starts the five
    /// services, in the topology's start order, and a NATS server of their own.
    pub async fn start(options: Options) -> Self {
        bizops_telemetry::install_crypto_provider();
        let db = TestDb::empty().await.expect("test database (scripts/dev-services)");
        let nats = Nats::start().await;
        let fakes = profile::Fakes::start().await;
        let prefix = bizops_testkit::nats_prefix();
        let topology = Topology::get();

        let mut env = profile::env(&topology, &db, &prefix, &fakes);
        for (binary, vars) in &mut env {
            vars.insert(0, var("BIZOPS_LOG__FILTER", LOG_FILTER));
            if let Some(endpoint) = &options.otlp_endpoint {
                vars.extend([
                    var("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()),
                    var("OTEL_BSP_SCHEDULE_DELAY", "100"),
                ]);
            }
            for (svc, k, v) in &options.extra {
                if svc == binary {
                    vars.push((k.clone(), v.clone()));
                }
            }
        }
        for (svc, _, _) in &options.extra {
            assert!(env.contains_key(*svc), "no service {svc}");
        }
        let spec = ClusterSpec {
            bin_dir: bin_dir(),
            output: Output::Memory,
            keys: generate_keys(&topology).unwrap(),
            nats_url: nats.url(),
            env,
        };
        let mut cluster = Cluster::new(spec);
        cluster.migrate().await.unwrap_or_else(|e| panic!("{e:#}"));
        cluster.start_all_but(&[]).await.unwrap_or_else(|e| panic!("{e:#}"));
        let base = cluster.get("gateway").unwrap().url();
        let profile::Fakes { slack, resend, anthropic } = fakes;
        Self { db, nats, prefix, slack, resend, anthropic, base, cluster }
    }

    /// Starts `svc` (again). A restart listens where the process before it did,
    /// so the others reach it at the address they know.
    pub async fn launch(&mut self, svc: &'static str) {
        self.cluster.launch(svc).await.unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// `kill -9` of `svc`; its logs are kept for [`Procs::stop_all`].
    pub async fn kill(&mut self, svc: &'static str) {
        self.cluster.kill(svc).await.unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// SIGTERM to every service (the gateway first); each must exit with success.
    /// Every line every process of the suite logged, by binary name.
    pub async fn stop_all(&mut self) -> Vec<(String, String)> {
        self.cluster.stop_all().await.unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// The process id of the running `svc`.
    pub fn pid(&self, svc: &str) -> u32 {
        let s = self.cluster.get(svc).unwrap_or_else(|e| panic!("{e:#}"));
        s.pid().unwrap_or_else(|| panic!("{svc} is not running"))
    }

    /// `http://<addr>` of the running `svc` (by binary name): its gRPC server.
    pub fn grpc_url(&self, svc: &str) -> String {
        self.cluster.get(svc).unwrap_or_else(|e| panic!("{e:#}")).url()
    }

    /// `http://<metrics addr>/metrics` of a running service.
    pub fn metrics_url(&self, svc: &str) -> String {
        let s = self.cluster.get(svc).unwrap_or_else(|e| panic!("{e:#}"));
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

/// Standard Webhooks headers for `body` signed with a `whsec_…` secret:
/// (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
pub fn sign_webhook(secret: &str, id: &str, body: &[u8]) -> [(&'static str, String); 3] {
    let ts = time::OffsetDateTime::now_utc().unix_timestamp();
    let signature = standardwebhooks::Webhook::new(secret).unwrap().sign(id, ts, body).unwrap();
    [("webhook-id", id.to_owned()), ("webhook-timestamp", ts.to_string()), ("webhook-signature", signature)]
}
