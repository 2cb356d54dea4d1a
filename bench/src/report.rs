//! The results as Markdown (stdout and `bench/RESULTS.md`) and JSON.

use std::{fmt::Write as _, time::Duration};

use serde_json::json;

use crate::{ModeResult, phases::IdentityFigures, procs::SyncMode, stats::round, suite::binaries};

/// The machine the figures were taken on.
pub struct Machine {
    cores: usize,
    memory_gib: f64,
    cpu: String,
    kernel: String,
    postgres: String,
}

impl Machine {
    /// Reads `/proc` and asks Postgres for its version.
    pub async fn probe() -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kb: f64 = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown CPU".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let postgres = async {
            use sqlx::Connection as _;
            let mut c = sqlx::PgConnection::connect(&bizops_testkit::admin_url()).await.ok()?;
            let v: (String,) = sqlx::query_as("SHOW server_version").fetch_one(&mut c).await.ok()?;
            Some(v.0)
        }
        .await
        .unwrap_or_else(|| "unknown".into());
        Self { cores, memory_gib: memory_kb / 1024.0 / 1024.0, cpu, kernel, postgres }
    }
}

fn f(x: f64, digits: usize) -> String {
    if x.is_finite() { format!("{x:.digits$}") } else { "-".into() }
}

fn rate(x: f64) -> String {
    if x.is_finite() { format!("{x:.0}") } else { "-".into() }
}

/// A target and how it went.
struct Check {
    what: String,
    target: String,
    measured: String,
    pass: bool,
}

fn checks(durable: &ModeResult, identity: Option<&IdentityFigures>) -> Vec<Check> {
    let mut out = Vec::new();
    let raw = &durable.raw;
    if let Some((c, m)) = durable.closed.iter().find(|(c, _)| *c == crate::phases::IN_FLIGHT) {
        let ratio = m.per_sec() / raw.per_sec();
        out.push(Check {
            what: format!("webhook accepted/s ({c} in flight) ÷ raw publish ({c} in flight)"),
            target: "≥ 0.50".into(),
            measured: format!("{} ÷ {} = {}", rate(m.per_sec()), rate(raw.per_sec()), f(ratio, 2)),
            pass: ratio >= 0.5,
        });
        out.push(Check {
            what: format!("webhook p99 ({c} in flight)"),
            target: format!("≤ raw p99 + 5 ms = {} ms", f(raw.ms(0.99) + 5.0, 1)),
            measured: format!("{} ms", f(m.ms(0.99), 1)),
            pass: m.ms(0.99) <= raw.ms(0.99) + 5.0,
        });
    }
    let e = &durable.e2e;
    out.push(Check {
        what: format!("end to end, completed runs/s (webhooks at {}/s)", rate(e.rate)),
        target: "≥ 1,000".into(),
        measured: rate(e.runs_per_sec),
        pass: e.runs_per_sec >= 1000.0,
    });
    out.push(Check {
        what: "end to end p50, accept → run completed".into(),
        target: "≤ 10 ms".into(),
        measured: format!("{} ms", f(e.latency.ms(0.5), 1)),
        pass: e.latency.ms(0.5) <= 10.0,
    });
    out.push(Check {
        what: "end to end p99, accept → run completed".into(),
        target: "≤ 50 ms".into(),
        measured: format!("{} ms", f(e.latency.ms(0.99), 1)),
        pass: e.latency.ms(0.99) <= 50.0,
    });
    if let Some(id) = identity {
        let v = id.verify_cached.per_sec();
        out.push(Check {
            what: "Session-authenticated request, cached path (gateway `GET /` with a session cookie)".into(),
            target: "≥ 50,000/s".into(),
            measured: format!("{}/s", rate(v)),
            pass: v >= 50_000.0,
        });
    }
    let idle_max = durable.rss_idle.iter().map(|(_, r)| *r).fold(0.0, f64::max);
    out.push(Check {
        what: "RSS of each service, idle (largest)".into(),
        target: "≤ 50 MiB".into(),
        measured: format!("{} MiB", f(idle_max, 1)),
        pass: idle_max <= 50.0,
    });
    let load_max = binaries().iter().filter_map(|s| durable.rss_peak.get(s)).copied().fold(0.0, f64::max);
    out.push(Check {
        what: "RSS of each service under load (largest peak)".into(),
        target: "≤ 200 MiB".into(),
        measured: format!("{} MiB", f(load_max, 1)),
        pass: load_max <= 200.0,
    });
    out
}

/// The Markdown report.
pub fn markdown(
    machine: &Machine,
    results: &[ModeResult],
    identity: Option<&IdentityFigures>,
    quick: bool,
    elapsed: Duration,
) -> String {
    let mut s = String::new();
    let date = time::OffsetDateTime::now_utc().date();
    let _ = writeln!(
        s,
        "## BizOps Pilot benchmark — {date}{} ({} s)\n",
        if quick { ", --quick" } else { "" },
        elapsed.as_secs()
    );
    let nats = results.first().map(|r| r.nats_version.as_str()).unwrap_or("-");
    let _ = writeln!(
        s,
        "Machine: {} cores ({}), {:.1} GiB memory, Linux {}; {nats}, PostgreSQL {}. Everything on \
         127.0.0.1 — the load generator shares the cores with the five services, NATS and Postgres. \
         Release build; services log JSON at info to a file.\n",
        machine.cores, machine.cpu, machine.memory_gib, machine.kernel, machine.postgres
    );

    if let Some(durable) = results.iter().find(|r| r.mode == SyncMode::Always) {
        let _ = writeln!(s, "### Targets (durable configuration: `sync_interval: always`)\n");
        let _ = writeln!(s, "| target | bar | measured | |\n|---|---|---|---|");
        for c in checks(durable, identity) {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                c.what,
                c.target,
                c.measured,
                if c.pass { "PASS" } else { "MISS" }
            );
        }
        s.push('\n');
    }

    for r in results {
        let _ = writeln!(s, "### Throughput and latency — {}\n", r.mode.describe());
        let _ = writeln!(
            s,
            "| measurement | ops/s | ÷ raw | p50 ms | p99 ms | p99.9 ms | errors |\n|---|---:|---:|---:|---:|---:|---:|"
        );
        let raw = r.raw.per_sec();
        let row = |s: &mut String, name: String, m: &crate::stats::Measured, per_sec: f64| {
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} | {} | {} | {} |",
                rate(per_sec),
                f(per_sec / raw, 2),
                f(m.ms(0.5), 2),
                f(m.ms(0.99), 2),
                f(m.ms(0.999), 2),
                m.errors
            );
        };
        row(
            &mut s,
            format!("raw JetStream publish + ack, 1 KiB, {} in flight", crate::phases::IN_FLIGHT),
            &r.raw,
            raw,
        );
        for (c, m) in &r.closed {
            row(&mut s, format!("webhook 202, closed loop, {c} in flight"), m, m.per_sec());
        }
        row(&mut s, format!("webhook 202, open loop at {}/s", rate(r.open_rate)), &r.open, r.open.per_sec());
        let e = &r.e2e;
        row(
            &mut s,
            format!("end to end: webhooks at {}/s, 202 latency", rate(e.rate)),
            &e.ingest,
            e.ingest.per_sec(),
        );
        row(
            &mut s,
            "end to end: runs completed/s; accept → completion event".into(),
            &e.latency,
            e.runs_per_sec,
        );
        let _ = writeln!(
            s,
            "\nEnd to end: {} runs failed, {} accepted triggers without a completion event after the drain, \
             {} runs not matched to a trigger. {} triggers of the ingest phases were purged before the \
             executor started.\n",
            e.failed_runs, e.incomplete, e.unmatched, r.purged
        );
    }

    for r in results {
        let Some(n) = &r.noisy else { continue };
        let _ = writeln!(s, "### Noisy neighbour ({})\n", r.mode.name());
        let _ = writeln!(
            s,
            "One account's 3-step Pilots at {}/s, alone and while another account attacks (template \
             memory bombs, runs into an endpoint that never answers, a login flood, headers that never \
             end); the executor with the default 8 execution slots per account.\n",
            rate(n.quiet.rate)
        );
        let _ = writeln!(
            s,
            "| victim | webhooks accepted/s | runs completed/s | accept → completion p50 ms | p99 ms | failed | incomplete |\n\
             |---|---:|---:|---:|---:|---:|---:|"
        );
        for (label, e) in [("alone", &n.quiet), ("under attack", &n.loud)] {
            let _ = writeln!(
                s,
                "| {label} | {} | {} | {} | {} | {} | {} |",
                rate(e.ingest.per_sec()),
                rate(e.runs_per_sec),
                f(e.latency.ms(0.5), 1),
                f(e.latency.ms(0.99), 1),
                e.failed_runs,
                e.incomplete
            );
        }
        let answers: Vec<String> = n
            .attacker
            .iter()
            .map(|(what, by)| {
                let by: Vec<String> = by.iter().map(|(status, k)| format!("{status}: {k}")).collect();
                format!("{what} ({})", by.join(", "))
            })
            .collect();
        let _ = writeln!(s, "\nThe attacker's answers by status (0: none): {}.\n", answers.join("; "));
    }

    if let Some(id) = identity {
        let _ = writeln!(s, "### Identity\n");
        let _ = writeln!(
            s,
            "| measurement | ops/s | p50 ms | p99 ms | p99.9 ms | errors |\n|---|---:|---:|---:|---:|---:|"
        );
        let median = id.hash_ms.get(id.hash_ms.len() / 2).copied().unwrap_or(f64::NAN);
        let _ = writeln!(
            s,
            "| scrypt hash alone (N = 2^17, r = 8, p = 1), median of {} | - | {} | - | - | 0 |",
            id.hash_ms.len(),
            f(median, 1)
        );
        for (name, m) in [
            (format!("Login over gRPC ({} at once)", id.login_concurrency), &id.login),
            ("VerifySession over gRPC, uncached (signature + session row)".into(), &id.verify_uncached),
            ("ExchangeToken over gRPC (the same checks + signing an access token)".into(), &id.exchange),
            (
                "Session-authenticated request, cached path: gateway `GET /` with the session cookie \
                 (session answer and access token cached)"
                    .into(),
                &id.verify_cached,
            ),
        ] {
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} | {} | {} |",
                rate(m.per_sec()),
                f(m.ms(0.5), 2),
                f(m.ms(0.99), 2),
                f(m.ms(0.999), 2),
                m.errors
            );
        }
        s.push('\n');
    }

    let _ = writeln!(s, "### Memory (RSS, MiB)\n");
    let mut header = String::from("| process |");
    let mut rule = String::from("|---|");
    for r in results {
        let _ = write!(header, " idle ({0}) | end of load ({0}) | peak ({0}) |", r.mode.name());
        rule.push_str("---:|---:|---:|");
    }
    let _ = writeln!(s, "{header}\n{rule}");
    for name in binaries().iter().map(String::as_str).chain(["nats-server"]) {
        let _ = write!(s, "| {name} |");
        for r in results {
            let get = |v: &[(String, f64)]| v.iter().find(|(n, _)| n == name).map(|(_, x)| *x);
            let _ = write!(
                s,
                " {} | {} | {} |",
                get(&r.rss_idle).map(|x| f(x, 1)).unwrap_or_else(|| "-".into()),
                get(&r.rss_end).map(|x| f(x, 1)).unwrap_or_else(|| "-".into()),
                r.rss_peak.get(name).map(|x| f(*x, 1)).unwrap_or_else(|| "-".into()),
            );
        }
        s.push('\n');
    }
    s
}

/// The newest committed full run under `dir` (not a `--quick` one): its file name
/// and JSON.
pub fn previous_run(dir: &std::path::Path) -> Option<(String, serde_json::Value)> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json") && !n.contains("quick"))
        .collect();
    // `2026-12-05.json` sorts after `2026-12-05-2.json`; order by what precedes ".json".
    names.sort_by_key(|n| {
        let stem = n.trim_end_matches(".json");
        let (date, n) = stem.get(10..).map_or((stem, 1), |rest| {
            (&stem[..10], rest.trim_start_matches('-').parse::<u32>().unwrap_or(1))
        });
        (date.to_owned(), n)
    });
    let name = names.pop()?;
    let text = std::fs::read_to_string(dir.join(&name)).ok()?;
    Some((name, serde_json::from_str(&text).ok()?))
}

/// Before → after: the headline figures of `previous` (the run in file `name`)
/// next to this run's.
pub fn comparison(name: &str, previous: &serde_json::Value, now: &serde_json::Value) -> String {
    // (what, true: in the durable mode's figures / false: at the top, JSON pointer)
    const ROWS: [(&str, bool, &str); 7] = [
        (
            "session-authenticated request, gateway cached path (/s)",
            false,
            "/identity/verify_session_cached_gateway/per_sec",
        ),
        ("VerifySession over gRPC, uncached (/s)", false, "/identity/verify_session_uncached_grpc/per_sec"),
        ("ExchangeToken over gRPC (/s)", false, "/identity/exchange_token_grpc/per_sec"),
        ("durable: webhook 202/s, 32 in flight", true, "/webhook_closed_loop/2/figures/per_sec"),
        ("durable: end to end, runs completed/s", true, "/end_to_end/runs_per_sec"),
        ("durable: end to end p50 (ms)", true, "/end_to_end/accept_to_completion/p50_ms"),
        ("durable: end to end p99 (ms)", true, "/end_to_end/accept_to_completion/p99_ms"),
    ];
    let pick = |v: &serde_json::Value, durable: bool, path: &str| -> Option<f64> {
        let base =
            if durable { v["modes"].as_array()?.iter().find(|m| m["mode"] == "sync_always")? } else { v };
        base.pointer(path)?.as_f64()
    };
    let cell = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |x| f(x, 1));
    let mut s = format!(
        "\n### Compared with the previous run ({name}, {})\n\n| measurement | before | now |\n|---|---:|---:|\n",
        previous["date"].as_str().unwrap_or("?")
    );
    for (what, durable, path) in ROWS {
        let (before, after) = (pick(previous, durable, path), pick(now, durable, path));
        let _ = writeln!(s, "| {what} | {} | {} |", cell(before), cell(after));
    }
    s
}

/// `bench/RESULTS.md`: how to reproduce, then the latest report.
pub fn results_md(report: &str) -> String {
    format!(
        "# Benchmark results\n\n\
         Written by `make bench` (see bench/README.md); `make bench-quick` is the short development run \
         and does not change this file. Every figure is measured in both JetStream sync modes; the \
         targets of issue #10 apply to the durable one (`sync_interval: always`), the default-sync \
         figures are a non-durable reference. The JSON of each run is under `bench/results/`.\n\n{report}"
    )
}

/// The JSON of a run.
pub fn json(
    machine: &Machine,
    results: &[ModeResult],
    identity: Option<&IdentityFigures>,
    quick: bool,
    elapsed: Duration,
) -> serde_json::Value {
    let modes: Vec<serde_json::Value> = results
        .iter()
        .map(|r| {
            let raw = r.raw.per_sec();
            let rss = |v: &[(String, f64)]| {
                v.iter().map(|(n, x)| (n.clone(), json!(round(*x, 1)))).collect::<serde_json::Map<_, _>>()
            };
            json!({
                "mode": r.mode.name(),
                "description": r.mode.describe(),
                "nats": r.nats_version,
                "raw_publish": { "in_flight": crate::phases::IN_FLIGHT, "bytes": crate::phases::MESSAGE_BYTES, "figures": r.raw.json() },
                "webhook_closed_loop": r.closed.iter().map(|(c, m)| json!({
                    "in_flight": c, "figures": m.json(), "ratio_to_raw": round(m.per_sec() / raw, 3),
                })).collect::<Vec<_>>(),
                "webhook_open_loop": { "rate": r.open_rate, "figures": r.open.json(), "ratio_to_raw": round(r.open.per_sec() / raw, 3) },
                "end_to_end": r.e2e.json(),
                "ingest_triggers_purged": r.purged,
                "noisy_neighbour": r.noisy.as_ref().map(crate::noisy::Noisy::json),
                "rss_mib": {
                    "idle": rss(&r.rss_idle),
                    "end_of_load": rss(&r.rss_end),
                    "peak_under_load": r.rss_peak.iter().map(|(n, x)| ((*n).to_owned(), json!(round(*x, 1)))).collect::<serde_json::Map<_, _>>(),
                },
            })
        })
        .collect();
    let targets: Vec<serde_json::Value> = results
        .iter()
        .find(|r| r.mode == SyncMode::Always)
        .map(|d| {
            checks(d, identity)
                .into_iter()
                .map(|c| json!({"what": c.what, "target": c.target, "measured": c.measured, "pass": c.pass}))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "date": time::OffsetDateTime::now_utc().date().to_string(),
        "quick": quick,
        "seconds": elapsed.as_secs(),
        "machine": {
            "cores": machine.cores,
            "memory_gib": round(machine.memory_gib, 1),
            "cpu": machine.cpu,
            "kernel": machine.kernel,
            "postgres": machine.postgres,
        },
        "targets_durable": targets,
        "modes": modes,
        "identity": identity.map(IdentityFigures::json),
    })
}
