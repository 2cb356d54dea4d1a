//! What every handler shares, and the request-scoped facts middleware adds.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use axum::extract::{ConnectInfo, FromRequestParts};
use bizops_bus::Subjects;
use bizops_runtime::Stopped;
use http::{HeaderName, request::Parts};

use crate::{
    backend::Backends,
    csrf::Csrf,
    ratelimit::RateLimits,
    session::{CookieJar, CurrentSession, SessionVerifier},
    web::Templates,
};

/// Shared state of the gateway.
pub struct AppState {
    /// gRPC clients.
    pub backends: Backends,
    /// VerifySession with a ≤ 5 s cache.
    pub sessions: SessionVerifier,
    /// The session cookie's name and attributes.
    pub cookies: CookieJar,
    /// CSRF tokens and the origin check.
    pub csrf: Csrf,
    /// Rate limits.
    pub limits: RateLimits,
    /// The public origin, e.g. `https://app.example.com`.
    pub origin: String,
    /// Send `Strict-Transport-Security`.
    pub hsts: bool,
    /// Largest webhook body.
    pub webhook_body_bytes: usize,
    /// Largest API or form body.
    pub api_body_bytes: usize,
    /// Header with the client address behind a proxy.
    pub client_ip_header: Option<HeaderName>,
    /// Waiting for JetStream's ack.
    pub publish_timeout: Duration,
    /// The longest a live view stays open.
    pub live_view: Duration,
    /// Core NATS (live run events).
    pub nats: async_nats::Client,
    /// JetStream (triggers).
    pub jetstream: async_nats::jetstream::Context,
    /// Subject names.
    pub subjects: Subjects,
    /// The dashboard's templates.
    pub templates: Templates,
    /// Fires when the gateway shuts down (ends live views).
    pub stopped: Stopped,
    /// Set once shutdown began: `/readyz` answers 503.
    pub draining: AtomicBool,
}

/// The shared state as handlers receive it.
pub type Shared = Arc<AppState>;

/// The session of the request, as resolved by the session middleware (`None`:
/// no cookie, or identity said it is no longer valid).
#[derive(Debug, Clone, Default)]
pub struct SessionSlot(pub Option<CurrentSession>);

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
