//! The outside-world steps (slack, email, http) and the local ones (transform,
//! condition). AI steps are in `ai.rs`; approvals and flow in `engine.rs`.

use std::{collections::HashMap, time::Duration};

use bizops_proto::catalog::v1 as pb;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};

use crate::{config::ProvidersConfig, net::Guard, sandbox::Templates};

/// A step attempt that failed: a message for the run (secrets are redacted before
/// it is stored) and whether trying again could help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    /// What went wrong.
    pub message: String,
    /// Network errors, timeouts, 429 and 5xx are retried; nothing else is.
    pub retryable: bool,
}

impl StepError {
    /// A failure no retry can fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self { message: message.into(), retryable: false }
    }

    /// A transport failure (retried).
    pub fn network(e: reqwest::Error) -> Self {
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else {
            "the connection failed"
        };
        Self { message: format!("request {what}"), retryable: true }
    }

    /// An HTTP error answer: 429 and 5xx are retried, other 4xx are not.
    pub fn http(who: &str, status: reqwest::StatusCode) -> Self {
        let retryable = status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
        Self { message: format!("{who} answered HTTP {}", status.as_u16()), retryable }
    }
}

/// Largest answer read from a provider API (Anthropic, Resend); the HTTP step
/// reads up to `steps.max_output_bytes` of its endpoint's answer.
pub const PROVIDER_ANSWER_MAX: usize = 4 * 1024 * 1024;

/// Reads at most `cap` bytes of a response body as it arrives (never the whole
/// body first); the flag tells whether the body was longer. The rest is not read:
/// dropping the response closes the connection. A body that trickles is bounded
/// by the step's timeout around the attempt.
pub async fn read_capped(mut response: reqwest::Response, cap: usize) -> Result<(Vec<u8>, bool), StepError> {
    let expected = response.content_length().and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
    let mut body = Vec::with_capacity(expected.min(cap).min(64 * 1024));
    while let Some(chunk) = response.chunk().await.map_err(StepError::network)? {
        let room = cap - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// A credential resolved from the vault for this run.
#[derive(Clone)]
pub struct Credential {
    /// The connector kind (`bizops.vault.v1.ConnectorKind`).
    pub kind: i32,
    /// The value.
    pub value: SecretString,
}

/// What the outside-world steps need.
pub struct StepEnv<'a> {
    /// Client for provider APIs (no redirects).
    pub http: &'a reqwest::Client,
    /// Provider base URLs and Slack's allowed hosts.
    pub providers: &'a ProvidersConfig,
    /// The SSRF guard of HTTP steps.
    pub guard: &'a Guard,
    /// Template rendering.
    pub templates: &'a Templates,
    /// `trigger`, `steps`, `secrets`.
    pub ctx: &'a Value,
    /// This run's credentials by name.
    pub credentials: &'a HashMap<String, Credential>,
    /// The run's owner (whose server-key AI budget a step uses).
    pub owner: uuid::Uuid,
    /// `<run id>/<step key>`, sent as Resend's Idempotency-Key.
    pub idempotency_key: String,
    /// Per-attempt timeout.
    pub timeout: Duration,
}

impl StepEnv<'_> {
    /// Renders one field's template (in the sandbox).
    pub async fn render(&self, field: &str, source: &str) -> Result<String, StepError> {
        self.templates
            .render_as(Some(self.owner), source, self.ctx)
            .await
            .map_err(|e| StepError::permanent(format!("{field}: {e}")))
    }

    fn credential(&self, name: &str) -> Result<&Credential, StepError> {
        self.credentials.get(name).ok_or_else(|| {
            StepError::permanent(format!(
                "the credential \"{name}\" is not connected; connect it on the Connectors page"
            ))
        })
    }
}

/// `transform`: renders the template and parses the result as JSON.
pub async fn transform(env: &StepEnv<'_>, t: &pb::TransformStep) -> Result<Value, StepError> {
    let text = env.render("transform.template", &t.template).await?;
    serde_json::from_str(&text)
        .map_err(|e| StepError::permanent(format!("transform.template did not render valid JSON: {e}")))
}

/// `condition`: evaluates the expression.
pub async fn condition(env: &StepEnv<'_>, c: &pb::ConditionStep) -> Result<bool, StepError> {
    env.templates
        .truthy_as(Some(env.owner), &c.expression, env.ctx)
        .await
        .map_err(|e| StepError::permanent(format!("condition.expression: {e}")))
}

/// `slack`: posts the rendered text to the connected incoming-webhook URL.
pub async fn slack(env: &StepEnv<'_>, s: &pb::SlackStep) -> Result<Value, StepError> {
    let name = crate::template::connector(&s.connector, "slack");
    let url = env.credential(&name)?.value.clone();
    let text = env.render("slack.text", &s.text).await?;
    let parsed = url::Url::parse(url.expose_secret())
        .map_err(|_| StepError::permanent(format!("the credential \"{name}\" is not a URL")))?;
    let host_ok = parsed
        .host_str()
        .is_some_and(|h| env.providers.slack_allowed_hosts.iter().any(|a| a.eq_ignore_ascii_case(h)));
    let scheme_ok =
        parsed.scheme() == "https" || (!env.providers.slack_require_https && parsed.scheme() == "http");
    if !host_ok || !scheme_ok {
        return Err(StepError::permanent(format!(
            "the credential \"{name}\" is not a Slack webhook URL on an allowed host"
        )));
    }
    let response = env
        .http
        .post(parsed)
        .json(&json!({ "text": text }))
        .timeout(env.timeout)
        .send()
        .await
        .map_err(StepError::network)?;
    if !response.status().is_success() {
        return Err(StepError::http("Slack", response.status()));
    }
    Ok(json!({ "ok": true, "text": text }))
}

/// `email`: sends through Resend with an idempotency key of run + step.
pub async fn email(env: &StepEnv<'_>, e: &pb::EmailStep) -> Result<Value, StepError> {
    let name = crate::template::connector(&e.connector, "resend");
    let key = env.credential(&name)?.value.clone();
    let mut to = Vec::with_capacity(e.to.len());
    for (i, t) in e.to.iter().enumerate() {
        let rendered = env.render(&format!("email.to[{i}]"), t).await?;
        to.extend(rendered.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned));
    }
    if to.is_empty() || to.len() > 50 {
        return Err(StepError::permanent("email.to: needs 1-50 recipients after rendering"));
    }
    let mut body = json!({
        "from": env.render("email.from", &e.from).await?,
        "to": to,
        "subject": env.render("email.subject", &e.subject).await?,
    });
    if !e.html.is_empty() {
        body["html"] = Value::String(env.render("email.html", &e.html).await?);
    }
    if !e.text.is_empty() {
        body["text"] = Value::String(env.render("email.text", &e.text).await?);
    }
    let response = env
        .http
        .post(format!("{}/emails", env.providers.resend_base_url.trim_end_matches('/')))
        .bearer_auth(key.expose_secret())
        .header("Idempotency-Key", &env.idempotency_key)
        .json(&body)
        .timeout(env.timeout)
        .send()
        .await
        .map_err(StepError::network)?;
    if !response.status().is_success() {
        return Err(StepError::http("Resend", response.status()));
    }
    let (answer, _) = read_capped(response, 64 * 1024).await?;
    let answer: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
    Ok(json!({ "id": answer["id"], "to": body["to"], "subject": body["subject"] }))
}

/// `http`: calls the rendered URL through the SSRF guard, without redirects.
pub async fn http(env: &StepEnv<'_>, h: &pb::HttpStep, max_body: usize) -> Result<Value, StepError> {
    let raw_url = env.render("http.url", &h.url).await?;
    let url = url::Url::parse(raw_url.trim())
        .map_err(|_| StepError::permanent("http.url: did not render a valid URL"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(StepError::permanent("http.url: only http and https URLs are allowed"));
    }
    let host = url.host_str().ok_or_else(|| StepError::permanent("http.url: has no host"))?.to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs =
        env.guard.resolve(&host, port).await.map_err(|e| StepError::permanent(format!("http.url: {e}")))?;
    // Connect to exactly the checked addresses; never follow redirects.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .resolve_to_addrs(host.trim_start_matches('[').trim_end_matches(']'), &addrs)
        .timeout(env.timeout)
        .build()
        .map_err(|_| StepError::permanent("could not build the HTTP client"))?;
    let method = match h.method() {
        pb::HttpMethod::Get | pb::HttpMethod::Unspecified => reqwest::Method::GET,
        pb::HttpMethod::Post => reqwest::Method::POST,
        pb::HttpMethod::Put => reqwest::Method::PUT,
        pb::HttpMethod::Patch => reqwest::Method::PATCH,
        pb::HttpMethod::Delete => reqwest::Method::DELETE,
    };
    let mut request = client.request(method, url);
    for (i, header) in h.headers.iter().enumerate() {
        let value = env.render(&format!("http.headers[{i}].value"), &header.value).await?;
        request = request.header(header.name.as_str(), value);
    }
    if !h.bearer_connector.is_empty() {
        request = request.bearer_auth(env.credential(&h.bearer_connector)?.value.expose_secret());
    }
    if !h.body.is_empty() {
        let body = env.render("http.body", &h.body).await?;
        let json: Value = serde_json::from_str(&body)
            .map_err(|e| StepError::permanent(format!("http.body did not render valid JSON: {e}")))?;
        request = request.json(&json);
    }
    let response = request.send().await.map_err(StepError::network)?;
    let status = response.status();
    if status.is_redirection() {
        let location =
            response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        return Err(StepError::permanent(format!(
            "the endpoint answered a redirect ({}) to {location:?}; redirects are not followed",
            status.as_u16()
        )));
    }
    if !status.is_success() {
        return Err(StepError::http("the endpoint", status));
    }
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let (body_bytes, truncated) = read_capped(response, max_body).await?;
    let body = if content_type.contains("json") && !truncated {
        serde_json::from_slice(&body_bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body_bytes).into_owned()))
    } else {
        Value::String(String::from_utf8_lossy(&body_bytes).into_owned())
    };
    Ok(json!({ "status": status.as_u16(), "body": body, "truncated": truncated }))
}
