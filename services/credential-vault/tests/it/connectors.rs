//! TestCredential against fake providers (wiremock): the configured base URLs, the
//! provider's answer for a good and a rejected credential, timeouts, no redirects,
//! and no value in any detail.

use std::time::Duration;

use bizops_proto::vault::v1::ConnectorKind;
use tonic::Code;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{bearer_token, body_json, header, method, path},
};

use crate::harness::*;

const GOOD_RESEND: &str = "re_good_SecretResendKey_111";
const BAD_RESEND: &str = "re_bad_SecretResendKey_222";
const GOOD_ANTHROPIC: &str = "sk-ant-api03-SecretAnthropicKey_good";
const BAD_ANTHROPIC: &str = "sk-ant-api03-SecretAnthropicKey_bad";

#[track_caller]
fn assert_detail_clean(detail: &str, values: &[&str]) {
    for v in values.iter().chain(SECRETS) {
        assert!(!detail.contains(v), "value in detail: {detail}");
    }
    assert!(!detail.contains("Secret") && !detail.contains("services/T"), "{detail}");
}

#[tokio::test]
async fn slack_webhook_ok_and_rejected() {
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/T1/B1/SecretGood"))
        .and(body_json(serde_json::json!({})))
        .respond_with(ResponseTemplate::new(400).set_body_string("no_text"))
        .expect(1)
        .mount(&slack)
        .await;
    Mock::given(method("POST"))
        .and(path("/services/T1/B1/SecretRevoked"))
        .respond_with(ResponseTemplate::new(403).set_body_string("invalid_token"))
        .expect(1)
        .mount(&slack)
        .await;
    let v = Vault::start().await;
    let ann = v.new_user();
    let good = format!("{}/services/T1/B1/SecretGood", slack.uri());
    let revoked = format!("{}/services/T1/B1/SecretRevoked", slack.uri());
    v.put(&ann, "good", ConnectorKind::Slack, &good).await.unwrap();
    v.put(&ann, "revoked", ConnectorKind::Slack, &revoked).await.unwrap();

    let ok = v.test(&ann, "good").await.unwrap();
    assert!(ok.ok, "{ok:?}");
    assert_eq!(ok.provider_status, 400);
    assert!(ok.detail.contains("no_text") && ok.detail.contains("nothing was posted"), "{}", ok.detail);
    assert_detail_clean(&ok.detail, &[&good]);

    let no = v.test(&ann, "revoked").await.unwrap();
    assert!(!no.ok, "{no:?}");
    assert_eq!(no.provider_status, 403);
    assert!(no.detail.contains("Slack rejected the webhook"), "{}", no.detail);
    assert_detail_clean(&no.detail, &[&revoked]);
    slack.verify().await;
    v.logs.assert_absent(&[&good, &revoked, "SecretGood", "SecretRevoked"]);
}

#[tokio::test]
async fn resend_key_ok_and_rejected_against_the_configured_base_url() {
    let resend = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/domains"))
        .and(bearer_token(GOOD_RESEND))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"data": []})))
        .expect(1)
        .mount(&resend)
        .await;
    Mock::given(method("GET"))
        .and(path("/domains"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(serde_json::json!({"statusCode": 401, "name": "validation_error", "message": "API key is invalid"})),
        )
        .mount(&resend)
        .await;
    let uri = resend.uri();
    let v = Vault::start_with(|c| c.connectors.resend_base_url = uri).await;
    let ann = v.new_user();
    v.put(&ann, "good", ConnectorKind::Resend, GOOD_RESEND).await.unwrap();
    v.put(&ann, "bad", ConnectorKind::Resend, BAD_RESEND).await.unwrap();

    let ok = v.test(&ann, "good").await.unwrap();
    assert!(ok.ok && ok.provider_status == 200, "{ok:?}");
    let no = v.test(&ann, "bad").await.unwrap();
    assert!(!no.ok && no.provider_status == 401, "{no:?}");
    assert!(no.detail.contains("Resend rejected the API key"), "{}", no.detail);
    assert_detail_clean(&no.detail, &[GOOD_RESEND, BAD_RESEND]);
    resend.verify().await;
    v.logs.assert_absent(&[GOOD_RESEND, BAD_RESEND]);
}

#[tokio::test]
async fn anthropic_key_ok_and_rejected() {
    let anthropic = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .and(header("x-api-key", GOOD_ANTHROPIC))
        .and(header("anthropic-version", "2023-06-01"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"data": []})))
        .expect(1)
        .mount(&anthropic)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(ResponseTemplate::new(401).set_body_json(serde_json::json!(
            {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}
        )))
        .mount(&anthropic)
        .await;
    let uri = anthropic.uri();
    let v = Vault::start_with(|c| c.connectors.anthropic_base_url = uri).await;
    let ann = v.new_user();
    v.put(&ann, "good", ConnectorKind::Anthropic, GOOD_ANTHROPIC).await.unwrap();
    v.put(&ann, "bad", ConnectorKind::Anthropic, BAD_ANTHROPIC).await.unwrap();
    let ok = v.test(&ann, "good").await.unwrap();
    assert!(ok.ok && ok.provider_status == 200, "{ok:?}");
    let no = v.test(&ann, "bad").await.unwrap();
    assert!(!no.ok && no.provider_status == 401, "{no:?}");
    assert_detail_clean(&no.detail, &[GOOD_ANTHROPIC, BAD_ANTHROPIC]);
    anthropic.verify().await;
    v.logs.assert_absent(&[GOOD_ANTHROPIC, BAD_ANTHROPIC]);
}

#[tokio::test]
async fn bearer_tokens_have_nothing_to_test_against() {
    let v = Vault::start().await;
    let ann = v.new_user();
    v.put(&ann, "tok", ConnectorKind::HttpBearer, BEARER).await.unwrap();
    let status = assert_status(v.test(&ann, "tok").await, Code::FailedPrecondition, "FAILED_PRECONDITION");
    assert!(status.message().contains("nothing to test against"), "{}", status.message());
    assert_status(v.test(&ann, "missing").await, Code::NotFound, "NOT_FOUND");
}

#[tokio::test]
async fn unreachable_slow_and_redirecting_providers_fail_safely() {
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let slow = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&slow)
        .await;
    let redirecting = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/T/B/SecretRedirect"))
        .respond_with(
            ResponseTemplate::new(307).insert_header("location", format!("{}/stolen", redirecting.uri())),
        )
        .expect(1)
        .mount(&redirecting)
        .await;
    Mock::given(path("/stolen")).respond_with(ResponseTemplate::new(200)).expect(0).mount(&redirecting).await;

    let slow_uri = slow.uri();
    let v = Vault::start_with(|c| {
        c.connectors.anthropic_base_url = format!("http://{closed}");
        c.connectors.resend_base_url = slow_uri;
        c.connectors.timeout = Duration::from_millis(500);
    })
    .await;
    let ann = v.new_user();
    v.put(&ann, "down", ConnectorKind::Anthropic, ANTHROPIC_KEY).await.unwrap();
    v.put(&ann, "slow", ConnectorKind::Resend, RESEND_KEY).await.unwrap();
    let hook = format!("{}/services/T/B/SecretRedirect", redirecting.uri());
    v.put(&ann, "moved", ConnectorKind::Slack, &hook).await.unwrap();

    let down = v.test(&ann, "down").await.unwrap();
    assert!(!down.ok && down.provider_status == 0, "{down:?}");
    assert!(down.detail.starts_with("could not reach Anthropic"), "{}", down.detail);
    assert_detail_clean(&down.detail, &[&closed.to_string()]);

    let started = std::time::Instant::now();
    let timed_out = v.test(&ann, "slow").await.unwrap();
    assert!(!timed_out.ok && timed_out.provider_status == 0, "{timed_out:?}");
    assert!(timed_out.detail.contains("timed out"), "{}", timed_out.detail);
    assert!(started.elapsed() < Duration::from_secs(4), "the configured timeout applies");

    let moved = v.test(&ann, "moved").await.unwrap();
    assert!(!moved.ok && moved.provider_status == 307, "{moved:?}");
    redirecting.verify().await;
    v.logs.assert_absent(&[&hook, "SecretRedirect"]);
}

#[tokio::test]
async fn a_value_is_only_sent_where_the_current_configuration_allows() {
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_string("no_text"))
        .expect(0)
        .mount(&slack)
        .await;
    let v = Vault::start().await;
    let ann = v.new_user();
    let hook = format!("{}/services/T/B/SecretOldHost", slack.uri());
    v.put(&ann, "hook", ConnectorKind::Slack, &hook).await.unwrap();
    // The fake host leaves the allowed list.
    let v = v.restart(|c| c.connectors.slack_allowed_hosts = vec!["hooks.slack.com".into()]).await;
    let status = assert_status(v.test(&ann, "hook").await, Code::FailedPrecondition, "FAILED_PRECONDITION");
    assert!(status.message().contains("not valid any more"), "{}", status.message());
    assert_no_secret(&status);
    assert!(!status.message().contains("SecretOldHost"));
    slack.verify().await;
}
