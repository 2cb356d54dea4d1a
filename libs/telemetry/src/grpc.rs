//! Server-side span per RPC, parented from the caller's trace context.

/// A span for one incoming gRPC request, named after the RPC and parented from the
/// `traceparent` in its metadata. Use with `tonic::transport::Server::trace_fn`.
pub fn request_span(request: &http::Request<()>) -> tracing::Span {
    let path = request.uri().path();
    let (service, method) = split_path(path);
    let span = tracing::info_span!(
        "grpc.request",
        otel.name = %path.trim_start_matches('/'),
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
    );
    crate::propagation::set_remote_parent(&span, crate::propagation::extract_http(request.headers()));
    span
}

/// `/pkg.Service/Method` → (`pkg.Service`, `Method`).
pub(crate) fn split_path(path: &str) -> (&str, &str) {
    let trimmed = path.trim_start_matches('/');
    trimmed.split_once('/').unwrap_or((trimmed, ""))
}
