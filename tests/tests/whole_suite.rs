//! The five services as real processes (the built binaries) on real Postgres and a
//! NATS server of their own, wiremock standing in for Slack, Resend and
//! Anthropic, driven through the gateway's public HTTP API only: a person's whole
//! life with the product, from sign-up to account deletion; the logs of every
//! process searched for secrets; the metrics the dashboard needs; and one trace
//! across gateway → catalog → NATS → executor → vault, received over OTLP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
};

use bizops_e2e::{
    browser::{COOKIE, Resp},
    procs::{Options, Procs, sign_webhook},
    rows::{nonzero, owner_rows},
    suite::PASSWORD,
};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value::Value as AnyValue,
    trace::v1::Span,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{header, method, path},
};

const ANTHROPIC_KEY: &str = "sk-ant-api03-whole-suite-0123456789abcdef";
const NEW_PASSWORD: &str = "an entirely different passphrase 77";

/// ai (classify with the owner's key) → condition → approval → Slack.
fn spec() -> Value {
    json!({
        "title": "Urgent tickets to Slack",
        "description": "Classify a ticket; if urgent, ask, then tell the team.",
        "steps": [
            {"key": "classify", "kind": "ai",
             "config": {"task": "classify", "input": "{{ trigger.text }}", "labels": ["urgent", "routine"]}},
            {"key": "check", "kind": "condition",
             "config": {"expression": "steps.classify.output.label == 'urgent'", "on_false": "stop"}},
            {"key": "ask", "kind": "approval", "config": {"message": "Post ticket {{ trigger.id }} to Slack?"}},
            {"key": "notify", "kind": "slack", "config": {"text": "Urgent ticket {{ trigger.id }}: {{ trigger.text }}"}}
        ]
    })
}

async fn mount_anthropic(procs: &Procs) {
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", ANTHROPIC_KEY))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"content": [{"type": "text", "text": "urgent"}]})),
        )
        .mount(&procs.anthropic)
        .await;
}

/// Sends a Standard Webhooks–signed webhook from a client without a session.
async fn signed_hook(procs: &Procs, pilot: &str, secret: &str, body: &Value) -> Resp {
    let mut client = procs.browser();
    client.origin = None;
    let body = body.to_string();
    let headers = sign_webhook(secret, &format!("msg_{}", Uuid::now_v7().simple()), body.as_bytes());
    client
        .send(Method::POST, &format!("/hooks/{pilot}"), move |mut r| {
            for (k, v) in headers {
                r = r.header(k, v);
            }
            r.header("content-type", "application/json").body(body)
        })
        .await
}

/// The value of a Prometheus sample line `name{labels} value` whose labels
/// contain every one of `labels` (summed over matching lines).
fn sample(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_whole_account_life_through_the_public_api_against_the_real_binaries() {
    let mut procs = Procs::start(Options::default()).await;
    mount_anthropic(&procs).await;

    // Sign up and connect Slack and Anthropic (write-only).
    let mut b = procs.browser();
    let email = format!("whole-{}@example.com", Uuid::now_v7().simple());
    b.sign_up_and_in(&email).await;
    let owner: Uuid =
        b.get("/api/v1/session").await.json()["account"]["id"].as_str().unwrap().parse().unwrap();
    let slack_url = procs.slack_url();
    let r = b.put_json("/api/v1/connectors/slack", &json!({"kind": "slack", "value": slack_url})).await;
    r.assert(StatusCode::OK);
    assert!(!r.body.contains(&slack_url));
    let r = b
        .put_json("/api/v1/connectors/anthropic", &json!({"kind": "anthropic", "value": ANTHROPIC_KEY}))
        .await;
    r.assert(StatusCode::OK);
    let listed = b.get("/api/v1/connectors").await;
    assert!(!listed.body.contains(ANTHROPIC_KEY) && !listed.body.contains(&slack_url), "{}", listed.body);

    // A Pilot: ai → condition → approval → Slack; the secret is shown once.
    let created = b.post_json("/api/v1/pilots", &json!({"spec": spec(), "enabled": true})).await;
    created.assert(StatusCode::CREATED);
    let pilot = created.json()["pilot"]["id"].as_str().unwrap().to_owned();
    let secret = created.json()["webhook_secret"].as_str().unwrap().to_owned();

    // A signed webhook: 202, the run classifies, passes the condition and pauses.
    let ticket = json!({"id": 4711, "text": "The checkout page is down for every customer"});
    let accepted = signed_hook(&procs, &pilot, &secret, &ticket).await;
    accepted.assert(StatusCode::ACCEPTED);
    let trigger_id = accepted.json()["trigger_id"].as_str().unwrap().to_owned();
    let paused = b.wait_for_run(&pilot, "awaiting_approval").await;
    assert_eq!(paused["trigger_id"], trigger_id.as_str());
    let run_id = paused["id"].as_str().unwrap().to_owned();
    assert!(
        procs.slack.received_requests().await.unwrap().is_empty(),
        "nothing is posted before the approval"
    );

    // Approve: the Slack fake receives the message.
    let approvals = b.get("/api/v1/approvals").await.json();
    let approval = approvals["approvals"].as_array().unwrap().iter().find(|a| a["run_id"] == run_id.as_str());
    let approval_id = approval.expect("the run's approval is listed")["id"].as_str().unwrap().to_owned();
    assert_eq!(approval.unwrap()["message"], "Post ticket 4711 to Slack?");
    b.post_json(&format!("/api/v1/approvals/{approval_id}/decision"), &json!({"decision": "approve"}))
        .await
        .assert(StatusCode::OK);
    b.wait_for_run(&pilot, "succeeded").await;
    let posted = procs.slack.received_requests().await.unwrap();
    assert_eq!(posted.len(), 1, "one message");
    assert!(
        String::from_utf8_lossy(&posted[0].body)
            .contains("Urgent ticket 4711: The checkout page is down for every customer"),
        "{}",
        String::from_utf8_lossy(&posted[0].body)
    );
    let asked = procs.anthropic.received_requests().await.unwrap();
    assert_eq!(asked.len(), 1, "the owner's Anthropic key was used once");

    // Run history shows every step.
    let run = b.get(&format!("/api/v1/runs/{run_id}")).await;
    run.assert(StatusCode::OK);
    let run = run.json();
    assert_eq!(run["status"], "succeeded", "{run}");
    let steps: BTreeMap<String, String> = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step_key"].as_str().unwrap().to_owned(), s["status"].as_str().unwrap().to_owned()))
        .collect();
    let keys: BTreeSet<&str> = steps.keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["classify", "check", "ask", "notify"]), "{run}");
    assert_eq!(steps["classify"], "succeeded", "{run}");
    assert_eq!(steps["check"], "succeeded", "{run}");
    assert_eq!(steps["notify"], "succeeded", "{run}");
    assert!(!run.to_string().contains(ANTHROPIC_KEY) && !run.to_string().contains(&slack_url));

    // Export the Pilot as JSON: the definition, never the secret.
    let export = b.get(&format!("/api/v1/pilots/{pilot}/export")).await;
    export.assert(StatusCode::OK);
    assert_eq!(export.json()["format"], "bizops.pilot/v1");
    for key in ["classify", "check", "ask", "notify"] {
        assert!(export.body.contains(&format!("\"{key}\"")), "step {key} exported: {}", export.body);
    }
    assert!(!export.body.contains(&secret) && !export.body.contains("whsec_"));

    // Change the password: the old session cookie is refused from then on.
    let old_cookie = b.cookie.clone().unwrap();
    let changed = b
        .post_json(
            "/api/v1/me/password",
            &json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
        )
        .await;
    changed.assert(StatusCode::OK);
    b.csrf = changed.json()["csrf_token"].as_str().map(str::to_owned);
    let new_cookie = b.cookie.clone().unwrap();
    assert_eq!(new_cookie.0, COOKIE);
    assert_ne!(new_cookie.1, old_cookie.1, "a new session");
    let mut stale = procs.browser();
    stale.cookie = Some(old_cookie.clone());
    stale.get("/api/v1/session").await.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    b.get("/api/v1/session").await.assert(StatusCode::OK);

    // Metrics the dashboard reads, from the running processes.
    let gateway = procs.metrics("gateway").await;
    assert!(sample(&gateway, "gateway_webhooks_total", &["result=\"accepted\""]) >= 1.0, "{gateway}");
    let executor = procs.metrics("executor").await;
    assert!(
        sample(&executor, "executor_runs_total", &["status=\"RUN_STATUS_SUCCEEDED\""]) >= 1.0,
        "{executor}"
    );
    for kind in ["ai", "condition", "approval", "slack"] {
        let label = format!("kind=\"{kind}\"");
        assert!(
            sample(&executor, "executor_step_duration_seconds_count", &[&label]) >= 1.0,
            "step latency of {kind}: {executor}"
        );
    }
    assert!(sample(&executor, "executor_queue_lag_seconds_count", &[]) >= 1.0, "{executor}");
    let catalog = procs.metrics("pilot-catalog").await;
    assert!(
        sample(&catalog, "grpc_server_requests_total", &["method=\"VerifyWebhook\"", "code=\"Ok\""]) >= 1.0,
        "{catalog}"
    );

    // Delete the account: zero rows anywhere, nothing queued, and no sign-in.
    let rows_before = owner_rows(&procs.db, owner).await;
    assert!(!nonzero(&rows_before).is_empty());
    b.json(Method::DELETE, "/api/v1/me", &json!({"password": NEW_PASSWORD}))
        .await
        .assert(StatusCode::NO_CONTENT);
    let rows = owner_rows(&procs.db, owner).await;
    assert!(nonzero(&rows).is_empty(), "rows left after the deletion: {:?}", nonzero(&rows));
    for table in
        ["identity.accounts", "catalog.pilots", "vault.credentials", "executor.runs", "executor.step_runs"]
    {
        assert!(rows_before[table] > 0 && rows[table] == 0, "{table}: {rows_before:?} → {rows:?}");
    }
    b.sign_in(NEW_PASSWORD).await.assert_error(StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS");
    b.sign_in(PASSWORD).await.assert_error(StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS");
    let nats = async_nats::connect(procs.nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(nats);
    let subjects = bizops_bus::Subjects::new(&procs.prefix).unwrap();
    for (stream, filter) in subjects.owner_filters(owner) {
        use futures_util::StreamExt as _;
        let mut info = js.get_stream(&stream).await.unwrap().info_with_subjects(&filter).await.unwrap();
        let mut left = 0;
        while let Some(entry) = info.next().await {
            left += entry.unwrap().1;
        }
        assert_eq!(left, 0, "{stream} still holds messages of the owner");
    }

    // Every process's log output: no password, credential, webhook secret or token.
    let logs = procs.stop_all().await;
    let secret_body = secret.trim_start_matches("whsec_").to_owned();
    let slack_token = slack_url.rsplit('/').next().unwrap().to_owned();
    let forbidden: [(&str, &str); 9] = [
        ("the password", PASSWORD),
        ("the new password", NEW_PASSWORD),
        ("the Anthropic key", ANTHROPIC_KEY),
        ("the Slack webhook URL", &slack_url),
        ("the Slack webhook token", &slack_token),
        ("the webhook secret", &secret),
        ("the webhook secret's key", &secret_body),
        ("the old session token", &old_cookie.1),
        ("the new session token", &new_cookie.1),
    ];
    let mut lines = 0;
    for (svc, text) in &logs {
        assert!(!text.is_empty(), "{svc} logged nothing");
        for line in text.lines() {
            lines += 1;
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|e| panic!("{svc} logged a non-JSON line ({e}): {line}"));
            for (what, value) in forbidden {
                assert!(!line.contains(value), "{svc} logged {what}: {line}");
            }
        }
    }
    let names: BTreeSet<&str> = logs.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(names.len(), 5, "the logs of all five services: {names:?}");
    println!("searched {lines} log lines of {} processes: no secret in any", logs.len());
}

/// Collects every span exported to it, with the exporting service's name.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<(String, Span)>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                    AnyValue::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                spans.extend(scope.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn one_trace_spans_gateway_catalog_nats_executor_and_vault_for_a_webhook_run() {
    let receiver = Receiver::default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let otlp = listener.local_addr().unwrap();
    drop(listener);
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(receiver.clone()))
        .serve(otlp);
    tokio::spawn(server);

    let mut procs =
        Procs::start(Options { otlp_endpoint: Some(format!("http://{otlp}")), ..Options::default() }).await;
    mount_anthropic(&procs).await;
    let mut b = procs.browser();
    b.sign_up_and_in(&format!("trace-{}@example.com", Uuid::now_v7().simple())).await;
    b.put_json("/api/v1/connectors/anthropic", &json!({"kind": "anthropic", "value": ANTHROPIC_KEY}))
        .await
        .assert(StatusCode::OK);
    // One ai step with the owner's key: the executor must ask the vault for it.
    let spec = json!({
        "title": "Label tickets",
        "steps": [{"key": "classify", "kind": "ai",
                   "config": {"task": "classify", "input": "{{ trigger.text }}", "labels": ["urgent", "routine"]}}]
    });
    let created = b.post_json("/api/v1/pilots", &json!({"spec": spec, "enabled": true})).await;
    created.assert(StatusCode::CREATED);
    let pilot = created.json()["pilot"]["id"].as_str().unwrap().to_owned();
    let secret = created.json()["webhook_secret"].as_str().unwrap().to_owned();
    signed_hook(&procs, &pilot, &secret, &json!({"text": "down"})).await.assert(StatusCode::ACCEPTED);
    b.wait_for_run(&pilot, "succeeded").await;
    // A graceful stop flushes every service's batch of spans.
    procs.stop_all().await;

    let spans = receiver.0.lock().unwrap().clone();
    let webhook = spans
        .iter()
        .find(|(svc, s)| svc == "gateway" && s.name == "POST /hooks/{pilot_id}")
        .unwrap_or_else(|| {
            panic!(
                "no span of the webhook request: {:?}",
                spans.iter().map(|(a, s)| (a, &s.name)).collect::<Vec<_>>()
            )
        });
    let trace = webhook.1.trace_id.clone();
    let in_trace: Vec<&(String, Span)> = spans.iter().filter(|(_, s)| s.trace_id == trace).collect();
    let by_id: BTreeMap<Vec<u8>, &(String, Span)> =
        in_trace.iter().map(|e| (e.1.span_id.clone(), *e)).collect();
    let described: Vec<String> = in_trace.iter().map(|(svc, s)| format!("{svc}: {}", s.name)).collect();
    println!("trace {}: {described:#?}", hex(&trace));

    // The webhook request is the root; every other span descends from it.
    assert!(webhook.1.parent_span_id.is_empty(), "the webhook request starts the trace");
    let chain = |span: &Span| -> Vec<String> {
        let mut out = Vec::new();
        let mut parent = span.parent_span_id.clone();
        while let Some((svc, p)) = by_id.get(&parent) {
            out.push(format!("{svc}: {}", p.name));
            parent = p.parent_span_id.clone();
        }
        out
    };
    for (svc, span) in &in_trace {
        if span.span_id != webhook.1.span_id {
            assert!(
                chain(span).last().is_some_and(|root| root == "gateway: POST /hooks/{pilot_id}"),
                "{svc}: {} does not descend from the webhook request: {:?}",
                span.name,
                chain(span)
            );
        }
    }
    let has = |svc: &str, name: &str| in_trace.iter().any(|(s, span)| s == svc && span.name.contains(name));
    assert!(has("catalog", "VerifyWebhook"), "gateway → catalog: {described:#?}");
    assert!(has("executor", "executor.trigger"), "gateway → NATS → executor: {described:#?}");
    assert!(has("executor", "executor.run"), "the run: {described:#?}");
    assert!(has("vault", "Resolve"), "executor → vault: {described:#?}");
    // The NATS hop: the executor's trigger span is a child of the gateway's span that published.
    let (_, consumed) =
        in_trace.iter().find(|(s, span)| s == "executor" && span.name == "executor.trigger").unwrap();
    let (publisher, _) =
        by_id.get(&consumed.parent_span_id).expect("the trigger span has its publisher as parent");
    assert_eq!(publisher, "gateway");
    let services: BTreeSet<&str> = in_trace.iter().map(|(s, _)| s.as_str()).collect();
    assert!(["gateway", "catalog", "executor", "vault"].iter().all(|s| services.contains(s)), "{services:?}");
}
