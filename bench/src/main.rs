//! `make bench` (identity part): scrypt hash time at production parameters,
//! logins/s (bounded by scrypt by design), and VerifySession/s, against a real
//! identity server in-process on 127.0.0.1 and a fresh Postgres database.
//!
//! Everything is bounded in time and stops by itself. `--quick` shortens every
//! phase for development.
#![forbid(unsafe_code)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use bizops_proto::identity::v1::{self as pb, identity_service_client::IdentityServiceClient};
use clap::Parser;
use identity::{App, IdentityConfig, MIGRATOR, config::ScryptConfig};
use tonic::transport::Channel;

#[derive(Parser)]
#[command(about = "BizOps Pilot benchmarks")]
struct Args {
    /// Short phases (≤ 60 s in all), for development.
    #[arg(long)]
    quick: bool,
}

struct Phase {
    name: &'static str,
    ops: u64,
    errors: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Phase {
    fn per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    fn pct(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i]
    }
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Runs `op` from `concurrency` tasks for `duration`; collects latencies.
async fn closed_loop<F, Fut>(name: &'static str, concurrency: usize, duration: Duration, op: F) -> Phase
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = bool> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (stop, errors, op) = (stop.clone(), errors.clone(), op.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if op(worker).await {
                    lat.push(t.elapsed());
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            lat
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap_or_default());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Phase { name, ops: latencies.len() as u64, errors: errors.load(Ordering::Relaxed), elapsed, latencies }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    bizops_telemetry::install_crypto_provider();
    let scale = if args.quick { 0.3 } else { 1.0 };
    let secs = |s: f64| Duration::from_secs_f64(s * scale);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);

    let db = bizops_testkit::TestDb::create(&MIGRATOR)
        .await
        .context("bench database (run scripts/dev-services)")?;
    let key = bizops_authn::SigningKey::generate("bench")?;
    let mut config = IdentityConfig {
        grpc_addr: bizops_testkit::any_port(),
        metrics_addr: bizops_testkit::any_port(),
        scrypt: ScryptConfig::default(),
        ..IdentityConfig::default()
    };
    config.database.url = Some(db.url("bizops_identity").into());
    config.database.system_url = Some(db.url("bizops_identity_system").into());
    config.keys.signing_key = Some(key.to_secret_string());
    config.login_limits.per_pair = u32::MAX;
    config.login_limits.per_source = u32::MAX;
    config.login_limits.per_email = u32::MAX;

    // Hash time at production parameters, alone.
    let hasher = identity::password::Hasher::new(&config.scrypt).await?;
    let mut hash_times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        hasher.hash("bench passphrase of seven words".to_owned().into()).await?;
        hash_times.push(t.elapsed());
    }
    hash_times.sort();
    drop(hasher);

    let app = App::build(config).await?;
    let addr = app.grpc_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stop_rx.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}"))?.connect().await?;
    let client = IdentityServiceClient::new(channel);
    let rss_idle = rss_mib();

    let password = "bench passphrase of seven words";
    let users = 16;
    for i in 0..users {
        client
            .clone()
            .register(pb::RegisterRequest {
                email: format!("bench{i}@example.com"),
                password: password.into(),
                display_name: String::new(),
            })
            .await?;
    }

    let c = client.clone();
    let logins = closed_loop("Login (scrypt N=2^17, r=8, p=1)", cores * 2, secs(10.0), move |w| {
        let mut c = c.clone();
        async move {
            c.login(pb::LoginRequest {
                email: format!("bench{}@example.com", w % users),
                password: password.into(),
            })
            .await
            .is_ok()
        }
    })
    .await;

    let token = client
        .clone()
        .login(pb::LoginRequest { email: "bench0@example.com".into(), password: password.into() })
        .await?
        .into_inner()
        .session
        .context("session")?
        .token;
    let c = client.clone();
    let verifies = closed_loop("VerifySession (signature + session row)", 32, secs(10.0), move |_| {
        let mut c = c.clone();
        let token = token.clone();
        async move { c.verify_session(pb::VerifySessionRequest { token }).await.is_ok() }
    })
    .await;
    let rss_load = rss_mib();
    let _ = stop_tx.send(());
    let _ = server.await;

    let date = time::OffsetDateTime::now_utc().date();
    println!("\nBizOps Pilot bench — identity ({}; {cores} cores; release build; in-process server)", date);
    println!(
        "{:<42} {:>10} {:>9} {:>9} {:>9} {:>7}",
        "measurement", "ops/s", "p50 ms", "p99 ms", "p99.9 ms", "errors"
    );
    println!(
        "{:<42} {:>10} {:>9.1} {:>9.1} {:>9} {:>7}",
        "scrypt hash alone (median of 5)",
        "-",
        hash_times[2].as_secs_f64() * 1e3,
        hash_times[4].as_secs_f64() * 1e3,
        "-",
        0
    );
    for p in [&logins, &verifies] {
        println!(
            "{:<42} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>7}",
            p.name,
            p.per_sec(),
            p.pct(0.5).as_secs_f64() * 1e3,
            p.pct(0.99).as_secs_f64() * 1e3,
            p.pct(0.999).as_secs_f64() * 1e3,
            p.errors
        );
    }
    println!(
        "RSS of bench process (server + load client): idle {rss_idle:.0} MiB, after load {rss_load:.0} MiB"
    );

    let json = serde_json::json!({
        "date": date.to_string(),
        "cores": cores,
        "quick": args.quick,
        "scrypt_hash_ms_median": hash_times[2].as_secs_f64() * 1e3,
        "login": { "per_sec": logins.per_sec(), "p50_ms": logins.pct(0.5).as_secs_f64() * 1e3, "p99_ms": logins.pct(0.99).as_secs_f64() * 1e3, "errors": logins.errors },
        "verify_session": { "per_sec": verifies.per_sec(), "p50_ms": verifies.pct(0.5).as_secs_f64() * 1e3, "p99_ms": verifies.pct(0.99).as_secs_f64() * 1e3, "errors": verifies.errors },
        "rss_mib": { "idle": rss_idle, "after_load": rss_load },
    });
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/results");
    std::fs::create_dir_all(dir)?;
    let file = format!("{dir}/{date}-identity{}.json", if args.quick { "-quick" } else { "" });
    std::fs::write(&file, serde_json::to_string_pretty(&json)?)?;
    println!("saved {file}");
    Ok(())
}
