//! Builds the vault from configuration and runs it until shutdown.

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use bizops_authn::{AuthLayer, Authenticator};
use bizops_config::DbRole;
use bizops_proto::vault::v1::vault_service_server::VaultServiceServer;
use bizops_runtime::{
    GrpcServer, Shutdown,
    clock::{Clock, SystemClock},
};
use tonic::service::Routes;

use crate::{
    absence::Absence,
    config::{GRPC_SERVICE, SERVICE_NAME, VaultConfig},
    connectors::Checker,
    crypto::KeyRing,
    grpc::Vault,
    rotation::Rotator,
    store::PgCredentialStore,
    system::SystemStore,
};

/// Largest request the vault accepts (values are ≤ 8 KiB by default).
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Largest value the limits may allow.
const MAX_VALUE_LIMIT: usize = 32 * 1024;

/// A built, bound, not yet running vault.
pub struct App {
    server: GrpcServer,
    vault: Vault<PgCredentialStore>,
    auth: Authenticator,
    rotator: Rotator,
}

impl App {
    /// Validates configuration and the keyring, connects to Postgres, checks every
    /// configured KEK against its stored key-check value, and binds the gRPC and
    /// metrics listeners (port 0 picks a free port).
    pub async fn build(config: VaultConfig) -> anyhow::Result<Self> {
        let keys = Arc::new(KeyRing::from_config(&config.keys)?);
        let auth = config.auth.authenticator(SERVICE_NAME, config.identity_url.as_deref())?;
        let checker = Checker::new(&config.connectors)?;
        anyhow::ensure!(
            (1..=MAX_VALUE_LIMIT).contains(&config.limits.max_value_bytes),
            "BIZOPS_LIMITS__MAX_VALUE_BYTES must be between 1 and {MAX_VALUE_LIMIT}"
        );
        anyhow::ensure!(
            config.limits.max_credentials_per_owner > 0,
            "BIZOPS_LIMITS__MAX_CREDENTIALS_PER_OWNER must be above zero"
        );
        if config.key_admins.is_empty() {
            tracing::warn!("BIZOPS_KEY_ADMINS is empty: nobody can start key rotations");
        }

        let service_pool = bizops_runtime::db::pool(&config.database, SERVICE_NAME, DbRole::Service).await?;
        let system_pool = bizops_runtime::db::pool(&config.database, SERVICE_NAME, DbRole::System).await?;
        let system = SystemStore::new(system_pool);
        check_keyring(&system, &keys).await?;

        let server = GrpcServer::bind(SERVICE_NAME, GRPC_SERVICE, config.grpc_addr, config.metrics_addr)
            .await?
            .with_shutdown(config.shutdown_drain, config.shutdown_grace);
        let rotator = Rotator::new(system.clone(), keys.clone(), config.rotation.clone());
        let vault = Vault {
            store: PgCredentialStore::new(service_pool),
            system,
            keys,
            checker,
            rotator: rotator.clone(),
            limits: config.limits.clone(),
            key_admins: config.key_admins.clone(),
            absence: Arc::default(),
            clock: Arc::new(SystemClock),
        };
        Ok(Self { server, vault, auth, rotator })
    }

    /// Uses `clock` instead of the system clock wherever the RPCs read "now",
    /// e.g. for the age of a remembered absence ([`crate::absence`]).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.vault.absence = Arc::new(Absence::new(clock.clone()));
        self.vault.clock = clock;
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
    /// and gives in-flight RPCs the configured grace period. A rotation job left
    /// running resumes at once; on shutdown it pauses after its current batch.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let stop = Shutdown::new();
        let rotation = tokio::spawn(self.rotator.supervise(stop.stopped()));
        let service = VaultServiceServer::new(self.vault).max_decoding_message_size(MAX_REQUEST_BYTES);
        self.server.run(AuthLayer::new(self.auth), Routes::new(service), stop, vec![rotation], shutdown).await
    }
}

/// Checks every configured KEK against its stored key-check value (storing the
/// value of a version seen for the first time), so a wrong key stops the service
/// here rather than surfacing later as credentials that do not decrypt.
async fn check_keyring(system: &SystemStore, keys: &KeyRing) -> anyhow::Result<()> {
    for version in keys.versions() {
        let mine = keys.check_value(version).context("keyring lost a version")?;
        let stored = system.key_check_value(version, &mine).await.context("reading KEK key-check values")?;
        anyhow::ensure!(
            keys.check_matches(version, &stored),
            "KEK version {version} does not match the key-check value stored for version {version}: \
             it is not the key this vault's data was written with; refusing to start \
             (configure the original key for version {version}, or give a new key a new version)"
        );
    }
    let active = keys.active_version();
    let min = system.min_decryption_version().await.context("reading the minimum decryption version")?;
    anyhow::ensure!(
        u32::try_from(min).unwrap_or(0) <= active,
        "the stored minimum decryption version {min} is above the active KEK version {active}: \
         new credentials could not be decrypted; activate a newer KEK version"
    );
    for (version, count) in system.version_census().await.context("counting credentials per KEK version")? {
        let v = u32::try_from(version).unwrap_or(0);
        if !keys.contains(v) {
            tracing::warn!(
                kek_version = version,
                credentials = count,
                "credentials are wrapped under a KEK version missing from the keyring; they will not decrypt"
            );
        } else if version < min {
            tracing::warn!(
                kek_version = version,
                credentials = count,
                min_decryption_version = min,
                "credentials are wrapped under a retired KEK version; they will not decrypt until rotated"
            );
        }
    }
    tracing::info!(versions = ?keys.versions().collect::<Vec<_>>(), active_version = active,
        min_decryption_version = min, "key-encryption keys checked");
    Ok(())
}
