//! The shared layer every feature stands on. It imports no feature module (the
//! layout test, `tests/it/layout.rs`, fails if it does):
//!
//! - `state`: the shared state and the request's session slot;
//! - `backend`: the gRPC clients and `rpc!`; `ops`: what every feature's backend
//!   calls share (ids, paging);
//! - `session`, `csrf`, `ratelimit`: the browser-security pieces; `capacity`:
//!   the live views a session and the replica may hold open;
//! - `error`: the one HTTP error shape; `model`: the shapes and helpers every
//!   feature's JSON uses (error body, paging, times, enum names);
//! - `extract`: the extractors of JSON and dashboard handlers (session, path,
//!   query, body, client address) with their rejections in the error shape;
//! - `templates` and `page`: the dashboard's templates, layout, rendering and
//!   error page;
//! - `middleware`: what every request passes (load shedding and the request
//!   deadline, session, CSRF, headers, metrics);
//! - `openapi`: the OpenAPI document's info, tags and security schemes.

pub mod backend;
pub mod capacity;
pub mod csrf;
pub mod error;
pub mod extract;
pub mod middleware;
pub mod model;
pub mod openapi;
pub mod ops;
pub mod page;
pub mod ratelimit;
pub mod session;
pub mod state;
pub mod templates;
