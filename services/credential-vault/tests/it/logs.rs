//! Every log line of the vault's operations (captured at TRACE level, including
//! span fields and sqlx statements) is free of secret values.

use bizops_proto::vault::v1::{ConnectorKind, RotationState};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::method};

use crate::harness::*;

#[tokio::test]
async fn no_secret_value_is_ever_logged() {
    let provider = MockServer::start().await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(401)).mount(&provider).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_string("no_text"))
        .mount(&provider)
        .await;
    let uri = provider.uri();
    let v = Vault::start_with(|c| {
        c.keys.keyring = vec![kek(1, 0x11), kek(2, 0x22)];
        c.keys.active = Some(1);
        c.connectors.resend_base_url = uri.clone();
        c.connectors.anthropic_base_url = uri.clone();
    })
    .await;
    let ann = v.new_user();
    let fake_slack = format!("{}/services/T0001/B0001/s3cr3tSlackPathXyZ123", provider.uri());
    let values: [(&str, ConnectorKind, &str); 5] = [
        ("hook", ConnectorKind::Slack, SLACK_URL),
        ("fake-hook", ConnectorKind::Slack, &fake_slack),
        ("mail", ConnectorKind::Resend, RESEND_KEY),
        ("ai", ConnectorKind::Anthropic, ANTHROPIC_KEY),
        ("api", ConnectorKind::HttpBearer, BEARER),
    ];
    for (name, kind, value) in values {
        v.put(&ann, name, kind, value).await.unwrap();
        v.put(&ann, name, kind, value).await.unwrap();
    }
    // Invalid puts whose messages could have echoed a value.
    let _ = v.put(&ann, "bad", ConnectorKind::Resend, ANTHROPIC_KEY).await;
    let _ = v.put(&ann, "bad", ConnectorKind::Slack, &format!("ftp://x/{BEARER}")).await;
    v.list(&ann).await;
    let names: Vec<&str> = values.iter().map(|(n, _, _)| *n).collect();
    let resolved = v.resolve(ann.owner, &names).await.unwrap();
    assert_eq!(resolved.credentials.len(), 5);
    for name in ["fake-hook", "mail", "ai", "api"] {
        let _ = v.test(&ann, name).await;
    }

    // A decryption failure, a rotation, a retirement and a deletion.
    let pool = v.superuser().await;
    sqlx::query("UPDATE vault.credentials SET ciphertext = set_byte(ciphertext, 20, get_byte(ciphertext, 20) # 1) WHERE name = 'mail'")
        .execute(&pool)
        .await
        .unwrap();
    assert!(v.resolve(ann.owner, &["mail"]).await.is_err());
    let v = v.restart(|c| c.keys.active = Some(2)).await;
    let job = v.start_rotation(2).await;
    let done = v.wait_rotation(&job, |j| j.state != RotationState::Running as i32).await;
    assert_eq!(done.done, 5);
    v.set_min_version(2).await.unwrap();
    v.value_of(ann.owner, "ai").await.unwrap();
    v.delete(&ann, "api").await.unwrap();

    let logs = v.logs.contents();
    assert!(logs.contains("credential stored") && logs.contains("key rotation completed"), "capture works");
    assert!(logs.contains("credential could not be decrypted"));
    v.logs.assert_absent(SECRETS);
    v.logs.assert_absent(&[&fake_slack, &ann.token]);
    // Neither do KEKs or their base64.
    v.logs.assert_absent(&[
        "ERERERERERERERERERERERERERERERERERERERERERE",
        "IiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiI",
    ]);
}
