//! Ownership on every RPC, row-level security, internal-only RPCs.

use bizops_proto::catalog::v1 as pb;
use sqlx::{Connection as _, PgConnection};
use tonic::Code;

use crate::harness::*;

#[track_caller]
fn nf<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>) {
    assert_status(result, Code::NotFound, "NOT_FOUND");
}

#[tokio::test]
async fn owner_b_cannot_touch_owner_a_pilots() {
    let cat = Catalog::start().await;
    let a = cat.user(owner());
    let b = cat.user(owner());
    let pilot = cat.create(&a, sample_spec()).await.pilot.unwrap();
    let id = pilot.id.clone();
    let mut c = cat.client();
    nf(c.get_pilot(authed(&b, pb::GetPilotRequest { pilot_id: id.clone() })).await);
    nf(c.update_pilot(authed(
        &b,
        pb::UpdatePilotRequest { pilot_id: id.clone(), expected_version: 1, spec: Some(sample_spec()) },
    ))
    .await);
    nf(c.delete_pilot(authed(&b, pb::DeletePilotRequest { pilot_id: id.clone() })).await);
    nf(c.export_pilot(authed(&b, pb::ExportPilotRequest { pilot_id: id.clone() })).await);
    nf(c.rotate_webhook_secret(authed(&b, pb::RotateWebhookSecretRequest { pilot_id: id.clone() })).await);
    nf(c.set_enabled(authed(&b, pb::SetEnabledRequest { pilot_id: id.clone(), enabled: false })).await);
    nf(c.list_versions(authed(
        &b,
        pb::ListVersionsRequest { pilot_id: id.clone(), page_size: 0, page_token: String::new() },
    ))
    .await);
    nf(c.get_version(authed(&b, pb::GetVersionRequest { pilot_id: id.clone(), version: 1 })).await);
    let listed = c.list_pilots(authed(&b, pb::ListPilotsRequest::default())).await.unwrap().into_inner();
    assert!(listed.pilots.is_empty(), "B lists nothing of A's");

    // A's Pilot is untouched by all of that.
    let still = c
        .get_pilot(authed(&a, pb::GetPilotRequest { pilot_id: id.clone() }))
        .await
        .unwrap()
        .into_inner()
        .pilot
        .unwrap();
    assert_eq!(still, pilot);
    // And without a session nothing works at all.
    let s = c.get_pilot(tonic::Request::new(pb::GetPilotRequest { pilot_id: id })).await.unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn the_service_role_sees_nothing_without_an_owner() {
    let cat = Catalog::start().await;
    let token = cat.user(owner());
    cat.create(&token, sample_spec()).await;
    let mut conn = PgConnection::connect(&cat.db.url("bizops_catalog")).await.unwrap();
    let (superuser, bypass): (bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(!superuser && !bypass);
    for table in ["pilots", "pilot_versions", "schedules", "webhook_secrets"] {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM catalog.{table}")))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(n, 0, "{table} without app.owner_id");
    }
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM catalog.pilots")
        .fetch_one(&cat.superuser().await)
        .await
        .unwrap();
    assert_eq!(total, 1, "the row exists; RLS hid it");
}

#[tokio::test]
async fn internal_rpcs_refuse_users_and_the_wrong_services() {
    let cat = Catalog::start().await;
    let token = cat.user(owner());
    let verify = || pb::VerifyWebhookRequest {
        pilot_id: uuid::Uuid::now_v7().to_string(),
        headers: vec![],
        body: Default::default(),
    };
    let mut c = cat.client();
    assert_status(
        c.verify_webhook(authed(&token, verify())).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    assert_status(
        c.verify_webhook(as_service(&cat.executor, verify())).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    assert_status(
        c.verify_webhook(tonic::Request::new(verify())).await,
        Code::Unauthenticated,
        "UNAUTHENTICATED",
    );
    let due = pb::ListDueSchedulesRequest::default();
    assert_status(
        c.list_due_schedules(as_service(&cat.gateway, due.clone())).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    assert_status(
        c.list_due_schedules(authed(&token, due)).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    let del = pb::DeleteOwnerDataRequest { owner_id: uuid::Uuid::now_v7().to_string() };
    assert_status(
        c.delete_owner_data(as_service(&cat.executor, del.clone())).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    assert_status(
        c.delete_owner_data(authed(&token, del)).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
}

#[tokio::test]
async fn delete_owner_data_removes_everything_of_that_owner_only_and_is_idempotent() {
    let cat = Catalog::start().await;
    let (a, b) = (owner(), owner());
    for _ in 0..3 {
        cat.create(&cat.user(a), sample_spec()).await;
    }
    let kept = cat.create(&cat.user(b), sample_spec()).await.pilot.unwrap();
    let req = || as_service(&cat.identity, pb::DeleteOwnerDataRequest { owner_id: a.to_string() });
    assert_eq!(cat.client().delete_owner_data(req()).await.unwrap().into_inner().pilots_deleted, 3);
    assert_eq!(
        cat.client().delete_owner_data(req()).await.unwrap().into_inner().pilots_deleted,
        0,
        "idempotent"
    );
    let pool = cat.superuser().await;
    for table in ["pilots", "pilot_versions", "schedules", "webhook_secrets", "outbox"] {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM catalog.{table} WHERE owner_id = $1"
        )))
        .bind(a.as_uuid())
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(n, 0, "{table}");
    }
    let b_still =
        cat.client().get_pilot(authed(&cat.user(b), pb::GetPilotRequest { pilot_id: kept.id })).await;
    assert!(b_still.is_ok(), "the other owner is untouched");
}

#[tokio::test]
async fn get_version_for_run_checks_the_owner() {
    let cat = Catalog::start().await;
    let a = owner();
    let pilot = cat.create(&cat.user(a), sample_spec()).await.pilot.unwrap();
    let req = |owner: bizops_authn::OwnerId| {
        as_service(
            &cat.executor,
            pb::GetVersionForRunRequest {
                owner_id: owner.to_string(),
                pilot_id: pilot.id.clone(),
                version: 1,
            },
        )
    };
    let got = cat.client().get_version_for_run(req(a)).await.unwrap().into_inner();
    assert!(got.enabled);
    assert_eq!(got.version.unwrap().spec.unwrap(), pilot.spec.clone().unwrap());
    assert_status(cat.client().get_version_for_run(req(owner())).await, Code::NotFound, "NOT_FOUND");
}
