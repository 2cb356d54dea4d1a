//! Prometheus metrics: one global recorder per process, a `/metrics` endpoint on
//! the service's metrics port, and a tower layer that counts and times every RPC.

use std::{
    future::Future,
    pin::Pin,
    sync::OnceLock,
    task::{Context, Poll},
    time::Instant,
};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Histogram buckets (seconds) for request and step latencies.
const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Installs the process-wide Prometheus recorder (once) and returns its handle.
pub fn recorder() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let recorder = PrometheusBuilder::new().set_buckets(LATENCY_BUCKETS)?.build_recorder();
    let handle = recorder.handle();
    // Another thread may have won the race; then use its handle.
    if HANDLE.set(handle.clone()).is_ok() {
        metrics::set_global_recorder(recorder)?;
    }
    HANDLE.get().cloned().ok_or_else(|| anyhow::anyhow!("metrics recorder missing"))
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    handle: PrometheusHandle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move {
                handle.run_upkeep();
                ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle.render())
            }
        }),
    );
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

/// A tower layer for gRPC servers: counts `grpc_server_requests_total{service,method,code}`
/// and records `grpc_server_request_duration_seconds{service,method}`.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

/// The service of [`GrpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = GrpcMetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let (service, method) = crate::grpc::split_path(req.uri().path());
        let (service, method) = (service.to_owned(), method.to_owned());
        GrpcMetricsFuture { inner: self.inner.call(req), start: Instant::now(), service, method }
    }
}

pin_project_lite::pin_project! {
    /// Future of [`GrpcMetrics`].
    pub struct GrpcMetricsFuture<F> {
        #[pin]
        inner: F,
        start: Instant,
        service: String,
        method: String,
    }
}

impl<F, R, E> Future for GrpcMetricsFuture<F>
where
    F: Future<Output = Result<http::Response<R>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        // Unary errors are "trailers-only": grpc-status sits in the headers. A missing
        // header means the status follows in the trailers, which for unary RPCs of
        // this suite means OK.
        let code = match &out {
            Ok(resp) => resp
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .map(|c| format!("{:?}", tonic::Code::from_i32(c)))
                .unwrap_or_else(|| "Ok".to_owned()),
            Err(_) => "TransportError".to_owned(),
        };
        let service = std::mem::take(this.service);
        let method = std::mem::take(this.method);
        metrics::histogram!("grpc_server_request_duration_seconds", "service" => service.clone(), "method" => method.clone())
            .record(this.start.elapsed().as_secs_f64());
        metrics::counter!("grpc_server_requests_total", "service" => service, "method" => method, "code" => code)
            .increment(1);
        Poll::Ready(out)
    }
}
