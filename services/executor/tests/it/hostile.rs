//! What one account's Pilots can throw at the executor: templates that build
//! huge values, endpoints whose answer never ends, runs that keep killing their
//! executor. Each fails its own run with a clear reason; the executor and other
//! runs carry on.

use std::time::Duration;

use bizops_proto::{
    catalog::v1 as cpb,
    events::v1::{RunStatus, StepStatus},
};
use bizops_testkit::{PATIENCE, until};
use executor::{
    config::TemplatesConfig,
    sandbox::{Limits, Templates},
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::path};

use crate::harness::*;

/// The template of the security review: eight doublings of a 10 MB string
/// (2.5 GB at the end) in about 200 characters and a dozen instructions.
const BOMB: &str = "{% set a0 = 'x' * 10000000 %}{% set a1 = a0 ~ a0 %}{% set a2 = a1 ~ a1 %}\
    {% set a3 = a2 ~ a2 %}{% set a4 = a3 ~ a3 %}{% set a5 = a4 ~ a4 %}{% set a6 = a5 ~ a5 %}\
    {% set a7 = a6 ~ a6 %}{{ a7 | length }}";

/// The peak resident memory of this process (each test is its own process under nextest).
fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024
}

fn sandbox(memory_mib: u64) -> Templates {
    let config = TemplatesConfig {
        worker: Some(env!("CARGO_BIN_EXE_executor").into()),
        workers: 1,
        memory_mib,
        timeout: Duration::from_secs(20),
    };
    Templates::new(&config, Limits { fuel: 100_000, max_output: 1024 * 1024 }).unwrap()
}

#[tokio::test]
async fn a_template_bomb_stops_its_worker_not_the_executor() {
    let templates = sandbox(256);
    templates.check().await.unwrap();
    let ctx = serde_json::json!({"trigger": {"name": "Ann"}});
    let before = peak_rss_mib();

    let err = templates.render(BOMB, &ctx).await.unwrap_err();
    assert!(err.contains("more than the 256 MiB of memory"), "{err}");
    // The same worker slot renders again at once (a fresh worker).
    assert_eq!(templates.render("Hi {{ trigger.name }}", &ctx).await.unwrap(), "Hi Ann");
    assert!(templates.truthy("trigger.name == 'Ann'", &ctx).await.unwrap());
    // Errors of the template itself are answered, not crashes.
    let err = templates.render("{{ trigger.missing.deeper }}", &ctx).await.unwrap_err();
    assert!(err.contains("undefined"), "{err}");
    // A large value within the memory budget but beyond the output limit.
    let err = templates.render("{{ 'x' * 2000000 }}", &ctx).await.unwrap_err();
    assert!(err.contains("larger than 1048576 bytes"), "{err}");
    // Output at the limit made of bytes JSON escapes six-fold still comes back
    // whole (the worker's answer is read up to six times the limit).
    let escaped = templates.render("{{ '\\u0001' * 1000000 }}", &ctx).await.unwrap();
    assert_eq!(escaped, "\u{1}".repeat(1_000_000));
    assert_eq!(templates.render("Hi {{ trigger.name }}", &ctx).await.unwrap(), "Hi Ann");

    let grown = peak_rss_mib().saturating_sub(before);
    assert!(grown < 64, "the executor's own memory grew by {grown} MiB while a worker rendered the bomb");
}

#[tokio::test]
async fn one_account_s_slow_templates_leave_a_worker_for_everyone_else() {
    let config = TemplatesConfig {
        worker: Some(env!("CARGO_BIN_EXE_executor").into()),
        workers: 2,
        memory_mib: 256,
        timeout: Duration::from_secs(60),
    };
    let templates = Templates::new(&config, Limits { fuel: u64::MAX / 2, max_output: 1024 }).unwrap();
    let (slow, quick) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let ctx = serde_json::json!({});
    // Renders that take many seconds, more of them than there are workers.
    let endless = "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}";
    let mut hogs = Vec::new();
    for _ in 0..3 {
        let templates = templates.clone();
        hogs.push(tokio::spawn(async move {
            templates.render_as(Some(slow), endless, &serde_json::json!({})).await
        }));
    }
    until("a slow render to hold a worker", PATIENCE, || async { templates.in_use() >= 1 }).await;
    let started = std::time::Instant::now();
    // Another account's template renders meanwhile.
    let answer = tokio::time::timeout(PATIENCE, templates.render_as(Some(quick), "{{ 6 * 7 }}", &ctx))
        .await
        .expect("another account's render waited for the slow ones")
        .unwrap();
    assert_eq!(answer, "42");
    println!("another account's render took {:?} while the slow ones ran", started.elapsed());
    assert!(hogs.iter().all(|h| !h.is_finished()), "the slow renders were still running");
    assert_eq!(templates.in_use(), 1, "the slow account holds one worker of two");
    for h in hogs {
        h.abort();
    }
}

#[tokio::test]
async fn a_wrong_worker_program_fails_at_start() {
    let config = TemplatesConfig { worker: Some("/bin/true".into()), ..TemplatesConfig::default() };
    let templates = Templates::new(&config, Limits { fuel: 1000, max_output: 1000 }).unwrap();
    let err = templates.check().await.unwrap_err().to_string();
    assert!(err.contains("did not start as a template worker"), "{err}");
}

#[tokio::test]
async fn a_bomb_in_a_pilot_fails_its_run_and_the_next_runs_succeed() {
    let env = Env::new().await;
    let exec = env.start(env.config()).await;
    let (attacker, victim) = (owner(), owner());
    let bomb = env.pilot(attacker.as_uuid(), vec![step("boom", transform(BOMB))]);
    let fine = env.pilot(victim.as_uuid(), vec![step("shape", transform(r#"{"n": {{ trigger.n + 1 }}}"#))]);
    let before = peak_rss_mib();

    env.trigger(attacker.as_uuid(), bomb, "b1", serde_json::json!({})).await;
    let run = env.wait_run(&exec, attacker, bomb, TERMINAL).await;
    assert_eq!(run.status, RunStatus::Failed as i32, "{run:?}");
    let boom = step_of(&run, "boom");
    assert_eq!(boom.status, StepStatus::Failed as i32);
    assert!(boom.error.contains("memory a template may use"), "{boom:?}");

    env.trigger(victim.as_uuid(), fine, "v1", serde_json::json!({"n": 1})).await;
    let run = env.wait_run(&exec, victim, fine, TERMINAL).await;
    assert_eq!(run.status, RunStatus::Succeeded as i32, "{run:?}");
    assert_eq!(output(&run, "shape"), serde_json::json!({"n": 2}));

    let grown = peak_rss_mib().saturating_sub(before);
    assert!(grown < 128, "the executor's memory grew by {grown} MiB");
}

/// An HTTP server whose answer to any request is a body that never ends.
async fn endless_body() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let head =
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "x".repeat(64 * 1024));
                while socket.write_all(chunk.as_bytes()).await.is_ok() {}
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_endless_answer_is_read_up_to_the_output_limit() {
    let env = Env::new().await;
    let addr = endless_body().await;
    let mut config = env.config();
    // Below the stored preview's size, so the whole output can be read back.
    config.steps.max_output_bytes = 8 * 1024;
    let exec = env.start(config).await;
    let owner = owner();
    let mut call = step("call", http(cpb::HttpMethod::Get, &format!("http://{addr}/feed")));
    // Far longer than reading 8 KiB takes; reading the whole answer never ends.
    call.timeout_ms = 60_000;
    let pilot = env.pilot(owner.as_uuid(), vec![call]);
    env.trigger(owner.as_uuid(), pilot, "e1", serde_json::json!({})).await;
    let run = env.wait_run(&exec, owner, pilot, TERMINAL).await;
    assert_eq!(run.status, RunStatus::Succeeded as i32, "{run:?}");
    let call = step_of(&run, "call");
    assert_eq!(call.attempts, 1);
    let out = output(&run, "call");
    assert_eq!((&out["truncated"], &out["status"]), (&serde_json::json!(true), &serde_json::json!(200)));
    assert_eq!(out["body"].as_str().map(str::len), Some(8 * 1024), "the body is cut at the limit");
}

#[tokio::test]
async fn a_run_that_keeps_killing_its_executor_is_failed_as_poisoned() {
    let env = Env::new().await;
    let outside = MockServer::start().await;
    Mock::given(path("/hang"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3600)))
        .mount(&outside)
        .await;
    let owner = owner();
    let pilot = env.pilot(
        owner.as_uuid(),
        vec![
            step("first", transform(r#"{"ok": true}"#)),
            step("hang", http(cpb::HttpMethod::Post, &format!("{}/hang", outside.uri()))),
            step("after", transform(r#"{"never": true}"#)),
        ],
    );
    let mut config = env.config();
    config.runs.lease = Duration::from_secs(1);
    let pool = env.superuser().await;
    let takeovers = || async {
        sqlx::query_scalar::<_, i32>("SELECT takeovers FROM executor.runs WHERE pilot_id = $1")
            .bind(pilot)
            .fetch_optional(&pool)
            .await
            .unwrap()
    };

    // Three executors in turn die while the run is at step "hang".
    let mut doomed = Some(env.start_killable(config.clone()));
    env.trigger(owner.as_uuid(), pilot, "p", serde_json::json!({})).await;
    for died in 0..3 {
        until("the step to be in flight", PATIENCE, || async {
            outside.received_requests().await.unwrap().len() > died
        })
        .await;
        assert_eq!(
            takeovers().await,
            Some(i32::try_from(died).unwrap()),
            "a takeover per executor that died"
        );
        if let Some(exec) = doomed.take() {
            exec.kill();
        }
        if died < 2 {
            doomed = Some(env.start_killable(config.clone()));
        }
    }

    // The next executor does not run it a fourth time: it fails it, at the step.
    let survivor = env.start(config).await;
    let run = env.wait_run(&survivor, owner, pilot, TERMINAL).await;
    assert_eq!(run.status, RunStatus::Failed as i32, "{run:?}");
    assert!(run.error.starts_with("poisoned: the executor stopped 3 times"), "{}", run.error);
    let hang = step_of(&run, "hang");
    assert_eq!(hang.status, StepStatus::Failed as i32);
    assert!(hang.error.contains("poisoned") && run.error.contains("step \"hang\""), "{hang:?}");
    assert_eq!(step_of(&run, "first").status, StepStatus::Succeeded as i32);
    assert_eq!(outside.received_requests().await.unwrap().len(), 3, "not called a fourth time");
    assert_eq!(takeovers().await, Some(3));
}
