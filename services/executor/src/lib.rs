//! executor: durable runs from JetStream, the step engine, the AI provider chain,
//! approvals and retention.
//!
//! Layout: `app` wires it up; `intake` turns triggers into runs; `engine` executes
//! runs under leases; `steps`, `ai`, `net` (SSRF guard), `template` and `redact`
//! are the step machinery; `maintenance` holds the reaper, approval expiry, job
//! sweeper and scheduler; `grpc` is the RPC edge; `store` the owner-scoped
//! queries; `system` the audited cross-owner paths.
#![forbid(unsafe_code)]

pub mod ai;
pub mod app;
pub mod clients;
pub mod config;
pub mod engine;
pub mod events;
pub mod grpc;
pub mod intake;
pub mod maintenance;
pub mod model;
pub mod net;
pub mod redact;
pub mod steps;
pub mod store;
pub mod system;
pub mod template;

pub use app::App;
pub use config::ExecutorConfig;

/// The executor's migrations (`migrations/`), applied by `executor migrate`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();
