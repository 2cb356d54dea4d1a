//! identity and pilot-catalog as real processes: the catalog verifies the access
//! tokens identity mints from a session (ExchangeToken) through identity's JWKS
//! (GetJwks), refuses the session token itself, and verifies the gateway's service
//! token through its public key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::{Engine as _, engine::general_purpose::STANDARD};
use bizops_authn::{ServiceSigner, SigningKey};
use bizops_e2e::{Service, migrate};
use bizops_proto::{
    catalog::v1::{self as cpb, catalog_service_client::CatalogServiceClient},
    identity::v1::{self as ipb, identity_service_client::IdentityServiceClient},
};
use bizops_testkit::{
    authed,
    steps::{step, transform},
};
use secrecy::ExposeSecret as _;

#[tokio::test]
async fn a_session_from_identity_works_at_the_catalog() {
    bizops_telemetry::install_crypto_provider();
    let db = bizops_testkit::TestDb::empty().await.unwrap();
    let gateway = ServiceSigner::new("gateway", SigningKey::generate("gateway").unwrap());

    let mut identity_env = db.env("identity");
    let signing = SigningKey::generate("e2e-k1").unwrap();
    identity_env
        .push(("BIZOPS_KEYS__SIGNING_KEY".into(), signing.to_secret_string().expose_secret().to_owned()));
    identity_env.push(("BIZOPS_SCRYPT__LOG_N".into(), "10".into()));
    migrate("identity", &identity_env).await;
    let identity = Service::start("identity", &identity_env).await;

    // identity's URL and the keyring under their deprecated names: they still work,
    // and the catalog's log says what to use instead.
    let mut catalog_env = db.env("catalog");
    catalog_env.extend([
        ("BIZOPS_AUTH__IDENTITY_URL".into(), identity.url()),
        ("BIZOPS_AUTH__TRUSTED_CALLERS".into(), gateway.public_key().to_config_string()),
        ("BIZOPS_NATS__URL".into(), bizops_testkit::nats_url()),
        ("BIZOPS_NATS__PREFIX".into(), bizops_testkit::nats_prefix()),
        ("BIZOPS_WEBHOOKS__ENCRYPTION_KEYS".into(), format!("e2e:{}", STANDARD.encode([5u8; 32]))),
    ]);
    migrate("pilot-catalog", &catalog_env).await;
    let catalog = Service::start("pilot-catalog", &catalog_env).await;

    let mut users = IdentityServiceClient::connect(identity.url()).await.unwrap();
    let password = "seven words make a decent passphrase";
    users
        .register(ipb::RegisterRequest {
            email: "e2e@example.com".into(),
            password: password.into(),
            display_name: String::new(),
        })
        .await
        .unwrap();
    let token = users
        .login(ipb::LoginRequest { email: "e2e@example.com".into(), password: password.into() })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap()
        .token;

    let access = users
        .exchange_token(ipb::ExchangeTokenRequest { subject_token: token.clone() })
        .await
        .unwrap()
        .into_inner()
        .access_token;

    let mut pilots = CatalogServiceClient::connect(catalog.url()).await.unwrap();
    let s = pilots.list_pilots(authed(&token, cpb::ListPilotsRequest::default())).await.unwrap_err();
    assert_eq!(s.code(), tonic::Code::Unauthenticated);
    assert!(s.message().contains("ExchangeToken"), "{}", s.message());
    let spec = cpb::PilotSpec {
        title: "Hello".into(),
        steps: vec![step("echo", transform("{{ trigger | tojson }}"))],
        ..Default::default()
    };
    let created = pilots
        .create_pilot(authed(&access, cpb::CreatePilotRequest { spec: Some(spec), enabled: true }))
        .await
        .expect("the catalog accepts identity's access token via JWKS")
        .into_inner();
    let pilot = created.pilot.unwrap();

    // The gateway verifies a webhook for it with its service token.
    let verified = pilots
        .verify_webhook(authed(
            &gateway.token_for("catalog").unwrap(),
            cpb::VerifyWebhookRequest {
                pilot_id: pilot.id.clone(),
                headers: vec![cpb::HttpHeader {
                    name: "x-pilot-secret".into(),
                    value: created.webhook_secret.clone(),
                }],
                body: b"{}".to_vec().into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verified.pilot_id, pilot.id);
    assert_eq!(verified.owner_id, pilot.owner_id);

    // A token from another key is refused.
    let foreign =
        bizops_authn::SessionSigner::new(SigningKey::generate("x").unwrap(), "bizops-identity", "bizops");
    let now = time_now();
    let forged = foreign
        .sign_access(bizops_authn::OwnerId(uuid::Uuid::now_v7()), uuid::Uuid::now_v7(), now.0, now.1)
        .unwrap();
    let s = pilots.list_pilots(authed(&forged, cpb::ListPilotsRequest::default())).await.unwrap_err();
    assert_eq!(s.code(), tonic::Code::Unauthenticated);

    let (status, logs) = catalog.stop().await;
    assert!(status.success());
    assert!(
        !logs.contains(&created.webhook_secret) && !logs.contains(&token) && !logs.contains(&access),
        "no secrets in the catalog's logs"
    );
    for (old, new) in [
        ("BIZOPS_AUTH__IDENTITY_URL", "BIZOPS_IDENTITY_URL"),
        ("BIZOPS_WEBHOOKS__ENCRYPTION_KEYS", "BIZOPS_KEYS__KEYRING"),
    ] {
        let warning = logs
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["fields"]["deprecated"] == old || v["deprecated"] == old)
            .unwrap_or_else(|| panic!("no warning about {old} in the catalog's log:\n{logs}"));
        assert_eq!(warning["level"], "WARN", "{warning}");
        assert!(warning.to_string().contains(&format!("use {new}")), "{warning}");
    }
    let (status, _) = identity.stop().await;
    assert!(status.success());
}

fn time_now() -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = time::OffsetDateTime::now_utc();
    (now, now + time::Duration::seconds(55))
}
