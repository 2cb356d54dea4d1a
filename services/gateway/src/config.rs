//! Configuration of the gateway (defaults → file → `BIZOPS_*` env).

use std::{net::SocketAddr, time::Duration};

use bizops_authn::AuthConfig;
use bizops_bus::NatsConfig;
use bizops_config::{LogConfig, Renamed, duration};
use secrecy::SecretString;
use serde::Deserialize;

/// Service name: service-token identity, telemetry, NATS client name.
pub const SERVICE_NAME: &str = "gateway";

/// The longest the gateway trusts a VerifySession answer (ARCHITECTURE.md, Session).
pub const MAX_SESSION_CACHE_TTL: Duration = Duration::from_secs(5);

/// Everything the gateway reads from its configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Public HTTP listen address (`BIZOPS_HTTP_ADDR`).
    pub http_addr: SocketAddr,
    /// Prometheus `/metrics` listen address (`BIZOPS_METRICS_ADDR`).
    pub metrics_addr: SocketAddr,
    /// Log format and filter.
    pub log: LogConfig,
    /// This service's key (`BIZOPS_AUTH__SERVICE_KEY` = `gateway:<base64 seed>`).
    /// The gateway verifies sessions with identity's VerifySession, so the other
    /// `auth` keys are not used.
    pub auth: AuthConfig,
    /// identity's gRPC URL (`BIZOPS_IDENTITY_URL`).
    pub identity_url: String,
    /// pilot-catalog's gRPC URL (`BIZOPS_CATALOG_URL`).
    pub catalog_url: String,
    /// credential-vault's gRPC URL (`BIZOPS_VAULT_URL`).
    pub vault_url: String,
    /// executor's gRPC URL (`BIZOPS_EXECUTOR_URL`).
    pub executor_url: String,
    /// NATS (`BIZOPS_NATS__*`): triggers are published here, live run events read.
    pub nats: NatsConfig,
    /// The origin browsers see (`scheme://host[:port]`, no path): state-changing
    /// requests must come from it, and webhook URLs are shown under it.
    pub public_origin: String,
    /// Plain-http development only: the cookie loses `Secure` and the `__Host-`
    /// prefix (`bizops_session`). Never in production.
    pub insecure_dev_cookies: bool,
    /// Key of the CSRF synchronizer tokens: base64 of 32 bytes. Required unless
    /// `insecure_dev_cookies`, where one is derived from the service key.
    pub csrf_key: Option<SecretString>,
    /// Send `Strict-Transport-Security`. Unset: on exactly when `public_origin`
    /// is `https://…` (the browser only honours it over TLS anyway); `true` or
    /// `false` overrides that.
    pub hsts: Option<bool>,
    /// Behind a reverse proxy: the header holding the client address (e.g.
    /// `x-forwarded-for`; its last entry is used). Unset: the TCP peer address.
    pub client_ip_header: Option<String>,
    /// Request size limits (`BIZOPS_LIMITS__*`).
    pub limits: LimitsConfig,
    /// Rate limits (`BIZOPS_RATE_LIMITS__*`).
    pub rate_limits: RateLimitsConfig,
    /// Timeouts and retries (`BIZOPS_TIMEOUTS__*`).
    pub timeouts: TimeoutsConfig,
    /// How long a VerifySession answer is reused (at most 5 s).
    #[serde(deserialize_with = "duration")]
    pub session_cache_ttl: Duration,
    /// After SIGTERM, keep serving while `/readyz` reports not ready.
    #[serde(deserialize_with = "duration")]
    pub shutdown_drain: Duration,
    /// Then how long in-flight requests may take.
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], 9101)),
            log: LogConfig::default(),
            auth: AuthConfig::default(),
            identity_url: "http://127.0.0.1:50051".into(),
            catalog_url: "http://127.0.0.1:50052".into(),
            vault_url: "http://127.0.0.1:50053".into(),
            executor_url: "http://127.0.0.1:50054".into(),
            nats: NatsConfig::default(),
            public_origin: "http://127.0.0.1:8080".into(),
            insecure_dev_cookies: false,
            csrf_key: None,
            hsts: None,
            client_ip_header: None,
            limits: LimitsConfig::default(),
            rate_limits: RateLimitsConfig::default(),
            timeouts: TimeoutsConfig::default(),
            session_cache_ttl: MAX_SESSION_CACHE_TTL,
            shutdown_drain: Duration::from_secs(3),
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

/// Keys renamed so that every service spells a setting alike; the old names still
/// work and are logged as deprecated (`BIZOPS_AUTH__IDENTITY_URL`, which the gateway
/// used to ignore, now sets `identity_url`).
pub const RENAMED: &[Renamed] = &[bizops_authn::RENAMED_IDENTITY_URL];

impl bizops_runtime::cli::ServiceConfig for GatewayConfig {
    const NAME: &'static str = SERVICE_NAME;
    const HEALTH_SERVICE: &'static str = "gateway";
    const RENAMED: &'static [Renamed] = RENAMED;

    fn log(&self) -> &LogConfig {
        &self.log
    }

    fn database(&self) -> Option<&bizops_config::DatabaseConfig> {
        None
    }

    fn grpc_addr(&self) -> SocketAddr {
        // The gateway has no gRPC server; `healthcheck` asks `/readyz` instead.
        self.http_addr
    }

    fn http_health_addr(&self) -> Option<SocketAddr> {
        Some(self.http_addr)
    }
}

/// Request size limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest webhook body in bytes (413 beyond).
    pub webhook_body_bytes: usize,
    /// Largest JSON API or form body in bytes (413 beyond).
    pub api_body_bytes: usize,
    /// Requests handled at once by this replica; beyond, requests are shed at
    /// once with 503 and `Retry-After` (health probes are never shed). Open live
    /// views count only while they start.
    pub max_in_flight: usize,
    /// Live run views (SSE) one session may have open at once (429 beyond).
    pub live_views_per_session: usize,
    /// Live run views this replica serves at once (503 beyond).
    pub live_views: usize,
    /// Concurrent HTTP/2 streams per connection.
    pub http2_max_streams: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            webhook_body_bytes: 1024 * 1024,
            api_body_bytes: 1024 * 1024,
            max_in_flight: 1024,
            live_views_per_session: 8,
            live_views: 4096,
            http2_max_streams: 64,
        }
    }
}

/// One rate: `per_minute` requests on average, bursts of up to `burst`.
/// `per_minute = 0` turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rate {
    /// Sustained requests per minute.
    pub per_minute: u32,
    /// Requests allowed at once before the rate applies.
    pub burst: u32,
}

impl Default for Rate {
    fn default() -> Self {
        Self { per_minute: 60, burst: 10 }
    }
}

impl Rate {
    /// A rate of `per_minute` with bursts of `burst`.
    pub const fn new(per_minute: u32, burst: u32) -> Self {
        Self { per_minute, burst }
    }
}

/// Rate limits (429 with `Retry-After`), each per gateway replica.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitsConfig {
    /// Sign-in and sign-up attempts per client address (IPv6 per /64).
    pub login_per_source: Rate,
    /// Removed (a per-email budget let anyone lock an account out; identity
    /// throttles per email and address instead). Still accepted so an old
    /// configuration starts; a warning says it is ignored.
    pub login_per_email: Option<Rate>,
    /// API and dashboard requests per session.
    pub api_per_session: Rate,
    /// Webhook requests per Pilot.
    pub webhook_per_pilot: Rate,
    /// Webhook requests per client address (IPv6 per /64).
    pub webhook_per_source: Rate,
    /// Session cookies identity refuses, per client address (IPv6 per /64); once
    /// a source has had more than this, further unknown cookies from there get
    /// 429 without asking identity (cached answers still work).
    pub invalid_session_per_source: Rate,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        Self {
            login_per_source: Rate::new(30, 10),
            login_per_email: None,
            api_per_session: Rate::new(1200, 120),
            webhook_per_pilot: Rate::new(600, 100),
            webhook_per_source: Rate::new(1200, 200),
            invalid_session_per_source: Rate::new(60, 30),
        }
    }
}

/// Timeouts of the calls the gateway makes.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutsConfig {
    /// Connecting to a backend.
    #[serde(deserialize_with = "duration")]
    pub connect: Duration,
    /// One gRPC call (each attempt).
    #[serde(deserialize_with = "duration")]
    pub rpc: Duration,
    /// Extra attempts of a call that failed with UNAVAILABLE.
    pub rpc_retries: u32,
    /// Waiting for JetStream to acknowledge a trigger.
    #[serde(deserialize_with = "duration")]
    pub publish: Duration,
    /// The longest a live run view (SSE) stays open.
    #[serde(deserialize_with = "duration")]
    pub live_view: Duration,
    /// Reading a request's headers (HTTP/1); a connection slower than this is closed.
    #[serde(deserialize_with = "duration")]
    pub header_read: Duration,
    /// Producing a response, body read included (a live view's stream is not
    /// counted: it ends by `live_view`); 504 beyond.
    #[serde(deserialize_with = "duration")]
    pub request: Duration,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(3),
            rpc: Duration::from_secs(10),
            rpc_retries: 2,
            publish: Duration::from_secs(5),
            live_view: Duration::from_secs(3600),
            header_read: Duration::from_secs(10),
            request: Duration::from_secs(30),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn old_names_still_work_and_are_reported() {
        let old = [("BIZOPS_AUTH__IDENTITY_URL", "http://identity:50051")];
        let loaded = bizops_config::from_vars::<GatewayConfig, _, _, _>(old, RENAMED).unwrap();
        assert_eq!(loaded.config.identity_url, "http://identity:50051");
        assert_eq!(loaded.deprecated.len(), 1);
    }
}
