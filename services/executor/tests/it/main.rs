//! The executor against real Postgres and NATS, with in-process fakes of the
//! catalog and the vault (the contracts in proto/) and wiremock for Slack, Resend,
//! Anthropic and HTTP endpoints.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)]

mod fakes;
mod harness;

mod ai;
mod approvals;
mod crash;
mod hostile;
mod intake;
mod isolation;
mod retention;
mod security;
mod slots;
mod steps;
