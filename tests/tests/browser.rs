//! The dashboard journey in real headless Chromium (Debian `chromium` driven by
//! npm `playwright-core`, both installed by `scripts/dev-tools`) against the whole
//! suite in-process, with wiremock as Slack: sign up → connect Slack → create a
//! Pilot with an approval step → webhook → the run pauses live → approve → the
//! run finishes → export → change password → delete the account. The script
//! (`services/gateway/browser/journey.mjs`) asserts one cookie name, axe-core on
//! every page, no horizontal scroll at 375 px, and saves screenshots under
//! `target/screenshots/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::PathBuf, time::Duration};

use bizops_e2e::suite::Suite;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

#[tokio::test]
async fn the_dashboard_journey_in_headless_chromium() {
    let chromium = std::env::var("BIZOPS_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let browser_dir = repo().join("services/gateway/browser");
    assert!(
        std::path::Path::new(&chromium).exists() && browser_dir.join("node_modules/playwright-core").exists(),
        "Chromium ({chromium}) or playwright-core is missing: run scripts/dev-tools (make test does)"
    );
    // The browser must reach the gateway at its public origin (the session
    // cookie and the CSRF origin check depend on it), so the port is chosen first.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let origin = format!("http://127.0.0.1:{port}");
    let suite = Suite::start_with(|c| {
        c.gateway.http_addr = ([127, 0, 0, 1], port).into();
        c.gateway.public_origin = origin.clone();
        c.gateway.insecure_dev_cookies = true;
    })
    .await;
    let shots = repo().join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let output = tokio::time::timeout(
        Duration::from_secs(240),
        tokio::process::Command::new("node")
            .arg("journey.mjs")
            .current_dir(&browser_dir)
            .env("BIZOPS_TEST_BASE_URL", &origin)
            .env("BIZOPS_TEST_SLACK_URL", suite.slack_url())
            .env("BIZOPS_TEST_SCREENSHOTS", &shots)
            .env("BIZOPS_TEST_CHROMIUM", &chromium)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the journey finished in time")
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    if !output.status.success() {
        let logs = suite.logs.contents();
        let interesting = |l: &&str| {
            l.contains("\"level\":\"WARN")
                || l.contains("\"level\":\"ERROR")
                || l.contains("\"level\":\"INFO")
        };
        let tail: Vec<&str> = logs.lines().filter(interesting).rev().take(80).collect();
        eprintln!(
            "--- last service log lines ---\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    assert!(output.status.success(), "the browser journey failed ({}):\n{stdout}\n{stderr}", output.status);
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    // Slack received the approved run's message.
    let posted = suite.slack.received_requests().await.unwrap_or_default();
    assert!(posted.iter().any(|r| r.url.path().starts_with("/services/")), "Slack got the message");
}
