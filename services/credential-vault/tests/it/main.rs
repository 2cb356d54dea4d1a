//! The credential vault over real gRPC against real Postgres (a fresh database per
//! test), with providers faked by wiremock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod connectors;
mod flow;
mod isolation;
mod logs;
mod migrations;
mod ops;
mod rotation;
mod tamper;
