//! The gateway's browser security against the whole real suite in-process: the
//! one session cookie and its attributes, revocation (logout, a password change
//! elsewhere, deletion), CSRF, what may be cached, the live view ending with the
//! session, and random cookies that cannot make it ask identity without bound.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bizops_e2e::{
    browser::{Browser, COOKIE, read_events},
    suite::{ORIGIN, PASSWORD, Suite},
};
use bizops_proto::identity::v1 as ipb;
use bizops_testkit::{authed, wait::Polling};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

fn spec(title: &str) -> Value {
    json!({
        "title": title,
        "steps": [
            {"key": "ask", "kind": "approval", "config": {"message": "Go on?"}},
            {"key": "echo", "kind": "transform", "config": {"template": "{{ trigger | tojson }}"}}
        ]
    })
}

fn email(tag: &str) -> String {
    format!("{tag}-{}@example.com", Uuid::now_v7().simple())
}

#[track_caller]
fn assert_session_cookie(cookie: &str) {
    assert!(cookie.starts_with(&format!("{COOKIE}=ey")), "{cookie}");
    let attrs: Vec<&str> = cookie.split(';').skip(1).map(str::trim).collect();
    for want in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(attrs.contains(&want), "{want} missing: {cookie}");
    }
    assert!(attrs.iter().any(|a| a.starts_with("Max-Age=") && *a != "Max-Age=0"), "{cookie}");
    assert!(!cookie.to_ascii_lowercase().contains("domain"), "{cookie}");
}

/// Sign-in sets exactly one cookie, `__Host-bizops_session`, HttpOnly, Secure,
/// SameSite=Strict, Path=/, no Domain; the token is never in a body; sign-out
/// removes it and the session ends.
#[tokio::test]
async fn sign_in_sets_exactly_the_session_cookie_and_sign_out_clears_it() {
    let suite = Suite::start().await;
    let mut b = suite.browser();
    b.email = email("ada");
    let r =
        b.post_json("/api/v1/auth/register", &json!({"email": b.email.clone(), "password": PASSWORD})).await;
    r.assert(StatusCode::CREATED);
    assert!(r.set_cookies().is_empty(), "registering does not sign in");
    let r = b.sign_in(PASSWORD).await;
    r.assert(StatusCode::OK);
    let cookies = r.set_cookies();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    assert_session_cookie(&cookies[0]);
    let body = r.json();
    assert_eq!(body["account"]["email"], b.email.as_str());
    assert!(body["csrf_token"].as_str().is_some_and(|t| t.len() >= 40));
    assert!(!r.body.contains(&b.token().unwrap()), "the token is never in a body");
    let me = b.get("/api/v1/session").await;
    me.assert(StatusCode::OK);
    assert_eq!(me.json()["csrf_token"], body["csrf_token"]);
    assert_eq!(me.json()["session_id"], body["session_id"]);

    let out = b.post_empty("/api/v1/auth/logout").await;
    out.assert(StatusCode::NO_CONTENT);
    let cleared = out.set_cookies();
    assert_eq!(cleared.len(), 1);
    assert!(
        cleared[0].starts_with(&format!("{COOKIE}=;")) && cleared[0].contains("Max-Age=0"),
        "{cleared:?}"
    );
    assert!(b.cookie.is_none());
    b.get("/api/v1/session").await.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    assert_eq!(b.cookie_names.iter().collect::<Vec<_>>(), [COOKIE]);
}

/// The explicit development setting (plain http) drops `Secure` and therefore
/// the `__Host-` prefix, nothing else.
#[tokio::test]
async fn dev_mode_drops_secure_and_the_host_prefix_only() {
    let suite = Suite::start_with(|c| {
        c.gateway.insecure_dev_cookies = true;
        c.gateway.csrf_key = None; // derived from the service key in dev mode
    })
    .await;
    let mut b = suite.web_user("dev").await;
    assert_eq!(b.cookie_names.iter().collect::<Vec<_>>(), ["bizops_session"]);
    let r = b.sign_in(PASSWORD).await;
    let cookie = &r.set_cookies()[0];
    assert!(cookie.starts_with("bizops_session=ey"), "{cookie}");
    assert!(!cookie.contains("Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/"));
    b.get("/api/v1/session").await.assert(StatusCode::OK);
    b.post_json("/api/v1/pilots", &json!({"spec": spec("Dev")})).await.assert(StatusCode::CREATED);
}

/// After sign-out a copy of the cookie taken before stops working at once (the
/// gateway forgets its cached answer; identity revoked the session).
#[tokio::test]
async fn logout_revokes_a_copied_cookie_at_once() {
    let suite = Suite::start().await;
    let mut b = suite.web_user("revoke").await;
    let stolen = b.cookie.clone();
    b.get("/api/v1/session").await.assert(StatusCode::OK);
    b.post_empty("/api/v1/auth/logout").await.assert(StatusCode::NO_CONTENT);
    let mut thief = suite.browser();
    thief.cookie = stolen.clone();
    let r = thief.get("/api/v1/session").await;
    r.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    assert!(r.set_cookies().iter().any(|c| c.contains("Max-Age=0")), "the dead cookie is removed");
    // The backends agree: the token is dead everywhere.
    let token = stolen.unwrap().1;
    let status = suite.identity().get_account(authed(&token, ipb::GetAccountRequest {})).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    // Pages send it to sign-in.
    thief.cookie = Some((COOKIE.into(), token));
    let page = thief.get("/pilots").await;
    page.assert(StatusCode::SEE_OTHER);
    assert_eq!(page.header("location"), Some("/signin"));
}

/// A password change made elsewhere (straight at identity, so the gateway's
/// cache is not told) ends this browser's session within the 5 s bound; a change
/// through the gateway hands out a fresh cookie and ends the old one at once.
#[tokio::test]
async fn a_password_change_ends_other_sessions_within_the_cache_bound() {
    let suite = Suite::start().await;
    let mut b = suite.web_user("elsewhere").await;
    b.get("/api/v1/session").await.assert(StatusCode::OK);
    let token = suite.login(&b.email).await.unwrap();
    let changed = "a long and rather unusual passphrase 1";
    suite
        .identity()
        .change_password(authed(
            &token,
            ipb::ChangePasswordRequest { current_password: PASSWORD.into(), new_password: changed.into() },
        ))
        .await
        .unwrap();
    let mut wait = Polling::new(Duration::from_millis(5500));
    loop {
        let r = b.get("/api/v1/session").await;
        if r.status == StatusCode::UNAUTHORIZED {
            assert!(r.set_cookies().iter().any(|c| c.contains("Max-Age=0")), "{:?}", r.set_cookies());
            break;
        }
        r.assert(StatusCode::OK);
        wait.next("the revoked session to be refused within the 5 s bound").await;
    }

    // Through the gateway.
    b.sign_in(changed).await.assert(StatusCode::OK);
    let old_cookie = b.cookie.clone();
    let old_csrf = b.csrf.clone();
    let newer = "another long and unusual passphrase 2";
    let r = b
        .post_json("/api/v1/me/password", &json!({"current_password": changed, "new_password": newer}))
        .await;
    r.assert(StatusCode::OK);
    assert_eq!(r.set_cookies().len(), 1);
    assert_session_cookie(&r.set_cookies()[0]);
    assert_ne!(b.cookie, old_cookie);
    let fresh_csrf = r.json()["csrf_token"].as_str().unwrap().to_owned();
    assert_ne!(Some(fresh_csrf.clone()), old_csrf, "the token follows the session");
    b.csrf = Some(fresh_csrf);
    b.get("/api/v1/session").await.assert(StatusCode::OK);
    b.post_json("/api/v1/pilots", &json!({"spec": spec("After")})).await.assert(StatusCode::CREATED);
    let mut old = suite.browser();
    old.cookie = old_cookie;
    old.get("/api/v1/session").await.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    // A wrong current password changes nothing.
    b.post_json(
        "/api/v1/me/password",
        &json!({"current_password": "not it, not at all", "new_password": "x"}),
    )
    .await
    .assert_error(StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS");
    b.cookie = None;
    b.sign_in(newer).await.assert(StatusCode::OK);
}

/// Deleting the account needs the password; then the cookie is removed, the
/// session is dead and sign-in fails like for an unknown address.
#[tokio::test]
async fn deleting_the_account_needs_the_password_and_clears_the_cookie() {
    let suite = Suite::start().await;
    let mut b = suite.web_user("doomed").await;
    let created = b.post_json("/api/v1/pilots", &json!({"spec": spec("Doomed")})).await;
    created.assert(StatusCode::CREATED);
    let stolen = b.cookie.clone();
    b.json(Method::DELETE, "/api/v1/me", &json!({"password": "nope nope nope nope"}))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS");
    b.get("/api/v1/session").await.assert(StatusCode::OK);
    let r = b.json(Method::DELETE, "/api/v1/me", &json!({"password": PASSWORD})).await;
    r.assert(StatusCode::NO_CONTENT);
    assert!(r.set_cookies()[0].contains("Max-Age=0"));
    let mut thief = suite.browser();
    thief.cookie = stolen;
    thief.get("/api/v1/session").await.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    let mut again = suite.browser();
    again.email = b.email.clone();
    again.sign_in(PASSWORD).await.assert_error(StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS");
    let id = created.json()["pilot"]["id"].as_str().unwrap().to_owned();
    assert_eq!(suite.hook(&id, created.json()["webhook_secret"].as_str().unwrap(), json!({})).await.0, 401);
}

/// CSRF: every state-changing request needs the same origin and the session's
/// token (header or form field); nothing reaches a backend otherwise. Sign-in
/// and sign-up need the same origin but no token.
#[tokio::test]
async fn state_changing_requests_need_the_same_origin_and_the_token() {
    let suite = Suite::start().await;
    let mut b = suite.web_user("csrf").await;
    let good = b.csrf.clone();
    let create = json!({"spec": spec("CSRF")});

    b.csrf = None;
    b.post_json("/api/v1/pilots", &create).await.assert_error(StatusCode::FORBIDDEN, "CSRF_REJECTED");
    b.csrf = Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into());
    b.post_json("/api/v1/pilots", &create).await.assert_error(StatusCode::FORBIDDEN, "CSRF_REJECTED");
    let other = suite.web_user("other").await;
    b.csrf = other.csrf.clone();
    b.post_json("/api/v1/pilots", &create).await.assert_error(StatusCode::FORBIDDEN, "CSRF_REJECTED");
    b.json(Method::DELETE, "/api/v1/me", &json!({"password": PASSWORD}))
        .await
        .assert_error(StatusCode::FORBIDDEN, "CSRF_REJECTED");
    b.post_empty("/api/v1/auth/logout").await.assert_error(StatusCode::FORBIDDEN, "CSRF_REJECTED");
    b.csrf = good.clone();
    assert_eq!(b.get("/api/v1/pilots").await.json()["pilots"], json!([]), "nothing reached the catalog");
    b.get("/api/v1/session").await.assert(StatusCode::OK); // not deleted, not signed out

    // The right token from another origin, or with no origin at all: refused.
    b.origin = Some("https://evil.test".into());
    b.post_json("/api/v1/pilots", &create).await.assert_error(StatusCode::FORBIDDEN, "CSRF_REJECTED");
    b.origin = None;
    b.post_json("/api/v1/pilots", &create).await.assert_error(StatusCode::FORBIDDEN, "CSRF_REJECTED");
    let token = good.clone().unwrap();
    b.send(Method::POST, "/api/v1/pilots", |r| {
        r.header("sec-fetch-site", "cross-site").header("x-csrf-token", token).json(&create)
    })
    .await
    .assert_error(StatusCode::FORBIDDEN, "CSRF_REJECTED");
    // A browser that sends only Sec-Fetch-Site: same-origin is fine.
    let token = good.clone().unwrap();
    let create2 = create.clone();
    b.send(Method::POST, "/api/v1/pilots", |r| {
        r.header("sec-fetch-site", "same-origin").header("x-csrf-token", token).json(&create2)
    })
    .await
    .assert(StatusCode::CREATED);
    b.origin = Some(ORIGIN.into());
    assert_eq!(b.get("/api/v1/pilots").await.json()["pilots"].as_array().unwrap().len(), 1);

    // Dashboard forms: the token in a field; the refusal is an HTML page.
    let id = b.get("/api/v1/pilots").await.json()["pilots"][0]["id"].as_str().unwrap().to_owned();
    let path = format!("/pilots/{id}/enabled");
    assert_eq!(b.get(&format!("/api/v1/pilots/{id}")).await.json()["enabled"], true);
    b.csrf = None;
    let r = b.post_form(&path, &[("enabled", "false")]).await;
    r.assert(StatusCode::FORBIDDEN);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(r.body.contains("CSRF_REJECTED"));
    b.csrf = Some("wrong".into());
    b.post_form(&path, &[("enabled", "false")]).await.assert(StatusCode::FORBIDDEN);
    assert_eq!(b.get(&format!("/api/v1/pilots/{id}")).await.json()["enabled"], true, "unchanged");
    b.csrf = good;
    let r = b.post_form(&path, &[("enabled", "false")]).await;
    r.assert(StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), Some(format!("/pilots/{id}?notice=disabled").as_str()));
    assert_eq!(b.get(&format!("/api/v1/pilots/{id}")).await.json()["enabled"], false);
    let page = b.get(&format!("/pilots/{id}")).await;
    let token = b.csrf.clone().unwrap();
    assert!(page.body.contains(&format!("name=\"csrf_token\" value=\"{token}\"")));
    assert!(page.body.contains(&format!("<meta name=\"csrf-token\" content=\"{token}\">")));

    // Sign-up and sign-in: same origin, no token (login CSRF).
    let mut anon = suite.browser();
    let address = email("x");
    anon.origin = Some("https://evil.test".into());
    anon.post_json("/api/v1/auth/register", &json!({"email": address, "password": PASSWORD}))
        .await
        .assert_error(StatusCode::FORBIDDEN, "CSRF_REJECTED");
    anon.origin = None;
    anon.post_json("/api/v1/auth/register", &json!({"email": address, "password": PASSWORD}))
        .await
        .assert_error(StatusCode::FORBIDDEN, "CSRF_REJECTED");
    assert_eq!(
        suite.login(&address).await.unwrap_err().code(),
        tonic::Code::Unauthenticated,
        "no account made"
    );
    anon.origin = Some("https://evil.test".into());
    anon.post_form("/signin", &[("email", b.email.as_str()), ("password", PASSWORD)])
        .await
        .assert(StatusCode::FORBIDDEN);
    assert!(anon.cookie.is_none());
    anon.origin = Some(ORIGIN.into());
    anon.post_json("/api/v1/auth/register", &json!({"email": address, "password": PASSWORD}))
        .await
        .assert(StatusCode::CREATED);
}

/// Across every kind of page and answer a browser meets, from sign-up to
/// account deletion, only one cookie name is ever set.
#[tokio::test]
async fn only_one_cookie_name_is_ever_set() {
    let suite = Suite::start().await;
    let mut b = suite.browser();
    for path in
        ["/", "/signin", "/signup", "/privacy", "/pilots", "/static/app.css", "/nope", "/api/openapi.json"]
    {
        b.get(path).await;
    }
    let address = email("one");
    b.post_form("/signup", &[("email", address.as_str()), ("password", PASSWORD)])
        .await
        .assert(StatusCode::SEE_OTHER);
    b.email = address.clone();
    b.refresh_csrf().await;
    let created = b.post_json("/api/v1/pilots", &json!({"spec": spec("Cookies"), "enabled": true})).await;
    let id = created.json()["pilot"]["id"].as_str().unwrap().to_owned();
    let secret = created.json()["webhook_secret"].as_str().unwrap().to_owned();
    assert_eq!(suite.hook(&id, &secret, json!({"a": 1})).await.0, 202);
    let run = b.wait_for_run(&id, "awaiting_approval").await["id"].as_str().unwrap().to_owned();
    for path in [
        "/pilots".to_owned(),
        format!("/pilots/{id}"),
        format!("/pilots/{id}/edit"),
        format!("/pilots/{id}/runs"),
        format!("/runs/{run}"),
        "/approvals".to_owned(),
        "/connectors".to_owned(),
        "/account".to_owned(),
        "/privacy".to_owned(),
    ] {
        b.get(&path).await.assert(StatusCode::OK);
    }
    let approval = b.get("/api/v1/approvals").await.json()["approvals"][0]["id"].as_str().unwrap().to_owned();
    b.post_form(&format!("/approvals/{approval}"), &[("decision", "approve")])
        .await
        .assert(StatusCode::SEE_OTHER);
    let new_password = "a brand new long passphrase 9";
    b.post_form(
        "/account/password",
        &[("current_password", PASSWORD), ("new_password", new_password), ("confirm_password", new_password)],
    )
    .await
    .assert(StatusCode::SEE_OTHER);
    b.refresh_csrf().await;
    b.post_form("/signout", &[]).await.assert(StatusCode::SEE_OTHER);
    b.post_form("/signin", &[("email", address.as_str()), ("password", "wrong wrong wrong")]).await;
    b.post_form("/signin", &[("email", address.as_str()), ("password", new_password)])
        .await
        .assert(StatusCode::SEE_OTHER);
    b.refresh_csrf().await;
    b.post_form("/account/delete", &[("password", new_password), ("confirm", "on")])
        .await
        .assert(StatusCode::SEE_OTHER);
    assert!(b.cookie.is_none());
    assert_eq!(b.cookie_names.iter().collect::<Vec<_>>(), [COOKIE]);
}

/// `/privacy` may be cached by anyone only when the request has no session
/// cookie; the signed-in page carries the CSRF token and is `no-store`, and so
/// is the answer to a dead cookie (it removes the cookie).
#[tokio::test]
async fn privacy_is_publicly_cacheable_only_without_a_session_cookie() {
    let suite = Suite::start().await;
    let mut anon = suite.browser();
    let r = anon.get("/privacy").await;
    r.assert(StatusCode::OK);
    assert_eq!(r.header("cache-control"), Some("public, max-age=3600"));
    assert!(r.header("vary").is_some_and(|v| v.to_ascii_lowercase().contains("cookie")), "{:?}", r.headers);
    assert!(r.set_cookies().is_empty());
    assert!(!r.body.contains("csrf"), "the anonymous page has no token");

    let mut b = suite.web_user("private").await;
    let r = b.get("/privacy").await;
    r.assert(StatusCode::OK);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(r.body.contains(b.csrf.as_deref().unwrap()), "the signed-in layout carries the token");

    let mut stale = suite.browser();
    stale.cookie = Some((COOKIE.into(), "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln".into()));
    let r = stale.get("/privacy").await;
    r.assert(StatusCode::OK);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(r.set_cookies().iter().any(|c| c.contains("Max-Age=0")));
}

/// `GET /api/v1/session` with `token` as the cookie, as if from `ip`.
async fn session_from(b: &mut Browser, ip: &'static str, token: String) -> bizops_e2e::browser::Resp {
    b.cookie = Some((COOKIE.into(), token));
    b.send(Method::GET, "/api/v1/session", move |r| r.header("x-forwarded-for", ip)).await
}

/// Cookies identity refuses are budgeted per source: past the budget, further
/// unknown cookies from there get 429 without identity being asked; sources
/// are independent, and requests without a cookie are unaffected.
#[tokio::test]
async fn random_session_cookies_are_throttled_per_source() {
    let suite = Suite::start_with(|c| {
        c.gateway.rate_limits.invalid_session_per_source = gateway::config::Rate::new(6, 3);
        c.gateway.client_ip_header = Some("x-forwarded-for".into());
    })
    .await;
    let mut b = suite.browser();
    let forged = || format!("eyJ{}.eyJ{}.sig", Uuid::now_v7().simple(), Uuid::now_v7().simple());
    // The budget (a burst of three) is used up by the fourth refusal.
    for _ in 0..4 {
        session_from(&mut b, "203.0.113.5", forged())
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    }
    let r = session_from(&mut b, "203.0.113.5", forged()).await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    // The same refused cookie again is answered from the gateway's cache (no budget used).
    let repeated = forged();
    session_from(&mut b, "203.0.113.6", repeated.clone())
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    for _ in 0..5 {
        session_from(&mut b, "203.0.113.6", repeated.clone())
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    }
    // Another source; and no cookie at all.
    session_from(&mut b, "198.51.100.5", forged())
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    let mut anon = suite.browser();
    anon.send(Method::GET, "/signin", |r| r.header("x-forwarded-for", "203.0.113.5"))
        .await
        .assert(StatusCode::OK);
    // Real sessions from other sources are not affected.
    let user = suite.user("real").await;
    let mut real = suite.browser();
    real.cookie = Some((COOKIE.into(), user.token.clone()));
    real.send(Method::GET, "/api/v1/session", |r| r.header("x-forwarded-for", "192.0.2.9"))
        .await
        .assert(StatusCode::OK);
}

/// The live view ends when the session does (it re-checks every 5 s), and a
/// finished run sends its snapshot and ends at once.
#[tokio::test]
async fn the_live_view_ends_with_the_session() {
    let suite = Suite::start().await;
    let mut b = suite.web_user("live").await;
    let created = b.post_json("/api/v1/pilots", &json!({"spec": spec("Live"), "enabled": true})).await;
    let id = created.json()["pilot"]["id"].as_str().unwrap().to_owned();
    let secret = created.json()["webhook_secret"].as_str().unwrap().to_owned();
    assert_eq!(suite.hook(&id, &secret, json!({"a": 1})).await.0, 202);
    let run = b.wait_for_run(&id, "awaiting_approval").await["id"].as_str().unwrap().to_owned();
    let open = b.stream(&format!("/api/v1/runs/{run}/events")).await;
    assert_eq!(open.status(), StatusCode::OK);
    // Signed out elsewhere: straight at identity, so only the re-check notices.
    let token = b.token().unwrap();
    suite.identity().logout(authed(&token, ipb::LogoutRequest {})).await.unwrap();
    let got = read_events(open, |name, _| name == "end").await;
    assert_eq!(got.first().map(|(n, _)| n.as_str()), Some("snapshot"));
    assert_eq!(got.last().unwrap().1, "signed out", "{got:?}");

    // A finished run: snapshot, end.
    let mut b = suite.browser();
    let owner = suite.user("finished").await;
    b.cookie = Some((COOKIE.into(), owner.token.clone()));
    b.csrf = b.get("/api/v1/session").await.json()["csrf_token"].as_str().map(str::to_owned);
    let created = b
        .post_json(
            "/api/v1/pilots",
            &json!({"spec": {"title": "Done", "steps": [{"key": "x", "kind": "transform", "config": {"template": "{}"}}]}, "enabled": true}),
        )
        .await;
    created.assert(StatusCode::CREATED);
    let id = created.json()["pilot"]["id"].as_str().unwrap().to_owned();
    let secret = created.json()["webhook_secret"].as_str().unwrap().to_owned();
    assert_eq!(suite.hook(&id, &secret, json!({})).await.0, 202);
    let run = b.wait_for_run(&id, "succeeded").await["id"].as_str().unwrap().to_owned();
    let got =
        read_events(b.stream(&format!("/api/v1/runs/{run}/events")).await, |name, _| name == "end").await;
    assert_eq!(got.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["snapshot", "end"]);
}
