//! A service running in-process (its `run_until` on a task), stopped gracefully.

use std::{future::Future, net::SocketAddr, time::Duration};

use tokio::{sync::oneshot, task::JoinHandle};

/// The shutdown future handed to a service's `run_until`.
pub type Until = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// A service started with [`InProcess::start`] or [`InProcess::start_isolated`].
pub struct InProcess {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl InProcess {
    /// Runs `run_until(shutdown)` on a task; `addr` is the service's bound address
    /// (read back from the built app before starting it).
    pub fn start<F, Fut>(addr: SocketAddr, run_until: F) -> Self
    where
        F: FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let until = Box::pin(async move {
            let _ = stopped.await;
        });
        let task = tokio::spawn(run_until(until));
        Self { addr, stop: Some(stop), task: Some(task), runtime: None }
    }

    /// Like [`InProcess::start`], but on a runtime of its own, so that
    /// [`InProcess::kill`] can end it the way a crash ends a process: every task it
    /// spawned stops at once, nothing is cleaned up, leases stay behind.
    /// `build` runs on that runtime and returns the service's address and its
    /// `run_until` future.
    pub fn start_isolated<B, BFut, R>(build: B) -> anyhow::Result<Self>
    where
        B: FnOnce() -> BFut + Send,
        BFut: Future<Output = anyhow::Result<(SocketAddr, R)>>,
        R: FnOnce(Until) -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>> + Send,
    {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let (addr, run_until) = std::thread::scope(|s| {
            s.spawn(|| runtime.block_on(build()))
                .join()
                .map_err(|_| anyhow::anyhow!("building the service panicked"))
        })??;
        let (stop, stopped) = oneshot::channel::<()>();
        let until: Until = Box::pin(async move {
            let _ = stopped.await;
        });
        let task = runtime.spawn(run_until(until));
        Ok(Self { addr, stop: Some(stop), task: Some(task), runtime: Some(runtime) })
    }

    /// Ends a service started with [`InProcess::start_isolated`] abruptly, like
    /// `kill -9`: its runtime shuts down without waiting for anything.
    pub fn kill(mut self) {
        self.stop.take();
        self.task.take();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }

    /// The service's gRPC address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, for tonic clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the service gracefully and waits (up to 30 s) for it to finish.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => tokio::time::timeout(Duration::from_secs(30), task).await??,
            None => Ok(()),
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
