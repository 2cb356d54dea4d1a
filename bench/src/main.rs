//! `make bench`: the whole suite measured on 127.0.0.1, in release builds, in
//! both JetStream sync modes (`sync_interval: always`, the durable configuration
//! the targets apply to, and NATS' default as a non-durable reference):
//!
//! 1. the limit: raw JetStream publish + ack of 1 KiB to a file-storage stream;
//! 2. webhook ingest: signed `POST /hooks/{id}` through the gateway (closed loop
//!    at increasing concurrency, and open loop at half the raw rate);
//! 3. end to end: webhook → run completed for a 3-step local Pilot;
//! 4. identity: scrypt hash time, logins/s, VerifySession/s and ExchangeToken/s
//!    (uncached over gRPC), and the gateway's cached session-authenticated path;
//! 5. memory: RSS of every service idle and under load;
//! 6. noisy neighbour (durable mode): one account's end-to-end latency at a
//!    steady rate, alone and while another account attacks (#15).
//!
//! Every phase is bounded in time and stops by itself; `--quick` (≤ 60 s in all)
//! is for development. Results: a table on stdout, `bench/results/<date>.json`
//! and `bench/RESULTS.md` (`--quick` writes only `results/<date>-quick.json`).
#![forbid(unsafe_code)]

mod noisy;
mod phases;
mod procs;
mod report;
mod stats;
mod suite;

use std::{collections::HashMap, time::Duration};

use anyhow::Context as _;
use clap::Parser;

use crate::{
    phases::{EndToEnd, Hooks, IdentityFigures, RssSampler},
    procs::{Nats, SyncMode},
    stats::Measured,
    suite::Suite,
};

#[derive(Parser)]
#[command(about = "BizOps Pilot whole-suite benchmark")]
struct Args {
    /// Short phases (≤ 60 s in all), for development; does not touch RESULTS.md.
    #[arg(long)]
    quick: bool,
    /// Webhooks per second in the end-to-end phase (the target is 1,000 runs/s).
    #[arg(long, default_value_t = 1000.0)]
    e2e_rate: f64,
    /// Only this sync mode (`always` or `default`); both when absent.
    #[arg(long)]
    mode: Option<String>,
    /// Skip the identity measurements.
    #[arg(long)]
    no_identity: bool,
}

/// Phase lengths.
struct Plan {
    raw: Duration,
    levels: Vec<usize>,
    level: Duration,
    open: Duration,
    e2e: Duration,
    drain: Duration,
    pilots: usize,
    /// The noisy-neighbour phase: the victim's rate and each half's length.
    noisy_rate: f64,
    noisy: Duration,
}

impl Plan {
    fn new(quick: bool) -> Self {
        let s = Duration::from_secs;
        if quick {
            Self {
                raw: s(2),
                levels: vec![32],
                level: s(2),
                open: s(2),
                e2e: s(4),
                drain: s(4),
                pilots: 16,
                noisy_rate: 50.0,
                noisy: s(4),
            }
        } else {
            Self {
                raw: s(10),
                levels: vec![1, 8, 32, 128],
                level: s(8),
                open: s(10),
                e2e: s(30),
                drain: s(20),
                pilots: 64,
                noisy_rate: 100.0,
                noisy: s(15),
            }
        }
    }
}

/// Everything measured in one sync mode.
pub struct ModeResult {
    mode: SyncMode,
    nats_version: String,
    raw: Measured,
    closed: Vec<(usize, Measured)>,
    open_rate: f64,
    open: Measured,
    purged: u64,
    e2e: EndToEnd,
    rss_idle: Vec<(String, f64)>,
    rss_end: Vec<(String, f64)>,
    rss_peak: HashMap<String, f64>,
    noisy: Option<noisy::Noisy>,
}

async fn run_mode(
    mode: SyncMode,
    plan: &Plan,
    args: &Args,
    identity: &mut Option<IdentityFigures>,
) -> anyhow::Result<ModeResult> {
    eprintln!("== {} ==", mode.describe());
    let nats = Nats::start(mode).await?;
    let result = async {
        let mut suite = Suite::start(&nats.url, mode.name()).await?;
        let result = measure(mode, plan, args, identity, &nats, &mut suite).await;
        suite.stop().await;
        result
    }
    .await;
    nats.stop().await;
    result
}

async fn measure(
    mode: SyncMode,
    plan: &Plan,
    args: &Args,
    identity: &mut Option<IdentityFigures>,
    nats: &Nats,
    suite: &mut Suite,
) -> anyhow::Result<ModeResult> {
    let account = suite.account(&format!("owner-{}@bench.example.com", mode.name())).await?;
    let pilots = suite.pilots(&account, plan.pilots).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut rss_idle = suite.rss();

    if identity.is_none() && !args.no_identity {
        eprintln!("identity: scrypt, Login, VerifySession");
        let scale = if args.quick { 0.2 } else { 1.0 };
        *identity = Some(phases::identity(suite, args.quick, |s| Duration::from_secs_f64(s * scale)).await?);
    }

    eprintln!("raw JetStream publish, {} in flight", phases::IN_FLIGHT);
    let raw = phases::raw_publish(&nats.url, phases::IN_FLIGHT, plan.raw).await?;

    let hooks = Hooks::new(suite.gateway_url()?, pilots)?;
    // Warm-up: connections, the catalog's secret cache (not reported).
    let _ = hooks.closed(8, Duration::from_secs(1)).await;
    let mut closed = Vec::new();
    for &c in &plan.levels {
        eprintln!("webhooks, closed loop, {c} in flight");
        closed.push((c, hooks.closed(c, plan.level).await));
    }
    // Open loop at the target throughput (half the raw publish rate), but never
    // above 80 % of what the closed loops reached: an open loop beyond capacity
    // only measures a growing queue.
    let best = closed.iter().map(|(_, m)| m.per_sec()).fold(0.0, f64::max);
    let open_rate = (raw.per_sec() * 0.5).min(best * 0.8).max(50.0).round();
    eprintln!("webhooks, open loop at {open_rate}/s");
    let open = hooks.open(open_rate, plan.open).await;

    // The ingest phases ran without an executor (their triggers wait in the
    // stream); they are dropped before the executor starts.
    let purged = phases::purge_triggers(&nats.url).await?;
    suite.start_executor().await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    if let Ok(executor) = suite.get("executor") {
        rss_idle.push((executor.name.clone(), executor.rss()));
    }

    let mut pids = suite.pids();
    if let Some(p) = nats.pid() {
        pids.push(("nats-server".to_owned(), p));
    }
    let sampler = RssSampler::start(pids);
    eprintln!("end to end at {}/s for {} s", args.e2e_rate, plan.e2e.as_secs());
    let e2e = phases::end_to_end(suite, &nats.url, &hooks, args.e2e_rate, plan.e2e, plan.drain).await?;
    let rss_end = suite.rss();
    let rss_peak = sampler.finish().await;
    let noisy = if mode == SyncMode::Always {
        let (rate, length) = (plan.noisy_rate, plan.noisy);
        Some(noisy::noisy_neighbour(suite, &nats.url, rate, length, plan.drain).await?)
    } else {
        None
    };
    Ok(ModeResult {
        mode,
        nats_version: nats.version(),
        raw,
        closed,
        open_rate,
        open,
        purged,
        e2e,
        rss_idle,
        rss_end,
        rss_peak,
        noisy,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    bizops_telemetry::install_crypto_provider();
    let plan = Plan::new(args.quick);
    let modes = match args.mode.as_deref() {
        None => vec![SyncMode::Always, SyncMode::Default],
        Some("always") => vec![SyncMode::Always],
        Some("default") => vec![SyncMode::Default],
        Some(other) => anyhow::bail!("--mode must be `always` or `default`, not {other:?}"),
    };
    std::fs::create_dir_all(procs::scratch_dir()).context("creating .dev/bench")?;
    let started = std::time::Instant::now();
    let mut identity = None;
    let mut results = Vec::new();
    for mode in modes {
        results.push(run_mode(mode, &plan, &args, &mut identity).await?);
    }
    let machine = report::Machine::probe().await;
    let mut text = report::markdown(&machine, &results, identity.as_ref(), args.quick, started.elapsed());

    let date = time::OffsetDateTime::now_utc().date();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/results");
    std::fs::create_dir_all(dir)?;
    let json = report::json(&machine, &results, identity.as_ref(), args.quick, started.elapsed());
    if let Some((name, previous)) = report::previous_run(std::path::Path::new(dir)) {
        text.push_str(&report::comparison(&name, &previous, &json));
    }
    println!("\n{text}");
    // A second full run on the same day keeps the first one's file.
    let suffix = if args.quick { "-quick" } else { "" };
    let mut file = format!("{dir}/{date}{suffix}.json");
    for n in 2.. {
        if args.quick || !std::path::Path::new(&file).exists() {
            break;
        }
        file = format!("{dir}/{date}-{n}.json");
    }
    std::fs::write(&file, serde_json::to_string_pretty(&json)?)?;
    println!("saved {file}");
    if !args.quick {
        let md = concat!(env!("CARGO_MANIFEST_DIR"), "/RESULTS.md");
        std::fs::write(md, report::results_md(&text))?;
        println!("saved {md}");
    }
    Ok(())
}
