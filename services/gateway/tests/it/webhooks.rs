//! Webhook ingest: 202 only once JetStream has the trigger, one answer for every
//! refusal, size and rate limits, idempotency through Nats-Msg-Id.

use std::time::Duration;

use bizops_proto::events::v1 as events;
use prost::Message as _;
use reqwest::{Method, StatusCode};
use uuid::Uuid;

use crate::harness::{Browser, Gateway, Resp};

async fn hook(
    b: &mut Browser,
    pilot: &str,
    secret: &str,
    body: &'static str,
    extra: &[(&str, &str)],
) -> Resp {
    let extra: Vec<(String, String)> =
        extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let secret = secret.to_owned();
    b.origin = None;
    b.send(Method::POST, &format!("/hooks/{pilot}"), move |mut r| {
        r = r.header("x-pilot-secret", secret).header("content-type", "application/json").body(body);
        for (k, v) in extra {
            r = r.header(k, v);
        }
        r
    })
    .await
}

#[tokio::test]
async fn an_accepted_webhook_is_stored_before_the_202() {
    let gw = Gateway::start().await;
    let mut b = gw.user().await;
    let (pilot, secret) = gw.pilot(&mut b, "Hooked").await;
    let owner = gw.world().pilots[&pilot].owner;
    let mut anon = gw.browser();
    let r = hook(&mut anon, &pilot.to_string(), &secret, r#"{"id": 7}"#, &[("webhook-id", "msg_abc")]).await;
    r.assert(StatusCode::ACCEPTED);
    let trigger_id: Uuid = r.json()["trigger_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(trigger_id.get_version_num(), 7);
    assert!(r.set_cookies().is_empty());

    let stream = gw.js.get_stream(format!("{}_TRIGGERS", gw.prefix)).await.unwrap();
    let message = stream.get_raw_message(1).await.unwrap();
    assert_eq!(message.subject.as_str(), format!("{}.triggers.{owner}.{pilot}", gw.prefix));
    assert_eq!(
        message.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_owned()),
        Some(format!("{pilot}:msg_abc"))
    );
    let t = events::Trigger::decode(message.payload.as_ref()).unwrap();
    assert_eq!(t.trigger_id, trigger_id.to_string());
    assert_eq!(t.owner_id, owner.to_string());
    assert_eq!(t.pilot_id, pilot.to_string());
    assert_eq!(t.pilot_version, 1);
    assert_eq!(t.idempotency_key, "msg_abc");
    assert_eq!(t.source(), events::TriggerSource::Webhook);
    assert_eq!(t.payload, br#"{"id": 7}"#);
    assert_eq!(t.content_type, "application/json");
    assert!(t.accepted_at.is_some());

    // The catalog got the signature headers, the raw body and the gateway's service token.
    let call = gw.world().calls.iter().find(|c| c.rpc == "VerifyWebhook").cloned().unwrap();
    assert!(call.metadata.contains_key("authorization"));
    assert!(!call.metadata.contains_key("cookie"));
}

#[tokio::test]
async fn every_refusal_gets_the_same_401() {
    let gw = Gateway::start().await;
    let mut b = gw.user().await;
    let (pilot, secret) = gw.pilot(&mut b, "Picky").await;
    let (disabled, disabled_secret) = gw.pilot(&mut b, "Off").await;
    b.post_empty(&format!("/api/v1/pilots/{disabled}/disable")).await.assert(StatusCode::OK);
    let mut anon = gw.browser();
    let answers = [
        hook(&mut anon, &Uuid::now_v7().to_string(), &secret, "{}", &[]).await,
        hook(&mut anon, &pilot.to_string(), "whsec_wrong", "{}", &[]).await,
        hook(&mut anon, &pilot.to_string(), "", "{}", &[]).await,
        hook(&mut anon, &disabled.to_string(), &disabled_secret, "{}", &[]).await,
        hook(&mut anon, "not-a-uuid", &secret, "{}", &[]).await,
    ];
    for r in &answers {
        r.assert(StatusCode::UNAUTHORIZED);
        assert_eq!(r.body, answers[0].body);
    }
    assert_eq!(answers[0].error_code(), "WEBHOOK_REJECTED");
    assert_eq!(gw.stored_triggers().await, 0);
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let gw = Gateway::start_with(|c| c.limits.webhook_body_bytes = 1024).await;
    let mut b = gw.user().await;
    let (pilot, secret) = gw.pilot(&mut b, "Small").await;
    let mut anon = gw.browser();
    let big: &'static str = Box::leak("x".repeat(1025).into_boxed_str());
    let r = hook(&mut anon, &pilot.to_string(), &secret, big, &[]).await;
    r.assert(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.error_code(), "PAYLOAD_TOO_LARGE");
    let exact: &'static str = Box::leak("x".repeat(1024).into_boxed_str());
    hook(&mut anon, &pilot.to_string(), &secret, exact, &[]).await.assert(StatusCode::ACCEPTED);

    // A body sent without Content-Length (chunked) is cut off at the limit too.
    let secret2 = secret.clone();
    let r = anon
        .send(Method::POST, &format!("/hooks/{pilot}"), move |r| {
            let chunks = futures_util::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 512])));
            r.header("x-pilot-secret", secret2).body(reqwest::Body::wrap_stream(chunks))
        })
        .await;
    r.assert(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(gw.stored_triggers().await, 1);
}

#[tokio::test]
async fn without_a_jetstream_ack_the_answer_is_503_and_nothing_is_accepted() {
    let gw = Gateway::start().await;
    let mut b = gw.user().await;
    let (pilot, secret) = gw.pilot(&mut b, "Lost").await;
    gw.js.delete_stream(format!("{}_TRIGGERS", gw.prefix)).await.unwrap();
    let mut anon = gw.browser();
    let r = hook(&mut anon, &pilot.to_string(), &secret, "{}", &[]).await;
    r.assert(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.error_code(), "UNAVAILABLE");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    assert!(!r.body.contains(&gw.prefix), "no internal detail: {}", r.body);
}

#[tokio::test]
async fn the_same_webhook_id_is_one_message_per_pilot() {
    let gw = Gateway::start().await;
    let mut b = gw.user().await;
    let (p1, s1) = gw.pilot(&mut b, "One").await;
    let (p2, s2) = gw.pilot(&mut b, "Two").await;
    let mut anon = gw.browser();
    let first = hook(&mut anon, &p1.to_string(), &s1, "{}", &[("webhook-id", "msg_same")]).await;
    first.assert(StatusCode::ACCEPTED);
    let again = hook(&mut anon, &p1.to_string(), &s1, "{}", &[("webhook-id", "msg_same")]).await;
    again.assert(StatusCode::ACCEPTED);
    assert_eq!(
        again.json()["trigger_id"],
        first.json()["trigger_id"],
        "a duplicate answers the original's id"
    );
    assert_eq!(gw.stored_triggers().await, 1);
    // Idempotency-Key works the same way when there is no webhook-id.
    hook(&mut anon, &p1.to_string(), &s1, "{}", &[("idempotency-key", "order-9")])
        .await
        .assert(StatusCode::ACCEPTED);
    hook(&mut anon, &p1.to_string(), &s1, "{}", &[("idempotency-key", "order-9")])
        .await
        .assert(StatusCode::ACCEPTED);
    assert_eq!(gw.stored_triggers().await, 2);
    // Another Pilot with the same id is another message.
    let other = hook(&mut anon, &p2.to_string(), &s2, "{}", &[("webhook-id", "msg_same")]).await;
    other.assert(StatusCode::ACCEPTED);
    assert_ne!(other.json()["trigger_id"], first.json()["trigger_id"]);
    assert_eq!(gw.stored_triggers().await, 3);
    // Without either header every request is new.
    hook(&mut anon, &p2.to_string(), &s2, "{}", &[]).await.assert(StatusCode::ACCEPTED);
    hook(&mut anon, &p2.to_string(), &s2, "{}", &[]).await.assert(StatusCode::ACCEPTED);
    assert_eq!(gw.stored_triggers().await, 5);
    // A key that cannot be a header value is refused before anything else.
    let r = hook(&mut anon, &p2.to_string(), &s2, "{}", &[("webhook-id", &"k".repeat(300))]).await;
    r.assert(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn webhooks_are_rate_limited_per_pilot_and_per_source() {
    let gw = Gateway::start_with(|c| {
        c.rate_limits.webhook_per_pilot = gateway::config::Rate::new(6, 2);
        c.rate_limits.webhook_per_source = gateway::config::Rate::new(6, 3);
    })
    .await;
    let mut b = gw.user().await;
    let (p1, s1) = gw.pilot(&mut b, "Busy").await;
    let (p2, s2) = gw.pilot(&mut b, "Other").await;
    let mut anon = gw.browser();
    hook(&mut anon, &p1.to_string(), &s1, "{}", &[]).await.assert(StatusCode::ACCEPTED);
    hook(&mut anon, &p1.to_string(), &s1, "{}", &[]).await.assert(StatusCode::ACCEPTED);
    let r = hook(&mut anon, &p1.to_string(), &s1, "{}", &[]).await;
    r.assert(StatusCode::TOO_MANY_REQUESTS);
    assert!(r.header("retry-after").is_some());
    assert_eq!(r.error_code(), "RATE_LIMITED");
    // The per-source budget (3) was used by the three above.
    let r = hook(&mut anon, &p2.to_string(), &s2, "{}", &[]).await;
    r.assert(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(gw.stored_triggers().await, 2);
}

#[tokio::test]
async fn bodies_secrets_and_session_tokens_never_reach_the_logs() {
    let gw = Gateway::start().await;
    let mut b = gw.user().await;
    let token = b.token().unwrap();
    let (pilot, secret) = gw.pilot(&mut b, "Quiet").await;
    let mut anon = gw.browser();
    hook(&mut anon, &pilot.to_string(), &secret, r#"{"card": "canary-4111-1111"}"#, &[])
        .await
        .assert(StatusCode::ACCEPTED);
    hook(&mut anon, &pilot.to_string(), "whsec_canary_wrong", r#"{"card": "canary-4111-2222"}"#, &[]).await;
    b.get("/api/v1/session").await.assert(StatusCode::OK);
    b.post_form("/signin", &[("email", "x@example.com"), ("password", "canary-password-123")]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let logs = gw.logs.contents();
    assert!(logs.contains("webhook accepted"), "the capture works");
    gw.logs.assert_absent(&["canary-4111", "canary-password-123", "whsec_canary_wrong", &secret, &token]);
}

#[tokio::test]
async fn a_cookie_on_a_webhook_is_ignored() {
    let gw = Gateway::start().await;
    let mut b = gw.user().await;
    let (pilot, secret) = gw.pilot(&mut b, "Cookieless").await;
    let before = gw.world().verify_session_calls;
    b.cookie = Some(("__Host-bizops_session".into(), "fk.forged.token".into()));
    hook(&mut b, &pilot.to_string(), &secret, "{}", &[]).await.assert(StatusCode::ACCEPTED);
    assert_eq!(gw.world().verify_session_calls, before);
}
