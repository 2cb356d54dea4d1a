//! The topology of the suite, defined once in `topology.toml` (next to this crate's
//! `Cargo.toml`; its header documents every field): the services, their ports, the
//! keys each one holds, the services each one calls and the identities each one
//! trusts. Everything that wires the suite derives from it — the env map of each
//! service in the e2e harnesses, the bench and `make run` ([`Topology::env`]), the
//! start order ([`Topology::start_order`]) — and `scripts/chart-lint` checks the
//! Helm chart's trust lists and NetworkPolicy edges against the same file.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

/// The committed topology, as text (for tools that print or re-read it).
pub const TOPOLOGY_TOML: &str = include_str!("../topology.toml");

/// How a service checks session tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sessions {
    /// It issues them (identity).
    Issues,
    /// It verifies them locally against identity's keys; its call to identity is
    /// only GetJwks, so identity's public key may be given instead of its URL.
    Jwks,
    /// It asks identity's VerifySession (the gateway).
    Verify,
}

/// A kind of key a service holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Key {
    /// Signs session tokens (`BIZOPS_KEYS__SIGNING_KEY`).
    Session,
    /// Its service identity (`BIZOPS_AUTH__SERVICE_KEY`).
    Service,
    /// A keyring of symmetric keys (`BIZOPS_KEYS__KEYRING`, `BIZOPS_KEYS__ACTIVE`).
    Keyring,
    /// The gateway's CSRF key (`BIZOPS_CSRF_KEY`).
    Csrf,
}

/// One service of the suite.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Short name: its service identity, chart component, `BIZOPS_<NAME>_URL`.
    pub name: String,
    /// Its binary (`target/<profile>/<binary>`).
    pub binary: String,
    /// Default gRPC port (every service but the gateway).
    #[serde(default)]
    pub grpc_port: Option<u16>,
    /// Default HTTP port (the gateway).
    #[serde(default)]
    pub http_port: Option<u16>,
    /// Default metrics port.
    pub metrics_port: u16,
    /// Has a database schema and roles of its own.
    pub database: bool,
    /// Connects to NATS.
    pub nats: bool,
    /// Calls outside APIs.
    pub internet: bool,
    /// How it checks session tokens.
    pub sessions: Sessions,
    /// The keys it holds.
    pub keys: Vec<Key>,
    /// The services it connects to.
    pub calls: Vec<String>,
    /// The identities whose service tokens it accepts.
    pub trusts: Vec<String>,
}

impl Service {
    /// Whether it holds a key of `kind`.
    pub fn holds(&self, kind: Key) -> bool {
        self.keys.contains(&kind)
    }

    /// Its listen port: gRPC, or HTTP for the gateway.
    pub fn port(&self) -> u16 {
        self.grpc_port.or(self.http_port).unwrap_or_default()
    }

    /// The variable of its listen address: `BIZOPS_GRPC_ADDR` or `BIZOPS_HTTP_ADDR`.
    pub fn addr_var(&self) -> &'static str {
        if self.grpc_port.is_some() { "BIZOPS_GRPC_ADDR" } else { "BIZOPS_HTTP_ADDR" }
    }

    /// Whether its call to `callee` is only identity's GetJwks (replaceable by
    /// identity's public session key).
    pub fn calls_only_for_session_keys(&self, callee: &str) -> bool {
        self.sessions == Sessions::Jwks && callee == IDENTITY
    }
}

/// An identity that calls internal RPCs but is no service of the suite.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Caller {
    /// Its name (the key id of its service tokens).
    pub name: String,
}

/// The whole topology.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// The services, in the order the file lists them.
    #[serde(rename = "service")]
    pub services: Vec<Service>,
    /// Callers that are not services.
    #[serde(rename = "caller", default)]
    pub callers: Vec<Caller>,
}

/// identity's short name: the service that issues sessions.
pub const IDENTITY: &str = "identity";

/// The variable that holds the URL of service `name`: `BIZOPS_<NAME>_URL`.
pub fn url_var(name: &str) -> String {
    format!("BIZOPS_{}_URL", name.to_ascii_uppercase())
}

/// What a harness supplies to turn the topology into env maps.
pub struct Wiring<'a> {
    /// The keys of every identity, by name.
    pub keys: &'a Keys,
    /// The URL of a running (or reserved) service, by short name.
    pub url: &'a dyn Fn(&str) -> String,
    /// Give services that only fetch identity's JWKS identity's public session key
    /// instead of its URL (so they can start before identity).
    pub static_session_keys: bool,
    /// `BIZOPS_NATS__URL` of every service that uses NATS.
    pub nats_url: &'a str,
}

/// The key material of a suite, as configuration strings.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    /// identity's session signing key, `<kid>:<base64 seed>`.
    pub session: String,
    /// Its public key, `<kid>:<base64>`.
    pub session_public: String,
    /// Service identities by name: (`<name>:<base64 seed>`, `<name>:<base64 public>`).
    pub service: BTreeMap<String, (String, String)>,
    /// Keyrings by service: `<id>:<base64 of 32 bytes>,…` and the active id.
    pub keyring: BTreeMap<String, (String, String)>,
    /// CSRF keys by service (base64 of 32 bytes).
    pub csrf: BTreeMap<String, String>,
}

/// Why the topology (or a request about it) does not make sense.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyError(pub String);

impl std::fmt::Display for TopologyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TopologyError {}

fn err<T>(message: impl Into<String>) -> Result<T, TopologyError> {
    Err(TopologyError(message.into()))
}

impl Topology {
    /// The committed topology (checked by this crate's tests, so it always parses).
    pub fn get() -> Self {
        match Self::parse(TOPOLOGY_TOML) {
            Ok(t) => t,
            Err(e) => panic!("libs/topology/topology.toml: {e}"),
        }
    }

    /// Parses and checks a topology.
    pub fn parse(text: &str) -> Result<Self, TopologyError> {
        let topology: Self = toml::from_str(text).map_err(|e| TopologyError(e.to_string()))?;
        topology.check()?;
        Ok(topology)
    }

    fn check(&self) -> Result<(), TopologyError> {
        let mut names = BTreeSet::new();
        let mut ports = BTreeSet::new();
        for s in &self.services {
            if !names.insert(s.name.as_str()) {
                return err(format!("service {} is listed twice", s.name));
            }
            if s.grpc_port.is_some() == s.http_port.is_some() {
                return err(format!("{}: give exactly one of grpc_port and http_port", s.name));
            }
            for port in [s.port(), s.metrics_port] {
                if !ports.insert(port) {
                    return err(format!("{}: port {port} is taken twice", s.name));
                }
            }
        }
        for c in &self.callers {
            if !names.insert(c.name.as_str()) {
                return err(format!("caller {} is also a service or listed twice", c.name));
            }
        }
        if self.services.iter().filter(|s| s.sessions == Sessions::Issues).count() != 1
            || self.service(IDENTITY).map(|s| s.sessions) != Some(Sessions::Issues)
        {
            return err("exactly one service, identity, issues sessions");
        }
        for s in &self.services {
            for callee in &s.calls {
                if self.service(callee).is_none() || callee == &s.name {
                    return err(format!("{} calls {callee}, which is not another service", s.name));
                }
            }
            if s.sessions != Sessions::Issues && !s.calls.iter().any(|c| c == IDENTITY) {
                return err(format!("{} checks sessions with identity but does not call it", s.name));
            }
            for caller in &s.trusts {
                let holds_key = match self.service(caller) {
                    Some(c) => c.holds(Key::Service),
                    None => self.callers.iter().any(|c| &c.name == caller),
                };
                if !holds_key {
                    return err(format!("{} trusts {caller}, which has no service key", s.name));
                }
            }
        }
        self.start_order().map(|_| ())
    }

    /// The service named `name`.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The service whose binary is `binary`.
    pub fn by_binary(&self, binary: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.binary == binary)
    }

    /// Every identity that needs a service key: services holding one, then callers.
    pub fn identities(&self) -> Vec<&str> {
        let services = self.services.iter().filter(|s| s.holds(Key::Service)).map(|s| s.name.as_str());
        services.chain(self.callers.iter().map(|c| c.name.as_str())).collect()
    }

    /// The order to start the services on port 0: each after the ones whose URL it
    /// needs (identity's JWKS excepted: those services get identity's public key).
    /// Ties keep the file's order.
    pub fn start_order(&self) -> Result<Vec<&Service>, TopologyError> {
        let mut started: Vec<&Service> = Vec::new();
        while started.len() < self.services.len() {
            let next = self.services.iter().find(|s| {
                !started.iter().any(|d| d.name == s.name)
                    && s.calls
                        .iter()
                        .all(|c| s.calls_only_for_session_keys(c) || started.iter().any(|d| &d.name == c))
            });
            match next {
                Some(s) => started.push(s),
                None => return err("the services' calls form a cycle: no start order"),
            }
        }
        Ok(started)
    }

    /// The wiring part of the environment of service `name`: the URLs of the
    /// services it calls, its keys, the public keys of the identities it trusts,
    /// and NATS. Listen addresses, databases and tuning are the harness's own.
    pub fn env(&self, name: &str, wiring: &Wiring<'_>) -> Result<Vec<(String, String)>, TopologyError> {
        let Some(s) = self.service(name) else { return err(format!("no service {name}")) };
        let keys = wiring.keys;
        let mut env = Vec::new();
        let mut var = |k: &str, v: String| env.push((k.to_owned(), v));
        for callee in &s.calls {
            if wiring.static_session_keys && s.calls_only_for_session_keys(callee) {
                var("BIZOPS_AUTH__SESSION_PUBLIC_KEYS", keys.session_public.clone());
            } else {
                var(&url_var(callee), (wiring.url)(callee));
            }
        }
        let missing = |what: &str| TopologyError(format!("no {what} key for {name}"));
        for key in &s.keys {
            match key {
                Key::Session => var("BIZOPS_KEYS__SIGNING_KEY", keys.session.clone()),
                Key::Service => {
                    let (secret, _) = keys.service.get(name).ok_or_else(|| missing("service"))?;
                    var("BIZOPS_AUTH__SERVICE_KEY", secret.clone());
                }
                Key::Keyring => {
                    let (ring, active) = keys.keyring.get(name).ok_or_else(|| missing("keyring"))?;
                    var("BIZOPS_KEYS__KEYRING", ring.clone());
                    var("BIZOPS_KEYS__ACTIVE", active.clone());
                }
                Key::Csrf => {
                    var("BIZOPS_CSRF_KEY", keys.csrf.get(name).ok_or_else(|| missing("csrf"))?.clone())
                }
            }
        }
        if !s.trusts.is_empty() {
            let mut publics = Vec::new();
            for caller in &s.trusts {
                let (_, public) = keys.service.get(caller).ok_or_else(|| {
                    TopologyError(format!("no service key for {caller}, whom {name} trusts"))
                })?;
                publics.push(public.clone());
            }
            var("BIZOPS_AUTH__TRUSTED_CALLERS", publics.join(","));
        }
        if s.nats {
            var("BIZOPS_NATS__URL", wiring.nats_url.to_owned());
        }
        Ok(env)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn keys(t: &Topology) -> Keys {
        let mut k = Keys { session: "s:SEED".into(), session_public: "s:PUB".into(), ..Keys::default() };
        for id in t.identities() {
            k.service.insert(id.into(), (format!("{id}:SEED"), format!("{id}:PUB")));
        }
        k.keyring.insert("catalog".into(), ("c1:KEY".into(), "c1".into()));
        k.keyring.insert("vault".into(), ("1:KEY".into(), "1".into()));
        k.csrf.insert("gateway".into(), "CSRF".into());
        k
    }

    #[test]
    fn the_committed_topology_parses_and_is_consistent() {
        let t = Topology::get();
        let names: Vec<&str> = t.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["identity", "catalog", "vault", "executor", "gateway"]);
        let order: Vec<&str> = t.start_order().unwrap().iter().map(|s| s.binary.as_str()).collect();
        assert_eq!(order, ["pilot-catalog", "credential-vault", "executor", "identity", "gateway"]);
        assert_eq!(t.identities(), ["identity", "executor", "gateway", "ops"]);
        assert_eq!(t.service("gateway").unwrap().addr_var(), "BIZOPS_HTTP_ADDR");
    }

    #[test]
    fn env_maps_carry_urls_keys_and_trust() {
        let t = Topology::get();
        let keys = keys(&t);
        let url = |name: &str| format!("http://{name}:1");
        let wiring = Wiring { keys: &keys, url: &url, static_session_keys: false, nats_url: "nats://n:4222" };
        let env: BTreeMap<String, String> = t.env("executor", &wiring).unwrap().into_iter().collect();
        assert_eq!(env["BIZOPS_IDENTITY_URL"], "http://identity:1");
        assert_eq!(env["BIZOPS_CATALOG_URL"], "http://catalog:1");
        assert_eq!(env["BIZOPS_VAULT_URL"], "http://vault:1");
        assert_eq!(env["BIZOPS_AUTH__SERVICE_KEY"], "executor:SEED");
        assert_eq!(env["BIZOPS_AUTH__TRUSTED_CALLERS"], "identity:PUB");
        assert_eq!(env["BIZOPS_NATS__URL"], "nats://n:4222");

        let wiring = Wiring { static_session_keys: true, ..wiring };
        let env: BTreeMap<String, String> = t.env("vault", &wiring).unwrap().into_iter().collect();
        assert!(!env.contains_key("BIZOPS_IDENTITY_URL"));
        assert_eq!(env["BIZOPS_AUTH__SESSION_PUBLIC_KEYS"], "s:PUB");
        assert_eq!(
            (env["BIZOPS_KEYS__KEYRING"].as_str(), env["BIZOPS_KEYS__ACTIVE"].as_str()),
            ("1:KEY", "1")
        );
        assert!(env["BIZOPS_AUTH__TRUSTED_CALLERS"].contains("ops:PUB"));
        assert!(!env.contains_key("BIZOPS_NATS__URL"));
        let gateway: BTreeMap<String, String> = t.env("gateway", &wiring).unwrap().into_iter().collect();
        assert_eq!(gateway["BIZOPS_IDENTITY_URL"], "http://identity:1", "the gateway asks identity");
        assert_eq!(gateway["BIZOPS_CSRF_KEY"], "CSRF");
        assert!(!gateway.contains_key("BIZOPS_AUTH__TRUSTED_CALLERS"));
    }

    #[test]
    fn inconsistent_topologies_are_refused() {
        let broken = [
            (TOPOLOGY_TOML.replace("trusts = [\"identity\"]", "trusts = [\"catalog\"]"), "no service key"),
            (
                TOPOLOGY_TOML.replace(
                    "calls = [\"identity\"]\n# executor",
                    "calls = [\"identity\", \"executor\"]\n# executor",
                ),
                "cycle",
            ),
            (TOPOLOGY_TOML.replace("metrics_port = 9105", "metrics_port = 9104"), "taken twice"),
            (TOPOLOGY_TOML.replace("name = \"ops\"", "name = \"gateway\""), "listed twice"),
            (
                TOPOLOGY_TOML
                    .replace("calls = [\"catalog\", \"executor\", \"vault\"]", "calls = [\"billing\"]"),
                "not another",
            ),
        ];
        for (text, why) in broken {
            assert_ne!(text, TOPOLOGY_TOML, "the test edit applies ({why})");
            let e = Topology::parse(&text).unwrap_err();
            assert!(e.0.contains(why), "{why}: {e}");
        }
    }
}
