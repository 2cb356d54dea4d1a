//! The real `identity` binary as a process: `migrate`, `serve`, `healthcheck`, server
//! reflection (what `grpcurl -plaintext 127.0.0.1:50051 list` shows), a login, JSON
//! logs without secrets, and a graceful exit on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::PathBuf, process::Stdio, time::Duration};

use bizops_proto::identity::v1::{self as pb, identity_service_client::IdentityServiceClient};
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::{Child, Command},
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

/// `target/<profile>/<name>`, next to this test's own executable in `deps/`.
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (make test does)",
        path.display()
    );
    path
}

fn command(db: &bizops_testkit::TestDb, signing_key: &str) -> Command {
    let mut cmd = Command::new(binary("identity"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("BIZOPS_DATABASE__URL", db.url("bizops_identity"))
        .env("BIZOPS_DATABASE__SYSTEM_URL", db.url("bizops_identity_system"))
        .env("BIZOPS_DATABASE__MIGRATE_URL", db.url("bizops_migrator"))
        .env("BIZOPS_KEYS__SIGNING_KEY", signing_key)
        .env("BIZOPS_SCRYPT__LOG_N", "10")
        .env("BIZOPS_GRPC_ADDR", "127.0.0.1:0")
        .env("BIZOPS_METRICS_ADDR", "127.0.0.1:0")
        .env("BIZOPS_LOG__FORMAT", "json")
        .env("BIZOPS_LOG__FILTER", "debug,h2=info,hyper=info,tower=info");
    cmd.kill_on_drop(true);
    cmd
}

type Lines = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// Collects stdout lines (JSON logs) in the background and waits for the one with
/// `message == "identity serving"`; returns its `grpc_addr` and the collected lines.
async fn wait_serving(child: &mut Child) -> (String, Lines) {
    let mut reader = BufReader::new(child.stdout.take().unwrap()).lines();
    let lines: Lines = Default::default();
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let sink = lines.clone();
    tokio::spawn(async move {
        let mut addr_tx = Some(addr_tx);
        while let Ok(Some(line)) = reader.next_line().await {
            let v: serde_json::Value = serde_json::from_str(&line).expect("every log line is JSON");
            if v["message"] == "identity serving"
                && let Some(tx) = addr_tx.take()
            {
                let _ = tx.send(v["grpc_addr"].as_str().unwrap_or_default().to_owned());
            }
            sink.lock().unwrap().push(line);
        }
    });
    let addr = tokio::time::timeout(Duration::from_secs(30), addr_rx)
        .await
        .expect("identity starts within 30 s")
        .expect("identity exited before serving");
    (addr, lines)
}

#[tokio::test(flavor = "current_thread")]
async fn identity_binary_migrates_serves_reflects_and_stops_on_sigterm() {
    bizops_telemetry::install_crypto_provider();
    let db = bizops_testkit::TestDb::empty().await.unwrap();
    let key = bizops_authn::SigningKey::generate("e2e").unwrap();
    let key_text = secrecy::ExposeSecret::expose_secret(&key.to_secret_string()).to_owned();

    let migrate = command(&db, &key_text).arg("migrate").output().await.unwrap();
    assert!(migrate.status.success(), "migrate: {}", String::from_utf8_lossy(&migrate.stderr));
    let again = command(&db, &key_text).arg("migrate").output().await.unwrap();
    assert!(again.status.success(), "migrate is idempotent");

    let mut child =
        command(&db, &key_text).arg("serve").stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
    let (addr, lines) = wait_serving(&mut child).await;

    // healthcheck subcommand against the running server.
    let health =
        command(&db, &key_text).env("BIZOPS_GRPC_ADDR", &addr).arg("healthcheck").output().await.unwrap();
    assert!(health.status.success(), "healthcheck: {}", String::from_utf8_lossy(&health.stderr));

    // What `grpcurl -plaintext <addr> list` prints, through reflection v1.
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
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

    // SIGTERM: graceful exit with status 0.
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status =
        tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("exits in time").unwrap();
    assert!(status.success(), "exit status {status:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;

    let text = lines.lock().unwrap().join("\n");
    assert!(text.contains("shutting down"), "graceful shutdown is logged: {text}");
    assert!(text.contains("identity stopped"), "{text}");
    for secret in [password, session.token.as_str(), key_text.as_str()] {
        assert!(!text.contains(secret), "a secret appeared in the logs");
    }
}
