//! Run cap, job sweep, pilot-deleted events, stream and consumer settings.

use std::time::Duration;

use async_nats::jetstream::stream::RetentionPolicy;
use bizops_proto::{events::v1 as ev, timestamp::to_proto};
use bizops_testkit::{PATIENCE, eventually, until};

use crate::harness::*;

#[tokio::test]
async fn the_101st_run_deletes_the_oldest() {
    let env = Env::new().await;
    let mut config = env.config();
    config.runs.max_per_pilot = 100;
    let exec = env.start(config).await;
    let owner = owner();
    let pilot = env.pilot(owner.as_uuid(), vec![step("x", transform("{}"))]);
    for i in 0..100 {
        env.trigger(owner.as_uuid(), pilot, &format!("k{i}"), serde_json::json!({})).await;
    }
    let pool = env.superuser().await;
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM executor.runs WHERE pilot_id = $1")
            .bind(pilot)
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    until("100 runs to be recorded", Duration::from_secs(30), || async { count().await >= 100 }).await;
    let oldest: uuid::Uuid = sqlx::query_scalar(
        "SELECT id FROM executor.runs WHERE pilot_id = $1 ORDER BY created_at, id LIMIT 1",
    )
    .bind(pilot)
    .fetch_one(&pool)
    .await
    .unwrap();
    env.trigger(owner.as_uuid(), pilot, "k100", serde_json::json!({})).await;
    until("the oldest run to be deleted", PATIENCE, || async {
        sqlx::query_scalar("SELECT NOT EXISTS (SELECT 1 FROM executor.runs WHERE id = $1)")
            .bind(oldest)
            .fetch_one(&pool)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(count().await, 100);
    let _ = exec;
}

/// An accepted trigger is never lost to the cap: runs still unfinished (here
/// awaiting a decision) stay beyond it, and go once they finish.
#[tokio::test]
async fn unfinished_runs_beyond_the_cap_stay_until_they_finish() {
    use bizops_proto::{
        catalog::v1::{self as cpb, step::Kind},
        executor::v1 as pb,
    };
    let env = Env::new().await;
    let mut config = env.config();
    config.runs.max_per_pilot = 2;
    let exec = env.start(config).await;
    let owner = owner();
    let token = env.user(owner);
    let ask = Kind::Approval(cpb::ApprovalStep { message: "ok?".into(), expires_after_seconds: 0 });
    let pilot = env.pilot(owner.as_uuid(), vec![step("ask", ask)]);
    let pool = env.superuser().await;
    let waiting = || async {
        sqlx::query_scalar::<_, uuid::Uuid>(
            "SELECT id FROM executor.runs WHERE pilot_id = $1 AND status = $2 ORDER BY created_at, id",
        )
        .bind(pilot)
        .bind(ev::RunStatus::AwaitingApproval as i16)
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    for (i, n) in (1..=4).enumerate() {
        env.trigger(owner.as_uuid(), pilot, &format!("u{i}"), serde_json::json!({})).await;
        until(format!("run {n} to pause"), PATIENCE, || async { waiting().await.len() >= n }).await;
    }
    // A whole sweep ran over the four paused runs.
    full_pass("sweep", exec.progress.sweeps()).await;
    let runs = waiting().await;
    assert_eq!(runs.len(), 4, "no unfinished run is deleted for the cap of 2");

    // The oldest finishes (cancelled): the sweep deletes it; the other three wait on.
    exec.client
        .clone()
        .cancel_run(authed(&token, pb::CancelRunRequest { run_id: runs[0].to_string() }))
        .await
        .unwrap();
    let left = eventually("the finished run beyond the cap to be pruned", PATIENCE, || async {
        let left: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM executor.runs WHERE pilot_id = $1")
            .bind(pilot)
            .fetch_all(&pool)
            .await
            .unwrap();
        (!left.contains(&runs[0])).then_some(left)
    })
    .await;
    assert_eq!(left.len(), 3, "only the finished run beyond the cap went");
    let _ = exec;
}

#[tokio::test]
async fn finished_jobs_older_than_the_retention_are_swept() {
    let env = Env::new().await;
    let clock = bizops_runtime::clock::ShiftedClock::default();
    let exec = env.start_with_clock(env.config(), std::sync::Arc::new(clock.clone())).await;
    let owner = owner();
    let pilot = env.pilot(owner.as_uuid(), vec![step("x", transform("{}"))]);
    env.trigger(owner.as_uuid(), pilot, "old", serde_json::json!({"secret": "payload"})).await;
    env.trigger(owner.as_uuid(), pilot, "new", serde_json::json!({})).await;
    env.wait_run(&exec, owner, pilot, TERMINAL).await;
    let pool = env.superuser().await;
    until("both jobs to finish", PATIENCE, || async {
        let finished: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM executor.jobs WHERE pilot_id = $1 AND finished_at IS NOT NULL",
        )
        .bind(pilot)
        .fetch_one(&pool)
        .await
        .unwrap();
        finished == 2
    })
    .await;
    // Make the "new" job finish a day later than "old" (as if triggered then),
    // then move the sweeper's clock: just short of 7 days after "old" finished
    // nothing goes; just past it, "old" goes and "new" (6 days old) stays.
    sqlx::query(
        "UPDATE executor.jobs SET finished_at = finished_at + interval '1 day' WHERE idempotency_key = 'new'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let keys = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT idempotency_key FROM executor.jobs WHERE pilot_id = $1 ORDER BY 1",
        )
        .bind(pilot)
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    clock.set_offset(time::Duration::days(7) - time::Duration::minutes(1));
    full_pass("sweep", exec.progress.sweeps()).await; // one that read the moved clock
    assert_eq!(keys().await, ["new", "old"], "nothing is swept before 7 days");
    clock.set_offset(time::Duration::days(7) + time::Duration::minutes(1));
    until("the old job to be swept (and only it)", PATIENCE, || async { keys().await == ["new"] }).await;
    // The run stays (history), without its payload.
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM executor.runs WHERE pilot_id = $1")
        .bind(pilot)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(runs, 2);
}

/// AI token counts matter for the current UTC day only; the sweep deletes
/// those of days before yesterday.
#[tokio::test]
async fn ai_usage_of_past_days_is_swept() {
    let env = Env::new().await;
    let exec = env.start(env.config()).await;
    let pool = env.superuser().await;
    let owner = owner();
    for days_ago in [0, 1, 2, 30] {
        sqlx::query(
            "INSERT INTO executor.ai_usage (owner_id, day, tokens)
             VALUES ($1, (now() AT TIME ZONE 'UTC')::date - $2::int, 10)",
        )
        .bind(owner.as_uuid())
        .bind(days_ago)
        .execute(&pool)
        .await
        .unwrap();
    }
    full_pass("sweep", exec.progress.sweeps()).await;
    let left: Vec<i32> = sqlx::query_scalar(
        "SELECT ((now() AT TIME ZONE 'UTC')::date - day)::int FROM executor.ai_usage WHERE owner_id = $1 ORDER BY 1",
    )
    .bind(owner.as_uuid())
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(left, [0, 1]);
}

#[tokio::test]
async fn a_pilot_deleted_event_removes_that_pilots_runs_and_queued_triggers() {
    let env = Env::new().await;
    let exec = env.start(env.config()).await;
    let owner = owner();
    let doomed = env.pilot(owner.as_uuid(), vec![step("x", transform("{}"))]);
    let kept = env.pilot(owner.as_uuid(), vec![step("x", transform("{}"))]);
    env.trigger(owner.as_uuid(), doomed, "1", serde_json::json!({})).await;
    env.trigger(owner.as_uuid(), kept, "1", serde_json::json!({})).await;
    env.wait_run(&exec, owner, doomed, TERMINAL).await;
    env.wait_run(&exec, owner, kept, TERMINAL).await;
    env.catalog.remove_pilot(doomed);
    let event = ev::PilotDeleted {
        owner_id: owner.to_string(),
        pilot_id: doomed.to_string(),
        deleted_at: Some(to_proto(time::OffsetDateTime::now_utc())),
    };
    bizops_bus::publish(
        &env.js,
        env.subjects.event(owner.as_uuid(), bizops_bus::EventKind::PilotDeleted),
        None,
        bizops_bus::encode(&event),
    )
    .await
    .unwrap();
    let pool = env.superuser().await;
    until("the deleted Pilot's runs and jobs to go", PATIENCE, || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM executor.runs WHERE pilot_id = $1")
            .bind(doomed)
            .fetch_one(&pool)
            .await
            .unwrap();
        let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM executor.jobs WHERE pilot_id = $1")
            .bind(doomed)
            .fetch_one(&pool)
            .await
            .unwrap();
        n == 0 && jobs == 0
    })
    .await;
    let kept_runs: i64 = sqlx::query_scalar("SELECT count(*) FROM executor.runs WHERE pilot_id = $1")
        .bind(kept)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(kept_runs, 1);
}

#[tokio::test]
async fn streams_and_the_consumer_have_the_documented_settings() {
    let env = Env::new().await;
    let _exec = env.start(env.config()).await;
    let week = Duration::from_secs(7 * 24 * 3600);
    let mut triggers = env.js.get_stream(env.subjects.triggers_stream()).await.unwrap();
    let info = triggers.info().await.unwrap();
    assert_eq!((info.config.retention, info.config.max_age), (RetentionPolicy::WorkQueue, week));
    assert!(info.config.duplicate_window > Duration::ZERO);
    for name in [env.subjects.events_stream(), env.subjects.dlq_stream()] {
        let mut s = env.js.get_stream(&name).await.unwrap();
        assert_eq!(s.info().await.unwrap().config.max_age, week, "{name}");
    }
    let consumer = eventually("the durable consumer", PATIENCE, || async {
        triggers.get_consumer::<async_nats::jetstream::consumer::pull::Config>("executor").await.ok()
    })
    .await;
    let config = &consumer.cached_info().config;
    assert_eq!(config.durable_name.as_deref(), Some("executor"));
    assert_eq!(config.ack_policy, async_nats::jetstream::consumer::AckPolicy::Explicit);
    assert_eq!((config.ack_wait, config.max_deliver), (Duration::from_secs(30), 5));
}
