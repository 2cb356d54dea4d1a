//! The OpenAPI document: valid OpenAPI 3.1, generated from the handlers, listing
//! every public route, and every route it lists is served.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use uuid::Uuid;

use crate::harness::Gateway;

/// Every route of issue 8's API, as (method, path).
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

#[tokio::test]
async fn the_document_is_openapi_3_1_and_lists_every_route() {
    let gw = Gateway::start().await;
    let mut b = gw.browser();
    let r = b.get("/api/openapi.json").await;
    r.assert(StatusCode::OK);
    assert!(r.header("content-type").unwrap().starts_with("application/json"));
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    let spec = oas3::from_json(&r.body).expect("a valid OpenAPI 3.1 document");
    assert!(!spec.info.title.is_empty());

    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let expected: BTreeSet<(String, String)> =
        EXPECTED.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned())).collect();
    let missing: Vec<_> = expected.difference(&documented).collect();
    assert!(missing.is_empty(), "routes missing from the document: {missing:?}");
    let extra: Vec<_> = documented.difference(&expected).collect();
    assert!(extra.is_empty(), "documented routes this test does not know: {extra:?}");

    // Every operation names its error answers with the one error schema.
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    assert!(doc["components"]["securitySchemes"]["session"].is_object());
    // Every $ref resolves.
    let text = r.body.clone();
    for part in text
        .split("\"$ref\":\"#/components/schemas/")
        .skip(1)
        .chain(text.split("\"$ref\": \"#/components/schemas/").skip(1))
    {
        let name = part.split('"').next().unwrap();
        assert!(doc["components"]["schemas"][name].is_object(), "dangling $ref {name}");
    }
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let gw = Gateway::start().await;
    let mut b = gw.browser();
    let doc = b.get("/api/openapi.json").await.json();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let concrete = path
                .replace("{pilot_id}", &Uuid::now_v7().to_string())
                .replace("{run_id}", &Uuid::now_v7().to_string())
                .replace("{approval_id}", &Uuid::now_v7().to_string())
                .replace("{version}", "1")
                .replace("{name}", "slack");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = b.json(method.clone(), &concrete, &serde_json::json!({})).await;
            if concrete == "/api/v1/auth/logout" {
                r.assert(StatusCode::NO_CONTENT); // signing out without a session is a no-op
                continue;
            }
            // Without a session: 401 for user routes, 400/401 for the public ones;
            // never the router's own 404 or 405.
            assert!(
                ![StatusCode::NOT_FOUND, StatusCode::METHOD_NOT_ALLOWED].contains(&r.status),
                "{method} {concrete}: {} {}",
                r.status,
                r.body
            );
            let code =
                serde_json::from_str::<serde_json::Value>(&r.body).ok().map(|v| v["error"]["code"].clone());
            assert!(code.is_some_and(|c| c.is_string()), "{method} {concrete}: {} {:?}", r.status, r.body);
        }
    }
}
