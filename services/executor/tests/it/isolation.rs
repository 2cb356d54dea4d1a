//! Ownership on every user RPC, RLS, and internal-only RPCs.

use bizops_proto::{events::v1::RunStatus, executor::v1 as pb};
use sqlx::{Connection as _, PgConnection};
use tonic::Code;

use crate::harness::*;

#[tokio::test]
async fn owner_b_sees_nothing_of_owner_a() {
    let env = Env::new().await;
    let exec = env.start(env.config()).await;
    let a = owner();
    let b = env.user(owner());
    let pilot = env.pilot(
        a.as_uuid(),
        vec![step(
            "ask",
            bizops_proto::catalog::v1::step::Kind::Approval(bizops_proto::catalog::v1::ApprovalStep {
                message: "?".into(),
                expires_after_seconds: 0,
            }),
        )],
    );
    env.trigger(a.as_uuid(), pilot, "i", serde_json::json!({})).await;
    let run = env.wait_run(&exec, a, pilot, &[RunStatus::AwaitingApproval]).await;
    let approval = exec
        .client
        .clone()
        .list_approvals(authed(&env.user(a), pb::ListApprovalsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .approvals
        .remove(0);

    let mut c = exec.client.clone();
    assert_eq!(
        c.get_run(authed(&b, pb::GetRunRequest { run_id: run.id.clone() })).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        c.cancel_run(authed(&b, pb::CancelRunRequest { run_id: run.id.clone() })).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        c.replay_run(authed(&b, pb::ReplayRunRequest { run_id: run.id.clone(), from_failed_step: false }))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let decide = pb::DecideApprovalRequest {
        approval_id: approval.id.clone(),
        decision: pb::Decision::Approve as i32,
        comment: String::new(),
    };
    assert_eq!(c.decide_approval(authed(&b, decide)).await.unwrap_err().code(), Code::NotFound);
    let listed = c
        .list_runs(authed(
            &b,
            pb::ListRunsRequest { pilot_id: pilot.to_string(), page_size: 0, page_token: String::new() },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.runs.is_empty());
    assert!(
        c.list_approvals(authed(&b, pb::ListApprovalsRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .approvals
            .is_empty()
    );
    // Still waiting, untouched.
    let still = c
        .get_run(authed(&env.user(a), pb::GetRunRequest { run_id: run.id }))
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    assert_eq!(still.status, RunStatus::AwaitingApproval as i32);

    // Internal-only RPCs.
    let del = pb::DeleteOwnerDataRequest { owner_id: a.to_string() };
    assert_eq!(
        c.delete_owner_data(authed(&env.user(a), del.clone())).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    assert_eq!(
        c.delete_owner_data(tonic::Request::new(del)).await.unwrap_err().code(),
        Code::Unauthenticated
    );
}

#[tokio::test]
async fn the_service_role_sees_nothing_without_an_owner() {
    let env = Env::new().await;
    let exec = env.start(env.config()).await;
    let a = owner();
    let pilot = env.pilot(a.as_uuid(), vec![step("x", transform("{}"))]);
    env.trigger(a.as_uuid(), pilot, "r", serde_json::json!({})).await;
    env.wait_run(&exec, a, pilot, TERMINAL).await;
    sqlx::query("INSERT INTO executor.ai_usage (owner_id, day, tokens) VALUES ($1, current_date, 10)")
        .bind(a.as_uuid())
        .execute(&env.superuser().await)
        .await
        .unwrap();
    let mut conn = PgConnection::connect(&env.db.url("bizops_executor")).await.unwrap();
    let (superuser, bypass): (bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(!superuser && !bypass);
    for table in ["jobs", "runs", "step_runs", "approvals"] {
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM executor.{table}")))
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!(n, 0, "{table}");
    }
    // AI usage is the system role's alone (the engine's budget): not even readable.
    let denied = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM executor.ai_usage")
        .fetch_one(&mut conn)
        .await
        .unwrap_err();
    assert!(
        matches!(&denied, sqlx::Error::Database(e) if e.code().as_deref() == Some("42501")),
        "{denied:?}"
    );
}

#[tokio::test]
async fn delete_owner_data_removes_runs_jobs_and_queued_triggers() {
    let env = Env::new().await;
    let exec = env.start(env.config()).await;
    let (a, b) = (owner(), owner());
    let pa = env.pilot(a.as_uuid(), vec![step("x", transform("{}"))]);
    let pb_ = env.pilot(b.as_uuid(), vec![step("x", transform("{}"))]);
    env.trigger(a.as_uuid(), pa, "1", serde_json::json!({})).await;
    env.trigger(b.as_uuid(), pb_, "1", serde_json::json!({})).await;
    env.wait_run(&exec, a, pa, TERMINAL).await;
    env.wait_run(&exec, b, pb_, TERMINAL).await;
    for o in [a, b] {
        sqlx::query("INSERT INTO executor.ai_usage (owner_id, day, tokens) VALUES ($1, current_date, 10)")
            .bind(o.as_uuid())
            .execute(&env.superuser().await)
            .await
            .unwrap();
    }
    let req = || {
        authed(
            &env.identity.token_for("executor").unwrap(),
            pb::DeleteOwnerDataRequest { owner_id: a.to_string() },
        )
    };
    let first = exec.client.clone().delete_owner_data(req()).await.unwrap().into_inner();
    assert_eq!((first.runs_deleted, first.jobs_deleted), (1, 1));
    let second = exec.client.clone().delete_owner_data(req()).await.unwrap().into_inner();
    assert_eq!((second.runs_deleted, second.jobs_deleted), (0, 0), "idempotent");
    let pool = env.superuser().await;
    for table in ["jobs", "runs", "step_runs", "approvals", "ai_usage"] {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM executor.{table} WHERE owner_id = $1"
        )))
        .bind(a.as_uuid())
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(n, 0, "{table}");
    }
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM executor.runs WHERE owner_id = $1")
        .bind(b.as_uuid())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(kept, 1);
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM executor.ai_usage WHERE owner_id = $1")
        .bind(b.as_uuid())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(kept, 1);
}
