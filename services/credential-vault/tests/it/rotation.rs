//! Key-encryption keys: start-up checks, rotation (killed midway like `kill -9`
//! and resumed; stopped gracefully and resumed), rotation with replicas whose
//! keyrings differ, retiring old versions with the minimum decryption version.

use std::time::Duration;

use bizops_proto::vault::v1::{self as pb, ConnectorKind, RotationState};
use bizops_testkit::{Seen, eventually};
use tonic::Code;

use crate::harness::*;

async fn versions(pool: &sqlx::PgPool) -> Vec<i32> {
    sqlx::query_scalar("SELECT kek_version FROM vault.credentials ORDER BY id").fetch_all(pool).await.unwrap()
}

async fn version_of(pool: &sqlx::PgPool, name: &str) -> i32 {
    sqlx::query_scalar("SELECT kek_version FROM vault.credentials WHERE name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// `(state, done, total)` of the only rotation job.
async fn job_row(pool: &sqlx::PgPool) -> (String, i64, i64) {
    sqlx::query_as("SELECT state, done, total FROM vault.rotation_jobs").fetch_one(pool).await.unwrap()
}

/// Credentials under `version`, but not `except`.
async fn count_under(pool: &sqlx::PgPool, version: i32, except: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM vault.credentials WHERE kek_version = $1 AND name <> $2")
        .bind(version)
        .bind(except)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Waits until the running job has committed at least `min_done` credentials and
/// a batch transaction is open (a batch holding it, `rotation.batch_hold`); returns
/// the committed `done` seen at that moment.
async fn wait_for_open_batch(pool: &sqlx::PgPool, min_done: i64) -> i64 {
    let seen = &Seen::new(format!("a batch transaction open after {min_done} done"));
    eventually(seen, Duration::from_secs(30), || async move {
        let (done, open): (Option<i64>, bool) = sqlx::query_as(
            "SELECT (SELECT done FROM vault.rotation_jobs WHERE state = 'running'),
                    EXISTS (SELECT 1 FROM pg_stat_activity
                            WHERE datname = current_database() AND usename = 'bizops_vault_system'
                              AND state = 'idle in transaction')",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        seen.saw((done, open));
        done.filter(|d| *d >= min_done && open)
    })
    .await
}

/// Waits until no connection of the vault's roles is left on the database (a
/// killed vault's sessions end when Postgres sees their sockets close).
async fn wait_for_no_vault_sessions(pool: &sqlx::PgPool) {
    let seen = &Seen::new("the sessions of the killed vault to end (open sessions)");
    eventually(seen, Duration::from_secs(30), || async move {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND usename IN ('bizops_vault', 'bizops_vault_system')",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        seen.saw(n);
        (n == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn rotate_kill_midway_resume_retire_restart_everything_decrypts() {
    // Credentials under KEK v1.
    let v = Vault::start().await;
    let users: Vec<User> = (0..3).map(|_| v.new_user()).collect();
    let mut expected = Vec::new();
    for i in 0..40 {
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

    // Add v2 as active, on a vault that can be killed; rotate one credential per
    // batch, each batch holding its transaction open for a while.
    let (db, keys, mut config) = v.stop().await;
    config.grpc_addr = bizops_testkit::any_port();
    config.metrics_addr = bizops_testkit::any_port();
    config.keys.keyring = vec![kek(1, 0x11), kek(2, 0x22)];
    config.keys.active = Some(2);
    config.rotation.batch_hold = Duration::from_millis(400);
    let v = Vault::launch_isolated(db, keys, config).await;
    let user0 = &users[0];
    v.put(user0, "fresh", ConnectorKind::HttpBearer, "written-under-v2").await.unwrap();
    expected.push((user0.clone(), "fresh".into(), "written-under-v2".into()));
    let job = v.start_rotation(1).await;
    assert_eq!(v.start_rotation(1).await, job, "a second start returns the running job");
    let progress = v.rotation(&job).await;
    assert_eq!(progress.state, RotationState::Running as i32);
    assert_eq!((progress.target_kek_version, progress.total), (2, 41));

    // Kill it like `kill -9` while a batch's transaction is open, a few batches in.
    let done_at_kill = wait_for_open_batch(&pool, 3).await;
    let (db, keys, mut config) = v.kill();
    wait_for_no_vault_sessions(&pool).await;
    let (state, done, total) = job_row(&pool).await;
    assert_eq!(state, "running");
    assert_eq!(done, done_at_kill, "the batch open at the kill left nothing behind");
    assert!(done >= 3 && done < total, "killed midway: {done}/{total}");
    // Each committed batch rewrapped exactly its credential; the killed one none.
    assert_eq!(count_under(&pool, 2, "fresh").await, done);
    assert_eq!(count_under(&pool, 1, "fresh").await, total - 1 - done);

    // A fresh vault on the same database resumes the job where it stopped.
    config.grpc_addr = bizops_testkit::any_port();
    config.metrics_addr = bizops_testkit::any_port();
    config.rotation.batch_hold = Duration::ZERO;
    config.rotation.poll_interval = Duration::from_millis(200);
    let v = Vault::launch(db, keys, config).await;
    let finished = v.wait_rotation(&job, |j| j.state != RotationState::Running as i32).await;
    assert_eq!(finished.state, RotationState::Completed as i32, "{finished:?}");
    assert_eq!((finished.done, finished.failed, finished.total), (41, 0, 41), "none counted twice");
    assert!(finished.finished_at.is_some());
    assert!(v.logs.contents().contains("key rotation resumed"));
    // None lost, none double-wrapped: every row is there, once, wrapped under v2
    // exactly once ("v2:" and one wrapped key's length).
    let wrapped: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT wrapped_key FROM vault.credentials").fetch_all(&pool).await.unwrap();
    assert_eq!(wrapped.len(), 41);
    assert!(wrapped.iter().all(|w| w.starts_with(b"v2:") && w.len() == 3 + 60));
    // Only data keys were rewrapped: the value ciphertexts are untouched.
    let ciphertexts_after: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT ciphertext FROM vault.credentials WHERE name <> 'fresh' ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(ciphertexts_before, ciphertexts_after);
    for (user, name, value) in &expected {
        assert_eq!(&v.value_of(user.owner, name).await.unwrap(), value, "{name}");
    }

    // Retire v1: nothing is below it any more, so no force is needed.
    let set = v.set_min_version(2).await.unwrap();
    assert_eq!((set.min_decryption_version, set.credentials_below), (2, 0));

    // Restart without v1 at all: everything decrypts.
    let v = v
        .restart(|c| {
            c.keys.keyring = vec![kek(2, 0x22)];
            c.keys.active = Some(2);
        })
        .await;
    for (user, name, value) in &expected {
        assert_eq!(&v.value_of(user.owner, name).await.unwrap(), value, "{name}");
    }
    v.logs.assert_absent(SECRETS);
}

#[tokio::test]
async fn a_graceful_stop_finishes_the_open_batch_pauses_and_the_next_start_resumes() {
    let v = Vault::start().await;
    let ann = v.new_user();
    for i in 0..8 {
        v.put(&ann, &format!("c{i}"), ConnectorKind::HttpBearer, &format!("{BEARER}-{i}")).await.unwrap();
    }
    let v = v
        .restart(|c| {
            c.keys.keyring = vec![kek(1, 0x11), kek(2, 0x22)];
            c.keys.active = Some(2);
            c.rotation.batch_hold = Duration::from_millis(300);
        })
        .await;
    let pool = v.superuser().await;
    let job = v.start_rotation(1).await;
    let done_at_stop = wait_for_open_batch(&pool, 2).await;
    let logs = v.logs.clone();
    let (db, keys, mut config) = v.stop().await;

    // The batch in flight was finished and committed, then the job paused.
    let (state, done, total) = job_row(&pool).await;
    assert_eq!(state, "running");
    assert_eq!(done, done_at_stop + 1, "the open batch completed before the stop");
    assert!(done < total, "{done}/{total}");
    assert_eq!(count_under(&pool, 2, "").await, done);
    assert!(logs.contents().contains("key rotation paused for shutdown"));

    config.grpc_addr = bizops_testkit::any_port();
    config.metrics_addr = bizops_testkit::any_port();
    config.rotation.batch_hold = Duration::ZERO;
    let v = Vault::launch(db, keys, config).await;
    let finished = v.wait_rotation(&job, |j| j.state != RotationState::Running as i32).await;
    assert_eq!(
        (finished.state, finished.done, finished.failed, finished.total),
        (RotationState::Completed as i32, 8, 0, 8)
    );
    for i in 0..8 {
        assert_eq!(v.value_of(ann.owner, &format!("c{i}")).await.unwrap(), format!("{BEARER}-{i}"));
    }
}

#[tokio::test]
async fn rotation_never_wraps_backwards_and_retries_rows_other_replicas_change() {
    let v = Vault::start_with(|c| {
        c.keys.keyring = vec![kek(1, 0x11), kek(2, 0x22), kek(3, 0x33)];
        c.keys.active = Some(1);
    })
    .await;
    let ann = v.new_user();
    for i in 0..4 {
        v.put(&ann, &format!("c{i}"), ConnectorKind::HttpBearer, &format!("{BEARER}-{i}")).await.unwrap();
    }
    // This replica activates v2 (it has v3 already, not yet active); another one
    // still runs the old keyring, a third already activated v3.
    let v = v
        .restart(|c| {
            c.keys.active = Some(2);
            c.rotation.batch_hold = Duration::from_millis(1500);
        })
        .await;
    let quiet = |c: &mut credential_vault::VaultConfig| c.rotation.batch_hold = Duration::ZERO;
    let old = v
        .replica(|c| {
            quiet(c);
            c.keys.keyring = vec![kek(1, 0x11), kek(2, 0x22)];
            c.keys.active = Some(1);
        })
        .await;
    let new = v
        .replica(|c| {
            quiet(c);
            c.keys.active = Some(3);
        })
        .await;
    let pool = v.superuser().await;

    // Two credentials per batch. While the first batch (c0, c1) holds its
    // transaction, after it read its rows: the old replica replaces c0 (under v1),
    // the new one c1 and c3 (under v3).
    let job = v.start_rotation(2).await;
    wait_for_open_batch(&pool, 0).await;
    old.put(&ann, "c0", ConnectorKind::HttpBearer, "replaced-by-the-old-replica").await.unwrap();
    new.put(&ann, "c1", ConnectorKind::HttpBearer, "replaced-by-the-new-replica").await.unwrap();
    new.put(&ann, "c3", ConnectorKind::HttpBearer, "replaced-later-by-the-new-one").await.unwrap();
    let done = v.wait_rotation(&job, |j| j.state != RotationState::Running as i32).await;

    // No permanent failure: c0 changed under the batch and was re-read and rewrapped;
    // c1 and c3 are above the target and were left as they are, never wrapped down.
    assert_eq!(
        (done.state, done.total, done.done, done.failed),
        (RotationState::Completed as i32, 4, 4, 0),
        "{done:?}"
    );
    let got = [
        version_of(&pool, "c0").await,
        version_of(&pool, "c1").await,
        version_of(&pool, "c2").await,
        version_of(&pool, "c3").await,
    ];
    assert_eq!(got, [2, 3, 2, 3]);
    for (name, value) in [
        ("c0", "replaced-by-the-old-replica".to_owned()),
        ("c1", "replaced-by-the-new-replica".to_owned()),
        ("c2", format!("{BEARER}-2")),
        ("c3", "replaced-later-by-the-new-one".to_owned()),
    ] {
        assert_eq!(new.value_of(ann.owner, name).await.unwrap(), value, "{name}");
    }

    // Credentials under v3 exist: a replica whose active version is 2 refuses to
    // start a rotation (it would target v2).
    let status =
        assert_status(v.try_start_rotation(0).await, Code::FailedPrecondition, "FAILED_PRECONDITION");
    let message = status.message();
    assert!(message.contains("KEK version 3") && message.contains("active version 2"), "{message}");
    assert!(message.contains("update the keyring everywhere first"), "{message}");
    assert_status(old.try_start_rotation(0).await, Code::FailedPrecondition, "FAILED_PRECONDITION");
    assert_eq!(job_row(&pool).await.0, "completed", "no job was created");

    // The replica with v3 active rotates everything up.
    let job = new.start_rotation(0).await;
    let done = new.wait_rotation(&job, |j| j.state != RotationState::Running as i32).await;
    assert_eq!((done.target_kek_version, done.done, done.failed), (3, 4, 0), "{done:?}");
    assert_eq!(versions(&pool).await, [3, 3, 3, 3]);
    assert_eq!(new.value_of(ann.owner, "c2").await.unwrap(), format!("{BEARER}-2"));
    old.stop().await;
    new.stop().await;
}

#[tokio::test]
async fn retired_versions_refuse_to_decrypt_until_lowered_again() {
    let v = Vault::start_with(|c| {
        c.keys.keyring = vec![kek(1, 0x11), kek(2, 0x22), kek(3, 0x33)];
        c.keys.active = Some(1);
    })
    .await;
    let ann = v.new_user();
    v.put(&ann, "old", ConnectorKind::Resend, RESEND_KEY).await.unwrap();
    let v = v.restart(|c| c.keys.active = Some(3)).await;
    v.put(&ann, "new", ConnectorKind::Resend, RESEND_KEY).await.unwrap();

    // The active version cannot be retired.
    let status = assert_status(v.set_min_version(4).await, Code::FailedPrecondition, "FAILED_PRECONDITION");
    assert!(status.message().contains("active KEK version 3"), "{}", status.message());

    // Nor, without force, a version a credential still uses: a rotation first.
    let status = assert_status(v.set_min_version(2).await, Code::FailedPrecondition, "FAILED_PRECONDITION");
    let message = status.message();
    assert!(message.contains("1 credential") && message.contains("rotation"), "{message}");
    assert_no_secret(&status);
    assert_eq!(v.value_of(ann.owner, "old").await.unwrap(), RESEND_KEY, "nothing was retired");

    // Forced, it is retired anyway.
    let set = v.set_min_version_with(3, true).await.unwrap();
    assert_eq!((set.min_decryption_version, set.credentials_below), (3, 1));
    let status =
        assert_status(v.value_of(ann.owner, "old").await, Code::FailedPrecondition, "FAILED_PRECONDITION");
    assert!(status.message().contains("below the minimum decryption version 3"), "{}", status.message());
    assert_no_secret(&status);
    assert_eq!(v.value_of(ann.owner, "new").await.unwrap(), RESEND_KEY);

    // A rotation cannot rewrap a retired key either: it counts it as failed.
    let job = v.start_rotation(10).await;
    let done = v.wait_rotation(&job, |j| j.state != RotationState::Running as i32).await;
    assert_eq!((done.state, done.done, done.failed), (RotationState::Completed as i32, 1, 1));

    // Emergency: lowering needs no force, even with a credential still below.
    let set = v.set_min_version(2).await.unwrap();
    assert_eq!((set.min_decryption_version, set.credentials_below), (2, 1));
    assert!(v.value_of(ann.owner, "old").await.is_err());
    assert_eq!(v.set_min_version(0).await.unwrap().min_decryption_version, 0);
    assert_eq!(v.value_of(ann.owner, "old").await.unwrap(), RESEND_KEY);
    // The old key works again and now rotates; then v1 and v2 retire without force.
    let job = v.start_rotation(10).await;
    let done = v.wait_rotation(&job, |j| j.state != RotationState::Running as i32).await;
    assert_eq!((done.done, done.failed), (2, 0));
    assert_eq!(v.set_min_version(3).await.unwrap().credentials_below, 0);
    assert_eq!(v.value_of(ann.owner, "old").await.unwrap(), RESEND_KEY);
}

#[tokio::test]
async fn rotation_counts_a_tampered_key_as_failed_and_finishes() {
    let v = Vault::start_with(|c| {
        c.keys.keyring = vec![kek(1, 0x11), kek(2, 0x22)];
        c.keys.active = Some(1);
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
    let v = v.restart(|c| c.keys.active = Some(2)).await;
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
        c.keys.active = Some(2);
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
    config.keys.active = Some(3);
    let err = credential_vault::App::build(config.clone()).await.err().expect("must refuse");
    assert!(err.to_string().contains("BIZOPS_KEYS__ACTIVE is 3"), "{err}");

    // The right keys still start (and nothing was stored by the refused starts).
    config.keys.keyring = vec![kek(1, 0x11), kek(2, 0x22)];
    config.keys.active = Some(2);
    config.grpc_addr = bizops_testkit::any_port();
    config.metrics_addr = bizops_testkit::any_port();
    let v = Vault::launch(db, keys, config).await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM vault.kek_checks")
        .fetch_one(&v.superuser().await)
        .await
        .unwrap();
    assert_eq!(n, 2);
}
