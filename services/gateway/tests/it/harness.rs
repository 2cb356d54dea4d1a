//! Starts the gateway in-process on port 0 against the in-memory fakes and the
//! real local NATS (a unique prefix per test), and drives it like a browser.

use std::{collections::BTreeSet, time::Duration};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use bizops_authn::{ServiceSigner, SigningKey};
use bizops_testkit::{InProcess, LogCapture, any_port};
use gateway::{App, GatewayConfig};
use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::Value;
use uuid::Uuid;

use crate::fakes::{FakeServer, Fakes, World};

/// What browsers send as `Origin`: the configured public origin.
pub const ORIGIN: &str = "https://gateway.test";
/// The production cookie name.
pub const COOKIE: &str = "__Host-bizops_session";
/// A password the fake identity accepts.
pub const PASSWORD: &str = "correct horse battery staple";

pub struct Gateway {
    pub base: String,
    pub fakes: Fakes,
    pub prefix: String,
    pub js: async_nats::jetstream::Context,
    pub logs: LogCapture,
    pub gateway: ServiceSigner,
    _backends: FakeServer,
    _server: InProcess,
}

impl Gateway {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut GatewayConfig)) -> Self {
        let logs = capture_logs_and_traces();
        bizops_telemetry::install_crypto_provider();
        let key = SigningKey::generate("gateway").unwrap();
        let gateway = ServiceSigner::new("gateway", key.clone());
        let fakes = Fakes { world: Default::default(), gateway_key: gateway.public_key() };
        let backends = FakeServer::start(fakes.clone()).await;
        let url = format!("http://{}", backends.addr);
        let prefix = bizops_testkit::nats_prefix();
        let mut config = GatewayConfig {
            http_addr: any_port(),
            metrics_addr: any_port(),
            identity_url: url.clone(),
            catalog_url: url.clone(),
            vault_url: url.clone(),
            executor_url: url,
            public_origin: ORIGIN.into(),
            csrf_key: Some(STANDARD.encode([9u8; 32]).into()),
            shutdown_drain: Duration::ZERO,
            shutdown_grace: Duration::from_secs(5),
            ..GatewayConfig::default()
        };
        config.auth.service_key = Some(key.to_secret_string());
        config.nats.url = bizops_testkit::nats_url().into();
        config.nats.prefix = prefix.clone();
        config.timeouts.rpc = Duration::from_secs(5);
        adjust(&mut config);
        let app = App::build(config).await.expect("gateway builds");
        let addr = app.http_addr().unwrap();
        let server = InProcess::start(addr, |until| app.run_until(until));
        let nats = async_nats::connect(bizops_testkit::nats_url()).await.unwrap();
        let js = async_nats::jetstream::new(nats);
        Self {
            base: format!("http://{addr}"),
            fakes,
            prefix,
            js,
            logs,
            gateway,
            _backends: backends,
            _server: server,
        }
    }

    pub fn browser(&self) -> Browser {
        Browser::new(&self.base)
    }

    pub fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.fakes.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A signed-in browser of a fresh account.
    pub async fn user(&self) -> Browser {
        let mut b = self.browser();
        b.sign_up_and_in(&format!("{}@example.com", Uuid::now_v7().simple())).await;
        b
    }

    /// Creates a Pilot through the API; returns (id, secret).
    pub async fn pilot(&self, b: &mut Browser, title: &str) -> (Uuid, String) {
        let r = b.post_json("/api/v1/pilots", &serde_json::json!({"spec": sample_spec(title)})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let v = r.json();
        (
            v["pilot"]["id"].as_str().unwrap().parse().unwrap(),
            v["webhook_secret"].as_str().unwrap().to_owned(),
        )
    }

    /// Messages stored in the triggers stream.
    pub async fn stored_triggers(&self) -> u64 {
        let mut stream = self.js.get_stream(format!("{}_TRIGGERS", self.prefix)).await.unwrap();
        stream.info().await.unwrap().state.messages
    }
}

/// Like `bizops_testkit::capture_logs` (every event at TRACE, as JSON, into one
/// capture), plus the OpenTelemetry layer the binary installs
/// (`bizops_telemetry::init`), so spans carry W3C trace ids and calls carry
/// `traceparent` as in production.
fn capture_logs_and_traces() -> LogCapture {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::{EnvFilter, layer::SubscriberExt as _, util::SubscriberInitExt as _};
    static CAPTURE: std::sync::OnceLock<LogCapture> = std::sync::OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = LogCapture::default();
            let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
            let _ = tracing_subscriber::registry()
                .with(EnvFilter::new("trace"))
                .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("gateway-it")))
                .with(
                    tracing_subscriber::fmt::layer()
                        .json()
                        .with_current_span(true)
                        .with_span_list(true)
                        .with_writer(capture.clone()),
                )
                .try_init();
            capture
        })
        .clone()
}

pub fn sample_spec(title: &str) -> Value {
    serde_json::json!({
        "title": title,
        "description": "Tell the team about new orders, after a yes.",
        "steps": [
            {"key": "ask", "kind": "approval", "config": {"message": "Post it?"}},
            {"key": "notify", "kind": "slack", "config": {"text": "New order {{ trigger.id }}"}, "requires_approval": false}
        ],
        "schedules": [{"cron": "0 9 * * 1-5", "timezone": "Europe/Berlin"}]
    })
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn error_code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or_default().to_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect()
    }

    #[track_caller]
    pub fn assert(&self, status: StatusCode) -> &Self {
        assert_eq!(self.status, status, "{}", self.body);
        self
    }
}

/// A browser: one cookie jar (the session cookie), `Origin` on state-changing
/// requests, the CSRF token remembered from the last session answer.
pub struct Browser {
    http: reqwest::Client,
    pub base: String,
    pub origin: Option<String>,
    pub cookie: Option<(String, String)>,
    pub csrf: Option<String>,
    /// Every cookie name any response ever set.
    pub cookie_names: BTreeSet<String>,
    pub email: String,
}

impl Browser {
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self {
            http,
            base: base.to_owned(),
            origin: Some(ORIGIN.into()),
            cookie: None,
            csrf: None,
            cookie_names: BTreeSet::new(),
            email: String::new(),
        }
    }

    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Resp {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.base));
        if let Some((name, value)) = &self.cookie {
            req = req.header("cookie", format!("{name}={value}"));
        }
        if method != Method::GET
            && let Some(origin) = &self.origin
        {
            req = req.header("origin", origin);
        }
        let response = build(req).send().await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        for cookie in headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()) {
            let (pair, attrs) = cookie.split_once(';').unwrap_or((cookie, ""));
            let (name, value) = pair.split_once('=').unwrap();
            self.cookie_names.insert(name.to_owned());
            if value.is_empty() || attrs.contains("Max-Age=0") {
                self.cookie = None;
            } else {
                self.cookie = Some((name.to_owned(), value.to_owned()));
            }
        }
        let body = response.text().await.unwrap_or_default();
        Resp { status, headers, body }
    }

    pub async fn get(&mut self, path: &str) -> Resp {
        self.send(Method::GET, path, |r| r).await
    }

    pub async fn json(&mut self, method: Method, path: &str, body: &Value) -> Resp {
        let token = self.csrf.clone();
        let body = body.clone();
        self.send(method, path, move |r| {
            let r = r.json(&body);
            match token {
                Some(t) => r.header("x-csrf-token", t),
                None => r,
            }
        })
        .await
    }

    pub async fn post_json(&mut self, path: &str, body: &Value) -> Resp {
        self.json(Method::POST, path, body).await
    }

    /// A form post with the session's CSRF token in the `csrf_token` field.
    pub async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let mut pairs: Vec<(String, String)> =
            fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        if let Some(t) = &self.csrf {
            pairs.push(("csrf_token".into(), t.clone()));
        }
        self.send(Method::POST, path, move |r| r.form(&pairs)).await
    }

    /// Registers and signs in through the API; remembers the CSRF token.
    pub async fn sign_up_and_in(&mut self, email: &str) {
        self.email = email.to_owned();
        let r = self
            .post_json("/api/v1/auth/register", &serde_json::json!({"email": email, "password": PASSWORD}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        self.sign_in(PASSWORD).await;
    }

    pub async fn sign_in(&mut self, password: &str) -> Resp {
        let email = self.email.clone();
        let r = self
            .post_json("/api/v1/auth/login", &serde_json::json!({"email": email, "password": password}))
            .await;
        if r.status == StatusCode::OK {
            self.csrf = r.json()["csrf_token"].as_str().map(str::to_owned);
        }
        r
    }
}
