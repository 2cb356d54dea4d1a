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

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let gw = Gateway::start().await;
    let mut b = gw.browser();
    for (path, r) in samples(&mut b).await {
        assert_headers(&r, &path);
        assert!(r.header("strict-transport-security").is_none(), "no HSTS unless configured");
    }
    let gw = Gateway::start_with(|c| c.hsts = true).await;
    let mut b = gw.browser();
    for (path, r) in samples(&mut b).await {
        assert_eq!(
            r.header("strict-transport-security"),
            Some("max-age=31536000; includeSubDomains"),
            "{path}"
        );
    }
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
    b.get("/static/../Cargo.toml").await;
    b.get("/static/nope.js").await.assert(StatusCode::NOT_FOUND);
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
