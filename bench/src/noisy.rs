//! Noisy neighbour (#15): one account's end-to-end latency at a steady rate,
//! alone and while another account attacks — template memory bombs, runs into an
//! endpoint that never answers, a login flood through the gateway and headers
//! that never end. The executor runs as deployed here: restarted with the default
//! per-account execution slots (the throughput phase before raises them, since
//! one account sends its whole load). `tests/tests/noisy_neighbour.rs` is the
//! same scenario as a test, with every attack and pass/fail assertions.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use bizops_proto::catalog::v1 as cpb;
use bizops_testkit::steps::{http, step, transform};
use serde_json::json;
use tokio::{io::AsyncWriteExt as _, net::TcpStream, task::JoinSet};

use crate::{
    phases::{EndToEnd, HookAnswer, Hooks, end_to_end, purge_triggers},
    suite::Suite,
};

/// The template the security review built: 2.5 GB of string in eight lines.
const BOMB: &str = "{% set a0 = 'x' * 10000000 %}{% set a1 = a0 ~ a0 %}{% set a2 = a1 ~ a1 %}\
    {% set a3 = a2 ~ a2 %}{% set a4 = a3 ~ a3 %}{% set a5 = a4 ~ a4 %}{% set a6 = a5 ~ a5 %}\
    {% set a7 = a6 ~ a6 %}{{ a7 | length }}";
/// The gateway's public origin in the bench (login requests carry it).
const ORIGIN: &str = "http://127.0.0.1:8080";

/// The victim alone and under attack, and what the attacker's requests got.
pub struct Noisy {
    pub quiet: EndToEnd,
    pub loud: EndToEnd,
    /// Per attack: answers by HTTP status (0: no answer).
    pub attacker: BTreeMap<&'static str, BTreeMap<u16, u64>>,
}

impl Noisy {
    /// As JSON.
    pub fn json(&self) -> serde_json::Value {
        json!({
            "victim_alone": self.quiet.json(),
            "victim_under_attack": self.loud.json(),
            "attacker": self.attacker.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect::<serde_json::Map<_, _>>(),
        })
    }
}

/// A TCP server that accepts connections and never answers.
async fn tarpit() -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    Ok(addr)
}

/// Runs `op` every `every` until `stop`; the answers by status.
fn paced<F, Fut>(
    attacks: &mut JoinSet<(&'static str, BTreeMap<u16, u64>)>,
    name: &'static str,
    every: Duration,
    stop: Arc<AtomicBool>,
    op: F,
) where
    F: Fn(u64) -> Fut + Send + 'static,
    Fut: Future<Output = u16> + Send,
{
    attacks.spawn(async move {
        let mut answers = BTreeMap::new();
        let mut pace = tokio::time::interval(every);
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            pace.tick().await;
            *answers.entry(op(i).await).or_default() += 1;
            i += 1;
        }
        (name, answers)
    });
}

/// A victim account's Pilots at `rate` webhooks a second for `length`, alone,
/// then while another account attacks. What the phases before left unfinished
/// is removed first, so the victim starts from an idle suite.
pub async fn noisy_neighbour(
    suite: &mut Suite,
    nats_url: &str,
    rate: f64,
    length: Duration,
    drain: Duration,
) -> anyhow::Result<Noisy> {
    purge_triggers(nats_url).await?;
    let db = suite.db.superuser_pool().await?;
    // The earlier phases' backlog, with the jobs it came from (the sweep deletes
    // finished jobs only).
    sqlx::query(
        "WITH gone AS (DELETE FROM executor.runs WHERE status IN (1, 2) RETURNING job_id)
         DELETE FROM executor.jobs WHERE id IN (SELECT job_id FROM gone)",
    )
    .execute(&db)
    .await?;
    suite.restart_executor_with(&[("BIZOPS_RUNS__OWNER_CONCURRENCY", "8")]).await?;
    let victim_email = "victim@bench.example.com";
    let account = suite.account(victim_email).await?;
    let victim = &Hooks::new(suite.gateway_url()?, suite.pilots(&account, 16).await?)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    eprintln!("noisy neighbour: the victim alone at {rate}/s");
    let quiet = end_to_end(suite, nats_url, victim, rate, length, drain).await?;

    let attacker = suite.account("attacker@bench.example.com").await?;
    let slow = tarpit().await?;
    let mut into_tarpit = step("call", http(cpb::HttpMethod::Get, &format!("http://{slow}/slow")));
    into_tarpit.timeout_ms = 20_000;
    into_tarpit.retry =
        Some(cpb::RetryPolicy { max_attempts: 3, initial_backoff_ms: 1000, max_backoff_ms: 2000 });
    let spec = |title: &str, steps| cpb::PilotSpec { title: title.into(), steps, ..Default::default() };
    let pilots = suite
        .pilots_of(
            &attacker,
            vec![spec("bomb", vec![step("boom", transform(BOMB))]), spec("tarpit", vec![into_tarpit])],
        )
        .await?;
    let gateway = suite.gateway_url()?;
    let bombs = Hooks::new(gateway.clone(), vec![pilots[0].clone()])?;
    let stuck = Hooks::new(gateway.clone(), vec![pilots[1].clone()])?;

    let stop = Arc::new(AtomicBool::new(false));
    let mut attacks = JoinSet::new();
    let status = |a: HookAnswer| if matches!(a, HookAnswer::Accepted(_)) { 202 } else { 0 };
    paced(&mut attacks, "bomb runs", Duration::from_secs(1), stop.clone(), move |i| {
        let bombs = bombs.clone();
        async move { status(bombs.send(i).await) }
    });
    paced(&mut attacks, "tarpit runs", Duration::from_millis(50), stop.clone(), move |i| {
        let stuck = stuck.clone();
        async move { status(stuck.send(i).await) }
    });
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build()?;
    for _ in 0..8 {
        let (http, gateway, email) = (http.clone(), gateway.clone(), victim_email.to_owned());
        paced(
            &mut attacks,
            "login flood (wrong passwords)",
            Duration::from_millis(20),
            stop.clone(),
            move |_| {
                let (http, gateway, email) = (http.clone(), gateway.clone(), email.clone());
                async move {
                    http.post(format!("{gateway}/api/v1/auth/login"))
                        .header("origin", ORIGIN)
                        .json(&json!({"email": email, "password": "wrong-password-123"}))
                        .send()
                        .await
                        .map_or(0, |r| r.status().as_u16())
                }
            },
        );
    }
    let closed = Arc::new(AtomicU64::new(0));
    let address = gateway.trim_start_matches("http://").to_owned();
    for _ in 0..100 {
        let (address, stop, closed) = (address.clone(), stop.clone(), closed.clone());
        attacks.spawn(async move {
            if let Ok(mut tcp) = TcpStream::connect(&address).await
                && tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.is_ok()
            {
                while !stop.load(Ordering::Relaxed) {
                    if tcp.write_all(b"a").await.is_err() {
                        closed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            ("slow headers", BTreeMap::new())
        });
    }
    // Let the attack build up (the tarpit runs take the attacker's slots).
    tokio::time::sleep(Duration::from_secs(3)).await;
    eprintln!("noisy neighbour: the victim at {rate}/s while another account attacks");
    let loud = end_to_end(suite, nats_url, victim, rate, length, drain).await;
    stop.store(true, Ordering::Relaxed);
    let mut attacker = BTreeMap::new();
    while let Some(done) = attacks.join_next().await {
        let Ok((name, answers)) = done else { continue };
        let entry: &mut BTreeMap<u16, u64> = attacker.entry(name).or_default();
        for (status, n) in answers {
            *entry.entry(status).or_default() += n;
        }
    }
    attacker.insert(
        "slow headers (connections the gateway closed)",
        BTreeMap::from([(0, closed.load(Ordering::Relaxed))]),
    );
    attacker.remove("slow headers");
    Ok(Noisy { quiet, loud: loud?, attacker })
}
