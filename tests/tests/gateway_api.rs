//! The gateway's JSON API against the whole real suite in-process (identity,
//! pilot-catalog, credential-vault, executor on real Postgres and NATS, wiremock
//! for Slack): every documented route once, ownership, the one error shape, a
//! stopped backend, rate limits, and the OpenAPI document.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeSet, time::Duration};

use bizops_e2e::{
    browser::{Browser, Resp, read_events},
    suite::{PASSWORD, Suite, Svc},
};
use bizops_testkit::wait::Polling;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

/// Every route of issue 8's public API, as (method, path).
const EXPECTED: &[(&str, &str)] = &[
    ("post", "/api/v1/auth/register"),
    ("post", "/api/v1/auth/login"),
    ("post", "/api/v1/auth/logout"),
    ("get", "/api/v1/session"),
    ("post", "/api/v1/me/password"),
    ("delete", "/api/v1/me"),
    ("get", "/api/v1/me/export"),
    ("get", "/api/v1/pilots"),
    ("post", "/api/v1/pilots"),
    ("post", "/api/v1/pilots/import"),
    ("get", "/api/v1/pilots/{pilot_id}"),
    ("put", "/api/v1/pilots/{pilot_id}"),
    ("delete", "/api/v1/pilots/{pilot_id}"),
    ("get", "/api/v1/pilots/{pilot_id}/versions"),
    ("get", "/api/v1/pilots/{pilot_id}/versions/{version}"),
    ("post", "/api/v1/pilots/{pilot_id}/enable"),
    ("post", "/api/v1/pilots/{pilot_id}/disable"),
    ("get", "/api/v1/pilots/{pilot_id}/schedules"),
    ("put", "/api/v1/pilots/{pilot_id}/schedules"),
    ("get", "/api/v1/pilots/{pilot_id}/export"),
    ("post", "/api/v1/pilots/{pilot_id}/webhook-secret/rotate"),
    ("post", "/api/v1/pilots/{pilot_id}/runs"),
    ("get", "/api/v1/pilots/{pilot_id}/runs"),
    ("get", "/api/v1/runs/{run_id}"),
    ("post", "/api/v1/runs/{run_id}/cancel"),
    ("post", "/api/v1/runs/{run_id}/replay"),
    ("get", "/api/v1/runs/{run_id}/events"),
    ("get", "/api/v1/approvals"),
    ("post", "/api/v1/approvals/{approval_id}/decision"),
    ("get", "/api/v1/connectors"),
    ("put", "/api/v1/connectors/{name}"),
    ("post", "/api/v1/connectors/{name}/test"),
    ("delete", "/api/v1/connectors/{name}"),
    ("post", "/hooks/{pilot_id}"),
];

/// A Pilot that asks for approval, then posts to Slack. The schedule fires only
/// on 1 January, so never during a test run (the scheduler catches up one hour).
fn approval_spec(title: &str) -> Value {
    json!({
        "title": title,
        "description": "Tell the team about new orders, after a yes.",
        "steps": [
            {"key": "ask", "kind": "approval", "config": {"message": "Post it?"}},
            {"key": "notify", "kind": "slack", "config": {"text": "New order {{ trigger.id }}"}}
        ],
        "schedules": [{"cron": "0 9 1 1 *", "timezone": "Europe/Berlin"}]
    })
}

/// The documented operations: (method, path template).
async fn documented(b: &mut Browser) -> BTreeSet<(String, String)> {
    let doc = b.get("/api/openapi.json").await.json();
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            out.insert((method.clone(), path.clone()));
        }
    }
    out
}

/// Whether the concrete `path` is an instance of `template` (`{x}` = one segment).
fn matches(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter().zip(&p).all(|(t, p)| (t.starts_with('{') && t.ends_with('}') && !p.is_empty()) || t == p)
}

/// Every route the OpenAPI document lists, each answered with success at least
/// once, in the order a person would use them; at the end the document is
/// compared with what was exercised.
#[tokio::test]
async fn every_documented_route_works_against_the_real_services() {
    let suite = Suite::start().await;
    let mut b = suite.browser();
    let email = format!("walk-{}@example.com", Uuid::now_v7().simple());
    b.email = email.clone();
    let r = b.post_json("/api/v1/auth/register", &json!({"email": email, "password": PASSWORD})).await;
    r.assert(StatusCode::CREATED);
    assert_eq!(r.json()["email"], email.as_str());
    b.sign_in(PASSWORD).await.assert(StatusCode::OK);
    let me = b.get("/api/v1/session").await;
    me.assert(StatusCode::OK);
    assert_eq!(me.json()["account"]["email"], email.as_str());

    // Connectors: write-only.
    let slack_url = suite.slack_url();
    let r = b.put_json("/api/v1/connectors/slack", &json!({"kind": "slack", "value": slack_url})).await;
    r.assert(StatusCode::OK);
    assert_eq!(r.json()["kind"], "slack");
    assert!(!r.body.contains(&slack_url));
    let list = b.get("/api/v1/connectors").await;
    list.assert(StatusCode::OK);
    assert_eq!(list.json()["connectors"][0]["name"], "slack");
    assert!(!list.body.contains(&slack_url));
    let t = b.post_empty("/api/v1/connectors/slack/test").await;
    t.assert(StatusCode::OK);
    assert_eq!(t.json()["ok"], true, "{}", t.body);

    // Pilots.
    let created =
        b.post_json("/api/v1/pilots", &json!({"spec": approval_spec("Orders"), "enabled": true})).await;
    created.assert(StatusCode::CREATED);
    let created = created.json();
    let id = created["pilot"]["id"].as_str().unwrap().to_owned();
    assert!(created["webhook_secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(created["pilot"]["webhook_url"], format!("https://gateway.test/hooks/{id}"));
    let got = b.get(&format!("/api/v1/pilots/{id}")).await;
    got.assert(StatusCode::OK);
    assert!(!got.body.contains("whsec_"), "the secret is never shown again");
    assert_eq!(got.json()["version"], 1);
    assert_eq!(b.get("/api/v1/pilots").await.json()["pilots"].as_array().unwrap().len(), 1);

    let r = b
        .put_json(
            &format!("/api/v1/pilots/{id}"),
            &json!({"expected_version": 1, "spec": approval_spec("Orders v2")}),
        )
        .await;
    r.assert(StatusCode::OK);
    assert_eq!(r.json()["version"], 2);
    b.put_json(
        &format!("/api/v1/pilots/{id}"),
        &json!({"expected_version": 1, "spec": approval_spec("Late")}),
    )
    .await
    .assert_error(StatusCode::CONFLICT, "STALE_VERSION");
    let versions = b.get(&format!("/api/v1/pilots/{id}/versions")).await;
    versions.assert(StatusCode::OK);
    assert_eq!(versions.json()["versions"].as_array().unwrap().len(), 2);
    let v1 = b.get(&format!("/api/v1/pilots/{id}/versions/1")).await;
    v1.assert(StatusCode::OK);
    assert_eq!(v1.json()["spec"]["title"], "Orders");
    b.get(&format!("/api/v1/pilots/{id}/versions/7")).await.assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");

    let schedules = b.get(&format!("/api/v1/pilots/{id}/schedules")).await;
    schedules.assert(StatusCode::OK);
    assert_eq!(schedules.json()["schedules"][0]["cron"], "0 9 1 1 *");
    let r = b
        .put_json(&format!("/api/v1/pilots/{id}/schedules"), &json!({"expected_version": 2, "schedules": []}))
        .await;
    r.assert(StatusCode::OK);
    assert_eq!(r.json()["version"], 3);
    assert_eq!(r.json()["spec"]["schedules"], json!([]));

    let r = b.post_empty(&format!("/api/v1/pilots/{id}/disable")).await;
    r.assert(StatusCode::OK);
    assert_eq!(r.json()["enabled"], false);
    b.post_json(&format!("/api/v1/pilots/{id}/runs"), &json!({}))
        .await
        .assert_error(StatusCode::CONFLICT, "PILOT_DISABLED");
    let r = b.post_empty(&format!("/api/v1/pilots/{id}/enable")).await;
    r.assert(StatusCode::OK);
    assert_eq!(r.json()["enabled"], true);

    let export = b.get(&format!("/api/v1/pilots/{id}/export")).await;
    export.assert(StatusCode::OK);
    assert!(export.header("content-disposition").unwrap().contains(&format!("pilot-{id}.json")));
    assert_eq!(export.json()["format"], "bizops.pilot/v1");
    assert!(!export.body.contains("whsec_"));
    let imported = b.post_json("/api/v1/pilots/import", &json!({"document": export.json()})).await;
    imported.assert(StatusCode::CREATED);
    let imported_id = imported.json()["pilot"]["id"].as_str().unwrap().to_owned();
    assert_eq!(imported.json()["pilot"]["enabled"], false);
    assert_eq!(imported.json()["pilot"]["spec"]["title"], "Orders v2");
    assert!(imported.json()["webhook_secret"].as_str().unwrap().starts_with("whsec_"));

    let rotated = b.post_empty(&format!("/api/v1/pilots/{id}/webhook-secret/rotate")).await;
    rotated.assert(StatusCode::OK);
    let secret = rotated.json()["webhook_secret"].as_str().unwrap().to_owned();
    assert_ne!(secret, created["webhook_secret"].as_str().unwrap());

    // A webhook starts a run that waits for approval; watch it live and approve.
    let mut hook = suite.browser();
    hook.origin = None;
    let r = hook
        .send(Method::POST, &format!("/hooks/{id}"), |r| {
            r.header("x-pilot-secret", &secret)
                .header("content-type", "application/json")
                .body(r#"{"id": 7}"#)
        })
        .await;
    r.assert(StatusCode::ACCEPTED);
    let trigger_id = r.json()["trigger_id"].as_str().unwrap().to_owned();
    let run = b.wait_for_run(&id, "awaiting_approval").await;
    let run_id = run["id"].as_str().unwrap().to_owned();
    assert_eq!(run["trigger_id"], trigger_id.as_str());
    let one = b.get(&format!("/api/v1/runs/{run_id}")).await;
    one.assert(StatusCode::OK);
    assert_eq!(one.json()["steps"][0]["step_key"], "ask");
    assert_eq!(one.json()["steps"][0]["status"], "awaiting_approval");
    assert_eq!(one.json()["finished"], false);

    let live = b.stream(&format!("/api/v1/runs/{run_id}/events")).await;
    assert_eq!(live.status(), StatusCode::OK);
    assert!(live.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let approvals = b.get("/api/v1/approvals").await;
    approvals.assert(StatusCode::OK);
    let approval = approvals.json()["approvals"][0].clone();
    assert_eq!(approval["run_id"], run_id.as_str());
    assert_eq!(approval["message"], "Post it?");
    let approval_id = approval["id"].as_str().unwrap().to_owned();
    b.post_json(&format!("/api/v1/approvals/{approval_id}/decision"), &json!({"decision": "maybe"}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    let d = b
        .post_json(
            &format!("/api/v1/approvals/{approval_id}/decision"),
            &json!({"decision": "approve", "comment": "go"}),
        )
        .await;
    d.assert(StatusCode::OK);
    assert_eq!(d.json()["status"], "approved");
    let events = read_events(live, |name, _| name == "end").await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"snapshot"), "{events:?}");
    assert!(names.contains(&"change"), "{events:?}");
    assert_eq!(events.last().unwrap().1, "finished", "{events:?}");
    let last: Value =
        serde_json::from_str(&events.iter().rev().find(|(n, _)| n == "snapshot").unwrap().1).unwrap();
    assert_eq!(last["status"], "succeeded", "{last}");
    let posted = suite.slack.received_requests().await.unwrap();
    assert!(
        posted.iter().any(|r| String::from_utf8_lossy(&r.body).contains("New order 7")),
        "Slack got the message"
    );

    // Run now, twice with one idempotency key: one run; cancel it; replay the first.
    for _ in 0..2 {
        let r = b
            .post_json(
                &format!("/api/v1/pilots/{id}/runs"),
                &json!({"payload": {"id": 8}, "idempotency_key": "once"}),
            )
            .await;
        r.assert(StatusCode::ACCEPTED);
        assert!(r.json()["trigger_id"].as_str().unwrap().parse::<Uuid>().is_ok());
    }
    let manual = b.wait_for_run(&id, "awaiting_approval").await;
    let manual_id = manual["id"].as_str().unwrap().to_owned();
    assert_eq!(manual["source"], "manual");
    let cancelled = b.post_empty(&format!("/api/v1/runs/{manual_id}/cancel")).await;
    cancelled.assert(StatusCode::OK);
    assert_eq!(cancelled.json()["status"], "cancelled");
    b.post_empty(&format!("/api/v1/runs/{manual_id}/cancel"))
        .await
        .assert_error(StatusCode::CONFLICT, "FAILED_PRECONDITION");
    let replay = b.post_json(&format!("/api/v1/runs/{run_id}/replay"), &json!({})).await;
    replay.assert(StatusCode::ACCEPTED);
    let replayed = b.wait_for_run(&id, "awaiting_approval").await;
    assert_eq!(replayed["replay_of_run_id"], run_id.as_str());
    let runs = b.get(&format!("/api/v1/pilots/{id}/runs")).await.json();
    assert_eq!(
        runs["runs"].as_array().unwrap().len(),
        3,
        "webhook, one manual (the key repeated), replay: {runs}"
    );

    let all = b.get("/api/v1/me/export").await;
    all.assert(StatusCode::OK);
    assert!(all.header("content-disposition").unwrap().starts_with("attachment"));
    assert_eq!(all.json()["format"], "bizops.account-export/v1");
    assert_eq!(all.json()["pilots"].as_array().unwrap().len(), 2);

    b.delete("/api/v1/connectors/slack").await.assert(StatusCode::NO_CONTENT);
    b.delete("/api/v1/connectors/slack").await.assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    b.delete(&format!("/api/v1/pilots/{imported_id}")).await.assert(StatusCode::NO_CONTENT);
    b.get(&format!("/api/v1/pilots/{imported_id}")).await.assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");

    // Account: new password, sign out, sign in, delete.
    let new_password = "an entirely different passphrase 77";
    let r = b
        .post_json(
            "/api/v1/me/password",
            &json!({"current_password": PASSWORD, "new_password": new_password}),
        )
        .await;
    r.assert(StatusCode::OK);
    b.csrf = r.json()["csrf_token"].as_str().map(str::to_owned);
    b.post_empty("/api/v1/auth/logout").await.assert(StatusCode::NO_CONTENT);
    b.sign_in(new_password).await.assert(StatusCode::OK);
    b.json(Method::DELETE, "/api/v1/me", &json!({"password": new_password}))
        .await
        .assert(StatusCode::NO_CONTENT);
    b.sign_in(new_password).await.assert_error(StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS");

    // Every documented operation was answered with success at least once.
    let mut visits = b.history.clone();
    visits.extend(hook.history.clone());
    let missing: Vec<_> = documented(&mut b)
        .await
        .into_iter()
        .filter(|(method, template)| {
            !visits.iter().any(|v| {
                v.method.as_str().eq_ignore_ascii_case(method)
                    && matches(template, &v.path)
                    && v.status.is_success()
            })
        })
        .collect();
    assert!(missing.is_empty(), "documented but never exercised successfully: {missing:?}");
}

/// Everything of A, through every route that names it: B gets 404 (never 403),
/// and A's things are untouched.
#[tokio::test]
async fn another_owner_gets_404_for_everything() {
    let suite = Suite::start().await;
    let mut a = suite.web_user("owner-a").await;
    a.put_json("/api/v1/connectors/slack", &json!({"kind": "slack", "value": suite.slack_url()}))
        .await
        .assert(StatusCode::OK);
    let created =
        a.post_json("/api/v1/pilots", &json!({"spec": approval_spec("Mine"), "enabled": true})).await;
    created.assert(StatusCode::CREATED);
    let pilot = created.json()["pilot"]["id"].as_str().unwrap().to_owned();
    let secret = created.json()["webhook_secret"].as_str().unwrap().to_owned();
    assert_eq!(suite.hook(&pilot, &secret, json!({"id": 1})).await.0, 202);
    let run = a.wait_for_run(&pilot, "awaiting_approval").await["id"].as_str().unwrap().to_owned();
    let approval = a.get("/api/v1/approvals").await.json()["approvals"][0]["id"].as_str().unwrap().to_owned();

    let mut b = suite.web_user("owner-b").await;
    let update = json!({"expected_version": 1, "spec": approval_spec("Theirs")});
    let checks: Vec<(Method, String, Value)> = vec![
        (Method::GET, format!("/api/v1/pilots/{pilot}"), json!(null)),
        (Method::PUT, format!("/api/v1/pilots/{pilot}"), update),
        (Method::GET, format!("/api/v1/pilots/{pilot}/versions"), json!(null)),
        (Method::GET, format!("/api/v1/pilots/{pilot}/versions/1"), json!(null)),
        (Method::POST, format!("/api/v1/pilots/{pilot}/enable"), json!({})),
        (Method::POST, format!("/api/v1/pilots/{pilot}/disable"), json!({})),
        (Method::GET, format!("/api/v1/pilots/{pilot}/schedules"), json!(null)),
        (
            Method::PUT,
            format!("/api/v1/pilots/{pilot}/schedules"),
            json!({"expected_version": 1, "schedules": []}),
        ),
        (Method::GET, format!("/api/v1/pilots/{pilot}/export"), json!(null)),
        (Method::POST, format!("/api/v1/pilots/{pilot}/webhook-secret/rotate"), json!({})),
        (Method::POST, format!("/api/v1/pilots/{pilot}/runs"), json!({"payload": {"a": 1}})),
        (Method::GET, format!("/api/v1/pilots/{pilot}/runs"), json!(null)),
        (Method::GET, format!("/api/v1/runs/{run}"), json!(null)),
        (Method::POST, format!("/api/v1/runs/{run}/cancel"), json!({})),
        (Method::POST, format!("/api/v1/runs/{run}/replay"), json!({})),
        (Method::GET, format!("/api/v1/runs/{run}/events"), json!(null)),
        (Method::POST, format!("/api/v1/approvals/{approval}/decision"), json!({"decision": "approve"})),
        (Method::POST, "/api/v1/connectors/slack/test".to_owned(), json!({})),
        (Method::DELETE, "/api/v1/connectors/slack".to_owned(), json!({})),
        (Method::DELETE, format!("/api/v1/pilots/{pilot}"), json!({})),
    ];
    for (method, path, body) in checks {
        let r = if method == Method::GET {
            b.get(&path).await
        } else {
            b.json(method.clone(), &path, &body).await
        };
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} {path}: {}", r.body);
        assert_eq!(r.error_code(), "NOT_FOUND", "{method} {path}");
    }
    // The dashboard pages of A's things too.
    for path in [
        format!("/pilots/{pilot}"),
        format!("/pilots/{pilot}/edit"),
        format!("/pilots/{pilot}/runs"),
        format!("/pilots/{pilot}/export"),
        format!("/runs/{run}"),
    ] {
        b.get(&path).await.assert(StatusCode::NOT_FOUND);
    }
    assert_eq!(b.get("/api/v1/pilots").await.json()["pilots"], json!([]));
    assert_eq!(b.get("/api/v1/approvals").await.json()["approvals"], json!([]));
    assert_eq!(b.get("/api/v1/connectors").await.json()["connectors"], json!([]));
    assert_eq!(b.get("/api/v1/me/export").await.json()["pilots"], json!([]));

    // A's things are as they were.
    let mine = a.get(&format!("/api/v1/pilots/{pilot}")).await;
    mine.assert(StatusCode::OK);
    assert_eq!((mine.json()["version"].clone(), mine.json()["enabled"].clone()), (json!(1), json!(true)));
    assert_eq!(a.get(&format!("/api/v1/runs/{run}")).await.json()["status"], "awaiting_approval");
    assert_eq!(a.get("/api/v1/approvals").await.json()["approvals"][0]["status"], "pending");
    assert_eq!(a.get("/api/v1/connectors").await.json()["connectors"][0]["name"], "slack");
    assert_eq!(suite.runs(&a.token().unwrap(), &pilot).await.len(), 1, "B started nothing");
    assert_eq!(suite.hook(&pilot, &secret, json!({"id": 2})).await.0, 202, "the secret was not rotated");
}

/// Malformed requests of every kind get `{"error": {"code", "message"}}` (and
/// `field` when the error is about one) and nothing else: bodies, path and query
/// parameters, methods, routes, sessions, sizes, and the backends' own validation
/// messages.
#[tokio::test]
async fn every_error_has_the_one_json_shape() {
    let suite = Suite::start().await;
    let mut b = suite.web_user("errors").await;
    let token = b.csrf.clone().unwrap();
    let r = b
        .send(Method::POST, "/api/v1/pilots", |r| {
            r.header("content-type", "application/json").header("x-csrf-token", token).body("{not json")
        })
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    let token = b.csrf.clone().unwrap();
    let r = b
        .send(Method::POST, "/api/v1/pilots", |r| r.header("x-csrf-token", token).body(r#"{"spec": {}}"#))
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("Content-Type"), "{}", r.body);
    let r = b.post_json("/api/v1/pilots", &json!({"spec": {"title": "x"}, "colour": "red"})).await;
    r.assert_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("colour"), "{}", r.body);
    // A body error deeper down names its path in the body.
    let teleport = json!({"spec": {"title": "x", "steps": [{"key": "a", "kind": "teleport", "config": {}}]}});
    let r = b.post_json("/api/v1/pilots", &teleport).await;
    r.assert_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    assert!(r.json()["error"]["field"].as_str().unwrap().starts_with("spec.steps[0]"), "{}", r.body);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("teleport"), "{}", r.body);

    // The catalog's validation message passes through, naming the field.
    let r = b.post_json("/api/v1/pilots", &json!({"spec": {"title": "", "steps": []}})).await;
    r.assert_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    assert!(r.json()["error"]["message"].as_str().unwrap().starts_with("title:"), "{}", r.body);
    assert_eq!(r.json()["error"]["field"], "title", "{}", r.body);
    let bad_cron = json!({"spec": {"title": "Cron", "steps": [{"key": "x", "kind": "transform", "config": {"template": "{}"}}],
        "schedules": [{"cron": "61 * * * *", "timezone": "UTC"}]}});
    let r = b.post_json("/api/v1/pilots", &bad_cron).await;
    r.assert_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    assert!(r.json()["error"]["message"].as_str().unwrap().starts_with("schedules[0].cron:"), "{}", r.body);
    assert_eq!(r.json()["error"]["field"], "schedules[0].cron", "{}", r.body);
    let bad_step = json!({"spec": {"title": "Step", "steps": [
        {"key": "a", "kind": "transform", "config": {"template": "{}"}},
        {"key": "b", "kind": "slack", "config": {"text": "{{ steps.zzz.output }}"}}]}});
    let r = b.post_json("/api/v1/pilots", &bad_step).await;
    r.assert_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    assert_eq!(r.json()["error"]["field"], "steps[1].slack.text", "{}", r.body);
    // The vault's too.
    b.put_json(
        "/api/v1/connectors/slack",
        &json!({"kind": "slack", "value": "https://evil.example/services/x"}),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    b.put_json("/api/v1/connectors/x", &json!({"kind": "carrier_pigeon", "value": "v"}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    b.put_json("/api/v1/connectors/Bad%20Name", &json!({"kind": "slack", "value": suite.slack_url()}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");

    // Path and query parameters.
    let r = b.get("/api/v1/pilots/not-a-uuid").await;
    r.assert_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    assert_eq!(r.json()["error"]["message"], "pilot_id: must be a UUID");
    assert_eq!(r.json()["error"]["field"], "pilot_id");
    let id = Uuid::now_v7();
    let r = b.get(&format!("/api/v1/pilots/{id}/versions/abc")).await;
    r.assert_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    assert_eq!(r.json()["error"]["message"], "version: must be a whole number");
    let r = b.get("/api/v1/pilots?page_size=abc").await;
    r.assert_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("page_size"), "{}", r.body);
    b.get("/api/v1/approvals?page_size=-1").await.assert_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    let r = b.get("/api/v1/pilots/%FF").await;
    r.assert_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    assert_eq!(r.json()["error"]["message"], "pilot_id: is not valid UTF-8");
    b.get("/api/v1/runs/%FF%FE/events").await.assert_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    b.delete("/api/v1/connectors/%C3%28").await.assert_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    // The dashboard answers the same mistakes with its error page, not plain text.
    let page = b.get("/pilots/%FF").await;
    page.assert(StatusCode::BAD_REQUEST);
    assert!(page.header("content-type").unwrap().starts_with("text/html"), "{:?}", page.headers);
    assert!(page.body.contains("INVALID_ARGUMENT"));
    let page = b.get("/pilots?notice=a&notice=b").await;
    assert!(page.header("content-type").unwrap().starts_with("text/html"));

    // Methods and routes.
    let r = b.json(Method::PATCH, "/api/v1/pilots", &json!({})).await;
    r.assert_error(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED");
    let allow = r.header("allow").unwrap_or_default().to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "Allow: {allow}");
    b.json(Method::DELETE, "/api/v1/session", &json!({}))
        .await
        .assert_error(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED");
    b.get("/hooks/x").await.assert_error(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED");
    b.get("/api/v1/no-such-thing").await.assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");

    // No session; too large.
    let mut anon = suite.browser();
    anon.get("/api/v1/pilots").await.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    let big = "x".repeat(1024 * 1024 + 10);
    b.post_json("/api/v1/pilots", &json!({"spec": {"title": big}}))
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
    let mut other = suite.browser();
    let r = other
        .post_json("/api/v1/auth/login", &json!({"email": b.email.clone(), "password": "not it at all, no"}))
        .await;
    r.assert_error(StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS");
    assert!(r.set_cookies().is_empty(), "no cookie for a failed sign-in");
    let r = other
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "nobody-at-all@example.com", "password": "not it at all, no"}),
        )
        .await;
    r.assert_error(StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS");
}

/// A backend that is down: 503 with `Retry-After`, no address or port in the
/// answer; the routes of the backends still up keep working.
#[tokio::test]
async fn a_stopped_backend_is_503_with_retry_after_and_no_detail() {
    let mut suite = Suite::start_with(|c| c.gateway.timeouts.rpc_retries = 1).await;
    let mut b = suite.web_user("down").await;
    let created = b.post_json("/api/v1/pilots", &json!({"spec": approval_spec("Down")})).await;
    created.assert(StatusCode::CREATED);
    let pilot = created.json()["pilot"]["id"].as_str().unwrap().to_owned();
    let port = suite.configs.executor.grpc_addr.port().to_string();
    suite.stop(Svc::Executor).await;
    let r = b.get(&format!("/api/v1/pilots/{pilot}/runs")).await;
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    assert!(!r.body.contains("127.0.0.1") && !r.body.contains(&port), "{}", r.body);
    b.get(&format!("/api/v1/pilots/{pilot}")).await.assert(StatusCode::OK);
    suite.launch(Svc::Executor);
    let mut wait = Polling::new(Duration::from_secs(10));
    while b.get(&format!("/api/v1/pilots/{pilot}/runs")).await.status != StatusCode::OK {
        wait.next("the executor to come back").await;
    }
}

/// Signs in through the gateway as if from `ip` (the gateway trusts
/// `X-Forwarded-For` in this test).
async fn login_from(b: &mut Browser, ip: &str, email: &str, password: &str) -> Resp {
    let body = json!({"email": email, "password": password});
    let ip = ip.to_owned();
    b.send(Method::POST, "/api/v1/auth/login", move |r| r.header("x-forwarded-for", ip).json(&body)).await
}

/// 429 with `Retry-After` for sign-in per source and for API requests per
/// session; no limit per email at the gateway, so wrong passwords sent for an
/// account from anywhere never lock its owner out.
#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    use gateway::config::Rate;
    let suite = Suite::start_with(|c| {
        c.gateway.rate_limits.login_per_source = Rate::new(6, 3);
        c.gateway.rate_limits.api_per_session = Rate::new(6, 5);
        c.gateway.client_ip_header = Some("x-forwarded-for".into());
    })
    .await;
    let mut anon = suite.browser();
    // Per source: three attempts (different emails), then 429.
    let mut answers = Vec::new();
    for i in 0..4 {
        answers.push(
            login_from(&mut anon, "198.51.100.7", &format!("nobody{i}@example.com"), "wrong password!").await,
        );
    }
    for r in &answers[..3] {
        r.assert_error(StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS");
    }
    answers[3].assert_error(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    assert!(answers[3].header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    // Another address is not affected.
    login_from(&mut anon, "198.51.100.8", "nobody@example.com", "wrong password!")
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS");

    // Wrong passwords for one account from many addresses (however the email
    // is spelled): every one is checked and refused; the owner then signs in at
    // the first attempt (the gateway used to refuse after five).
    let target = suite.user("target").await;
    for i in 1..=8 {
        login_from(&mut anon, &format!("203.0.113.{i}"), &target.email.to_uppercase(), "guess guess guess")
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS");
    }
    let mut owner = suite.browser();
    login_from(&mut owner, "192.0.2.77", &target.email, PASSWORD).await.assert(StatusCode::OK);

    // Per session: a burst of five, then 429; another session is not affected.
    let busy = suite.user("busy").await;
    let calm = suite.user("calm").await;
    let mut b = suite.browser();
    login_from(&mut b, "192.0.2.1", &busy.email, PASSWORD).await.assert(StatusCode::OK);
    let mut c = suite.browser();
    login_from(&mut c, "192.0.2.2", &calm.email, PASSWORD).await.assert(StatusCode::OK);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(b.get("/api/v1/pilots").await);
    }
    assert!(
        statuses[..5].iter().all(|r| r.status == StatusCode::OK),
        "{:?}",
        statuses.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    statuses[5].assert_error(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    assert!(statuses[5].header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    c.get("/api/v1/pilots").await.assert(StatusCode::OK);
}

/// The document is valid OpenAPI 3.1, lists exactly the API's routes, every
/// `$ref` resolves, and every route it lists is served (no router 404/405).
#[tokio::test]
async fn the_openapi_document_validates_and_matches_the_routes() {
    let suite = Suite::start().await;
    let mut b = suite.browser();
    let r = b.get("/api/openapi.json").await;
    r.assert(StatusCode::OK);
    assert!(r.header("content-type").unwrap().starts_with("application/json"));
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    let spec = oas3::from_json(&r.body).expect("a valid OpenAPI 3.1 document");
    assert!(!spec.info.title.is_empty());

    let documented = documented(&mut b).await;
    let expected: BTreeSet<(String, String)> =
        EXPECTED.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned())).collect();
    let missing: Vec<_> = expected.difference(&documented).collect();
    assert!(missing.is_empty(), "routes missing from the document: {missing:?}");
    let extra: Vec<_> = documented.difference(&expected).collect();
    assert!(extra.is_empty(), "documented routes this test does not know: {extra:?}");
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    assert!(doc["components"]["securitySchemes"]["session"].is_object());
    for part in r.body.split("\"$ref\": \"#/components/schemas/").skip(1) {
        let name = part.split('"').next().unwrap();
        assert!(doc["components"]["schemas"][name].is_object(), "dangling $ref {name}");
    }

    // Every documented route exists (signed out: 401 or a 4xx of the handler,
    // always the error shape; never the router's 404 or 405).
    for (method, path) in &documented {
        let concrete = path
            .replace("{pilot_id}", &Uuid::now_v7().to_string())
            .replace("{run_id}", &Uuid::now_v7().to_string())
            .replace("{approval_id}", &Uuid::now_v7().to_string())
            .replace("{version}", "1")
            .replace("{name}", "slack");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r: Resp = b.json(method.clone(), &concrete, &json!({})).await;
        if concrete == "/api/v1/auth/logout" {
            r.assert(StatusCode::NO_CONTENT); // signing out without a session is a no-op
            continue;
        }
        assert!(
            ![StatusCode::NOT_FOUND, StatusCode::METHOD_NOT_ALLOWED].contains(&r.status),
            "{method} {concrete}: {} {}",
            r.status,
            r.body
        );
        assert!(!r.error_code().is_empty(), "{method} {concrete}: {} {}", r.status, r.body);
    }
}
