//! The middleware every request passes, outermost first: a span per request →
//! request metrics → security headers → (API and dashboard only) session
//! resolution with revocation check and the per-session rate limit → CSRF (same
//! origin + synchronizer token) → the handler. Webhooks, `/static`, health and
//! the OpenAPI document never look at the session cookie (`routes` applies the
//! layers).

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::{ConnectInfo, MatchedPath, Request, State},
    http::{HeaderValue, Method, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use bizops_errors::{Error, ErrorCode};

use crate::shared::{
    csrf,
    error::{ApiError, csrf_rejected, rate_limited},
    extract::ClientIp,
    page::error_page,
    ratelimit::source_key,
    session::CurrentSession,
    state::{SessionSlot, Shared},
};

/// The Content-Security-Policy of every response: no inline script or style.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// State-changing routes that need the same origin but no token (no session yet).
const TOKEN_EXEMPT: &[&str] = &["/api/v1/auth/login", "/api/v1/auth/register", "/signin", "/signup"];

fn wants_json(path: &str) -> bool {
    path.starts_with("/api/") || path.starts_with("/hooks/")
}

/// An error in the form the path's client expects (JSON for the API, HTML otherwise).
pub fn error_for(st: &Shared, path: &str, session: Option<&CurrentSession>, error: Error) -> Response {
    if wants_json(path) { ApiError(error).into_response() } else { error_page(st, session, error) }
}

/// Resolves the session cookie (identity's VerifySession, cached ≤ 5 s) and
/// applies the per-session rate limit. A cookie identity no longer accepts is
/// removed in the response.
pub async fn session_layer(State(st): State<Shared>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let mut clear = false;
    let session = match st.cookies.read(req.headers()) {
        None => None,
        Some(token) => {
            let answer = match st.sessions.cached(&token) {
                Some(answer) => Ok(answer),
                None => {
                    // A cookie identity has not vouched for lately: a source that
                    // keeps sending refused cookies is held back before identity is asked.
                    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
                    let source =
                        ClientIp::of(req.headers(), peer, st.client_ip_header.as_ref()).0.map(source_key);
                    if let Some(wait) = source.and_then(|s| st.limits.invalid_session_per_source.blocked(&s))
                    {
                        metrics::counter!("gateway_invalid_session_throttled_total").increment(1);
                        return error_for(&st, &path, None, rate_limited(wait));
                    }
                    let answer = st.sessions.ask(token).await;
                    if let (Ok(None), Some(source)) = (&answer, source) {
                        st.limits.invalid_session_per_source.charge(&source);
                    }
                    answer
                }
            };
            match answer {
                Ok(Some(s)) => Some(s),
                Ok(None) => {
                    clear = true;
                    None
                }
                Err(e) => return error_for(&st, &path, None, e),
            }
        }
    };
    if let Some(s) = &session
        && let Err(wait) = st.limits.api_per_session.check(&s.session_id)
    {
        return error_for(&st, &path, Some(s), rate_limited(wait));
    }
    let token = session.as_ref().map(|s| s.token.clone());
    req.extensions_mut().insert(SessionSlot(session));
    let mut response = next.run(req).await;
    // A backend refused the session's token (revoked since the cached answer, or an
    // access token that ran out during a long request): forget the cached answer,
    // and remove the cookie only if identity says the session is over.
    if let Some(token) = token
        && response.extensions().get::<ErrorCode>() == Some(&ErrorCode::Unauthenticated)
    {
        st.sessions.forget(&token);
        if matches!(st.sessions.ask(token).await, Ok(None)) {
            clear = true;
        }
    }
    if clear && !response.headers().contains_key(header::SET_COOKIE) {
        response.headers_mut().append(header::SET_COOKIE, st.cookies.clear());
    }
    response
}

fn is_form(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"))
}

/// CSRF: every state-changing request must come from our origin and, when it
/// carries a session, the session's token (header or form field).
pub async fn csrf_layer(State(st): State<Shared>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let path = req.uri().path().to_owned();
    let session = req.extensions().get::<SessionSlot>().and_then(|s| s.0.clone());
    let reject = |why: &'static str| {
        metrics::counter!("gateway_csrf_rejections_total", "reason" => why).increment(1);
        tracing::info!(reason = why, "state-changing request refused");
        error_for(&st, &path, session.as_ref(), csrf_rejected("refused: reload the page and try again"))
    };
    if !st.csrf.same_origin(req.headers()) {
        return reject("cross_origin");
    }
    if TOKEN_EXEMPT.contains(&path.as_str()) {
        return next.run(req).await;
    }
    // Without a session there is no ambient credential to abuse; the handler answers 401.
    let Some(s) = session.clone() else { return next.run(req).await };
    if let Some(value) = req.headers().get(csrf::HEADER) {
        return match value.to_str() {
            Ok(token) if st.csrf.verify(s.session_id, token) => next.run(req).await,
            _ => reject("bad_token"),
        };
    }
    if !is_form(&req) {
        return reject("missing_token");
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, st.api_body_bytes).await else {
        return error_for(
            &st,
            &path,
            Some(&s),
            Error::new(ErrorCode::PayloadTooLarge, "the form is larger than allowed"),
        );
    };
    let token =
        url::form_urlencoded::parse(&bytes).find(|(k, _)| k == csrf::FORM_FIELD).map(|(_, v)| v.into_owned());
    match token {
        Some(token) if st.csrf.verify(s.session_id, &token) => {
            next.run(Request::from_parts(parts, Body::from(bytes))).await
        }
        Some(_) => reject("bad_token"),
        None => reject("missing_token"),
    }
}

/// Security headers on every response.
pub async fn security_headers(State(st): State<Shared>, req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // `same-origin`, not `no-referrer`: with `no-referrer` browsers send `Origin: null`
    // on same-origin form posts, which the CSRF origin check must refuse.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=()"),
    );
    if st.hsts {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// `http_server_requests_total{method,route,status}` and
/// `http_server_request_duration_seconds{method,route}`; the route is the
/// matched template (`/api/v1/pilots/{pilot_id}`), never the raw path.
/// Load shedding and the request deadline: at most `limits.max_in_flight`
/// requests are handled at once (the rest get 503 with `Retry-After: 1` at once,
/// never a queue), and a response not produced within `timeouts.request` is a 504.
/// Health probes are neither shed nor timed. A streamed body (a live view) is not
/// held to either once its response has started.
pub async fn shed_and_deadline(State(st): State<Shared>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if path == "/healthz" || path == "/readyz" {
        return next.run(req).await;
    }
    let Ok(_permit) = st.in_flight.clone().try_acquire_owned() else {
        metrics::counter!("gateway_requests_shed_total").increment(1);
        let busy = Error::new(ErrorCode::Unavailable, "the service is busy; try again in a moment")
            .with_retry_after(Duration::from_secs(1));
        return error_for(&st, &path, None, busy);
    };
    match tokio::time::timeout(st.request_timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!("gateway_requests_timed_out_total").increment(1);
            let late = Error::new(
                ErrorCode::DeadlineExceeded,
                format!("the request took longer than {} s", st.request_timeout.as_secs()),
            );
            error_for(&st, &path, None, late)
        }
    }
}

pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(req).await;
    metrics::histogram!("http_server_request_duration_seconds", "method" => method.clone(), "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(
        "http_server_requests_total",
        "method" => method, "route" => route, "status" => response.status().as_u16().to_string()
    )
    .increment(1);
    response
}

pub fn request_span(req: &Request) -> tracing::Span {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |m| m.as_str());
    let span = tracing::info_span!(
        "http.request",
        otel.name = tracing::field::Empty,
        otel.kind = "server",
        http.method = %req.method(),
        http.route = %route,
        http.status = tracing::field::Empty,
    );
    // The span's name as OpenTelemetry shows it costs a formatted string (and, with
    // JSON logs, a re-encoding of the span's fields) per request: only when spans
    // are exported.
    if bizops_telemetry::exporting() {
        span.record("otel.name", format!("{} {route}", req.method()).as_str());
    }
    bizops_telemetry::propagation::set_remote_parent(
        &span,
        bizops_telemetry::propagation::extract_http(req.headers()),
    );
    span
}
