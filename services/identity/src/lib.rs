//! identity: accounts, scrypt password hashes, sessions and the keys that sign them.
//!
//! Layout (STYLE.md): `app` builds and runs the service, `grpc` is the RPC edge,
//! `store` holds owner-scoped queries under row-level security, `system` the few
//! cross-owner paths on the system role.
#![forbid(unsafe_code)]

pub mod app;
pub mod config;
pub mod deletion;
pub mod email;
pub mod grpc;
pub mod keys;
pub mod notify;
pub mod password;
pub mod store;
pub mod system;
pub mod throttle;

pub use app::App;
pub use config::IdentityConfig;

/// identity's migrations (`migrations/`), applied by `identity migrate` as the
/// migrator role; the migrations table is `identity._sqlx_migrations` (sqlx.toml).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();
