//! The process harness of the end-to-end tests: runs the real service binaries
//! (`target/<profile>/<name>`), waits for their "… serving" log line to learn the
//! bound address (they listen on port 0), collects their JSON logs, and stops them
//! with SIGTERM.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod browser;
pub mod procs;
pub mod rows;
pub mod suite;

use std::{
    path::PathBuf,
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::{Child, Command},
};

/// `target/<profile>/<name>`, next to the test executable's `deps/` folder.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (make test does)",
        path.display()
    );
    path
}

/// A command for `name` with exactly `env` (plus PATH), JSON logs, ports 0.
pub fn command(name: &str, env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(binary(name));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(if name == "gateway" { "BIZOPS_HTTP_ADDR" } else { "BIZOPS_GRPC_ADDR" }, "127.0.0.1:0")
        .env("BIZOPS_METRICS_ADDR", "127.0.0.1:0")
        .env("BIZOPS_LOG__FORMAT", "json")
        .env("BIZOPS_LOG__FILTER", "debug,h2=info,hyper=info,tower=info,async_nats=info")
        .env("BIZOPS_SHUTDOWN_DRAIN", "0s")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .kill_on_drop(true);
    cmd
}

/// Runs `name migrate` and fails the test if it fails.
pub async fn migrate(name: &str, env: &[(String, String)]) {
    let out = command(name, env).arg("migrate").output().await.unwrap();
    assert!(out.status.success(), "{name} migrate: {}", String::from_utf8_lossy(&out.stderr));
}

/// A running service process.
pub struct Service {
    /// Binary name.
    pub name: String,
    /// Its gRPC address (the gateway: its HTTP address), `127.0.0.1:<port>`.
    pub addr: String,
    /// Its metrics address, `127.0.0.1:<port>`.
    pub metrics_addr: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Service {
    /// Starts `name serve` and waits (≤ 30 s) until it logs that it is serving.
    pub async fn start(name: &str, env: &[(String, String)]) -> Self {
        let mut child =
            command(name, env).arg("serve").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<(String, String)>();
        // Every line is kept as written — stdout and stderr alike, bytes that are
        // not UTF-8 replaced — so what tests search is everything the process said.
        let sink = lines.clone();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        tokio::spawn(async move {
            let mut tx = Some(tx);
            let mut buf = Vec::new();
            while matches!(stdout.read_until(b'\n', &mut buf).await, Ok(n) if n > 0) {
                let line = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).to_owned();
                buf.clear();
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["message"].as_str().is_some_and(|m| m.ends_with(" serving"))
                    && let Some(tx) = tx.take()
                {
                    let addr =
                        v["grpc_addr"].as_str().or_else(|| v["http_addr"].as_str()).unwrap_or_default();
                    let metrics = v["metrics_addr"].as_str().unwrap_or_default();
                    let _ = tx.send((addr.to_owned(), metrics.to_owned()));
                }
                sink.lock().unwrap().push(line);
            }
        });
        let sink = lines.clone();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        tokio::spawn(async move {
            let mut buf = Vec::new();
            while matches!(stderr.read_until(b'\n', &mut buf).await, Ok(n) if n > 0) {
                let line = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).to_owned();
                buf.clear();
                sink.lock().unwrap().push(format!("[stderr] {line}"));
            }
        });
        let (addr, metrics_addr) = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .unwrap_or_else(|_| panic!("{name} did not start within 30 s"))
            .unwrap_or_else(|_| panic!("{name} exited before serving"));
        Self { name: name.to_owned(), addr, metrics_addr, child, lines }
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything it logged so far.
    pub fn logs(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// SIGKILL (`kill -9`): no shutdown code runs. Everything it logged.
    pub async fn kill(mut self) -> String {
        self.child.start_kill().unwrap();
        let _ = self.child.wait().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.logs()
    }

    /// SIGTERM, then waits (≤ 30 s) for the exit.
    pub async fn stop(mut self) -> (ExitStatus, String) {
        let pid = self.child.id().unwrap().to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not stop within 30 s", self.name))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        (status, self.logs())
    }
}

/// The `BIZOPS_DATABASE__*` variables of service `svc` on a test database.
pub fn database_env(db: &bizops_testkit::TestDb, svc: &str) -> Vec<(String, String)> {
    vec![
        ("BIZOPS_DATABASE__URL".into(), db.url(&format!("bizops_{svc}"))),
        ("BIZOPS_DATABASE__SYSTEM_URL".into(), db.url(&format!("bizops_{svc}_system"))),
        ("BIZOPS_DATABASE__MIGRATE_URL".into(), db.url("bizops_migrator")),
    ]
}
