//! Load shapes (closed loop, open loop at a target rate) and their statistics.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::json;

/// What one measurement saw.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// Successful operations.
    pub ok: u64,
    /// Failed operations (including, open loop, requests not sent because too
    /// many were in flight).
    pub errors: u64,
    /// Wall time of the measurement.
    pub elapsed: Duration,
    /// Latency of every successful operation, sorted.
    pub latencies: Vec<Duration>,
}

impl Measured {
    /// From raw parts (sorts the latencies).
    pub fn new(ok: u64, errors: u64, elapsed: Duration, mut latencies: Vec<Duration>) -> Self {
        latencies.sort_unstable();
        Self { ok, errors, elapsed, latencies }
    }

    /// Successful operations per second.
    pub fn per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 { self.ok as f64 / secs } else { 0.0 }
    }

    /// The `p` quantile (0..=1) of the latencies, in milliseconds (NaN when empty).
    pub fn ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i.min(self.latencies.len() - 1)].as_secs_f64() * 1e3
    }

    /// The figures as JSON.
    pub fn json(&self) -> serde_json::Value {
        json!({
            "per_sec": round(self.per_sec(), 1),
            "ok": self.ok,
            "errors": self.errors,
            "seconds": round(self.elapsed.as_secs_f64(), 2),
            "p50_ms": round(self.ms(0.5), 3),
            "p99_ms": round(self.ms(0.99), 3),
            "p999_ms": round(self.ms(0.999), 3),
            "max_ms": round(self.ms(1.0), 3),
        })
    }
}

/// `x` rounded to `digits` decimals (NaN becomes null in JSON).
pub fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// Runs `op` from `concurrency` tasks, each starting its next operation when
/// the previous one finished, for `duration`.
pub async fn closed_loop<F, Fut>(concurrency: usize, duration: Duration, op: F) -> Measured
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
    Measured::new(latencies.len() as u64, errors.load(Ordering::Relaxed), elapsed, latencies)
}

/// Starts `op(i)` at `rate` per second for `duration` whether or not earlier
/// ones finished (open loop), at most `max_in_flight` at once (a request that
/// would exceed it is counted as an error, not sent). Latency is measured from
/// the moment the request was due, so a stall is not hidden (no coordinated
/// omission).
pub async fn open_loop<F, Fut>(rate: f64, duration: Duration, max_in_flight: usize, op: F) -> Measured
where
    F: Fn(u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut errors = 0u64;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Option<Duration>>();
    let started = Instant::now();
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while sent < total {
        tick.tick().await;
        let now = started.elapsed();
        let due = ((now.as_secs_f64() * rate) as u64 + 1).min(total);
        while sent < due {
            let i = sent;
            sent += 1;
            let due_at = started + Duration::from_secs_f64(i as f64 / rate);
            if in_flight.load(Ordering::Relaxed) >= max_in_flight {
                errors += 1;
                continue;
            }
            in_flight.fetch_add(1, Ordering::Relaxed);
            let (op, tx, in_flight) = (op.clone(), tx.clone(), in_flight.clone());
            tokio::spawn(async move {
                let ok = op(i).await;
                let _ = tx.send(ok.then(|| due_at.elapsed()));
                in_flight.fetch_sub(1, Ordering::Relaxed);
            });
        }
    }
    drop(tx);
    let mut latencies = Vec::with_capacity(total as usize);
    // Every request has its own timeout; this only bounds a pathological hang.
    let drain = tokio::time::sleep(Duration::from_secs(30));
    tokio::pin!(drain);
    loop {
        tokio::select! {
            m = rx.recv() => match m {
                Some(Some(l)) => latencies.push(l),
                Some(None) => errors += 1,
                None => break,
            },
            () = &mut drain => break,
        }
    }
    let elapsed = started.elapsed();
    Measured::new(latencies.len() as u64, errors, elapsed, latencies)
}
