//! Process start-up shared by every BizOps binary: the tracing subscriber (JSON or
//! pretty), OpenTelemetry traces exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! is set, W3C trace context over gRPC metadata and NATS headers, Prometheus metrics,
//! the process-wide rustls crypto provider and the shutdown signal.
#![forbid(unsafe_code)]

mod export;
pub mod grpc;
pub mod metrics;
pub mod propagation;

use std::sync::OnceLock;

use bizops_config::{LogConfig, LogFormat};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing_subscriber::{EnvFilter, Layer as _, layer::SubscriberExt as _, util::SubscriberInitExt as _};

/// Re-exported so services do not need their own dependency for span context.
pub use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Keeps the tracer provider alive; flushes and shuts it down on drop.
#[must_use = "dropping the guard shuts tracing export down"]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        // Best effort: the collector may be gone at shutdown.
        let _ = self.provider.shutdown();
    }
}

/// Installs the global tracing subscriber: an `EnvFilter`, log lines in the chosen
/// format on stdout, and — when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, the standard OpenTelemetry variables) is
/// set — an OpenTelemetry layer whose spans carry W3C trace context across services
/// and are exported over OTLP/gRPC. Without an endpoint no OpenTelemetry span is
/// built at all (spans nobody exports would cost CPU on every request), and no
/// trace context is sent.
///
/// `service` is also the OpenTelemetry `service.name`. `RUST_LOG`, when set,
/// overrides the configured filter.
pub fn init(service: &'static str, log: &LogConfig) -> anyhow::Result<TelemetryGuard> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(directives)?,
        _ => EnvFilter::try_new(&log.filter)?,
    };
    let (provider, exporting) = tracer_provider(service)?;
    EXPORTING.store(exporting, std::sync::atomic::Ordering::Relaxed);
    let otel = exporting.then(|| tracing_opentelemetry::layer().with_tracer(provider.tracer(service)));
    let fmt = match log.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().with_target(true).boxed(),
    };
    tracing_subscriber::registry().with(filter).with(otel).with(fmt).try_init()?;
    Ok(TelemetryGuard { provider })
}

/// Whether [`init`] installed an exporting OpenTelemetry layer.
static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether spans are exported (an OTLP endpoint is configured): span fields only
/// OpenTelemetry reads (`otel.name`, a response status recorded late) are worth
/// their cost on every request only then.
pub fn exporting() -> bool {
    EXPORTING.load(std::sync::atomic::Ordering::Relaxed)
}

/// The tracer provider, and whether it exports.
fn tracer_provider(service: &'static str) -> anyhow::Result<(SdkTracerProvider, bool)> {
    let resource = Resource::builder().with_service_name(service).build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    let endpoint_set = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").is_ok_and(|v| !v.is_empty())
        || std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_ok_and(|v| !v.is_empty());
    let provider = if endpoint_set {
        builder.with_batch_exporter(export::otlp_exporter()?).build()
    } else {
        builder.build()
    };
    Ok((provider, endpoint_set))
}

/// Installs ring as the process-wide rustls crypto provider. Every binary calls this
/// first, before any TLS client (sqlx, reqwest, tonic) is built; the workspace links
/// no other provider (no aws-lc-sys). Idempotent.
pub fn install_crypto_provider() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        // Err means a provider is installed already, which is what we want.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Resolves when the process receives SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("received interrupt, shutting down"),
        () = term => tracing::info!("received SIGTERM, shutting down"),
    }
}
