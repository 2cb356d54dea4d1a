//! The NATS servers the bench starts (one per sync mode) over the testkit's
//! process harness, which also runs the services (see `suite.rs`).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use bizops_testkit::procs::{NatsOptions, NatsServer};

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

/// A NATS server of the bench's own (the testkit's harness), on a free port with a
/// fresh store and its log under [`scratch_dir`].
pub struct Nats {
    server: NatsServer,
    dir: PathBuf,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
}

impl Nats {
    /// Starts `.dev/venv/bin/nats-server` (installed by `scripts/dev-services`)
    /// with JetStream in `mode`.
    pub async fn start(mode: SyncMode) -> anyhow::Result<Self> {
        let dir = scratch_dir().join(format!("nats-{}-{}", mode.name(), std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).context("creating the NATS directory")?;
        let sync = match mode {
            SyncMode::Always => "  sync_interval: always\n",
            SyncMode::Default => "",
        };
        let config = dir.join("nats.conf");
        std::fs::write(
            &config,
            format!(
                "jetstream {{\n{sync}  max_memory_store: 256MB\n  max_file_store: 8GB\n}}\nmax_payload: 2MB\n"
            ),
        )?;
        let server = NatsServer::start(NatsOptions {
            binary: workspace_root().join(".dev/venv/bin/nats-server"),
            config,
            store: dir.join("store"),
            log: Some(dir.join("nats-server.log")),
        })
        .await?;
        Ok(Self { url: server.url(), server, dir })
    }

    /// Its process id.
    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    /// `nats-server --version`.
    pub fn version(&self) -> String {
        self.server.version()
    }

    /// Kills it and removes its store.
    pub async fn stop(mut self) {
        self.server.kill().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
