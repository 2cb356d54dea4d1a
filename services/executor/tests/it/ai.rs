//! The AI provider chain: the owner's key, else the server's, else local.

use bizops_proto::{
    catalog::v1::{self as cpb, step::Kind},
    events::v1::RunStatus,
    vault::v1::ConnectorKind,
};
use serde_json::json;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{header, method, path},
};

use crate::harness::*;

fn ai(task: cpb::AiTask) -> Kind {
    Kind::Ai(cpb::AiStep {
        task: task as i32,
        input: "{{ trigger.text }}".into(),
        labels: if task == cpb::AiTask::Classify { vec!["billing".into(), "outage".into()] } else { vec![] },
        fields: if task == cpb::AiTask::Extract { vec!["order_id".into(), "email".into()] } else { vec![] },
        prompt: if task == cpb::AiTask::Generate {
            "Write a reply to {{ trigger.name }}".into()
        } else {
            String::new()
        },
        ..Default::default()
    })
}

fn anthropic_answer(text: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"content": [{"type": "text", "text": text}]}))
}

#[tokio::test]
async fn the_owners_key_is_used_when_connected() {
    let env = Env::new().await;
    let anthropic = MockServer::start().await;
    let mut config = env.config();
    config.providers.anthropic_base_url = anthropic.uri();
    config.ai.server_key = Some("sk-ant-server-key".to_owned().into());
    let exec = env.start(config).await;
    let owner = owner();
    env.vault.put(owner.as_uuid(), "anthropic", ConnectorKind::Anthropic, "sk-ant-user-key");
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", "sk-ant-user-key"))
        .and(header("anthropic-version", "2023-06-01"))
        .respond_with(anthropic_answer("outage"))
        .expect(1)
        .mount(&anthropic)
        .await;
    let pilot = env.pilot(owner.as_uuid(), vec![step("label", ai(cpb::AiTask::Classify))]);
    env.trigger(owner.as_uuid(), pilot, "u", json!({"text": "Everything is down"})).await;
    let run = env.wait_run(&exec, owner, pilot, TERMINAL).await;
    assert_eq!(run.status, RunStatus::Succeeded as i32, "{run:?}");
    assert_eq!(output(&run, "label"), json!({"label": "outage", "provider": "user"}));
    assert_eq!(step_of(&run, "label").provider, "user");
    anthropic.verify().await;
}

#[tokio::test]
async fn the_servers_key_is_used_when_the_owner_has_none() {
    let env = Env::new().await;
    let anthropic = MockServer::start().await;
    let mut config = env.config();
    config.providers.anthropic_base_url = anthropic.uri();
    config.ai.server_key = Some("sk-ant-server-key".to_owned().into());
    let exec = env.start(config).await;
    let owner = owner();
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", "sk-ant-server-key"))
        .respond_with(anthropic_answer(r#"Here: {"order_id": "A-7", "email": null}"#))
        .expect(1)
        .mount(&anthropic)
        .await;
    let pilot = env.pilot(owner.as_uuid(), vec![step("fields", ai(cpb::AiTask::Extract))]);
    env.trigger(owner.as_uuid(), pilot, "s", json!({"text": "order A-7"})).await;
    let run = env.wait_run(&exec, owner, pilot, TERMINAL).await;
    assert_eq!(
        output(&run, "fields"),
        json!({"fields": {"order_id": "A-7", "email": null}, "provider": "server"})
    );
    anthropic.verify().await;
}

#[tokio::test]
async fn without_any_key_the_local_fallback_answers_and_nothing_leaves_the_server() {
    let env = Env::new().await;
    let anthropic = MockServer::start().await;
    let mut config = env.config();
    config.providers.anthropic_base_url = anthropic.uri();
    let exec = env.start(config).await;
    let owner = owner();
    let pilot = env.pilot(
        owner.as_uuid(),
        vec![
            step("sum", ai(cpb::AiTask::Summarize)),
            step("label", ai(cpb::AiTask::Classify)),
            step("fields", ai(cpb::AiTask::Extract)),
            step("reply", ai(cpb::AiTask::Generate)),
        ],
    );
    let text = "Billing question. Order_ID: 4711\nemail: ann@example.com\nThe invoice is wrong. Please check the billing.";
    env.trigger(owner.as_uuid(), pilot, "l", json!({"text": text, "name": "Ann"})).await;
    let run = env.wait_run(&exec, owner, pilot, TERMINAL).await;
    assert_eq!(run.status, RunStatus::Succeeded as i32, "{run:?}");
    assert_eq!(
        output(&run, "sum")["summary"],
        "Billing question. Order_ID: 4711 email: ann@example.com The invoice is wrong."
    );
    assert_eq!(output(&run, "label")["label"], "billing");
    assert_eq!(output(&run, "fields")["fields"], json!({"order_id": "4711", "email": "ann@example.com"}));
    assert_eq!(
        output(&run, "reply")["text"],
        "[local fallback: no AI provider configured] Write a reply to Ann"
    );
    for key in ["sum", "label", "fields", "reply"] {
        assert_eq!(step_of(&run, key).provider, "local");
    }
    assert!(anthropic.received_requests().await.unwrap().is_empty(), "no request left the server");
}
