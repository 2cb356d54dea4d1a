//! Configuration of the credential vault (defaults → file → `BIZOPS_*` env).

use std::{net::SocketAddr, time::Duration};

use bizops_authn::AuthConfig;
use bizops_config::{DatabaseConfig, KeyringConfig, LogConfig, Renamed, duration, string_list};
use serde::Deserialize;

/// The service name: OpenTelemetry `service.name`, database roles (`bizops_vault`,
/// `bizops_vault_system`) and the audience of service tokens sent to the vault.
pub const SERVICE_NAME: &str = "vault";
/// The gRPC service name in health checks.
pub const GRPC_SERVICE: &str = "bizops.vault.v1.VaultService";

/// Everything the vault reads from its configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VaultConfig {
    /// gRPC listen address (`BIZOPS_GRPC_ADDR`).
    pub grpc_addr: SocketAddr,
    /// Prometheus `/metrics` listen address (`BIZOPS_METRICS_ADDR`).
    pub metrics_addr: SocketAddr,
    /// Log format and filter (`BIZOPS_LOG__*`).
    pub log: LogConfig,
    /// Postgres URLs per role and pool sizes (`BIZOPS_DATABASE__*`).
    pub database: DatabaseConfig,
    /// Session verification and trusted callers (`BIZOPS_AUTH__*`).
    pub auth: AuthConfig,
    /// identity's gRPC URL (`BIZOPS_IDENTITY_URL`): session keys come from its JWKS.
    /// Unset: only `BIZOPS_AUTH__SESSION_PUBLIC_KEYS` verify sessions.
    pub identity_url: Option<String>,
    /// The key-encryption-key ring (`BIZOPS_KEYS__*`).
    pub keys: KeysConfig,
    /// Connector validation and live checks (`BIZOPS_CONNECTORS__*`).
    pub connectors: ConnectorsConfig,
    /// Per-owner limits (`BIZOPS_LIMITS__*`).
    pub limits: LimitsConfig,
    /// Key rotation jobs (`BIZOPS_ROTATION__*`).
    pub rotation: RotationConfig,
    /// Service identities allowed to call StartKeyRotation, GetKeyRotation and
    /// SetMinDecryptionVersion (`BIZOPS_KEY_ADMINS`, comma-separated).
    #[serde(deserialize_with = "string_list")]
    pub key_admins: Vec<String>,
    /// How long a graceful shutdown waits for in-flight RPCs.
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace: Duration,
    /// How long a shutdown keeps serving while reporting NOT_SERVING.
    #[serde(deserialize_with = "duration")]
    pub shutdown_drain: Duration,
}

impl bizops_runtime::cli::ServiceConfig for VaultConfig {
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

impl Default for VaultConfig {
    fn default() -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50053)),
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], 9104)),
            log: LogConfig::default(),
            database: DatabaseConfig::default(),
            auth: AuthConfig::default(),
            identity_url: None,
            keys: KeysConfig::default(),
            connectors: ConnectorsConfig::default(),
            limits: LimitsConfig::default(),
            rotation: RotationConfig::default(),
            key_admins: vec!["ops".into()],
            shutdown_grace: Duration::from_secs(20),
            shutdown_drain: Duration::from_secs(3),
        }
    }
}

/// The KEK keyring, in the keyring format every service uses: key-encryption keys
/// `<version>:<base64 of 32 bytes>` (`BIZOPS_KEYS__KEYRING`, comma-separated in env;
/// `credential-vault keygen --aes` prints a key), versions 1, 2, …, and the version
/// new data keys are wrapped under (`BIZOPS_KEYS__ACTIVE`, required, in the
/// keyring). The service refuses to start without them; it never makes one up.
pub type KeysConfig = KeyringConfig<u32>;

/// Keys renamed so that every service spells a setting alike; the old names still
/// work and are logged as deprecated.
pub const RENAMED: &[Renamed] =
    &[bizops_authn::RENAMED_IDENTITY_URL, Renamed { old: "keys.active_version", new: "keys.active" }];

/// Connector validation and the live checks of TestCredential. Provider URLs are
/// configuration, so tests point them at a fake.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectorsConfig {
    /// Hosts a Slack incoming-webhook URL may point at (exact, case-insensitive).
    #[serde(deserialize_with = "string_list")]
    pub slack_allowed_hosts: Vec<String>,
    /// Slack webhook URLs must use https.
    pub slack_require_https: bool,
    /// Resend API base URL.
    pub resend_base_url: String,
    /// Anthropic API base URL.
    pub anthropic_base_url: String,
    /// Time limit of one live check (connect + request + response).
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
}

impl Default for ConnectorsConfig {
    fn default() -> Self {
        Self {
            slack_allowed_hosts: vec!["hooks.slack.com".into()],
            slack_require_https: true,
            resend_base_url: "https://api.resend.com".into(),
            anthropic_base_url: "https://api.anthropic.com".into(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Per-owner limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest credential value, in bytes.
    pub max_value_bytes: usize,
    /// Most credentials one owner may store.
    pub max_credentials_per_owner: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self { max_value_bytes: 8 * 1024, max_credentials_per_owner: 100 }
    }
}

/// Key rotation jobs.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RotationConfig {
    /// Pause between two batches, to keep an online rotation gentle on the database.
    #[serde(deserialize_with = "duration")]
    pub batch_pause: Duration,
    /// How often a replica looks for a running job nobody works on (e.g. after a
    /// crash of the replica that ran it).
    #[serde(deserialize_with = "duration")]
    pub poll_interval: Duration,
    /// How long each batch holds its transaction open (the job's row locked)
    /// after reading its rows and before writing the keys it rewrapped. Zero (the
    /// default) in production: it exists so tests can kill or stop a replica, or
    /// change a row, in the middle of a batch.
    #[serde(deserialize_with = "duration")]
    pub batch_hold: Duration,
}

impl Default for RotationConfig {
    fn default() -> Self {
        Self {
            batch_pause: Duration::from_millis(10),
            poll_interval: Duration::from_secs(30),
            batch_hold: Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use bizops_config::secret_list;
    use secrecy::{ExposeSecret as _, SecretString};

    use super::*;

    #[test]
    fn keyring_reads_a_comma_separated_env_value_and_a_toml_list() {
        #[derive(Deserialize)]
        struct Probe {
            #[serde(deserialize_with = "secret_list")]
            keys: Vec<SecretString>,
        }
        let p: Probe = serde_json::from_str(r#"{"keys": " 1:AAAA , 2:BBBB,,"}"#).unwrap();
        let got: Vec<&str> = p.keys.iter().map(|k| k.expose_secret()).collect();
        assert_eq!(got, ["1:AAAA", "2:BBBB"]);
        let p: Probe = serde_json::from_str(r#"{"keys": ["1:AAAA"]}"#).unwrap();
        assert_eq!(p.keys.len(), 1);
        let err = serde_json::from_str::<Probe>(r#"{"keys": 12345678}"#).err().unwrap().to_string();
        assert!(!err.contains("12345678"), "{err}");
    }

    #[test]
    fn old_names_still_work_and_are_reported() {
        let old = [
            ("BIZOPS_AUTH__IDENTITY_URL", "http://identity:50051"),
            ("BIZOPS_KEYS__KEYRING", "1:AAAA,2:BBBB"),
            ("BIZOPS_KEYS__ACTIVE_VERSION", "2"),
        ];
        let loaded = bizops_config::from_vars::<VaultConfig, _, _, _>(old, RENAMED).unwrap();
        assert_eq!(loaded.config.identity_url.as_deref(), Some("http://identity:50051"));
        assert_eq!(loaded.config.keys.active, Some(2));
        assert_eq!(loaded.deprecated.len(), 2);
        assert!(
            loaded.deprecated[1].to_string().contains("BIZOPS_KEYS__ACTIVE_VERSION: use BIZOPS_KEYS__ACTIVE")
        );
    }

    #[test]
    fn defaults_are_the_documented_ones_and_debug_hides_keys() {
        let mut c = VaultConfig::default();
        assert_eq!(c.grpc_addr.port(), 50053);
        assert_eq!(c.metrics_addr.port(), 9104);
        assert_eq!(c.key_admins, ["ops"]);
        assert_eq!(c.connectors.slack_allowed_hosts, ["hooks.slack.com"]);
        assert!(c.connectors.slack_require_https);
        assert_eq!(c.limits.max_value_bytes, 8192);
        assert_eq!(c.limits.max_credentials_per_owner, 100);
        assert!(c.rotation.batch_hold.is_zero(), "no test pause in production");
        c.keys.keyring = vec![SecretString::from("1:c2VjcmV0LWtleS1tYXRlcmlhbA==")];
        assert!(!format!("{c:?}").contains("c2VjcmV0"));
    }
}
