//! The credential-vault binary: `serve` (default), `migrate`, `healthcheck`, `keygen`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use credential_vault::{App, MIGRATOR, VaultConfig};

#[tokio::main]
async fn main() -> ExitCode {
    bizops_runtime::cli::main::<VaultConfig, _, _>(Some(&MIGRATOR), |config| async move {
        App::build(config).await?.run().await
    })
    .await
}
