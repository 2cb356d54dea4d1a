//! VerifyWebhook: Standard Webhooks signatures (ours, the reference Rust crate and
//! the Python `standardwebhooks` package), the simple form, rotation with a grace
//! period, and the answers for everything that must not pass.

use std::sync::Arc;

use bizops_proto::catalog::v1 as pb;
use bizops_runtime::clock::{Clock as _, ShiftedClock};
use secrecy::ExposeSecret as _;
use tonic::Code;

use crate::harness::*;

fn headers(pairs: &[(&str, String)]) -> Vec<pb::HttpHeader> {
    pairs.iter().map(|(n, v)| pb::HttpHeader { name: (*n).into(), value: v.clone() }).collect()
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Standard Webhooks headers signed by the reference crate (`standardwebhooks`).
fn reference_signed(secret: &str, id: &str, ts: i64, body: &[u8]) -> Vec<pb::HttpHeader> {
    let sig = standardwebhooks::Webhook::new(secret).unwrap().sign(id, ts, body).unwrap();
    headers(&[("webhook-id", id.into()), ("webhook-timestamp", ts.to_string()), ("webhook-signature", sig)])
}

impl Catalog {
    async fn verify(
        &self,
        pilot: &str,
        headers: Vec<pb::HttpHeader>,
        body: &[u8],
    ) -> Result<pb::VerifyWebhookResponse, tonic::Status> {
        self.client()
            .verify_webhook(as_service(
                &self.gateway,
                pb::VerifyWebhookRequest { pilot_id: pilot.into(), headers, body: body.to_vec().into() },
            ))
            .await
            .map(|r| r.into_inner())
    }
}

#[track_caller]
fn rejected(r: Result<pb::VerifyWebhookResponse, tonic::Status>) {
    let s = assert_status(r, Code::Unauthenticated, "WEBHOOK_REJECTED");
    assert_eq!(s.message(), "webhook not accepted", "one answer for every failure");
}

#[tokio::test]
async fn signed_webhooks_are_accepted_and_everything_else_is_not() {
    let cat = Catalog::start().await;
    let owner = owner();
    let created = cat.create(&cat.user(owner), sample_spec()).await;
    let secret = created.webhook_secret.clone();
    let id = created.pilot.unwrap().id;
    let body = br#"{"subject":"Printer on fire","reply_to":"ann@example.com"}"#;

    let ok = cat.verify(&id, reference_signed(&secret, "msg_1", now(), body), body).await.unwrap();
    assert_eq!((ok.owner_id, ok.pilot_id.as_str(), ok.pilot_version), (owner.to_string(), id.as_str(), 1));

    // Tampered body, wrong secret, stale or future timestamp, missing headers, unknown Pilot.
    rejected(
        cat.verify(&id, reference_signed(&secret, "msg_1", now(), body), br#"{"subject":"Printer fine"}"#)
            .await,
    );
    let stranger = pilot_catalog::webhook::SecretKey::generate().unwrap().to_secret_string();
    rejected(cat.verify(&id, reference_signed(stranger.expose_secret(), "msg_1", now(), body), body).await);
    rejected(cat.verify(&id, reference_signed(&secret, "msg_1", now() - 301, body), body).await);
    rejected(cat.verify(&id, reference_signed(&secret, "msg_1", now() + 301, body), body).await);
    rejected(cat.verify(&id, vec![], body).await);
    let mut partial = reference_signed(&secret, "msg_1", now(), body);
    partial.retain(|h| h.name != "webhook-signature");
    rejected(cat.verify(&id, partial, body).await);
    rejected(
        cat.verify(&uuid::Uuid::now_v7().to_string(), reference_signed(&secret, "msg_1", now(), body), body)
            .await,
    );
    rejected(cat.verify("not-a-uuid", reference_signed(&secret, "msg_1", now(), body), body).await);

    // Several signatures, one of them valid (e.g. during the sender's own rotation).
    let ts = now();
    let good = standardwebhooks::Webhook::new(&secret).unwrap().sign("msg_2", ts, body).unwrap();
    let bad =
        standardwebhooks::Webhook::new(stranger.expose_secret()).unwrap().sign("msg_2", ts, body).unwrap();
    let many = headers(&[
        ("webhook-id", "msg_2".into()),
        ("webhook-timestamp", ts.to_string()),
        ("webhook-signature", format!("{bad} {good}")),
    ]);
    assert!(cat.verify(&id, many, body).await.is_ok());

    // The simple form.
    assert!(cat.verify(&id, headers(&[("X-Pilot-Secret", secret.clone())]), b"plain text").await.is_ok());
    rejected(
        cat.verify(&id, headers(&[("X-Pilot-Secret", stranger.expose_secret().to_owned())]), b"plain text")
            .await,
    );

    // Disabled: a valid signature gets FAILED_PRECONDITION; an invalid one learns nothing.
    cat.client()
        .set_enabled(authed(&cat.user(owner), pb::SetEnabledRequest { pilot_id: id.clone(), enabled: false }))
        .await
        .unwrap();
    assert_status(
        cat.verify(&id, reference_signed(&secret, "msg_3", now(), body), body).await,
        Code::FailedPrecondition,
        "PILOT_DISABLED",
    );
    rejected(cat.verify(&id, vec![], body).await);
}

#[tokio::test]
async fn a_sender_using_the_python_standardwebhooks_package_is_accepted() {
    let cat = Catalog::start().await;
    let created = cat.create(&cat.user(owner()), sample_spec()).await;
    let id = created.pilot.unwrap().id;
    let body = r#"{"event":"invoice.paid","amount":4200}"#;
    let script = r#"
import sys, json, datetime
from standardwebhooks import Webhook
secret, msg_id, body = sys.argv[1], sys.argv[2], sys.stdin.read()
ts = datetime.datetime.now(tz=datetime.timezone.utc)
print(json.dumps({"webhook-id": msg_id, "webhook-timestamp": str(int(ts.timestamp())), "webhook-signature": Webhook(secret).sign(msg_id, ts, body)}))
"#;
    let out = std::process::Command::new(python())
        .args(["-c", script, &created.webhook_secret, "msg_py_1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(body.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "python signer: {}", String::from_utf8_lossy(&out.stderr));
    let signed: std::collections::BTreeMap<String, String> = serde_json::from_slice(&out.stdout).unwrap();
    let hs: Vec<pb::HttpHeader> =
        signed.into_iter().map(|(name, value)| pb::HttpHeader { name, value }).collect();
    assert!(cat.verify(&id, hs.clone(), body.as_bytes()).await.is_ok());
    rejected(cat.verify(&id, hs, b"{\"event\":\"invoice.paid\",\"amount\":1}").await);
}

#[tokio::test]
async fn the_previous_secret_works_during_the_grace_period_only() {
    // The catalog's clock is moved (real time only adds the milliseconds of the
    // calls); requests are signed at the catalog's time.
    let grace = time::Duration::hours(24);
    let clock = ShiftedClock::default();
    let cat = Catalog::start_with_clock(Arc::new(clock.clone()), |c| {
        c.webhooks.rotation_grace = grace.try_into().unwrap();
    })
    .await;
    let now = || clock.now().unix_timestamp();
    let owner = owner();
    let token = cat.user(owner);
    let created = cat.create(&token, sample_spec()).await;
    let id = created.pilot.unwrap().id;
    let old = created.webhook_secret;
    let body = b"{}";
    assert!(cat.verify(&id, reference_signed(&old, "a", now(), body), body).await.is_ok());

    let rotated = cat
        .client()
        .rotate_webhook_secret(authed(&token, pb::RotateWebhookSecretRequest { pilot_id: id.clone() }))
        .await
        .unwrap()
        .into_inner();
    let new = rotated.webhook_secret;
    assert!(new.starts_with("whsec_") && new != old);
    assert!(cat.verify(&id, reference_signed(&new, "b", now(), body), body).await.is_ok());
    assert!(cat.verify(&id, reference_signed(&old, "c", now(), body), body).await.is_ok(), "grace period");
    clock.set_offset(grace - time::Duration::minutes(1));
    assert!(
        cat.verify(&id, reference_signed(&old, "d", now(), body), body).await.is_ok(),
        "grace period end"
    );
    clock.set_offset(grace + time::Duration::minutes(1));
    rejected(cat.verify(&id, reference_signed(&old, "e", now(), body), body).await);
    assert!(cat.verify(&id, reference_signed(&new, "f", now(), body), body).await.is_ok());
}

#[tokio::test]
async fn the_secret_is_shown_once_stored_encrypted_and_never_logged() {
    let cat = Catalog::start().await;
    let token = cat.user(owner());
    let created = cat.create(&token, sample_spec()).await;
    let secret = created.webhook_secret.clone();
    let id = created.pilot.unwrap().id;
    let key_b64 = secret.trim_start_matches("whsec_").to_owned();

    // Not in any later answer.
    let mut c = cat.client();
    let got = format!(
        "{:?}",
        c.get_pilot(authed(&token, pb::GetPilotRequest { pilot_id: id.clone() })).await.unwrap().into_inner()
    );
    let listed = format!(
        "{:?}",
        c.list_pilots(authed(&token, pb::ListPilotsRequest::default())).await.unwrap().into_inner()
    );
    let exported = c
        .export_pilot(authed(&token, pb::ExportPilotRequest { pilot_id: id.clone() }))
        .await
        .unwrap()
        .into_inner()
        .json;
    for text in [&got, &listed, &exported] {
        assert!(!text.contains(&key_b64), "the secret appeared again");
    }
    // Not in the database in clear.
    let stored: Vec<u8> = sqlx::query_scalar("SELECT ciphertext FROM catalog.webhook_secrets")
        .fetch_one(&cat.superuser().await)
        .await
        .unwrap();
    let raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &key_b64).unwrap();
    assert!(!stored.windows(raw.len()).any(|w| w == raw.as_slice()));
    // Not in the logs, even after verifications and a rotation.
    let _ = cat.verify(&id, headers(&[("x-pilot-secret", secret.clone())]), b"{}").await;
    let rotated = c
        .rotate_webhook_secret(authed(&token, pb::RotateWebhookSecretRequest { pilot_id: id }))
        .await
        .unwrap()
        .into_inner();
    assert!(cat.logs.contents().contains("webhook secret rotated"));
    cat.logs.assert_absent(&[
        &secret,
        &key_b64,
        &rotated.webhook_secret,
        rotated.webhook_secret.trim_start_matches("whsec_"),
    ]);
}

#[tokio::test]
async fn a_different_key_under_a_known_id_refuses_to_start() {
    use base64::{Engine as _, engine::general_purpose::STANDARD};
    let cat = Catalog::start().await;
    let mut config = pilot_catalog::CatalogConfig {
        grpc_addr: bizops_testkit::any_port(),
        metrics_addr: bizops_testkit::any_port(),
        ..Default::default()
    };
    config.database.url = Some(cat.db.url("bizops_catalog").into());
    config.database.system_url = Some(cat.db.url("bizops_catalog_system").into());
    config.nats.url = bizops_testkit::nats_url().into();
    config.nats.prefix = cat.prefix.clone();
    // The harness started with `test1` = [42; 32]; same id, other bytes:
    config.keys.keyring = vec![format!("test1:{}", STANDARD.encode([7u8; 32])).into()];
    let err = pilot_catalog::App::build(config.clone()).await.err().expect("must refuse");
    assert!(err.to_string().contains("key test1 does not match"), "{err}");
    // A new id next to the right one is fine.
    config.keys.keyring = vec![
        format!("test2:{}", STANDARD.encode([9u8; 32])).into(),
        format!("test1:{}", STANDARD.encode([42u8; 32])).into(),
    ];
    assert!(pilot_catalog::App::build(config).await.is_ok());
}
