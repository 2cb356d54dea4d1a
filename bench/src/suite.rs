//! The five services as processes on one fresh database and the bench's own
//! NATS server, configured like `scripts/run-dev` (environment variables), with
//! the rate limits that would throttle a load test switched off.

use std::path::PathBuf;

use anyhow::Context as _;
use base64::{Engine as _, engine::general_purpose::STANDARD};
use bizops_authn::{ServiceSigner, SigningKey};
use bizops_proto::{
    catalog::v1::{self as cpb, catalog_service_client::CatalogServiceClient, step::Kind},
    identity::v1::{self as ipb, identity_service_client::IdentityServiceClient},
};
use bizops_testkit::TestDb;
use secrecy::ExposeSecret as _;
use tonic::transport::Channel;

use crate::procs::{self, Service};

/// The password of every bench account.
pub const PASSWORD: &str = "correct horse battery staple 42";

/// The services, in start order (each after the ones it calls). The executor is
/// started separately (see [`Suite::start_executor`]).
pub const SERVICES: [&str; 5] = ["identity", "pilot-catalog", "credential-vault", "executor", "gateway"];

type Env = Vec<(String, String)>;

fn kv(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_owned(), v.into())
}

/// Keys and environments of the five services.
struct Envs {
    identity: Env,
    catalog: Env,
    vault: Env,
    executor: Env,
    gateway: Env,
}

fn database_env(db: &TestDb, svc: &str) -> Env {
    vec![
        kv("BIZOPS_DATABASE__URL", db.url(&format!("bizops_{svc}"))),
        kv("BIZOPS_DATABASE__SYSTEM_URL", db.url(&format!("bizops_{svc}_system"))),
        kv("BIZOPS_DATABASE__MIGRATE_URL", db.url("bizops_migrator")),
    ]
}

fn envs(db: &TestDb, nats_url: &str) -> anyhow::Result<Envs> {
    let session = SigningKey::generate("bench-session")?;
    let session_public = session.public().to_config_string();
    let key = |name: &str| -> anyhow::Result<(String, String)> {
        let k = SigningKey::generate(name)?;
        let public = ServiceSigner::new(name, k.clone()).public_key().to_config_string();
        Ok((k.to_secret_string().expose_secret().to_owned(), public))
    };
    let (identity_key, identity_pub) = key("identity")?;
    let (catalog_key, catalog_pub) = key("catalog")?;
    let (executor_key, executor_pub) = key("executor")?;
    let (gateway_key, gateway_pub) = key("gateway")?;
    let aes = |seed: u8| {
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = seed.wrapping_mul(31).wrapping_add(i as u8);
        }
        STANDARD.encode(k)
    };
    let nats = kv("BIZOPS_NATS__URL", nats_url);

    let mut identity = database_env(db, "identity");
    identity.extend([
        kv("BIZOPS_KEYS__SIGNING_KEY", session.to_secret_string().expose_secret()),
        kv("BIZOPS_SERVICE_AUTH__SERVICE_KEY", identity_key),
        kv("BIZOPS_SERVICE_AUTH__TRUSTED_CALLERS", gateway_pub.clone()),
        // Production scrypt parameters (the default); the failure throttles and the
        // sign-up limit would otherwise stop a load test from one address.
        kv("BIZOPS_LOGIN_LIMITS__PER_PAIR", "1000000"),
        kv("BIZOPS_LOGIN_LIMITS__PER_SOURCE", "1000000"),
        kv("BIZOPS_LOGIN_LIMITS__PER_EMAIL", "1000000"),
        kv("BIZOPS_LOGIN_LIMITS__REGISTER_PER_SOURCE_PER_HOUR", "1000000"),
        nats.clone(),
    ]);

    let mut catalog = database_env(db, "catalog");
    catalog.extend([
        kv("BIZOPS_AUTH__SESSION_PUBLIC_KEYS", session_public.clone()),
        kv("BIZOPS_AUTH__SERVICE_KEY", catalog_key),
        kv("BIZOPS_AUTH__TRUSTED_CALLERS", format!("{gateway_pub},{executor_pub},{identity_pub}")),
        kv("BIZOPS_WEBHOOKS__ENCRYPTION_KEYS", format!("bench:{}", aes(5))),
        nats.clone(),
    ]);

    let mut vault = database_env(db, "vault");
    vault.extend([
        kv("BIZOPS_AUTH__SESSION_PUBLIC_KEYS", session_public.clone()),
        kv("BIZOPS_AUTH__TRUSTED_CALLERS", format!("{gateway_pub},{executor_pub},{identity_pub}")),
        kv("BIZOPS_KEYS__KEYRING", format!("1:{}", aes(7))),
        kv("BIZOPS_KEYS__ACTIVE_VERSION", "1"),
    ]);

    let mut executor = database_env(db, "executor");
    executor.extend([
        kv("BIZOPS_AUTH__SESSION_PUBLIC_KEYS", session_public.clone()),
        kv("BIZOPS_AUTH__SERVICE_KEY", executor_key),
        kv("BIZOPS_AUTH__TRUSTED_CALLERS", format!("{identity_pub},{catalog_pub},{gateway_pub}")),
        nats.clone(),
    ]);

    let gateway = vec![
        kv("BIZOPS_HTTP_ADDR", "127.0.0.1:0"),
        kv("BIZOPS_AUTH__SERVICE_KEY", gateway_key),
        kv("BIZOPS_INSECURE_DEV_COOKIES", "true"),
        kv("BIZOPS_PUBLIC_ORIGIN", "http://127.0.0.1:8080"),
        // One client address sends everything: per-source and per-Pilot webhook
        // budgets and the per-session API budget are off (0) for the bench.
        kv("BIZOPS_RATE_LIMITS__WEBHOOK_PER_PILOT__PER_MINUTE", "0"),
        kv("BIZOPS_RATE_LIMITS__WEBHOOK_PER_SOURCE__PER_MINUTE", "0"),
        kv("BIZOPS_RATE_LIMITS__API_PER_SESSION__PER_MINUTE", "0"),
        nats,
    ];
    Ok(Envs { identity, catalog, vault, executor, gateway })
}

/// The running suite (without the executor until [`Suite::start_executor`]).
pub struct Suite {
    /// identity, pilot-catalog, credential-vault, gateway, then executor.
    pub services: Vec<Service>,
    /// Its database (dropped with the suite).
    pub db: TestDb,
    executor_env: Env,
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
    /// Creates a database, migrates every service, starts all but the executor.
    pub async fn start(nats_url: &str, tag: &str) -> anyhow::Result<Self> {
        let db = TestDb::empty().await.context("bench database (run `make dev-services`)")?;
        let e = envs(&db, nats_url)?;
        let log_dir = procs::scratch_dir().join(format!("logs-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&log_dir)?;
        for (name, env) in [
            ("identity", &e.identity),
            ("pilot-catalog", &e.catalog),
            ("credential-vault", &e.vault),
            ("executor", &e.executor),
        ] {
            procs::migrate(name, env).await?;
        }
        let mut services = Vec::new();
        let url = |s: &Service| s.url();
        let identity = Service::start("identity", &e.identity, &log_dir).await?;
        let catalog = Service::start("pilot-catalog", &e.catalog, &log_dir).await?;
        let vault = Service::start("credential-vault", &e.vault, &log_dir).await?;
        // The executor starts later, on a port chosen now, so the gateway knows it.
        let executor_addr = format!("127.0.0.1:{}", procs::free_port()?);
        let mut executor_env = e.executor;
        executor_env.extend([
            kv("BIZOPS_CATALOG_URL", url(&catalog)),
            kv("BIZOPS_VAULT_URL", url(&vault)),
            kv("BIZOPS_GRPC_ADDR", executor_addr.clone()),
        ]);
        let mut gateway_env = e.gateway;
        gateway_env.extend([
            kv("BIZOPS_IDENTITY_URL", url(&identity)),
            kv("BIZOPS_CATALOG_URL", url(&catalog)),
            kv("BIZOPS_VAULT_URL", url(&vault)),
            kv("BIZOPS_EXECUTOR_URL", format!("http://{executor_addr}")),
        ]);
        let gateway = Service::start("gateway", &gateway_env, &log_dir).await?;
        services.extend([identity, catalog, vault, gateway]);
        Ok(Self { services, db, executor_env, log_dir })
    }

    /// Starts the executor (it begins consuming triggers at once).
    pub async fn start_executor(&mut self) -> anyhow::Result<()> {
        let executor = Service::start("executor", &self.executor_env, &self.log_dir).await?;
        self.services.push(executor);
        Ok(())
    }

    /// The service named `name`.
    pub fn get(&self, name: &str) -> anyhow::Result<&Service> {
        self.services.iter().find(|s| s.name == name).with_context(|| format!("{name} is not running"))
    }

    /// `http://<gateway>`.
    pub fn gateway_url(&self) -> anyhow::Result<String> {
        Ok(self.get("gateway")?.url())
    }

    /// A gRPC channel to `name`.
    pub async fn channel(&self, name: &str) -> anyhow::Result<Channel> {
        Ok(Channel::from_shared(self.get(name)?.url())?.connect().await?)
    }

    /// Resident set sizes in MiB, per service name.
    pub fn rss(&self) -> Vec<(&'static str, f64)> {
        self.services.iter().map(|s| (s.name, s.rss())).collect()
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

    /// Creates `n` enabled Pilots with the 3-step local workflow
    /// (transform → condition → ai with the local fallback).
    pub async fn pilots(&self, account: &Account, n: usize) -> anyhow::Result<Vec<Pilot>> {
        let mut catalog = CatalogServiceClient::new(self.channel("pilot-catalog").await?);
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let mut req = tonic::Request::new(cpb::CreatePilotRequest { spec: Some(spec(i)), enabled: true });
            req.metadata_mut().insert("authorization", format!("Bearer {}", account.token).parse()?);
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
    pub async fn stop(self) {
        for s in self.services {
            s.stop().await;
        }
        let _ = std::fs::remove_dir_all(&self.log_dir);
    }
}

fn step(key: &str, kind: Kind) -> cpb::Step {
    cpb::Step { key: key.into(), kind: Some(kind), ..Default::default() }
}

/// The bench workflow: shape the payload, check it, classify it locally.
fn spec(i: usize) -> cpb::PilotSpec {
    cpb::PilotSpec {
        title: format!("bench {i}"),
        description: "transform, condition, ai (local fallback)".into(),
        steps: vec![
            step(
                "shape",
                Kind::Transform(cpb::TransformStep {
                    template: r#"{"text": {{ trigger.text | tojson }}, "n": {{ trigger.n }}}"#.into(),
                }),
            ),
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
        schedules: vec![],
    }
}
