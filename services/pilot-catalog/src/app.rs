//! Builds pilot-catalog from configuration and runs it until shutdown.

use std::{future::Future, net::SocketAddr, sync::Arc};

use bizops_authn::AuthLayer;
use bizops_config::DbRole;
use bizops_proto::catalog::v1::catalog_service_server::CatalogServiceServer;
use bizops_runtime::{
    GrpcServer, Shutdown,
    clock::{Clock, SystemClock},
};
use tokio::sync::Notify;
use tonic::service::Routes;

use crate::{
    cache::WebhookCache,
    config::{CatalogConfig, GRPC_SERVICE, SERVICE_NAME},
    grpc::Catalog,
    outbox,
    store::PgPilotStore,
    system::SystemStore,
    webhook::Keyring,
};

/// Largest request (an import document plus headroom).
const MAX_REQUEST_BYTES: usize = 2 * 1024 * 1024;

/// A built, bound, not yet running pilot-catalog.
pub struct App {
    server: GrpcServer,
    catalog: Catalog<PgPilotStore>,
    auth: AuthLayer,
    jetstream: async_nats::jetstream::Context,
}

impl App {
    /// Validates configuration, connects to Postgres and NATS (creating the
    /// streams), and binds the listeners (port 0 picks a free port).
    pub async fn build(config: CatalogConfig) -> anyhow::Result<Self> {
        let keyring = Keyring::from_config(&config.keys).map_err(anyhow::Error::msg)?;
        let auth = AuthLayer::new(config.auth.authenticator(SERVICE_NAME, config.identity_url.as_deref())?);
        let service_pool = bizops_runtime::db::pool(&config.database, SERVICE_NAME, DbRole::Service).await?;
        let system_pool = bizops_runtime::db::pool(&config.database, SERVICE_NAME, DbRole::System).await?;
        let (_client, jetstream) = config.nats.connect(SERVICE_NAME).await?;
        let system = SystemStore::new(system_pool);
        let mismatched = system.verify_key_checks(&keyring.check_values()).await?;
        if !mismatched.is_empty() {
            anyhow::bail!(
                "BIZOPS_KEYS__KEYRING: key {} does not match the key first used under that id; \
                 refusing to start (stored webhook secrets would not verify)",
                mismatched.join(", ")
            );
        }
        for (key_id, secrets) in system.secret_key_ids().await? {
            if !keyring.knows(&key_id) {
                tracing::warn!(
                    key_id,
                    secrets,
                    "stored webhook secrets use a catalog key that is not configured"
                );
            }
        }
        let server = GrpcServer::bind(SERVICE_NAME, GRPC_SERVICE, config.grpc_addr, config.metrics_addr)
            .await?
            .with_shutdown(config.shutdown_drain, config.shutdown_grace);
        let catalog = Catalog {
            store: PgPilotStore::new(service_pool).with_max_schedules(config.limits.max_schedules),
            system,
            keyring,
            cache: WebhookCache::new(config.webhooks.cache_ttl),
            limits: config.limits.clone(),
            rotation_grace: config.webhooks.rotation_grace,
            tolerance: config.webhooks.timestamp_tolerance,
            subjects: config.nats.subjects()?,
            outbox_wake: Arc::new(Notify::new()),
            clock: Arc::new(SystemClock),
        };
        Ok(Self { server, catalog, auth, jetstream })
    }

    /// Uses `clock` instead of the system clock wherever the RPCs read "now":
    /// webhook timestamps and the grace period of a rotated webhook secret.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.catalog.clock = clock;
        self
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> anyhow::Result<SocketAddr> {
        self.server.grpc_addr()
    }

    /// The bound metrics address.
    pub fn metrics_addr(&self) -> anyhow::Result<SocketAddr> {
        self.server.metrics_addr()
    }

    /// Runs until SIGTERM or Ctrl-C.
    pub async fn run(self) -> anyhow::Result<()> {
        self.run_until(bizops_telemetry::shutdown_signal()).await
    }

    /// Runs until `shutdown` resolves, then shuts down gracefully.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let stop = Shutdown::new();
        let relay = tokio::spawn(outbox::relay(
            self.catalog.system.clone(),
            self.jetstream,
            self.catalog.outbox_wake.clone(),
            stop.stopped(),
        ));
        let service = CatalogServiceServer::new(self.catalog).max_decoding_message_size(MAX_REQUEST_BYTES);
        self.server.run(self.auth, Routes::new(service), stop, vec![relay], shutdown).await
    }
}
