//! credential-vault: write-only connector credentials, AES-256-GCM envelope
//! encryption under a KEK keyring, and online key rotation.
//!
//! Layout (STYLE.md): `app` builds and runs the service, `grpc` is the RPC edge,
//! `store` holds owner-scoped queries under row-level security, `system` the few
//! cross-owner paths on the system role, `crypto` the envelope formats,
//! `connectors` the kinds of credential and their live checks, `rotation` the
//! rewrap jobs.
#![forbid(unsafe_code)]

pub mod absence;
pub mod app;
pub mod config;
pub mod connectors;
pub mod crypto;
pub mod grpc;
pub mod rotation;
pub mod store;
pub mod system;

pub use app::App;
pub use config::VaultConfig;

/// The vault's migrations (`migrations/`), applied by `credential-vault migrate` as
/// the migrator role; the migrations table is `vault._sqlx_migrations` (sqlx.toml).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();
