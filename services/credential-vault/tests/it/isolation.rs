//! Owner isolation on every RPC, the internal-only RPCs' callers, and the database
//! roles and row-level security behind them.

use bizops_proto::vault::v1::{self as pb, ConnectorKind};
use sqlx::{Connection as _, PgConnection};
use tonic::Code;

use crate::harness::*;

#[tokio::test]
async fn another_owner_sees_nothing_on_every_rpc() {
    let v = Vault::start().await;
    let (ann, bob) = (v.new_user(), v.new_user());
    v.put(&ann, "shared", ConnectorKind::HttpBearer, BEARER).await.unwrap();
    v.put(&ann, "hook", ConnectorKind::Slack, SLACK_URL).await.unwrap();

    assert!(v.list(&bob).await.is_empty(), "List");
    assert_status(v.delete(&bob, "shared").await, Code::NotFound, "NOT_FOUND");
    assert_status(v.test(&bob, "hook").await, Code::NotFound, "NOT_FOUND");
    let r = v.resolve(bob.owner, &["shared", "hook"]).await.unwrap();
    assert!(r.credentials.is_empty(), "Resolve for B");
    assert_eq!(r.missing, ["shared", "hook"]);

    // B's own credential of the same name is B's; A's is untouched.
    v.put(&bob, "shared", ConnectorKind::HttpBearer, "bobs-token").await.unwrap();
    assert_eq!(v.value_of(bob.owner, "shared").await.unwrap(), "bobs-token");
    assert_eq!(v.value_of(ann.owner, "shared").await.unwrap(), BEARER);
    v.delete(&bob, "shared").await.unwrap();
    assert_eq!(v.value_of(ann.owner, "shared").await.unwrap(), BEARER);
    assert_eq!(v.list(&ann).await.len(), 2);

    // Deleting B's data leaves A's.
    v.put(&bob, "b1", ConnectorKind::HttpBearer, "x").await.unwrap();
    let deleted = v
        .client()
        .delete_owner_data(as_service(
            &v.keys.identity,
            pb::DeleteOwnerDataRequest { owner_id: bob.owner.to_string() },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.credentials_deleted, 1);
    assert_eq!(v.list(&ann).await.len(), 2);
}

#[tokio::test]
async fn delete_owner_data_is_for_identity_only_and_idempotent() {
    let v = Vault::start().await;
    let ann = v.new_user();
    for n in ["a", "b", "c"] {
        v.put(&ann, n, ConnectorKind::HttpBearer, BEARER).await.unwrap();
    }
    let req = || pb::DeleteOwnerDataRequest { owner_id: ann.owner.to_string() };
    for other in [&v.keys.executor, &v.keys.gateway, &v.keys.ops] {
        assert_status(
            v.client().delete_owner_data(as_service(other, req())).await,
            Code::PermissionDenied,
            "PERMISSION_DENIED",
        );
    }
    assert_status(
        v.client().delete_owner_data(authed(&ann.token, req())).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    assert_status(v.client().delete_owner_data(req()).await, Code::Unauthenticated, "UNAUTHENTICATED");
    assert_eq!(v.list(&ann).await.len(), 3, "nothing deleted by refused calls");

    let first = v.client().delete_owner_data(as_service(&v.keys.identity, req())).await.unwrap().into_inner();
    assert_eq!(first.credentials_deleted, 3);
    let again = v.client().delete_owner_data(as_service(&v.keys.identity, req())).await.unwrap().into_inner();
    assert_eq!(again.credentials_deleted, 0, "idempotent");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM vault.credentials")
        .fetch_one(&v.superuser().await)
        .await
        .unwrap();
    assert_eq!(n, 0, "hard delete");
    let bad = pb::DeleteOwnerDataRequest { owner_id: "nope".into() };
    assert_status(
        v.client().delete_owner_data(as_service(&v.keys.identity, bad)).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
}

#[tokio::test]
async fn key_management_is_for_key_admins_only() {
    let v = Vault::start().await;
    let ann = v.new_user();
    let start = || pb::StartKeyRotationRequest { batch_size: 0 };
    let set_min = || pb::SetMinDecryptionVersionRequest { min_decryption_version: 1, force: false };
    for other in [&v.keys.executor, &v.keys.identity, &v.keys.gateway] {
        assert_status(
            v.client().start_key_rotation(as_service(other, start())).await,
            Code::PermissionDenied,
            "PERMISSION_DENIED",
        );
        assert_status(
            v.client().set_min_decryption_version(as_service(other, set_min())).await,
            Code::PermissionDenied,
            "PERMISSION_DENIED",
        );
    }
    assert_status(
        v.client().start_key_rotation(authed(&ann.token, start())).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    let job = v.start_rotation(0).await;
    let get = || pb::GetKeyRotationRequest { job_id: job.clone() };
    assert_status(
        v.client().get_key_rotation(authed(&ann.token, get())).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    assert_status(
        v.client().get_key_rotation(as_service(&v.keys.executor, get())).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    v.rotation(&job).await;

    // The list is configuration.
    let v2 = Vault::start_with(|c| c.key_admins = vec!["gateway".into()]).await;
    assert_status(
        v2.client().start_key_rotation(as_service(&v2.keys.ops, start())).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    v2.client().start_key_rotation(as_service(&v2.keys.gateway, start())).await.unwrap();
}

#[tokio::test]
async fn the_service_role_is_neither_superuser_nor_bypassrls() {
    let v = Vault::start().await;
    for role in ["bizops_vault", "bizops_migrator"] {
        let mut conn = PgConnection::connect(&v.db.url(role)).await.unwrap();
        let (superuser, bypass): (bool, bool) =
            sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert!(!superuser && !bypass, "{role} must be NOSUPERUSER NOBYPASSRLS");
    }
}

#[tokio::test]
async fn a_query_without_app_owner_id_returns_no_rows() {
    let v = Vault::start().await;
    let (ann, bob) = (v.new_user(), v.new_user());
    v.put(&ann, "a", ConnectorKind::HttpBearer, BEARER).await.unwrap();
    v.put(&bob, "b", ConnectorKind::HttpBearer, BEARER).await.unwrap();

    let mut conn = PgConnection::connect(&v.db.url("bizops_vault")).await.unwrap();
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM vault.credentials").fetch_one(&mut conn).await.unwrap();
    assert_eq!(n, 0, "vault.credentials without app.owner_id");
    // The system-only tables are not even readable by the service role.
    for table in ["vault.kek_checks", "vault.rotation_jobs"] {
        let denied = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&mut conn)
            .await;
        assert!(denied.is_err(), "{table} readable by the service role");
    }

    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.owner_id', $1, true)")
        .bind(bob.owner.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    let names: Vec<String> =
        sqlx::query_scalar("SELECT name FROM vault.credentials").fetch_all(&mut *tx).await.unwrap();
    assert_eq!(names, ["b"]);
    let moved = sqlx::query("UPDATE vault.credentials SET owner_id = $1")
        .bind(ann.owner.as_uuid())
        .execute(&mut *tx)
        .await;
    assert!(moved.is_err(), "a row cannot be moved to another owner");
    tx.rollback().await.unwrap();

    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM vault.credentials")
        .fetch_one(&v.superuser().await)
        .await
        .unwrap();
    assert_eq!(total, 2, "the rows are there; RLS hid them");
}
