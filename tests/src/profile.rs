//! What the e2e suites set beyond the wiring (which comes from the topology): the
//! test database, the NATS prefix, the fakes of the outside APIs and the settings
//! that make a test fast. The in-process suite and the process suite read the same
//! variables, so both run the suite configured alike.

use std::collections::BTreeMap;

use bizops_testkit::{TestDb, procs::var};
use bizops_topology::Topology;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path, path_regex},
};

use crate::suite::ORIGIN;

/// Fakes of the outside APIs.
pub struct Fakes {
    /// Slack incoming webhooks (`POST /services/...` answers `ok`).
    pub slack: MockServer,
    /// Resend (`POST /emails`).
    pub resend: MockServer,
    /// Anthropic (nothing mounted: tests mount what they need).
    pub anthropic: MockServer,
}

impl Fakes {
    /// Starts the three fakes.
    pub async fn start() -> Self {
        let (slack, resend, anthropic) =
            (MockServer::start().await, MockServer::start().await, MockServer::start().await);
        Mock::given(method("POST"))
            .and(path_regex("^/services/"))
            .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
            .mount(&slack)
            .await;
        Mock::given(method("POST"))
            .and(path("/emails"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"id": "email_1"})))
            .mount(&resend)
            .await;
        Self { slack, resend, anthropic }
    }
}

/// The variables of every service (by binary name) beyond the wiring.
pub fn env(
    topology: &Topology,
    db: &TestDb,
    prefix: &str,
    fakes: &Fakes,
) -> BTreeMap<String, Vec<(String, String)>> {
    let mut all = BTreeMap::new();
    for s in &topology.services {
        let mut env = vec![var("BIZOPS_SHUTDOWN_DRAIN", "0s"), var("BIZOPS_SHUTDOWN_GRACE", "5s")];
        if s.nats {
            env.push(var("BIZOPS_NATS__PREFIX", prefix));
        }
        if s.database {
            env.extend(db.env(&s.name));
            env.extend([
                var("BIZOPS_DATABASE__MAX_CONNECTIONS", "6"),
                var("BIZOPS_DATABASE__SYSTEM_MAX_CONNECTIONS", "4"),
            ]);
        }
        env.extend(match s.name.as_str() {
            "identity" => vec![
                var("BIZOPS_SCRYPT__LOG_N", "10"),
                var("BIZOPS_LOGIN_LIMITS__REGISTER_PER_SOURCE_PER_HOUR", "10000"),
                var("BIZOPS_DELETION__RETRY_INTERVAL", "500ms"),
                var("BIZOPS_DELETION__CALL_TIMEOUT", "10s"),
                var("BIZOPS_NOTIFICATIONS__RESEND_BASE_URL", fakes.resend.uri()),
            ],
            "vault" => vec![
                var("BIZOPS_CONNECTORS__SLACK_ALLOWED_HOSTS", "127.0.0.1"),
                var("BIZOPS_CONNECTORS__SLACK_REQUIRE_HTTPS", "false"),
                var("BIZOPS_CONNECTORS__RESEND_BASE_URL", fakes.resend.uri()),
                var("BIZOPS_CONNECTORS__ANTHROPIC_BASE_URL", fakes.anthropic.uri()),
            ],
            "executor" => vec![
                var("BIZOPS_RUNS__REAPER_INTERVAL", "200ms"),
                var("BIZOPS_RUNS__SWEEP_INTERVAL", "300ms"),
                var("BIZOPS_STEPS__DEFAULT_INITIAL_BACKOFF", "20ms"),
                var("BIZOPS_STEPS__DEFAULT_MAX_BACKOFF", "100ms"),
                var("BIZOPS_SCHEDULER__TICK", "500ms"),
                var("BIZOPS_PROVIDERS__SLACK_ALLOWED_HOSTS", "127.0.0.1"),
                var("BIZOPS_PROVIDERS__SLACK_REQUIRE_HTTPS", "false"),
                var("BIZOPS_PROVIDERS__RESEND_BASE_URL", fakes.resend.uri()),
                var("BIZOPS_PROVIDERS__ANTHROPIC_BASE_URL", fakes.anthropic.uri()),
                var("BIZOPS_HTTP__ALLOWED_NETWORKS", "127.0.0.0/8"),
            ],
            "gateway" => vec![var("BIZOPS_PUBLIC_ORIGIN", ORIGIN), var("BIZOPS_TIMEOUTS__RPC", "10s")],
            _ => vec![],
        });
        all.insert(s.binary.clone(), env);
    }
    all
}
