//! The pilot-catalog binary: `serve` (default), `migrate`, `healthcheck`, `keygen`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use pilot_catalog::{App, CatalogConfig, MIGRATOR};

#[tokio::main]
async fn main() -> ExitCode {
    bizops_runtime::cli::main::<CatalogConfig, _, _>(Some(&MIGRATOR), |config| async move {
        App::build(config).await?.run().await
    })
    .await
}
