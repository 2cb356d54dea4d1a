//! Tamper tests in the style of Vault's barrier tests, on stored rows: every
//! change to a ciphertext, a wrapped key or the row's binding fails closed with a
//! clear error and no plaintext.

use std::{collections::HashSet, sync::Arc};

use bizops_authn::OwnerId;
use bizops_proto::vault::v1::ConnectorKind;
use bizops_runtime::clock::ShiftedClock;
use credential_vault::absence::Absence;
use tonic::Code;
use uuid::Uuid;

use crate::harness::*;

#[track_caller]
fn assert_refused(result: Result<String, tonic::Status>, what: &str) {
    let status = assert_status(result, Code::FailedPrecondition, "FAILED_PRECONDITION");
    assert!(status.message().contains("cannot be decrypted"), "{what}: {}", status.message());
    assert_no_secret(&status);
}

async fn stored(pool: &sqlx::PgPool, name: &str) -> (Vec<u8>, Vec<u8>) {
    sqlx::query_as("SELECT ciphertext, wrapped_key FROM vault.credentials WHERE name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn flipping_any_byte_of_a_stored_ciphertext_or_wrapped_key_fails_closed() {
    let v = Vault::start().await;
    let ann = v.new_user();
    v.put(&ann, "key", ConnectorKind::Resend, RESEND_KEY).await.unwrap();
    let pool = v.superuser().await;
    let (ciphertext, wrapped) = stored(&pool, "key").await;
    assert_eq!(ciphertext.len(), 12 + RESEND_KEY.len() + 16);
    assert!(wrapped.starts_with(b"v1:"));

    for i in 0..ciphertext.len() {
        let mut bad = ciphertext.clone();
        bad[i] ^= 0x01;
        sqlx::query("UPDATE vault.credentials SET ciphertext = $1").bind(&bad).execute(&pool).await.unwrap();
        assert_refused(v.value_of(ann.owner, "key").await, &format!("ciphertext byte {i}"));
    }
    sqlx::query("UPDATE vault.credentials SET ciphertext = $1")
        .bind(&ciphertext)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(v.value_of(ann.owner, "key").await.unwrap(), RESEND_KEY, "restored");

    for i in 0..wrapped.len() {
        let mut bad = wrapped.clone();
        bad[i] ^= 0x01;
        let written =
            sqlx::query("UPDATE vault.credentials SET wrapped_key = $1").bind(&bad).execute(&pool).await;
        if i < 3 {
            // The "v1:" prefix must agree with kek_version: the database refuses it.
            assert!(written.is_err(), "prefix byte {i} accepted");
            continue;
        }
        written.unwrap();
        assert_refused(v.value_of(ann.owner, "key").await, &format!("wrapped key byte {i}"));
    }
    // A truncated ciphertext fails too.
    sqlx::query("UPDATE vault.credentials SET wrapped_key = $1, ciphertext = $2")
        .bind(&wrapped)
        .bind(&ciphertext[..ciphertext.len() - 1])
        .execute(&pool)
        .await
        .unwrap();
    assert_refused(v.value_of(ann.owner, "key").await, "truncated");
    // TestCredential fails closed the same way.
    let status = assert_status(v.test(&ann, "key").await, Code::FailedPrecondition, "FAILED_PRECONDITION");
    assert_no_secret(&status);
    v.logs.assert_absent(SECRETS);
}

#[tokio::test]
async fn a_row_moved_to_another_owner_connector_or_name_fails() {
    let clock = ShiftedClock::default();
    let v = Vault::start_with_clock(Arc::new(clock.clone()), |_| {}).await;
    let (ann, bob) = (v.new_user(), v.new_user());
    v.put(&ann, "token", ConnectorKind::HttpBearer, BEARER).await.unwrap();
    let pool = v.superuser().await;

    // Another owner: the row shows up for B but does not decrypt.
    sqlx::query("UPDATE vault.credentials SET owner_id = $1")
        .bind(bob.owner.as_uuid())
        .execute(&pool)
        .await
        .unwrap();
    assert_refused(v.value_of(bob.owner, "token").await, "moved to B");
    assert_eq!(v.resolve(ann.owner, &["token"]).await.unwrap().missing, ["token"]);
    sqlx::query("UPDATE vault.credentials SET owner_id = $1")
        .bind(ann.owner.as_uuid())
        .execute(&pool)
        .await
        .unwrap();
    // The absence just seen is believed for a moment (rows that appear behind the
    // vault's back, not through PutCredential, are seen after it).
    clock.set_offset(Absence::TTL.try_into().unwrap());
    assert_eq!(v.value_of(ann.owner, "token").await.unwrap(), BEARER);

    // Another connector kind (e.g. to send a token to a Slack URL) or name.
    for (column, value) in [("kind", "slack"), ("kind", "anthropic"), ("name", "renamed")] {
        let sql = format!("UPDATE vault.credentials SET {column} = $1");
        let original: String =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT {column} FROM vault.credentials")))
                .fetch_one(&pool)
                .await
                .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(value).execute(&pool).await.unwrap();
        let name = if column == "name" { value } else { "token" };
        assert_refused(v.value_of(ann.owner, name).await, &format!("{column} = {value}"));
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&original).execute(&pool).await.unwrap();
    }

    // Another credential's id: copy A's sealed value into B's row.
    v.put(&bob, "token", ConnectorKind::HttpBearer, "bobs-own").await.unwrap();
    let (ct, wk) = stored_for(&pool, ann.owner).await;
    sqlx::query("UPDATE vault.credentials SET ciphertext = $1, wrapped_key = $2 WHERE owner_id = $3")
        .bind(&ct)
        .bind(&wk)
        .bind(bob.owner.as_uuid())
        .execute(&pool)
        .await
        .unwrap();
    assert_refused(v.value_of(bob.owner, "token").await, "copied into another row");
    // A row with A's owner and name but another id.
    sqlx::query("UPDATE vault.credentials SET id = $1 WHERE owner_id = $2")
        .bind(Uuid::now_v7())
        .bind(ann.owner.as_uuid())
        .execute(&pool)
        .await
        .unwrap();
    assert_refused(v.value_of(ann.owner, "token").await, "another id");
}

async fn stored_for(pool: &sqlx::PgPool, owner: OwnerId) -> (Vec<u8>, Vec<u8>) {
    sqlx::query_as("SELECT ciphertext, wrapped_key FROM vault.credentials WHERE owner_id = $1")
        .bind(owner.as_uuid())
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_unknown_kek_version_fails_clearly() {
    let v = Vault::start_with(|c| {
        c.keys.keyring = vec![kek(1, 0x11), kek(2, 0x22)];
        c.keys.active = Some(2);
    })
    .await;
    let ann = v.new_user();
    v.put(&ann, "key", ConnectorKind::Anthropic, ANTHROPIC_KEY).await.unwrap();
    // Version 2 leaves the keyring (a botched deployment).
    let v = v
        .restart(|c| {
            c.keys.keyring = vec![kek(1, 0x11)];
            c.keys.active = Some(1);
        })
        .await;
    let status =
        assert_status(v.value_of(ann.owner, "key").await, Code::FailedPrecondition, "FAILED_PRECONDITION");
    assert!(status.message().contains("KEK version 2, which is not in the keyring"), "{}", status.message());
    assert_no_secret(&status);
    assert!(v.logs.contents().contains("missing from the keyring"), "start-up warns about it");
}

#[tokio::test]
async fn nonces_never_repeat_across_stored_values() {
    let v = Vault::start().await;
    let ann = v.new_user();
    for i in 0..40 {
        v.put(&ann, &format!("k{}", i % 20), ConnectorKind::HttpBearer, BEARER).await.unwrap();
    }
    let rows: Vec<(Vec<u8>, Vec<u8>)> =
        sqlx::query_as("SELECT ciphertext, wrapped_key FROM vault.credentials")
            .fetch_all(&v.superuser().await)
            .await
            .unwrap();
    let mut nonces = HashSet::new();
    for (ct, wk) in &rows {
        assert!(nonces.insert(ct[..12].to_vec()));
        assert!(nonces.insert(wk[3..15].to_vec()));
    }
    let distinct: HashSet<&Vec<u8>> = rows.iter().map(|(ct, _)| ct).collect();
    assert_eq!(distinct.len(), rows.len(), "one plaintext, all ciphertexts different");
}
