//! gateway: the public HTTP edge of BizOps Pilot. It owns no data: browser calls
//! and webhooks become internal gRPC calls (identity, pilot-catalog,
//! credential-vault, executor) and NATS publishes.
//!
//! Layout: `app` builds and runs, `http` assembles routes and middleware,
//! `api` is the JSON API (OpenAPI from its annotations), `hooks` the webhook
//! ingest, `live` the SSE run view, `web` and `editor` the dashboard; `ops` is
//! what both API and dashboard do; `backend` the gRPC clients; `session`,
//! `csrf` and `ratelimit` the browser-security pieces.
#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod backend;
pub mod config;
pub mod csrf;
pub mod editor;
pub mod error;
pub mod hooks;
pub mod http;
pub mod live;
pub mod model;
pub mod ops;
pub mod ratelimit;
pub mod session;
pub mod state;
pub mod web;

pub use app::App;
pub use config::GatewayConfig;
