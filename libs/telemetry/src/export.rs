//! OTLP/gRPC span export from the SDK's batch thread.
//!
//! The SDK's batch span processor exports from a plain OS thread, but the tonic
//! exporter needs a Tokio reactor; without one every export panics with "there is
//! no reactor running" and spans are silently lost (open-telemetry/opentelemetry-rust
//! #2673 and friends). [`RuntimeExporter`] drives each export on a small runtime of
//! its own that lives for the whole process.

use std::{fmt, sync::OnceLock, time::Duration};

use opentelemetry_sdk::{
    error::OTelSdkResult,
    trace::{SpanData, SpanExporter},
};

fn export_runtime() -> anyhow::Result<&'static tokio::runtime::Runtime> {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(rt) = RT.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otel-export")
        .enable_all()
        .build()?;
    Ok(RT.get_or_init(|| rt))
}

/// The OTLP exporter configured from the standard `OTEL_EXPORTER_OTLP_*` variables.
pub(crate) fn otlp_exporter() -> anyhow::Result<RuntimeExporter> {
    let rt = export_runtime()?;
    let inner = {
        let _enter = rt.enter();
        opentelemetry_otlp::SpanExporter::builder().with_tonic().build()?
    };
    Ok(RuntimeExporter { rt, inner })
}

pub(crate) struct RuntimeExporter {
    rt: &'static tokio::runtime::Runtime,
    inner: opentelemetry_otlp::SpanExporter,
}

impl fmt::Debug for RuntimeExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeExporter").finish_non_exhaustive()
    }
}

impl SpanExporter for RuntimeExporter {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        let result = if tokio::runtime::Handle::try_current().is_ok() {
            // Called from inside a runtime (e.g. a flush from async code), where
            // blocking on another runtime is not allowed: block on a helper thread.
            std::thread::scope(|s| {
                s.spawn(|| self.rt.block_on(self.inner.export(batch))).join().unwrap_or(Ok(()))
            })
        } else {
            self.rt.block_on(self.inner.export(batch))
        };
        std::future::ready(result)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}
