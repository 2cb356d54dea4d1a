//! Configuration of the executor (defaults → file → `BIZOPS_*` env).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use bizops_authn::AuthConfig;
use bizops_bus::NatsConfig;
use bizops_config::{DatabaseConfig, LogConfig, Renamed, duration, string_list};
use secrecy::SecretString;
use serde::Deserialize;

/// Service name: DB roles `bizops_executor*`, service-token identity, telemetry.
pub const SERVICE_NAME: &str = "executor";
/// The gRPC service name in health checks.
pub const GRPC_SERVICE: &str = "bizops.executor.v1.ExecutorService";

/// Everything the executor reads from its configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutorConfig {
    /// gRPC listen address.
    pub grpc_addr: SocketAddr,
    /// Prometheus `/metrics` listen address.
    pub metrics_addr: SocketAddr,
    /// Log format and filter.
    pub log: LogConfig,
    /// Postgres URLs per role (`BIZOPS_DATABASE__*`).
    pub database: DatabaseConfig,
    /// Session and service tokens (`BIZOPS_AUTH__*`); the service key is required
    /// (the executor calls the catalog and the vault as itself).
    pub auth: AuthConfig,
    /// NATS (`BIZOPS_NATS__*`).
    pub nats: NatsConfig,
    /// identity's gRPC URL (`BIZOPS_IDENTITY_URL`): session keys come from its JWKS.
    /// Unset: only `BIZOPS_AUTH__SESSION_PUBLIC_KEYS` verify sessions.
    pub identity_url: Option<String>,
    /// pilot-catalog's gRPC URL (`BIZOPS_CATALOG_URL`).
    pub catalog_url: String,
    /// credential-vault's gRPC URL (`BIZOPS_VAULT_URL`).
    pub vault_url: String,
    /// Intake from the triggers stream (`BIZOPS_INTAKE__*`).
    pub intake: IntakeConfig,
    /// Runs: leases, retention (`BIZOPS_RUNS__*`).
    pub runs: RunsConfig,
    /// Step defaults and limits (`BIZOPS_STEPS__*`).
    pub steps: StepsConfig,
    /// The template sandbox (`BIZOPS_TEMPLATES__*`).
    pub templates: TemplatesConfig,
    /// AI steps (`BIZOPS_AI__*`).
    pub ai: AiConfig,
    /// Outside services (`BIZOPS_PROVIDERS__*`).
    pub providers: ProvidersConfig,
    /// HTTP steps (`BIZOPS_HTTP__*`).
    pub http: HttpConfig,
    /// The scheduler (`BIZOPS_SCHEDULER__*`).
    pub scheduler: SchedulerConfig,
    /// After SIGTERM, keep serving while health reports NOT_SERVING.
    #[serde(deserialize_with = "duration")]
    pub shutdown_drain: Duration,
    /// Then how long in-flight RPCs and steps may take before leases are released.
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace: Duration,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50054)),
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], 9105)),
            log: LogConfig::default(),
            database: DatabaseConfig::default(),
            auth: AuthConfig::default(),
            nats: NatsConfig::default(),
            identity_url: None,
            catalog_url: "http://127.0.0.1:50052".into(),
            vault_url: "http://127.0.0.1:50053".into(),
            intake: IntakeConfig::default(),
            runs: RunsConfig::default(),
            steps: StepsConfig::default(),
            templates: TemplatesConfig::default(),
            ai: AiConfig::default(),
            providers: ProvidersConfig::default(),
            http: HttpConfig::default(),
            scheduler: SchedulerConfig::default(),
            shutdown_drain: Duration::from_secs(3),
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

/// Keys renamed so that every service spells a setting alike; the old names still
/// work and are logged as deprecated.
pub const RENAMED: &[Renamed] = &[bizops_authn::RENAMED_IDENTITY_URL];

impl bizops_runtime::cli::ServiceConfig for ExecutorConfig {
    const NAME: &'static str = SERVICE_NAME;
    const HEALTH_SERVICE: &'static str = GRPC_SERVICE;
    const RENAMED: &'static [Renamed] = RENAMED;

    fn log(&self) -> &LogConfig {
        &self.log
    }

    fn database(&self) -> Option<&DatabaseConfig> {
        Some(&self.database)
    }

    fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }
}

/// Intake from `<P>_TRIGGERS` with a durable pull consumer.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IntakeConfig {
    /// Durable consumer name (shared by every replica).
    pub consumer: String,
    /// Messages per pull.
    pub batch: usize,
    /// How long JetStream waits for an ack before redelivering.
    #[serde(deserialize_with = "duration")]
    pub ack_wait: Duration,
    /// Deliveries before a message goes to the DLQ.
    pub max_deliver: i64,
    /// Largest trigger payload taken in.
    pub max_payload_bytes: usize,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        Self {
            consumer: "executor".into(),
            batch: 128,
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            max_payload_bytes: 1024 * 1024,
        }
    }
}

/// Runs: leases and retention.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunsConfig {
    /// A run's lease; renewed at a third of it while working.
    #[serde(deserialize_with = "duration")]
    pub lease: Duration,
    /// How often the reaper looks for runs with an expired lease.
    #[serde(deserialize_with = "duration")]
    pub reaper_interval: Duration,
    /// Runs kept per Pilot (older ones are deleted when a new one is recorded).
    pub max_per_pilot: i64,
    /// Finished jobs (trigger payloads) are deleted this long after finishing.
    #[serde(deserialize_with = "duration")]
    pub job_retention: Duration,
    /// How often retention sweeps run.
    #[serde(deserialize_with = "duration")]
    pub sweep_interval: Duration,
    /// Runs executed at once by this replica.
    pub concurrency: usize,
    /// Default deadline of a pending approval.
    #[serde(deserialize_with = "duration")]
    pub approval_expiry: Duration,
    /// Takeovers (an executor stopped while holding the run) after which a run
    /// is failed as poisoned instead of being executed again.
    pub max_takeovers: i32,
    /// Runs of one owner executing at once, over every replica; the others wait
    /// their turn, oldest first.
    pub owner_concurrency: i64,
    /// How long a run may hold a slot in all (waiting for a decision, a retry or
    /// a slot does not count), unless its Pilot sets its own limit.
    #[serde(deserialize_with = "duration")]
    pub execution_deadline: Duration,
    /// The longest limit a Pilot may set (a longer one is cut to this).
    #[serde(deserialize_with = "duration")]
    pub max_execution_deadline: Duration,
}

impl Default for RunsConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(30),
            reaper_interval: Duration::from_secs(5),
            max_per_pilot: 100,
            job_retention: Duration::from_secs(7 * 24 * 3600),
            sweep_interval: Duration::from_secs(300),
            concurrency: 64,
            approval_expiry: Duration::from_secs(72 * 3600),
            max_takeovers: 3,
            owner_concurrency: 8,
            execution_deadline: Duration::from_secs(3600),
            max_execution_deadline: Duration::from_secs(6 * 3600),
        }
    }
}

/// Step defaults and limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StepsConfig {
    /// Per-attempt timeout when the step sets none.
    #[serde(deserialize_with = "duration")]
    pub default_timeout: Duration,
    /// Attempts when the step sets none.
    pub default_max_attempts: u32,
    /// First backoff when the step sets none.
    #[serde(deserialize_with = "duration")]
    pub default_initial_backoff: Duration,
    /// Longest backoff when the step sets none.
    #[serde(deserialize_with = "duration")]
    pub default_max_backoff: Duration,
    /// Template fuel (instructions per render).
    pub template_fuel: u64,
    /// Largest rendered template or step output, in bytes.
    pub max_output_bytes: usize,
    /// Output preview stored and shown per step, in bytes.
    pub preview_bytes: usize,
}

impl Default for StepsConfig {
    fn default() -> Self {
        Self {
            default_timeout: Duration::from_secs(30),
            default_max_attempts: 3,
            default_initial_backoff: Duration::from_millis(500),
            default_max_backoff: Duration::from_secs(10),
            template_fuel: 100_000,
            max_output_bytes: 1024 * 1024,
            preview_bytes: 16 * 1024,
        }
    }
}

/// The template sandbox: worker processes that render under a memory limit
/// (see `sandbox.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TemplatesConfig {
    /// The worker program: the executor binary (default: this executable).
    pub worker: Option<PathBuf>,
    /// Workers rendering at once (the rest wait their turn); with `memory_mib`,
    /// what the container's memory limit must leave room for.
    pub workers: usize,
    /// Memory one render may use beyond what a worker maps at start, in MiB.
    pub memory_mib: u64,
    /// Longest a render may take (fuel bounds instructions; this bounds time).
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
}

impl Default for TemplatesConfig {
    fn default() -> Self {
        Self {
            worker: None,
            // Not the core count: on a big node that would be many times the
            // container's memory (each worker may use `memory_mib`).
            workers: 2,
            memory_mib: 256,
            timeout: Duration::from_secs(10),
        }
    }
}

/// AI steps: the server's key (optional) and model defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AiConfig {
    /// The server's Anthropic key, used when the owner connected none. Without
    /// either, AI steps run the local fallback and nothing leaves the server.
    pub server_key: Option<SecretString>,
    /// Model when the step names none.
    pub default_model: String,
    /// Output tokens when the step sets none.
    pub default_max_tokens: u32,
    /// Models the server's key may be used with (the owner's own key: any). A step
    /// naming another model runs the local fallback and says so.
    #[serde(deserialize_with = "string_list")]
    pub server_models: Vec<String>,
    /// Tokens (input and output) each owner may use through the server's key per
    /// UTC day; beyond, AI steps run the local fallback and say so.
    pub server_daily_tokens: u64,
    /// Output tokens per call through the server's key, at most.
    pub server_max_tokens: u32,
}

impl Default for AiConfig {
    fn default() -> Self {
        Self {
            server_key: None,
            default_model: "claude-sonnet-4-5".into(),
            default_max_tokens: 1024,
            server_models: vec!["claude-sonnet-4-5".into(), "claude-haiku-4-5".into()],
            server_daily_tokens: 200_000,
            server_max_tokens: 4096,
        }
    }
}

/// Base URLs of outside services (configuration, never branches in code).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvidersConfig {
    /// Anthropic API.
    pub anthropic_base_url: String,
    /// Resend API.
    pub resend_base_url: String,
    /// Hosts a Slack webhook URL may point at.
    #[serde(deserialize_with = "string_list")]
    pub slack_allowed_hosts: Vec<String>,
    /// Whether Slack webhook URLs must be https.
    pub slack_require_https: bool,
}

impl Default for ProvidersConfig {
    fn default() -> Self {
        Self {
            anthropic_base_url: "https://api.anthropic.com".into(),
            resend_base_url: "https://api.resend.com".into(),
            slack_allowed_hosts: vec!["hooks.slack.com".into()],
            slack_require_https: true,
        }
    }
}

/// HTTP steps: the SSRF guard's allow-list.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Networks (CIDR, e.g. `10.1.0.0/16`) that HTTP steps may reach even though
    /// they are private, loopback or link-local. Empty: none.
    #[serde(deserialize_with = "string_list")]
    pub allowed_networks: Vec<String>,
}

/// The scheduler.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// How often due schedules are fired.
    #[serde(deserialize_with = "duration")]
    pub tick: Duration,
    /// How far back a restarted scheduler catches up on missed ticks.
    #[serde(deserialize_with = "duration")]
    pub max_catch_up: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self { tick: Duration::from_secs(10), max_catch_up: Duration::from_secs(3600) }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn old_names_still_work_and_are_reported() {
        let old = [("BIZOPS_AUTH__IDENTITY_URL", "http://identity:50051")];
        let loaded = bizops_config::from_vars::<ExecutorConfig, _, _, _>(old, RENAMED).unwrap();
        assert_eq!(loaded.config.identity_url.as_deref(), Some("http://identity:50051"));
        assert!(loaded.deprecated[0].to_string().contains("use BIZOPS_IDENTITY_URL"));
    }
}
