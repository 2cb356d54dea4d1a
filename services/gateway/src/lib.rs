//! gateway: the public HTTP edge of BizOps Pilot. It owns no data: browser calls
//! and webhooks become internal gRPC calls (identity, pilot-catalog,
//! credential-vault, executor) and NATS publishes.
//!
//! Layout, by feature over a shared layer:
//!
//! - `app` builds and runs; `routes` assembles every feature's routes, the
//!   OpenAPI document and the middleware; `config` is the configuration.
//! - `shared` is what every feature uses (state, gRPC clients, extractors,
//!   errors, sessions, CSRF, rate limits, templates and the page layout,
//!   middleware); it imports no feature.
//! - The features — `account`, `pilots`, `runs`, `approvals`, `connectors` —
//!   each hold their JSON handlers with their OpenAPI annotations (`api`), their
//!   dashboard handlers (`pages`), their JSON shapes (`model`) and the backend
//!   calls both make (`ops`); `hooks` is the webhook ingest.
//!
//! No module imports another in a circle: a feature may use `shared` and the
//! features before it (`account` and `runs` read Pilots, `hooks` answers with a
//! run's trigger), never one that uses it. `tests/it/layout.rs` checks this.
#![forbid(unsafe_code)]

pub mod account;
pub mod app;
pub mod approvals;
pub mod config;
pub mod connectors;
pub mod hooks;
pub mod pilots;
pub mod routes;
pub mod runs;
pub mod shared;

pub use app::App;
pub use config::GatewayConfig;
