//! The live run view: SSE fed by core NATS run events, after an ownership check.

use std::time::Duration;

use bizops_proto::events::v1::{self as events, RunStatus, StepStatus};
use futures_util::StreamExt as _;
use reqwest::StatusCode;

use crate::harness::{Gateway, ORIGIN};

/// Reads SSE events (name, data) until `until` returns true or 10 s pass.
async fn read_events(
    response: reqwest::Response,
    mut until: impl FnMut(&str, &str) -> bool,
) -> Vec<(String, String)> {
    let mut events = Vec::new();
    let mut buffer = String::new();
    let mut stream = response.bytes_stream();
    let deadline = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => panic!("timed out; got {events:?}"),
            chunk = stream.next() => {
                let Some(chunk) = chunk else { return events };
                buffer.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
                while let Some(end) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..end + 2).collect();
                    let mut name = String::from("message");
                    let mut data = String::new();
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event:") { name = v.trim().to_owned(); }
                        if let Some(v) = line.strip_prefix("data:") { data.push_str(v.trim_start()); }
                    }
                    if data.is_empty() && name == "message" { continue; }
                    let done = until(&name, &data);
                    events.push((name, data));
                    if done { return events; }
                }
            }
        }
    }
}

#[tokio::test]
async fn run_events_stream_live_and_end_when_the_run_finishes() {
    let gw = Gateway::start().await;
    let mut b = gw.user().await;
    let (pilot, _) = gw.pilot(&mut b, "Live").await;
    let run = gw.fakes.add_run(pilot, RunStatus::Running, &[("ask", StepStatus::Running)]);
    let owner = gw.world().pilots[&pilot].owner;
    let (name, value) = b.cookie.clone().unwrap();
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/runs/{run}/events", gw.base))
        .header("cookie", format!("{name}={value}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));

    let nats = gw.nats.clone();
    let subject = format!("{}.runs.{owner}.{run}", gw.prefix);
    let fakes = gw.fakes.clone();
    let publisher = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let event = |seq: u64, run_status: RunStatus, step: StepStatus| events::RunEvent {
            run_id: run.to_string(),
            owner_id: owner.to_string(),
            pilot_id: pilot.to_string(),
            run_status: run_status as i32,
            step: Some(events::StepEvent {
                step_key: "ask".into(),
                status: step as i32,
                attempt: 1,
                ..Default::default()
            }),
            occurred_at: None,
            sequence: seq,
        };
        fakes.set_run_status(run, RunStatus::AwaitingApproval);
        let e = event(1, RunStatus::AwaitingApproval, StepStatus::AwaitingApproval);
        nats.publish(subject.clone(), prost::Message::encode_to_vec(&e).into()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        fakes.set_run_status(run, RunStatus::Succeeded);
        let e = event(2, RunStatus::Succeeded, StepStatus::Succeeded);
        nats.publish(subject, prost::Message::encode_to_vec(&e).into()).await.unwrap();
        nats.flush().await.unwrap();
    });
    let got = read_events(response, |name, _| name == "end").await;
    publisher.await.unwrap();
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"snapshot"), "{got:?}");
    assert!(names.contains(&"change"), "{got:?}");
    assert_eq!(names.last(), Some(&"end"));
    let first_change: serde_json::Value =
        serde_json::from_str(&got.iter().find(|(n, _)| n == "change").unwrap().1).unwrap();
    assert_eq!(first_change["run_status"], "awaiting_approval");
    assert_eq!(first_change["step"]["step_key"], "ask");
    let last_snapshot: serde_json::Value =
        serde_json::from_str(&got.iter().rev().find(|(n, _)| n == "snapshot").unwrap().1).unwrap();
    assert_eq!(last_snapshot["status"], "succeeded");
    assert_eq!(got.last().unwrap().1, "finished");
    let _ = ORIGIN;
}

#[tokio::test]
async fn a_finished_run_sends_its_snapshot_and_ends() {
    let gw = Gateway::start().await;
    let mut b = gw.user().await;
    let (pilot, _) = gw.pilot(&mut b, "Done").await;
    let run = gw.fakes.add_run(pilot, RunStatus::Succeeded, &[("ask", StepStatus::Succeeded)]);
    let (name, value) = b.cookie.clone().unwrap();
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/runs/{run}/events", gw.base))
        .header("cookie", format!("{name}={value}"))
        .send()
        .await
        .unwrap();
    let got = read_events(response, |name, _| name == "end").await;
    assert_eq!(got.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["snapshot", "end"]);
}

#[tokio::test]
async fn signing_out_ends_an_open_stream() {
    let gw = Gateway::start().await;
    let mut b = gw.user().await;
    let (pilot, _) = gw.pilot(&mut b, "Open").await;
    let run = gw.fakes.add_run(pilot, RunStatus::Running, &[("ask", StepStatus::Running)]);
    let (name, value) = b.cookie.clone().unwrap();
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/runs/{run}/events", gw.base))
        .header("cookie", format!("{name}={value}"))
        .send()
        .await
        .unwrap();
    gw.fakes.revoke_all(&b.email);
    let got = read_events(response, |name, _| name == "end").await;
    assert_eq!(got.last().unwrap().1, "signed out");
}
