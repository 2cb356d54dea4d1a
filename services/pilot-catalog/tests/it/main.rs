//! pilot-catalog over real gRPC against real Postgres (a fresh database per test)
//! and NATS (a unique prefix per test).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod crud;
mod isolation;
mod schedules;
mod webhooks;
