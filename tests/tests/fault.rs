//! Crashes under load, with the real binaries: while 1,000 signed webhooks arrive
//! for 20 Pilots, the executor is killed with SIGKILL and started again, and
//! later the NATS server is killed with SIGKILL and started again on its store.
//! Every webhook answered 202 must end in exactly one completed run — none lost,
//! none run twice — counted through each Pilot's run list in the public API. A
//! webhook refused during a crash (503) is retried with the same `webhook-id`, as
//! Standard Webhooks senders do, and still makes exactly one run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bizops_e2e::{
    browser::Browser,
    procs::{Options, Procs, sign_webhook},
};
use bizops_testkit::{until, wait::Polling};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::time::Instant;
use uuid::Uuid;

const PILOTS: usize = 20;
const WEBHOOKS: usize = 1_000;
const IN_FLIGHT: usize = 16;

/// Three local steps: transform → condition → transform.
fn spec(i: usize) -> Value {
    json!({
        "title": format!("Orders {i}"),
        "steps": [
            {"key": "shape", "kind": "transform", "config": {"template": "{\"n\": {{ trigger.n }}}"}},
            {"key": "check", "kind": "condition", "config": {"expression": "trigger.n >= 0", "on_false": "stop"}},
            {"key": "done", "kind": "transform", "config": {"template": "{\"ok\": true}"}}
        ]
    })
}

/// Every run of `pilot`, following the pages of the public API.
async fn all_runs(b: &mut Browser, pilot: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = b.get(&format!("/api/v1/pilots/{pilot}/runs?page_size=100&page_token={token}")).await;
        page.assert(StatusCode::OK);
        let page = page.json();
        out.extend(page["runs"].as_array().unwrap().iter().cloned());
        match page["next_page_token"].as_str() {
            Some(t) if !t.is_empty() => token = t.to_owned(),
            _ => return out,
        }
    }
}

#[derive(Default, Debug)]
struct Sent {
    /// (Pilot, trigger id) of every 202.
    accepted: Vec<(String, String)>,
    /// Status code (0: no answer) → count, for everything that was not a 202.
    refused: BTreeMap<u16, usize>,
}

#[tokio::test]
async fn every_accepted_webhook_runs_exactly_once_through_executor_and_nats_crashes() {
    let high = "1000000".to_owned();
    let burst = "100000".to_owned();
    let mut procs = Procs::start(Options {
        extra: vec![
            ("gateway", "BIZOPS_RATE_LIMITS__WEBHOOK_PER_PILOT__PER_MINUTE".into(), high.clone()),
            ("gateway", "BIZOPS_RATE_LIMITS__WEBHOOK_PER_PILOT__BURST".into(), burst.clone()),
            ("gateway", "BIZOPS_RATE_LIMITS__WEBHOOK_PER_SOURCE__PER_MINUTE".into(), high),
            ("gateway", "BIZOPS_RATE_LIMITS__WEBHOOK_PER_SOURCE__BURST".into(), burst),
            // The test polls every Pilot's runs through the API as one session.
            ("gateway", "BIZOPS_RATE_LIMITS__API_PER_SESSION__PER_MINUTE".into(), "0".into()),
            ("gateway", "BIZOPS_TIMEOUTS__PUBLISH".into(), "2s".into()),
            // A crashed executor's unacknowledged triggers come back after 2 s and
            // its claimed runs after their 2 s lease.
            ("executor", "BIZOPS_INTAKE__ACK_WAIT".into(), "2s".into()),
            ("executor", "BIZOPS_INTAKE__MAX_DELIVER".into(), "100".into()),
            ("executor", "BIZOPS_RUNS__LEASE".into(), "2s".into()),
            ("executor", "BIZOPS_RUNS__MAX_PER_PILOT".into(), "1000".into()),
        ],
        ..Options::default()
    })
    .await;
    let mut b = procs.browser();
    b.sign_up_and_in(&format!("fault-{}@example.com", Uuid::now_v7().simple())).await;
    let mut pilots = Vec::new();
    for i in 0..PILOTS {
        let r = b.post_json("/api/v1/pilots", &json!({"spec": spec(i), "enabled": true})).await;
        r.assert(StatusCode::CREATED);
        let j = r.json();
        pilots.push((
            j["pilot"]["id"].as_str().unwrap().to_owned(),
            j["webhook_secret"].as_str().unwrap().to_owned(),
        ));
    }
    let pilots = Arc::new(pilots);

    // The senders: IN_FLIGHT tasks share the 1,000 webhooks.
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let refusals = Arc::new(AtomicUsize::new(0));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
    let started = Instant::now();
    let mut senders = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (next, done, refusals, pilots, http, base) =
            (next.clone(), done.clone(), refusals.clone(), pilots.clone(), http.clone(), procs.base.clone());
        senders.push(tokio::spawn(async move {
            let mut sent = Sent::default();
            // About 250 webhooks a second in all: the crashes land mid-stream.
            let mut pace = tokio::time::interval(Duration::from_millis(60));
            // After a slow answer, the next one waits its turn (no catch-up burst).
            pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                pace.tick().await;
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= WEBHOOKS {
                    return sent;
                }
                let (pilot, secret) = &pilots[i % PILOTS];
                let body = json!({"n": i}).to_string();
                // What a Standard Webhooks sender does: retry a refusal with the
                // same message id until it is accepted.
                let mut retry = Polling::new(Duration::from_secs(60));
                loop {
                    let mut req = http
                        .post(format!("{base}/hooks/{pilot}"))
                        .header("content-type", "application/json")
                        .body(body.clone());
                    for (k, v) in sign_webhook(secret, &format!("msg_fault_{i}"), body.as_bytes()) {
                        req = req.header(k, v);
                    }
                    match req.send().await {
                        Ok(r) if r.status() == StatusCode::ACCEPTED => {
                            let j: Value = r.json().await.unwrap();
                            sent.accepted.push((pilot.clone(), j["trigger_id"].as_str().unwrap().to_owned()));
                            break;
                        }
                        Ok(r) => *sent.refused.entry(r.status().as_u16()).or_default() += 1,
                        Err(_) => *sent.refused.entry(0).or_default() += 1,
                    }
                    refusals.fetch_add(1, Ordering::SeqCst);
                    retry.next(format!("webhook {i} to be accepted: {sent:?}")).await;
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }

    // The crashes, at points in the stream.
    let wait_for = |n: usize| {
        let done = done.clone();
        async move {
            until(format!("{n} webhooks accepted"), Duration::from_secs(120), || {
                let reached = done.load(Ordering::SeqCst) >= n;
                async move { reached }
            })
            .await;
        }
    };
    wait_for(150).await;
    procs.kill("executor").await;
    println!(
        "executor killed (SIGKILL) after {} webhooks, at {:.1?}",
        done.load(Ordering::SeqCst),
        started.elapsed()
    );
    wait_for(350).await;
    procs.launch("executor").await;
    println!(
        "executor started again after {} webhooks, at {:.1?}",
        done.load(Ordering::SeqCst),
        started.elapsed()
    );
    wait_for(550).await;
    let refused_before = refusals.load(Ordering::SeqCst);
    procs.nats.kill().await;
    println!(
        "NATS killed (SIGKILL) after {} webhooks, at {:.1?}",
        done.load(Ordering::SeqCst),
        started.elapsed()
    );
    // NATS stays down until the gateway has felt it: a webhook refused meanwhile
    // (a refusal can take the gateway's whole publish timeout).
    until("a webhook refused while NATS is down", Duration::from_secs(30), || {
        let felt = refusals.load(Ordering::SeqCst) > refused_before;
        async move { felt }
    })
    .await;
    procs.nats.restart().await;
    println!(
        "NATS started again after {} webhooks, at {:.1?}",
        done.load(Ordering::SeqCst),
        started.elapsed()
    );

    let mut sent = Sent::default();
    for s in futures_util::future::join_all(senders).await {
        let s = s.unwrap();
        sent.accepted.extend(s.accepted);
        for (code, n) in s.refused {
            *sent.refused.entry(code).or_default() += n;
        }
    }
    let sending = started.elapsed();

    // Wait until every accepted trigger has a finished run (or time runs out).
    let accepted: BTreeSet<&str> = sent.accepted.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(accepted.len(), sent.accepted.len(), "trigger ids are unique");
    let mut patience = Polling::new(Duration::from_secs(120));
    let runs = loop {
        let mut runs = Vec::new();
        for (pilot, _) in pilots.iter() {
            runs.extend(all_runs(&mut b, pilot).await);
        }
        let finished = runs
            .iter()
            .filter(|r| accepted.contains(r["trigger_id"].as_str().unwrap()) && r["status"] == "succeeded")
            .count();
        if finished >= accepted.len() || !patience.again().await {
            break runs;
        }
    };

    let mut per_trigger: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in &runs {
        per_trigger.entry(r["trigger_id"].as_str().unwrap()).or_default().push(r["status"].as_str().unwrap());
    }
    let lost: Vec<&&str> = accepted.iter().filter(|t| !per_trigger.contains_key(**t)).collect();
    let duplicated: Vec<(&&str, &Vec<&str>)> = per_trigger.iter().filter(|(_, v)| v.len() > 1).collect();
    let unfinished: Vec<(&&str, &Vec<&str>)> =
        per_trigger.iter().filter(|(t, v)| accepted.contains(**t) && v != &&vec!["succeeded"]).collect();
    let unaccepted_runs = per_trigger.keys().filter(|t| !accepted.contains(**t)).count();
    println!(
        "fault test: {WEBHOOKS} webhooks to {PILOTS} Pilots in {:.1} s: {} accepted (202), refused {:?} \
         (status → count; 0 = no answer); runs: {} in all, {} for accepted triggers, {} succeeded exactly once; \
         lost {}, duplicated {}, unfinished {}; runs of no accepted trigger: {}",
        sending.as_secs_f64(),
        accepted.len(),
        sent.refused,
        runs.len(),
        per_trigger.keys().filter(|t| accepted.contains(**t)).count(),
        per_trigger.iter().filter(|(t, v)| accepted.contains(**t) && v == &&vec!["succeeded"]).count(),
        lost.len(),
        duplicated.len(),
        unfinished.len(),
        unaccepted_runs,
    );
    assert_eq!(accepted.len(), WEBHOOKS, "every webhook was accepted in the end");
    assert!(
        sent.refused.keys().all(|c| [0, 503].contains(c)),
        "a refusal during the crashes is a 503 (or no answer): {:?}",
        sent.refused
    );
    assert!(lost.is_empty(), "accepted but never run: {lost:?}");
    assert!(duplicated.is_empty(), "run more than once: {duplicated:?}");
    assert!(unfinished.is_empty(), "accepted but not completed: {unfinished:?}");
    assert_eq!(
        runs.len(),
        WEBHOOKS,
        "one run per webhook, however often it was retried (a refused attempt that was stored after all \
         is answered 202 with the same trigger on the retry)"
    );
    procs.stop_all().await;
}
