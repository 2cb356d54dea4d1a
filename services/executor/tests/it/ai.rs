//! The AI provider chain: the owner's key, else the server's, else local.

use bizops_authn::OwnerId;
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

fn classify_with(model: &str, max_tokens: u32) -> Kind {
    let Kind::Ai(mut a) = ai(cpb::AiTask::Classify) else { unreachable!() };
    a.model = model.into();
    a.max_tokens = max_tokens;
    Kind::Ai(a)
}

/// The server's key is shared by everyone: each owner has a daily budget of
/// tokens on it, its output per call is capped, and only the listed models may be
/// used. Beyond, the step runs the local fallback and says why; the owner's own
/// key is theirs and unlimited.
#[tokio::test]
async fn the_servers_key_has_a_budget_per_owner_and_day_and_a_model_list() {
    let env = Env::new().await;
    let anthropic = MockServer::start().await;
    let mut config = env.config();
    config.providers.anthropic_base_url = anthropic.uri();
    config.ai.server_key = Some("sk-ant-server-key".to_owned().into());
    config.ai.server_daily_tokens = 6000;
    config.ai.server_max_tokens = 100;
    config.ai.server_models = vec!["claude-haiku-4-5".into()];
    let exec = env.start(config).await;
    // Every call through the server's key asks for at most 100 output tokens and
    // reports using 5,000 (more than the budget less a reservation: about 4,300,
    // a token per byte sent with 4 KiB for the instructions, plus 100 output
    // tokens).
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", "sk-ant-server-key"))
        .and(wiremock::matchers::body_partial_json(json!({"model": "claude-haiku-4-5", "max_tokens": 100})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "content": [{"type": "text", "text": "outage"}],
            "usage": {"input_tokens": 4900, "output_tokens": 100},
        })))
        .expect(2)
        .mount(&anthropic)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", "sk-ant-own-key"))
        .and(wiremock::matchers::body_partial_json(json!({"model": "claude-opus-4-1", "max_tokens": 4000})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "content": [{"type": "text", "text": "outage"}],
            "usage": {"input_tokens": 4000, "output_tokens": 5000},
        })))
        .expect(2)
        .mount(&anthropic)
        .await;
    let payload = json!({"text": "Everything is down"});
    let run = |owner: OwnerId, kind: Kind| {
        let env = &env;
        let exec = &exec;
        let payload = payload.clone();
        async move {
            let pilot = env.pilot(owner.as_uuid(), vec![step("label", kind)]);
            env.trigger(owner.as_uuid(), pilot, "k", payload).await;
            let run = env.wait_run(exec, owner, pilot, TERMINAL).await;
            assert_eq!(run.status, RunStatus::Succeeded as i32, "{run:?}");
            output(&run, "label")
        }
    };

    // The first call fits the budget and is settled to the 5,000 tokens reported;
    // the next would not fit (its reservation counts the whole output), so it
    // answers locally and says why.
    let heavy = owner();
    let first = run(heavy, classify_with("claude-haiku-4-5", 4000)).await;
    assert_eq!(first, json!({"label": "outage", "provider": "server"}));
    let second = run(heavy, classify_with("claude-haiku-4-5", 4000)).await;
    assert_eq!(second["provider"], "local", "{second}");
    assert!(second["label"].is_string(), "{second}");
    let note = second["note"].as_str().unwrap();
    assert!(note.contains("budget of 6000 tokens"), "{note}");

    // Another owner's budget is untouched.
    let other = owner();
    assert_eq!(run(other, classify_with("claude-haiku-4-5", 0)).await["provider"], "server");

    // A model that is not on the list is not called with the server's key.
    let fancy = run(other, classify_with("claude-opus-4-1", 0)).await;
    assert_eq!(fancy["provider"], "local");
    assert!(fancy["note"].as_str().unwrap().contains("\"claude-opus-4-1\" is not available"), "{fancy}");

    // The owner's own key: any model, no cap on output, no budget.
    env.vault.put(heavy.as_uuid(), "anthropic", ConnectorKind::Anthropic, "sk-ant-own-key");
    for _ in 0..2 {
        let own = run(heavy, classify_with("claude-opus-4-1", 4000)).await;
        assert_eq!(own, json!({"label": "outage", "provider": "user"}));
    }
    anthropic.verify().await;

    // What was counted: 5,000 for each owner today, nothing for the own key.
    let db = env.superuser().await;
    for who in [heavy, other] {
        let used: i64 = sqlx::query_scalar("SELECT tokens FROM executor.ai_usage WHERE owner_id = $1")
            .bind(who.as_uuid())
            .fetch_one(&db)
            .await
            .unwrap();
        assert_eq!(used, 5000);
    }
}
