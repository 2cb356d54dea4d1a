//! CSRF: same origin plus the session's synchronizer token on every
//! state-changing request; nothing reaches a backend when either is missing.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Gateway, PASSWORD, sample_spec};

fn create() -> serde_json::Value {
    json!({"spec": sample_spec("CSRF")})
}

#[tokio::test]
async fn state_changing_api_requests_need_the_token() {
    let gw = Gateway::start().await;
    let mut b = gw.user().await;
    let good = b.csrf.clone();

    b.csrf = None;
    let r = b.post_json("/api/v1/pilots", &create()).await;
    r.assert(StatusCode::FORBIDDEN);
    assert_eq!(r.error_code(), "CSRF_REJECTED");

    b.csrf = Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into());
    b.post_json("/api/v1/pilots", &create()).await.assert(StatusCode::FORBIDDEN);

    // Another session's token does not fit this session.
    let other = gw.user().await;
    b.csrf = other.csrf.clone();
    b.post_json("/api/v1/pilots", &create()).await.assert(StatusCode::FORBIDDEN);
    b.json(Method::DELETE, "/api/v1/me", &json!({"password": PASSWORD})).await.assert(StatusCode::FORBIDDEN);
    assert!(gw.world().pilots.is_empty(), "nothing reached the catalog");
    assert_eq!(gw.world().accounts.len(), 2, "nothing reached identity");

    b.csrf = good;
    b.post_json("/api/v1/pilots", &create()).await.assert(StatusCode::CREATED);
}

#[tokio::test]
async fn cross_origin_requests_are_refused_even_with_the_token() {
    let gw = Gateway::start().await;
    let mut b = gw.user().await;
    b.origin = Some("https://evil.test".into());
    let r = b.post_json("/api/v1/pilots", &create()).await;
    r.assert(StatusCode::FORBIDDEN);
    assert_eq!(r.error_code(), "CSRF_REJECTED");

    // No Origin and no Sec-Fetch-Site: refused.
    b.origin = None;
    b.post_json("/api/v1/pilots", &create()).await.assert(StatusCode::FORBIDDEN);

    // A browser that sends only Sec-Fetch-Site: same-origin is fine.
    let token = b.csrf.clone().unwrap();
    let r = b
        .send(Method::POST, "/api/v1/pilots", |r| {
            r.header("sec-fetch-site", "same-origin").header("x-csrf-token", token).json(&create())
        })
        .await;
    r.assert(StatusCode::CREATED);
    let token = b.csrf.clone().unwrap();
    let r = b
        .send(Method::POST, "/api/v1/pilots", |r| {
            r.header("sec-fetch-site", "cross-site").header("x-csrf-token", token).json(&create())
        })
        .await;
    r.assert(StatusCode::FORBIDDEN);
    assert_eq!(gw.world().pilots.len(), 1);
}

#[tokio::test]
async fn sign_in_and_sign_up_need_the_same_origin_but_no_token() {
    let gw = Gateway::start().await;
    let mut b = gw.browser();
    b.origin = Some("https://evil.test".into());
    let r =
        b.post_json("/api/v1/auth/register", &json!({"email": "x@example.com", "password": PASSWORD})).await;
    r.assert(StatusCode::FORBIDDEN);
    b.origin = None;
    b.post_json("/api/v1/auth/register", &json!({"email": "x@example.com", "password": PASSWORD}))
        .await
        .assert(StatusCode::FORBIDDEN);
    assert!(gw.world().accounts.is_empty());
    // Login CSRF: a cross-site form cannot sign a victim into the attacker's account.
    b.origin = Some("https://evil.test".into());
    b.post_form("/signin", &[("email", "x@example.com"), ("password", PASSWORD)])
        .await
        .assert(StatusCode::FORBIDDEN);
    b.origin = Some(crate::harness::ORIGIN.into());
    b.post_json("/api/v1/auth/register", &json!({"email": "x@example.com", "password": PASSWORD}))
        .await
        .assert(StatusCode::CREATED);
}

#[tokio::test]
async fn dashboard_forms_carry_the_token_in_a_field() {
    let gw = Gateway::start().await;
    let mut b = gw.user().await;
    let (id, _) = gw.pilot(&mut b, "Form").await;
    let path = format!("/pilots/{id}/enabled");
    let good = b.csrf.clone();

    b.csrf = None;
    let r = b.post_form(&path, &[("enabled", "false")]).await;
    r.assert(StatusCode::FORBIDDEN);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(r.body.contains("CSRF_REJECTED"));

    b.csrf = Some("wrong".into());
    b.post_form(&path, &[("enabled", "false")]).await.assert(StatusCode::FORBIDDEN);
    assert!(gw.world().pilots[&id].enabled);

    b.csrf = good;
    let r = b.post_form(&path, &[("enabled", "false")]).await;
    r.assert(StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), Some(format!("/pilots/{id}?notice=disabled").as_str()));
    assert!(!gw.world().pilots[&id].enabled);

    // The pages embed the token for the forms and for scripts.
    let page = b.get(&format!("/pilots/{id}")).await;
    let token = b.csrf.clone().unwrap();
    assert!(page.body.contains(&format!("name=\"csrf_token\" value=\"{token}\"")));
    assert!(page.body.contains(&format!("<meta name=\"csrf-token\" content=\"{token}\">")));
}
