//! Migrations that change stored data, run over rows written before them.

use bizops_testkit::TestDb;
use credential_vault::MIGRATOR;
use sqlx::{Connection as _, PgConnection};
use uuid::Uuid;

/// The first migration: the schema before fingerprints showed the value's end.
const BEFORE_LAST_FOUR: i64 = 20261201000001;

#[tokio::test]
async fn fingerprints_from_the_keyed_hash_era_are_cleared() {
    let db = TestDb::empty().await.unwrap();
    let mut migrator = PgConnection::connect(&db.url("bizops_migrator")).await.unwrap();
    MIGRATOR.run_to(BEFORE_LAST_FOUR, &mut migrator).await.unwrap();
    // A row as the vault stored it then: 4 hex digits of an HMAC, not of the value.
    let pool = db.superuser_pool().await.unwrap();
    let mut wrapped = b"v1:".to_vec();
    wrapped.extend([7u8; 60]);
    sqlx::query(
        "INSERT INTO vault.credentials
             (id, owner_id, name, kind, ciphertext, wrapped_key, kek_version, fingerprint, created_at, updated_at)
         VALUES ($1, $2, 'legacy', 'http_bearer', $3, $4, 1, '…a1b2', now(), now())",
    )
    .bind(Uuid::now_v7())
    .bind(Uuid::now_v7())
    .bind(vec![0u8; 40])
    .bind(wrapped)
    .execute(&pool)
    .await
    .unwrap();

    MIGRATOR.run(&mut migrator).await.unwrap();
    let fingerprint: String =
        sqlx::query_scalar("SELECT fingerprint FROM vault.credentials").fetch_one(&pool).await.unwrap();
    assert_eq!(fingerprint, "…", "a keyed-hash fingerprint would pass for the value's last 4");
    // Row-level security is forced on the table again.
    let forced: bool = sqlx::query_scalar(
        "SELECT relforcerowsecurity AND relrowsecurity FROM pg_class WHERE oid = 'vault.credentials'::regclass",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(forced);
    migrator.close().await.ok();
}
