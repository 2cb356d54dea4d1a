//! Execution slots: one owner's runs cannot hold every executor. An owner has
//! `runs.owner_concurrency` slots over all replicas (the rest of its runs wait
//! their turn), a run waiting to retry gives its slot up, and a run may hold a
//! slot for its execution deadline in all.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bizops_proto::{
    catalog::v1 as cpb,
    events::v1::{RunStatus, StepStatus},
    executor::v1 as pb,
};
use bizops_testkit::{PATIENCE, until};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use uuid::Uuid;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::path};

use crate::harness::*;

/// An HTTP endpoint that holds every request until it is opened, counting the
/// requests it holds, the most it held at once, and the paths in arrival order.
struct Gate {
    addr: std::net::SocketAddr,
    open: tokio::sync::watch::Sender<bool>,
    held: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    paths: Arc<Mutex<Vec<String>>>,
}

impl Gate {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (open, opened) = tokio::sync::watch::channel(false);
        let (held, peak, paths) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::default());
        let gate = Self { addr, open, held: held.clone(), peak: peak.clone(), paths: Arc::clone(&paths) };
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (held, peak, paths, mut opened) =
                    (held.clone(), peak.clone(), paths.clone(), opened.clone());
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let n = socket.read(&mut request).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&request[..n]);
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                    paths.lock().unwrap().push(path);
                    let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    let _ = opened.wait_for(|open| *open).await;
                    held.fetch_sub(1, Ordering::SeqCst);
                    let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\
                                  connection: close\r\n\r\n{}";
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        gate
    }

    fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }
}

/// An HTTP step to `url` that waits up to a minute for the answer.
fn call(url: &str) -> cpb::Step {
    cpb::Step { timeout_ms: 60_000, ..step("call", http(cpb::HttpMethod::Get, url)) }
}

async fn runs_of(exec: &Exec, token: &str, pilot: Uuid) -> Vec<pb::Run> {
    exec.client
        .clone()
        .list_runs(authed(
            token,
            pb::ListRunsRequest { pilot_id: pilot.to_string(), page_size: 100, page_token: String::new() },
        ))
        .await
        .unwrap()
        .into_inner()
        .runs
}

#[tokio::test]
async fn an_owner_runs_at_most_its_slots_at_once_over_every_replica_and_the_rest_wait_their_turn() {
    let env = Env::new().await;
    let gate = Gate::start().await;
    let config = || {
        let mut c = env.config();
        c.runs.owner_concurrency = 2;
        c
    };
    let (first, second) = (env.start(config()).await, env.start(config()).await);
    let (busy, other) = (owner(), owner());
    let slow = env.pilot(busy.as_uuid(), vec![call(&format!("http://{}/{{{{ trigger.n }}}}", gate.addr))]);
    for n in 0..6 {
        env.trigger(busy.as_uuid(), slow, &format!("s{n}"), serde_json::json!({"n": n})).await;
    }
    until("two of the owner's runs to reach the endpoint", PATIENCE, || async { gate.held() == 2 }).await;
    // The other four wait, unleased (so no replica holds them), and not as
    // takeovers of anyone's.
    let db = env.superuser().await;
    until("the other four runs to wait for a slot", PATIENCE, || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM executor.runs WHERE pilot_id = $1 AND status = 2 AND lease_owner IS NULL
               AND NOT executing",
        )
        .bind(slow)
        .fetch_one(&db)
        .await
        .unwrap();
        waiting == 4
    })
    .await;

    // They are no queue lag for the autoscaler: more executors would not run
    // them sooner. With more slots they would be.
    let system = executor::system::SystemStore::new(db.clone());
    let ready = |n| {
        let system = system.clone();
        async move { system.workload(n).await.unwrap().ready }
    };
    assert_eq!(ready(2).await, 0, "the owner's slots are all taken");
    assert_eq!(ready(3).await, 1, "one slot free, four waiting");
    assert_eq!(ready(10).await, 4, "every waiting run could start");
    assert_eq!(system.workload(2).await.unwrap().executing, 2);
    // Runs released at a shutdown (no lease at all) are waiting too.
    sqlx::query(
        "UPDATE executor.runs SET lease_until = NULL WHERE pilot_id = $1 AND lease_owner IS NULL AND NOT executing",
    )
    .bind(slow)
    .execute(&db)
    .await
    .unwrap();
    assert_eq!(ready(10).await, 4, "runs without a lease are ready");

    // Another owner is not held up meanwhile.
    let quick = env.pilot(other.as_uuid(), vec![step("x", transform("{}"))]);
    env.trigger(other.as_uuid(), quick, "q", serde_json::json!({})).await;
    let done = env.wait_run(&first, other, quick, TERMINAL).await;
    assert_eq!(done.status, RunStatus::Succeeded as i32, "{done:?}");
    assert_eq!(gate.held(), 2, "still two of the busy owner's runs at the endpoint");

    // Once the endpoint answers, the waiting runs follow, two at a time at most.
    gate.open.send_replace(true);
    let token = env.user(busy);
    until("all six runs to succeed", PATIENCE, || async {
        let runs = runs_of(&second, &token, slow).await;
        runs.len() == 6 && runs.iter().all(|r| r.status == RunStatus::Succeeded as i32)
    })
    .await;
    assert_eq!(gate.peak.load(Ordering::SeqCst), 2, "never more than the owner's two slots at once");
    let mut served = gate.paths.lock().unwrap().clone();
    served.sort();
    assert_eq!(served, ["/0", "/1", "/2", "/3", "/4", "/5"]);
    let takeovers: i64 = sqlx::query_scalar("SELECT sum(takeovers) FROM executor.runs WHERE pilot_id = $1")
        .bind(slow)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(takeovers, 0, "waiting for a slot is not a takeover");
}

#[tokio::test]
async fn a_run_waiting_to_retry_gives_its_slot_up_and_continues_where_it_was() {
    let env = Env::new().await;
    let flaky = MockServer::start().await;
    Mock::given(path("/flaky")).respond_with(ResponseTemplate::new(503)).mount(&flaky).await;
    let mut config = env.config();
    config.runs.owner_concurrency = 1;
    let exec = env.start(config).await;
    let owner = owner();
    let retrying = env.pilot(
        owner.as_uuid(),
        vec![cpb::Step {
            // Five to ten minutes between the attempts.
            retry: Some(cpb::RetryPolicy {
                max_attempts: 2,
                initial_backoff_ms: 600_000,
                max_backoff_ms: 600_000,
            }),
            ..call(&format!("{}/flaky", flaky.uri()))
        }],
    );
    env.trigger(owner.as_uuid(), retrying, "r", serde_json::json!({})).await;
    let db = env.superuser().await;
    let state = || async {
        sqlx::query_as::<_, (Option<String>, bool, bool, i32, Option<String>)>(
            "SELECT r.lease_owner, r.executing, r.lease_until > now() + interval '4 minutes', s.attempts, s.error
             FROM executor.runs r JOIN executor.step_runs s ON s.run_id = r.id AND s.idx = 0
             WHERE r.pilot_id = $1",
        )
        .bind(retrying)
        .fetch_optional(&db)
        .await
        .unwrap()
    };
    until("the first attempt to fail and the run to wait", PATIENCE, || async {
        matches!(state().await, Some((_, _, _, 1, Some(_))))
    })
    .await;
    let (holder, executing, later, _, error) = state().await.unwrap();
    // (The back-off is jittered: between half and all of it.)
    assert_eq!((holder, executing, later), (None, false, true), "no lease, no slot, picked up in minutes");
    let error = error.unwrap();
    assert!(
        error.starts_with("attempt 1 failed: the endpoint answered HTTP 503; trying again in "),
        "{error}"
    );
    assert!(error.contains(" min"), "{error}");

    // The owner's only slot is free: another run of it goes through meanwhile.
    let quick = env.pilot(owner.as_uuid(), vec![step("x", transform("{}"))]);
    env.trigger(owner.as_uuid(), quick, "q", serde_json::json!({})).await;
    let done = env.wait_run(&exec, owner, quick, TERMINAL).await;
    assert_eq!(done.status, RunStatus::Succeeded as i32, "{done:?}");

    // When the back-off has passed, the run continues at its second attempt.
    sqlx::query("UPDATE executor.runs SET lease_until = now() - interval '1 second' WHERE pilot_id = $1")
        .bind(retrying)
        .execute(&db)
        .await
        .unwrap();
    let run = env.wait_run(&exec, owner, retrying, TERMINAL).await;
    assert_eq!(run.status, RunStatus::Failed as i32, "{run:?}");
    let call = step_of(&run, "call");
    assert_eq!((call.status, call.attempts), (StepStatus::Failed as i32, 2), "{run:?}");
    assert_eq!(flaky.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_run_past_its_execution_deadline_fails_and_waiting_does_not_count() {
    let env = Env::new().await;
    let gate = Gate::start().await;
    let flaky = MockServer::start().await;
    // The first call fails, the next succeeds.
    Mock::given(path("/once"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&flaky)
        .await;
    Mock::given(path("/once")).respond_with(ResponseTemplate::new(200)).mount(&flaky).await;
    let mut config = env.config();
    config.runs.execution_deadline = Duration::from_secs(1);
    config.runs.max_execution_deadline = Duration::from_secs(2);
    let exec = env.start(config).await;
    let owner = owner();
    let token = env.user(owner);
    let pilot = |spec: cpb::PilotSpec| {
        let id = Uuid::now_v7();
        env.catalog.put(owner.as_uuid(), id, 1, cpb::PilotSpec { title: "T".into(), ..spec });
        id
    };

    // The server's default (1 s), and a Pilot's own limit cut to the server's
    // maximum (2 s): both end at the deadline, not after the step's minute.
    let stuck = format!("http://{}/never", gate.addr);
    let by_default = pilot(cpb::PilotSpec { steps: vec![call(&stuck)], ..Default::default() });
    let cut = pilot(cpb::PilotSpec {
        steps: vec![call(&stuck)],
        max_execution_seconds: 3600,
        ..Default::default()
    });
    let started = Instant::now();
    env.trigger(owner.as_uuid(), by_default, "d", serde_json::json!({})).await;
    env.trigger(owner.as_uuid(), cut, "c", serde_json::json!({})).await;
    for (pilot, limit) in [(by_default, "1 s"), (cut, "2 s")] {
        let run = env.wait_run(&exec, owner, pilot, TERMINAL).await;
        assert_eq!(run.status, RunStatus::Failed as i32, "{run:?}");
        assert!(run.error.starts_with(&format!("deadline: the run executed for {limit} in all")), "{run:?}");
        let step = step_of(&run, "call");
        assert_eq!(step.status, StepStatus::Failed as i32);
        assert!(step.error.starts_with("deadline:"), "{step:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(30), "ended by the deadline, not the step's timeout");

    // A back-off longer than the limit (1.5 to 3 s) does not count against it.
    let retried = pilot(cpb::PilotSpec {
        steps: vec![cpb::Step {
            retry: Some(cpb::RetryPolicy { max_attempts: 2, initial_backoff_ms: 3000, max_backoff_ms: 3000 }),
            ..call(&format!("{}/once", flaky.uri()))
        }],
        ..Default::default()
    });
    env.trigger(owner.as_uuid(), retried, "r", serde_json::json!({})).await;
    let run = env.wait_run(&exec, owner, retried, TERMINAL).await;
    assert_eq!(run.status, RunStatus::Succeeded as i32, "{run:?}");
    assert_eq!(step_of(&run, "call").attempts, 2);

    // Nor does waiting for a decision longer than the limit.
    let approved = pilot(cpb::PilotSpec {
        steps: vec![
            step(
                "ask",
                cpb::step::Kind::Approval(cpb::ApprovalStep { message: "ok?".into(), ..Default::default() }),
            ),
            step("x", transform("{}")),
        ],
        ..Default::default()
    });
    env.trigger(owner.as_uuid(), approved, "a", serde_json::json!({})).await;
    env.wait_run(&exec, owner, approved, &[RunStatus::AwaitingApproval]).await;
    let paused = Instant::now();
    until("the decision to wait longer than the limit", PATIENCE, || async {
        paused.elapsed() > Duration::from_millis(1500)
    })
    .await;
    let approvals = exec
        .client
        .clone()
        .list_approvals(authed(&token, pb::ListApprovalsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .approvals;
    exec.client
        .clone()
        .decide_approval(authed(
            &token,
            pb::DecideApprovalRequest {
                approval_id: approvals[0].id.clone(),
                decision: pb::Decision::Approve as i32,
                comment: String::new(),
            },
        ))
        .await
        .unwrap();
    let run = env.wait_run(&exec, owner, approved, TERMINAL).await;
    assert_eq!(run.status, RunStatus::Succeeded as i32, "{run:?}");
}

#[tokio::test]
async fn runs_left_waiting_by_an_executor_that_died_are_all_handed_out_not_a_slotful_per_reaper_pass() {
    let env = Env::new().await;
    let gate = Gate::start().await;
    let mut config = env.config();
    config.runs.owner_concurrency = 2;
    config.runs.lease = Duration::from_secs(1);
    let doomed = env.start_killable(config.clone());
    let owner = owner();
    let slow = env.pilot(owner.as_uuid(), vec![call(&format!("http://{}/{{{{ trigger.n }}}}", gate.addr))]);
    for n in 0..6 {
        env.trigger(owner.as_uuid(), slow, &format!("s{n}"), serde_json::json!({"n": n})).await;
    }
    until("two runs at the endpoint", PATIENCE, || async { gate.held() == 2 }).await;
    let db = env.superuser().await;
    let count = |sql: &'static str| {
        let db = db.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).bind(slow).fetch_one(&db).await.unwrap() }
    };
    until("four runs to wait for a slot", PATIENCE, || async {
        count("SELECT count(*) FROM executor.runs WHERE pilot_id = $1 AND lease_owner IS NULL AND NOT executing")
            .await
            == 4
    })
    .await;
    doomed.kill();
    gate.open.send_replace(true);
    until("the dead executor's slots to free themselves (its leases ran out)", PATIENCE, || async {
        count("SELECT count(*) FROM executor.runs WHERE pilot_id = $1 AND executing AND lease_until > now()")
            .await
            == 0
    })
    .await;

    // The reaper passes once, at start: it hands out the two runs the owner has
    // slots for, and each of those hands out the next as it ends.
    config.runs.reaper_interval = Duration::from_secs(3600);
    let exec = env.start(config).await;
    let token = env.user(owner);
    until("all six runs to succeed without another reaper pass", PATIENCE, || async {
        let runs = runs_of(&exec, &token, slow).await;
        runs.len() == 6 && runs.iter().all(|r| r.status == RunStatus::Succeeded as i32)
    })
    .await;
    assert_eq!(exec.progress.reaper_passes().get(), 1, "one pass of the reaper");
}

/// (Poisoning, #15 item 1.) Takeovers count the executors a run saw stop while
/// it held them; once the run moves past a step they start again, so runs that
/// merely were in flight when executors stopped for other reasons are not
/// poisoned over a long life.
#[tokio::test]
async fn takeovers_start_again_once_the_run_moves_past_a_step() {
    let env = Env::new().await;
    let gate = Gate::start().await;
    let exec = env.start(env.config()).await;
    let owner = owner();
    let pilot = env.pilot(
        owner.as_uuid(),
        vec![
            call(&format!("http://{}/one", gate.addr)),
            cpb::Step { key: "two".into(), ..call(&format!("http://{}/two", gate.addr)) },
        ],
    );
    env.trigger(owner.as_uuid(), pilot, "t", serde_json::json!({})).await;
    until("the first call to wait at the endpoint", PATIENCE, || async { gate.held() == 1 }).await;
    // As if two executors had stopped while holding it.
    let db = env.superuser().await;
    sqlx::query("UPDATE executor.runs SET takeovers = 2 WHERE pilot_id = $1")
        .bind(pilot)
        .execute(&db)
        .await
        .unwrap();
    gate.open.send_replace(true);
    let run = env.wait_run(&exec, owner, pilot, TERMINAL).await;
    assert_eq!(run.status, RunStatus::Succeeded as i32, "{run:?}");
    let takeovers: i32 = sqlx::query_scalar("SELECT takeovers FROM executor.runs WHERE pilot_id = $1")
        .bind(pilot)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(takeovers, 0);
}

/// A run cancelled while its step is in flight keeps its slot until the step is
/// over (cancelling cannot free slots early, so start-and-cancel cannot run more
/// than the owner's slots at once); then its executor gives it up and the next
/// run starts.
#[tokio::test]
async fn a_run_cancelled_mid_step_keeps_its_slot_until_the_step_is_over() {
    let env = Env::new().await;
    let gate = Gate::start().await;
    let mut config = env.config();
    config.runs.owner_concurrency = 1;
    config.runs.lease = Duration::from_secs(1);
    let exec = env.start(config).await;
    let owner = owner();
    let token = env.user(owner);
    let slow = env.pilot(owner.as_uuid(), vec![call(&format!("http://{}/{{{{ trigger.n }}}}", gate.addr))]);
    env.trigger(owner.as_uuid(), slow, "first", serde_json::json!({"n": "first"})).await;
    until("the first run at the endpoint", PATIENCE, || async { gate.held() == 1 }).await;
    let first = runs_of(&exec, &token, slow).await.remove(0);
    exec.client
        .clone()
        .cancel_run(authed(&token, pb::CancelRunRequest { run_id: first.id.clone() }))
        .await
        .unwrap();
    env.trigger(owner.as_uuid(), slow, "second", serde_json::json!({"n": "second"})).await;
    let db = env.superuser().await;
    until("the second run to wait for the slot", PATIENCE, || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM executor.runs WHERE pilot_id = $1 AND status = 2 AND lease_owner IS NULL",
        )
        .bind(slow)
        .fetch_one(&db)
        .await
        .unwrap()
            == 1
    })
    .await;
    // Several leases later the cancelled run still holds the slot (its lease is
    // renewed while its step is in flight), and only it reached the endpoint.
    let first_id: Uuid = first.id.parse().unwrap();
    let held_since = Instant::now();
    until("three leases to pass with the cancelled run still holding its slot", PATIENCE, || async {
        let holds: bool = sqlx::query_scalar(
            "SELECT executing AND lease_until > now() AND status = $2 FROM executor.runs WHERE id = $1",
        )
        .bind(first_id)
        .bind(RunStatus::Cancelled as i16)
        .fetch_one(&db)
        .await
        .unwrap();
        assert!(holds, "the cancelled run gave its slot up while its step was in flight");
        held_since.elapsed() > Duration::from_secs(3)
    })
    .await;
    assert_eq!(gate.paths.lock().unwrap().clone(), vec!["/first".to_owned()]);
    gate.open.send_replace(true);
    until("the second run to succeed once the first's step is over", PATIENCE, || async {
        runs_of(&exec, &token, slow).await.iter().any(|r| r.status == RunStatus::Succeeded as i32)
    })
    .await;
    let first = runs_of(&exec, &token, slow).await.into_iter().find(|r| r.id == first.id).unwrap();
    assert_eq!(first.status, RunStatus::Cancelled as i32);
}
