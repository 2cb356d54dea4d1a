//! identity over real gRPC against real Postgres (a fresh database per test).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fakes;
mod harness;

mod auth_flow;
mod deletion;
mod exchange;
mod isolation;
mod ops;
mod rate_limit;
mod store;
mod tokens;
