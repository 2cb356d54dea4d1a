//! executor: durable runs from JetStream, the step engine, the AI provider chain,
//! approvals and retention.
//!
//! Layout: `app` wires it up; `intake` turns triggers into runs; `engine` executes
//! runs under leases, writing through `lease` (the leased-run store); `steps`,
//! `ai`, `net` (SSRF guard), `template`, `sandbox` (templates rendered in
//! memory-limited worker processes) and `redact` are the step machinery;
//! `maintenance` holds the reaper, approval expiry, job sweeper and scheduler;
//! `deletion` removes a Pilot's or an owner's data (for the RPC edge and the
//! pilot-deleted consumer); `grpc` is the RPC edge; `store` the owner-scoped
//! queries; `system` the audited cross-owner paths; `progress` counts work done
//! and in hand.
#![forbid(unsafe_code)]

pub mod ai;
pub mod app;
pub mod clients;
pub mod config;
pub mod deletion;
pub mod engine;
pub mod events;
pub mod grpc;
pub mod intake;
pub mod lease;
pub mod maintenance;
pub mod model;
pub mod net;
mod pg;
pub mod progress;
pub mod redact;
pub mod sandbox;
pub mod steps;
pub mod store;
pub mod system;
pub mod template;

pub use app::App;
pub use config::ExecutorConfig;

/// The executor's migrations (`migrations/`), applied by `executor migrate`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();
