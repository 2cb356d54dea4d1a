//! The identity binary: parses the command line, loads configuration, initialises
//! telemetry and runs the chosen command.
#![forbid(unsafe_code)]

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use bizops_config::DbRole;
use clap::{Parser, Subcommand};
use identity::{App, IdentityConfig, MIGRATOR, config::GRPC_SERVICE};
use secrecy::ExposeSecret as _;
use sqlx::Connection as _;

#[derive(Parser)]
#[command(name = "identity", version, about = "BizOps Pilot identity service")]
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
    /// Exit 0 if the local server reports SERVING (for container health checks).
    Healthcheck,
    /// Print a new Ed25519 signing key as BIZOPS_KEYS__SIGNING_KEY, and its public key.
    Keygen {
        /// Key id.
        #[arg(long, default_value = "k1")]
        kid: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("identity: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    bizops_telemetry::install_crypto_provider();
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Keygen { kid } = &command {
        let key = bizops_authn::SigningKey::generate(kid)?;
        println!("BIZOPS_KEYS__SIGNING_KEY={}", key.to_secret_string().expose_secret());
        println!("# public key (for verifiers and BIZOPS_KEYS__PREVIOUS_PUBLIC_KEYS after a rotation):");
        println!("# {}", key.public().to_config_string());
        return Ok(());
    }
    let config: IdentityConfig = bizops_config::load(cli.config.as_deref())?;
    match command {
        Command::Serve => {
            let _telemetry = bizops_telemetry::init("identity", &config.log)?;
            App::build(config).await?.run().await
        }
        Command::Migrate => {
            let _telemetry = bizops_telemetry::init("identity", &config.log)?;
            let url = config.database.url("identity", DbRole::Migrator);
            let mut conn =
                sqlx::PgConnection::connect(url.expose_secret()).await.context("connecting as migrator")?;
            MIGRATOR.run(&mut conn).await.context("running identity migrations")?;
            tracing::info!("identity migrations applied");
            Ok(())
        }
        Command::Healthcheck => healthcheck(&config).await,
        Command::Keygen { .. } => Ok(()),
    }
}

async fn healthcheck(config: &IdentityConfig) -> anyhow::Result<()> {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let mut addr = config.grpc_addr;
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
        .check(HealthCheckRequest { service: GRPC_SERVICE.into() })
        .await?
        .into_inner()
        .status();
    anyhow::ensure!(status == ServingStatus::Serving, "identity is {status:?}");
    Ok(())
}
