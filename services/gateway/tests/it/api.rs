//! The JSON API end to end against the fakes: every route, ownership, errors.

use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::harness::{Gateway, sample_spec};

#[tokio::test]
async fn pilots_crud_versions_schedules_export_import_and_secrets() {
    let gw = Gateway::start().await;
    let mut b = gw.user().await;
    let r = b.post_json("/api/v1/pilots", &json!({"spec": sample_spec("Orders"), "enabled": true})).await;
    r.assert(StatusCode::CREATED);
    let created = r.json();
    let id = created["pilot"]["id"].as_str().unwrap().to_owned();
    assert!(created["webhook_secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(created["pilot"]["webhook_url"], format!("https://gateway.test/hooks/{id}"));
    assert_eq!(created["pilot"]["spec"]["steps"][1]["kind"], "slack");
    assert_eq!(created["pilot"]["spec"]["steps"][1]["config"]["text"], "New order {{ trigger.id }}");

    let got = b.get(&format!("/api/v1/pilots/{id}")).await;
    got.assert(StatusCode::OK);
    assert!(!got.body.contains("whsec_"), "the secret is never shown again");
    assert_eq!(got.json()["version"], 1);

    let list = b.get("/api/v1/pilots").await;
    assert_eq!(list.json()["pilots"].as_array().unwrap().len(), 1);

    let mut spec = sample_spec("Orders v2");
    let r = b
        .json(Method::PUT, &format!("/api/v1/pilots/{id}"), &json!({"expected_version": 1, "spec": spec}))
        .await;
    r.assert(StatusCode::OK);
    assert_eq!(r.json()["version"], 2);
    let stale = b
        .json(Method::PUT, &format!("/api/v1/pilots/{id}"), &json!({"expected_version": 1, "spec": spec}))
        .await;
    stale.assert(StatusCode::CONFLICT);
    assert_eq!(stale.error_code(), "STALE_VERSION");

    let versions = b.get(&format!("/api/v1/pilots/{id}/versions")).await;
    assert_eq!(versions.json()["versions"].as_array().unwrap().len(), 2);
    b.get(&format!("/api/v1/pilots/{id}/versions/2")).await.assert(StatusCode::OK);
    b.get(&format!("/api/v1/pilots/{id}/versions/7")).await.assert(StatusCode::NOT_FOUND);

    let schedules = b.get(&format!("/api/v1/pilots/{id}/schedules")).await;
    schedules.assert(StatusCode::OK);
    assert_eq!(schedules.json()["schedules"][0]["cron"], "0 9 * * 1-5");
    spec["schedules"] = json!([]);
    let r = b
        .json(
            Method::PUT,
            &format!("/api/v1/pilots/{id}/schedules"),
            &json!({"expected_version": 2, "schedules": []}),
        )
        .await;
    r.assert(StatusCode::OK);
    assert_eq!(r.json()["spec"]["schedules"], json!([]));

    let r = b.post_empty(&format!("/api/v1/pilots/{id}/disable")).await;
    assert_eq!(r.json()["enabled"], false);
    let r = b.post_empty(&format!("/api/v1/pilots/{id}/enable")).await;
    assert_eq!(r.json()["enabled"], true);

    let export = b.get(&format!("/api/v1/pilots/{id}/export")).await;
    export.assert(StatusCode::OK);
    assert!(export.header("content-disposition").unwrap().starts_with("attachment"));
    assert_eq!(export.json()["format"], "bizops.pilot/v1");
    let imported = b.post_json("/api/v1/pilots/import", &json!({"document": export.json()})).await;
    imported.assert(StatusCode::CREATED);
    assert!(imported.json()["webhook_secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(imported.json()["pilot"]["enabled"], false);

    let rotated = b.post_empty(&format!("/api/v1/pilots/{id}/webhook-secret/rotate")).await;
    rotated.assert(StatusCode::OK);
    assert_ne!(rotated.json()["webhook_secret"], created["webhook_secret"]);

    let me = b.get("/api/v1/me/export").await;
    me.assert(StatusCode::OK);
    assert_eq!(me.json()["format"], "bizops.account-export/v1");
    assert_eq!(me.json()["pilots"].as_array().unwrap().len(), 2);

    b.json(Method::DELETE, &format!("/api/v1/pilots/{id}"), &json!({})).await.assert(StatusCode::NO_CONTENT);
    let gone = b.get(&format!("/api/v1/pilots/{id}")).await;
    gone.assert(StatusCode::NOT_FOUND);
    assert_eq!(gone.error_code(), "NOT_FOUND");
}

#[tokio::test]
async fn catalog_validation_messages_pass_through() {
    let gw = Gateway::start().await;
    let mut b = gw.user().await;
    gw.world().reject_spec = Some("steps[1] \"notify\": slack.text: is required".into());
    let r = b.post_json("/api/v1/pilots", &json!({"spec": sample_spec("Bad")})).await;
    r.assert(StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "INVALID_ARGUMENT");
    assert_eq!(r.json()["error"]["message"], "steps[1] \"notify\": slack.text: is required");
}

#[tokio::test]
async fn another_owner_gets_404_for_everything() {
    let gw = Gateway::start().await;
    let mut a = gw.user().await;
    let (pilot, _) = gw.pilot(&mut a, "Mine").await;
    let run = gw.fakes.add_run(
        pilot,
        bizops_proto::events::v1::RunStatus::AwaitingApproval,
        &[("ask", bizops_proto::events::v1::StepStatus::AwaitingApproval)],
    );
    let approval = gw.world().approvals.keys().next().copied().unwrap();
    let mut b = gw.user().await;
    let body = json!({"expected_version": 1, "spec": sample_spec("Theirs")});
    let checks: Vec<(Method, String, serde_json::Value)> = vec![
        (Method::GET, format!("/api/v1/pilots/{pilot}"), json!(null)),
        (Method::PUT, format!("/api/v1/pilots/{pilot}"), body),
        (Method::DELETE, format!("/api/v1/pilots/{pilot}"), json!({})),
        (Method::GET, format!("/api/v1/pilots/{pilot}/versions"), json!(null)),
        (Method::GET, format!("/api/v1/pilots/{pilot}/export"), json!(null)),
        (Method::POST, format!("/api/v1/pilots/{pilot}/enable"), json!({})),
        (Method::POST, format!("/api/v1/pilots/{pilot}/webhook-secret/rotate"), json!({})),
        (Method::POST, format!("/api/v1/pilots/{pilot}/runs"), json!({"payload": {"a": 1}})),
        (Method::GET, format!("/api/v1/pilots/{pilot}/runs"), json!(null)),
        (Method::GET, format!("/api/v1/runs/{run}"), json!(null)),
        (Method::POST, format!("/api/v1/runs/{run}/cancel"), json!({})),
        (Method::POST, format!("/api/v1/runs/{run}/replay"), json!({})),
        (Method::GET, format!("/api/v1/runs/{run}/events"), json!(null)),
        (Method::POST, format!("/api/v1/approvals/{approval}/decision"), json!({"decision": "approve"})),
        (Method::GET, format!("/pilots/{pilot}"), json!(null)),
        (Method::GET, format!("/runs/{run}"), json!(null)),
    ];
    for (method, path, body) in checks {
        let r = if method == Method::GET {
            b.get(&path).await
        } else {
            b.json(method.clone(), &path, &body).await
        };
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} {path}: {}", r.body);
    }
    assert_eq!(b.get("/api/v1/pilots").await.json()["pilots"], json!([]));
    assert_eq!(b.get("/api/v1/approvals").await.json()["approvals"], json!([]));
    // A's things are untouched.
    assert!(gw.world().pilots.contains_key(&pilot));
    assert_eq!(a.get(&format!("/api/v1/runs/{run}")).await.json()["status"], "awaiting_approval");
}

#[tokio::test]
async fn runs_and_approvals() {
    let gw = Gateway::start().await;
    let mut b = gw.user().await;
    let (pilot, _) = gw.pilot(&mut b, "Runs").await;
    let r = b
        .post_json(
            &format!("/api/v1/pilots/{pilot}/runs"),
            &json!({"payload": {"order": 42}, "idempotency_key": "k1"}),
        )
        .await;
    r.assert(StatusCode::ACCEPTED);
    assert!(r.json()["trigger_id"].as_str().unwrap().parse::<Uuid>().is_ok());
    let started = gw.world().started.clone();
    assert_eq!(started[0].payload_json, r#"{"order":42}"#);
    assert_eq!(started[0].idempotency_key, "k1");

    use bizops_proto::events::v1::{RunStatus, StepStatus};
    let run = gw.fakes.add_run(pilot, RunStatus::AwaitingApproval, &[("ask", StepStatus::AwaitingApproval)]);
    let list = b.get(&format!("/api/v1/pilots/{pilot}/runs")).await;
    assert_eq!(list.json()["runs"][0]["status"], "awaiting_approval");
    let one = b.get(&format!("/api/v1/runs/{run}")).await;
    assert_eq!(one.json()["steps"][0]["status"], "awaiting_approval");
    assert_eq!(one.json()["finished"], false);

    let approvals = b.get("/api/v1/approvals").await.json();
    let approval = approvals["approvals"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(approvals["approvals"][0]["run_id"], run.to_string());
    let bad =
        b.post_json(&format!("/api/v1/approvals/{approval}/decision"), &json!({"decision": "maybe"})).await;
    bad.assert(StatusCode::BAD_REQUEST);
    assert_eq!(bad.error_code(), "INVALID_ARGUMENT");
    let d = b
        .post_json(
            &format!("/api/v1/approvals/{approval}/decision"),
            &json!({"decision": "approve", "comment": "ok"}),
        )
        .await;
    d.assert(StatusCode::OK);
    assert_eq!(d.json()["status"], "approved");

    let c = b.post_empty(&format!("/api/v1/runs/{run}/cancel")).await;
    assert_eq!(c.json()["status"], "cancelled");
    assert_eq!(c.json()["finished"], true);
    b.post_json(&format!("/api/v1/runs/{run}/replay"), &json!({"from_failed_step": true}))
        .await
        .assert(StatusCode::ACCEPTED);

    // Disabled Pilot: the executor's refusal passes through.
    b.post_empty(&format!("/api/v1/pilots/{pilot}/disable")).await.assert(StatusCode::OK);
    let r = b.post_json(&format!("/api/v1/pilots/{pilot}/runs"), &json!({})).await;
    r.assert(StatusCode::CONFLICT);
    assert_eq!(r.error_code(), "PILOT_DISABLED");
}

#[tokio::test]
async fn connectors_are_write_only() {
    let gw = Gateway::start().await;
    let mut b = gw.user().await;
    let value = "https://hooks.slack.test/services/T000/B000/canary-XYZ";
    let r = b.json(Method::PUT, "/api/v1/connectors/slack", &json!({"kind": "slack", "value": value})).await;
    r.assert(StatusCode::OK);
    assert!(!r.body.contains("canary-XYZ"));
    assert_eq!(r.json()["kind"], "slack");
    let list = b.get("/api/v1/connectors").await;
    assert_eq!(list.json()["connectors"][0]["name"], "slack");
    assert!(!list.body.contains("canary-XYZ"));
    let page = b.get("/connectors").await;
    assert!(!page.body.contains("canary-XYZ"));
    let t = b.post_empty("/api/v1/connectors/slack/test").await;
    assert_eq!(t.json()["ok"], true);
    let bad =
        b.json(Method::PUT, "/api/v1/connectors/Bad%20Name", &json!({"kind": "slack", "value": value})).await;
    bad.assert(StatusCode::BAD_REQUEST);
    let wrong_kind =
        b.json(Method::PUT, "/api/v1/connectors/x", &json!({"kind": "carrier_pigeon", "value": "v"})).await;
    wrong_kind.assert(StatusCode::BAD_REQUEST);
    b.json(Method::DELETE, "/api/v1/connectors/slack", &json!({})).await.assert(StatusCode::NO_CONTENT);
    b.json(Method::DELETE, "/api/v1/connectors/slack", &json!({})).await.assert(StatusCode::NOT_FOUND);
    assert!(!gw.logs.contents().contains("canary-XYZ"));
}

#[tokio::test]
async fn malformed_requests_get_the_one_error_shape() {
    let gw = Gateway::start().await;
    let mut b = gw.user().await;
    let token = b.csrf.clone().unwrap();
    let r = b
        .send(Method::POST, "/api/v1/pilots", |r| {
            r.header("content-type", "application/json").header("x-csrf-token", token).body("{not json")
        })
        .await;
    r.assert(StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "INVALID_ARGUMENT");
    let r = b.post_json("/api/v1/pilots", &json!({"spec": {"title": "x"}, "colour": "red"})).await;
    r.assert(StatusCode::BAD_REQUEST);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("colour"));
    let r = b.get("/api/v1/pilots/not-a-uuid").await;
    r.assert(StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"]["message"], "pilot_id: must be a UUID");
    let r = b.get("/api/v1/no-such-thing").await;
    r.assert(StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "NOT_FOUND");
    let r = b.json(Method::PATCH, "/api/v1/pilots", &json!({})).await;
    r.assert(StatusCode::METHOD_NOT_ALLOWED);
    assert!(r.json()["error"]["code"].is_string());
    // Unauthenticated.
    let mut anon = gw.browser();
    let r = anon.get("/api/v1/pilots").await;
    r.assert(StatusCode::UNAUTHORIZED);
    assert_eq!(r.error_code(), "UNAUTHENTICATED");
    // A body over the limit.
    let big = "x".repeat(1024 * 1024 + 10);
    let r = b.post_json("/api/v1/pilots", &json!({"spec": {"title": big}})).await;
    r.assert(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.error_code(), "PAYLOAD_TOO_LARGE");
}

#[tokio::test]
async fn an_unreachable_backend_is_503_without_detail() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let gw = Gateway::start_with(|c| {
        c.executor_url = format!("http://{closed}");
        c.timeouts.rpc_retries = 1;
    })
    .await;
    let mut b = gw.user().await;
    let (pilot, _) = gw.pilot(&mut b, "Down").await;
    let r = b.get(&format!("/api/v1/pilots/{pilot}/runs")).await;
    r.assert(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.error_code(), "UNAVAILABLE");
    assert!(r.header("retry-after").is_some());
    assert!(!r.body.contains("127.0.0.1") && !r.body.contains(&closed.port().to_string()), "{}", r.body);
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let gw = Gateway::start_with(|c| {
        c.rate_limits.login_per_source = gateway::config::Rate::new(6, 3);
        c.rate_limits.login_per_email = gateway::config::Rate::new(60, 100);
        c.rate_limits.api_per_session = gateway::config::Rate::new(6, 5);
    })
    .await;
    let mut anon = gw.browser();
    anon.email = "nobody@example.com".into();
    let mut last = None;
    for _ in 0..4 {
        last = Some(anon.sign_in("wrong password!").await);
    }
    let r = last.unwrap();
    r.assert(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.error_code(), "RATE_LIMITED");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    let logins = gw.world().calls.iter().filter(|c| c.rpc == "Login").count();
    assert_eq!(logins, 3, "the refused attempt never reached identity");

    // Per session.
    let gw = Gateway::start_with(|c| c.rate_limits.api_per_session = gateway::config::Rate::new(6, 5)).await;
    let mut b = gw.user().await;
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(b.get("/api/v1/pilots").await.status);
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 5, "{statuses:?}");
    let r = b.get("/api/v1/pilots").await;
    r.assert(StatusCode::TOO_MANY_REQUESTS);
    assert!(r.header("retry-after").is_some());
}

#[tokio::test]
async fn login_is_limited_per_email_across_addresses() {
    let gw = Gateway::start_with(|c| {
        c.rate_limits.login_per_email = gateway::config::Rate::new(6, 2);
        c.client_ip_header = Some("x-forwarded-for".into());
    })
    .await;
    let mut statuses = Vec::new();
    for i in 0..3 {
        let mut b = gw.browser();
        let r = b
            .send(Method::POST, "/api/v1/auth/login", |r| {
                r.header("x-forwarded-for", format!("198.51.100.{i}"))
                    .json(&json!({"email": "Target@Example.com", "password": "guess guess guess"}))
            })
            .await;
        statuses.push(r.status);
    }
    assert_eq!(statuses, [StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS]);
    // The forwarded address reached identity.
    let sources: Vec<_> =
        gw.world().calls.iter().filter_map(|c| c.metadata.get("x-bizops-source").cloned()).collect();
    assert_eq!(sources, ["198.51.100.0", "198.51.100.1"]);
}
