//! The end-to-end suites: the whole suite in one test process ([`suite`]) and as
//! real processes ([`procs`], over the testkit's process harness), both wired by
//! the topology (`libs/topology`) and configured alike ([`profile`]); single
//! service processes for the tests that start them one by one ([`Service`]).
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The browser-like client (testkit's, shared with the gateway's tests).
pub use bizops_testkit::browser;
pub mod procs;
pub mod profile;
pub mod rows;
pub mod suite;

use std::{path::PathBuf, process::ExitStatus, time::Duration};

use bizops_testkit::procs::{Output, Process};
use tokio::process::Command;

/// `target/<profile>`, the folder above the test executable's `deps/` folder.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(|d| d.parent()).unwrap().to_path_buf()
}

/// A command for `name` with exactly `env` (plus PATH), JSON debug logs, ports 0.
pub fn command(name: &str, env: &[(String, String)]) -> Command {
    let mut env = env.to_vec();
    env.insert(0, ("BIZOPS_LOG__FILTER".into(), LOG_FILTER.into()));
    bizops_testkit::procs::command(&bin_dir(), name, &env)
        .unwrap_or_else(|e| panic!("{e:#} (make test builds them)"))
}

/// The log filter of every service process in the tests.
pub const LOG_FILTER: &str = "debug,h2=info,hyper=info,tower=info,async_nats=info";

/// Runs `name migrate` and fails the test if it fails.
pub async fn migrate(name: &str, env: &[(String, String)]) {
    let out = command(name, env).arg("migrate").output().await.unwrap();
    assert!(out.status.success(), "{name} migrate: {}", String::from_utf8_lossy(&out.stderr));
}

/// A running service process (the testkit harness's, with the tests' defaults:
/// output kept in memory, debug logs, panics instead of errors).
pub struct Service(Process);

impl std::ops::Deref for Service {
    type Target = Process;

    fn deref(&self) -> &Process {
        &self.0
    }
}

impl Service {
    /// Starts `name serve` and waits (≤ 30 s) until it logs that it is serving.
    pub async fn start(name: &str, env: &[(String, String)]) -> Self {
        let mut env = env.to_vec();
        env.insert(0, ("BIZOPS_LOG__FILTER".into(), LOG_FILTER.into()));
        Self(
            Process::start(&bin_dir(), name, &env, &Output::Memory).await.unwrap_or_else(|e| panic!("{e:#}")),
        )
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.0.pid().unwrap()
    }

    /// SIGKILL (`kill -9`): no shutdown code runs. Everything it logged.
    pub async fn kill(self) -> String {
        self.0.kill().await
    }

    /// SIGTERM, then waits (≤ 30 s) for the exit.
    pub async fn stop(self) -> (ExitStatus, String) {
        self.0.stop(Duration::from_secs(30)).await.unwrap_or_else(|e| panic!("{e:#}"))
    }
}
