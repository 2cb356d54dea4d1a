//! The executor binary: `serve` (default), `migrate`, `healthcheck`, `keygen`;
//! started by the executor itself as `render-worker`, a template sandbox process.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use executor::{App, ExecutorConfig, MIGRATOR, sandbox};

fn main() -> ExitCode {
    // A render worker is single-threaded and starts no runtime (see sandbox.rs).
    if std::env::args_os().nth(1).is_some_and(|a| a == sandbox::WORKER_ARG) {
        return sandbox::worker_main();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("executor: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime
        .block_on(bizops_runtime::cli::main::<ExecutorConfig, _, _>(Some(&MIGRATOR), |config| async move {
            App::build(config).await?.run().await
        }))
}
