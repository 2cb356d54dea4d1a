//! What the real services cannot show: the metadata of the calls to identity,
//! how often identity is asked, and the refusal to start without a CSRF key.

use std::time::Duration;

use bizops_authn::ServiceVerifier;
use bizops_testkit::eventually;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{COOKIE, Gateway, PASSWORD};

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

/// Calls for an end user carry the gateway's service token, the client address
/// and the trace context of the request (a `traceparent` sent by the client
/// continues into the call).
#[tokio::test]
async fn identity_calls_for_end_users_carry_the_service_token_address_and_trace() {
    let gw = Gateway::start().await;
    let mut b = gw.user().await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    b.cookie = None;
    let email = b.email.clone();
    b.send(Method::POST, "/api/v1/auth/login", |r| {
        r.header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
            .json(&json!({"email": email, "password": PASSWORD}))
    })
    .await
    .assert(StatusCode::OK);
    let verifier = ServiceVerifier::new("identity", [&gw.gateway.public_key()]);
    let calls = gw.world().calls.clone();
    for rpc in ["Register", "Login"] {
        let call = calls.iter().find(|c| c.rpc == rpc).unwrap_or_else(|| panic!("no {rpc}"));
        let token = call.metadata.get("x-bizops-service-token").expect("service token");
        assert_eq!(verifier.verify(token).unwrap(), "gateway", "{rpc}");
        assert_eq!(call.metadata.get("x-bizops-source").map(String::as_str), Some("127.0.0.1"), "{rpc}");
        let traceparent = call.metadata.get("traceparent").unwrap_or_else(|| panic!("{rpc}: no traceparent"));
        assert!(traceparent.starts_with("00-") && traceparent.len() == 55, "{rpc}: {traceparent}");
    }
    let continued = calls.iter().rfind(|c| c.rpc == "Login").unwrap();
    assert!(
        continued.metadata["traceparent"].starts_with(&format!("00-{trace_id}-")),
        "the client's trace continues: {}",
        continued.metadata["traceparent"]
    );
}

/// Behind a proxy (`client_ip_header` configured) identity gets the client's
/// address from the header's last entry, not the proxy's.
#[tokio::test]
async fn the_client_address_behind_a_proxy_reaches_identity() {
    let gw = Gateway::start_with(|c| c.client_ip_header = Some("x-forwarded-for".into())).await;
    let mut b = gw.browser();
    for ip in ["198.51.100.10", "203.0.113.1, 198.51.100.11"] {
        b.send(Method::POST, "/api/v1/auth/login", |r| {
            r.header("x-forwarded-for", ip)
                .json(&json!({"email": "who@example.com", "password": "guess guess guess"}))
        })
        .await
        .assert(StatusCode::UNAUTHORIZED);
    }
    let sources: Vec<_> = gw
        .world()
        .calls
        .iter()
        .filter(|c| c.rpc == "Login")
        .filter_map(|c| c.metadata.get("x-bizops-source").cloned())
        .collect();
    assert_eq!(sources, ["198.51.100.10", "198.51.100.11"]);
}

/// identity is asked at most once per 5 s for the same cookie, whether it said
/// yes or no; a revocation elsewhere is enforced within that bound, and the
/// stale cookie is removed.
#[tokio::test]
async fn session_answers_are_cached_at_most_5_s_and_so_are_refusals() {
    let gw = Gateway::start().await;
    let mut b = gw.user().await;
    b.get("/api/v1/session").await.assert(StatusCode::OK);
    let before = gw.world().verify_session_calls;
    for _ in 0..5 {
        b.get("/api/v1/session").await.assert(StatusCode::OK);
    }
    assert!(gw.world().verify_session_calls - before <= 1, "answers are cached briefly");

    // A cookie identity refuses: asked once, then the refusal is reused.
    let mut forged = gw.browser();
    let before = gw.world().verify_session_calls;
    for _ in 0..5 {
        forged.cookie = Some((COOKIE.into(), "fk.forged.token".into()));
        forged.get("/api/v1/session").await.assert(StatusCode::UNAUTHORIZED);
    }
    assert_eq!(gw.world().verify_session_calls - before, 1, "refusals are cached too");

    // Revoked elsewhere (e.g. a password change on another device): refused
    // within the 5 s the gateway may cache an answer.
    gw.fakes.revoke_all(&b.email);
    let b = &tokio::sync::Mutex::new(b);
    let r = eventually(
        "the revoked session to be refused within the 5 s bound",
        Duration::from_millis(5500),
        || async move {
            let r = b.lock().await.get("/api/v1/session").await;
            (r.status == StatusCode::UNAUTHORIZED).then_some(r)
        },
    )
    .await;
    assert!(r.set_cookies().iter().any(|c| c.contains("Max-Age=0")), "{:?}", r.set_cookies());
}

/// The services behind the gateway get the session's access token, never the
/// session: the gateway exchanges the session once, reuses the access token, and
/// exchanges again 10 s before it expires. identity's own calls carry the session.
#[tokio::test]
async fn backends_get_an_access_token_exchanged_once_and_renewed_before_it_expires() {
    let gw = Gateway::start().await;
    let bearers = |gw: &Gateway| -> Vec<String> {
        gw.world()
            .calls
            .iter()
            .filter(|c| c.rpc == "ListPilots")
            .filter_map(|c| c.metadata.get("authorization").cloned())
            .collect()
    };

    // 55 s tokens: one exchange serves the sign-up and every request after it.
    let mut b = gw.user().await;
    let session = b.token().unwrap();
    for _ in 0..3 {
        b.get("/api/v1/pilots").await.assert(StatusCode::OK);
    }
    b.get("/api/v1/session").await.assert(StatusCode::OK);
    assert_eq!(gw.world().exchange_calls, 1, "one exchange for the session");
    let first = bearers(&gw);
    assert_eq!(first.len(), 3);
    assert!(first.iter().all(|t| t.starts_with("Bearer fa.") && !t.contains(&session)), "{first:?}");
    assert!(first.iter().all(|t| *t == first[0]), "the same access token: {first:?}");
    let account = gw.world().calls.iter().rev().find(|c| c.rpc == "GetAccount").cloned().unwrap();
    let identity_got = account.metadata.get("authorization").cloned();
    assert_eq!(identity_got, Some(format!("Bearer {session}")), "identity gets the session");

    // 8 s tokens (less than 20 s: kept for half their life, not until 10 s
    // before they expire): renewed after about 4 s, before they expire.
    gw.world().access_ttl = Some(time::Duration::seconds(8));
    let c = gw.user().await;
    let minted = std::time::Instant::now();
    let c = &tokio::sync::Mutex::new(c);
    c.lock().await.get("/api/v1/pilots").await.assert(StatusCode::OK);
    let short = bearers(&gw).last().cloned().unwrap();
    assert_ne!(short, first[0]);
    let renewed = eventually("a renewed access token", Duration::from_secs(8), || async {
        c.lock().await.get("/api/v1/pilots").await.assert(StatusCode::OK);
        bearers(&gw).last().filter(|t| **t != short).cloned()
    })
    .await;
    assert!(renewed.starts_with("Bearer fa."), "{renewed}");
    assert!(minted.elapsed() < Duration::from_secs(8), "renewed only after it expired");
    assert!(minted.elapsed() >= Duration::from_secs(3), "renewed too early: {:?}", minted.elapsed());

    // A revoked session's requests are refused within the 5 s the gateway may reuse
    // identity's answer, although its access token would still work at the
    // services until it expires.
    gw.fakes.revoke_all(&c.lock().await.email);
    let r = eventually("the revoked session to be refused", Duration::from_millis(5500), || async {
        let r = c.lock().await.get("/api/v1/pilots").await;
        (r.status == StatusCode::UNAUTHORIZED).then_some(r)
    })
    .await;
    assert!(r.set_cookies().iter().any(|c| c.contains("Max-Age=0")), "{:?}", r.set_cookies());
}
