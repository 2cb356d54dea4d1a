//! The extractors of JSON and dashboard handlers. Their rejections use the one
//! error shape: JSON for the API (`ApiError`), the error page for the dashboard.

use std::net::{IpAddr, SocketAddr};

use axum::{
    Form, Json,
    extract::{
        ConnectInfo, FromRequest, FromRequestParts, Path, Query, Request,
        rejection::{FormRejection, PathRejection, QueryRejection},
    },
    http::StatusCode,
    response::{Redirect, Response},
};
use bizops_errors::{Error, ErrorCode};
use http::{HeaderName, request::Parts};
use serde::de::DeserializeOwned;

use crate::shared::{
    error::{ApiError, unauthenticated},
    page::error_page,
    session::CurrentSession,
    state::{SessionSlot, Shared},
};

// ---------------------------------------------------------------- JSON API

/// The signed-in session of an API request (401 without one).
pub struct Authed(pub CurrentSession);

impl FromRequestParts<Shared> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &Shared) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<SessionSlot>()
            .and_then(|s| s.0.clone())
            .map(Authed)
            .ok_or_else(|| ApiError(unauthenticated()))
    }
}

/// A JSON body whose rejections use the one error shape.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(ApiError(json_rejection(&rejection))),
        }
    }
}

fn json_rejection(rejection: &axum::extract::rejection::JsonRejection) -> Error {
    use axum::extract::rejection::JsonRejection as R;
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return Error::new(ErrorCode::PayloadTooLarge, "the request body is too large");
    }
    match rejection {
        R::MissingJsonContentType(_) => {
            Error::invalid("body", "send JSON with the header Content-Type: application/json")
        }
        R::JsonSyntaxError(_) => Error::invalid("body", "is not valid JSON"),
        R::JsonDataError(e) => {
            // serde's message names the field and what was expected.
            let detail: String = e.body_text().chars().take(300).collect();
            let detail =
                detail.trim_start_matches("Failed to deserialize the JSON body into the target type: ");
            let error = Error::invalid("body", detail);
            // The path of the value serde could not read (`spec.steps[0].config`).
            match json_path(e) {
                Some(path) => {
                    let problem = detail.strip_prefix(&format!("{path}: ")).unwrap_or(detail).to_owned();
                    error.with_field(path, problem)
                }
                None => error,
            }
        }
        _ => Error::invalid("body", "could not be read"),
    }
}

/// Where in the body a JSON data error is (`None` at the top level).
fn json_path(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(e);
    while let Some(error) = next {
        if let Some(found) = error.downcast_ref::<serde_path_to_error::Error<serde_json::Error>>() {
            let path = found.path().to_string();
            return (path != ".").then_some(path);
        }
        next = error.source();
    }
    None
}

/// A path parameter whose rejections (not a number, not UTF-8) use the one error shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// A query string whose rejections use the one error shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError(path_rejection(&rejection))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError(query_rejection(&rejection))
    }
}

/// The error for a path parameter axum could not extract, naming the parameter.
pub fn path_rejection(rejection: &PathRejection) -> Error {
    use axum::extract::path::ErrorKind as K;
    match rejection {
        PathRejection::FailedToDeserializePathParams(e) => match e.kind() {
            K::ParseErrorAtKey { key, expected_type, .. } => {
                Error::invalid(key, format!("must be {}", type_name(expected_type)))
            }
            K::InvalidUtf8InPathParam { key } => Error::invalid(key, "is not valid UTF-8"),
            K::DeserializeError { key, .. } => Error::invalid(key, "is not valid"),
            K::ParseErrorAtIndex { expected_type, .. } | K::ParseError { expected_type, .. } => {
                Error::invalid("path", format!("a parameter must be {}", type_name(expected_type)))
            }
            _ => Error::invalid("path", "is not valid"),
        },
        // A route whose handler wants a parameter the route does not have: a bug here.
        other => Error::internal(std::io::Error::other(other.body_text())),
    }
}

/// What a Rust type name means to an API client.
fn type_name(rust: &str) -> &'static str {
    match rust {
        "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64" | "usize" | "isize" => "a whole number",
        "bool" => "true or false",
        _ => "a valid value",
    }
}

/// The error for a query string axum could not deserialize.
pub fn query_rejection(rejection: &QueryRejection) -> Error {
    // serde_urlencoded names the field and what was expected, never the value.
    let text = rejection.body_text();
    let detail: String =
        text.trim_start_matches("Failed to deserialize query string: ").chars().take(200).collect();
    Error::invalid("query", detail)
}

/// What a JSON handler answers.
pub type ApiResult<T> = Result<T, ApiError>;

// ---------------------------------------------------------------- dashboard

/// The signed-in session of a page request; without one, a redirect to sign-in.
pub struct PageAuthed(pub CurrentSession);

impl FromRequestParts<Shared> for PageAuthed {
    type Rejection = Redirect;

    async fn from_request_parts(parts: &mut Parts, _: &Shared) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<SessionSlot>()
            .and_then(|s| s.0.clone())
            .map(PageAuthed)
            .ok_or(Redirect::to("/signin"))
    }
}

fn session_of(extensions: &http::Extensions) -> Option<CurrentSession> {
    extensions.get::<SessionSlot>().and_then(|s| s.0.clone())
}

/// A path parameter; a malformed one gets the error page (never axum's plain text).
pub struct WebPath<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<Shared> for WebPath<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &Shared) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, st).await {
            Ok(Path(v)) => Ok(Self(v)),
            Err(r) => Err(error_page(st, session_of(&parts.extensions).as_ref(), path_rejection(&r))),
        }
    }
}

/// A query string; a malformed one gets the error page.
pub struct WebQuery<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<Shared> for WebQuery<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &Shared) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, st).await {
            Ok(Query(v)) => Ok(Self(v)),
            Err(r) => Err(error_page(st, session_of(&parts.extensions).as_ref(), query_rejection(&r))),
        }
    }
}

/// A form body; a malformed one gets the error page.
pub struct WebForm<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequest<Shared> for WebForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, st: &Shared) -> Result<Self, Self::Rejection> {
        let session = session_of(req.extensions());
        match Form::<T>::from_request(req, st).await {
            Ok(Form(v)) => Ok(Self(v)),
            Err(r) => Err(error_page(st, session.as_ref(), form_rejection(&r))),
        }
    }
}

fn form_rejection(rejection: &FormRejection) -> Error {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return Error::new(ErrorCode::PayloadTooLarge, "the form is larger than allowed");
    }
    match rejection {
        FormRejection::InvalidFormContentType(_) => {
            Error::invalid("form", "send it as application/x-www-form-urlencoded")
        }
        _ => Error::invalid("form", "could not be read; reload the page and try again"),
    }
}

// ---------------------------------------------------------------- both

/// The client's address: the TCP peer, or the configured proxy header's last
/// entry when one is configured and parses.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl ClientIp {
    /// Determines the client address of a request.
    pub fn of(
        parts_headers: &http::HeaderMap,
        peer: Option<SocketAddr>,
        header: Option<&HeaderName>,
    ) -> Self {
        if let Some(name) = header {
            let forwarded = parts_headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|s| s.trim().parse::<IpAddr>().ok())
                .next_back();
            if forwarded.is_some() {
                return Self(forwarded);
            }
        }
        Self(peer.map(|p| p.ip()))
    }
}

impl FromRequestParts<Shared> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
        Ok(Self::of(&parts.headers, peer, state.client_ip_header.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn proxy_header_is_used_only_when_configured() {
        let mut h = http::HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9, 198.51.100.2".parse().unwrap());
        let peer = Some(SocketAddr::from(([10, 0, 0, 1], 5555)));
        assert_eq!(ClientIp::of(&h, peer, None).0, Some("10.0.0.1".parse().unwrap()));
        let name = HeaderName::from_static("x-forwarded-for");
        assert_eq!(ClientIp::of(&h, peer, Some(&name)).0, Some("198.51.100.2".parse().unwrap()));
        let empty = http::HeaderMap::new();
        assert_eq!(ClientIp::of(&empty, peer, Some(&name)).0, Some("10.0.0.1".parse().unwrap()));
    }
}
