//! Starts the gateway in-process on port 0 against the in-memory fakes and the
//! real local NATS (a unique prefix per test), and drives it like a browser.

use std::time::Duration;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use bizops_authn::{ServiceSigner, SigningKey};
use bizops_testkit::{InProcess, LogCapture, any_port};
use gateway::{App, GatewayConfig};
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::fakes::{FakeServer, Fakes, World};

pub use bizops_testkit::browser::{Browser, COOKIE, ORIGIN, PASSWORD, Resp};

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
