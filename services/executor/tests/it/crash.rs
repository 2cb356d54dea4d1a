//! An executor dies mid-run (its runtime is killed, its lease left behind); another
//! one resumes the run at the first unfinished step: the run completes exactly
//! once, finished steps are not repeated, no trigger is lost.

use std::time::Duration;

use bizops_proto::{catalog::v1 as cpb, events::v1::RunStatus};
use bizops_testkit::{PATIENCE, until};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::path};

use crate::harness::*;

#[tokio::test]
async fn a_run_left_behind_by_a_dead_executor_completes_exactly_once() {
    let env = Env::new().await;
    let outside = MockServer::start().await;
    Mock::given(path("/one"))
        .respond_with(ResponseTemplate::new(200).set_body_string("1"))
        .mount(&outside)
        .await;
    Mock::given(path("/two"))
        .respond_with(ResponseTemplate::new(200).set_body_string("2").set_delay(Duration::from_millis(1500)))
        .mount(&outside)
        .await;
    let owner = owner();
    let pilot = env.pilot(
        owner.as_uuid(),
        vec![
            step("one", http(cpb::HttpMethod::Post, &format!("{}/one", outside.uri()))),
            step("two", http(cpb::HttpMethod::Post, &format!("{}/two", outside.uri()))),
            step("three", transform(r#"{"done": true}"#)),
        ],
    );
    let mut config = env.config();
    config.runs.lease = Duration::from_secs(2);
    let doomed = env.start_killable(config.clone());
    env.trigger(owner.as_uuid(), pilot, "crash", serde_json::json!({})).await;

    // Kill it while step two is in flight.
    until("step two to start", PATIENCE, || async {
        outside.received_requests().await.unwrap().iter().any(|r| r.url.path() == "/two")
    })
    .await;
    doomed.kill();

    // Another executor takes over after the lease runs out.
    let survivor = env.start(config).await;
    let run = env.wait_run(&survivor, owner, pilot, TERMINAL).await;
    assert_eq!(run.status, RunStatus::Succeeded as i32, "{run:?}");
    let requests = outside.received_requests().await.unwrap();
    assert_eq!(
        requests.iter().filter(|r| r.url.path() == "/one").count(),
        1,
        "a finished step never runs again"
    );
    assert!(requests.iter().filter(|r| r.url.path() == "/two").count() >= 1);
    assert_eq!(step_of(&run, "one").attempts, 1);
    assert_eq!(output(&run, "three"), serde_json::json!({"done": true}));

    // Exactly one run for the trigger.
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM executor.runs WHERE pilot_id = $1")
        .bind(pilot)
        .fetch_one(&env.superuser().await)
        .await
        .unwrap();
    assert_eq!(runs, 1);
}

#[tokio::test]
async fn a_graceful_shutdown_lets_the_step_in_flight_finish() {
    let env = Env::new().await;
    let outside = MockServer::start().await;
    Mock::given(path("/slow"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok").set_delay(Duration::from_millis(800)))
        .mount(&outside)
        .await;
    let owner = owner();
    let pilot = env.pilot(
        owner.as_uuid(),
        vec![step("slow", http(cpb::HttpMethod::Post, &format!("{}/slow", outside.uri())))],
    );
    let exec = env.start(env.config()).await;
    env.trigger(owner.as_uuid(), pilot, "g", serde_json::json!({})).await;
    until("the step to start", PATIENCE, || async { !outside.received_requests().await.unwrap().is_empty() })
        .await;
    exec.stop().await;
    let pool = env.superuser().await;
    let (status, lease): (i16, Option<String>) =
        sqlx::query_as("SELECT status, lease_owner FROM executor.runs WHERE pilot_id = $1")
            .bind(pilot)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        status,
        RunStatus::Succeeded as i16,
        "the in-flight step finished before the executor stopped"
    );
    assert!(lease.is_none(), "no lease is left behind");
    assert_eq!(outside.received_requests().await.unwrap().len(), 1);
}
