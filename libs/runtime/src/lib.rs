//! The gRPC server runtime every BizOps service shares, so each service's `app.rs`
//! only builds its own RPC handlers:
//!
//! - binds the gRPC and metrics listeners (port 0 works: tests read the port back);
//! - serves `grpc.health.v1.Health`, server reflection v1 + v1alpha, a span per RPC
//!   parented from the caller's trace context, RPC metrics, and the caller layer;
//! - serves Prometheus `/metrics`;
//! - on shutdown: reports NOT_SERVING, stops accepting, lets in-flight RPCs finish
//!   within a grace period, and tells background tasks to stop;
//! - [`db`]: Postgres pools per role; [`cli`]: the `serve` / `migrate` /
//!   `healthcheck` / `keygen` command line every service binary shares;
//!   [`clock`]: where "now" comes from; [`paging`]: keyset pagination of List RPCs.
#![forbid(unsafe_code)]

pub mod cli;
pub mod clock;
pub mod db;
pub mod paging;

use std::{future::Future, net::SocketAddr, time::Duration};

use anyhow::Context as _;
use bizops_authn::AuthLayer;
use bizops_telemetry::metrics::GrpcMetricsLayer;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tonic::transport::server::TcpIncoming;

/// Tells background tasks the service is stopping.
#[derive(Debug)]
pub struct Shutdown {
    tx: watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A signal that has not fired.
    pub fn new() -> Self {
        Self { tx: watch::channel(false).0 }
    }

    /// A future that resolves once shutdown begins (clone it into tasks).
    pub fn stopped(&self) -> Stopped {
        Stopped(self.tx.subscribe())
    }

    /// Begins shutdown: every [`Stopped`] resolves.
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }
}

/// Resolves when shutdown begins.
#[derive(Debug, Clone)]
pub struct Stopped(watch::Receiver<bool>);

impl Stopped {
    /// Waits for shutdown.
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|stopped| *stopped).await;
    }

    /// Whether shutdown has begun.
    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }
}

/// A service's listeners and identity, bound and ready to run.
#[derive(Debug)]
pub struct GrpcServer {
    name: &'static str,
    health_service: &'static str,
    grpc: TcpListener,
    metrics: TcpListener,
    drain: Duration,
    grace: Duration,
}

impl GrpcServer {
    /// Binds both listeners. `health_service` is the gRPC service name reported in
    /// health checks (e.g. `bizops.identity.v1.IdentityService`).
    pub async fn bind(
        name: &'static str,
        health_service: &'static str,
        grpc_addr: SocketAddr,
        metrics_addr: SocketAddr,
    ) -> anyhow::Result<Self> {
        let grpc =
            TcpListener::bind(grpc_addr).await.with_context(|| format!("binding gRPC on {grpc_addr}"))?;
        let metrics = TcpListener::bind(metrics_addr)
            .await
            .with_context(|| format!("binding metrics on {metrics_addr}"))?;
        Ok(Self {
            name,
            health_service,
            grpc,
            metrics,
            drain: Duration::ZERO,
            grace: Duration::from_secs(20),
        })
    }

    /// On shutdown, keep serving for `drain` while reporting NOT_SERVING (so load
    /// balancers stop routing here), then give in-flight RPCs up to `grace`.
    pub fn with_shutdown(mut self, drain: Duration, grace: Duration) -> Self {
        self.drain = drain;
        self.grace = grace;
        self
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.grpc.local_addr()?)
    }

    /// The bound metrics address.
    pub fn metrics_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.metrics.local_addr()?)
    }

    /// Serves `routes` behind the standard layers until `until` resolves, then shuts
    /// down gracefully: `shutdown` fires (background `tasks` should return), the
    /// health status turns NOT_SERVING, in-flight RPCs get the grace period.
    pub async fn run(
        self,
        auth: AuthLayer,
        routes: tonic::service::Routes,
        shutdown: Shutdown,
        tasks: Vec<JoinHandle<()>>,
        until: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (name, grpc_addr, metrics_addr) = (self.name, self.grpc_addr()?, self.metrics_addr()?);
        let handle = bizops_telemetry::metrics::recorder()?;
        let metrics_task =
            tokio::spawn(bizops_telemetry::metrics::serve(self.metrics, handle, shutdown.stopped().wait()));

        let (health_reporter, health) = bizops_proto::standard::health(self.health_service).await;
        let (reflection_v1, reflection_v1alpha) = bizops_proto::standard::reflection()?;
        let routes = routes.add_service(health).add_service(reflection_v1).add_service(reflection_v1alpha);
        let (close_tx, close_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tonic::transport::Server::builder()
            .trace_fn(bizops_telemetry::grpc::request_span)
            .layer(GrpcMetricsLayer)
            .layer(auth)
            .add_routes(routes)
            // TCP_NODELAY: without it a small response can wait for the peer's
            // delayed ACK (Nagle), ~40 ms per call on Linux.
            .serve_with_incoming_shutdown(TcpIncoming::from(self.grpc).with_nodelay(Some(true)), async {
                let _ = close_rx.await;
            });
        let mut server = tokio::spawn(server);

        bizops_proto::standard::set_serving(&health_reporter, self.health_service, true).await;
        tracing::info!(service = name, %grpc_addr, %metrics_addr, "{name} serving");

        tokio::select! {
            () = until => {}
            result = &mut server => {
                shutdown.trigger();
                result.context("gRPC server task")?.context("gRPC server")?;
                anyhow::bail!("gRPC server stopped unexpectedly");
            }
        }
        tracing::info!(
            service = name,
            drain_ms = self.drain.as_millis() as u64,
            "shutting down: reporting NOT_SERVING"
        );
        bizops_proto::standard::set_serving(&health_reporter, self.health_service, false).await;
        tokio::time::sleep(self.drain).await;
        tracing::info!(service = name, "no new RPCs; finishing in-flight ones");
        let _ = close_tx.send(());
        shutdown.trigger();
        match tokio::time::timeout(self.grace, &mut server).await {
            Ok(result) => result.context("gRPC server task")?.context("gRPC server")?,
            Err(_) => {
                tracing::warn!(grace_secs = self.grace.as_secs(), "in-flight RPCs did not finish in time");
                server.abort();
            }
        }
        for task in tasks {
            if tokio::time::timeout(self.grace, task).await.is_err() {
                tracing::warn!(service = name, "a background task did not stop in time");
            }
        }
        let _ = metrics_task.await;
        tracing::info!(service = name, "{name} stopped");
        Ok(())
    }
}
