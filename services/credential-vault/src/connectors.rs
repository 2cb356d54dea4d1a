//! Connector kinds: how a value is validated before it is stored, and how
//! TestCredential checks it against the provider.
//!
//! Each kind is one [`Connector`] implementation listed in [`CONNECTORS`]; adding a
//! kind is one more implementation here (plus its enum value in the contract).
//! Provider URLs come from [`ConnectorsConfig`], never from branches in code.

use std::{fmt, time::Duration};

use bizops_proto::vault::v1::ConnectorKind;
use reqwest::{
    Method, Url,
    header::{HeaderName, HeaderValue},
};
use secrecy::{ExposeSecret as _, SecretString};
use zeroize::Zeroizing;

use crate::config::ConnectorsConfig;

/// The answer of a live check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the provider accepted the credential.
    pub ok: bool,
    /// A short, safe explanation (never the value).
    pub detail: String,
}

impl Verdict {
    fn ok(detail: impl Into<String>) -> Self {
        Self { ok: true, detail: detail.into() }
    }

    fn rejected(detail: impl Into<String>) -> Self {
        Self { ok: false, detail: detail.into() }
    }
}

/// One HTTP request that checks a credential, and how to read the answer.
pub struct Probe {
    method: Method,
    url: Url,
    headers: Vec<(HeaderName, HeaderValue)>,
    json: Option<serde_json::Value>,
    judge: fn(u16, &str) -> Verdict,
}

impl fmt::Debug for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL or a header may be the secret itself.
        f.debug_struct("Probe").field("method", &self.method).finish_non_exhaustive()
    }
}

/// A kind of connector.
pub trait Connector: Send + Sync + 'static {
    /// The stored name (`slack`, `resend`, …).
    fn name(&self) -> &'static str;
    /// The contract's enum value.
    fn proto(&self) -> ConnectorKind;
    /// The provider's name in messages (`Slack`).
    fn provider(&self) -> &'static str;
    /// Checks the shape of a value; the error explains what is expected and never
    /// repeats the value.
    fn validate(&self, value: &str, config: &ConnectorsConfig) -> Result<(), String>;
    /// Whether there is a provider to check a value against.
    fn live_check(&self) -> bool {
        true
    }
    /// The live check of a (valid) value, or `None` when there is nothing to test
    /// against.
    fn probe(&self, value: &str, config: &ConnectorsConfig) -> Result<Option<Probe>, String>;
}

/// Every connector kind.
pub static CONNECTORS: &[&dyn Connector] = &[&Slack, &Resend, &Anthropic, &HttpBearer];

/// The connector stored under `name`.
pub fn by_name(name: &str) -> Option<&'static dyn Connector> {
    CONNECTORS.iter().copied().find(|c| c.name() == name)
}

/// The connector of a contract enum value (`None` for UNSPECIFIED and unknown values).
pub fn by_proto(kind: i32) -> Option<&'static dyn Connector> {
    CONNECTORS.iter().copied().find(|c| c.proto() as i32 == kind)
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// An API key: `prefix` then at least 8 of `[A-Za-z0-9_-]`.
fn api_key(value: &str, prefix: &str, what: &str) -> Result<(), String> {
    let Some(rest) = value.strip_prefix(prefix) else {
        return Err(format!("{what} starts with `{prefix}`"));
    };
    if rest.len() < 8 || !rest.chars().all(is_token_char) {
        return Err(format!(
            "{what} is `{prefix}` followed by at least 8 letters, digits, `_` or `-`, with no spaces"
        ));
    }
    Ok(())
}

fn header(name: &'static str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let mut v = HeaderValue::from_str(value).map_err(|_| "cannot be sent in an HTTP header".to_owned())?;
    v.set_sensitive(true);
    Ok((HeaderName::from_static(name), v))
}

fn endpoint(base: &str, path: &str) -> Result<Url, String> {
    Url::parse(&format!("{}{path}", base.trim_end_matches('/')))
        .map_err(|_| "base URL is not valid".to_owned())
}

/// A short machine code from a provider answer (`no_text`), or nothing.
fn safe_code(text: &str) -> Option<&str> {
    let t = text.trim();
    (!t.is_empty() && t.len() <= 40 && t.chars().all(|c| c.is_ascii_lowercase() || c == '_')).then_some(t)
}

/// The `name` or `error.type` of a provider's JSON error, if it is a safe code.
fn json_code(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let code = v.get("name").or_else(|| v.get("error").and_then(|e| e.get("type")))?.as_str()?;
    safe_code(code).map(str::to_owned)
}

fn other_answer(provider: &str, status: u16) -> Verdict {
    match status {
        429 => Verdict::rejected(format!("{provider} is rate limiting requests; try again later")),
        500..=599 => Verdict::rejected(format!("{provider} is unavailable (HTTP {status}); try again later")),
        _ => Verdict::rejected(format!("{provider} answered unexpectedly (HTTP {status})")),
    }
}

/// Slack incoming webhook: the value is the URL.
pub struct Slack;

impl Connector for Slack {
    fn name(&self) -> &'static str {
        "slack"
    }

    fn proto(&self) -> ConnectorKind {
        ConnectorKind::Slack
    }

    fn provider(&self) -> &'static str {
        "Slack"
    }

    fn validate(&self, value: &str, config: &ConnectorsConfig) -> Result<(), String> {
        const WHAT: &str = "a Slack incoming-webhook URL";
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("{WHAT} has no spaces or control characters"));
        }
        let url = Url::parse(value).map_err(|_| format!("must be {WHAT}"))?;
        match url.scheme() {
            "https" => {}
            "http" if !config.slack_require_https => {}
            _ => return Err(format!("{WHAT} must use https")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("{WHAT} must not contain a user name or password"));
        }
        let host = url.host_str().unwrap_or_default();
        if !config.slack_allowed_hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            return Err(format!(
                "{WHAT} must point at an allowed host ({})",
                config.slack_allowed_hosts.join(", ")
            ));
        }
        if url.path().len() <= 1 || url.fragment().is_some() {
            return Err(format!("must be {WHAT} with its full path"));
        }
        Ok(())
    }

    fn probe(&self, value: &str, _config: &ConnectorsConfig) -> Result<Option<Probe>, String> {
        let url = Url::parse(value).map_err(|_| "is not a URL".to_owned())?;
        Ok(Some(Probe {
            method: Method::POST,
            url,
            headers: Vec::new(),
            // An empty message: Slack refuses it with 400 `no_text` when the webhook
            // exists, so nothing is ever posted.
            json: Some(serde_json::json!({})),
            judge: |status, body| match status {
                200..=299 => Verdict::ok("Slack accepted the webhook"),
                400 => match safe_code(body) {
                    Some(
                        code @ ("no_text" | "invalid_payload" | "missing_text_or_fallback_or_attachments"),
                    ) => Verdict::ok(format!(
                        "the webhook exists (Slack answered `{code}` to an empty test message; nothing was posted)"
                    )),
                    Some(code) => Verdict::rejected(format!("Slack refused the webhook (`{code}`)")),
                    None => Verdict::rejected("Slack refused the webhook (HTTP 400)"),
                },
                403 | 404 | 410 => Verdict::rejected(match safe_code(body) {
                    Some(code) => {
                        format!("Slack rejected the webhook (HTTP {status}, `{code}`); create a new one")
                    }
                    None => format!("Slack rejected the webhook (HTTP {status}); create a new one"),
                }),
                _ => other_answer("Slack", status),
            },
        }))
    }
}

/// Resend API key.
pub struct Resend;

impl Connector for Resend {
    fn name(&self) -> &'static str {
        "resend"
    }

    fn proto(&self) -> ConnectorKind {
        ConnectorKind::Resend
    }

    fn provider(&self) -> &'static str {
        "Resend"
    }

    fn validate(&self, value: &str, _config: &ConnectorsConfig) -> Result<(), String> {
        api_key(value, "re_", "a Resend API key")
    }

    fn probe(&self, value: &str, config: &ConnectorsConfig) -> Result<Option<Probe>, String> {
        Ok(Some(Probe {
            method: Method::GET,
            url: endpoint(&config.resend_base_url, "/domains")?,
            headers: vec![header("authorization", &Zeroizing::new(format!("Bearer {value}")))?],
            json: None,
            judge: |status, body| match status {
                200..=299 => Verdict::ok("Resend accepted the API key"),
                // A sending-only key may not list domains, but it is a valid key.
                401 | 403 if json_code(body).as_deref() == Some("restricted_api_key") => {
                    Verdict::ok("Resend accepted the API key (restricted to sending emails)")
                }
                401 | 403 => Verdict::rejected(format!("Resend rejected the API key (HTTP {status})")),
                _ => other_answer("Resend", status),
            },
        }))
    }
}

/// Anthropic API key.
pub struct Anthropic;

/// The `anthropic-version` header the live check sends.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

impl Connector for Anthropic {
    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn proto(&self) -> ConnectorKind {
        ConnectorKind::Anthropic
    }

    fn provider(&self) -> &'static str {
        "Anthropic"
    }

    fn validate(&self, value: &str, _config: &ConnectorsConfig) -> Result<(), String> {
        api_key(value, "sk-ant-", "an Anthropic API key")
    }

    fn probe(&self, value: &str, config: &ConnectorsConfig) -> Result<Option<Probe>, String> {
        Ok(Some(Probe {
            method: Method::GET,
            url: endpoint(&config.anthropic_base_url, "/v1/models")?,
            headers: vec![header("x-api-key", value)?, header("anthropic-version", ANTHROPIC_VERSION)?],
            json: None,
            judge: |status, body| match status {
                200..=299 => Verdict::ok("Anthropic accepted the API key"),
                401 => Verdict::rejected("Anthropic rejected the API key (HTTP 401)"),
                403 => Verdict::rejected(match json_code(body) {
                    Some(code) => format!("Anthropic refused the API key (HTTP 403, `{code}`)"),
                    None => "Anthropic refused the API key (HTTP 403)".to_owned(),
                }),
                _ => other_answer("Anthropic", status),
            },
        }))
    }
}

/// A bearer token for HTTP steps (sent to the URL a step names).
pub struct HttpBearer;

impl Connector for HttpBearer {
    fn name(&self) -> &'static str {
        "http_bearer"
    }

    fn proto(&self) -> ConnectorKind {
        ConnectorKind::HttpBearer
    }

    fn provider(&self) -> &'static str {
        "the HTTP endpoint"
    }

    fn validate(&self, value: &str, _config: &ConnectorsConfig) -> Result<(), String> {
        if value.is_empty() {
            return Err("a bearer token must not be empty".into());
        }
        if !value.chars().all(|c| c.is_ascii_graphic()) {
            return Err(
                "a bearer token is visible ASCII only: no spaces, control or non-ASCII characters".into()
            );
        }
        Ok(())
    }

    fn live_check(&self) -> bool {
        false
    }

    fn probe(&self, _value: &str, _config: &ConnectorsConfig) -> Result<Option<Probe>, String> {
        Ok(None)
    }
}

/// The result of a live check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The verdict.
    pub verdict: Verdict,
    /// The provider's HTTP status, 0 if it could not be reached.
    pub provider_status: u16,
}

/// Runs live checks: one HTTP client with timeouts and no redirects (a redirect
/// could carry a credential to another host).
#[derive(Clone)]
pub struct Checker {
    client: reqwest::Client,
    config: ConnectorsConfig,
}

impl fmt::Debug for Checker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checker").field("config", &self.config).finish_non_exhaustive()
    }
}

/// Largest part of a provider's answer that is read.
const MAX_ANSWER_BYTES: usize = 4096;

impl Checker {
    /// A checker for `config`; the process's rustls crypto provider must be installed.
    pub fn new(config: &ConnectorsConfig) -> anyhow::Result<Self> {
        for (key, base) in [
            ("BIZOPS_CONNECTORS__RESEND_BASE_URL", &config.resend_base_url),
            ("BIZOPS_CONNECTORS__ANTHROPIC_BASE_URL", &config.anthropic_base_url),
        ] {
            let url = Url::parse(base).map_err(|_| anyhow::anyhow!("{key} is not a valid URL"))?;
            anyhow::ensure!(matches!(url.scheme(), "https" | "http"), "{key} must be an http(s) URL");
        }
        anyhow::ensure!(
            !config.slack_allowed_hosts.is_empty(),
            "BIZOPS_CONNECTORS__SLACK_ALLOWED_HOSTS is empty: no Slack webhook could be stored"
        );
        anyhow::ensure!(!config.timeout.is_zero(), "BIZOPS_CONNECTORS__TIMEOUT must be above zero");
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("bizops-credential-vault/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow::anyhow!("building the HTTP client: {e}"))?;
        Ok(Self { client, config: config.clone() })
    }

    /// The connector configuration.
    pub fn config(&self) -> &ConnectorsConfig {
        &self.config
    }

    /// Checks `value` of `connector` live. `Ok(None)`: nothing to test against.
    pub async fn check(
        &self,
        connector: &dyn Connector,
        value: &SecretString,
    ) -> Result<Option<Outcome>, String> {
        let Some(probe) = connector.probe(value.expose_secret(), &self.config)? else { return Ok(None) };
        let provider = connector.provider();
        let mut request = self.client.request(probe.method.clone(), probe.url.clone());
        for (name, v) in &probe.headers {
            request = request.header(name.clone(), v.clone());
        }
        if let Some(json) = &probe.json {
            request = request.json(json);
        }
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                // reqwest errors carry the URL, which may be the secret: never shown.
                let why = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "connection failed"
                } else {
                    "request failed"
                };
                tracing::info!(
                    connector = connector.name(),
                    reason = why,
                    "live check could not reach the provider"
                );
                return Ok(Some(Outcome {
                    verdict: Verdict::rejected(format!("could not reach {provider}: {why}")),
                    provider_status: 0,
                }));
            }
        };
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while body.len() < MAX_ANSWER_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    body.extend_from_slice(&chunk[..chunk.len().min(MAX_ANSWER_BYTES - body.len())])
                }
                Ok(None) | Err(_) => break,
            }
        }
        let verdict = (probe.judge)(status, &String::from_utf8_lossy(&body));
        Ok(Some(Outcome { verdict, provider_status: status }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn cfg() -> ConnectorsConfig {
        ConnectorsConfig::default()
    }

    #[test]
    fn every_kind_round_trips_through_its_name_and_enum() {
        for c in CONNECTORS {
            assert_eq!(by_name(c.name()).unwrap().proto(), c.proto());
            assert_eq!(by_proto(c.proto() as i32).unwrap().name(), c.name());
        }
        assert!(by_proto(ConnectorKind::Unspecified as i32).is_none());
        assert!(by_proto(99).is_none());
        assert!(by_name("smtp").is_none());
    }

    #[test]
    fn slack_urls_must_be_https_on_an_allowed_host() {
        let ok = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX";
        assert_eq!(Slack.validate(ok, &cfg()), Ok(()));
        assert_eq!(Slack.validate("https://HOOKS.slack.com/services/T/B/x", &cfg()), Ok(()));
        for bad in [
            "http://hooks.slack.com/services/T000/B000/XXXX",
            "https://hooks.slack.com.evil.example/services/T/B/x",
            "https://evil.example/services/T/B/x",
            "https://user:pw@hooks.slack.com/services/T/B/x",
            "https://hooks.slack.com/",
            "https://hooks.slack.com",
            " https://hooks.slack.com/services/T/B/x",
            "https://hooks.slack.com/services/T/B/x\n",
            "ftp://hooks.slack.com/services/T/B/x",
            "hooks.slack.com/services/T/B/x",
            "",
        ] {
            let err = Slack.validate(bad, &cfg()).unwrap_err();
            assert!(!err.contains("services/T"), "{err}");
        }
        // Configuration, not code, allows a fake for tests.
        let fake = ConnectorsConfig {
            slack_allowed_hosts: vec!["127.0.0.1".into()],
            slack_require_https: false,
            ..cfg()
        };
        assert_eq!(Slack.validate("http://127.0.0.1:4321/services/T/B/x", &fake), Ok(()));
        assert!(Slack.validate(ok, &fake).is_err());
    }

    #[test]
    fn api_keys_need_their_prefix_and_no_spaces() {
        assert_eq!(Resend.validate("re_123456789_abcdefghijklmnop", &cfg()), Ok(()));
        assert_eq!(Anthropic.validate("sk-ant-api03-abcdefgh-ijkl_mnop", &cfg()), Ok(()));
        for bad in
            ["sk-ant-api03-abcdefgh", "re_short", "re_ with spaces", "RE_123456789", "re_1234567890\n", ""]
        {
            let err = Resend.validate(bad, &cfg()).unwrap_err();
            assert!(!err.contains("123456789") && !err.contains("abcdefgh"), "{err}");
        }
        for bad in [
            "re_123456789_abcdefghijkl",
            "sk-ant-",
            "sk-ant-abc def ghij",
            "sk-ant-äbcdefghij",
            "sk-123456789",
        ] {
            assert!(Anthropic.validate(bad, &cfg()).is_err(), "{bad}");
        }
    }

    #[test]
    fn bearer_tokens_are_visible_ascii() {
        assert_eq!(HttpBearer.validate("abc.DEF-123_~+/=", &cfg()), Ok(()));
        for bad in ["", "two words", "tab\there", "new\nline", "nul\0", "ünïcode"] {
            assert!(HttpBearer.validate(bad, &cfg()).is_err(), "{bad:?}");
        }
        assert!(HttpBearer.probe("token", &cfg()).unwrap().is_none());
        assert!(
            !HttpBearer.live_check() && Slack.live_check() && Resend.live_check() && Anthropic.live_check()
        );
    }

    #[test]
    fn probes_use_the_configured_base_urls() {
        let c = ConnectorsConfig {
            resend_base_url: "http://127.0.0.1:1/resend/".into(),
            anthropic_base_url: "http://127.0.0.1:1".into(),
            ..cfg()
        };
        let p = Resend.probe("re_123456789", &c).unwrap().unwrap();
        assert_eq!(p.url.as_str(), "http://127.0.0.1:1/resend/domains");
        assert!(p.headers[0].1.is_sensitive());
        assert!(!format!("{p:?}").contains("re_123456789"));
        let p = Anthropic.probe("sk-ant-123456789", &c).unwrap().unwrap();
        assert_eq!(p.url.as_str(), "http://127.0.0.1:1/v1/models");
        assert_eq!(p.headers[1].1, ANTHROPIC_VERSION);
    }

    #[test]
    fn answers_are_judged_per_provider() {
        let slack = Slack.probe("https://hooks.slack.com/services/T/B/x", &cfg()).unwrap().unwrap();
        assert!((slack.judge)(400, "no_text").ok);
        assert!(!(slack.judge)(403, "invalid_token").ok);
        assert!(!(slack.judge)(404, "no_service").ok);
        assert!(!(slack.judge)(400, "<html>oops</html>").ok);
        assert!(!(slack.judge)(500, "").ok);
        let resend = Resend.probe("re_123456789", &cfg()).unwrap().unwrap();
        assert!((resend.judge)(200, "{}").ok);
        assert!((resend.judge)(401, r#"{"name":"restricted_api_key","statusCode":401}"#).ok);
        assert!(!(resend.judge)(401, r#"{"name":"validation_error"}"#).ok);
        assert!(!(resend.judge)(429, "").ok);
        let anthropic = Anthropic.probe("sk-ant-123456789", &cfg()).unwrap().unwrap();
        assert!((anthropic.judge)(200, "{}").ok);
        assert!(!(anthropic.judge)(401, r#"{"type":"error","error":{"type":"authentication_error"}}"#).ok);
        assert_eq!(safe_code("<b>x</b>"), None);
        assert_eq!(
            json_code(r#"{"error":{"type":"permission_error"}}"#).as_deref(),
            Some("permission_error")
        );
    }
}
