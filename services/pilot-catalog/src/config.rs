//! Configuration of pilot-catalog (defaults → file → `BIZOPS_*` env).

use std::{net::SocketAddr, time::Duration};

use bizops_authn::AuthConfig;
use bizops_bus::NatsConfig;
use bizops_config::{DatabaseConfig, KeyringConfig, LogConfig, Renamed, duration};
use serde::Deserialize;

/// Service name: DB roles `bizops_catalog*`, service-token identity, telemetry.
pub const SERVICE_NAME: &str = "catalog";
/// The gRPC service name in health checks.
pub const GRPC_SERVICE: &str = "bizops.catalog.v1.CatalogService";

/// Everything pilot-catalog reads from its configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogConfig {
    /// gRPC listen address (`BIZOPS_GRPC_ADDR`).
    pub grpc_addr: SocketAddr,
    /// Prometheus `/metrics` listen address (`BIZOPS_METRICS_ADDR`).
    pub metrics_addr: SocketAddr,
    /// Log format and filter.
    pub log: LogConfig,
    /// Postgres URLs per role (`BIZOPS_DATABASE__*`).
    pub database: DatabaseConfig,
    /// Session and service tokens (`BIZOPS_AUTH__*`).
    pub auth: AuthConfig,
    /// identity's gRPC URL (`BIZOPS_IDENTITY_URL`): session keys come from its JWKS.
    /// Unset: only `BIZOPS_AUTH__SESSION_PUBLIC_KEYS` verify sessions.
    pub identity_url: Option<String>,
    /// The keys that encrypt stored webhook secrets (`BIZOPS_KEYS__KEYRING`,
    /// `BIZOPS_KEYS__ACTIVE`): `<id>:<base64 of 32 bytes>` entries, all of which
    /// decrypt; `active` names the one that encrypts (unset: the first). Required.
    pub keys: KeyringConfig<String>,
    /// NATS (`BIZOPS_NATS__*`), for the pilot-deleted events.
    pub nats: NatsConfig,
    /// Webhook secrets and verification (`BIZOPS_WEBHOOKS__*`).
    pub webhooks: WebhooksConfig,
    /// Content limits (`BIZOPS_LIMITS__*`).
    pub limits: LimitsConfig,
    /// After SIGTERM, keep serving while health reports NOT_SERVING.
    #[serde(deserialize_with = "duration")]
    pub shutdown_drain: Duration,
    /// Then how long in-flight RPCs may take.
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace: Duration,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50052)),
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], 9103)),
            log: LogConfig::default(),
            database: DatabaseConfig::default(),
            auth: AuthConfig::default(),
            identity_url: None,
            keys: KeyringConfig::default(),
            nats: NatsConfig::default(),
            webhooks: WebhooksConfig::default(),
            limits: LimitsConfig::default(),
            shutdown_drain: Duration::from_secs(3),
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

/// Keys renamed so that every service spells a setting alike; the old names still
/// work and are logged as deprecated.
pub const RENAMED: &[Renamed] =
    &[bizops_authn::RENAMED_IDENTITY_URL, Renamed { old: "webhooks.encryption_keys", new: "keys.keyring" }];

impl bizops_runtime::cli::ServiceConfig for CatalogConfig {
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

/// Webhook secrets: how they are verified and rotated (the keys that encrypt
/// them are the service's `keys`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// How long the previous secret keeps working after a rotation.
    #[serde(deserialize_with = "duration")]
    pub rotation_grace: Duration,
    /// Accepted clock difference of `webhook-timestamp`, either way.
    #[serde(deserialize_with = "duration")]
    pub timestamp_tolerance: Duration,
    /// How long decrypted secrets stay cached for VerifyWebhook (invalidated
    /// locally on rotation, update and deletion).
    #[serde(deserialize_with = "duration")]
    pub cache_ttl: Duration,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            rotation_grace: Duration::from_secs(24 * 3600),
            timestamp_tolerance: Duration::from_secs(5 * 60),
            cache_ttl: Duration::from_secs(5),
        }
    }
}

/// Content limits, each answered with a clear error.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Steps per Pilot.
    pub max_steps: usize,
    /// Size of a Pilot's content (and of an import document), in bytes.
    pub max_document_bytes: usize,
    /// Pilots per owner.
    pub max_pilots: u32,
    /// Schedules per owner, over all their Pilots.
    pub max_schedules: u32,
    /// Schedule ticks of one owner that fire within one minute; ticks beyond are
    /// not fired (counted in `catalog_schedule_ticks_dropped_total`).
    pub schedule_ticks_per_minute: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_steps: bizops_pilot_spec::limits::MAX_STEPS,
            max_document_bytes: 256 * 1024,
            max_pilots: 500,
            max_schedules: 100,
            schedule_ticks_per_minute: 60,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn old_names_still_work_and_are_reported() {
        let old = [
            ("BIZOPS_AUTH__IDENTITY_URL", "http://identity:50051"),
            ("BIZOPS_WEBHOOKS__ENCRYPTION_KEYS", "k1:AAAA,k2:BBBB"),
            ("BIZOPS_WEBHOOKS__CACHE_TTL", "2s"),
        ];
        let loaded = bizops_config::from_vars::<CatalogConfig, _, _, _>(old, RENAMED).unwrap();
        assert_eq!(loaded.config.identity_url.as_deref(), Some("http://identity:50051"));
        assert_eq!(loaded.config.keys.keyring.len(), 2);
        assert_eq!(loaded.config.keys.active, None);
        assert_eq!(loaded.config.webhooks.cache_ttl, Duration::from_secs(2));
        assert_eq!(loaded.deprecated.len(), 2);
        assert!(loaded.deprecated[1].to_string().contains("use BIZOPS_KEYS__KEYRING"));
    }
}
