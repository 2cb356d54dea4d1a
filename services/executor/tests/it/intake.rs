//! Intake, manual runs, replays, cancellation, the scheduler and the DLQ.

use std::time::Duration;

use bizops_proto::{
    catalog::v1 as cpb,
    events::v1::{self as ev, RunStatus},
    executor::v1 as pb,
    timestamp::to_proto,
};
use futures_util::StreamExt as _;
use prost::Message as _;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::path};

use crate::harness::*;

#[tokio::test]
async fn a_redelivered_or_duplicate_trigger_creates_one_run() {
    let env = Env::new().await;
    let exec = env.start(env.config()).await;
    let owner = owner();
    let pilot = env.pilot(owner.as_uuid(), vec![step("a", transform("{}"))]);
    // Same idempotency key, different message ids: JetStream dedup does not catch it,
    // the database's unique (Pilot, key) does.
    env.trigger(owner.as_uuid(), pilot, "same-key", serde_json::json!({})).await;
    env.trigger(owner.as_uuid(), pilot, "same-key", serde_json::json!({})).await;
    env.wait_run(&exec, owner, pilot, TERMINAL).await;
    // Both triggers taken in (a second run would be stored before its ack).
    env.quiesce(&[&exec]).await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM executor.runs WHERE pilot_id = $1")
        .bind(pilot)
        .fetch_one(&env.superuser().await)
        .await
        .unwrap();
    assert_eq!(n, 1);
    // The same key on another Pilot is another run.
    let other = env.pilot(owner.as_uuid(), vec![step("a", transform("{}"))]);
    env.trigger(owner.as_uuid(), other, "same-key", serde_json::json!({})).await;
    env.wait_run(&exec, owner, other, TERMINAL).await;
}

#[tokio::test]
async fn start_run_replay_and_cancel() {
    let env = Env::new().await;
    let outside = MockServer::start().await;
    Mock::given(path("/fail"))
        .respond_with(ResponseTemplate::new(400))
        .up_to_n_times(1)
        .mount(&outside)
        .await;
    Mock::given(path("/fail"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&outside)
        .await;
    let exec = env.start(env.config()).await;
    let owner = owner();
    let token = env.user(owner);
    let pilot = env.pilot(
        owner.as_uuid(),
        vec![
            step("first", transform(r#"{"x": {{ trigger.x }}}"#)),
            step("call", http(cpb::HttpMethod::Get, &format!("{}/fail", outside.uri()))),
        ],
    );
    let started = exec
        .client
        .clone()
        .start_run(authed(
            &token,
            pb::StartRunRequest {
                pilot_id: pilot.to_string(),
                payload_json: r#"{"x": 5}"#.into(),
                idempotency_key: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!started.trigger_id.is_empty());
    let failed = env.wait_run(&exec, owner, pilot, &[RunStatus::Failed]).await;
    assert_eq!(failed.source, ev::TriggerSource::Manual as i32);

    // Replay from the failed step: the first step's result is carried over.
    exec.client
        .clone()
        .replay_run(authed(
            &token,
            pb::ReplayRunRequest { run_id: failed.id.clone(), from_failed_step: true },
        ))
        .await
        .unwrap();
    let replayed = env.wait_run(&exec, owner, pilot, &[RunStatus::Succeeded]).await;
    assert_eq!(replayed.replay_of_run_id, failed.id);
    assert_eq!(output(&replayed, "first"), serde_json::json!({"x": 5}));
    assert_eq!(outside.received_requests().await.unwrap().len(), 2);

    // Another owner cannot start it; a bad payload is refused.
    let stranger = env.user(owner_id());
    let s = exec
        .client
        .clone()
        .start_run(authed(
            &stranger,
            pb::StartRunRequest {
                pilot_id: pilot.to_string(),
                payload_json: "{}".into(),
                idempotency_key: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::NotFound);
    let s = exec
        .client
        .clone()
        .start_run(authed(
            &token,
            pb::StartRunRequest {
                pilot_id: pilot.to_string(),
                payload_json: "{nope".into(),
                idempotency_key: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::InvalidArgument);

    // Cancel a run that waits for an approval.
    let waits = env.pilot(
        owner.as_uuid(),
        vec![step(
            "ask",
            bizops_proto::catalog::v1::step::Kind::Approval(cpb::ApprovalStep {
                message: "ok?".into(),
                expires_after_seconds: 0,
            }),
        )],
    );
    env.trigger(owner.as_uuid(), waits, "c", serde_json::json!({})).await;
    let waiting = env.wait_run(&exec, owner, waits, &[RunStatus::AwaitingApproval]).await;
    let cancelled = exec
        .client
        .clone()
        .cancel_run(authed(&token, pb::CancelRunRequest { run_id: waiting.id.clone() }))
        .await
        .unwrap();
    assert_eq!(cancelled.into_inner().run.unwrap().status, RunStatus::Cancelled as i32);
    let approvals = exec
        .client
        .clone()
        .list_approvals(authed(&token, pb::ListApprovalsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(approvals.approvals.is_empty(), "a cancelled run's approval is gone");
    let again = exec
        .client
        .clone()
        .cancel_run(authed(&token, pb::CancelRunRequest { run_id: waiting.id }))
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::FailedPrecondition);
}

fn owner_id() -> bizops_authn::OwnerId {
    owner()
}

#[tokio::test]
async fn poison_messages_go_to_the_dlq() {
    let env = Env::new().await;
    let _exec = env.start(env.config()).await;
    let (o, p) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    env.js
        .publish(env.subjects.trigger(o, p), "not a protobuf trigger \u{0}\u{ff}".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let stream = env.js.get_stream(env.subjects.dlq_stream()).await.unwrap();
    let consumer =
        stream.create_consumer(async_nats::jetstream::consumer::pull::Config::default()).await.unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(10), messages.next())
        .await
        .expect("dead letter")
        .unwrap()
        .unwrap();
    let letter = ev::DeadLetter::decode(msg.payload.as_ref()).unwrap();
    assert!(letter.reason.contains("not a Trigger"), "{letter:?}");
}

#[tokio::test]
async fn two_schedulers_fire_a_tick_exactly_once() {
    let env = Env::new().await;
    let owner = owner();
    let pilot = env.pilot(
        owner.as_uuid(),
        vec![step("a", transform(r#"{"at": {{ trigger.scheduled_for | tojson }}}"#))],
    );
    let tick = time::OffsetDateTime::now_utc() + time::Duration::milliseconds(600);
    env.catalog.due.lock().unwrap().push(cpb::DueSchedule {
        owner_id: owner.to_string(),
        pilot_id: pilot.to_string(),
        schedule_id: uuid::Uuid::now_v7().to_string(),
        tick: Some(to_proto(tick)),
        pilot_version: 1,
    });
    let a = env.start(env.config()).await;
    let b = env.start(env.config()).await;
    let run = env.wait_run(&a, owner, pilot, TERMINAL).await;
    assert_eq!(run.source, ev::TriggerSource::Schedule as i32);
    // Both schedulers have had a whole tick after the run (any second firing is
    // published by then), and the intake has taken in whatever they fired.
    full_pass("scheduler", a.progress.scheduler_passes()).await;
    full_pass("scheduler", b.progress.scheduler_passes()).await;
    env.quiesce(&[&a, &b]).await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM executor.runs WHERE pilot_id = $1")
        .bind(pilot)
        .fetch_one(&env.superuser().await)
        .await
        .unwrap();
    assert_eq!(n, 1, "one run per tick with two executors");
}

/// A window with more ticks than a pass hands out (20 pages) loses none: the
/// mark advances only to what was fired, and the next pass fires the rest.
#[tokio::test]
async fn ticks_beyond_a_pass_are_fired_by_the_next_one() {
    let env = Env::new().await;
    let owner = owner();
    let pilot = env.pilot(owner.as_uuid(), vec![step("a", transform("{}"))]);
    env.catalog.due_page.store(2, std::sync::atomic::Ordering::SeqCst);
    let now = time::OffsetDateTime::now_utc();
    let schedule = uuid::Uuid::now_v7().to_string();
    // 45 ticks in the last minute (within the catch-up): 23 pages of 2.
    for i in 0..45 {
        env.catalog.due.lock().unwrap().push(cpb::DueSchedule {
            owner_id: owner.to_string(),
            pilot_id: pilot.to_string(),
            schedule_id: schedule.clone(),
            tick: Some(to_proto(now - time::Duration::seconds(50 - i))),
            pilot_version: 1,
        });
    }
    // The scheduler last fired a minute ago: its first pass covers all 45.
    let pool = env.superuser().await;
    sqlx::query("INSERT INTO executor.scheduler_state (id, last_tick) VALUES (1, $1)")
        .bind(now - time::Duration::seconds(60))
        .execute(&pool)
        .await
        .unwrap();
    let exec = env.start(env.config()).await;
    bizops_testkit::eventually("all 45 ticks to become runs", bizops_testkit::PATIENCE, || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM executor.runs WHERE pilot_id = $1")
            .bind(pilot)
            .fetch_one(&pool)
            .await
            .unwrap();
        (n == 45).then_some(())
    })
    .await;
    full_pass("scheduler", exec.progress.scheduler_passes()).await;
    env.quiesce(&[&exec]).await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM executor.runs WHERE pilot_id = $1")
        .bind(pilot)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 45, "every tick once");
}

/// Postgres cannot store a NUL in text: a trigger whose key carries one is
/// dead-lettered at intake, and the triggers around it (same batch) still run.
#[tokio::test]
async fn a_trigger_the_database_cannot_store_does_not_hold_up_its_batch() {
    let env = Env::new().await;
    let exec = env.start(env.config()).await;
    let owner = owner();
    let pilot = env.pilot(owner.as_uuid(), vec![step("x", transform("{}"))]);
    env.trigger(owner.as_uuid(), pilot, "good-1", serde_json::json!({})).await;
    env.trigger(owner.as_uuid(), pilot, "bad\0key", serde_json::json!({})).await;
    env.trigger(owner.as_uuid(), pilot, "good-2", serde_json::json!({})).await;
    let pool = env.superuser().await;
    let done =
        bizops_testkit::eventually("two triggers of the batch to run", bizops_testkit::PATIENCE, || async {
            let done: Vec<String> = sqlx::query_scalar(
                "SELECT idempotency_key FROM executor.runs WHERE pilot_id = $1 AND status = $2 ORDER BY 1",
            )
            .bind(pilot)
            .bind(RunStatus::Succeeded as i16)
            .fetch_all(&pool)
            .await
            .unwrap();
            (done.len() == 2).then_some(done)
        })
        .await;
    assert_eq!(done, ["good-1", "good-2"]);
    let _ = exec;
}

/// A step output with a NUL (copied from the trigger) is stored with U+FFFD, so
/// the run ends instead of failing to be stored again and again.
#[tokio::test]
async fn a_nul_in_a_step_output_does_not_keep_the_run_from_ending() {
    let env = Env::new().await;
    let exec = env.start(env.config()).await;
    let owner = owner();
    let pilot =
        env.pilot(owner.as_uuid(), vec![step("copy", transform(r#"{"text": {{ trigger.text | tojson }}}"#))]);
    env.trigger(owner.as_uuid(), pilot, "nul", serde_json::json!({"text": "a\u{0}b"})).await;
    let run = env.wait_run(&exec, owner, pilot, TERMINAL).await;
    assert_eq!(run.status, RunStatus::Succeeded as i32, "{run:?}");
    assert_eq!(output(&run, "copy")["text"], "a\u{FFFD}b");
}
