//! Builds the identity service from configuration and runs it until shutdown.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use bizops_authn::{AuthLayer, Authenticator, PublicKey, ServiceVerifier};
use bizops_config::DbRole;
use bizops_proto::identity::v1::identity_service_server::IdentityServiceServer;
use bizops_telemetry::metrics::GrpcMetricsLayer;
use secrecy::ExposeSecret as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use time::OffsetDateTime;
use tokio::{net::TcpListener, sync::watch};
use tokio_stream::wrappers::TcpListenerStream;

use crate::{
    config::{GRPC_SERVICE, IdentityConfig, SERVICE_NAME},
    grpc::Identity,
    keys::KeyRing,
    password::Hasher,
    store::PgAccountStore,
    system::SystemStore,
    throttle::Throttle,
};

/// Largest request identity accepts (passwords are ≤ 1,024 characters).
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// A built, bound, not yet running identity service.
pub struct App {
    grpc: TcpListener,
    metrics: TcpListener,
    identity: Identity<PgAccountStore>,
    auth: Authenticator,
    throttle: Throttle,
    shutdown_grace: Duration,
}

/// Connects a pool for one role of the service.
pub async fn pool(config: &IdentityConfig, role: DbRole, max: u32) -> anyhow::Result<sqlx::PgPool> {
    let url = config.database.url(SERVICE_NAME, role);
    let options: PgConnectOptions = url.expose_secret().parse().context("database URL is not valid")?;
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(config.database.acquire_timeout)
        .connect_with(options.application_name(SERVICE_NAME))
        .await
        .with_context(|| format!("connecting to Postgres as the {role:?} role of identity"))
}

impl App {
    /// Validates configuration, connects to Postgres, prepares keys and the password
    /// hasher, and binds the gRPC and metrics listeners (port 0 picks a free port).
    pub async fn build(config: IdentityConfig) -> anyhow::Result<Self> {
        let keys = KeyRing::from_config(&config.keys, &config.session)?;
        let callers = config
            .service_auth
            .trusted_callers
            .iter()
            .map(|c| {
                PublicKey::parse(c).map_err(|e| anyhow::anyhow!("BIZOPS_SERVICE_AUTH__TRUSTED_CALLERS: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let auth = Authenticator::none()
            .with_local_sessions(keys.verifier())
            .with_services(ServiceVerifier::new(SERVICE_NAME, &callers));

        let service_pool = pool(&config, DbRole::Service, config.database.max_connections).await?;
        let system_pool = pool(&config, DbRole::System, config.database.system_max_connections).await?;
        let hasher = Arc::new(Hasher::new(&config.scrypt).await?);
        let system = SystemStore::new(system_pool);
        let throttle = Throttle::new(system.clone(), config.login_limits.clone());

        let grpc = TcpListener::bind(config.grpc_addr)
            .await
            .with_context(|| format!("binding {}", config.grpc_addr))?;
        let metrics = TcpListener::bind(config.metrics_addr)
            .await
            .with_context(|| format!("binding {}", config.metrics_addr))?;
        let identity = Identity {
            store: PgAccountStore::new(service_pool),
            system,
            hasher,
            keys,
            throttle: throttle.clone(),
            session: config.session.clone(),
            trust_forwarded_from: config.service_auth.trust_forwarded_source_from.clone(),
        };
        Ok(Self { grpc, metrics, identity, auth, throttle, shutdown_grace: config.shutdown_grace })
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.grpc.local_addr()?)
    }

    /// The bound metrics address.
    pub fn metrics_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.metrics.local_addr()?)
    }

    /// Runs until SIGTERM or Ctrl-C.
    pub async fn run(self) -> anyhow::Result<()> {
        self.run_until(bizops_telemetry::shutdown_signal()).await
    }

    /// Runs until `shutdown` resolves, then stops accepting, reports NOT_SERVING,
    /// and gives in-flight RPCs the configured grace period.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let grpc_addr = self.grpc_addr()?;
        let metrics_addr = self.metrics_addr()?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };

        let handle = bizops_telemetry::metrics::recorder()?;
        let metrics_task =
            tokio::spawn(bizops_telemetry::metrics::serve(self.metrics, handle, stopped(stop_rx.clone())));

        let sweeper = tokio::spawn(sweep_login_failures(self.throttle.clone(), stopped(stop_rx.clone())));

        let (health_reporter, health) = bizops_proto::standard::health(GRPC_SERVICE).await;
        let (reflection_v1, reflection_v1alpha) = bizops_proto::standard::reflection()?;
        let service = IdentityServiceServer::new(self.identity).max_decoding_message_size(MAX_REQUEST_BYTES);
        let server = tonic::transport::Server::builder()
            .trace_fn(bizops_telemetry::grpc::request_span)
            .layer(GrpcMetricsLayer)
            .layer(AuthLayer::new(self.auth))
            .add_service(health)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(service)
            .serve_with_incoming_shutdown(TcpListenerStream::new(self.grpc), stopped(stop_rx.clone()));
        let mut server = tokio::spawn(server);

        bizops_proto::standard::set_serving(&health_reporter, GRPC_SERVICE, true).await;
        tracing::info!(%grpc_addr, %metrics_addr, "identity serving");

        tokio::select! {
            () = shutdown => {}
            result = &mut server => {
                let _ = stop_tx.send(true);
                result.context("gRPC server task")?.context("gRPC server")?;
                anyhow::bail!("gRPC server stopped unexpectedly");
            }
        }
        tracing::info!("shutting down: no new RPCs, finishing in-flight ones");
        bizops_proto::standard::set_serving(&health_reporter, GRPC_SERVICE, false).await;
        let _ = stop_tx.send(true);
        match tokio::time::timeout(self.shutdown_grace, &mut server).await {
            Ok(result) => result.context("gRPC server task")?.context("gRPC server")?,
            Err(_) => {
                tracing::warn!(
                    grace_secs = self.shutdown_grace.as_secs(),
                    "in-flight RPCs did not finish in time"
                );
                server.abort();
            }
        }
        let _ = sweeper.await;
        let _ = metrics_task.await;
        tracing::info!("identity stopped");
        Ok(())
    }
}

/// Deletes login-failure rows that left the throttle window, once a minute.
async fn sweep_login_failures(throttle: Throttle, stopped: impl Future<Output = ()>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            () = &mut stopped => return,
            _ = tick.tick() => {
                match throttle.sweep(OffsetDateTime::now_utc()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(deleted = n, "swept old login failures"),
                    Err(e) => tracing::warn!(error = %e, "sweeping login failures failed"),
                }
            }
        }
    }
}
