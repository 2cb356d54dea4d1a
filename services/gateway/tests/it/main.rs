//! Integration tests of the gateway against in-memory fakes of the four
//! backends over real gRPC, and the real local NATS. They cover what the real
//! services cannot be made to do or show (injected failures, the metadata of
//! each call, how often identity is asked) and the dashboard's pages; the
//! routes end to end against the real services are in `tests/tests/gateway_*.rs`
//! (crate bizops-e2e).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod fakes;
mod harness;
mod injected;
mod layout;
mod pages;
mod security;
