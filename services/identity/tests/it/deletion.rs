//! identity's side of account deletion: the order of the calls, the service token
//! they carry, the NATS purge, resuming after a failed step (by a retry and by
//! the background loop), sign-in refused meanwhile, and the notices.

use std::time::Duration;

use bizops_bus::Subjects;
use bizops_proto::identity::v1 as pb;
use bizops_testkit::{PATIENCE, until};
use secrecy::ExposeSecret as _;
use tonic::Code;
use uuid::Uuid;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{header, header_exists, method, path},
};

use crate::{fakes::Call, harness::*};

fn calls(owner: &str, services: &[&'static str]) -> Vec<Call> {
    services.iter().map(|s| Call { service: s, owner_id: owner.to_owned() }).collect()
}

async fn deletion_step(id: &Identity, owner: &str) -> Option<i16> {
    sqlx::query_scalar("SELECT step FROM identity.account_deletions WHERE owner_id = $1")
        .bind(owner.parse::<Uuid>().unwrap())
        .fetch_optional(&id.superuser().await)
        .await
        .unwrap()
}

async fn rows_of(id: &Identity, owner: &str) -> i64 {
    let owner = owner.parse::<Uuid>().unwrap();
    let pool = id.superuser().await;
    let mut total = 0;
    for sql in [
        "SELECT count(*) FROM identity.accounts WHERE id = $1",
        "SELECT count(*) FROM identity.sessions WHERE owner_id = $1",
        "SELECT count(*) FROM identity.known_sources WHERE owner_id = $1",
        "SELECT count(*) FROM identity.account_deletions WHERE owner_id = $1",
    ] {
        total += sqlx::query_scalar::<_, i64>(sql).bind(owner).fetch_one(&pool).await.unwrap();
    }
    total
}

async fn jetstream(id: &Identity) -> (async_nats::jetstream::Context, Subjects) {
    let (_, js) = id.config.nats.connect("identity-test").await.unwrap();
    (js, id.config.nats.subjects().unwrap())
}

async fn stream_count(js: &async_nats::jetstream::Context, stream: &str, filter: &str) -> u64 {
    use futures_util::StreamExt as _;
    let stream = js.get_stream(stream).await.unwrap();
    let mut info = stream.info_with_subjects(filter).await.unwrap();
    let mut total = 0;
    while let Some(Ok((_, n))) = info.next().await {
        total += n as u64;
    }
    total
}

#[tokio::test]
async fn deletion_calls_every_service_in_order_and_purges_the_owner_from_nats() {
    let id = Identity::start().await;
    let (email, other_email) = (unique_email("deleted"), unique_email("kept"));
    let account = id.register(&email).await;
    let other = id.register(&other_email).await;
    let token = id.token(&email).await;
    let second_device = id.token(&email).await;
    let other_token = id.token(&other_email).await;

    // Messages for both owners in every stream.
    let (js, subjects) = jetstream(&id).await;
    let owner: Uuid = account.id.parse().unwrap();
    let kept: Uuid = other.id.parse().unwrap();
    for who in [owner, kept] {
        for subject in [
            subjects.trigger(who, Uuid::now_v7()),
            subjects.event(who, bizops_bus::EventKind::PilotDeleted),
            subjects.dlq(who, Uuid::now_v7()),
        ] {
            bizops_bus::publish(&js, subject, None, "{}".into()).await.unwrap();
        }
    }

    id.client()
        .delete_account(authed(&token, pb::DeleteAccountRequest { password: PASSWORD.into() }))
        .await
        .unwrap();

    assert_eq!(id.fakes().calls(), calls(&account.id, &["catalog", "executor", "vault"]));
    assert_eq!(rows_of(&id, &account.id).await, 0, "nothing of the account is left in identity");
    for (stream, filter) in subjects.owner_filters(owner) {
        assert_eq!(stream_count(&js, &stream, &filter).await, 0, "{filter} purged");
    }
    for (stream, filter) in subjects.owner_filters(kept) {
        assert_eq!(stream_count(&js, &stream, &filter).await, 1, "{filter} untouched");
    }
    assert_status(id.login(&email, PASSWORD).await, Code::Unauthenticated, "INVALID_CREDENTIALS");
    assert_status(id.verify(&second_device).await, Code::Unauthenticated, "UNAUTHENTICATED");
    assert!(id.verify(&other_token).await.is_ok(), "the other account is untouched");
    assert!(id.login(&other_email, PASSWORD).await.is_ok());

    // A repeat with the old token: the session is gone and so is the deletion.
    assert_status(
        id.client()
            .delete_account(authed(&token, pb::DeleteAccountRequest { password: PASSWORD.into() }))
            .await,
        Code::Unauthenticated,
        "UNAUTHENTICATED",
    );
    // The address can be registered afresh.
    id.register(&email).await;
}

#[tokio::test]
async fn a_failed_step_pauses_the_deletion_and_a_retry_finishes_it() {
    let id = Identity::start().await;
    let email = unique_email("paused");
    let account = id.register(&email).await;
    let token = id.token(&email).await;
    id.fakes().fail("executor", true);

    let status = id
        .client()
        .delete_account(authed(&token, pb::DeleteAccountRequest { password: PASSWORD.into() }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(code_of(&status), "UNAVAILABLE");
    assert!(status.message().contains("finishes by itself"), "{}", status.message());
    assert!(status.metadata().get("retry-after").is_some());
    // Sessions revoked, catalog done, NATS purged; stopped before the executor.
    assert_eq!(deletion_step(&id, &account.id).await, Some(3));
    assert_eq!(id.fakes().calls(), calls(&account.id, &["catalog"]));
    assert_status(id.verify(&token).await, Code::Unauthenticated, "UNAUTHENTICATED");

    // Sign-in is closed: the right password says so, a wrong one learns nothing.
    let refused =
        assert_status(id.login(&email, PASSWORD).await, Code::PermissionDenied, "PERMISSION_DENIED");
    assert!(refused.message().contains("being deleted"), "{}", refused.message());
    assert_status(
        id.login(&email, "not the password at all").await,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );

    // Still failing: the same answer, nothing repeated.
    assert_status(
        id.client()
            .delete_account(authed(&token, pb::DeleteAccountRequest { password: String::new() }))
            .await,
        Code::Unavailable,
        "UNAVAILABLE",
    );
    assert_eq!(id.fakes().calls(), calls(&account.id, &["catalog"]), "a finished step is not repeated");

    // The executor is back: a repeat with the same token finishes it.
    id.fakes().fail("executor", false);
    id.client()
        .delete_account(authed(&token, pb::DeleteAccountRequest { password: String::new() }))
        .await
        .unwrap();
    assert_eq!(id.fakes().calls(), calls(&account.id, &["catalog", "executor", "vault"]));
    assert_eq!(rows_of(&id, &account.id).await, 0);
    assert_status(id.login(&email, PASSWORD).await, Code::Unauthenticated, "INVALID_CREDENTIALS");
}

#[tokio::test]
async fn the_background_loop_finishes_a_paused_deletion() {
    let id = Identity::start_with(|c| c.deletion.retry_interval = Duration::from_millis(200)).await;
    let email = unique_email("background");
    let account = id.register(&email).await;
    let token = id.token(&email).await;
    id.fakes().fail("vault", true);
    assert_status(
        id.client()
            .delete_account(authed(&token, pb::DeleteAccountRequest { password: PASSWORD.into() }))
            .await,
        Code::Unavailable,
        "UNAVAILABLE",
    );
    assert_eq!(deletion_step(&id, &account.id).await, Some(4));
    let attempts: i32 = sqlx::query_scalar("SELECT attempts FROM identity.account_deletions")
        .fetch_one(&id.superuser().await)
        .await
        .unwrap();
    assert!(attempts >= 1);

    id.fakes().fail("vault", false);
    let (id, owner) = (&id, account.id.as_str());
    until(
        "the background loop to finish the deletion",
        PATIENCE,
        || async move { rows_of(id, owner).await == 0 },
    )
    .await;
    assert_eq!(id.fakes().calls(), calls(&account.id, &["catalog", "executor", "vault"]));
}

#[tokio::test]
async fn a_deletion_survives_a_restart_of_identity() {
    let id = Identity::start_with(|c| c.deletion.retry_interval = Duration::from_millis(200)).await;
    let email = unique_email("restart");
    let account = id.register(&email).await;
    let token = id.token(&email).await;
    let fakes = id.fakes().clone();
    fakes.fail("catalog", true);
    assert_status(
        id.client()
            .delete_account(authed(&token, pb::DeleteAccountRequest { password: PASSWORD.into() }))
            .await,
        Code::Unavailable,
        "UNAVAILABLE",
    );
    assert_eq!(deletion_step(&id, &account.id).await, Some(1));
    let (key, gateway, mut config) = (id.signing_key.clone(), id.gateway.clone(), id.config.clone());
    let db = id.stop().await;

    fakes.fail("catalog", false);
    config.grpc_addr = bizops_testkit::any_port();
    config.metrics_addr = bizops_testkit::any_port();
    let id = Identity::launch(db, key, gateway, bizops_testkit::capture_logs(), config).await;
    let (id, owner) = (&id, account.id.as_str());
    until("the restarted identity to finish the deletion", PATIENCE, || async move {
        rows_of(id, owner).await == 0
    })
    .await;
    assert_eq!(fakes.calls(), calls(&account.id, &["catalog", "executor", "vault"]));
}

#[tokio::test]
async fn without_a_service_key_a_deletion_stops_and_says_why() {
    let id = Identity::start_with(|c| c.auth.service_key = None).await;
    let email = unique_email("nokey");
    let account = id.register(&email).await;
    let token = id.token(&email).await;
    assert_status(
        id.client()
            .delete_account(authed(&token, pb::DeleteAccountRequest { password: PASSWORD.into() }))
            .await,
        Code::Unavailable,
        "UNAVAILABLE",
    );
    assert_eq!(deletion_step(&id, &account.id).await, Some(1));
    assert!(id.fakes().calls().is_empty());
    let error: String = sqlx::query_scalar("SELECT last_error FROM identity.account_deletions")
        .fetch_one(&id.superuser().await)
        .await
        .unwrap();
    assert!(error.contains("BIZOPS_AUTH__SERVICE_KEY"), "{error}");
}

#[tokio::test]
async fn notices_go_through_the_server_resend_key_and_are_skipped_without_one() {
    let resend = MockServer::start().await;
    let key = "re_test_server_key_1234567890";
    Mock::given(method("POST"))
        .and(path("/emails"))
        .and(header("authorization", format!("Bearer {key}").as_str()))
        .and(header_exists("idempotency-key"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({ "id": "email_1" })))
        .expect(2)
        .mount(&resend)
        .await;
    let id = Identity::start_with(|c| {
        c.notifications.resend_api_key = Some(key.to_owned().into());
        c.notifications.resend_base_url = resend.uri();
    })
    .await;
    let email = unique_email("notices");
    id.register(&email).await;
    let token = id.token(&email).await;
    let fresh = id
        .client()
        .change_password(authed(
            &token,
            pb::ChangePasswordRequest {
                current_password: PASSWORD.into(),
                new_password: NEW_PASSWORD.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap()
        .token;
    id.client()
        .delete_account(authed(&fresh, pb::DeleteAccountRequest { password: NEW_PASSWORD.into() }))
        .await
        .unwrap();

    let resend = &resend;
    until("both notices to be sent", Duration::from_secs(10), || async move {
        resend.received_requests().await.unwrap_or_default().len() >= 2
    })
    .await;
    let sent: Vec<serde_json::Value> = resend
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let subjects: Vec<&str> = sent.iter().map(|m| m["subject"].as_str().unwrap()).collect();
    assert!(subjects.iter().any(|s| s.contains("password was changed")), "{subjects:?}");
    assert!(subjects.iter().any(|s| s.contains("account was deleted")), "{subjects:?}");
    assert!(sent.iter().all(|m| m["to"][0] == email.to_lowercase()));
    id.logs.assert_absent(&[key, PASSWORD, NEW_PASSWORD]);
    resend.verify().await;

    // Without a key: skipped, and the skip is logged.
    let id = Identity::start().await;
    assert!(id.config.notifications.resend_api_key.as_ref().map(|k| k.expose_secret().len()).is_none());
    let email = unique_email("nokey-notice");
    id.register(&email).await;
    let token = id.token(&email).await;
    id.client()
        .change_password(authed(
            &token,
            pb::ChangePasswordRequest {
                current_password: PASSWORD.into(),
                new_password: NEW_PASSWORD.into(),
            },
        ))
        .await
        .unwrap();
    until("the skipped notice to be logged", Duration::from_secs(10), || async {
        id.logs.contents().contains("notice skipped: no server Resend key configured")
    })
    .await;
}
