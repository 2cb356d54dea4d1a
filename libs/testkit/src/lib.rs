//! Integration-test helpers: a fresh Postgres database per test (migrated, with the
//! service roles of ARCHITECTURE.md), a unique NATS prefix per test, the local
//! addresses to bind in-process servers on port 0, captured log output, waits
//! for facts (a deadline-bounded poll; JetStream consumers quiesced), and the
//! helpers of gRPC calls ([`authed`], [`code_of`], [`assert_status`]) and catalog
//! steps ([`steps`]).
//!
//! Tests run against the real local Postgres and NATS that `scripts/dev-services`
//! starts. Overrides: `BIZOPS_TEST_ADMIN_DATABASE_URL` (a superuser connection,
//! default `postgres://postgres@127.0.0.1:5432/postgres`) and `BIZOPS_TEST_NATS_URL`
//! (default: the URL `scripts/dev-services` wrote to `.dev/nats.url`).
//!
//! With the feature `procs`: the process harness of the e2e tests and the bench
//! ([`procs`]), the suite's binaries wired by the topology (`libs/topology`).
//! With the feature `browser`: the browser-like HTTP client of the gateway's and
//! the end-to-end tests ([`browser`]).
#![forbid(unsafe_code)]

#[cfg(feature = "browser")]
pub mod browser;
mod db;
mod grpc;
mod logs;
#[cfg(feature = "procs")]
pub mod procs;
mod quiesce;
mod server;
pub mod steps;
pub mod wait;

use std::net::SocketAddr;

pub use db::{TestDb, admin_url};
pub use grpc::{assert_status, authed, bearer_of, code_of};
pub use logs::{LogCapture, capture_logs};
pub use quiesce::{consumers_quiet, quiesce, quiesce_with};
pub use server::{InProcess, Until};
pub use wait::{PATIENCE, Seen, eventually, until};

/// The password of every test account (long and unusual enough for the policy).
pub const PASSWORD: &str = "correct horse battery staple 42";

/// An address on loopback with an OS-assigned port, for `App::build` in tests.
pub fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The NATS server tests use (JetStream enabled).
pub fn nats_url() -> String {
    if let Ok(url) = std::env::var("BIZOPS_TEST_NATS_URL")
        && !url.is_empty()
    {
        return url;
    }
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.dev/nats.url");
    std::fs::read_to_string(file)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A subject/stream prefix no other test uses, e.g. `t0193a1b2c3d4`.
pub fn nats_prefix() -> String {
    format!("t{}", &uuid::Uuid::now_v7().simple().to_string()[..24])
}
