//! What every handler shares, and the session the middleware adds to a request.

use std::{
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use bizops_bus::Subjects;
use bizops_runtime::Stopped;
use http::HeaderName;

use crate::shared::{
    backend::Backends,
    csrf::Csrf,
    ratelimit::RateLimits,
    session::{CookieJar, CurrentSession, SessionVerifier},
    templates::Templates,
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
    /// Open live views per session and in all (`limits.live_views*`).
    pub live_views: crate::shared::capacity::LiveViews,
    /// Requests being handled (`limits.max_in_flight` permits).
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// The deadline of producing a response (`timeouts.request`).
    pub request_timeout: Duration,
    /// Reading a request's headers (`timeouts.header_read`).
    pub header_read: Duration,
    /// HTTP/2 streams per connection (`limits.http2_max_streams`).
    pub http2_max_streams: u32,
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
