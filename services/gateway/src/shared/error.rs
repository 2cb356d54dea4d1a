//! The one HTTP error shape, `{"error": {"code": "...", "message": "...", "field":
//! "..."}}` (`field` only when the error is about one), built from
//! `bizops_errors::Error` (the cause is logged, never returned).

use std::time::Duration;

use axum::{
    Json,
    response::{IntoResponse, Response},
};
use bizops_errors::{CODE_METADATA_KEY, Error, ErrorCode};
use http::{HeaderValue, header};

/// An error answered as JSON (API, webhooks).
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = self.0.to_http();
        let mut response = (status, Json(body)).into_response();
        // Lets the session middleware see that a backend refused the session.
        response.extensions_mut().insert(self.0.code());
        if let Some(after) = self.0.retry_after() {
            set_retry_after(&mut response, after);
        }
        response
    }
}

/// Adds `Retry-After` in whole seconds, rounded up, at least 1.
pub fn set_retry_after(response: &mut Response, after: Duration) {
    let secs = (after.as_secs() + u64::from(after.subsec_nanos() > 0)).max(1);
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
}

/// `RATE_LIMITED` with the time to wait.
pub fn rate_limited(after: Duration) -> Error {
    Error::new(ErrorCode::RateLimited, "too many requests; wait and try again").with_retry_after(after)
}

/// `CSRF_REJECTED`.
pub fn csrf_rejected(why: &'static str) -> Error {
    Error::new(ErrorCode::CsrfRejected, why)
}

/// `UNAUTHENTICATED` for a request without a valid session.
pub fn unauthenticated() -> Error {
    Error::new(ErrorCode::Unauthenticated, "sign in first")
}

/// A gRPC status from a backend, as an error the client may see. A status our
/// services produced carries its code in metadata and a safe message; anything
/// else (a transport failure, a proxy) may carry internal detail in its text, so
/// it gets a generic message and its text is only logged.
pub fn from_backend(rpc: &'static str, status: &tonic::Status) -> Error {
    if status.metadata().get(CODE_METADATA_KEY).is_some() {
        return Error::from_status(status);
    }
    let code = ErrorCode::from_grpc(status.code());
    let cause = std::io::Error::other(format!("{rpc}: {:?}: {}", status.code(), status.message()));
    match code {
        ErrorCode::Unavailable => Error::unavailable(cause),
        ErrorCode::DeadlineExceeded => {
            Error::new(ErrorCode::DeadlineExceeded, "a service this request needs did not answer in time")
                .with_source(cause)
        }
        ErrorCode::Internal => Error::internal(cause),
        other => Error::new(other, generic_message(other)).with_source(cause),
    }
}

fn generic_message(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::NotFound => "not found",
        ErrorCode::Unauthenticated => "sign in first",
        ErrorCode::PermissionDenied => "not allowed",
        ErrorCode::InvalidArgument => "the request is not valid",
        ErrorCode::AlreadyExists => "it exists already",
        ErrorCode::StaleVersion => "someone saved a newer version; reload and try again",
        ErrorCode::FailedPrecondition => "the current state does not allow this",
        ErrorCode::RateLimited => "too many requests; wait and try again",
        _ => "the request failed",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn foreign_statuses_never_leak_their_text() {
        let status = tonic::Status::unavailable("tcp connect error: 10.1.2.3:50052 refused");
        let e = from_backend("GetPilot", &status);
        assert_eq!(e.code(), ErrorCode::Unavailable);
        assert!(!e.message().contains("10.1.2.3"));
        assert!(e.retry_after().is_some());
        let e = from_backend("GetPilot", &tonic::Status::not_found("row 17 in catalog.pilots"));
        assert_eq!((e.code(), e.message()), (ErrorCode::NotFound, "not found"));
    }

    #[test]
    fn our_statuses_keep_code_and_message() {
        let status: tonic::Status = Error::invalid("title", "is required").into();
        let e = from_backend("CreatePilot", &status);
        assert_eq!((e.code(), e.message()), (ErrorCode::InvalidArgument, "title: is required"));
        assert_eq!((e.field(), e.problem()), (Some("title"), Some("is required")));
    }

    #[tokio::test]
    async fn responses_have_the_one_shape_and_retry_after() {
        let response = ApiError(rate_limited(Duration::from_millis(1200))).into_response();
        assert_eq!(response.status(), http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "RATE_LIMITED");
        assert!(v["error"]["message"].is_string());
    }
}
