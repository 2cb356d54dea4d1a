//! The command line every service binary shares:
//!
//! - `serve` (default) — run the service;
//! - `migrate` — apply the service's migrations as the migrator role;
//! - `healthcheck` — exit 0 if the local server reports SERVING (container probes);
//! - `keygen` — print a new Ed25519 key (`<kid>:<base64 seed>`) and its public key,
//!   or with `--aes` a random 256-bit key, for development and key rotation;
//! - `service-token --audience <svc>` — print a 60-second service token signed with
//!   the key in `BIZOPS_SERVICE_TOKEN_KEY` (operators calling internal RPCs).

use std::{future::Future, net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use bizops_config::{DatabaseConfig, LogConfig};
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret as _;
use serde::de::DeserializeOwned;

/// What the shared command line needs to know about a service's configuration.
pub trait ServiceConfig: DeserializeOwned {
    /// Service name (`identity`, `catalog`, …).
    const NAME: &'static str;
    /// The gRPC service reported by health checks.
    const HEALTH_SERVICE: &'static str;
    /// Configuration keys renamed since; the old names still work and each one
    /// used is logged as a warning when the service starts.
    const RENAMED: &'static [bizops_config::Renamed] = &[];
    /// Log settings.
    fn log(&self) -> &LogConfig;
    /// Database settings, if the service has a database.
    fn database(&self) -> Option<&DatabaseConfig>;
    /// The gRPC listen address (for `healthcheck`).
    fn grpc_addr(&self) -> SocketAddr;
    /// For a service without gRPC (the gateway): the HTTP address whose
    /// `/readyz` `healthcheck` asks instead.
    fn http_health_addr(&self) -> Option<SocketAddr> {
        None
    }
}

#[derive(Parser)]
#[command(version)]
struct Cli {
    /// A TOML configuration file (layered between defaults and BIZOPS_* variables).
    #[arg(long, env = "BIZOPS_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve gRPC (the default).
    Serve,
    /// Apply database migrations as the migrator role, then exit.
    Migrate,
    /// Exit 0 if the local server reports SERVING.
    Healthcheck,
    /// Print a new key: Ed25519 `<kid>:<base64 seed>` and its public key, or with
    /// `--aes` a random 256-bit key in base64.
    Keygen {
        /// Key id (Ed25519 keys; a service's name for service-identity keys).
        #[arg(long, default_value = "k1")]
        kid: String,
        /// A 256-bit symmetric key instead.
        #[arg(long)]
        aes: bool,
    },
    /// Print a service token (valid 60 s) for calling `--audience` as the service
    /// whose key is in `BIZOPS_SERVICE_TOKEN_KEY` (`<name>:<base64 seed>`), e.g.
    /// an operator's `ops` key for the vault's key-management RPCs.
    ServiceToken {
        /// The service to call (`vault`, `catalog`, …).
        #[arg(long)]
        audience: String,
        /// The caller's key; read from the environment so it stays out of shell history.
        #[arg(long, env = "BIZOPS_SERVICE_TOKEN_KEY", hide_env_values = true)]
        key: String,
    },
}

/// Parses the command line and runs it. `serve` builds and runs the service from
/// its configuration; `migrator` is applied by `migrate`.
pub async fn main<C, F, Fut>(migrator: Option<&'static sqlx::migrate::Migrator>, serve: F) -> ExitCode
where
    C: ServiceConfig,
    F: FnOnce(C) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let cli = Cli::parse();
    match run(cli, migrator, serve).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: {e:#}", C::NAME);
            ExitCode::FAILURE
        }
    }
}

async fn run<C, F, Fut>(
    cli: Cli,
    migrator: Option<&'static sqlx::migrate::Migrator>,
    serve: F,
) -> anyhow::Result<()>
where
    C: ServiceConfig,
    F: FnOnce(C) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    bizops_telemetry::install_crypto_provider();
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Keygen { kid, aes } = &command {
        return keygen(kid, *aes);
    }
    if let Command::ServiceToken { audience, key } = &command {
        let key = bizops_authn::SigningKey::parse(&secrecy::SecretString::from(key.clone()))?;
        let name = key.kid().to_owned();
        println!("{}", bizops_authn::ServiceSigner::new(&name, key).token_for(audience)?);
        return Ok(());
    }
    let bizops_config::Loaded { config, deprecated } =
        bizops_config::load_renamed::<C>(cli.config.as_deref(), C::RENAMED)?;
    // Deprecated names are reported once the log is set up, so they reach it.
    let warn_deprecated = || deprecated.iter().for_each(bizops_config::Deprecation::warn);
    match command {
        Command::Serve => {
            let _telemetry = bizops_telemetry::init(C::NAME, config.log())?;
            warn_deprecated();
            serve(config).await
        }
        Command::Migrate => {
            let _telemetry = bizops_telemetry::init(C::NAME, config.log())?;
            warn_deprecated();
            let (Some(migrator), Some(db)) = (migrator, config.database()) else {
                tracing::info!("{} has no database; nothing to migrate", C::NAME);
                return Ok(());
            };
            crate::db::migrate(db, C::NAME, migrator).await?;
            tracing::info!("{} migrations applied", C::NAME);
            Ok(())
        }
        Command::Healthcheck => match config.http_health_addr() {
            Some(addr) => http_healthcheck(addr).await,
            None => healthcheck(C::HEALTH_SERVICE, config.grpc_addr()).await,
        },
        Command::Keygen { .. } | Command::ServiceToken { .. } => Ok(()),
    }
}

fn keygen(kid: &str, aes: bool) -> anyhow::Result<()> {
    if aes {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        println!("{}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key));
        return Ok(());
    }
    let key = bizops_authn::SigningKey::generate(kid)?;
    println!("{}", key.to_secret_string().expose_secret());
    println!("# public key: {}", key.public().to_config_string());
    Ok(())
}

/// `GET /readyz` must answer 200.
async fn http_healthcheck(mut addr: SocketAddr) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let probe = async {
        let mut conn = tokio::net::TcpStream::connect(addr).await?;
        conn.write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await?;
        let mut head = [0u8; 12];
        conn.read_exact(&mut head).await?;
        anyhow::Ok(head)
    };
    let head = tokio::time::timeout(Duration::from_secs(2), probe)
        .await
        .map_err(|_| anyhow::anyhow!("{addr} did not answer in time"))??;
    anyhow::ensure!(head.starts_with(b"HTTP/1.1 200"), "{addr}/readyz is not ready");
    Ok(())
}

async fn healthcheck(service: &str, mut addr: SocketAddr) -> anyhow::Result<()> {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest { service: service.into() })
        .await?
        .into_inner()
        .status();
    anyhow::ensure!(status == ServingStatus::Serving, "{service} is {status:?}");
    Ok(())
}
