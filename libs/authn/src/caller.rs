//! The verified caller of a request and the one place ownership is derived from it.

use std::{fmt, net::IpAddr};

use bizops_errors::{Error, ErrorCode};
use uuid::Uuid;

use crate::session::TokenError;

/// Metadata carrying the calling service's token when `authorization` carries the
/// end user's session (e.g. the gateway forwarding a login).
pub const SERVICE_TOKEN_METADATA: &str = "x-bizops-service-token";
/// Metadata carrying the end user's network address, trusted only from a service
/// that authenticated itself with [`SERVICE_TOKEN_METADATA`] or `authorization`.
pub const FORWARDED_SOURCE_METADATA: &str = "x-bizops-source";

/// The tenant key every user-owned row carries. Today the account id; a later
/// workspace model changes what [`require_user`] puts here, nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OwnerId(pub Uuid);

impl fmt::Display for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl OwnerId {
    /// Parses an owner id from an RPC field, naming the field on error.
    pub fn parse(field: &str, text: &str) -> Result<Self, Error> {
        text.trim().parse::<Uuid>().map(OwnerId).map_err(|_| Error::invalid(field, "must be a UUID"))
    }

    /// The UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

/// An authenticated end user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserCaller {
    /// Whose data the request may touch.
    pub owner_id: OwnerId,
    /// The session the token belongs to.
    pub session_id: Uuid,
}

/// Who sent a request, as established by [`crate::AuthLayer`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Caller {
    /// No token.
    #[default]
    Anonymous,
    /// A valid session token (signature, expiry, audience). Services that need to
    /// know the session is still open ask identity.
    User(UserCaller),
    /// A valid service token from a trusted service.
    Service(String),
    /// A token was presented and refused.
    Rejected(TokenError),
}

/// The service that vouched for forwarded metadata (from `x-bizops-service-token`
/// or a service `authorization`), if any.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ForwardingService(pub Option<String>);

/// The caller of a tonic request (Anonymous when no layer ran).
pub fn caller<T>(request: &tonic::Request<T>) -> Caller {
    request.extensions().get::<Caller>().cloned().unwrap_or_default()
}

/// The end user behind a request, or `UNAUTHENTICATED` / `PERMISSION_DENIED`.
pub fn require_user<T>(request: &tonic::Request<T>) -> Result<UserCaller, Error> {
    match caller(request) {
        Caller::User(user) => Ok(user),
        Caller::Service(_) => Err(Error::new(
            ErrorCode::PermissionDenied,
            "this call needs a user session, not a service token",
        )),
        Caller::Rejected(e) => {
            Err(Error::new(ErrorCode::Unauthenticated, format!("session is not valid: {e}")))
        }
        Caller::Anonymous => Err(Error::new(ErrorCode::Unauthenticated, "sign in first: no session token")),
    }
}

/// The calling service if it is one of `allowed`. A user token or another service
/// gets `PERMISSION_DENIED`; no or a refused token gets `UNAUTHENTICATED`.
pub fn require_service<T>(request: &tonic::Request<T>, allowed: &[&str]) -> Result<String, Error> {
    match caller(request) {
        Caller::Service(name) if allowed.contains(&name.as_str()) => Ok(name),
        Caller::Service(_) | Caller::User(_) => Err(Error::new(
            ErrorCode::PermissionDenied,
            "this call is internal and not allowed for this caller",
        )),
        Caller::Rejected(e) => {
            Err(Error::new(ErrorCode::Unauthenticated, format!("service token is not valid: {e}")))
        }
        Caller::Anonymous => Err(Error::new(ErrorCode::Unauthenticated, "this call needs a service token")),
    }
}

/// The end user's address: `x-bizops-source` when a service in `trusted` vouched
/// for the request, else the TCP peer. `None` only for in-memory transports.
pub fn source_address<T>(request: &tonic::Request<T>, trusted: &[&str]) -> Option<IpAddr> {
    let vouched = request
        .extensions()
        .get::<ForwardingService>()
        .and_then(|f| f.0.as_deref())
        .is_some_and(|name| trusted.contains(&name));
    if vouched
        && let Some(ip) = request
            .metadata()
            .get(FORWARDED_SOURCE_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<IpAddr>().ok())
    {
        return Some(ip);
    }
    request.remote_addr().map(|a| a.ip())
}
