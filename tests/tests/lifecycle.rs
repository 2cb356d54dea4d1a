//! The privacy policy's data promises, proven with the whole suite in-process
//! (identity, pilot-catalog, credential-vault, executor, gateway) on real
//! Postgres and NATS: account deletion across every service while webhooks keep
//! arriving, a deletion killed midway and finished on retry, disconnecting a
//! credential, and retention (run cap, 7-day job sweep, stream max age).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use bizops_e2e::{
    rows::{nonzero, owner_rows},
    suite::{PASSWORD, Suite, Svc, User},
};
use bizops_proto::{
    catalog::v1::{self as cpb, step::Kind},
    events::v1::{RunStatus, StepStatus},
    executor::v1 as xpb,
    identity::v1 as ipb,
    vault::v1 as vpb,
};
use bizops_testkit::{
    authed, eventually,
    steps::{slack, step, transform},
    until,
};
use tokio::time::Instant;
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{method, path},
};

struct Pilot {
    id: String,
    secret: String,
}

async fn create_pilot(suite: &Suite, user: &User, spec: cpb::PilotSpec) -> Pilot {
    let created = suite
        .catalog()
        .create_pilot(authed(
            &suite.access(&user.token).await,
            cpb::CreatePilotRequest { spec: Some(spec), enabled: true },
        ))
        .await
        .expect("create pilot")
        .into_inner();
    Pilot { id: created.pilot.unwrap().id, secret: created.webhook_secret }
}

async fn connect(suite: &Suite, user: &User, name: &str, kind: vpb::ConnectorKind, value: &str) {
    suite
        .vault()
        .put_credential(authed(
            &suite.access(&user.token).await,
            vpb::PutCredentialRequest { name: name.into(), kind: kind as i32, value: value.into() },
        ))
        .await
        .expect("put credential");
}

async fn runs(suite: &Suite, user: &User, pilot: &str) -> Vec<xpb::Run> {
    suite
        .executor()
        .list_runs(authed(
            &suite.access(&user.token).await,
            xpb::ListRunsRequest { pilot_id: pilot.into(), page_size: 100, page_token: String::new() },
        ))
        .await
        .expect("list runs")
        .into_inner()
        .runs
}

async fn wait_for_run(suite: &Suite, user: &User, pilot: &str, status: RunStatus) -> xpb::Run {
    let run = eventually(format!("a run of {pilot} that is {status:?}"), Duration::from_secs(30), || async {
        runs(suite, user, pilot).await.into_iter().find(|r| r.status == status as i32)
    })
    .await;
    suite
        .executor()
        .get_run(authed(&suite.access(&user.token).await, xpb::GetRunRequest { run_id: run.id }))
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap()
}

/// What an account has at the start of the deletion test.
struct Populated {
    approval: Pilot,
    slow: Pilot,
}

/// Credentials, three Pilots (approval, slow, scheduled) and a run waiting for
/// approval.
async fn populate(suite: &Suite, user: &User) -> Populated {
    connect(suite, user, "slack", vpb::ConnectorKind::Slack, &suite.slack_url()).await;
    connect(suite, user, "anthropic", vpb::ConnectorKind::Anthropic, "sk-ant-api03-e2e-test-key-0000000000")
        .await;
    let approval = create_pilot(
        suite,
        user,
        cpb::PilotSpec {
            title: "Order alerts".into(),
            steps: vec![
                step(
                    "ask",
                    Kind::Approval(cpb::ApprovalStep {
                        message: "Post it?".into(),
                        expires_after_seconds: 0,
                    }),
                ),
                step("notify", slack("New order {{ trigger.id }}")),
            ],
            ..Default::default()
        },
    )
    .await;
    let slow = create_pilot(
        suite,
        user,
        cpb::PilotSpec {
            title: "Slow sync".into(),
            steps: vec![step(
                "fetch",
                Kind::Http(cpb::HttpStep {
                    method: cpb::HttpMethod::Get as i32,
                    url: format!("{}/slow", suite.slack.uri()),
                    ..Default::default()
                }),
            )],
            ..Default::default()
        },
    )
    .await;
    create_pilot(
        suite,
        user,
        cpb::PilotSpec {
            title: "Daily digest".into(),
            steps: vec![step("digest", transform("{}"))],
            schedules: vec![cpb::Schedule {
                cron: "0 9 * * *".into(),
                timezone: "Europe/Berlin".into(),
                enabled: true,
                ..Default::default()
            }],
            ..Default::default()
        },
    )
    .await;

    let (status, _) = suite.hook(&approval.id, &approval.secret, serde_json::json!({"id": 1})).await;
    assert_eq!(status, 202);
    wait_for_run(suite, user, &approval.id, RunStatus::AwaitingApproval).await;
    Populated { approval, slow }
}

/// Slow runs (more than the executor runs at once, so some stay queued).
async fn slow_runs(suite: &Suite, populated: &Populated) {
    for i in 0..4 {
        let (status, _) =
            suite.hook(&populated.slow.id, &populated.slow.secret, serde_json::json!({"n": i})).await;
        assert_eq!(status, 202);
    }
}

#[tokio::test]
async fn deleting_an_account_removes_everything_everywhere_while_webhooks_keep_coming() {
    let suite = Suite::start_with(|c| c.executor.runs.concurrency = 2).await;
    Mock::given(method("GET"))
        .and(path("/slow"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({}))
                .set_delay(Duration::from_secs(20)),
        )
        .mount(&suite.slack)
        .await;
    let victim = suite.user("victim").await;
    let bystander = suite.user("bystander").await;
    let doomed = populate(&suite, &victim).await;
    let kept = populate(&suite, &bystander).await;
    slow_runs(&suite, &doomed).await;
    slow_runs(&suite, &kept).await;

    // Everything the policy names exists for the victim: Pilots, runs, a pending
    // approval, queued triggers (jobs not started yet), credentials, sessions.
    let pool = suite.superuser().await;
    // (A run taken in is leased to the executor at once; one waiting for a free
    // slot has no step started yet.)
    until("queued jobs for the victim", Duration::from_secs(20), || async {
        let queued: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM executor.jobs j JOIN executor.runs r ON r.job_id = j.id
             WHERE j.owner_id = $1 AND j.finished_at IS NULL AND r.status IN (1, 2)
               AND NOT EXISTS (SELECT 1 FROM executor.step_runs s WHERE s.run_id = r.id)",
        )
        .bind(victim.owner)
        .fetch_one(&pool)
        .await
        .unwrap_or(0);
        queued > 0
    })
    .await;
    let before = owner_rows(&suite.db, victim.owner).await;
    for table in
        ["catalog.pilots", "catalog.schedules", "executor.runs", "executor.approvals", "vault.credentials"]
    {
        assert!(before[table] > 0, "the victim has rows in {table} before: {before:?}");
    }
    let bystander_before = owner_rows(&suite.db, bystander.owner).await;

    // Webhooks keep arriving for the victim's Pilots during the deletion.
    let sent: Arc<Mutex<Vec<(Instant, u16)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let (sent, stop) = (sent.clone(), stop.clone());
        let base = suite.base.clone();
        let targets = [
            (doomed.approval.id.clone(), doomed.approval.secret.clone()),
            (doomed.slow.id.clone(), doomed.slow.secret.clone()),
        ];
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut i = 0u64;
            // A steady stream, one webhook every 20 ms.
            let mut pace = tokio::time::interval(Duration::from_millis(20));
            // After a slow answer, the next one waits its turn (no catch-up burst).
            pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                pace.tick().await;
                let (pilot, secret) = &targets[(i % 2) as usize];
                let started = Instant::now();
                let status = http
                    .post(format!("{base}/hooks/{pilot}"))
                    .header("x-pilot-secret", secret)
                    .header("content-type", "application/json")
                    .body(format!("{{\"during\": {i}}}"))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                sent.lock().unwrap().push((started, status));
                i += 1;
            }
        })
    };
    until("webhooks accepted before the deletion", Duration::from_secs(20), || async {
        sent.lock().unwrap().iter().filter(|(_, s)| *s == 202).count() >= 3
    })
    .await;

    suite
        .identity()
        .delete_account(authed(&victim.token, ipb::DeleteAccountRequest { password: PASSWORD.into() }))
        .await
        .expect("the deletion finishes synchronously");
    let finished = Instant::now();
    until("webhooks sent after the deletion", Duration::from_secs(20), || async {
        sent.lock().unwrap().iter().filter(|(at, _)| *at > finished).count() >= 10
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    sender.await.unwrap();

    let sent = sent.lock().unwrap().clone();
    assert!(sent.iter().any(|(_, s)| *s == 202), "webhooks were accepted before the deletion");
    let after: Vec<_> = sent.iter().filter(|(at, _)| *at > finished).collect();
    assert!(!after.is_empty(), "webhooks kept coming after the deletion");
    assert!(
        after.iter().all(|(_, s)| *s == 401),
        "no webhook is accepted once the account is gone: {after:?}"
    );

    // No message for the victim left in any stream (in-flight triggers accepted
    // just before the deletion are dropped by the executor's intake).
    until("the victim's messages are gone from every stream", Duration::from_secs(15), || async {
        suite.owner_messages(victim.owner).await.iter().all(|(_, n)| *n == 0)
    })
    .await;
    // Zero rows anywhere, and still zero once the executor has taken in every
    // trigger it was sent (nothing created late; the bystander's slow runs may
    // still be executing).
    let rows = owner_rows(&suite.db, victim.owner).await;
    assert!(nonzero(&rows).is_empty(), "rows left after the deletion: {:?}", nonzero(&rows));
    suite.quiesce_intake().await;
    let rows = owner_rows(&suite.db, victim.owner).await;
    assert!(nonzero(&rows).is_empty(), "rows created after the deletion: {:?}", nonzero(&rows));
    assert!(suite.owner_messages(victim.owner).await.iter().all(|(_, n)| *n == 0));

    // Sign-in fails like for an unknown address; the session is dead.
    let status = suite.login(&victim.email).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let verify =
        suite.identity().verify_session(ipb::VerifySessionRequest { token: victim.token.clone() }).await;
    assert_eq!(verify.unwrap_err().code(), tonic::Code::Unauthenticated);

    // The other account is untouched: the same rows (runs may only have grown),
    // its approval still waits, its session works, its webhooks are accepted.
    let bystander_after = owner_rows(&suite.db, bystander.owner).await;
    for (table, n) in &bystander_before {
        match table.as_str() {
            "executor.runs" | "executor.step_runs" | "executor.jobs" => {
                assert!(bystander_after[table] >= *n, "{table}: {n} → {}", bystander_after[table]);
            }
            _ => assert_eq!(bystander_after[table], *n, "{table} of the other account changed"),
        }
    }
    let pending = suite
        .executor()
        .list_approvals(authed(
            &suite.access(&bystander.token).await,
            xpb::ListApprovalsRequest { page_size: 20, page_token: String::new() },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pending.approvals.len(), 1);
    suite
        .identity()
        .verify_session(ipb::VerifySessionRequest { token: bystander.token.clone() })
        .await
        .unwrap();
    let (status, _) = suite.hook(&kept.slow.id, &kept.slow.secret, serde_json::json!({"after": true})).await;
    assert_eq!(status, 202);
    let _ = kept.approval;
}

#[tokio::test]
async fn a_deletion_killed_after_the_catalog_step_completes_on_retry() {
    let mut suite =
        Suite::start_with(|c| c.identity.deletion.retry_interval = Duration::from_secs(3600)).await;
    let user = suite.user("killed").await;
    connect(&suite, &user, "slack", vpb::ConnectorKind::Slack, &suite.slack_url()).await;
    let pilot = create_pilot(
        &suite,
        &user,
        cpb::PilotSpec {
            title: "Echo".into(),
            steps: vec![step("echo", transform("{{ trigger | tojson }}"))],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(suite.hook(&pilot.id, &pilot.secret, serde_json::json!({"a": 1})).await.0, 202);
    wait_for_run(&suite, &user, &pilot.id, RunStatus::Succeeded).await;

    // The executor is down: the deletion gets past the catalog (and the NATS
    // purge) and stops; then identity itself dies like a killed process.
    suite.stop(Svc::Executor).await;
    let paused = suite
        .identity()
        .delete_account(authed(&user.token, ipb::DeleteAccountRequest { password: PASSWORD.into() }))
        .await
        .unwrap_err();
    assert_eq!(paused.code(), tonic::Code::Unavailable, "{paused:?}");
    let pool = suite.superuser().await;
    let step: i16 = sqlx::query_scalar("SELECT step FROM identity.account_deletions WHERE owner_id = $1")
        .bind(user.owner)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(step >= 2, "the catalog step is done (step {step})");
    suite.kill(Svc::Identity);

    let rows = owner_rows(&suite.db, user.owner).await;
    assert_eq!(rows["catalog.pilots"], 0, "the catalog step happened");
    assert!(rows["executor.runs"] > 0 && rows["vault.credentials"] > 0, "later steps did not: {rows:?}");
    assert_eq!(suite.hook(&pilot.id, &pilot.secret, serde_json::json!({"b": 2})).await.0, 401);

    // Everything comes back; the same request again finishes the deletion.
    suite.launch(Svc::Executor);
    suite.launch(Svc::Identity);
    assert_eq!(
        suite.login(&user.email).await.unwrap_err().code(),
        tonic::Code::PermissionDenied,
        "sign-in stays closed while the deletion is unfinished"
    );
    suite
        .identity()
        .delete_account(authed(&user.token, ipb::DeleteAccountRequest { password: PASSWORD.into() }))
        .await
        .expect("the retry completes the deletion");
    let rows = owner_rows(&suite.db, user.owner).await;
    assert!(nonzero(&rows).is_empty(), "rows left: {:?}", nonzero(&rows));
    assert!(suite.owner_messages(user.owner).await.iter().all(|(_, n)| *n == 0));
    assert_eq!(suite.login(&user.email).await.unwrap_err().code(), tonic::Code::Unauthenticated);
}

#[tokio::test]
async fn disconnecting_a_credential_deletes_it_at_once_and_runs_needing_it_fail_clearly() {
    let suite = Suite::start().await;
    let user = suite.user("disconnect").await;
    let slack_url = suite.slack_url();
    connect(&suite, &user, "slack", vpb::ConnectorKind::Slack, &slack_url).await;
    let pilot = create_pilot(
        &suite,
        &user,
        cpb::PilotSpec {
            title: "Notify".into(),
            steps: vec![step("notify", slack("hello"))],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(suite.hook(&pilot.id, &pilot.secret, serde_json::json!({})).await.0, 202);
    wait_for_run(&suite, &user, &pilot.id, RunStatus::Succeeded).await;
    let slack_path = slack_url.trim_start_matches(&suite.slack.uri()).to_owned();
    let posted = || async {
        let all = suite.slack.received_requests().await.unwrap_or_default();
        all.iter().filter(|r| r.url.path() == slack_path).count()
    };
    assert_eq!(posted().await, 1);

    suite
        .vault()
        .delete_credential(authed(
            &suite.access(&user.token).await,
            vpb::DeleteCredentialRequest { name: "slack".into() },
        ))
        .await
        .unwrap();
    // Gone at once: no wait, read as the vault's system role.
    let system = suite.pool_as("bizops_vault_system").await;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM vault.credentials WHERE owner_id = $1")
        .bind(user.owner)
        .fetch_one(&system)
        .await
        .unwrap();
    assert_eq!(left, 0);

    assert_eq!(suite.hook(&pilot.id, &pilot.secret, serde_json::json!({"again": true})).await.0, 202);
    let failed = wait_for_run(&suite, &user, &pilot.id, RunStatus::Failed).await;
    let notify = failed.steps.iter().find(|s| s.step_key == "notify").unwrap();
    assert_eq!(notify.status, StepStatus::Failed as i32);
    assert!(notify.error.contains("\"slack\" is not connected"), "a clear step error, got: {}", notify.error);
    assert_eq!(posted().await, 1, "nothing was posted without the credential");
    suite.logs.assert_absent(&[&slack_url]);
}

#[tokio::test]
async fn retention_run_cap_job_sweep_and_stream_max_age() {
    // The production defaults the policy states.
    let defaults = executor::ExecutorConfig::default();
    assert_eq!(defaults.runs.max_per_pilot, 100);
    assert_eq!(defaults.runs.job_retention, Duration::from_secs(7 * 24 * 3600));
    for nats in [
        defaults.nats.clone(),
        pilot_catalog::CatalogConfig::default().nats,
        identity::IdentityConfig::default().nats,
        gateway::GatewayConfig::default().nats,
    ] {
        assert_eq!(nats.max_age, Duration::from_secs(7 * 24 * 3600));
    }

    // Run cap (5 here, so the test stays quick; the mechanism is the same).
    let suite = Suite::start_with(|c| c.executor.runs.max_per_pilot = 5).await;
    for stream in
        [suite.subjects.triggers_stream(), suite.subjects.events_stream(), suite.subjects.dlq_stream()]
    {
        let mut s = suite.js.get_stream(&stream).await.unwrap();
        assert_eq!(s.info().await.unwrap().config.max_age, Duration::from_secs(7 * 24 * 3600), "{stream}");
    }
    let user = suite.user("retention").await;
    let pilot = create_pilot(
        &suite,
        &user,
        cpb::PilotSpec {
            title: "Count".into(),
            steps: vec![step("x", transform("{}"))],
            ..Default::default()
        },
    )
    .await;
    let pool = suite.superuser().await;
    let mut first_run = None;
    for i in 0..6 {
        assert_eq!(suite.hook(&pilot.id, &pilot.secret, serde_json::json!({"i": i})).await.0, 202);
        let want = i + 1;
        until("the run is recorded", Duration::from_secs(20), || async {
            let finished: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM executor.jobs WHERE owner_id = $1 AND finished_at IS NOT NULL",
            )
            .bind(user.owner)
            .fetch_one(&pool)
            .await
            .unwrap();
            finished >= want
        })
        .await;
        if i == 0 {
            first_run = Some(runs(&suite, &user, &pilot.id).await[0].id.clone());
        }
    }
    let all = runs(&suite, &user, &pilot.id).await;
    assert_eq!(all.len(), 5, "the newest 5 runs are kept");
    assert!(all.iter().all(|r| Some(&r.id) != first_run.as_ref()), "the oldest run is the one deleted");

    // Finished jobs: kept for 7 days, then swept (the executor's clock moves).
    let jobs = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM executor.jobs WHERE owner_id = $1")
            .bind(user.owner)
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert_eq!(jobs().await, 6);
    suite.clock.set_offset(time::Duration::days(7) - time::Duration::minutes(1));
    suite.full_sweep().await;
    assert_eq!(jobs().await, 6, "nothing goes before 7 days");
    suite.clock.set_offset(time::Duration::days(7) + time::Duration::minutes(1));
    until("finished jobs older than 7 days are swept", Duration::from_secs(10), || async {
        jobs().await == 0
    })
    .await;
    assert_eq!(runs(&suite, &user, &pilot.id).await.len(), 5, "run history stays");
}

#[tokio::test]
async fn stream_max_age_drops_queued_triggers_nobody_consumed() {
    // NATS enforces the max age with its own clock; the suite runs with 2 s
    // instead of 7 days to watch it happen to a trigger that was never consumed.
    let mut suite = Suite::start_with(|c| {
        for nats in [&mut c.identity.nats, &mut c.catalog.nats, &mut c.executor.nats, &mut c.gateway.nats] {
            nats.max_age = Duration::from_secs(2);
            nats.duplicate_window = Duration::from_secs(1);
        }
    })
    .await;
    let user = suite.user("maxage").await;
    let pilot = create_pilot(
        &suite,
        &user,
        cpb::PilotSpec {
            title: "Never runs".into(),
            steps: vec![step("x", transform("{}"))],
            ..Default::default()
        },
    )
    .await;
    suite.stop(Svc::Executor).await;
    assert_eq!(suite.hook(&pilot.id, &pilot.secret, serde_json::json!({})).await.0, 202);
    let queued = suite.owner_messages(user.owner).await;
    assert_eq!(queued[0].1, 1, "the trigger waits in {}", queued[0].0);
    until("NATS drops the trigger after the max age", Duration::from_secs(10), || async {
        suite.owner_messages(user.owner).await.iter().all(|(_, n)| *n == 0)
    })
    .await;
    // The executor comes back to nothing: no run from the expired trigger.
    suite.launch(Svc::Executor);
    suite.quiesce().await;
    assert!(runs(&suite, &user, &pilot.id).await.is_empty());
}
