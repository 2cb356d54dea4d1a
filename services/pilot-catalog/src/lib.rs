//! pilot-catalog: Pilots, their immutable versions, webhook secrets (stored
//! encrypted) and signatures, schedules, and export/import.
//!
//! Layout (STYLE.md): `app` builds and runs the service, `grpc` is the RPC edge,
//! `store` holds owner-scoped queries under row-level security, `system` the few
//! cross-owner paths; `spec` validates content, `webhook` signs and verifies,
//! `schedule` computes due ticks, `export` ties the shared export format
//! (`bizops_pilot_spec`) to this service's validation.
#![forbid(unsafe_code)]

pub mod app;
pub mod cache;
pub mod config;
pub mod export;
pub mod grpc;
pub mod outbox;
pub mod schedule;
pub mod spec;
pub mod store;
pub mod system;
pub mod webhook;

pub use app::App;
pub use config::CatalogConfig;

/// pilot-catalog's migrations (`migrations/`), applied by `pilot-catalog migrate`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();
