//! Each step kind end to end, retries, 4xx, timeouts.

use std::time::Duration;

use bizops_proto::{
    catalog::v1::{self as cpb, step::Kind},
    events::v1::{RunStatus, StepStatus},
    vault::v1::ConnectorKind,
};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_json, header, method, path},
};

use crate::harness::*;

#[tokio::test]
async fn local_steps_transform_condition_and_ai_run_in_order() {
    let env = Env::new().await;
    let exec = env.start(env.config()).await;
    let owner = owner();
    let pilot = env.pilot(
        owner.as_uuid(),
        vec![
            step("shape", transform(r#"{"name": {{ trigger.name | tojson }}, "n": {{ trigger.n * 2 }}}"#)),
            step(
                "big",
                Kind::Condition(cpb::ConditionStep {
                    expression: "steps.shape.output.n > 5".into(),
                    on_false: cpb::OnFalse::Stop as i32,
                    jump_to: String::new(),
                }),
            ),
            step(
                "sum",
                Kind::Ai(cpb::AiStep {
                    task: cpb::AiTask::Summarize as i32,
                    input: "Order from {{ steps.shape.output.name }}. It is big. Ship it today.".into(),
                    ..Default::default()
                }),
            ),
        ],
    );
    env.trigger(owner.as_uuid(), pilot, "k1", serde_json::json!({"name": "Ann", "n": 4})).await;
    let run = env.wait_run(&exec, owner, pilot, TERMINAL).await;
    assert_eq!(run.status, RunStatus::Succeeded as i32, "{run:?}");
    assert_eq!(output(&run, "shape"), serde_json::json!({"name": "Ann", "n": 8}));
    assert_eq!(output(&run, "big"), serde_json::json!({"result": true}));
    let sum = output(&run, "sum");
    assert_eq!(sum["provider"], "local");
    assert_eq!(sum["summary"], "Order from Ann. It is big. Ship it today.");
    assert!(run.steps.iter().all(|s| s.attempts == 1 && s.started_at.is_some() && s.finished_at.is_some()));

    // A false condition stops the run as SKIPPED; later steps are skipped.
    env.trigger(owner.as_uuid(), pilot, "k2", serde_json::json!({"name": "Bo", "n": 1})).await;
    let skipped = env.wait_run(&exec, owner, pilot, &[RunStatus::Skipped]).await;
    assert_eq!(step_of(&skipped, "sum").status, StepStatus::Skipped as i32);
}

#[tokio::test]
async fn condition_can_jump_forward() {
    let env = Env::new().await;
    let exec = env.start(env.config()).await;
    let owner = owner();
    let pilot = env.pilot(
        owner.as_uuid(),
        vec![
            step(
                "check",
                Kind::Condition(cpb::ConditionStep {
                    expression: "trigger.vip".into(),
                    on_false: cpb::OnFalse::Jump as i32,
                    jump_to: "regular".into(),
                }),
            ),
            step("vip", transform(r#"{"tier": "vip"}"#)),
            step("regular", transform(r#"{"tier": "regular"}"#)),
        ],
    );
    env.trigger(owner.as_uuid(), pilot, "j", serde_json::json!({"vip": false})).await;
    let run = env.wait_run(&exec, owner, pilot, TERMINAL).await;
    assert_eq!(run.status, RunStatus::Succeeded as i32, "{run:?}");
    assert_eq!(step_of(&run, "vip").status, StepStatus::Skipped as i32);
    assert_eq!(output(&run, "regular"), serde_json::json!({"tier": "regular"}));
}

#[tokio::test]
async fn slack_email_and_http_reach_the_outside_world() {
    let env = Env::new().await;
    let outside = MockServer::start().await;
    let mut config = env.config();
    config.providers.resend_base_url = outside.uri();
    let exec = env.start(config).await;
    let owner = owner();
    env.vault.put(
        owner.as_uuid(),
        "slack",
        ConnectorKind::Slack,
        &format!("{}/services/T/B/X", outside.uri()),
    );
    env.vault.put(owner.as_uuid(), "resend", ConnectorKind::Resend, "re_test_key");
    env.vault.put(owner.as_uuid(), "crm", ConnectorKind::HttpBearer, "crm-token-123");
    Mock::given(method("POST"))
        .and(path("/services/T/B/X"))
        .and(body_json(serde_json::json!({"text": "Hello Ann"})))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .expect(1)
        .mount(&outside)
        .await;
    Mock::given(method("POST"))
        .and(path("/emails"))
        .and(header("authorization", "Bearer re_test_key"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"id": "em_1"})))
        .expect(1)
        .mount(&outside)
        .await;
    Mock::given(method("PUT"))
        .and(path("/tickets/7"))
        .and(header("authorization", "Bearer crm-token-123"))
        .and(header("x-source", "bizops"))
        .and(body_json(serde_json::json!({"subject": "Hi"})))
        .respond_with(ResponseTemplate::new(201).set_body_json(serde_json::json!({"ok": true})))
        .expect(1)
        .mount(&outside)
        .await;
    let pilot = env.pilot(
        owner.as_uuid(),
        vec![
            step(
                "notify",
                Kind::Slack(cpb::SlackStep {
                    connector: String::new(),
                    text: "Hello {{ trigger.name }}".into(),
                }),
            ),
            step(
                "mail",
                Kind::Email(cpb::EmailStep {
                    connector: String::new(),
                    from: "ops@example.com".into(),
                    to: vec!["{{ trigger.email }}".into()],
                    subject: "Hi".into(),
                    html: String::new(),
                    text: "Body".into(),
                }),
            ),
            step(
                "crm",
                Kind::Http(cpb::HttpStep {
                    method: cpb::HttpMethod::Put as i32,
                    url: format!("{}/tickets/{{{{ trigger.ticket }}}}", outside.uri()),
                    headers: vec![cpb::HttpHeaderTemplate {
                        name: "X-Source".into(),
                        value: "bizops".into(),
                    }],
                    body: r#"{"subject": "Hi"}"#.into(),
                    bearer_connector: "crm".into(),
                }),
            ),
        ],
    );
    env.trigger(
        owner.as_uuid(),
        pilot,
        "x",
        serde_json::json!({"name": "Ann", "email": "ann@example.com", "ticket": 7}),
    )
    .await;
    let run = env.wait_run(&exec, owner, pilot, TERMINAL).await;
    assert_eq!(run.status, RunStatus::Succeeded as i32, "{run:?}");
    assert_eq!(output(&run, "mail")["id"], "em_1");
    assert_eq!(output(&run, "crm")["status"], 201);
    // Resend got an idempotency key of run + step.
    let requests = outside.received_requests().await.unwrap();
    let email = requests.iter().find(|r| r.url.path() == "/emails").unwrap();
    assert_eq!(email.headers.get("idempotency-key").unwrap().to_str().unwrap(), format!("{}/mail", run.id));
    outside.verify().await;
}

#[tokio::test]
async fn retryable_errors_are_retried_and_4xx_are_not() {
    let env = Env::new().await;
    let outside = MockServer::start().await;
    let exec = env.start(env.config()).await;
    let owner = owner();
    Mock::given(path("/flaky"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .mount(&outside)
        .await;
    Mock::given(path("/flaky"))
        .respond_with(ResponseTemplate::new(200).set_body_string("fine"))
        .mount(&outside)
        .await;
    Mock::given(path("/bad")).respond_with(ResponseTemplate::new(400)).mount(&outside).await;
    Mock::given(path("/busy")).respond_with(ResponseTemplate::new(429)).mount(&outside).await;
    let flaky = env.pilot(
        owner.as_uuid(),
        vec![step("call", http(cpb::HttpMethod::Get, &format!("{}/flaky", outside.uri())))],
    );
    let bad = env.pilot(
        owner.as_uuid(),
        vec![step("call", http(cpb::HttpMethod::Get, &format!("{}/bad", outside.uri())))],
    );
    let busy = env.pilot(
        owner.as_uuid(),
        vec![cpb::Step {
            retry: Some(cpb::RetryPolicy { max_attempts: 2, initial_backoff_ms: 10, max_backoff_ms: 20 }),
            ..step("call", http(cpb::HttpMethod::Get, &format!("{}/busy", outside.uri())))
        }],
    );
    for p in [flaky, bad, busy] {
        env.trigger(owner.as_uuid(), p, "r", serde_json::json!({})).await;
    }
    let run = env.wait_run(&exec, owner, flaky, TERMINAL).await;
    assert_eq!((run.status, step_of(&run, "call").attempts), (RunStatus::Succeeded as i32, 3), "{run:?}");
    let run = env.wait_run(&exec, owner, bad, TERMINAL).await;
    assert_eq!(
        (run.status, step_of(&run, "call").attempts),
        (RunStatus::Failed as i32, 1),
        "400 is not retried: {run:?}"
    );
    assert!(step_of(&run, "call").error.contains("HTTP 400"), "{run:?}");
    let run = env.wait_run(&exec, owner, busy, TERMINAL).await;
    assert_eq!(
        (run.status, step_of(&run, "call").attempts),
        (RunStatus::Failed as i32, 2),
        "429 is retried: {run:?}"
    );
}

#[tokio::test]
async fn a_slow_step_times_out() {
    let env = Env::new().await;
    let outside = MockServer::start().await;
    let exec = env.start(env.config()).await;
    let owner = owner();
    Mock::given(path("/slow"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&outside)
        .await;
    let pilot = env.pilot(
        owner.as_uuid(),
        vec![cpb::Step {
            timeout_ms: 300,
            retry: Some(cpb::RetryPolicy { max_attempts: 2, initial_backoff_ms: 10, max_backoff_ms: 10 }),
            ..step("call", http(cpb::HttpMethod::Get, &format!("{}/slow", outside.uri())))
        }],
    );
    env.trigger(owner.as_uuid(), pilot, "t", serde_json::json!({})).await;
    let run = env.wait_run(&exec, owner, pilot, TERMINAL).await;
    let call = step_of(&run, "call");
    assert_eq!((run.status, call.attempts), (RunStatus::Failed as i32, 2), "{run:?}");
    assert!(call.error.contains("timed out"), "{call:?}");
}

#[tokio::test]
async fn a_missing_credential_is_a_clear_step_error() {
    let env = Env::new().await;
    let exec = env.start(env.config()).await;
    let owner = owner();
    let pilot = env.pilot(
        owner.as_uuid(),
        vec![step("notify", Kind::Slack(cpb::SlackStep { connector: "team".into(), text: "x".into() }))],
    );
    env.trigger(owner.as_uuid(), pilot, "m", serde_json::json!({})).await;
    let run = env.wait_run(&exec, owner, pilot, TERMINAL).await;
    assert_eq!(run.status, RunStatus::Failed as i32);
    assert!(step_of(&run, "notify").error.contains("the credential \"team\" is not connected"), "{run:?}");
}
