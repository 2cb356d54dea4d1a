//! Redaction of secrets and the SSRF guard.

use bizops_proto::{
    catalog::v1::{self as cpb, step::Kind},
    events::v1::{self as ev, RunStatus},
    vault::v1::ConnectorKind,
};
use bizops_testkit::PATIENCE;
use futures_util::StreamExt as _;
use prost::Message as _;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::path};

use crate::harness::*;

const CANARY: &str = "canary-secret-7f3a9c";

#[tokio::test]
async fn a_canary_secret_never_reaches_outputs_events_or_logs() {
    let env = Env::new().await;
    let outside = MockServer::start().await;
    Mock::given(path("/echo"))
        .respond_with(ResponseTemplate::new(500).set_body_string(format!("server says {CANARY}")))
        .mount(&outside)
        .await;
    let exec = env.start(env.config()).await;
    let owner = owner();
    env.vault.put(owner.as_uuid(), "token", ConnectorKind::HttpBearer, CANARY);
    let mut live = env.nats.subscribe(env.subjects.owner_run_events(owner.as_uuid())).await.unwrap();
    let pilot = env.pilot(
        owner.as_uuid(),
        vec![
            step(
                "leak",
                transform(r#"{"copy": "{{ secrets.token }}", "nested": ["x {{ secrets.token }} y"]}"#),
            ),
            cpb::Step {
                retry: Some(cpb::RetryPolicy { max_attempts: 1, initial_backoff_ms: 0, max_backoff_ms: 0 }),
                ..step(
                    "call",
                    Kind::Http(cpb::HttpStep {
                        method: cpb::HttpMethod::Get as i32,
                        url: format!("{}/echo?t={{{{ secrets.token }}}}", outside.uri()),
                        bearer_connector: "token".into(),
                        ..Default::default()
                    }),
                )
            },
        ],
    );
    env.trigger(owner.as_uuid(), pilot, "c", serde_json::json!({})).await;
    let run = env.wait_run(&exec, owner, pilot, TERMINAL).await;
    assert_eq!(run.status, RunStatus::Failed as i32);
    assert_eq!(output(&run, "leak"), serde_json::json!({"copy": "[REDACTED]", "nested": ["x [REDACTED] y"]}));
    // The secret was really used: the endpoint received it.
    let received = outside.received_requests().await.unwrap();
    assert_eq!(
        received[0].headers.get("authorization").unwrap().to_str().unwrap(),
        format!("Bearer {CANARY}")
    );

    // Not in the database, not in events, not in the logs.
    let pool = env.superuser().await;
    let dump: Vec<String> = sqlx::query_scalar(
        "SELECT coalesce(output::text, '') || coalesce(error, '') FROM executor.step_runs
         UNION ALL SELECT coalesce(error, '') FROM executor.runs",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(dump.iter().all(|d| !d.contains(CANARY)), "{dump:?}");
    // Every live event of the run, up to its last: the run's end (published after
    // all its steps', on the same connection).
    let events = tokio::time::timeout(PATIENCE, async {
        let mut events = Vec::new();
        while let Some(msg) = live.next().await {
            let event = ev::RunEvent::decode(msg.payload.as_ref()).unwrap();
            let last = event.step.is_none() && event.run_status == RunStatus::Failed as i32;
            events.push(format!("{event:?}"));
            if last {
                return events;
            }
        }
        panic!("the live events ended before the run's end: {events:?}");
    })
    .await
    .expect("the run's end as a live event");
    assert!(events.len() > 1, "{events:?}");
    assert!(events.iter().all(|e| !e.contains(CANARY)));
    env.logs.assert_absent(&[CANARY]);
}

#[tokio::test]
async fn http_steps_cannot_reach_private_addresses_without_the_allow_list() {
    let env = Env::new().await;
    let inside = MockServer::start().await;
    Mock::given(path("/admin"))
        .respond_with(ResponseTemplate::new(200).set_body_string("secret stuff"))
        .mount(&inside)
        .await;
    let mut guarded = env.config();
    guarded.http.allowed_networks = vec![];
    let exec = env.start(guarded).await;
    let owner = owner();
    for url in [
        format!("{}/admin", inside.uri()),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.1.2.3/".to_owned(),
        "http://localhost:9/".to_owned(),
        "http://[::1]:9/".to_owned(),
    ] {
        let pilot = env.pilot(owner.as_uuid(), vec![step("call", http(cpb::HttpMethod::Get, &url))]);
        env.trigger(owner.as_uuid(), pilot, "s", serde_json::json!({})).await;
        let run = env.wait_run(&exec, owner, pilot, TERMINAL).await;
        let call = step_of(&run, "call");
        assert_eq!(run.status, RunStatus::Failed as i32, "{url}");
        assert!(call.error.contains("may not reach"), "{url}: {call:?}");
        assert_eq!(call.attempts, 1, "not retried");
    }
    assert!(inside.received_requests().await.unwrap().is_empty(), "nothing reached the private address");
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let env = Env::new().await;
    let outside = MockServer::start().await;
    Mock::given(path("/go"))
        .respond_with(
            ResponseTemplate::new(302).insert_header("location", "http://169.254.169.254/latest/meta-data/"),
        )
        .mount(&outside)
        .await;
    let exec = env.start(env.config()).await;
    let owner = owner();
    let pilot = env.pilot(
        owner.as_uuid(),
        vec![step("call", http(cpb::HttpMethod::Get, &format!("{}/go", outside.uri())))],
    );
    env.trigger(owner.as_uuid(), pilot, "r", serde_json::json!({})).await;
    let run = env.wait_run(&exec, owner, pilot, TERMINAL).await;
    let call = step_of(&run, "call");
    assert_eq!(run.status, RunStatus::Failed as i32);
    assert!(call.error.contains("redirects are not followed"), "{call:?}");
}
