//! The measurements: raw JetStream publish, webhook ingest, end to end, identity.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use async_nats::jetstream::{self, stream};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use bizops_proto::{
    events::v1::{RunEvent, RunStatus},
    identity::v1::{self as ipb, identity_service_client::IdentityServiceClient},
};
use bytes::Bytes;
use futures_util::StreamExt as _;
use hmac::{KeyInit as _, Mac as _};
use prost::Message as _;
use serde_json::json;
use sha2::Sha256;
use tonic::transport::Channel;

use crate::{
    stats::{Measured, closed_loop, open_loop, round},
    suite::{Pilot, Suite},
};

/// Size of every published message and webhook body.
pub const MESSAGE_BYTES: usize = 1024;
/// Publishes (or webhooks) in flight in the comparison of ingest with raw publish.
pub const IN_FLIGHT: usize = 32;
/// Open loop: requests in flight at most (beyond, a due request counts as an error).
const MAX_IN_FLIGHT: usize = 1024;

/// Raw JetStream publish + ack of 1 KiB messages to a file-storage stream with
/// `in_flight` publishers, on the bench's own connection.
pub async fn raw_publish(nats_url: &str, in_flight: usize, duration: Duration) -> anyhow::Result<Measured> {
    let client = async_nats::connect(nats_url).await.context("connecting to the bench NATS")?;
    let js = jetstream::new(client);
    let name = "BENCH_RAW";
    js.create_stream(stream::Config {
        name: name.into(),
        subjects: vec!["bench.raw".into()],
        storage: stream::StorageType::File,
        num_replicas: 1,
        ..Default::default()
    })
    .await
    .context("creating the raw stream")?;
    let payload = Bytes::from(vec![b'x'; MESSAGE_BYTES]);
    let publisher = js.clone();
    let measured = closed_loop(in_flight, duration, move |_| {
        let (js, payload) = (publisher.clone(), payload.clone());
        async move {
            match js.publish("bench.raw", payload).await {
                Ok(ack) => ack.await.is_ok(),
                Err(_) => false,
            }
        }
    })
    .await;
    let _ = js.delete_stream(name).await;
    Ok(measured)
}

/// Sends signed webhooks (Standard Webhooks) to the gateway.
#[derive(Clone)]
pub struct Hooks {
    http: reqwest::Client,
    base: String,
    pilots: Arc<Vec<Pilot>>,
    filler: Arc<String>,
}

/// The answer to one webhook.
pub enum HookAnswer {
    /// 202 with the trigger id.
    Accepted(String),
    /// Anything else (another status, a transport error).
    Failed,
}

impl Hooks {
    /// Webhooks to `base` (the gateway), spread over `pilots`.
    pub fn new(base: String, pilots: Vec<Pilot>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(4096)
            .timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .build()?;
        // Body: {"text": "...", "n": 123456789} padded to MESSAGE_BYTES.
        let filler = "lorem ipsum ".repeat(MESSAGE_BYTES / 12 + 1)[..MESSAGE_BYTES - 40].to_owned();
        Ok(Self { http, base, pilots: Arc::new(pilots), filler: Arc::new(filler) })
    }

    /// The ids of its Pilots.
    pub fn pilot_ids(&self) -> std::collections::HashSet<String> {
        self.pilots.iter().map(|p| p.id.clone()).collect()
    }

    /// Sends webhook number `i` (Pilot `i mod n`).
    pub async fn send(&self, i: u64) -> HookAnswer {
        let pilot = &self.pilots[(i % self.pilots.len() as u64) as usize];
        let body = format!(r#"{{"text": "{}", "n": {i:>9}}}"#, self.filler);
        let id = format!("msg_{}", uuid::Uuid::now_v7().simple());
        let ts = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
        let Ok(mut mac) = hmac::Hmac::<Sha256>::new_from_slice(&pilot.key) else {
            return HookAnswer::Failed;
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(ts.as_bytes());
        mac.update(b".");
        mac.update(body.as_bytes());
        let signature = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        let sent = self
            .http
            .post(format!("{}/hooks/{}", self.base, pilot.id))
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", ts)
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        let Ok(response) = sent else { return HookAnswer::Failed };
        let status = response.status().as_u16();
        let answer: serde_json::Value = response.json().await.unwrap_or_default();
        match (status, answer["trigger_id"].as_str()) {
            (202, Some(id)) => HookAnswer::Accepted(id.to_owned()),
            _ => HookAnswer::Failed,
        }
    }

    /// Closed loop at `concurrency`.
    pub async fn closed(&self, concurrency: usize, duration: Duration) -> Measured {
        let hooks = self.clone();
        let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
        closed_loop(concurrency, duration, move |_| {
            let (hooks, counter) = (hooks.clone(), counter.clone());
            async move {
                let i = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                matches!(hooks.send(i).await, HookAnswer::Accepted(_))
            }
        })
        .await
    }

    /// Open loop at `rate` per second.
    pub async fn open(&self, rate: f64, duration: Duration) -> Measured {
        let hooks = self.clone();
        open_loop(rate, duration, MAX_IN_FLIGHT, move |i| {
            let hooks = hooks.clone();
            async move { matches!(hooks.send(i).await, HookAnswer::Accepted(_)) }
        })
        .await
    }
}

/// Removes every queued trigger (those of the ingest phases) before the executor starts.
pub async fn purge_triggers(nats_url: &str) -> anyhow::Result<u64> {
    let js = jetstream::new(async_nats::connect(nats_url).await?);
    let mut stream = js.get_stream("bizops_TRIGGERS").await.context("triggers stream")?;
    let purged = stream.purge().await.context("purging the triggers stream")?.purged;
    let _ = stream.info().await;
    Ok(purged)
}

/// End to end: webhook → run completed.
pub struct EndToEnd {
    /// Target webhook rate.
    pub rate: f64,
    /// The webhook side (accepted/s, 202 latency).
    pub ingest: Measured,
    /// Accept (202 received) → terminal run event received.
    pub latency: Measured,
    /// Runs that succeeded within the sending window, per second.
    pub runs_per_sec: f64,
    /// Runs that ended otherwise than SUCCEEDED.
    pub failed_runs: u64,
    /// Accepted triggers without a terminal event by the end of the drain.
    pub incomplete: u64,
    /// Runs whose trigger could not be matched (deleted by retention first).
    pub unmatched: u64,
}

impl EndToEnd {
    /// As JSON.
    pub fn json(&self) -> serde_json::Value {
        json!({
            "target_rate": self.rate,
            "runs_per_sec": round(self.runs_per_sec, 1),
            "webhooks": self.ingest.json(),
            "accept_to_completion": self.latency.json(),
            "failed_runs": self.failed_runs,
            "incomplete": self.incomplete,
            "unmatched": self.unmatched,
        })
    }
}

fn terminal(status: i32) -> bool {
    status >= RunStatus::Succeeded as i32
}

/// Webhooks at `rate`/s for `duration` against the running suite (executor
/// included); every run's terminal event is taken from core NATS
/// (`bizops.runs.>`), and matched to its trigger through the executor's `runs`
/// table (run id → trigger id), read every 200 ms by a superuser connection.
pub async fn end_to_end(
    suite: &Suite,
    nats_url: &str,
    hooks: &Hooks,
    rate: f64,
    duration: Duration,
    drain: Duration,
) -> anyhow::Result<EndToEnd> {
    let client = async_nats::ConnectOptions::new().subscription_capacity(1 << 20).connect(nats_url).await?;
    let mut events = client.subscribe("bizops.runs.>").await?;
    client.flush().await?;
    // run id → (when its terminal event arrived, status), of `hooks`' Pilots
    // only (another account may be running its own meanwhile).
    let finished: Arc<Mutex<HashMap<String, (Instant, i32)>>> = Arc::default();
    let ours = hooks.pilot_ids();
    let collector = {
        let finished = finished.clone();
        tokio::spawn(async move {
            while let Some(msg) = events.next().await {
                let Ok(event) = RunEvent::decode(msg.payload.as_ref()) else { continue };
                if terminal(event.run_status)
                    && ours.contains(&event.pilot_id)
                    && let Ok(mut f) = finished.lock()
                {
                    f.entry(event.run_id).or_insert((Instant::now(), event.run_status));
                }
            }
        })
    };
    // run id → trigger id, read while runs still exist (retention keeps 100 per Pilot).
    let pool = suite.db.superuser_pool().await?;
    let mapping: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let stop_mapper = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mapper = {
        let (finished, mapping, stop) = (finished.clone(), mapping.clone(), stop_mapper.clone());
        tokio::spawn(async move {
            loop {
                let last = stop.load(std::sync::atomic::Ordering::Relaxed);
                let wanted: Vec<String> = {
                    let (Ok(f), Ok(m)) = (finished.lock(), mapping.lock()) else { break };
                    f.keys().filter(|k| !m.contains_key(*k)).cloned().collect()
                };
                for chunk in wanted.chunks(5000) {
                    let rows: Vec<(String, String)> = sqlx::query_as(
                        "SELECT id::text, trigger_id::text FROM executor.runs WHERE id = ANY($1::uuid[])",
                    )
                    .bind(chunk)
                    .fetch_all(&pool)
                    .await
                    .unwrap_or_default();
                    if let Ok(mut m) = mapping.lock() {
                        m.extend(rows);
                    }
                }
                if last {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };

    // trigger id → when its 202 arrived
    let accepted: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let started = Instant::now();
    let ingest = {
        let (hooks, accepted) = (hooks.clone(), accepted.clone());
        open_loop(rate, duration, MAX_IN_FLIGHT, move |i| {
            let (hooks, accepted) = (hooks.clone(), accepted.clone());
            async move {
                match hooks.send(i).await {
                    HookAnswer::Accepted(id) => {
                        if let Ok(mut a) = accepted.lock() {
                            a.insert(id, Instant::now());
                        }
                        true
                    }
                    HookAnswer::Failed => false,
                }
            }
        })
        .await
    };
    let window_end = started + duration;
    // Wait for the rest of the runs, at most `drain`.
    let deadline = Instant::now() + drain;
    let total = accepted.lock().map(|a| a.len()).unwrap_or(0);
    while Instant::now() < deadline {
        let done = finished.lock().map(|f| f.len()).unwrap_or(0);
        if done >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    collector.abort();
    stop_mapper.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = mapper.await;

    let (accepted, finished, mapping) = (
        accepted.lock().map(|a| a.clone()).unwrap_or_default(),
        finished.lock().map(|f| f.clone()).unwrap_or_default(),
        mapping.lock().map(|m| m.clone()).unwrap_or_default(),
    );
    let mut latencies = Vec::new();
    let (mut failed_runs, mut unmatched, mut in_window) = (0u64, 0u64, 0u64);
    let mut completed_triggers = 0u64;
    for (run, (at, status)) in &finished {
        if *status != RunStatus::Succeeded as i32 {
            failed_runs += 1;
        } else if *at <= window_end {
            in_window += 1;
        }
        match mapping.get(run).and_then(|t| accepted.get(t)) {
            Some(sent) => {
                completed_triggers += 1;
                if *status == RunStatus::Succeeded as i32 {
                    latencies.push(at.saturating_duration_since(*sent));
                }
            }
            None => unmatched += 1,
        }
    }
    let elapsed = finished.values().map(|(at, _)| *at).max().map(|t| t - started).unwrap_or_default();
    Ok(EndToEnd {
        rate,
        ingest,
        latency: Measured::new(latencies.len() as u64, failed_runs, elapsed, latencies),
        runs_per_sec: in_window as f64 / duration.as_secs_f64(),
        failed_runs,
        incomplete: (accepted.len() as u64).saturating_sub(completed_triggers),
        unmatched,
    })
}

/// Identity's figures.
pub struct IdentityFigures {
    /// scrypt hash times at production parameters, sorted.
    pub hash_ms: Vec<f64>,
    /// Login over gRPC.
    pub login: Measured,
    /// VerifySession over gRPC (identity: signature + session row, no cache).
    pub verify_uncached: Measured,
    /// ExchangeToken over gRPC (identity: the same checks plus signing an access token).
    pub exchange: Measured,
    /// A session-authenticated request through the gateway whose session answer
    /// (≤ 5 s) and access token (until 10 s before it expires) are cached: `GET /`
    /// with the cookie, answered 303.
    pub verify_cached: Measured,
    /// Login concurrency.
    pub login_concurrency: usize,
}

impl IdentityFigures {
    /// As JSON.
    pub fn json(&self) -> serde_json::Value {
        json!({
            "scrypt_hash_ms": self.hash_ms.iter().map(|x| round(*x, 1)).collect::<Vec<_>>(),
            "scrypt_hash_ms_median": round(self.hash_ms.get(self.hash_ms.len() / 2).copied().unwrap_or(f64::NAN), 1),
            "login": self.login.json(),
            "login_concurrency": self.login_concurrency,
            "verify_session_uncached_grpc": self.verify_uncached.json(),
            "exchange_token_grpc": self.exchange.json(),
            "verify_session_cached_gateway": self.verify_cached.json(),
        })
    }
}

/// scrypt alone, then Login, VerifySession, ExchangeToken and the gateway's cached path.
pub async fn identity(
    suite: &Suite,
    quick: bool,
    secs: impl Fn(f64) -> Duration,
) -> anyhow::Result<IdentityFigures> {
    let hasher = identity::password::Hasher::new(&identity::config::ScryptConfig::default()).await?;
    let mut hash_ms = Vec::new();
    for _ in 0..if quick { 3 } else { 5 } {
        let t = Instant::now();
        hasher.hash(crate::suite::PASSWORD.to_owned().into()).await?;
        hash_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    hash_ms.sort_by(f64::total_cmp);
    drop(hasher);

    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let users = 4;
    let mut tokens = Vec::new();
    for i in 0..users {
        tokens.push(suite.account(&format!("login{i}@bench.example.com")).await?.token);
    }
    let channel: Channel = suite.channel("identity").await?;
    let client = IdentityServiceClient::new(channel);
    let c = client.clone();
    let login_concurrency = cores * 2;
    let login = closed_loop(login_concurrency, secs(10.0), move |w| {
        let mut c = c.clone();
        async move {
            c.login(ipb::LoginRequest {
                email: format!("login{}@bench.example.com", w % users),
                password: crate::suite::PASSWORD.into(),
            })
            .await
            .is_ok()
        }
    })
    .await;

    let token = tokens.first().cloned().context("no session")?;
    let c = client.clone();
    let t = token.clone();
    let verify_uncached = closed_loop(IN_FLIGHT, secs(8.0), move |_| {
        let (mut c, token) = (c.clone(), t.clone());
        async move { c.verify_session(ipb::VerifySessionRequest { token }).await.is_ok() }
    })
    .await;

    let c = client.clone();
    let t = token.clone();
    let exchange = closed_loop(IN_FLIGHT, secs(8.0), move |_| {
        let (mut c, subject_token) = (c.clone(), t.clone());
        async move { c.exchange_token(ipb::ExchangeTokenRequest { subject_token }).await.is_ok() }
    })
    .await;

    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(10))
        .build()?;
    let url = format!("{}/", suite.gateway_url()?);
    let cookie = format!("bizops_session={token}");
    let verify_cached = closed_loop(IN_FLIGHT, secs(8.0), move |_| {
        let (http, url, cookie) = (http.clone(), url.clone(), cookie.clone());
        async move {
            match http.get(url).header("cookie", cookie).send().await {
                Ok(r) => {
                    r.status().as_u16() == 303
                        && r.headers().get("location").is_some_and(|l| l.as_bytes() == b"/pilots")
                }
                Err(_) => false,
            }
        }
    })
    .await;
    Ok(IdentityFigures { hash_ms, login, verify_uncached, exchange, verify_cached, login_concurrency })
}

/// Samples resident set sizes of `pids` every 250 ms until stopped; the peaks.
pub struct RssSampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<HashMap<String, f64>>,
}

impl RssSampler {
    /// Starts sampling.
    pub fn start(pids: Vec<(String, u32)>) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let task = tokio::spawn(async move {
            let mut peak: HashMap<String, f64> = HashMap::new();
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                for (name, pid) in &pids {
                    if let Some(r) = bizops_testkit::procs::rss_mib(*pid) {
                        let e = peak.entry(name.clone()).or_insert(0.0);
                        *e = e.max(r);
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            peak
        });
        Self { stop, task }
    }

    /// Stops; the peak per name.
    pub async fn finish(self) -> HashMap<String, f64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}
