//! The whole application: every feature's routes, the OpenAPI document made
//! from their annotations, the routes no feature owns (health, static files,
//! fallbacks) and the middleware (`shared::middleware`) around them. This is the
//! one module that knows every feature; no module imports it but `app`.

use std::sync::Arc;

use axum::{
    Router,
    extract::{DefaultBodyLimit, Request, State},
    http::{StatusCode, header},
    middleware::{from_fn, from_fn_with_state},
    response::{IntoResponse, Response},
    routing::get,
};
use bizops_errors::{Error, ErrorCode};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

use crate::{
    account, approvals, connectors, hooks, pilots, runs,
    shared::{
        error::ApiError,
        middleware::{
            csrf_layer, error_for, request_span, security_headers, session_layer, shed_and_deadline, track,
        },
        openapi::ApiDoc,
        state::{SessionSlot, Shared},
    },
};

/// The JSON API under `/api/v1`, with its OpenAPI document.
fn api() -> OpenApiRouter<Shared> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(account::api::routes())
        .merge(pilots::api::routes())
        .merge(runs::api::routes())
        .merge(approvals::api::routes())
        .merge(connectors::api::routes())
}

/// The dashboard.
fn pages() -> Router<Shared> {
    Router::new()
        .merge(account::pages::routes())
        .merge(pilots::pages::routes())
        .merge(runs::pages::routes())
        .merge(approvals::pages::routes())
        .merge(connectors::pages::routes())
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(st): State<Shared>) -> Response {
    let connected = st.nats.connection_state() == async_nats::connection::State::Connected;
    let draining = st.draining.load(std::sync::atomic::Ordering::Relaxed);
    if connected && !draining {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, if draining { "shutting down" } else { "NATS not connected" })
            .into_response()
    }
}

async fn static_file(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, content_type): (&'static str, &'static str) = match file.as_str() {
        "app.css" => (include_str!("../static/app.css"), "text/css; charset=utf-8"),
        "app.js" => (include_str!("../static/app.js"), "text/javascript; charset=utf-8"),
        "favicon.svg" => (include_str!("../static/favicon.svg"), "image/svg+xml"),
        _ => return ApiError(Error::not_found("file")).into_response(),
    };
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=300")], body)
        .into_response()
}

async fn fallback(State(st): State<Shared>, req: Request) -> Response {
    let session = None;
    error_for(&st, req.uri().path(), session, Error::not_found("page"))
}

async fn method_not_allowed(State(st): State<Shared>, req: Request) -> Response {
    let error =
        Error::new(ErrorCode::MethodNotAllowed, format!("method {} is not allowed here", req.method()));
    let session = req.extensions().get::<SessionSlot>().and_then(|s| s.0.clone());
    error_for(&st, req.uri().path(), session.as_ref(), error)
}

/// The whole application and its OpenAPI document.
pub fn router(st: Shared) -> (Router, Arc<String>) {
    let (api, mut openapi) = api().split_for_parts();
    let (hooks, hooks_doc) = hooks::routes().split_for_parts();
    openapi.merge(hooks_doc);
    let document = Arc::new(openapi.to_pretty_json().unwrap_or_else(|_| "{}".to_owned()));
    let served = document.clone();

    let with_session = Router::new()
        .merge(api)
        .merge(pages())
        .layer(from_fn_with_state(st.clone(), csrf_layer))
        .layer(from_fn_with_state(st.clone(), session_layer))
        .layer(DefaultBodyLimit::max(st.api_body_bytes));

    let router = Router::new()
        .merge(with_session)
        .merge(hooks.layer(DefaultBodyLimit::disable()))
        .route(
            "/api/openapi.json",
            get(move || {
                let served = served.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], served.as_str().to_owned()) }
            }),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/static/{file}", get(static_file))
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(st.clone(), shed_and_deadline))
        .layer(from_fn(track))
        .layer(from_fn_with_state(st.clone(), security_headers))
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(request_span).on_response(
            |response: &Response, latency: std::time::Duration, span: &tracing::Span| {
                if bizops_telemetry::exporting() {
                    span.record("http.status", response.status().as_u16());
                }
                tracing::debug!(
                    status = response.status().as_u16(),
                    latency_ms = latency.as_millis() as u64,
                    "request done"
                );
            },
        ))
        .with_state(st);
    (router, document)
}
