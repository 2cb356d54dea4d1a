//! Webhook ingest through the gateway against the whole real suite in-process:
//! 202 only once JetStream stored the trigger (and the run follows), one 401
//! for every refusal, 413, 503 when nothing could be stored or the catalog
//! cannot vouch, idempotency counted in runs, Standard Webhooks signatures, rate
//! limits, and logs that never hold a body or a secret.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bizops_e2e::{
    browser::{Browser, Resp},
    suite::{Suite, Svc},
};
use bizops_proto::events::v1::{self as events, RunStatus};
use bizops_testkit::until;
use prost::Message as _;
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

/// A Pilot whose one step renders the trigger (runs finish at once).
fn echo_spec(title: &str) -> serde_json::Value {
    json!({
        "title": title,
        "steps": [{"key": "echo", "kind": "transform", "config": {"template": "{{ trigger | tojson }}"}}]
    })
}

struct Hooked {
    id: String,
    secret: String,
}

async fn pilot(b: &mut Browser, title: &str) -> Hooked {
    let r = b.post_json("/api/v1/pilots", &json!({"spec": echo_spec(title), "enabled": true})).await;
    r.assert(StatusCode::CREATED);
    let v = r.json();
    Hooked {
        id: v["pilot"]["id"].as_str().unwrap().to_owned(),
        secret: v["webhook_secret"].as_str().unwrap().to_owned(),
    }
}

/// Sends a webhook with the simple `X-Pilot-Secret` form and extra headers.
async fn hook(b: &mut Browser, pilot: &str, secret: &str, body: &str, extra: &[(&str, &str)]) -> Resp {
    let extra: Vec<(String, String)> =
        extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let (secret, body) = (secret.to_owned(), body.to_owned());
    b.origin = None;
    b.send(Method::POST, &format!("/hooks/{pilot}"), move |mut r| {
        r = r.header("content-type", "application/json").body(body);
        if !secret.is_empty() {
            r = r.header("x-pilot-secret", secret);
        }
        for (k, v) in extra {
            r = r.header(k, v);
        }
        r
    })
    .await
}

/// Sends a webhook signed the Standard Webhooks way.
async fn signed(b: &mut Browser, pilot: &str, secret: &str, id: &str, timestamp: i64, body: &str) -> Resp {
    let signature =
        standardwebhooks::Webhook::new(secret).unwrap().sign(id, timestamp, body.as_bytes()).unwrap();
    let (id, body) = (id.to_owned(), body.to_owned());
    b.origin = None;
    b.send(Method::POST, &format!("/hooks/{pilot}"), move |r| {
        r.header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .header("content-type", "application/json")
            .body(body)
    })
    .await
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Waits until the Pilot has `n` finished runs and the executor has taken in
/// everything sent so far (so any further run would exist by now); the runs.
async fn settled_runs(
    suite: &Suite,
    token: &str,
    pilot: &str,
    n: usize,
) -> Vec<bizops_proto::executor::v1::Run> {
    let finished = |runs: &[bizops_proto::executor::v1::Run]| {
        runs.iter().filter(|r| r.status == RunStatus::Succeeded as i32).count()
    };
    until(format!("{n} runs of {pilot}"), Duration::from_secs(20), || async {
        finished(&suite.runs(token, pilot).await) >= n
    })
    .await;
    suite.quiesce().await;
    let runs = suite.runs(token, pilot).await;
    assert_eq!(runs.len(), n, "exactly {n} runs: {runs:?}");
    runs
}

/// With the executor down, a 202 means the trigger is in the stream (subject,
/// `Nats-Msg-Id`, the payload as sent); once the executor is back it runs.
#[tokio::test]
async fn an_accepted_webhook_is_stored_before_the_202_and_runs_when_the_executor_is_back() {
    let mut suite = Suite::start().await;
    let mut b = suite.web_user("stored").await;
    let p = pilot(&mut b, "Stored").await;
    let owner = b.get("/api/v1/session").await.json()["account"]["id"].as_str().unwrap().to_owned();
    suite.stop(Svc::Executor).await;

    let mut sender = suite.browser();
    let r = hook(&mut sender, &p.id, &p.secret, r#"{"id": 7}"#, &[("webhook-id", "msg_abc")]).await;
    r.assert(StatusCode::ACCEPTED);
    assert!(r.set_cookies().is_empty());
    let trigger_id: Uuid = r.json()["trigger_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(trigger_id.get_version_num(), 8, "derived from the Pilot and the webhook-id");

    let stream = suite.js.get_stream(suite.subjects.triggers_stream()).await.unwrap();
    let message = stream
        .get_last_raw_message_by_subject(&format!("{}.triggers.{owner}.{}", suite.prefix, p.id))
        .await
        .unwrap();
    assert_eq!(
        message.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_owned()),
        Some(format!("{}:msg_abc", p.id))
    );
    let t = events::Trigger::decode(message.payload.as_ref()).unwrap();
    assert_eq!(
        (t.trigger_id.as_str(), t.owner_id.as_str(), t.pilot_id.as_str()),
        (trigger_id.to_string().as_str(), owner.as_str(), p.id.as_str())
    );
    assert_eq!(t.pilot_version, 1);
    assert_eq!(t.idempotency_key, "msg_abc");
    assert_eq!(t.source(), events::TriggerSource::Webhook);
    assert_eq!(t.payload.as_ref(), br#"{"id": 7}"#);
    assert_eq!(t.content_type, "application/json");
    assert!(t.accepted_at.is_some());

    suite.launch(Svc::Executor);
    let runs = settled_runs(&suite, &b.token().unwrap(), &p.id, 1).await;
    assert_eq!(runs[0].trigger_id, trigger_id.to_string());
}

/// Unknown Pilot, wrong, missing or badly signed secret, a stale signature and a
/// disabled Pilot: the same 401 body, nothing stored, no run.
#[tokio::test]
async fn every_refusal_gets_the_same_401() {
    let suite = Suite::start().await;
    let mut b = suite.web_user("picky").await;
    let p = pilot(&mut b, "Picky").await;
    let off = pilot(&mut b, "Off").await;
    b.post_empty(&format!("/api/v1/pilots/{}/disable", off.id)).await.assert(StatusCode::OK);
    let mut s = suite.browser();
    let other_secret = pilot(&mut b, "Other").await.secret;
    let answers = [
        hook(&mut s, &Uuid::now_v7().to_string(), &p.secret, "{}", &[]).await,
        hook(&mut s, &p.id, "whsec_wrong", "{}", &[]).await,
        hook(&mut s, &p.id, &other_secret, "{}", &[]).await,
        hook(&mut s, &p.id, "", "{}", &[]).await,
        hook(&mut s, &off.id, &off.secret, "{}", &[]).await,
        hook(&mut s, "not-a-uuid", &p.secret, "{}", &[]).await,
        hook(&mut s, "%FF", &p.secret, "{}", &[]).await,
        signed(&mut s, &p.id, &other_secret, "msg_1", now(), "{}").await,
        signed(&mut s, &p.id, &p.secret, "msg_2", now() - 3600, "{}").await,
        signed(&mut s, &off.id, &off.secret, "msg_3", now(), "{}").await,
    ];
    for (i, r) in answers.iter().enumerate() {
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "answer {i}: {}", r.body);
        assert_eq!(r.body, answers[0].body, "answer {i}");
    }
    answers[0].assert_error(StatusCode::UNAUTHORIZED, "WEBHOOK_REJECTED");
    let stream = suite.js.get_stream(suite.subjects.triggers_stream()).await.unwrap();
    assert_eq!(stream.get_info().await.unwrap().state.last_sequence, 0, "nothing was stored");
    let token = b.token().unwrap();
    assert!(suite.runs(&token, &p.id).await.is_empty() && suite.runs(&token, &off.id).await.is_empty());
}

/// The body limit (1 KiB here): 413 beyond it, also without `Content-Length`;
/// exactly the limit is accepted.
#[tokio::test]
async fn oversized_bodies_are_413() {
    let suite = Suite::start_with(|c| c.gateway.limits.webhook_body_bytes = 1024).await;
    let mut b = suite.web_user("small").await;
    let p = pilot(&mut b, "Small").await;
    let mut s = suite.browser();
    let r = hook(&mut s, &p.id, &p.secret, &"x".repeat(1025), &[]).await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
    let exact = format!("\"{}\"", "x".repeat(1022));
    hook(&mut s, &p.id, &p.secret, &exact, &[]).await.assert(StatusCode::ACCEPTED);
    let secret = p.secret.clone();
    let r = s
        .send(Method::POST, &format!("/hooks/{}", p.id), move |r| {
            let chunks = futures_util::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 512])));
            r.header("x-pilot-secret", secret).body(reqwest::Body::wrap_stream(chunks))
        })
        .await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
    settled_runs(&suite, &b.token().unwrap(), &p.id, 1).await;
}

/// When JetStream cannot store the trigger (its stream is gone), 503 with
/// `Retry-After`, no internal detail, and no run.
#[tokio::test]
async fn without_a_jetstream_ack_the_answer_is_503_and_nothing_is_accepted() {
    let suite = Suite::start().await;
    let mut b = suite.web_user("lost").await;
    let p = pilot(&mut b, "Lost").await;
    suite.js.delete_stream(suite.subjects.triggers_stream()).await.unwrap();
    let mut s = suite.browser();
    let r = hook(&mut s, &p.id, &p.secret, "{}", &[]).await;
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    assert!(!r.body.contains(&suite.prefix), "no internal detail: {}", r.body);
    // Nothing was stored, so the executor can take nothing in: the consumer of the
    // deleted stream is gone with it; wait for the engine to be idle.
    suite.quiesce_engine().await;
    assert!(suite.runs(&b.token().unwrap(), &p.id).await.is_empty());
}

/// Counted in runs: the same `webhook-id` twice is one run (the answer names
/// its trigger); the same id on another Pilot is another run; `Idempotency-Key`
/// works the same; without either every request is a run.
#[tokio::test]
async fn the_same_webhook_id_is_one_run_and_on_two_pilots_two_runs() {
    let suite = Suite::start().await;
    let mut b = suite.web_user("idem").await;
    let (p1, p2) = (pilot(&mut b, "One").await, pilot(&mut b, "Two").await);
    let token = b.token().unwrap();
    let mut s = suite.browser();
    let first = hook(&mut s, &p1.id, &p1.secret, r#"{"n": 1}"#, &[("webhook-id", "msg_same")]).await;
    first.assert(StatusCode::ACCEPTED);
    hook(&mut s, &p1.id, &p1.secret, r#"{"n": 2}"#, &[("webhook-id", "msg_same")])
        .await
        .assert(StatusCode::ACCEPTED);
    let runs = settled_runs(&suite, &token, &p1.id, 1).await;
    assert_eq!(runs[0].trigger_id, first.json()["trigger_id"].as_str().unwrap(), "the first one ran");
    // Again once the first has run (the intake's unique key, not only the stream's window).
    hook(&mut s, &p1.id, &p1.secret, r#"{"n": 3}"#, &[("webhook-id", "msg_same")])
        .await
        .assert(StatusCode::ACCEPTED);

    let other = hook(&mut s, &p2.id, &p2.secret, "{}", &[("webhook-id", "msg_same")]).await;
    other.assert(StatusCode::ACCEPTED);
    assert_ne!(other.json()["trigger_id"], first.json()["trigger_id"]);
    settled_runs(&suite, &token, &p2.id, 1).await;

    for _ in 0..2 {
        hook(&mut s, &p1.id, &p1.secret, "{}", &[("idempotency-key", "order-9")])
            .await
            .assert(StatusCode::ACCEPTED);
    }
    settled_runs(&suite, &token, &p1.id, 2).await;
    for _ in 0..2 {
        hook(&mut s, &p2.id, &p2.secret, "{}", &[]).await.assert(StatusCode::ACCEPTED);
    }
    settled_runs(&suite, &token, &p2.id, 3).await;
    // A key that cannot be one is refused before anything else.
    let r = hook(&mut s, &p2.id, &p2.secret, "{}", &[("webhook-id", &"k".repeat(300))]).await;
    r.assert_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
}

/// The Standard Webhooks form: a signed JSON, form or text body is accepted and
/// runs with the payload as sent; the `webhook-id` is the idempotency key; a
/// tampered body or a rotated-away secret (after its grace) is refused.
#[tokio::test]
async fn standard_webhooks_signatures_are_verified() {
    let suite = Suite::start().await;
    let mut b = suite.web_user("signed").await;
    let p = pilot(&mut b, "Signed").await;
    let token = b.token().unwrap();
    let mut s = suite.browser();
    let body = r#"{"order": {"id": 42, "total": "9.99"}}"#;
    let r = signed(&mut s, &p.id, &p.secret, "msg_2Lh9", now(), body).await;
    r.assert(StatusCode::ACCEPTED);
    signed(&mut s, &p.id, &p.secret, "msg_2Lh9", now(), body).await.assert(StatusCode::ACCEPTED);
    let runs = settled_runs(&suite, &token, &p.id, 1).await;
    let run = b.get(&format!("/api/v1/runs/{}", runs[0].id)).await.json();
    let output = run["steps"][0]["output_preview"].as_str().unwrap();
    assert!(output.contains("\"total\"") && output.contains("9.99"), "the payload reached the run: {output}");

    // Tampered: the signature covers the body.
    let signature =
        standardwebhooks::Webhook::new(&p.secret).unwrap().sign("msg_x", now(), body.as_bytes()).unwrap();
    let ts = now().to_string();
    let r = s
        .send(Method::POST, &format!("/hooks/{}", p.id), move |r| {
            r.header("webhook-id", "msg_x")
                .header("webhook-timestamp", ts)
                .header("webhook-signature", signature)
                .body(r#"{"order": {"id": 42, "total": "0.01"}}"#)
        })
        .await;
    r.assert_error(StatusCode::UNAUTHORIZED, "WEBHOOK_REJECTED");

    // Other content types, signed the same way.
    for (content_type, payload) in
        [("application/x-www-form-urlencoded", "a=1&b=two"), ("text/plain", "hello")]
    {
        let id = format!("msg_{}", Uuid::now_v7().simple());
        let ts = now();
        let signature =
            standardwebhooks::Webhook::new(&p.secret).unwrap().sign(&id, ts, payload.as_bytes()).unwrap();
        let r = s
            .send(Method::POST, &format!("/hooks/{}", p.id), move |r| {
                r.header("webhook-id", id)
                    .header("webhook-timestamp", ts.to_string())
                    .header("webhook-signature", signature)
                    .header("content-type", content_type)
                    .body(payload)
            })
            .await;
        r.assert(StatusCode::ACCEPTED);
    }
    settled_runs(&suite, &token, &p.id, 3).await;

    // After a rotation the new secret signs; the old one keeps working for its grace.
    let rotated = b.post_empty(&format!("/api/v1/pilots/{}/webhook-secret/rotate", p.id)).await.json();
    let new_secret = rotated["webhook_secret"].as_str().unwrap();
    signed(&mut s, &p.id, new_secret, "msg_new", now(), "{}").await.assert(StatusCode::ACCEPTED);
    signed(&mut s, &p.id, &p.secret, "msg_old", now(), "{}").await.assert(StatusCode::ACCEPTED);
    settled_runs(&suite, &token, &p.id, 5).await;
}

/// The per-source limit applies before verification; the per-Pilot budget is
/// charged only for verified requests, so unsigned floods from elsewhere cannot
/// use up the real sender's allowance. 429 with `Retry-After`.
#[tokio::test]
async fn webhooks_are_rate_limited_per_source_and_per_verified_pilot() {
    use gateway::config::Rate;
    let suite = Suite::start_with(|c| {
        c.gateway.rate_limits.webhook_per_pilot = Rate::new(6, 2);
        c.gateway.rate_limits.webhook_per_source = Rate::new(6, 4);
        c.gateway.client_ip_header = Some("x-forwarded-for".into());
    })
    .await;
    let mut b = suite.web_user("busy").await;
    let (p1, p2) = (pilot(&mut b, "Busy").await, pilot(&mut b, "Quiet").await);
    let mut s = suite.browser();
    let from = |ip: &'static str| [("x-forwarded-for", ip)];

    // An attacker without the secret: four refusals, then the source is limited.
    for _ in 0..4 {
        hook(&mut s, &p1.id, "whsec_guess", "{}", &from("203.0.113.66"))
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "WEBHOOK_REJECTED");
    }
    let r = hook(&mut s, &p1.id, &p1.secret, "{}", &from("203.0.113.66")).await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);

    // The real sender still has the Pilot's whole budget (two), then 429.
    hook(&mut s, &p1.id, &p1.secret, "{}", &from("198.51.100.1")).await.assert(StatusCode::ACCEPTED);
    hook(&mut s, &p1.id, &p1.secret, "{}", &from("198.51.100.2")).await.assert(StatusCode::ACCEPTED);
    let r = hook(&mut s, &p1.id, &p1.secret, "{}", &from("198.51.100.3")).await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    assert!(r.header("retry-after").is_some());
    // Budgets are per Pilot.
    hook(&mut s, &p2.id, &p2.secret, "{}", &from("198.51.100.3")).await.assert(StatusCode::ACCEPTED);
    let token = b.token().unwrap();
    settled_runs(&suite, &token, &p1.id, 2).await;
    settled_runs(&suite, &token, &p2.id, 1).await;
}

/// A catalog that does not trust this gateway (a deployment mistake) must not
/// look like a bad signature to senders: 503 with `Retry-After`, and an error
/// in the log for operators.
#[tokio::test]
async fn a_gateway_the_catalog_does_not_trust_answers_503_not_401() {
    let suite =
        Suite::start_with(|c| c.catalog.auth.trusted_callers.retain(|k| !k.starts_with("gateway:"))).await;
    let mut b = suite.web_user("untrusted").await;
    let p = pilot(&mut b, "Untrusted").await;
    let mut s = suite.browser();
    let r = hook(&mut s, &p.id, &p.secret, "{}", &[]).await;
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    let logs = suite.logs.contents();
    assert!(
        logs.lines().any(|l| l.contains("\"level\":\"ERROR\"") && l.contains("VerifyWebhook failed")),
        "an error for operators"
    );
    assert!(suite.runs(&b.token().unwrap(), &p.id).await.is_empty());
}

/// Bodies, webhook secrets, credential values, passwords and session tokens
/// appear in no service's log (the capture holds every service of the suite),
/// and a credential value is never shown again.
#[tokio::test]
async fn bodies_secrets_and_session_tokens_never_reach_the_logs() {
    let suite = Suite::start().await;
    let mut b = suite.web_user("quiet").await;
    let token = b.token().unwrap();
    let p = pilot(&mut b, "Quiet").await;
    let credential = format!("{}/services/T000/B000/canary-credential-XYZ", suite.slack.uri());
    b.put_json("/api/v1/connectors/slack", &json!({"kind": "slack", "value": credential}))
        .await
        .assert(StatusCode::OK);
    for path in ["/api/v1/connectors", "/connectors", "/api/v1/me/export"] {
        assert!(!b.get(path).await.body.contains("canary-credential"), "{path} shows the value");
    }
    b.post_empty("/api/v1/connectors/slack/test").await.assert(StatusCode::OK);
    let mut s = suite.browser();
    hook(&mut s, &p.id, &p.secret, r#"{"card": "canary-4111-1111"}"#, &[]).await.assert(StatusCode::ACCEPTED);
    hook(&mut s, &p.id, "whsec_canary_wrong", r#"{"card": "canary-4111-2222"}"#, &[])
        .await
        .assert(StatusCode::UNAUTHORIZED);
    signed(&mut s, &p.id, &p.secret, "msg_canary", now(), r#"{"card": "canary-4111-3333"}"#)
        .await
        .assert(StatusCode::ACCEPTED);
    b.get("/api/v1/session").await.assert(StatusCode::OK);
    let mut other = suite.browser();
    other.post_form("/signin", &[("email", "x@example.com"), ("password", "canary-password-123")]).await;
    settled_runs(&suite, &token, &p.id, 2).await;
    let logs = suite.logs.contents();
    assert!(logs.contains("webhook accepted"), "the capture works");
    // The capture records everything at TRACE, including the NATS client's own
    // wire traces (which print message payloads); production filters keep that
    // library at `info`, so only its lines are left out here.
    let ours: Vec<&str> = logs.lines().filter(|l| !l.contains("\"target\":\"async_nats")).collect();
    for needle in
        ["canary-4111", "canary-password-123", "canary-credential", "whsec_canary_wrong", &p.secret, &token]
    {
        if let Some(line) = ours.iter().find(|l| l.contains(needle)) {
            panic!("a secret appeared in the logs: {line}");
        }
    }
}
