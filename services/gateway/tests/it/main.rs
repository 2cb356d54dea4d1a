//! Integration tests of the gateway: the real gateway in-process on port 0, the
//! four backends as in-memory fakes over real gRPC, and the real local NATS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod auth;
mod csrf;
mod fakes;
mod harness;
mod live;
mod openapi;
mod pages;
mod security;
mod webhooks;
