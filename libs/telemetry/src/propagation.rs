//! W3C trace context (`traceparent`, `tracestate`) over gRPC metadata and NATS
//! headers, so one trace spans gateway → services → NATS → executor.

use opentelemetry::{
    Context,
    propagation::{Extractor, Injector, TextMapPropagator as _},
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

fn propagator() -> TraceContextPropagator {
    TraceContextPropagator::new()
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(k, v);
        }
    }
}

struct MetadataExtractor<'a>(&'a tonic::metadata::MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

struct HttpExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HttpExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct NatsInjector<'a>(&'a mut async_nats::HeaderMap);

impl Injector for NatsInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct NatsExtractor<'a>(&'a async_nats::HeaderMap);

impl Extractor for NatsExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }
}

/// Writes the current span's trace context into outgoing gRPC metadata.
pub fn inject_grpc(metadata: &mut tonic::metadata::MetadataMap) {
    let cx = tracing::Span::current().context();
    propagator().inject_context(&cx, &mut MetadataInjector(metadata));
}

/// Reads a trace context from incoming gRPC metadata.
pub fn extract_grpc(metadata: &tonic::metadata::MetadataMap) -> Context {
    propagator().extract(&MetadataExtractor(metadata))
}

/// Reads a trace context from HTTP headers (an incoming gRPC or HTTP request).
pub fn extract_http(headers: &http::HeaderMap) -> Context {
    propagator().extract(&HttpExtractor(headers))
}

/// Writes the current span's trace context into NATS message headers.
pub fn inject_nats(headers: &mut async_nats::HeaderMap) {
    let cx = tracing::Span::current().context();
    propagator().inject_context(&cx, &mut NatsInjector(headers));
}

/// Reads a trace context from NATS message headers.
pub fn extract_nats(headers: &async_nats::HeaderMap) -> Context {
    propagator().extract(&NatsExtractor(headers))
}

/// Makes `span` a child of the remote context `cx` (no-op when `cx` carries none).
pub fn set_remote_parent(span: &tracing::Span, cx: Context) {
    use opentelemetry::trace::TraceContextExt as _;
    if cx.span().span_context().is_valid() {
        // Fails only when the span is disabled; then there is nothing to link.
        let _ = span.set_parent(cx);
    }
}

/// A tonic client interceptor that adds the current trace context to every call.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceInterceptor;

impl tonic::service::Interceptor for TraceInterceptor {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        inject_grpc(request.metadata_mut());
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    fn with_tracing<R>(f: impl FnOnce() -> R) -> R {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, f)
    }

    fn trace_id(span: &tracing::Span) -> opentelemetry::trace::TraceId {
        span.context().span().span_context().trace_id()
    }

    #[test]
    fn grpc_metadata_carries_the_trace_to_a_child_span() {
        with_tracing(|| {
            let root = tracing::info_span!("gateway.request");
            let root_trace = trace_id(&root);
            assert_ne!(root_trace, opentelemetry::trace::TraceId::INVALID);

            let mut metadata = tonic::metadata::MetadataMap::new();
            root.in_scope(|| inject_grpc(&mut metadata));
            let header = metadata.get("traceparent").expect("traceparent").to_str().unwrap().to_owned();
            assert!(header.starts_with(&format!("00-{root_trace}-")), "{header}");

            // The callee: a fresh span, parented from the metadata.
            let server = tracing::info_span!("catalog.verify_webhook");
            set_remote_parent(&server, extract_grpc(&metadata));
            assert_eq!(trace_id(&server), root_trace);
        });
    }

    #[test]
    fn interceptor_injects_the_current_context() {
        use tonic::service::Interceptor as _;
        with_tracing(|| {
            let root = tracing::info_span!("client");
            let req = root.in_scope(|| TraceInterceptor.call(tonic::Request::new(())).unwrap());
            let cx = extract_grpc(req.metadata());
            assert_eq!(cx.span().span_context().trace_id(), trace_id(&root));
        });
    }

    #[test]
    fn nats_headers_carry_the_trace() {
        with_tracing(|| {
            let root = tracing::info_span!("publish");
            let mut headers = async_nats::HeaderMap::new();
            root.in_scope(|| inject_nats(&mut headers));
            let consumer = tracing::info_span!("executor.intake");
            set_remote_parent(&consumer, extract_nats(&headers));
            assert_eq!(trace_id(&consumer), trace_id(&root));
        });
    }

    #[test]
    fn missing_or_garbage_context_starts_a_new_trace() {
        with_tracing(|| {
            let mut metadata = tonic::metadata::MetadataMap::new();
            metadata.insert("traceparent", "00-garbage-garbage-01".parse().unwrap());
            let span = tracing::info_span!("server");
            set_remote_parent(&span, extract_grpc(&metadata));
            assert_ne!(trace_id(&span), opentelemetry::trace::TraceId::INVALID);
        });
    }
}
