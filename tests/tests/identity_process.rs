//! The real `identity` binary as a process: `migrate`, `serve`, `healthcheck`, server
//! reflection (what `grpcurl -plaintext 127.0.0.1:50051 list` shows), a login, JSON
//! logs without secrets, and a graceful exit on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bizops_e2e::{Service, command, migrate};
use bizops_proto::identity::v1::{self as pb, identity_service_client::IdentityServiceClient};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

#[tokio::test]
async fn identity_binary_migrates_serves_reflects_and_stops_on_sigterm() {
    bizops_telemetry::install_crypto_provider();
    let db = bizops_testkit::TestDb::empty().await.unwrap();
    let key = bizops_authn::SigningKey::generate("e2e").unwrap();
    let key_text = secrecy::ExposeSecret::expose_secret(&key.to_secret_string()).to_owned();
    let mut env = db.env("identity");
    env.push(("BIZOPS_KEYS__SIGNING_KEY".into(), key_text.clone()));
    env.push(("BIZOPS_SCRYPT__LOG_N".into(), "10".into()));

    migrate("identity", &env).await;
    migrate("identity", &env).await; // idempotent
    let identity = Service::start("identity", &env).await;

    // healthcheck subcommand against the running server.
    let mut probe = env.clone();
    probe.push(("BIZOPS_GRPC_ADDR".into(), identity.addr.clone()));
    let health = command("identity", &probe).arg("healthcheck").output().await.unwrap();
    assert!(health.status.success(), "healthcheck: {}", String::from_utf8_lossy(&health.stderr));

    // What `grpcurl -plaintext <addr> list` prints, through reflection v1.
    let channel = tonic::transport::Endpoint::from_shared(identity.url()).unwrap().connect().await.unwrap();
    let mut stream = ServerReflectionClient::new(channel.clone())
        .server_reflection_info(tokio_stream::iter(vec![ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        stream.message().await.unwrap().unwrap().message_response
    else {
        panic!("no service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"bizops.identity.v1.IdentityService".to_owned()), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health".to_owned()), "{names:?}");

    // A real sign-up and sign-in through the binary.
    let password = "e2e passphrase with seven good words";
    let mut client = IdentityServiceClient::new(channel);
    client
        .register(pb::RegisterRequest {
            email: "process@example.com".into(),
            password: password.into(),
            display_name: "Proc".into(),
        })
        .await
        .unwrap();
    let session = client
        .login(pb::LoginRequest { email: "process@example.com".into(), password: password.into() })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();

    // SIGTERM: graceful exit with status 0, logged, and no secret in any line.
    let (status, logs) = identity.stop().await;
    assert!(status.success(), "exit status {status:?}");
    assert!(logs.contains("reporting NOT_SERVING") && logs.contains("identity stopped"), "{logs}");
    for secret in [password, session.token.as_str(), key_text.as_str()] {
        assert!(!logs.contains(secret), "a secret appeared in the logs");
    }
}
