//! Key-encryption keys: start-up checks, rotation (killed midway and resumed),
//! retiring old versions with the minimum decryption version.

use std::time::Duration;

use bizops_proto::vault::v1::{self as pb, ConnectorKind, RotationState};
use tonic::Code;

use crate::harness::*;

async fn versions(pool: &sqlx::PgPool) -> Vec<i32> {
    sqlx::query_scalar("SELECT kek_version FROM vault.credentials ORDER BY id").fetch_all(pool).await.unwrap()
}

#[tokio::test]
async fn rotate_kill_midway_resume_retire_restart_everything_decrypts() {
    // Credentials under KEK v1.
    let v = Vault::start().await;
    let users: Vec<User> = (0..3).map(|_| v.new_user()).collect();
    let mut expected = Vec::new();
    for i in 0..24 {
        let user = &users[i % 3];
        let (name, value) = (format!("c{i}"), format!("{BEARER}-{i}"));
        v.put(user, &name, ConnectorKind::HttpBearer, &value).await.unwrap();
        expected.push((user.clone(), name, value));
    }
    let pool = v.superuser().await;
    let ciphertexts_before: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT ciphertext FROM vault.credentials ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();

    // Add v2 as active; rotate one credential per batch, slowly enough to stop midway.
    let v = v
        .restart(|c| {
            c.keys.keyring = vec![kek(1, 0x11), kek(2, 0x22)];
            c.keys.active_version = 2;
            c.rotation.batch_pause = Duration::from_millis(60);
        })
        .await;
    let user0 = &users[0];
    v.put(user0, "fresh", ConnectorKind::HttpBearer, "written-under-v2").await.unwrap();
    expected.push((user0.clone(), "fresh".into(), "written-under-v2".into()));
    let job = v.start_rotation(1).await;
    assert_eq!(v.start_rotation(1).await, job, "a second start returns the running job");
    let progress = v.wait_rotation(&job, |j| j.done >= 3).await;
    assert_eq!(progress.state, RotationState::Running as i32);
    assert_eq!(progress.target_kek_version, 2);
    assert_eq!(progress.total, 25);

    // Kill it midway: the service stops while the job runs.
    let (db, keys, config) = v.stop().await;
    let (state, done, total): (String, i64, i64) =
        sqlx::query_as("SELECT state, done, total FROM vault.rotation_jobs").fetch_one(&pool).await.unwrap();
    assert_eq!(state, "running");
    assert!(done >= 3 && done < total, "stopped midway: {done}/{total}");
    let mixed = versions(&pool).await;
    assert!(mixed.contains(&1) && mixed.contains(&2), "{mixed:?}");
    // Every credential still decrypts in the mixed state.
    let mut config = config;
    config.grpc_addr = bizops_testkit::any_port();
    config.metrics_addr = bizops_testkit::any_port();
    config.rotation.batch_pause = Duration::ZERO;
    let v = Vault::launch(db, keys, config).await;

    // The job resumes at start-up, where it stopped, and completes.
    let finished = v.wait_rotation(&job, |j| j.state != RotationState::Running as i32).await;
    assert_eq!(finished.state, RotationState::Completed as i32, "{finished:?}");
    assert_eq!((finished.done, finished.failed, finished.total), (25, 0, 25));
    assert!(finished.finished_at.is_some());
    assert!(versions(&pool).await.iter().all(|v| *v == 2));
    assert!(v.logs.contents().contains("key rotation resumed"));
    // Only data keys were rewrapped: the value ciphertexts are untouched.
    let ciphertexts_after: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT ciphertext FROM vault.credentials WHERE name <> 'fresh' ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(ciphertexts_before, ciphertexts_after);

    // Retire v1.
    let set = v.set_min_version(2).await.unwrap();
    assert_eq!((set.min_decryption_version, set.credentials_below), (2, 0));

    // Restart without v1 at all: everything decrypts.
    let v = v
        .restart(|c| {
            c.keys.keyring = vec![kek(2, 0x22)];
            c.keys.active_version = 2;
        })
        .await;
    for (user, name, value) in &expected {
        assert_eq!(&v.value_of(user.owner, name).await.unwrap(), value, "{name}");
    }
    v.logs.assert_absent(SECRETS);
}

#[tokio::test]
async fn retired_versions_refuse_to_decrypt_until_lowered_again() {
    let v = Vault::start_with(|c| {
        c.keys.keyring = vec![kek(1, 0x11), kek(2, 0x22)];
        c.keys.active_version = 1;
    })
    .await;
    let ann = v.new_user();
    v.put(&ann, "old", ConnectorKind::Resend, RESEND_KEY).await.unwrap();
    let v = v.restart(|c| c.keys.active_version = 2).await;
    v.put(&ann, "new", ConnectorKind::Resend, RESEND_KEY).await.unwrap();

    // The active version cannot be retired.
    let status = assert_status(v.set_min_version(3).await, Code::FailedPrecondition, "FAILED_PRECONDITION");
    assert!(status.message().contains("active KEK version 2"), "{}", status.message());

    let set = v.set_min_version(2).await.unwrap();
    assert_eq!(set.credentials_below, 1);
    let status =
        assert_status(v.value_of(ann.owner, "old").await, Code::FailedPrecondition, "FAILED_PRECONDITION");
    assert!(status.message().contains("below the minimum decryption version 2"), "{}", status.message());
    assert_no_secret(&status);
    assert_eq!(v.value_of(ann.owner, "new").await.unwrap(), RESEND_KEY);

    // A rotation cannot rewrap a retired key either: it counts it as failed.
    let job = v.start_rotation(10).await;
    let done = v.wait_rotation(&job, |j| j.state != RotationState::Running as i32).await;
    assert_eq!((done.state, done.done, done.failed), (RotationState::Completed as i32, 1, 1));

    // Emergency: lower it again, and the old key works (and now rotates).
    assert_eq!(v.set_min_version(0).await.unwrap().min_decryption_version, 0);
    assert_eq!(v.value_of(ann.owner, "old").await.unwrap(), RESEND_KEY);
    let job = v.start_rotation(10).await;
    let done = v.wait_rotation(&job, |j| j.state != RotationState::Running as i32).await;
    assert_eq!((done.done, done.failed), (2, 0));
    assert_eq!(v.set_min_version(2).await.unwrap().credentials_below, 0);
    assert_eq!(v.value_of(ann.owner, "old").await.unwrap(), RESEND_KEY);
}

#[tokio::test]
async fn rotation_counts_a_tampered_key_as_failed_and_finishes() {
    let v = Vault::start_with(|c| {
        c.keys.keyring = vec![kek(1, 0x11), kek(2, 0x22)];
        c.keys.active_version = 1;
    })
    .await;
    let ann = v.new_user();
    for n in ["a", "b", "c"] {
        v.put(&ann, n, ConnectorKind::HttpBearer, BEARER).await.unwrap();
    }
    let pool = v.superuser().await;
    sqlx::query("UPDATE vault.credentials SET wrapped_key = set_byte(wrapped_key, 9, get_byte(wrapped_key, 9) # 1) WHERE name = 'b'")
        .execute(&pool)
        .await
        .unwrap();
    let v = v.restart(|c| c.keys.active_version = 2).await;
    let job = v.start_rotation(2).await;
    let done = v.wait_rotation(&job, |j| j.state != RotationState::Running as i32).await;
    assert_eq!((done.state, done.total, done.done, done.failed), (RotationState::Completed as i32, 3, 2, 1));
    assert_eq!(v.value_of(ann.owner, "a").await.unwrap(), BEARER);
    assert_eq!(v.value_of(ann.owner, "c").await.unwrap(), BEARER);
}

#[tokio::test]
async fn rotation_requests_are_validated() {
    let v = Vault::start().await;
    let too_big = v
        .client()
        .start_key_rotation(as_service(&v.keys.ops, pb::StartKeyRotationRequest { batch_size: 1001 }))
        .await;
    assert_status(too_big, Code::InvalidArgument, "INVALID_ARGUMENT");
    let get = |id: &str| {
        let mut client = v.client();
        let req = as_service(&v.keys.ops, pb::GetKeyRotationRequest { job_id: id.into() });
        async move { client.get_key_rotation(req).await }
    };
    assert_status(get("nope").await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_status(get(&uuid::Uuid::now_v7().to_string()).await, Code::NotFound, "NOT_FOUND");
    // With nothing stored, a job completes at once.
    let job = v.start_rotation(0).await;
    let done = v.wait_rotation(&job, |j| j.state != RotationState::Running as i32).await;
    assert_eq!((done.state, done.total, done.done), (RotationState::Completed as i32, 0, 0));
}

#[tokio::test]
async fn a_wrong_kek_at_start_up_refuses_to_start_naming_the_version() {
    let v = Vault::start_with(|c| {
        c.keys.keyring = vec![kek(1, 0x11), kek(2, 0x22)];
        c.keys.active_version = 2;
    })
    .await;
    let (db, keys, mut config) = v.stop().await;
    config.keys.keyring = vec![kek(1, 0x11), kek(2, 0x99)];
    let err = credential_vault::App::build(config.clone()).await.err().expect("must refuse");
    let text = format!("{err:#}");
    assert!(text.contains("KEK version 2 does not match the key-check value"), "{text}");
    assert!(!text.contains("mZmZ"), "no key material: {text}");

    // Without any keyring, or without the active version, it refuses too.
    config.keys.keyring = Vec::new();
    let err = credential_vault::App::build(config.clone()).await.err().expect("must refuse");
    assert!(err.to_string().contains("no key-encryption key configured"), "{err}");
    config.keys.keyring = vec![kek(1, 0x11)];
    config.keys.active_version = 3;
    let err = credential_vault::App::build(config.clone()).await.err().expect("must refuse");
    assert!(err.to_string().contains("BIZOPS_KEYS__ACTIVE_VERSION is 3"), "{err}");

    // The right keys still start (and nothing was stored by the refused starts).
    config.keys.keyring = vec![kek(1, 0x11), kek(2, 0x22)];
    config.keys.active_version = 2;
    config.grpc_addr = bizops_testkit::any_port();
    config.metrics_addr = bizops_testkit::any_port();
    let v = Vault::launch(db, keys, config).await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM vault.kek_checks")
        .fetch_one(&v.superuser().await)
        .await
        .unwrap();
    assert_eq!(n, 2);
}
