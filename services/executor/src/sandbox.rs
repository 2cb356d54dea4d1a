//! Rendering templates where a memory limit holds during rendering.
//!
//! A template is code an account wrote. Fuel bounds its instructions, but one
//! instruction can build a string of any size (`a ~ a` doubles it), and checking
//! the size of a value after it was built is too late: the allocation already
//! happened. So templates are rendered in worker processes — the executor's own
//! binary started as `executor render-worker` — that lower their own address-space
//! limit (`RLIMIT_AS`) to what they use at start plus `templates.memory_mib`. A
//! render that needs more makes its worker's allocation fail; the worker dies
//! alone, the step fails with a clear error, and the next render gets a fresh
//! worker. The executor itself never holds a template's intermediate values.
//!
//! Workers start with an empty environment (no keys, no database URLs), read
//! length-prefixed JSON requests on stdin and answer on stdout; they exit when
//! stdin closes (so they never outlive the executor).
//!
//! The workers are shared by every account, so one account's renders may use at
//! most half of them at once (at least one): however slow its templates, the
//! others' renders always find a worker.

use std::{
    collections::HashMap,
    io::{Read, Write},
    path::PathBuf,
    process::{ExitCode, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    process::{Child, ChildStdin, ChildStdout, Command},
    sync::{OwnedSemaphorePermit, Semaphore},
};
use uuid::Uuid;

use crate::{config::TemplatesConfig, template::Renderer};

/// The first argument that makes the executor binary a render worker.
pub const WORKER_ARG: &str = "render-worker";

/// Protocol version a worker announces; a different binary is refused.
const PROTOCOL: u32 = 1;

/// Largest frame a worker reads (a context is at most a trigger payload and the
/// outputs of a run's steps, each bounded by `steps.max_output_bytes`).
const MAX_FRAME: usize = 512 * 1024 * 1024;

#[derive(Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request<'a> {
    Render { source: &'a str, ctx: &'a Value },
    Truthy { source: &'a str, ctx: &'a Value },
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Incoming {
    Render { source: String, ctx: Value },
    Truthy { source: String, ctx: Value },
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reply {
    Ready { protocol: u32 },
    Text(String),
    Bool(bool),
    Error(String),
}

/// What a render worker is started with.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Instructions per render.
    pub fuel: u64,
    /// Largest rendered text, in bytes.
    pub max_output: usize,
}

/// Renders templates in sandboxed worker processes (see the module docs).
#[derive(Clone)]
pub struct Templates {
    inner: Arc<Pool>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").field("program", &self.inner.program).finish_non_exhaustive()
    }
}

struct Pool {
    workers: usize,
    program: PathBuf,
    limits: Limits,
    memory_mib: u64,
    timeout: Duration,
    idle: Mutex<Vec<Worker>>,
    slots: Semaphore,
    /// Workers one account may use at once.
    per_owner: usize,
    /// The accounts rendering or waiting to, each with its share.
    owners: Mutex<HashMap<Uuid, Arc<Semaphore>>>,
}

impl Templates {
    /// A pool of at most `config.workers` workers (started when first needed).
    /// The worker program is `config.worker`, else this executable.
    pub fn new(config: &TemplatesConfig, limits: Limits) -> anyhow::Result<Self> {
        let program = match &config.worker {
            Some(p) => p.clone(),
            None => std::env::current_exe()?,
        };
        Ok(Self {
            inner: Arc::new(Pool {
                workers: config.workers.max(1),
                program,
                limits,
                memory_mib: config.memory_mib.max(16),
                timeout: config.timeout,
                idle: Mutex::new(Vec::new()),
                slots: Semaphore::new(config.workers.max(1)),
                per_owner: (config.workers / 2).max(1),
                owners: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Starts one worker now, so that a wrong worker program fails at start-up
    /// rather than at the first step.
    pub async fn check(&self) -> anyhow::Result<()> {
        let worker = Worker::spawn(&self.inner).await?;
        self.put_back(worker);
        Ok(())
    }

    /// Renders `source` against `ctx` (not counted against any account).
    pub async fn render(&self, source: &str, ctx: &Value) -> Result<String, String> {
        self.render_as(None, source, ctx).await
    }

    /// Renders a template of `owner`'s against `ctx`, within the account's share
    /// of the workers.
    pub async fn render_as(&self, owner: Option<Uuid>, source: &str, ctx: &Value) -> Result<String, String> {
        if source.is_empty() {
            return Ok(String::new());
        }
        match self.call(owner, &Request::Render { source, ctx }).await? {
            Reply::Text(text) => Ok(text),
            Reply::Error(e) => Err(e),
            _ => Err("template error: the renderer answered out of turn".into()),
        }
    }

    /// Evaluates an expression against `ctx` and tells whether it is true (not
    /// counted against any account).
    pub async fn truthy(&self, expression: &str, ctx: &Value) -> Result<bool, String> {
        self.truthy_as(None, expression, ctx).await
    }

    /// Like [`Templates::truthy`] for an expression of `owner`'s, within the
    /// account's share of the workers.
    pub async fn truthy_as(
        &self,
        owner: Option<Uuid>,
        expression: &str,
        ctx: &Value,
    ) -> Result<bool, String> {
        match self.call(owner, &Request::Truthy { source: expression, ctx }).await? {
            Reply::Bool(b) => Ok(b),
            Reply::Error(e) => Err(e),
            _ => Err("expression error: the renderer answered out of turn".into()),
        }
    }

    /// Workers rendering or being started for a render now.
    pub fn in_use(&self) -> usize {
        self.inner.workers.saturating_sub(self.inner.slots.available_permits())
    }

    fn put_back(&self, worker: Worker) {
        if let Ok(mut idle) = self.inner.idle.lock() {
            idle.push(worker);
        }
    }

    fn take_idle(&self) -> Option<Worker> {
        self.inner.idle.lock().ok().and_then(|mut idle| idle.pop())
    }

    /// Waits for `owner`'s turn: one of the account's share of the workers.
    async fn turn(&self, owner: Uuid) -> Option<OwnedSemaphorePermit> {
        let share = {
            let mut owners = self.inner.owners.lock().ok()?;
            // Accounts nobody renders for any more are forgotten.
            owners.retain(|_, s| Arc::strong_count(s) > 1 || s.available_permits() < self.inner.per_owner);
            owners.entry(owner).or_insert_with(|| Arc::new(Semaphore::new(self.inner.per_owner))).clone()
        };
        share.acquire_owned().await.ok()
    }

    async fn call(&self, owner: Option<Uuid>, request: &Request<'_>) -> Result<Reply, String> {
        let frame = serde_json::to_vec(request).map_err(|e| format!("template error: {e}"))?;
        let _turn = match owner {
            Some(o) => Some(self.turn(o).await.ok_or("template error: the renderer stopped")?),
            None => None,
        };
        let _slot = self.inner.slots.acquire().await.map_err(|_| "template error: the renderer stopped")?;
        // An idle worker that died meanwhile (killed from outside) fails on the
        // write, before it saw this request: then a fresh one is tried.
        let reused = match self.take_idle() {
            Some(mut w) => w.send(&frame).await.is_ok().then_some(w),
            None => None,
        };
        let mut worker = match reused {
            Some(w) => w,
            None => {
                let mut w = Worker::spawn(&self.inner).await.map_err(|e| {
                    tracing::error!(error = %format!("{e:#}"), "could not start a template worker");
                    "template error: the renderer is unavailable".to_owned()
                })?;
                w.send(&frame).await.map_err(|_| "template error: the renderer is unavailable")?;
                w
            }
        };
        // The worker cuts its output at `max_output` bytes; JSON escapes a byte in
        // at most six (`\u001f`), and the frame adds a little around it.
        let cap = self.inner.limits.max_output.saturating_mul(6).saturating_add(64 * 1024);
        match tokio::time::timeout(self.inner.timeout, worker.receive(cap)).await {
            Ok(Ok(reply)) => {
                self.put_back(worker);
                Ok(reply)
            }
            Ok(Err(e)) => {
                // It died (an allocation failed), or answered beyond the cap and
                // may be blocked writing the rest: either way it goes, and the
                // wait for its exit is bounded.
                let _ = worker.child.start_kill();
                let status = tokio::time::timeout(Duration::from_secs(5), worker.child.wait()).await;
                if e.kind() == std::io::ErrorKind::InvalidData {
                    metrics::counter!("executor_template_workers_lost_total", "reason" => "answer")
                        .increment(1);
                    tracing::warn!(?status, "a template worker answered beyond its limits");
                    return Err(
                        "template error: the renderer's answer was larger than the output limit".into()
                    );
                }
                metrics::counter!("executor_template_workers_lost_total", "reason" => "memory").increment(1);
                tracing::warn!(?status, "a template worker stopped while rendering");
                Err(format!(
                    "template error: rendering needed more than the {} MiB of memory a template may use",
                    self.inner.memory_mib
                ))
            }
            Err(_) => {
                let _ = worker.child.kill().await;
                metrics::counter!("executor_template_workers_lost_total", "reason" => "timeout").increment(1);
                Err(format!(
                    "template error: rendering took longer than {} s",
                    self.inner.timeout.as_secs_f64()
                ))
            }
        }
    }
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    async fn spawn(pool: &Pool) -> anyhow::Result<Self> {
        let mut child = Command::new(&pool.program)
            .arg(WORKER_ARG)
            .arg(pool.limits.fuel.to_string())
            .arg(pool.limits.max_output.to_string())
            .arg(pool.memory_mib.to_string())
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| anyhow::anyhow!("{}: {e}", pool.program.display()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            anyhow::bail!("{}: no pipes", pool.program.display());
        };
        let mut worker = Self { child, stdin, stdout: BufReader::new(stdout) };
        let hello = tokio::time::timeout(Duration::from_secs(10), worker.receive(1024)).await;
        match hello {
            Ok(Ok(Reply::Ready { protocol })) if protocol == PROTOCOL => Ok(worker),
            _ => anyhow::bail!(
                "{} did not start as a template worker (BIZOPS_TEMPLATES__WORKER names the executor binary)",
                pool.program.display()
            ),
        }
    }

    async fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        let len = u32::try_from(frame.len()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        self.stdin.write_all(&len.to_le_bytes()).await?;
        self.stdin.write_all(frame).await?;
        self.stdin.flush().await
    }

    async fn receive(&mut self, cap: usize) -> std::io::Result<Reply> {
        let mut len = [0u8; 4];
        self.stdout.read_exact(&mut len).await?;
        let len = u32::from_le_bytes(len) as usize;
        if len > cap {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        let mut frame = vec![0u8; len];
        self.stdout.read_exact(&mut frame).await?;
        serde_json::from_slice(&frame).map_err(|_| std::io::ErrorKind::InvalidData.into())
    }
}

/// The worker process: `executor render-worker <fuel> <max output> <memory MiB>`.
pub fn worker_main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(2).collect();
    let parsed = match args.as_slice() {
        [fuel, max_output, memory_mib] => {
            fuel.parse::<u64>().ok().zip(max_output.parse::<usize>().ok()).zip(memory_mib.parse::<u64>().ok())
        }
        _ => None,
    };
    let Some(((fuel, max_output), memory_mib)) = parsed else {
        eprintln!("usage: executor {WORKER_ARG} <fuel> <max output bytes> <memory MiB>");
        return ExitCode::from(2);
    };
    // If the container runs out of memory anyway, the kernel kills a worker first.
    let _ = std::fs::write("/proc/self/oom_score_adj", "1000");
    if let Err(e) = limit_address_space(memory_mib.saturating_mul(1024 * 1024)) {
        eprintln!("executor {WORKER_ARG}: could not limit memory: {e}");
        return ExitCode::from(2);
    }
    let renderer = Renderer::new(fuel, max_output);
    let mut input = std::io::stdin().lock();
    let mut output = std::io::stdout().lock();
    if write_frame(&mut output, &Reply::Ready { protocol: PROTOCOL }).is_err() {
        return ExitCode::from(1);
    }
    loop {
        let mut len = [0u8; 4];
        if input.read_exact(&mut len).is_err() {
            return ExitCode::SUCCESS; // the executor closed the pipe
        }
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_FRAME {
            return ExitCode::from(1);
        }
        let mut frame = vec![0u8; len];
        if input.read_exact(&mut frame).is_err() {
            return ExitCode::from(1);
        }
        let reply = match serde_json::from_slice::<Incoming>(&frame) {
            Ok(Incoming::Render { source, ctx }) => match renderer.render(&source, &ctx) {
                Ok(text) => Reply::Text(text),
                Err(e) => Reply::Error(e),
            },
            Ok(Incoming::Truthy { source, ctx }) => match renderer.truthy(&source, &ctx) {
                Ok(b) => Reply::Bool(b),
                Err(e) => Reply::Error(e),
            },
            Err(e) => Reply::Error(format!("template error: bad request: {e}")),
        };
        drop(frame);
        if write_frame(&mut output, &reply).is_err() {
            return ExitCode::from(1);
        }
    }
}

fn write_frame(out: &mut impl Write, reply: &Reply) -> std::io::Result<()> {
    let body = serde_json::to_vec(reply)?;
    let len = u32::try_from(body.len()).map_err(|_| std::io::ErrorKind::InvalidData)?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&body)?;
    out.flush()
}

/// Lowers this process's address-space limit to what it maps now plus `budget`
/// bytes (never above a limit it already has).
fn limit_address_space(budget: u64) -> std::io::Result<()> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or(std::io::ErrorKind::InvalidData)?;
    let mapped = pages.saturating_mul(rustix::param::page_size() as u64);
    let mut limit = mapped.saturating_add(budget);
    let current = getrlimit(Resource::As);
    if let Some(hard) = current.maximum {
        limit = limit.min(hard);
    }
    setrlimit(Resource::As, Rlimit { current: Some(limit), maximum: Some(limit) })?;
    Ok(())
}
