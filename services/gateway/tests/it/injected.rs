//! Failures the real services cannot be made to produce, injected into the
//! fakes: what the gateway does with them.

use std::collections::VecDeque;

use bizops_errors::{Error, ErrorCode};
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::harness::{Browser, Gateway, Resp};

async fn hook(b: &mut Browser, pilot: &str, secret: &str) -> Resp {
    let secret = secret.to_owned();
    b.origin = None;
    b.send(Method::POST, &format!("/hooks/{pilot}"), move |r| {
        r.header("x-pilot-secret", secret).header("content-type", "application/json").body("{}")
    })
    .await
}

/// "Run now" without a key gets one from the gateway, the same on every retry
/// of the call, so an UNAVAILABLE that hid a success cannot start two runs.
#[tokio::test]
async fn a_retried_start_run_carries_one_idempotency_key() {
    let gw = Gateway::start().await;
    let mut b = gw.user().await;
    let (pilot, _) = gw.pilot(&mut b, "Retried").await;
    gw.world().inject.insert("StartRun", VecDeque::from([tonic::Status::unavailable("connection reset")]));
    let r = b.post_json(&format!("/api/v1/pilots/{pilot}/runs"), &json!({"payload": {"a": 1}})).await;
    r.assert(StatusCode::ACCEPTED);
    let started = gw.world().started.clone();
    assert_eq!(started.len(), 2, "one retry");
    let key: Uuid = started[0].idempotency_key.parse().expect("a generated key");
    assert_eq!(key.get_version_num(), 7);
    assert_eq!(started[1].idempotency_key, started[0].idempotency_key, "the retry repeats the key");

    // A key from the client passes through; each request without one gets its own.
    b.post_json(&format!("/api/v1/pilots/{pilot}/runs"), &json!({"idempotency_key": "mine"}))
        .await
        .assert(StatusCode::ACCEPTED);
    b.post_form(&format!("/pilots/{pilot}/run"), &[("payload", "")]).await.assert(StatusCode::SEE_OTHER);
    let started = gw.world().started.clone();
    assert_eq!(started[2].idempotency_key, "mine");
    assert!(started[3].idempotency_key.parse::<Uuid>().is_ok());
    assert_ne!(started[3].idempotency_key, started[0].idempotency_key);
}

/// Only the catalog's own verdicts about a webhook (its stable codes
/// WEBHOOK_REJECTED, NOT_FOUND, PILOT_DISABLED) are the public 401. A bare status
/// without the code (a proxy, a transport failure) or any other code (the
/// catalog refusing the gateway itself, an internal error) is a 503 to retry
/// with `Retry-After`, and an error in the log.
#[tokio::test]
async fn only_the_catalogs_verdicts_are_401_everything_else_is_503() {
    let gw = Gateway::start_with(|c| c.timeouts.rpc_retries = 0).await;
    let mut b = gw.user().await;
    let (pilot, secret) = gw.pilot(&mut b, "Verdicts").await;
    let ours = |code: ErrorCode| -> tonic::Status { Error::new(code, "from the catalog").into() };
    let cases: Vec<(tonic::Status, StatusCode)> = vec![
        (ours(ErrorCode::WebhookRejected), StatusCode::UNAUTHORIZED),
        (ours(ErrorCode::NotFound), StatusCode::UNAUTHORIZED),
        (ours(ErrorCode::PilotDisabled), StatusCode::UNAUTHORIZED),
        (ours(ErrorCode::Unauthenticated), StatusCode::SERVICE_UNAVAILABLE),
        (ours(ErrorCode::PermissionDenied), StatusCode::SERVICE_UNAVAILABLE),
        (ours(ErrorCode::FailedPrecondition), StatusCode::SERVICE_UNAVAILABLE),
        (ours(ErrorCode::Internal), StatusCode::SERVICE_UNAVAILABLE),
        (tonic::Status::unauthenticated("proxy says no"), StatusCode::SERVICE_UNAVAILABLE),
        (tonic::Status::not_found("no such route"), StatusCode::SERVICE_UNAVAILABLE),
        (tonic::Status::unimplemented("wrong service"), StatusCode::SERVICE_UNAVAILABLE),
        (tonic::Status::unavailable("down"), StatusCode::SERVICE_UNAVAILABLE),
    ];
    let mut anon = gw.browser();
    for (status, want) in cases {
        let what = format!("{:?} {:?}", status.code(), bizops_testkit::code_of(&status));
        gw.world().inject.insert("VerifyWebhook", VecDeque::from([status]));
        let r = hook(&mut anon, &pilot.to_string(), &secret).await;
        assert_eq!(r.status, want, "{what}: {}", r.body);
        if want == StatusCode::UNAUTHORIZED {
            assert_eq!(r.error_code(), "WEBHOOK_REJECTED", "{what}");
            assert_eq!(r.json()["error"]["message"], "webhook not accepted", "{what}");
        } else {
            assert_eq!(r.error_code(), "UNAVAILABLE", "{what}");
            assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1, "{what}");
            assert!(!r.body.contains("proxy") && !r.body.contains("from the catalog"), "{what}: {}", r.body);
        }
    }
    let errors = gw
        .logs
        .contents()
        .lines()
        .filter(|l| l.contains("\"level\":\"ERROR\"") && l.contains("VerifyWebhook failed"))
        .count();
    assert!(errors >= 8, "each 503 is logged as an error ({errors})");
    // Nothing was accepted meanwhile; with the catalog answering again, it is.
    assert_eq!(gw.stored_triggers().await, 0);
    hook(&mut anon, &pilot.to_string(), &secret).await.assert(StatusCode::ACCEPTED);
}

/// Webhooks never look at the session cookie (no VerifySession call).
#[tokio::test]
async fn a_cookie_on_a_webhook_is_ignored() {
    let gw = Gateway::start().await;
    let mut b = gw.user().await;
    let (pilot, secret) = gw.pilot(&mut b, "Cookieless").await;
    let before = gw.world().verify_session_calls;
    b.cookie = Some(("__Host-bizops_session".into(), "fk.forged.token".into()));
    hook(&mut b, &pilot.to_string(), &secret).await.assert(StatusCode::ACCEPTED);
    assert_eq!(gw.world().verify_session_calls, before);
    let call = gw.world().calls.iter().find(|c| c.rpc == "VerifyWebhook").cloned().unwrap();
    assert!(call.metadata.contains_key("authorization"), "the gateway's service token");
    assert!(!call.metadata.contains_key("cookie"));
}
