//! The five services as processes (the testkit's harness, wired by the topology)
//! on one fresh database and the bench's own NATS server, from the release
//! binaries, logs to files, with the rate limits that would throttle a load test
//! switched off.

use std::{collections::BTreeMap, path::PathBuf};

use anyhow::Context as _;
use base64::{Engine as _, engine::general_purpose::STANDARD};
use bizops_proto::{
    catalog::v1::{self as cpb, catalog_service_client::CatalogServiceClient, step::Kind},
    identity::v1::{self as ipb, identity_service_client::IdentityServiceClient},
};
use bizops_testkit::{
    TestDb, authed,
    procs::{Cluster, ClusterSpec, Env, Output, Process, generate_keys, var},
    steps::{step, transform},
};
use bizops_topology::Topology;
use tonic::transport::Channel;

use crate::procs;

/// The password of every bench account.
pub use bizops_testkit::PASSWORD;

/// The service binaries, in the topology's order (report rows).
pub fn binaries() -> Vec<String> {
    Topology::get().services.iter().map(|s| s.binary.clone()).collect()
}

/// What the bench sets beyond the topology's wiring: the database, and the limits
/// that would throttle a load test from one address switched off.
fn bench_env(topology: &Topology, db: &TestDb) -> BTreeMap<String, Env> {
    let mut all = BTreeMap::new();
    for s in &topology.services {
        let mut env = Env::new();
        if s.database {
            env.extend(db.env(&s.name));
        }
        env.extend(match s.name.as_str() {
            // Production scrypt parameters (the default); the failure throttles and the
            // sign-up limit would otherwise stop a load test from one address.
            "identity" => vec![
                var("BIZOPS_LOGIN_LIMITS__PER_PAIR", "1000000"),
                var("BIZOPS_LOGIN_LIMITS__PER_SOURCE", "1000000"),
                var("BIZOPS_LOGIN_LIMITS__PER_EMAIL", "1000000"),
                var("BIZOPS_LOGIN_LIMITS__REGISTER_PER_SOURCE_PER_HOUR", "1000000"),
            ],
            // One client address sends everything: per-source and per-Pilot webhook
            // budgets and the per-session API budget are off (0) for the bench.
            "gateway" => vec![
                var("BIZOPS_INSECURE_DEV_COOKIES", "true"),
                var("BIZOPS_PUBLIC_ORIGIN", "http://127.0.0.1:8080"),
                var("BIZOPS_RATE_LIMITS__WEBHOOK_PER_PILOT__PER_MINUTE", "0"),
                var("BIZOPS_RATE_LIMITS__WEBHOOK_PER_SOURCE__PER_MINUTE", "0"),
                var("BIZOPS_RATE_LIMITS__API_PER_SESSION__PER_MINUTE", "0"),
            ],
            // One account sends the whole load: its execution slots (8 by default,
            // a per-account fairness quota) are raised to the replica's permits, so
            // the bench measures the suite's capacity, slots still taken per run.
            // The noisy-neighbour phase restarts it with the default, and its
            // attacker calls an endpoint on 127.0.0.1.
            "executor" => vec![
                var("BIZOPS_RUNS__OWNER_CONCURRENCY", "64"),
                var("BIZOPS_HTTP__ALLOWED_NETWORKS", "127.0.0.0/8"),
            ],
            _ => vec![],
        });
        all.insert(s.binary.clone(), env);
    }
    all
}

/// The running suite (without the executor until [`Suite::start_executor`]).
pub struct Suite {
    cluster: Cluster,
    /// Its database (dropped with the suite).
    pub db: TestDb,
    log_dir: PathBuf,
}

/// A signed-in bench account.
pub struct Account {
    /// Session token (also the gateway cookie value).
    pub token: String,
}

/// A Pilot the bench triggers.
#[derive(Clone)]
pub struct Pilot {
    /// Id.
    pub id: String,
    /// Decoded webhook secret (the HMAC key).
    pub key: Vec<u8>,
}

impl Suite {
    /// Creates a database, migrates every service, starts all but the executor
    /// (whose address is reserved, so the services that call it know it).
    pub async fn start(nats_url: &str, tag: &str) -> anyhow::Result<Self> {
        let db = TestDb::empty().await.context("bench database (run `make dev-services`)")?;
        let topology = Topology::get();
        let log_dir = procs::scratch_dir().join(format!("logs-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&log_dir)?;
        let exe = std::env::current_exe()?;
        let spec = ClusterSpec {
            bin_dir: exe.parent().context("the bench executable has no directory")?.to_path_buf(),
            output: Output::Files(log_dir.clone()),
            keys: generate_keys(&topology)?,
            nats_url: nats_url.to_owned(),
            env: bench_env(&topology, &db),
        };
        let mut cluster = Cluster::new(spec);
        cluster.migrate().await.context("(`make bench` builds the release binaries first)")?;
        cluster.reserve("executor")?;
        cluster.start_all_but(&["executor"]).await?;
        Ok(Self { cluster, db, log_dir })
    }

    /// Starts the executor (it begins consuming triggers at once).
    pub async fn start_executor(&mut self) -> anyhow::Result<()> {
        self.cluster.launch("executor").await
    }

    /// Restarts the executor (SIGKILL, then a fresh start) with `vars` set.
    pub async fn restart_executor_with(&mut self, vars: &[(&str, &str)]) -> anyhow::Result<()> {
        self.cluster.kill("executor").await?;
        for (name, value) in vars {
            self.cluster.set_env("executor", name, value);
        }
        self.cluster.launch("executor").await
    }

    /// The running service `name` (a binary name).
    pub fn get(&self, name: &str) -> anyhow::Result<&Process> {
        self.cluster.get(name)
    }

    /// `http://<gateway>`.
    pub fn gateway_url(&self) -> anyhow::Result<String> {
        Ok(self.get("gateway")?.url())
    }

    /// A gRPC channel to `name`.
    pub async fn channel(&self, name: &str) -> anyhow::Result<Channel> {
        Ok(Channel::from_shared(self.get(name)?.url())?.connect().await?)
    }

    /// Resident set sizes in MiB, per binary name.
    pub fn rss(&self) -> Vec<(String, f64)> {
        self.cluster.running().map(|s| (s.name.clone(), s.rss())).collect()
    }

    /// Process ids, per binary name.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.cluster.running().filter_map(|s| s.pid().map(|p| (s.name.clone(), p))).collect()
    }

    /// Registers `email` and signs in.
    pub async fn account(&self, email: &str) -> anyhow::Result<Account> {
        let mut identity = IdentityServiceClient::new(self.channel("identity").await?);
        identity
            .register(ipb::RegisterRequest {
                email: email.into(),
                password: PASSWORD.into(),
                display_name: "bench".into(),
            })
            .await
            .context("register")?;
        let token = identity
            .login(ipb::LoginRequest { email: email.into(), password: PASSWORD.into() })
            .await
            .context("login")?
            .into_inner()
            .session
            .context("login answered no session")?
            .token;
        Ok(Account { token })
    }

    /// An access token of `account`'s session (identity's ExchangeToken).
    pub async fn access(&self, account: &Account) -> anyhow::Result<String> {
        let mut identity = IdentityServiceClient::new(self.channel("identity").await?);
        Ok(identity
            .exchange_token(ipb::ExchangeTokenRequest { subject_token: account.token.clone() })
            .await
            .context("ExchangeToken")?
            .into_inner()
            .access_token)
    }

    /// Creates `n` enabled Pilots with the 3-step local workflow
    /// (transform → condition → ai with the local fallback).
    pub async fn pilots(&self, account: &Account, n: usize) -> anyhow::Result<Vec<Pilot>> {
        self.pilots_of(account, (0..n).map(spec).collect()).await
    }

    /// Creates an enabled Pilot of each spec.
    pub async fn pilots_of(
        &self,
        account: &Account,
        specs: Vec<cpb::PilotSpec>,
    ) -> anyhow::Result<Vec<Pilot>> {
        let mut catalog = CatalogServiceClient::new(self.channel("pilot-catalog").await?);
        let mut out = Vec::with_capacity(specs.len());
        let mut access: Option<(String, std::time::Instant)> = None;
        for spec in specs {
            // The catalog takes access tokens (≤ 55 s): exchange the session again every 30 s.
            let token =
                match access.take().filter(|(_, at)| at.elapsed() < std::time::Duration::from_secs(30)) {
                    Some(fresh) => access.insert(fresh),
                    None => access.insert((self.access(account).await?, std::time::Instant::now())),
                };
            let req = authed(&token.0, cpb::CreatePilotRequest { spec: Some(spec), enabled: true });
            let created = catalog.create_pilot(req).await.context("CreatePilot")?.into_inner();
            let id = created.pilot.context("CreatePilot answered no Pilot")?.id;
            let secret = created.webhook_secret;
            let key = STANDARD
                .decode(secret.strip_prefix("whsec_").context("webhook secret without whsec_")?)
                .context("webhook secret is not base64")?;
            out.push(Pilot { id, key });
        }
        Ok(out)
    }

    /// Kills every process (the database is dropped with `self`).
    pub async fn stop(mut self) {
        self.cluster.kill_all().await;
        let _ = std::fs::remove_dir_all(&self.log_dir);
    }
}

/// The bench workflow: shape the payload, check it, classify it locally.
fn spec(i: usize) -> cpb::PilotSpec {
    cpb::PilotSpec {
        title: format!("bench {i}"),
        description: "transform, condition, ai (local fallback)".into(),
        steps: vec![
            step("shape", transform(r#"{"text": {{ trigger.text | tojson }}, "n": {{ trigger.n }}}"#)),
            step(
                "check",
                Kind::Condition(cpb::ConditionStep {
                    expression: "steps.shape.output.n >= 0".into(),
                    on_false: cpb::OnFalse::Stop as i32,
                    jump_to: String::new(),
                }),
            ),
            step(
                "label",
                Kind::Ai(cpb::AiStep {
                    task: cpb::AiTask::Classify as i32,
                    input: "{{ steps.shape.output.text }}".into(),
                    labels: vec!["billing".into(), "outage".into(), "other".into()],
                    ..Default::default()
                }),
            ),
        ],
        ..Default::default()
    }
}
