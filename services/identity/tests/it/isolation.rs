//! The database roles and row-level security that back ownership.

use sqlx::{Connection as _, PgConnection};

use crate::harness::*;

#[tokio::test]
async fn the_service_role_is_neither_superuser_nor_bypassrls() {
    let id = Identity::start().await;
    let mut conn = PgConnection::connect(&id.db.url("bizops_identity")).await.unwrap();
    let (superuser, bypass): (bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(!superuser && !bypass, "bizops_identity must be NOSUPERUSER NOBYPASSRLS");
    // The migrator owns the tables but is subject to FORCEd RLS as well.
    let mut mig = PgConnection::connect(&id.db.url("bizops_migrator")).await.unwrap();
    let (superuser, bypass): (bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut mig)
            .await
            .unwrap();
    assert!(!superuser && !bypass);
}

#[tokio::test]
async fn a_query_without_app_owner_id_returns_no_rows() {
    let id = Identity::start().await;
    let a = id.register(&unique_email("rls-a")).await;
    let b_email = unique_email("rls-b");
    let b = id.register(&b_email).await;
    id.token(&b_email).await;

    let mut conn = PgConnection::connect(&id.db.url("bizops_identity")).await.unwrap();
    for table in ["identity.accounts", "identity.sessions", "identity.known_sources"] {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(n, 0, "{table} without app.owner_id");
    }
    // The system-only throttle table is not even readable.
    assert!(sqlx::query("SELECT count(*) FROM identity.login_failures").fetch_one(&mut conn).await.is_err());

    // With the owner set, exactly that owner's rows.
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.owner_id', $1, true)").bind(&b.id).execute(&mut *tx).await.unwrap();
    let ids: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM identity.accounts").fetch_all(&mut *tx).await.unwrap();
    assert_eq!(ids, vec![b.id.parse::<uuid::Uuid>().unwrap()]);
    let sessions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM identity.sessions").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(sessions, 1);
    // Writing a row for another owner is refused by the policy's WITH CHECK.
    let other = sqlx::query("UPDATE identity.accounts SET display_name = 'x' WHERE id = $1")
        .bind(a.id.parse::<uuid::Uuid>().unwrap())
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(other.rows_affected(), 0, "owner A's row is invisible to owner B");
    let insert = sqlx::query(
        "INSERT INTO identity.sessions (id, owner_id, created_at, expires_at, last_seen_at) VALUES ($1, $2, now(), now(), now())",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(a.id.parse::<uuid::Uuid>().unwrap())
    .execute(&mut *tx)
    .await;
    assert!(insert.is_err(), "a session for another owner cannot be inserted");
    tx.rollback().await.unwrap();

    // The superuser sees both accounts: the rows are there, RLS hid them.
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM identity.accounts")
        .fetch_one(&id.superuser().await)
        .await
        .unwrap();
    assert_eq!(total, 2);
}
