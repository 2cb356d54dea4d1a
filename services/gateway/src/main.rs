//! The gateway binary: `serve` (default), `healthcheck` (asks `/readyz`),
//! `keygen`, `service-token`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use gateway::{App, GatewayConfig};

#[tokio::main]
async fn main() -> ExitCode {
    bizops_runtime::cli::main::<GatewayConfig, _, _>(None, |config| async move {
        App::build(config).await?.run().await
    })
    .await
}
