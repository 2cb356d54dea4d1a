//! A service running in-process (its `run_until` on a task), stopped gracefully.

use std::{future::Future, net::SocketAddr, time::Duration};

use tokio::{sync::oneshot, task::JoinHandle};

/// A service started with [`InProcess::start`].
pub struct InProcess {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
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
        Self { addr, stop: Some(stop), task: Some(task) }
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
    }
}
