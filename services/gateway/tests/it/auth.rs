//! Sign-up, sign-in, the cookie, revocation, password change and deletion.

use std::time::{Duration, Instant};

use bizops_authn::ServiceVerifier;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{COOKIE, Gateway, PASSWORD};

#[tokio::test]
async fn sign_in_sets_exactly_the_session_cookie_and_sign_out_clears_it() {
    let gw = Gateway::start().await;
    let mut b = gw.browser();
    b.email = "ada@example.com".into();
    b.post_json("/api/v1/auth/register", &json!({"email": "ada@example.com", "password": PASSWORD}))
        .await
        .assert(StatusCode::CREATED);
    let r = b.sign_in(PASSWORD).await;
    r.assert(StatusCode::OK);
    let cookies = r.set_cookies();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let cookie = &cookies[0];
    assert!(cookie.starts_with(&format!("{COOKIE}=fk.")), "{cookie}");
    let attrs: Vec<&str> = cookie.split(';').skip(1).map(str::trim).collect();
    for want in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(attrs.contains(&want), "{want} missing: {cookie}");
    }
    assert!(attrs.iter().any(|a| a.starts_with("Max-Age=") && a != &"Max-Age=0"), "{cookie}");
    assert!(!cookie.to_ascii_lowercase().contains("domain"), "{cookie}");
    let body = r.json();
    assert_eq!(body["account"]["email"], "ada@example.com");
    assert!(body["csrf_token"].as_str().is_some_and(|t| t.len() >= 40));
    assert!(!r.body.contains(&b.token().unwrap()), "the token is never in a body");

    let me = b.get("/api/v1/session").await;
    me.assert(StatusCode::OK);
    assert_eq!(me.json()["account"]["email"], "ada@example.com");
    assert_eq!(me.json()["csrf_token"], body["csrf_token"]);

    let out = b.post_empty("/api/v1/auth/logout").await;
    out.assert(StatusCode::NO_CONTENT);
    let cleared = out.set_cookies();
    assert_eq!(cleared.len(), 1);
    assert!(
        cleared[0].starts_with(&format!("{COOKIE}=;")) && cleared[0].contains("Max-Age=0"),
        "{cleared:?}"
    );
    assert!(b.cookie.is_none());
    let after = b.get("/api/v1/session").await;
    after.assert(StatusCode::UNAUTHORIZED);
    assert_eq!(after.error_code(), "UNAUTHENTICATED");
}

#[tokio::test]
async fn dev_mode_drops_secure_and_the_host_prefix_only() {
    let gw = Gateway::start_with(|c| {
        c.insecure_dev_cookies = true;
        c.csrf_key = None; // derived from the service key in dev mode
    })
    .await;
    let mut b = gw.user().await;
    assert_eq!(b.cookie_names.iter().collect::<Vec<_>>(), ["bizops_session"]);
    let r = b.sign_in(PASSWORD).await;
    let cookie = &r.set_cookies()[0];
    assert!(cookie.starts_with("bizops_session="), "{cookie}");
    assert!(!cookie.contains("Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/"));
    b.get("/api/v1/session").await.assert(StatusCode::OK);
}

#[tokio::test]
async fn production_refuses_to_start_without_a_csrf_key() {
    let key = bizops_authn::SigningKey::generate("gateway").unwrap();
    let mut config = gateway::GatewayConfig {
        http_addr: bizops_testkit::any_port(),
        metrics_addr: bizops_testkit::any_port(),
        ..Default::default()
    };
    config.auth.service_key = Some(key.to_secret_string());
    config.nats.url = bizops_testkit::nats_url().into();
    config.nats.prefix = bizops_testkit::nats_prefix();
    let err = gateway::App::build(config).await.err().expect("refused");
    assert!(err.to_string().contains("BIZOPS_CSRF_KEY"), "{err}");
}

#[tokio::test]
async fn identity_calls_for_end_users_carry_the_service_token_and_client_address() {
    let gw = Gateway::start().await;
    let _b = gw.user().await;
    let verifier = ServiceVerifier::new("identity", [&gw.gateway.public_key()]);
    let calls = gw.world().calls.clone();
    for rpc in ["Register", "Login"] {
        let call = calls.iter().find(|c| c.rpc == rpc).unwrap_or_else(|| panic!("no {rpc}"));
        let token = call.metadata.get("x-bizops-service-token").expect("service token");
        assert_eq!(verifier.verify(token).unwrap(), "gateway", "{rpc}");
        assert_eq!(call.metadata.get("x-bizops-source").map(String::as_str), Some("127.0.0.1"), "{rpc}");
        assert!(call.metadata.contains_key("traceparent") || call.metadata.contains_key("x-bizops-source"));
    }
}

#[tokio::test]
async fn a_wrong_password_gets_the_one_error_shape() {
    let gw = Gateway::start().await;
    let mut b = gw.user().await;
    b.cookie = None;
    let r = b.sign_in("not the password at all").await;
    r.assert(StatusCode::UNAUTHORIZED);
    assert_eq!(r.error_code(), "INVALID_CREDENTIALS");
    let v = r.json();
    assert_eq!(v.as_object().unwrap().len(), 1);
    assert_eq!(v["error"].as_object().unwrap().len(), 2);
    assert!(r.set_cookies().is_empty());
}

#[tokio::test]
async fn logout_revokes_at_once() {
    let gw = Gateway::start().await;
    let mut b = gw.user().await;
    let stolen = b.cookie.clone();
    b.get("/api/v1/session").await.assert(StatusCode::OK);
    b.post_empty("/api/v1/auth/logout").await.assert(StatusCode::NO_CONTENT);
    // A copy of the cookie taken before the logout no longer works, immediately.
    b.cookie = stolen;
    b.get("/api/v1/session").await.assert(StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn revocation_at_identity_is_enforced_within_the_cache_bound() {
    let gw = Gateway::start().await;
    let mut b = gw.user().await;
    b.get("/api/v1/session").await.assert(StatusCode::OK);
    let before = gw.world().verify_session_calls;
    for _ in 0..5 {
        b.get("/api/v1/session").await.assert(StatusCode::OK);
    }
    assert!(gw.world().verify_session_calls - before <= 1, "answers are cached briefly");

    // Revoked elsewhere (e.g. a password change on another device).
    gw.fakes.revoke_all(&b.email);
    let revoked = Instant::now();
    loop {
        let r = b.get("/api/v1/session").await;
        if r.status == StatusCode::UNAUTHORIZED {
            // The stale cookie is removed too.
            assert!(r.set_cookies().iter().any(|c| c.contains("Max-Age=0")), "{:?}", r.set_cookies());
            break;
        }
        assert!(revoked.elapsed() < Duration::from_millis(5500), "still accepted after the 5 s bound");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_password_change_hands_out_a_fresh_session_and_ends_the_old_one() {
    let gw = Gateway::start().await;
    let mut b = gw.user().await;
    let old_cookie = b.cookie.clone();
    let old_csrf = b.csrf.clone();
    let new_password = "another long and unusual passphrase";
    let r = b
        .post_json(
            "/api/v1/me/password",
            &json!({"current_password": PASSWORD, "new_password": new_password}),
        )
        .await;
    r.assert(StatusCode::OK);
    assert_eq!(r.set_cookies().len(), 1);
    assert_ne!(b.cookie, old_cookie);
    let fresh_csrf = r.json()["csrf_token"].as_str().unwrap().to_owned();
    assert_ne!(Some(fresh_csrf.clone()), old_csrf, "the token follows the session");
    b.csrf = Some(fresh_csrf);
    b.get("/api/v1/session").await.assert(StatusCode::OK);
    let mut old = gw.browser();
    old.cookie = old_cookie;
    old.get("/api/v1/session").await.assert(StatusCode::UNAUTHORIZED);
    // The new password signs in.
    b.cookie = None;
    b.sign_in(new_password).await.assert(StatusCode::OK);
}

#[tokio::test]
async fn deleting_the_account_needs_the_password_and_clears_the_cookie() {
    let gw = Gateway::start().await;
    let mut b = gw.user().await;
    gw.pilot(&mut b, "Doomed").await;
    let wrong = b.json(Method::DELETE, "/api/v1/me", &json!({"password": "nope nope nope nope"})).await;
    wrong.assert(StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.error_code(), "INVALID_CREDENTIALS");
    let r = b.json(Method::DELETE, "/api/v1/me", &json!({"password": PASSWORD})).await;
    r.assert(StatusCode::NO_CONTENT);
    assert!(r.set_cookies()[0].contains("Max-Age=0"));
    assert!(gw.world().accounts.is_empty() && gw.world().pilots.is_empty());
    let mut again = gw.browser();
    again.email = b.email.clone();
    again.sign_in(PASSWORD).await.assert(StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn only_one_cookie_name_is_ever_set() {
    let gw = Gateway::start().await;
    let mut b = gw.browser();
    // Every kind of page and answer a browser meets along the way.
    for path in ["/", "/signin", "/signup", "/privacy", "/pilots", "/static/app.css", "/nope"] {
        b.get(path).await;
    }
    b.post_form("/signup", &[("email", "one@example.com"), ("password", PASSWORD)])
        .await
        .assert(StatusCode::SEE_OTHER);
    b.email = "one@example.com".into();
    b.csrf = b.get("/api/v1/session").await.json()["csrf_token"].as_str().map(str::to_owned);
    let (id, _) = gw.pilot(&mut b, "Cookies").await;
    for path in ["/pilots", &format!("/pilots/{id}"), "/approvals", "/connectors", "/account"] {
        b.get(path).await.assert(StatusCode::OK);
    }
    b.post_form(
        "/account/password",
        &[
            ("current_password", PASSWORD),
            ("new_password", "a brand new long passphrase"),
            ("confirm_password", "a brand new long passphrase"),
        ],
    )
    .await
    .assert(StatusCode::SEE_OTHER);
    b.csrf = b.get("/api/v1/session").await.json()["csrf_token"].as_str().map(str::to_owned);
    b.post_form("/signout", &[]).await.assert(StatusCode::SEE_OTHER);
    b.post_form("/signin", &[("email", "one@example.com"), ("password", "wrong wrong wrong")]).await;
    b.post_form("/signin", &[("email", "one@example.com"), ("password", "a brand new long passphrase")])
        .await;
    b.csrf = b.get("/api/v1/session").await.json()["csrf_token"].as_str().map(str::to_owned);
    b.post_form("/account/delete", &[("password", "a brand new long passphrase"), ("confirm", "on")])
        .await
        .assert(StatusCode::SEE_OTHER);
    assert_eq!(b.cookie_names.iter().collect::<Vec<_>>(), [COOKIE]);
}
