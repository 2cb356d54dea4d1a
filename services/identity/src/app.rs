//! Builds the identity service from configuration and runs it until shutdown.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use bizops_authn::{AuthLayer, Authenticator, PublicKey, ServiceSigner, ServiceVerifier, SigningKey};
use bizops_config::DbRole;
use bizops_proto::identity::v1::identity_service_server::IdentityServiceServer;
use bizops_runtime::{
    GrpcServer, Shutdown, Stopped,
    clock::{Clock, SystemClock},
};
use tonic::service::Routes;

use crate::{
    config::{GRPC_SERVICE, IdentityConfig, SERVICE_NAME},
    deletion::Deleter,
    grpc::{Identity, register_limiter},
    keys::KeyRing,
    notify::Notifier,
    password::Hasher,
    store::PgAccountStore,
    system::SystemStore,
    throttle::Throttle,
};

/// Largest request identity accepts (passwords are ≤ 1,024 characters).
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// A built, bound, not yet running identity service.
pub struct App {
    server: GrpcServer,
    identity: Identity<PgAccountStore>,
    auth: Authenticator,
    throttle: Throttle,
    system: SystemStore,
    idle: Duration,
    deleter: Deleter,
    deletion_retry: Duration,
}

impl App {
    /// Validates configuration, connects to Postgres, prepares keys and the password
    /// hasher, and binds the gRPC and metrics listeners (port 0 picks a free port).
    pub async fn build(config: IdentityConfig) -> anyhow::Result<Self> {
        config.session.validate()?;
        let keys = KeyRing::from_config(&config.keys, &config.session)?;
        let callers = config
            .auth
            .trusted_callers
            .iter()
            .map(|c| PublicKey::parse(c).map_err(|e| anyhow::anyhow!("BIZOPS_AUTH__TRUSTED_CALLERS: {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let auth = Authenticator::none()
            .with_local_sessions(keys.verifier())
            .with_services(ServiceVerifier::new(SERVICE_NAME, &callers));

        let service_pool = bizops_runtime::db::pool(&config.database, SERVICE_NAME, DbRole::Service).await?;
        let system_pool = bizops_runtime::db::pool(&config.database, SERVICE_NAME, DbRole::System).await?;
        let hasher = Arc::new(Hasher::new(&config.scrypt).await?);
        let system = SystemStore::new(system_pool);
        let system_store = system.clone();
        let throttle = Throttle::new(system.clone(), config.login_limits.clone(), keys.hash_key());
        let signer = match &config.auth.service_key {
            Some(key) => {
                let key =
                    SigningKey::parse(key).map_err(|e| anyhow::anyhow!("BIZOPS_AUTH__SERVICE_KEY: {e}"))?;
                anyhow::ensure!(
                    key.kid() == SERVICE_NAME,
                    "BIZOPS_AUTH__SERVICE_KEY: the key id must be `{SERVICE_NAME}`, not `{}`",
                    key.kid()
                );
                Some(ServiceSigner::new(SERVICE_NAME, key))
            }
            None => {
                tracing::warn!(
                    "BIZOPS_AUTH__SERVICE_KEY is not set: account deletions will stop before the \
                     catalog step until it is"
                );
                None
            }
        };
        let notifier = Notifier::new(config.notifications.clone())?;
        let deleter = Deleter::new(
            &config,
            config.nats.clone(),
            system.clone(),
            throttle.clone(),
            signer,
            notifier.clone(),
        )?;

        let server = GrpcServer::bind(SERVICE_NAME, GRPC_SERVICE, config.grpc_addr, config.metrics_addr)
            .await?
            .with_shutdown(config.shutdown_drain, config.shutdown_grace);
        let identity = Identity {
            store: PgAccountStore::new(service_pool),
            system,
            hasher,
            keys,
            throttle: throttle.clone(),
            session: config.session.clone(),
            trust_forwarded_from: config.auth.trust_forwarded_source_from.clone(),
            register_limiter: Arc::new(register_limiter(config.login_limits.register_per_source_per_hour)),
            deleter: deleter.clone(),
            notifier,
            clock: Arc::new(SystemClock),
        };
        for name in &config.auth.trust_forwarded_source_from {
            if !callers.iter().any(|c| c.kid() == name) {
                tracing::warn!(
                    service = %name,
                    "forwarded end-user addresses are trusted from a service that is not a trusted caller; \
                     its requests will count against its own address"
                );
            }
        }
        Ok(Self {
            server,
            identity,
            auth,
            throttle,
            system: system_store,
            idle: config.session.idle_timeout,
            deleter,
            deletion_retry: config.deletion.retry_interval,
        })
    }

    /// Uses `clock` instead of the system clock wherever identity reads "now":
    /// session times, idle and expiry checks, login throttling, the session sweep.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.identity.clock = clock;
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

    /// Runs until `shutdown` resolves, then stops accepting, reports NOT_SERVING,
    /// and gives in-flight RPCs the configured grace period.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let stop = Shutdown::new();
        let sweeper = tokio::spawn(sweep(
            self.throttle.clone(),
            self.system.clone(),
            self.identity.clock.clone(),
            self.idle,
            stop.stopped(),
        ));
        let deletions =
            tokio::spawn(resume_deletions(self.deleter.clone(), self.deletion_retry, stop.stopped()));
        let service = IdentityServiceServer::new(self.identity).max_decoding_message_size(MAX_REQUEST_BYTES);
        self.server
            .run(AuthLayer::new(self.auth), Routes::new(service), stop, vec![sweeper, deletions], shutdown)
            .await
    }
}

/// Finishes account deletions that stopped midway (a crash, a service that did
/// not answer): every `every`, the first time one interval after start.
async fn resume_deletions(deleter: Deleter, every: Duration, stopped: Stopped) {
    let every = every.max(Duration::from_millis(10));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stopped = stopped.wait();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            () = &mut stopped => return,
            _ = tick.tick() => deleter.resume_all().await,
        }
    }
}

/// Once a minute: deletes login-failure rows that left the throttle window, and
/// sessions past their expiry or idle timeout.
async fn sweep(
    throttle: Throttle,
    system: SystemStore,
    clock: Arc<dyn Clock>,
    idle: Duration,
    stopped: Stopped,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    let stopped = stopped.wait();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            () = &mut stopped => return,
            _ = tick.tick() => {
                let now = clock.now();
                match throttle.sweep(now).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(deleted = n, "swept old login failures"),
                    Err(e) => tracing::warn!(error = %e, "sweeping login failures failed"),
                }
                match system.sweep_sessions(now, now - idle).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(deleted = n, "swept expired sessions"),
                    Err(e) => tracing::warn!(error = %e, "sweeping sessions failed"),
                }
            }
        }
    }
}
