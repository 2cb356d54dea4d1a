//! Processes the bench starts: its own NATS servers (one per sync mode) and the
//! five service binaries from `target/release`, each killed when dropped.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};

/// The workspace root (compile time).
pub fn workspace_root() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).to_path_buf()
}

/// Where the bench keeps NATS stores and service logs (git-ignored `.dev/bench`),
/// on the same disk as the project's own NATS store: `/tmp` may be a tmpfs, where
/// an fsync costs nothing and the durable figures would mean nothing.
pub fn scratch_dir() -> PathBuf {
    workspace_root().join(".dev").join("bench")
}

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Resident set size of process `pid` in MiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 =
        status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// JetStream's fsync policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// `sync_interval: always`: every write is on disk before the ack (the
    /// project's configuration; the targets apply here).
    Always,
    /// NATS' default (fsync every 2 minutes): a non-durable reference.
    Default,
}

impl SyncMode {
    /// Short name for tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            SyncMode::Always => "sync_always",
            SyncMode::Default => "sync_default",
        }
    }

    /// Human description.
    pub fn describe(self) -> &'static str {
        match self {
            SyncMode::Always => "durable: sync_interval always",
            SyncMode::Default => "non-durable reference: default 2-minute sync",
        }
    }
}

/// A NATS server of the bench's own, on a free port with a fresh store.
pub struct Nats {
    child: Child,
    dir: PathBuf,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    /// `nats-server --version`.
    pub version: String,
}

impl Nats {
    /// Starts `.dev/venv/bin/nats-server` (installed by `scripts/dev-services`)
    /// with JetStream in `mode`.
    pub async fn start(mode: SyncMode) -> anyhow::Result<Self> {
        let bin = workspace_root().join(".dev/venv/bin/nats-server");
        if !bin.exists() {
            bail!("{} is missing: run `make dev-services` (scripts/dev-services) first", bin.display());
        }
        let version = std::process::Command::new(&bin)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let dir = scratch_dir().join(format!("nats-{}-{}", mode.name(), std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("store")).context("creating the NATS store directory")?;
        let sync = match mode {
            SyncMode::Always => "  sync_interval: always\n",
            SyncMode::Default => "",
        };
        let conf = dir.join("nats.conf");
        std::fs::write(
            &conf,
            format!(
                "jetstream {{\n{sync}  max_memory_store: 256MB\n  max_file_store: 8GB\n}}\nmax_payload: 2MB\n"
            ),
        )?;
        let port = free_port()?;
        let log = std::fs::File::create(dir.join("nats-server.log"))?;
        let child = Command::new(&bin)
            .arg("-js")
            .arg("-sd")
            .arg(dir.join("store"))
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let url = format!("nats://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if Instant::now() > deadline {
                bail!("nats-server did not listen on {url} within 10 s; see {}", dir.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self { child, dir, url, version })
    }

    /// Its process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kills it and removes its store.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running service binary.
pub struct Service {
    /// Binary name.
    pub name: &'static str,
    /// `127.0.0.1:<port>`: gRPC, or HTTP for the gateway.
    pub addr: String,
    child: Child,
}

/// `target/<profile>/<name>`, next to the bench's own executable.
fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.parent().context("the bench executable has no directory")?.join(name);
    if !path.exists() {
        bail!(
            "{} is missing: build the services first with `cargo build --release --workspace --bins` \
             (make bench does)",
            path.display()
        );
    }
    Ok(path)
}

fn command(name: &str, env: &[(String, String)]) -> anyhow::Result<Command> {
    let mut cmd = Command::new(binary(name)?);
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    if name != "gateway" {
        cmd.env("BIZOPS_GRPC_ADDR", "127.0.0.1:0");
    }
    cmd.env("BIZOPS_METRICS_ADDR", "127.0.0.1:0")
        .env("BIZOPS_LOG__FORMAT", "json")
        .env("BIZOPS_SHUTDOWN_DRAIN", "0s")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .kill_on_drop(true);
    Ok(cmd)
}

/// Runs `name migrate`.
pub async fn migrate(name: &str, env: &[(String, String)]) -> anyhow::Result<()> {
    let out = command(name, env)?.arg("migrate").output().await?;
    if !out.status.success() {
        bail!("{name} migrate failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

impl Service {
    /// Starts `name serve` with its JSON log (default filter, info) written to
    /// `<log_dir>/<name>.log`, and waits (≤ 30 s) for its "… serving" line.
    pub async fn start(name: &'static str, env: &[(String, String)], log_dir: &Path) -> anyhow::Result<Self> {
        let log_path = log_dir.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path)?;
        let mut child = command(name, env)?
            .arg("serve")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let serving =
                text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).find(|v| {
                    v["message"].as_str().is_some_and(|m| m.ends_with(" serving"))
                        || v["fields"]["message"].as_str().is_some_and(|m| m.ends_with(" serving"))
                });
            if let Some(v) = serving {
                let fields = if v["fields"].is_object() { &v["fields"] } else { &v };
                let addr = fields["grpc_addr"].as_str().or_else(|| fields["http_addr"].as_str());
                if let Some(addr) = addr {
                    return Ok(Self { name, addr: addr.to_owned(), child });
                }
                bail!("{name} logged that it is serving without an address: {v}");
            }
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let tail: Vec<&str> = text.lines().rev().take(10).collect();
                bail!("{name} did not start (exit: {exited:?}); last log lines: {tail:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its resident set size in MiB.
    pub fn rss(&self) -> f64 {
        self.child.id().and_then(rss_mib).unwrap_or(f64::NAN)
    }

    /// Its process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kills it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
