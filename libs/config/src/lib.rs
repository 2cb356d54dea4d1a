//! Layered, typed configuration: built-in defaults, then an optional TOML file,
//! then `BIZOPS_*` environment variables (nested keys joined with `__`, e.g.
//! `BIZOPS_DATABASE__URL` sets `database.url`).
//!
//! Each service has one config struct that derives `Deserialize` with
//! `#[serde(default)]` and implements `Default`; [`load`] fills it. Secrets are
//! [`secrecy::SecretString`], whose `Debug` prints `[REDACTED]`.
#![forbid(unsafe_code)]

use std::{path::Path, time::Duration};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, de::DeserializeOwned};

/// Prefix of every configuration environment variable.
pub const ENV_PREFIX: &str = "BIZOPS_";
/// Environment variable naming the optional TOML file (read by the binaries' CLI).
pub const CONFIG_FILE_ENV: &str = "BIZOPS_CONFIG";
/// `BIZOPS_*` variables that belong to the project's tooling (scripts, tests, CI),
/// not to any service's configuration; they are ignored so they can never stop a
/// service from starting.
pub const RESERVED_ENV_PREFIXES: &[&str] = &["DEV_", "TEST_", "CI_", "BIN_", "BENCH_"];

/// Why configuration could not be loaded. The message names the key but never
/// echoes a value, so a malformed secret cannot end up in a log.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file given does not exist.
    #[error("configuration file {0} does not exist")]
    MissingFile(String),
    /// A key has the wrong type or an invalid value.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Loads `T`: defaults (from `T`'s serde defaults), then `file` when given, then the
/// `BIZOPS_*` environment.
pub fn load<T: DeserializeOwned>(file: Option<&Path>) -> Result<T, ConfigError> {
    figment(file)?.extract_lossy().map_err(|e| ConfigError::Invalid(describe(&e)))
}

/// The layered figment behind [`load`], for callers that add their own layers.
pub fn figment(file: Option<&Path>) -> Result<Figment, ConfigError> {
    let mut fig = Figment::new();
    if let Some(path) = file {
        if !path.exists() {
            return Err(ConfigError::MissingFile(path.display().to_string()));
        }
        fig = fig.merge(Toml::file_exact(path));
    }
    // Environment values are taken as strings, never guessed: a numeric-looking
    // secret stays a string, while `extract_lossy` still reads "8080" as a number
    // and "true" as a boolean where the field wants one.
    let env = Env::prefixed(ENV_PREFIX)
        .filter(|key| !RESERVED_ENV_PREFIXES.iter().any(|p| key.as_str().to_ascii_uppercase().starts_with(p)))
        .split("__")
        .ignore(&["CONFIG"]);
    for (key, value) in env.iter() {
        fig = fig.merge(Serialized::global(key.as_str(), value));
    }
    Ok(fig)
}

/// Describes a figment error by kind and key path, without the offending value.
fn describe(err: &figment::Error) -> String {
    use figment::error::Kind;
    let mut parts = Vec::new();
    for e in err.clone() {
        let key = if e.path.is_empty() { "<root>".to_owned() } else { e.path.join(".") };
        let what = match &e.kind {
            Kind::InvalidType(actual, expected) => format!("expected {expected}, found {}", kind_of(actual)),
            Kind::InvalidValue(_, expected) => format!("invalid value, expected {expected}"),
            Kind::MissingField(field) => format!("missing field `{field}`"),
            Kind::UnknownField(field, _) => format!("unknown field `{field}`"),
            Kind::UnknownVariant(_, expected) => format!("unknown variant, expected one of {expected:?}"),
            Kind::Message(m) => m.clone(),
            Kind::InvalidLength(len, expected) => format!("invalid length {len}, expected {expected}"),
            _ => "invalid value".to_owned(),
        };
        let source = e.metadata.as_ref().map(|m| format!(" (from {})", m.name)).unwrap_or_default();
        parts.push(format!("{key}: {what}{source}"));
    }
    parts.join("; ")
}

/// The type of a value, never the value itself (it may be a secret).
fn kind_of(actual: &figment::error::Actual) -> &'static str {
    use figment::error::Actual as A;
    match actual {
        A::Bool(_) => "a boolean",
        A::Unsigned(_) | A::Signed(_) | A::Float(_) => "a number",
        A::Char(_) | A::Str(_) => "a string",
        A::Bytes(_) => "bytes",
        A::Seq => "a list",
        A::Map => "a table",
        A::Unit | A::Option => "nothing",
        _ => "another type",
    }
}

/// Deserializes a duration given in whole seconds (`90`) or with a unit suffix
/// (`"250ms"`, `"90s"`, `"15m"`, `"2h"`, `"7d"`).
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
    }
}

/// Deserializes a list given as a sequence (TOML) or as a comma-separated string
/// (an environment variable): `BIZOPS_X="a, b"` → `["a", "b"]`.
pub fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::List(l) => l,
        Raw::Text(t) => t.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
    })
}

/// Like [`string_list`], for secrets (e.g. a keyring of `<id>:<key>` entries):
/// each entry goes straight into a `SecretString`, and errors never echo a value.
pub fn secret_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SecretString>, D::Error> {
    use secrecy::ExposeSecret as _;
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<SecretString>),
        Text(SecretString),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::List(list) => list,
        Raw::Text(text) => text
            .expose_secret()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(SecretString::from)
            .collect(),
    })
}

/// Parses `"250ms"`, `"90s"`, `"15m"`, `"2h"`, `"7d"` or a bare number of seconds.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(bizops_config::parse_duration("15m"), Ok(Duration::from_secs(900)));
/// assert_eq!(bizops_config::parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert!(bizops_config::parse_duration("soon").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| "not a duration like 90s, 15m, 2h or 7d".to_owned())?;
    let secs = |mult: u64| {
        n.checked_mul(mult).map(Duration::from_secs).ok_or_else(|| "duration too large".to_owned())
    };
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86_400),
        _ => Err("unknown duration unit (use ms, s, m, h or d)".to_owned()),
    }
}

/// Log output settings shared by every service.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `json` (default; one object per line) or `pretty`.
    pub format: LogFormat,
    /// An `EnvFilter` directive, e.g. `info,sqlx=warn`.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Json, filter: "info,sqlx=warn,h2=warn,tower=warn,hyper=warn".into() }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable, for a terminal.
    Pretty,
}

/// Postgres connection settings of a service: one URL per role (ARCHITECTURE.md,
/// Isolation). URLs may contain passwords, so they are secrets. Unset URLs default
/// to the local roles `scripts/dev-services` creates (see [`DatabaseConfig::url`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// The service role (NOBYPASSRLS): every user-scoped request.
    pub url: Option<SecretString>,
    /// The system role (BYPASSRLS): only the paths in the service's `system.rs`.
    pub system_url: Option<SecretString>,
    /// The migrator role: `migrate` only.
    pub migrate_url: Option<SecretString>,
    /// Pool size of the service role.
    pub max_connections: u32,
    /// Pool size of the system role.
    pub system_max_connections: u32,
    /// How long a request waits for a pooled connection.
    #[serde(deserialize_with = "duration")]
    pub acquire_timeout: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            system_url: None,
            migrate_url: None,
            max_connections: 16,
            system_max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// Which of a service's database roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbRole {
    /// `bizops_<svc>`
    Service,
    /// `bizops_<svc>_system`
    System,
    /// `bizops_migrator`
    Migrator,
}

impl DatabaseConfig {
    /// The URL for `role` of service `svc` (e.g. `"identity"`): the configured one,
    /// else the local default `postgres://bizops_<svc>…@127.0.0.1:5432/bizops?sslmode=disable`
    /// (loopback: TLS would only cost CPU; production URLs name their own `sslmode`).
    pub fn url(&self, svc: &str, role: DbRole) -> SecretString {
        let (configured, user) = match role {
            DbRole::Service => (&self.url, format!("bizops_{svc}")),
            DbRole::System => (&self.system_url, format!("bizops_{svc}_system")),
            DbRole::Migrator => (&self.migrate_url, "bizops_migrator".to_owned()),
        };
        configured.clone().unwrap_or_else(|| {
            SecretString::from(format!("postgres://{user}@127.0.0.1:5432/bizops?sslmode=disable"))
        })
    }
}

#[cfg(test)]
mod tests {
    // figment's Jail API returns its large error type; that is not ours to shrink.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::result_large_err)]
    use secrecy::ExposeSecret;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Sample {
        name: String,
        port: u16,
        token: SecretString,
        #[serde(deserialize_with = "duration")]
        timeout: Duration,
        nested: Nested,
        #[serde(deserialize_with = "string_list")]
        list: Vec<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Nested {
        flag: bool,
        url: String,
    }

    // A section's own Default supplies its unset keys (serde semantics), so every
    // section struct carries its real defaults.
    impl Default for Nested {
        fn default() -> Self {
            Self { flag: false, url: "postgres://default".into() }
        }
    }

    impl Default for Sample {
        fn default() -> Self {
            Self {
                name: "default".into(),
                port: 1,
                token: SecretString::from("default-token"),
                timeout: Duration::from_secs(5),
                nested: Nested::default(),
                list: vec!["a".into()],
            }
        }
    }

    #[test]
    fn defaults_then_file_then_env() {
        figment::Jail::expect_with(|jail| {
            // Defaults only.
            let s: Sample = load(None).expect("defaults");
            assert_eq!((s.name.as_str(), s.port), ("default", 1));

            // The file overrides defaults, field by field.
            jail.create_file(
                "c.toml",
                "name = \"file\"\nport = 2\ntimeout = \"90s\"\n[nested]\nflag = true\n",
            )?;
            let s: Sample = load(Some(Path::new("c.toml"))).expect("file");
            assert_eq!((s.name.as_str(), s.port, s.timeout), ("file", 2, Duration::from_secs(90)));
            assert!(s.nested.flag);
            assert_eq!(s.nested.url, "postgres://default", "unset nested keys keep their default");

            // The environment overrides the file; `__` reaches nested keys.
            jail.set_env("BIZOPS_PORT", "3");
            jail.set_env("BIZOPS_NESTED__URL", "postgres://env");
            jail.set_env("BIZOPS_TOKEN", "12345");
            jail.set_env("BIZOPS_CONFIG", "ignored.toml");
            // Tooling variables are not configuration and never fail a service.
            jail.set_env("BIZOPS_DEV_NATS_PORT", "4224");
            jail.set_env("BIZOPS_TEST_ADMIN_DATABASE_URL", "postgres://x");
            let s: Sample = load(Some(Path::new("c.toml"))).expect("env");
            assert_eq!((s.name.as_str(), s.port), ("file", 3));
            assert_eq!(s.nested.url, "postgres://env");
            assert_eq!(s.token.expose_secret(), "12345", "numeric-looking secrets stay strings");
            assert_eq!(s.list, vec!["a".to_owned()]);
            jail.set_env("BIZOPS_LIST", "x, y,z");
            jail.set_env("BIZOPS_NESTED__FLAG", "false");
            let s: Sample = load(Some(Path::new("c.toml"))).expect("env list");
            assert_eq!(s.list, vec!["x", "y", "z"]);
            assert!(!s.nested.flag, "env beats file for booleans too");
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_key_but_never_the_value() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("BIZOPS_PORT", "not-a-port-hunter2");
            let err = load::<Sample>(None).expect_err("bad port");
            let text = err.to_string();
            assert!(text.contains("port"), "{text}");
            assert!(!text.contains("hunter2"), "{text}");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.set_env("BIZOPS_NO_SUCH_KEY", "x");
            let err = load::<Sample>(None).expect_err("unknown key");
            assert!(err.to_string().contains("no_such_key"), "{err}");
            Ok(())
        });
        let err = load::<Sample>(Some(Path::new("/nonexistent/bizops.toml"))).expect_err("missing file");
        assert!(matches!(err, ConfigError::MissingFile(_)));
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let s = Sample::default();
        let text = format!("{s:?}");
        assert!(!text.contains("default-token"), "{text}");
    }

    #[test]
    fn secret_lists_read_env_strings_and_toml_lists() {
        #[derive(Deserialize)]
        struct Probe {
            #[serde(deserialize_with = "secret_list")]
            keys: Vec<SecretString>,
        }
        figment::Jail::expect_with(|jail| {
            jail.set_env("BIZOPS_KEYS", " 1:AAAA , 2:BBBB,,");
            let p: Probe = load(None).expect("env");
            let got: Vec<&str> = p.keys.iter().map(|k| k.expose_secret()).collect();
            assert_eq!(got, ["1:AAAA", "2:BBBB"]);
            jail.create_file("k.toml", "keys = [\"1:CCCC\"]")?;
            jail.clear_env();
            let p: Probe = load(Some(Path::new("k.toml"))).expect("toml");
            assert_eq!(p.keys.len(), 1);
            Ok(())
        });
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("42"), Ok(Duration::from_secs(42)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn database_urls_default_per_service_and_role() {
        let db = DatabaseConfig::default();
        assert_eq!(
            db.url("identity", DbRole::Service).expose_secret(),
            "postgres://bizops_identity@127.0.0.1:5432/bizops?sslmode=disable"
        );
        assert_eq!(
            db.url("identity", DbRole::System).expose_secret(),
            "postgres://bizops_identity_system@127.0.0.1:5432/bizops?sslmode=disable"
        );
        assert_eq!(
            db.url("vault", DbRole::Migrator).expose_secret(),
            "postgres://bizops_migrator@127.0.0.1:5432/bizops?sslmode=disable"
        );
        let set = DatabaseConfig { url: Some("postgres://x".into()), ..Default::default() };
        assert_eq!(set.url("identity", DbRole::Service).expose_secret(), "postgres://x");
    }
}
