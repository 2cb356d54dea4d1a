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
    Figment, Provider as _,
    providers::{Format, Serialized, Toml},
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
    Ok(load_renamed(file, &[])?.config)
}

/// Like [`load`], for a service whose configuration renamed some keys: an old name
/// in the file or the environment still works, and each one used is reported in
/// [`Loaded::deprecated`] for the caller to log once its telemetry is up.
pub fn load_renamed<T: DeserializeOwned>(
    file: Option<&Path>,
    renamed: &[Renamed],
) -> Result<Loaded<T>, ConfigError> {
    let env = std::env::vars_os()
        .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()));
    extract(file, env, renamed)
}

/// `T` from defaults and `vars` read as if they were the environment (`BIZOPS_*`
/// names, the same renames): how tests and tools build a service's configuration
/// from the env map a harness would give its process.
pub fn from_vars<T, I, K, V>(vars: I, renamed: &[Renamed]) -> Result<Loaded<T>, ConfigError>
where
    T: DeserializeOwned,
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    extract(None, vars.into_iter().map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned())), renamed)
}

fn extract<T: DeserializeOwned>(
    file: Option<&Path>,
    vars: impl Iterator<Item = (String, String)>,
    renamed: &[Renamed],
) -> Result<Loaded<T>, ConfigError> {
    let (fig, deprecated) = layers(file, vars, renamed)?;
    let config = fig.extract_lossy().map_err(|e| ConfigError::Invalid(describe(&e)))?;
    Ok(Loaded { config, deprecated })
}

/// The layered figment behind [`load`], for callers that add their own layers.
pub fn figment(file: Option<&Path>) -> Result<Figment, ConfigError> {
    let env = std::env::vars_os()
        .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()));
    Ok(layers(file, env, &[])?.0)
}

fn layers(
    file: Option<&Path>,
    vars: impl Iterator<Item = (String, String)>,
    renamed: &[Renamed],
) -> Result<(Figment, Vec<Deprecation>), ConfigError> {
    let mut deprecated = Vec::new();
    let mut fig = Figment::new();
    if let Some(path) = file {
        if !path.exists() {
            return Err(ConfigError::MissingFile(path.display().to_string()));
        }
        let file = Toml::file_exact(path);
        let data = file.data().map_err(|e| ConfigError::Invalid(describe(&e)))?;
        let mut renamed_data = figment::value::Map::new();
        for (profile, mut dict) in data {
            rename::in_dict(&mut dict, renamed, &mut deprecated);
            renamed_data.insert(profile, dict);
        }
        fig = fig.merge(rename::Provided { metadata: file.metadata(), data: renamed_data });
    }
    // Environment values are taken as strings, never guessed: a numeric-looking
    // secret stays a string, while `extract_lossy` still reads "8080" as a number
    // and "true" as a boolean where the field wants one.
    let env: Vec<(String, String)> =
        vars.filter_map(|(name, value)| Some((env_key(&name)?, value))).collect();
    for (key, value) in rename::in_env(env, renamed, &mut deprecated) {
        fig = fig.merge(Serialized::global(&key, value));
    }
    Ok((fig, deprecated))
}

/// The key path (`database.url`) of a `BIZOPS_*` variable (`BIZOPS_DATABASE__URL`),
/// or `None` for a variable that is not configuration: another prefix, the
/// tooling's reserved prefixes, or `BIZOPS_CONFIG` (the file's name).
fn env_key(name: &str) -> Option<String> {
    let name = name.trim();
    let rest = name
        .get(..ENV_PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(ENV_PREFIX))
        .map(|_| &name[ENV_PREFIX.len()..])?;
    let upper = rest.trim().to_ascii_uppercase();
    if upper == "CONFIG" || RESERVED_ENV_PREFIXES.iter().any(|p| upper.starts_with(p)) {
        return None;
    }
    let key = upper.replace("__", ".").to_ascii_lowercase();
    (!key.split('.').any(str::is_empty)).then_some(key)
}

/// The `BIZOPS_*` variable of a key path: `database.url` → `BIZOPS_DATABASE__URL`.
pub fn env_name(path: &str) -> String {
    format!("{ENV_PREFIX}{}", path.to_ascii_uppercase().replace('.', "__"))
}

/// A renamed configuration key: the old key path (`service_auth.service_key`,
/// i.e. `BIZOPS_SERVICE_AUTH__SERVICE_KEY`) is read as the new one
/// (`auth.service_key`), in a file and in the environment alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renamed {
    /// The deprecated key path.
    pub old: &'static str,
    /// The key path that replaces it.
    pub new: &'static str,
}

/// A configuration and the deprecated names it was given with.
#[derive(Debug)]
pub struct Loaded<T> {
    /// The configuration.
    pub config: T,
    /// Every deprecated name that was set (each once per source).
    pub deprecated: Vec<Deprecation>,
}

/// Where a deprecated name was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The TOML file.
    File,
    /// The environment.
    Env,
}

/// One deprecated name that was set. Its [`Display`](std::fmt::Display) says what
/// to use instead and never shows the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deprecation {
    /// The rename.
    pub renamed: Renamed,
    /// Where it was set.
    pub source: Source,
    /// The new name was set in the same source too, so the old one was ignored.
    pub ignored: bool,
}

impl Deprecation {
    /// Logs it as a warning (call once telemetry is initialised).
    pub fn warn(&self) {
        let (old, new) = self.names();
        tracing::warn!(deprecated = %old, replacement = %new, ignored = self.ignored, "{self}");
    }

    /// (old, new) as they are spelled in their source.
    fn names(&self) -> (String, String) {
        match self.source {
            Source::Env => (env_name(self.renamed.old), env_name(self.renamed.new)),
            Source::File => (self.renamed.old.to_owned(), self.renamed.new.to_owned()),
        }
    }
}

impl std::fmt::Display for Deprecation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (old, new) = self.names();
        let place = match self.source {
            Source::Env => "environment variable",
            Source::File => "configuration file key",
        };
        write!(f, "deprecated {place} {old}: use {new}")?;
        if self.ignored {
            write!(f, " ({new} is set too and wins; {old} is ignored)")?;
        }
        Ok(())
    }
}

mod rename {
    //! Applying [`Renamed`] to the file's data and to the environment's keys.
    use figment::{
        Metadata, Profile, Provider,
        value::{Dict, Map, Value},
    };

    use super::{Deprecation, Renamed, Source};

    /// Data already read (the renamed file), under the file's own metadata so
    /// errors still name the file.
    pub(super) struct Provided {
        pub(super) metadata: Metadata,
        pub(super) data: Map<Profile, Dict>,
    }

    impl Provider for Provided {
        fn metadata(&self) -> Metadata {
            self.metadata.clone()
        }

        fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
            Ok(self.data.clone())
        }
    }

    /// Moves every old key of `dict` to its new path (the new key wins when both are set).
    pub(super) fn in_dict(dict: &mut Dict, renamed: &[Renamed], out: &mut Vec<Deprecation>) {
        for r in renamed {
            let old: Vec<&str> = r.old.split('.').collect();
            let Some(value) = take(dict, &old) else { continue };
            let new: Vec<&str> = r.new.split('.').collect();
            let ignored = get(dict, &new).is_some();
            if !ignored {
                put(dict, &new, value);
            }
            out.push(Deprecation { renamed: *r, source: Source::File, ignored });
        }
    }

    /// Renames the environment's keys (the new name wins when both are set).
    pub(super) fn in_env(
        env: Vec<(String, String)>,
        renamed: &[Renamed],
        out: &mut Vec<Deprecation>,
    ) -> Vec<(String, String)> {
        let mut kept = Vec::with_capacity(env.len());
        for (key, value) in &env {
            let Some(r) = renamed.iter().find(|r| r.old == key) else {
                kept.push((key.clone(), value.clone()));
                continue;
            };
            let ignored = env.iter().any(|(k, _)| k == r.new);
            if !ignored {
                kept.push((r.new.to_owned(), value.clone()));
            }
            out.push(Deprecation { renamed: *r, source: Source::Env, ignored });
        }
        kept
    }

    fn get<'a>(dict: &'a Dict, path: &[&str]) -> Option<&'a Value> {
        let (last, parents) = path.split_last()?;
        let mut here = dict;
        for p in parents {
            here = here.get(*p)?.as_dict()?;
        }
        here.get(*last)
    }

    /// Removes the value at `path`, and every table the removal left empty.
    fn take(dict: &mut Dict, path: &[&str]) -> Option<Value> {
        match path {
            [] => None,
            [last] => dict.remove(*last),
            [first, rest @ ..] => {
                let Some(Value::Dict(_, child)) = dict.get_mut(*first) else { return None };
                let value = take(child, rest);
                if child.is_empty() {
                    dict.remove(*first);
                }
                value
            }
        }
    }

    fn put(dict: &mut Dict, path: &[&str], value: Value) {
        match path {
            [] => {}
            [last] => {
                dict.insert((*last).to_owned(), value);
            }
            [first, rest @ ..] => {
                let entry = dict.entry((*first).to_owned()).or_insert_with(|| Value::from(Dict::new()));
                if !matches!(entry, Value::Dict(..)) {
                    *entry = Value::from(Dict::new());
                }
                if let Value::Dict(_, child) = entry {
                    put(child, rest, value);
                }
            }
        }
    }
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

/// A keyring of symmetric keys, in the one format every service uses (the
/// catalog's webhook-secret keys, the vault's key-encryption keys): `keyring` lists
/// `<id>:<base64 of 32 bytes>` entries (a TOML list, or comma-separated in the
/// environment: `BIZOPS_KEYS__KEYRING`), every one of them decrypts, and `active`
/// (`BIZOPS_KEYS__ACTIVE`) names the one that encrypts new data. Each service says
/// what its ids are (the vault: versions 1, 2, …) and whether `active` may be left
/// unset.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, bound(deserialize = "Id: Deserialize<'de>"))]
pub struct KeyringConfig<Id> {
    /// `<id>:<base64 of 32 bytes>` entries.
    #[serde(deserialize_with = "secret_list")]
    pub keyring: Vec<SecretString>,
    /// The id of the key that encrypts new data.
    pub active: Option<Id>,
}

impl<Id> Default for KeyringConfig<Id> {
    fn default() -> Self {
        Self { keyring: Vec::new(), active: None }
    }
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
    /// The system role (BYPASSRLS): only the service's audited cross-owner paths
    /// (`system.rs`; the executor's leased-run writes in `lease.rs`).
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

    const RENAMED: &[Renamed] = &[
        Renamed { old: "old_name", new: "name" },
        Renamed { old: "legacy.url", new: "nested.url" },
        Renamed { old: "legacy.flag", new: "nested.flag" },
    ];

    #[test]
    fn old_names_still_work_and_are_reported() {
        figment::Jail::expect_with(|jail| {
            // Environment: the old name sets the new key, and says so.
            jail.set_env("BIZOPS_LEGACY__URL", "postgres://old-name");
            let loaded: Loaded<Sample> = load_renamed(None, RENAMED).expect("env");
            assert_eq!(loaded.config.nested.url, "postgres://old-name");
            assert_eq!(
                loaded.deprecated,
                [Deprecation { renamed: RENAMED[1], source: Source::Env, ignored: false }]
            );
            let text = loaded.deprecated[0].to_string();
            assert!(text.contains("BIZOPS_LEGACY__URL") && text.contains("use BIZOPS_NESTED__URL"), "{text}");
            assert!(!text.contains("old-name"), "never the value: {text}");

            // Both names: the new one wins, and the old one is reported as ignored.
            jail.set_env("BIZOPS_NESTED__URL", "postgres://new-name");
            let loaded: Loaded<Sample> = load_renamed(None, RENAMED).expect("both");
            assert_eq!(loaded.config.nested.url, "postgres://new-name");
            assert!(loaded.deprecated[0].ignored);
            assert!(loaded.deprecated[0].to_string().contains("is ignored"));
            jail.clear_env();

            // A file: old keys (a whole old table) move to their new places.
            jail.create_file("old.toml", "old_name = \"from-file\"\n[legacy]\nflag = true\n")?;
            let loaded: Loaded<Sample> = load_renamed(Some(Path::new("old.toml")), RENAMED).expect("file");
            assert_eq!(loaded.config.name, "from-file");
            assert!(loaded.config.nested.flag);
            assert_eq!(loaded.deprecated.len(), 2);
            assert!(loaded.deprecated.iter().all(|d| d.source == Source::File));
            assert!(loaded.deprecated[0].to_string().contains("old_name: use name"));

            // Without the table the old names are unknown keys, as before.
            assert!(load::<Sample>(Some(Path::new("old.toml"))).is_err());
            Ok(())
        });
    }

    #[test]
    fn vars_read_like_the_environment() {
        let loaded: Loaded<Sample> = from_vars(
            [
                ("BIZOPS_PORT", "7"),
                ("BIZOPS_OLD_NAME", "given"),
                ("BIZOPS_TEST_IGNORED", "x"),
                ("BIZOPS_CONFIG", "ignored.toml"),
                ("PATH", "/bin"),
            ],
            RENAMED,
        )
        .expect("vars");
        assert_eq!((loaded.config.port, loaded.config.name.as_str()), (7, "given"));
        assert_eq!(loaded.deprecated.len(), 1);
        let err = from_vars::<Sample, _, _, _>([("BIZOPS_NOPE", "1")], RENAMED).expect_err("unknown key");
        assert!(err.to_string().contains("nope"), "{err}");
        assert_eq!(env_name("database.system_url"), "BIZOPS_DATABASE__SYSTEM_URL");
    }

    #[test]
    fn keyrings_read_ids_of_the_service_s_type() {
        #[derive(Debug, Default, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        struct Probe {
            numbered: KeyringConfig<u32>,
            named: KeyringConfig<String>,
        }
        let loaded: Loaded<Probe> = from_vars(
            [
                ("BIZOPS_NUMBERED__KEYRING", "1:AAAA,2:BBBB"),
                ("BIZOPS_NUMBERED__ACTIVE", "2"),
                ("BIZOPS_NAMED__KEYRING", "dev1:CCCC"),
                ("BIZOPS_NAMED__ACTIVE", "dev1"),
            ],
            &[],
        )
        .expect("keyrings");
        assert_eq!(loaded.config.numbered.keyring.len(), 2);
        assert_eq!(loaded.config.numbered.active, Some(2));
        assert_eq!(loaded.config.named.active.as_deref(), Some("dev1"));
        assert!(!format!("{:?}", loaded.config).contains("CCCC"));
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
