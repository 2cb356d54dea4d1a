//! The process harness (feature `procs`) the end-to-end tests and the bench share:
//! the suite's service binaries from a binary directory given by the caller
//! (`target/debug` for tests, `target/release` for the bench), a NATS server of the
//! suite's own, and the wiring of every service derived from the topology
//! (`libs/topology`): each service is started after the ones it calls, on port 0,
//! and told their URLs; a restarted service listens where it did before.
//!
//! A service is ready when it logs its JSON "… serving" line, which carries the
//! bound addresses. Output is kept in memory (tests search it) or written to a
//! file per service (the bench: nothing passes through the load generator).

use std::{
    collections::BTreeMap,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context as _, bail};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use bizops_authn::{ServiceSigner, SigningKey};
use bizops_topology::{Key, Keys, Topology, Wiring};
use secrecy::ExposeSecret as _;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncRead, BufReader},
    process::{Child, Command},
    task::JoinHandle,
};

use crate::wait::poll;

/// A variable list, as given to a process.
pub type Env = Vec<(String, String)>;

/// `(name, value)` as owned strings.
pub fn var(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_owned(), value.into())
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

/// Fresh keys for every identity, keyring and CSRF key the topology names.
pub fn generate_keys(topology: &Topology) -> anyhow::Result<Keys> {
    let session = SigningKey::generate("suite-session")?;
    let mut keys = Keys {
        session: session.to_secret_string().expose_secret().to_owned(),
        session_public: session.public().to_config_string(),
        ..Keys::default()
    };
    for id in topology.identities() {
        let key = SigningKey::generate(id)?;
        let public = ServiceSigner::new(id, key.clone()).public_key().to_config_string();
        keys.service.insert(id.to_owned(), (key.to_secret_string().expose_secret().to_owned(), public));
    }
    let random = || -> anyhow::Result<String> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        Ok(STANDARD.encode(bytes))
    };
    for s in &topology.services {
        if s.holds(Key::Keyring) {
            keys.keyring.insert(s.name.clone(), (format!("1:{}", random()?), "1".into()));
        }
        if s.holds(Key::Csrf) {
            keys.csrf.insert(s.name.clone(), random()?);
        }
    }
    Ok(keys)
}

/// Where a process's stdout and stderr go.
#[derive(Debug, Clone)]
pub enum Output {
    /// Kept in memory, every line (stderr lines marked `[stderr]`).
    Memory,
    /// Written to `<dir>/<binary>.log`.
    Files(PathBuf),
}

/// A command for `binary` in `bin_dir` with exactly `env` (plus `PATH`) over the
/// harness defaults: port 0 for every listener, JSON logs, no shutdown drain.
pub fn command(bin_dir: &Path, binary: &str, env: &[(String, String)]) -> anyhow::Result<Command> {
    let path = bin_dir.join(binary);
    if !path.exists() {
        bail!("{} is missing: build the services first (`cargo build --workspace --bins`)", path.display());
    }
    let listen = if binary == "gateway" { "BIZOPS_HTTP_ADDR" } else { "BIZOPS_GRPC_ADDR" };
    let mut cmd = Command::new(path);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(listen, "127.0.0.1:0")
        .env("BIZOPS_METRICS_ADDR", "127.0.0.1:0")
        .env("BIZOPS_LOG__FORMAT", "json")
        .env("BIZOPS_SHUTDOWN_DRAIN", "0s")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .kill_on_drop(true);
    Ok(cmd)
}

/// Runs `binary migrate`.
pub async fn migrate(bin_dir: &Path, binary: &str, env: &[(String, String)]) -> anyhow::Result<()> {
    let out = command(bin_dir, binary, env)?.arg("migrate").output().await?;
    if !out.status.success() {
        bail!("{binary} migrate failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// The bound addresses in a "… serving" log line (a JSON object, its fields at
/// the top or under `fields`).
fn serving(line: &str) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = if v["fields"].is_object() { &v["fields"] } else { &v };
    fields["message"].as_str().filter(|m| m.ends_with(" serving"))?;
    let addr = fields["grpc_addr"].as_str().or_else(|| fields["http_addr"].as_str())?;
    Some((addr.to_owned(), fields["metrics_addr"].as_str().unwrap_or_default().to_owned()))
}

type Lines = Arc<Mutex<Vec<String>>>;

fn keep_lines(
    from: impl AsyncRead + Unpin + Send + 'static,
    into: Lines,
    mark: &'static str,
    ready: Option<tokio::sync::oneshot::Sender<(String, String)>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ready = ready;
        let mut reader = BufReader::new(from);
        let mut buf = Vec::new();
        // Every line as written, bytes that are not UTF-8 replaced.
        while matches!(reader.read_until(b'\n', &mut buf).await, Ok(n) if n > 0) {
            let line = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).to_owned();
            buf.clear();
            if let Some(addrs) = ready.is_some().then(|| serving(&line)).flatten()
                && let Some(tx) = ready.take()
            {
                let _ = tx.send(addrs);
            }
            if let Ok(mut lines) = into.lock() {
                lines.push(format!("{mark}{line}"));
            }
        }
    })
}

/// A running service process.
pub struct Process {
    /// Binary name.
    pub name: String,
    /// Its gRPC address (the gateway: its HTTP address), `127.0.0.1:<port>`.
    pub addr: String,
    /// Its metrics address, `127.0.0.1:<port>`.
    pub metrics_addr: String,
    child: Child,
    lines: Lines,
    readers: Vec<JoinHandle<()>>,
    log_file: Option<PathBuf>,
}

impl Process {
    /// Starts `binary serve` and waits (≤ 30 s) until it logs that it is serving.
    pub async fn start(
        bin_dir: &Path,
        binary: &str,
        env: &[(String, String)],
        output: &Output,
    ) -> anyhow::Result<Self> {
        let mut cmd = command(bin_dir, binary, env)?;
        cmd.arg("serve");
        let lines = Lines::default();
        match output {
            Output::Memory => {
                let mut child = cmd
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .with_context(|| format!("starting {binary}"))?;
                let (tx, rx) = tokio::sync::oneshot::channel();
                let stdout = child.stdout.take().context("no stdout")?;
                let stderr = child.stderr.take().context("no stderr")?;
                let readers = vec![
                    keep_lines(stdout, lines.clone(), "", Some(tx)),
                    keep_lines(stderr, lines.clone(), "[stderr] ", None),
                ];
                let started = tokio::time::timeout(Duration::from_secs(30), rx).await;
                let mut process = Self {
                    name: binary.to_owned(),
                    addr: String::new(),
                    metrics_addr: String::new(),
                    child,
                    lines,
                    readers,
                    log_file: None,
                };
                match started {
                    Ok(Ok((addr, metrics))) => {
                        (process.addr, process.metrics_addr) = (addr, metrics);
                        Ok(process)
                    }
                    Ok(Err(_)) => bail!("{binary} exited before serving: {}", process.tail().await),
                    Err(_) => bail!("{binary} did not start within 30 s: {}", process.tail().await),
                }
            }
            Output::Files(dir) => {
                let path = dir.join(format!("{binary}.log"));
                let log =
                    std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
                let child = cmd
                    .stdout(log.try_clone()?)
                    .stderr(log)
                    .spawn()
                    .with_context(|| format!("starting {binary}"))?;
                let mut process = Self {
                    name: binary.to_owned(),
                    addr: String::new(),
                    metrics_addr: String::new(),
                    child,
                    lines,
                    readers: Vec::new(),
                    log_file: Some(path.clone()),
                };
                let found = poll(Duration::from_secs(30), || {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let exited = process.child.try_wait().ok().flatten().is_some();
                    let found = text.lines().find_map(serving).map(Some).or(exited.then_some(None));
                    async move { found }
                })
                .await;
                match found.flatten() {
                    Some((addr, metrics)) => {
                        (process.addr, process.metrics_addr) = (addr, metrics);
                        Ok(process)
                    }
                    None => bail!("{binary} did not start; last log lines: {}", process.tail().await),
                }
            }
        }
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything it logged so far.
    pub fn logs(&self) -> String {
        match &self.log_file {
            Some(path) => std::fs::read_to_string(path).unwrap_or_default(),
            None => self.lines.lock().map(|l| l.join("\n")).unwrap_or_default(),
        }
    }

    /// Its process id (`None` once it was waited for).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Its resident set size in MiB.
    pub fn rss(&self) -> f64 {
        self.pid().and_then(rss_mib).unwrap_or(f64::NAN)
    }

    async fn drained(&mut self) -> String {
        // The pipes end with the process: every line it wrote is in once the readers are done.
        for reader in self.readers.drain(..) {
            let _ = reader.await;
        }
        self.logs()
    }

    async fn tail(&mut self) -> String {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        let logs = self.drained().await;
        let lines: Vec<&str> = logs.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// SIGKILL (`kill -9`): no shutdown code runs. Everything it logged.
    pub async fn kill(mut self) -> String {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.drained().await
    }

    /// SIGTERM, then waits (≤ `within`) for the exit; its status and everything it logged.
    pub async fn stop(mut self, within: Duration) -> anyhow::Result<(ExitStatus, String)> {
        let pid = self.child.id().context("already exited")?.to_string();
        let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status()?;
        anyhow::ensure!(sent.success(), "kill -TERM {pid} failed");
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .map_err(|_| anyhow::anyhow!("{} did not stop within {within:?}", self.name))??;
        Ok((status, self.drained().await))
    }
}

/// How to start a NATS server of the suite's own.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// The `nats-server` binary.
    pub binary: PathBuf,
    /// Its configuration file (JetStream settings).
    pub config: PathBuf,
    /// The JetStream store directory (created; removed when the server is dropped
    /// or stopped).
    pub store: PathBuf,
    /// Where its output goes (`None`: discarded).
    pub log: Option<PathBuf>,
}

/// A NATS server on a port of its own.
pub struct NatsServer {
    /// Its client port.
    pub port: u16,
    options: NatsOptions,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server and waits (≤ 10 s) until it accepts connections.
    pub async fn start(options: NatsOptions) -> anyhow::Result<Self> {
        if !options.binary.exists() {
            bail!(
                "{} is missing: run scripts/dev-services (make dev-services) first",
                options.binary.display()
            );
        }
        std::fs::create_dir_all(&options.store).context("creating the NATS store directory")?;
        let mut server = Self { port: free_port()?, options, child: None };
        server.spawn().await?;
        Ok(server)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let o = &self.options;
        let output = match &o.log {
            Some(path) => Stdio::from(std::fs::File::create(path)?),
            None => Stdio::null(),
        };
        let child = Command::new(&o.binary)
            .arg("-js")
            .arg("-c")
            .arg(&o.config)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(&o.store)
            .stdout(Stdio::null())
            .stderr(output)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", o.binary.display()))?;
        self.child = Some(child);
        let port = self.port;
        let up = poll(Duration::from_secs(10), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(|_| ())
        })
        .await;
        anyhow::ensure!(up.is_some(), "nats-server did not listen on {} within 10 s", self.url());
        Ok(())
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Its process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// `nats-server --version`.
    pub fn version(&self) -> String {
        std::process::Command::new(&self.options.binary)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    }

    /// `kill -9`: the server gets no chance to flush anything.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Starts it again on the same port and store.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill().await;
        self.spawn().await
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.options.store);
    }
}

/// What a [`Cluster`] is made of.
pub struct ClusterSpec {
    /// Where the binaries are.
    pub bin_dir: PathBuf,
    /// Where their output goes.
    pub output: Output,
    /// The keys (see [`generate_keys`]).
    pub keys: Keys,
    /// `BIZOPS_NATS__URL` of the services that use NATS.
    pub nats_url: String,
    /// Everything but the wiring, per binary name (databases, tuning, fakes);
    /// applied after the wiring, so it may override it.
    pub env: BTreeMap<String, Env>,
}

/// The suite's services as processes, wired by the topology.
pub struct Cluster {
    topology: Topology,
    spec: ClusterSpec,
    /// Reserved or last bound (address, metrics address) per binary.
    addrs: BTreeMap<String, (String, String)>,
    running: BTreeMap<String, Process>,
    ended: Vec<(String, String)>,
}

impl Cluster {
    /// A cluster of the committed topology; nothing is started yet.
    pub fn new(spec: ClusterSpec) -> Self {
        Self {
            topology: Topology::get(),
            spec,
            addrs: BTreeMap::new(),
            running: BTreeMap::new(),
            ended: Vec::new(),
        }
    }

    /// The topology it follows.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The binaries in start order.
    pub fn binaries(&self) -> Vec<String> {
        self.topology.start_order().map(|o| o.iter().map(|s| s.binary.clone()).collect()).unwrap_or_default()
    }

    /// The environment `binary` gets (without its listen addresses).
    pub fn env_of(&self, binary: &str) -> anyhow::Result<Env> {
        let service = self.topology.by_binary(binary).with_context(|| format!("no service {binary}"))?;
        let addrs = &self.addrs;
        let topology = &self.topology;
        let url = |name: &str| {
            let addr = topology.service(name).and_then(|s| addrs.get(&s.binary)).map(|(a, _)| a.as_str());
            format!("http://{}", addr.unwrap_or("127.0.0.1:1"))
        };
        let wiring = Wiring {
            keys: &self.spec.keys,
            url: &url,
            static_session_keys: true,
            nats_url: &self.spec.nats_url,
        };
        let mut env = self.topology.env(&service.name, &wiring)?;
        env.extend(self.spec.env.get(binary).cloned().unwrap_or_default());
        Ok(env)
    }

    /// Sets `name=value` for `binary` from its next start on.
    pub fn set_env(&mut self, binary: &str, name: &str, value: &str) {
        self.spec.env.entry(binary.to_owned()).or_default().push(var(name, value));
    }

    /// Runs `migrate` of every service with a database.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        for s in self.topology.services.iter().filter(|s| s.database) {
            migrate(&self.spec.bin_dir, &s.binary, &self.env_of(&s.binary)?).await?;
        }
        Ok(())
    }

    /// Fixes `binary`'s address now (a free port), so the services that call it
    /// can start before it does.
    pub fn reserve(&mut self, binary: &str) -> anyhow::Result<String> {
        let addr = format!("127.0.0.1:{}", free_port()?);
        self.addrs.insert(binary.to_owned(), (addr.clone(), "127.0.0.1:0".into()));
        Ok(addr)
    }

    /// Starts `binary` (again): the URLs of the services it calls are those they
    /// listen on now; a restart listens where the process before it did.
    pub async fn launch(&mut self, binary: &str) -> anyhow::Result<()> {
        let service = self.topology.by_binary(binary).with_context(|| format!("no service {binary}"))?;
        if let Some(missing) = service.calls.iter().find(|c| {
            !service.calls_only_for_session_keys(c)
                && self.topology.service(c).is_some_and(|s| !self.addrs.contains_key(&s.binary))
        }) {
            bail!("{binary} calls {missing}, which has no address yet: start or reserve it first");
        }
        let mut env = self.env_of(binary)?;
        if let Some((addr, metrics)) = self.addrs.get(binary) {
            env.extend([var(service.addr_var(), addr.clone()), var("BIZOPS_METRICS_ADDR", metrics.clone())]);
        }
        let process = Process::start(&self.spec.bin_dir, binary, &env, &self.spec.output).await?;
        self.addrs.insert(binary.to_owned(), (process.addr.clone(), process.metrics_addr.clone()));
        self.running.insert(binary.to_owned(), process);
        Ok(())
    }

    /// Starts every service not running yet, in start order, but those in `except`.
    pub async fn start_all_but(&mut self, except: &[&str]) -> anyhow::Result<()> {
        for binary in self.binaries() {
            if !except.contains(&binary.as_str()) && !self.running.contains_key(&binary) {
                self.launch(&binary).await?;
            }
        }
        Ok(())
    }

    /// The running process of `binary`.
    pub fn get(&self, binary: &str) -> anyhow::Result<&Process> {
        self.running.get(binary).with_context(|| format!("{binary} is not running"))
    }

    /// The running processes.
    pub fn running(&self) -> impl Iterator<Item = &Process> {
        self.running.values()
    }

    /// `kill -9` of `binary`; its logs are kept for [`Cluster::stop_all`].
    pub async fn kill(&mut self, binary: &str) -> anyhow::Result<()> {
        let process = self.running.remove(binary).with_context(|| format!("{binary} is not running"))?;
        let logs = process.kill().await;
        self.ended.push((binary.to_owned(), logs));
        Ok(())
    }

    /// SIGTERM to every service, last started first; each must exit with success.
    /// Every line every process of the cluster logged, by binary name.
    pub async fn stop_all(&mut self) -> anyhow::Result<Vec<(String, String)>> {
        for binary in self.binaries().iter().rev() {
            if let Some(process) = self.running.remove(binary) {
                let (status, logs) = process.stop(Duration::from_secs(30)).await?;
                let tail: Vec<&str> = logs.lines().rev().take(20).collect();
                anyhow::ensure!(status.success(), "{binary} exited with {status}: {tail:?}");
                self.ended.push((binary.clone(), logs));
            }
        }
        Ok(self.ended.clone())
    }

    /// Kills every process at once (the bench: nothing to check on the way out).
    pub async fn kill_all(&mut self) {
        for (_, process) in std::mem::take(&mut self.running) {
            process.kill().await;
        }
    }
}
