//! Operations: health, metrics, configuration from the environment, graceful shutdown.

use std::time::Duration;

use bizops_proto::vault::v1::ConnectorKind;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::harness::*;

#[tokio::test]
async fn health_reports_the_vault_service() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let v = Vault::start().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", v.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    for service in ["", "bizops.vault.v1.VaultService"] {
        let status = HealthClient::new(channel.clone())
            .check(HealthCheckRequest { service: service.into() })
            .await
            .unwrap();
        assert_eq!(status.into_inner().status(), ServingStatus::Serving, "{service:?}");
    }
}

#[tokio::test]
async fn metrics_count_vault_operations() {
    let v = Vault::start().await;
    let ann = v.new_user();
    v.put(&ann, "k", ConnectorKind::HttpBearer, BEARER).await.unwrap();
    v.value_of(ann.owner, "k").await.unwrap();
    v.delete(&ann, "k").await.unwrap();
    let mut conn = tokio::net::TcpStream::connect(v.metrics_addr).await.unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut body = String::new();
    conn.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    for name in
        ["vault_credentials_put_total", "vault_credentials_resolved_total", "vault_credentials_deleted_total"]
    {
        assert!(body.contains(name), "{name} missing: {body}");
    }
    assert!(!body.contains(BEARER));
}

#[tokio::test]
async fn graceful_shutdown_frees_the_port() {
    let v = Vault::start().await;
    let addr = v.addr;
    v.stop().await;
    let refused =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await.unwrap();
    assert!(refused.is_err(), "no longer accepting connections");
}

#[test]
fn configuration_reads_the_keyring_and_connectors_from_the_environment() {
    // Run in a child process so the environment of other tests is untouched.
    if std::env::var_os("BIZOPS_TEST_VAULT_ENV_CHILD").is_none() {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "ops::configuration_reads_the_keyring_and_connectors_from_the_environment",
                "--nocapture",
            ])
            .env("BIZOPS_TEST_VAULT_ENV_CHILD", "1")
            .env("BIZOPS_KEYS__KEYRING", "1:AAAA, 2:BBBB")
            .env("BIZOPS_KEYS__ACTIVE", "2")
            .env("BIZOPS_CONNECTORS__SLACK_ALLOWED_HOSTS", "hooks.slack.com,127.0.0.1")
            .env("BIZOPS_CONNECTORS__SLACK_REQUIRE_HTTPS", "false")
            .env("BIZOPS_KEY_ADMINS", "ops,deployer")
            .env("BIZOPS_LIMITS__MAX_VALUE_BYTES", "4096")
            .env("BIZOPS_ROTATION__BATCH_PAUSE", "250ms")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("vault-env-child-checked"), "the child ran the checks: {stdout}");
        return;
    }
    use secrecy::ExposeSecret as _;
    let c: credential_vault::VaultConfig = bizops_config::load(None).unwrap();
    let keys: Vec<&str> = c.keys.keyring.iter().map(|k| k.expose_secret()).collect();
    assert_eq!(keys, ["1:AAAA", "2:BBBB"]);
    assert_eq!(c.keys.active, Some(2));
    assert_eq!(c.connectors.slack_allowed_hosts, ["hooks.slack.com", "127.0.0.1"]);
    assert!(!c.connectors.slack_require_https);
    assert_eq!(c.key_admins, ["ops", "deployer"]);
    assert_eq!(c.limits.max_value_bytes, 4096);
    assert_eq!(c.rotation.batch_pause, Duration::from_millis(250));
    assert!(!format!("{c:?}").contains("AAAA"));
    println!("vault-env-child-checked");
}
