//! Operations: health and reflection, metrics, graceful shutdown, production scrypt
//! parameters and hash upgrade on login.

use std::time::Duration;

use bizops_testkit::capture_logs;
use identity::config::ScryptConfig;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::harness::*;

#[tokio::test]
async fn health_and_reflection_list_the_services() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let id = Identity::start().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", id.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    for service in ["", "bizops.identity.v1.IdentityService"] {
        let status = HealthClient::new(channel.clone())
            .check(HealthCheckRequest { service: service.into() })
            .await
            .unwrap();
        assert_eq!(status.into_inner().status(), ServingStatus::Serving, "{service:?}");
    }

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("no list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in
        ["bizops.identity.v1.IdentityService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"]
    {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
    }
}

#[tokio::test]
async fn metrics_count_rpcs() {
    let id = Identity::start().await;
    let _ = id.login(&unique_email("metrics"), "whatever whatever").await;
    let mut conn = tokio::net::TcpStream::connect(id.metrics_addr).await.unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut body = String::new();
    conn.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("grpc_server_requests_total"), "{body}");
    assert!(body.contains("method=\"Login\""), "{body}");
    assert!(body.contains("identity_logins_total"), "{body}");
}

#[tokio::test]
async fn graceful_shutdown_finishes_and_frees_the_port() {
    let id = Identity::start().await;
    let addr = id.addr;
    id.stop().await;
    let refused =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await.unwrap();
    assert!(refused.is_err(), "no longer accepting connections");
}

#[tokio::test]
async fn production_scrypt_parameters_work_end_to_end() {
    let id = Identity::start_with(|c| c.scrypt = ScryptConfig::default()).await;
    let email = unique_email("prod");
    id.register(&email).await;
    let login = id.login(&email, PASSWORD).await.unwrap();
    assert!(login.session.is_some());
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM identity.accounts")
        .fetch_one(&id.superuser().await)
        .await
        .unwrap();
    assert!(hash.starts_with("$scrypt$ln=17,r=8,p=1$"), "{hash}");
}

#[tokio::test]
async fn hashes_are_upgraded_when_parameters_change() {
    let id = Identity::start().await;
    let email = unique_email("upgrade");
    id.register(&email).await;
    let (key, gateway, mut config) = (id.signing_key.clone(), id.gateway.clone(), id.config.clone());
    let db = id.stop().await;
    let pool = db.superuser_pool().await.unwrap();
    let before: String =
        sqlx::query_scalar("SELECT password_hash FROM identity.accounts").fetch_one(&pool).await.unwrap();
    assert!(before.starts_with("$scrypt$ln=4,"), "{before}");

    config.scrypt.log_n = 6;
    config.grpc_addr = bizops_testkit::any_port();
    config.metrics_addr = bizops_testkit::any_port();
    let id = Identity::launch(db, key, gateway, capture_logs(), config).await;
    id.login(&email, PASSWORD).await.unwrap();
    let after: String =
        sqlx::query_scalar("SELECT password_hash FROM identity.accounts").fetch_one(&pool).await.unwrap();
    assert!(after.starts_with("$scrypt$ln=6,r=8,p=1$"), "{after}");
    // And the upgraded hash keeps working.
    assert!(id.login(&email, PASSWORD).await.is_ok());
}

#[tokio::test]
async fn refuses_to_start_without_a_signing_key() {
    bizops_telemetry::install_crypto_provider();
    let db = bizops_testkit::TestDb::create(&identity::MIGRATOR).await.unwrap();
    let key = bizops_authn::SigningKey::generate("k").unwrap();
    let gateway =
        bizops_authn::ServiceSigner::new("gateway", bizops_authn::SigningKey::generate("gateway").unwrap());
    let mut config = base_config(&db, &key, &gateway);
    config.keys.signing_key = None;
    let err = identity::App::build(config).await.err().expect("must refuse");
    assert!(err.to_string().contains("no session signing key configured"), "{err}");
}
