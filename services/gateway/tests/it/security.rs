//! Security headers on every kind of response, health endpoints, and pages
//! without inline script or style.

use reqwest::StatusCode;

use crate::harness::{Browser, Gateway, Resp};

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

#[track_caller]
fn assert_headers(r: &Resp, what: &str) {
    assert_eq!(r.header("content-security-policy"), Some(CSP), "{what}");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{what}");
    assert_eq!(r.header("referrer-policy"), Some("same-origin"), "{what}");
    assert_eq!(r.header("x-frame-options"), Some("DENY"), "{what}");
}

async fn samples(b: &mut Browser) -> Vec<(String, Resp)> {
    let mut out = Vec::new();
    for path in [
        "/signin",
        "/privacy",
        "/api/v1/session",
        "/api/openapi.json",
        "/static/app.css",
        "/static/app.js",
        "/healthz",
        "/readyz",
        "/missing",
        "/pilots",
    ] {
        out.push((path.to_owned(), b.get(path).await));
    }
    let hook = b.send(reqwest::Method::POST, "/hooks/not-a-pilot", |r| r.body("{}")).await;
    out.push(("/hooks".to_owned(), hook));
    out
}

const HSTS: &str = "max-age=31536000; includeSubDomains";

/// The headers on every kind of answer; HSTS by default exactly when the public
/// origin is https (the harness's is), unless configured either way.
#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let gw = Gateway::start().await;
    let mut b = gw.browser();
    for (path, r) in samples(&mut b).await {
        assert_headers(&r, &path);
        assert_eq!(r.header("strict-transport-security"), Some(HSTS), "https origin: {path}");
    }
    let gw = Gateway::start_with(|c| c.hsts = Some(false)).await;
    let mut b = gw.browser();
    for (path, r) in samples(&mut b).await {
        assert_headers(&r, &path);
        assert!(r.header("strict-transport-security").is_none(), "turned off: {path}");
    }
    let gw = Gateway::start_with(|c| c.public_origin = "http://127.0.0.1:8080".into()).await;
    let mut b = gw.browser();
    b.origin = Some("http://127.0.0.1:8080".into());
    for (path, r) in samples(&mut b).await {
        assert!(r.header("strict-transport-security").is_none(), "plain http: {path}");
    }
    let gw = Gateway::start_with(|c| {
        c.public_origin = "http://127.0.0.1:8080".into();
        c.hsts = Some(true);
    })
    .await;
    let mut b = gw.browser();
    for (path, r) in samples(&mut b).await {
        assert_eq!(r.header("strict-transport-security"), Some(HSTS), "forced on: {path}");
    }
}

/// Sends `GET <raw path>` as written (no client normalises `..` away); the
/// status line and the body.
async fn raw_get(base: &str, raw_path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {raw_path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, answer)
}

#[tokio::test]
async fn health_and_static_files() {
    let gw = Gateway::start().await;
    let mut b = gw.browser();
    b.get("/healthz").await.assert(StatusCode::OK);
    b.get("/readyz").await.assert(StatusCode::OK);
    let css = b.get("/static/app.css").await;
    css.assert(StatusCode::OK);
    assert!(css.header("content-type").unwrap().starts_with("text/css"));
    let js = b.get("/static/app.js").await;
    assert!(js.header("content-type").unwrap().starts_with("text/javascript"));
    assert!(!js.body.contains("innerHTML"), "the script writes text only");
    b.get("/static/nope.js").await.assert(StatusCode::NOT_FOUND);
    // Path traversal, sent raw: nothing outside the three embedded files is served.
    for raw in [
        "/static/../Cargo.toml",
        "/static/..%2FCargo.toml",
        "/static/%2e%2e/%2e%2e/Cargo.toml",
        "/static/..%2f..%2fsrc%2flib.rs",
        "/static/../../../../etc/passwd",
    ] {
        let (status, answer) = raw_get(&gw.base, raw).await;
        assert_eq!(status, 404, "{raw}: {answer}");
        assert!(!answer.contains("[package]") && !answer.contains("root:"), "{raw}: {answer}");
    }
}

/// Every dashboard page, signed in: no inline script, no inline style, no
/// inline event handler, so the CSP holds without 'unsafe-inline'.
#[tokio::test]
async fn pages_have_no_inline_script_or_style() {
    let gw = Gateway::start().await;
    let mut b = gw.user().await;
    let (pilot, _) = gw.pilot(&mut b, "Inline").await;
    use bizops_proto::events::v1::{RunStatus, StepStatus};
    let run = gw.fakes.add_run(pilot, RunStatus::AwaitingApproval, &[("ask", StepStatus::AwaitingApproval)]);
    let pages = [
        "/pilots".to_owned(),
        "/pilots/new".to_owned(),
        format!("/pilots/{pilot}"),
        format!("/pilots/{pilot}/edit"),
        format!("/pilots/{pilot}/runs"),
        format!("/runs/{run}"),
        "/approvals".to_owned(),
        "/connectors".to_owned(),
        "/account".to_owned(),
        "/privacy".to_owned(),
    ];
    let mut anon = gw.browser();
    let mut bodies = vec![anon.get("/signin").await.body, anon.get("/signup").await.body];
    for page in &pages {
        let r = b.get(page).await;
        r.assert(StatusCode::OK);
        bodies.push(r.body);
    }
    for body in bodies {
        let lower = body.to_lowercase();
        for (i, _) in lower.match_indices("<script") {
            let tag = &lower[i..lower[i..].find('>').map_or(lower.len(), |e| i + e)];
            assert!(tag.contains("src=\"/static/"), "inline script: {tag}");
        }
        assert!(!lower.contains("<style"), "inline style block");
        assert!(!lower.contains(" style=\""), "inline style attribute");
        for handler in [" onclick=", " onload=", " onsubmit=", " onchange=", "javascript:"] {
            assert!(!lower.contains(handler), "inline handler {handler}");
        }
        assert!(lower.contains("<main") && lower.contains("<header") && lower.contains("<nav"), "landmarks");
        assert!(lower.contains("<html lang=\"en\">"));
    }
}
