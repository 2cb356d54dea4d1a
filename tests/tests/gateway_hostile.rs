//! What one client can do to the gateway's capacity: headers sent a byte at a
//! time, requests that never finish, hundreds of live views. Each is bounded;
//! everyone else keeps being served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bizops_e2e::{
    browser::read_events,
    suite::{Suite, Svc},
};
use bizops_testkit::{PATIENCE, wait::Polling};
use reqwest::StatusCode;
use serde_json::json;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};
use uuid::Uuid;

fn gateway_addr(suite: &Suite) -> String {
    suite.url(Svc::Gateway).trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection; what it sent.
async fn until_closed(mut tcp: TcpStream) -> String {
    let mut got = Vec::new();
    let read = tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the gateway kept the connection open for {PATIENCE:?}");
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn headers_that_never_end_lose_their_connection() {
    let suite = Suite::start_with(|c| c.gateway.timeouts.header_read = Duration::from_millis(300)).await;
    let mut tcp = TcpStream::connect(gateway_addr(&suite)).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a").await.unwrap();
    // Nothing more is sent: the connection is closed by the header-read timeout.
    until_closed(tcp).await;
    // Others are served.
    suite.browser().get("/healthz").await.assert(StatusCode::OK);
}

#[tokio::test]
async fn a_full_gateway_sheds_at_once_and_a_stuck_request_ends_at_its_deadline() {
    let suite = Suite::start_with(|c| {
        c.gateway.limits.max_in_flight = 1;
        c.gateway.timeouts.request = Duration::from_secs(4);
    })
    .await;
    // A webhook whose body never comes holds the only place.
    let mut stuck = TcpStream::connect(gateway_addr(&suite)).await.unwrap();
    let head = format!("POST /hooks/{} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", Uuid::now_v7());
    stuck.write_all(head.as_bytes()).await.unwrap();

    // Every other request is refused at once with 503 and Retry-After…
    let mut b = suite.browser();
    let mut wait = Polling::new(Duration::from_secs(3));
    let shed = loop {
        let r = b.get("/api/openapi.json").await;
        if r.status == StatusCode::SERVICE_UNAVAILABLE {
            break r;
        }
        wait.next("a request to be shed while the stuck one holds the place").await;
    };
    shed.assert_error(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE");
    assert_eq!(shed.header("retry-after"), Some("1"));
    // …but health probes are never shed.
    b.get("/healthz").await.assert(StatusCode::OK);

    // The stuck request ends at its deadline with 504, and the place is free again.
    let answer = until_closed(stuck).await;
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    assert!(answer.contains("DEADLINE_EXCEEDED"), "{answer}");
    b.get("/api/openapi.json").await.assert(StatusCode::OK);
}

#[tokio::test]
async fn live_views_are_capped_per_session() {
    let suite = Suite::start_with(|c| c.gateway.limits.live_views_per_session = 2).await;
    let mut b = suite.web_user("viewer").await;
    let spec = json!({"title": "Waits", "steps": [
        {"key": "ask", "kind": "approval", "config": {"message": "Go on?"}}
    ]});
    let created = b.post_json("/api/v1/pilots", &json!({"spec": spec, "enabled": true})).await;
    let id = created.json()["pilot"]["id"].as_str().unwrap().to_owned();
    let secret = created.json()["webhook_secret"].as_str().unwrap().to_owned();
    assert_eq!(suite.hook(&id, &secret, json!({})).await.0, 202);
    let run = b.wait_for_run(&id, "awaiting_approval").await["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/runs/{run}/events");

    let first = b.stream(&path).await;
    let second = b.stream(&path).await;
    assert_eq!((first.status(), second.status()), (StatusCode::OK, StatusCode::OK));
    let third = b.get(&path).await;
    third.assert_error(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    assert!(third.header("retry-after").is_some());

    // Another session of the same account is not affected.
    let mut other = suite.browser();
    other.email = b.email.clone();
    other.sign_in(bizops_e2e::suite::PASSWORD).await.assert(StatusCode::OK);
    let theirs = other.stream(&path).await;
    assert_eq!(theirs.status(), StatusCode::OK);
    let got = read_events(theirs, |name, _| name == "snapshot").await;
    assert_eq!(got[0].0, "snapshot");

    // Closing a view frees its place.
    drop(first);
    let mut wait = Polling::new(PATIENCE);
    loop {
        let again = b.stream(&path).await;
        if again.status() == StatusCode::OK {
            break;
        }
        wait.next("the closed view's place to be free").await;
    }
    drop(second);
}
