//! Configuration of the identity service (defaults → file → `BIZOPS_*` env).

use std::{net::SocketAddr, time::Duration};

use bizops_config::{DatabaseConfig, LogConfig, Renamed, duration, string_list};
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
    /// Session signing keys (`BIZOPS_KEYS__*`).
    pub keys: KeysConfig,
    /// identity's own service key and the services that call it (`BIZOPS_AUTH__*`,
    /// the names every service uses).
    pub auth: ServiceAuthConfig,
    /// pilot-catalog's gRPC URL (`BIZOPS_CATALOG_URL`): account deletion.
    pub catalog_url: String,
    /// executor's gRPC URL (`BIZOPS_EXECUTOR_URL`): account deletion.
    pub executor_url: String,
    /// credential-vault's gRPC URL (`BIZOPS_VAULT_URL`): account deletion.
    pub vault_url: String,
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

/// Keys renamed so that every service spells a setting alike; the old names still
/// work and are logged as deprecated.
pub const RENAMED: &[Renamed] = &[
    Renamed { old: "service_auth.service_key", new: "auth.service_key" },
    Renamed { old: "service_auth.trusted_callers", new: "auth.trusted_callers" },
    Renamed { old: "service_auth.trust_forwarded_source_from", new: "auth.trust_forwarded_source_from" },
    Renamed { old: "deletion.catalog_url", new: "catalog_url" },
    Renamed { old: "deletion.executor_url", new: "executor_url" },
    Renamed { old: "deletion.vault_url", new: "vault_url" },
];

impl bizops_runtime::cli::ServiceConfig for IdentityConfig {
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
            auth: ServiceAuthConfig::default(),
            catalog_url: "http://127.0.0.1:50052".into(),
            executor_url: "http://127.0.0.1:50054".into(),
            vault_url: "http://127.0.0.1:50053".into(),
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
    /// Hashes computed at once; 0 = as many as fit in `memory_mib` (one scrypt
    /// working set each, 128 MiB at the defaults), at most the CPU count.
    pub max_concurrent: usize,
    /// The service's memory, in MiB (the chart passes the container's limit); 0 =
    /// the cgroup's memory limit, else 512. 96 MiB of it are kept for everything else.
    pub memory_mib: u64,
    /// Hashes waiting for a turn; beyond, sign-ins and sign-ups are answered
    /// UNAVAILABLE at once (the caller tries again) instead of queueing without end.
    pub max_waiting: usize,
}

impl Default for ScryptConfig {
    fn default() -> Self {
        Self { log_n: 17, r: 8, p: 1, max_concurrent: 0, memory_mib: 0, max_waiting: 64 }
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
    /// Lifetime of the access tokens ExchangeToken mints (at most
    /// [`MAX_ACCESS_TTL`]): how long a service may still accept one after its
    /// session ended.
    #[serde(deserialize_with = "duration")]
    pub access_ttl: Duration,
}

/// Longest `BIZOPS_SESSION__ACCESS_TTL`: with the verifiers' 5 s leeway, an access
/// token is refused everywhere within 60 s of being minted.
pub const MAX_ACCESS_TTL: Duration = bizops_authn::MAX_ACCESS_TOKEN_LIFETIME;

impl SessionConfig {
    /// Refuses an access-token lifetime outside 1–55 s.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.access_ttl >= Duration::from_secs(1) && self.access_ttl <= MAX_ACCESS_TTL,
            "BIZOPS_SESSION__ACCESS_TTL: must be between 1 s and {} s",
            MAX_ACCESS_TTL.as_secs()
        );
        Ok(())
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            issuer: "bizops-identity".into(),
            audience: "bizops".into(),
            ttl: Duration::from_secs(12 * 3600),
            idle_timeout: Duration::from_secs(2 * 3600),
            last_seen_resolution: Duration::from_secs(60),
            access_ttl: MAX_ACCESS_TTL,
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

/// Account deletion across the services (their URLs are the service's
/// `catalog_url`, `executor_url` and `vault_url`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeletionConfig {
    /// How often unfinished deletions are retried in the background.
    #[serde(deserialize_with = "duration")]
    pub retry_interval: Duration,
    /// Timeout of each call.
    #[serde(deserialize_with = "duration")]
    pub call_timeout: Duration,
}

impl Default for DeletionConfig {
    fn default() -> Self {
        Self { retry_interval: Duration::from_secs(30), call_timeout: Duration::from_secs(30) }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use secrecy::ExposeSecret as _;

    use super::*;

    #[test]
    fn old_names_still_work_and_are_reported() {
        let old = [
            ("BIZOPS_SERVICE_AUTH__SERVICE_KEY", "identity:c2VlZA=="),
            ("BIZOPS_SERVICE_AUTH__TRUSTED_CALLERS", "gateway:AAAA"),
            ("BIZOPS_SERVICE_AUTH__TRUST_FORWARDED_SOURCE_FROM", "edge"),
            ("BIZOPS_DELETION__CATALOG_URL", "http://catalog:50052"),
            ("BIZOPS_DELETION__EXECUTOR_URL", "http://executor:50054"),
            ("BIZOPS_DELETION__VAULT_URL", "http://vault:50053"),
            ("BIZOPS_DELETION__RETRY_INTERVAL", "5s"),
        ];
        let loaded = bizops_config::from_vars::<IdentityConfig, _, _, _>(old, RENAMED).unwrap();
        let c = &loaded.config;
        assert_eq!(c.auth.service_key.as_ref().unwrap().expose_secret(), "identity:c2VlZA==");
        assert_eq!(c.auth.trusted_callers, ["gateway:AAAA"]);
        assert_eq!(c.auth.trust_forwarded_source_from, ["edge"]);
        assert_eq!(
            (c.catalog_url.as_str(), c.executor_url.as_str(), c.vault_url.as_str()),
            ("http://catalog:50052", "http://executor:50054", "http://vault:50053")
        );
        assert_eq!(c.deletion.retry_interval, Duration::from_secs(5), "the section keeps its other keys");
        assert_eq!(loaded.deprecated.len(), 6);
        let text: Vec<String> = loaded.deprecated.iter().map(ToString::to_string).collect();
        assert!(
            text[0].contains("BIZOPS_SERVICE_AUTH__SERVICE_KEY: use BIZOPS_AUTH__SERVICE_KEY"),
            "{text:?}"
        );
        assert!(!text.iter().any(|t| t.contains("c2VlZA")), "never the value: {text:?}");

        // The new names, alone, report nothing.
        let new = [("BIZOPS_AUTH__SERVICE_KEY", "identity:c2VlZA=="), ("BIZOPS_CATALOG_URL", "http://c:1")];
        let loaded = bizops_config::from_vars::<IdentityConfig, _, _, _>(new, RENAMED).unwrap();
        assert!(loaded.deprecated.is_empty());
        assert_eq!(loaded.config.catalog_url, "http://c:1");
    }
}
