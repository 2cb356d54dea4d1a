//! Configuration of the identity service (defaults → file → `BIZOPS_*` env).

use std::{net::SocketAddr, time::Duration};

use bizops_config::{DatabaseConfig, LogConfig, duration, string_list};
use secrecy::SecretString;
use serde::Deserialize;

/// The service name: OpenTelemetry `service.name`, service-token audience, health name.
pub const SERVICE_NAME: &str = "identity";
/// The gRPC service name in health checks.
pub const GRPC_SERVICE: &str = "bizops.identity.v1.IdentityService";

/// Everything identity reads from its configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// gRPC listen address (`BIZOPS_GRPC_ADDR`).
    pub grpc_addr: SocketAddr,
    /// Prometheus `/metrics` listen address (`BIZOPS_METRICS_ADDR`).
    pub metrics_addr: SocketAddr,
    /// Log format and filter (`BIZOPS_LOG__FORMAT`, `BIZOPS_LOG__FILTER`).
    pub log: LogConfig,
    /// Postgres URLs per role and pool sizes (`BIZOPS_DATABASE__*`).
    pub database: DatabaseConfig,
    /// Password hashing (`BIZOPS_SCRYPT__*`).
    pub scrypt: ScryptConfig,
    /// Session tokens (`BIZOPS_SESSION__*`).
    pub session: SessionConfig,
    /// Signing keys (`BIZOPS_KEYS__*`).
    pub keys: KeysConfig,
    /// Services that call identity (`BIZOPS_SERVICE_AUTH__*`).
    pub service_auth: ServiceAuthConfig,
    /// Failed-login throttling (`BIZOPS_LOGIN_LIMITS__*`).
    pub login_limits: LoginLimitsConfig,
    /// Account deletion across the services (`BIZOPS_DELETION__*`).
    pub deletion: DeletionConfig,
    /// NATS (`BIZOPS_NATS__*`): account deletion purges the owner's messages.
    pub nats: bizops_bus::NatsConfig,
    /// Notices by email (`BIZOPS_NOTIFICATIONS__*`).
    pub notifications: NotificationsConfig,
    /// How long a graceful shutdown waits for in-flight RPCs.
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace: Duration,
    /// How long a shutdown keeps serving while reporting NOT_SERVING, so load
    /// balancers stop sending new work first.
    #[serde(deserialize_with = "duration")]
    pub shutdown_drain: Duration,
}

impl bizops_runtime::cli::ServiceConfig for IdentityConfig {
    const NAME: &'static str = SERVICE_NAME;
    const HEALTH_SERVICE: &'static str = GRPC_SERVICE;

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

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], 9102)),
            log: LogConfig::default(),
            database: DatabaseConfig::default(),
            scrypt: ScryptConfig::default(),
            session: SessionConfig::default(),
            keys: KeysConfig::default(),
            service_auth: ServiceAuthConfig::default(),
            login_limits: LoginLimitsConfig::default(),
            deletion: DeletionConfig::default(),
            nats: bizops_bus::NatsConfig::default(),
            notifications: NotificationsConfig::default(),
            shutdown_grace: Duration::from_secs(20),
            shutdown_drain: Duration::from_secs(3),
        }
    }
}

/// scrypt parameters. Production defaults follow OWASP (N = 2^17, r = 8, p = 1:
/// 128 MiB per hash); tests use cheap ones. Hashes with other parameters are
/// upgraded at the next successful login.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScryptConfig {
    /// log2 of the cost N.
    pub log_n: u8,
    /// Block size.
    pub r: u32,
    /// Parallelism.
    pub p: u32,
    /// Hashes computed at once; 0 = the number of CPU cores. Bounds memory use in a
    /// login burst to this many working sets.
    pub max_concurrent: usize,
}

impl Default for ScryptConfig {
    fn default() -> Self {
        Self { log_n: 17, r: 8, p: 1, max_concurrent: 0 }
    }
}

/// Session token settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// `iss` of session tokens.
    pub issuer: String,
    /// `aud` of session tokens.
    pub audience: String,
    /// Absolute lifetime of a session.
    #[serde(deserialize_with = "duration")]
    pub ttl: Duration,
    /// A session unused this long ends.
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// `last_seen_at` is written at most this often per session (keeps
    /// VerifySession mostly read-only).
    #[serde(deserialize_with = "duration")]
    pub last_seen_resolution: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            issuer: "bizops-identity".into(),
            audience: "bizops".into(),
            ttl: Duration::from_secs(12 * 3600),
            idle_timeout: Duration::from_secs(2 * 3600),
            last_seen_resolution: Duration::from_secs(60),
        }
    }
}

/// Session signing keys. The service refuses to start without a signing key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeysConfig {
    /// The current Ed25519 signing key, `<kid>:<base64 32-byte seed>`
    /// (`identity keygen` prints one; a Kubernetes Secret in a cluster).
    pub signing_key: Option<SecretString>,
    /// Public keys of previous signing keys, `<kid>:<base64 32-byte key>`, still
    /// accepted and listed in the JWKS during a rotation (comma-separated in env).
    #[serde(deserialize_with = "string_list")]
    pub previous_public_keys: Vec<String>,
}

/// Which services may call identity, and whose forwarded metadata it trusts.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceAuthConfig {
    /// Trusted callers' public keys, `<service>:<base64 32-byte key>`
    /// (comma-separated in env).
    #[serde(deserialize_with = "string_list")]
    pub trusted_callers: Vec<String>,
    /// Callers whose `x-bizops-source` (the end user's address) is believed.
    #[serde(deserialize_with = "string_list")]
    pub trust_forwarded_source_from: Vec<String>,
    /// identity's own Ed25519 key `identity:<base64 seed>`, for the calls of
    /// account deletion (catalog, executor, vault DeleteOwnerData).
    pub service_key: Option<SecretString>,
}

impl Default for ServiceAuthConfig {
    fn default() -> Self {
        Self {
            trusted_callers: Vec::new(),
            trust_forwarded_source_from: vec!["gateway".into()],
            service_key: None,
        }
    }
}

/// Failed-login throttling. Failures are counted per (email, source) pair first,
/// so one attacking address is stopped long before the other limits could lock
/// the real owner out; the per-source and per-email limits never block an address
/// the owner has signed in or registered from before.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginLimitsConfig {
    /// The sliding window failures are counted in.
    #[serde(deserialize_with = "duration")]
    pub window: Duration,
    /// Failures per (email, source address) in the window.
    pub per_pair: u32,
    /// Failures per source address, across emails.
    pub per_source: u32,
    /// Failures per email, across addresses.
    pub per_email: u32,
    /// Registrations per source address per hour (each costs a full scrypt hash).
    pub register_per_source_per_hour: u32,
}

impl Default for LoginLimitsConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(15 * 60),
            per_pair: 5,
            per_source: 30,
            per_email: 50,
            register_per_source_per_hour: 20,
        }
    }
}

/// Where account deletion reaches the other services.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeletionConfig {
    /// pilot-catalog's gRPC URL.
    pub catalog_url: String,
    /// executor's gRPC URL.
    pub executor_url: String,
    /// credential-vault's gRPC URL.
    pub vault_url: String,
    /// How often unfinished deletions are retried in the background.
    #[serde(deserialize_with = "duration")]
    pub retry_interval: Duration,
    /// Timeout of each call.
    #[serde(deserialize_with = "duration")]
    pub call_timeout: Duration,
}

impl Default for DeletionConfig {
    fn default() -> Self {
        Self {
            catalog_url: "http://127.0.0.1:50052".into(),
            executor_url: "http://127.0.0.1:50054".into(),
            vault_url: "http://127.0.0.1:50053".into(),
            retry_interval: Duration::from_secs(30),
            call_timeout: Duration::from_secs(30),
        }
    }
}

/// Notices about the account (password changed, account deleted), sent through
/// the server's Resend key when one is configured; skipped (and logged) otherwise.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationsConfig {
    /// The server's Resend API key.
    pub resend_api_key: Option<SecretString>,
    /// Resend's API.
    pub resend_base_url: String,
    /// Sender, e.g. `BizOps Pilot <no-reply@bizopspilot.com>`.
    pub from: String,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            resend_api_key: None,
            resend_base_url: "https://api.resend.com".into(),
            from: "BizOps Pilot <no-reply@bizopspilot.com>".into(),
        }
    }
}
