//! The executor binary: `serve` (default), `migrate`, `healthcheck`, `keygen`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use executor::{App, ExecutorConfig, MIGRATOR};

#[tokio::main]
async fn main() -> ExitCode {
    bizops_runtime::cli::main::<ExecutorConfig, _, _>(Some(&MIGRATOR), |config| async move {
        App::build(config).await?.run().await
    })
    .await
}
