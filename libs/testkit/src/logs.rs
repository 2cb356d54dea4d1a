//! Captures every log line of the test process (all levels, JSON) so a test can
//! assert that no secret was ever logged.

use std::{
    io,
    sync::{Arc, Mutex, OnceLock},
};

use tracing_subscriber::{
    EnvFilter, fmt::MakeWriter, layer::SubscriberExt as _, util::SubscriberInitExt as _,
};

/// Shared buffer of captured output.
#[derive(Clone, Default)]
pub struct LogCapture {
    buf: Arc<Mutex<Vec<u8>>>,
}

impl LogCapture {
    /// Everything logged so far.
    pub fn contents(&self) -> String {
        let buf = match self.buf.lock() {
            Ok(b) => b.clone(),
            Err(p) => p.into_inner().clone(),
        };
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Panics (listing where) if any of `needles` occurs in the captured logs.
    pub fn assert_absent(&self, needles: &[&str]) {
        let text = self.contents();
        for needle in needles.iter().filter(|n| !n.is_empty()) {
            if let Some(line) = text.lines().find(|l| l.contains(needle)) {
                panic!("a secret appeared in the logs: {line}");
            }
        }
    }
}

/// Writer handed to the fmt layer.
pub struct Writer(Arc<Mutex<Vec<u8>>>);

impl io::Write for Writer {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self.0.lock() {
            Ok(mut b) => b.extend_from_slice(data),
            Err(p) => p.into_inner().extend_from_slice(data),
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogCapture {
    type Writer = Writer;
    fn make_writer(&'a self) -> Self::Writer {
        Writer(self.buf.clone())
    }
}

/// Installs (once per process) a global subscriber that records every event and
/// span field at TRACE level as JSON, and returns the shared capture.
pub fn capture_logs() -> LogCapture {
    static CAPTURE: OnceLock<LogCapture> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = LogCapture::default();
            let layer = tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(true)
                .with_writer(capture.clone());
            let _ = tracing_subscriber::registry().with(EnvFilter::new("trace")).with(layer).try_init();
            capture
        })
        .clone()
}
