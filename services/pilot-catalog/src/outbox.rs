//! Publishes committed outbox events (pilot deleted) to JetStream, then deletes
//! them. A change and its event are written in one transaction, so an event is
//! never lost when NATS is down, and never announces a change that rolled back.

use std::time::Duration;

use async_nats::jetstream;
use bizops_runtime::Stopped;
use tokio::sync::Notify;

use crate::system::SystemStore;

/// Runs until `stopped`; `wake` makes it look right away (after a commit).
pub async fn relay(
    system: SystemStore,
    js: jetstream::Context,
    wake: std::sync::Arc<Notify>,
    stopped: Stopped,
) {
    let stop = stopped.wait();
    tokio::pin!(stop);
    loop {
        match publish_pending(&system, &js).await {
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "outbox relay: publishing failed, will retry"),
        }
        tokio::select! {
            () = &mut stop => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Publishes one batch; returns how many events were published.
pub async fn publish_pending(system: &SystemStore, js: &jetstream::Context) -> anyhow::Result<usize> {
    let batch = system.outbox(100).await?;
    let mut done = Vec::with_capacity(batch.len());
    let mut failed = 0;
    for event in &batch {
        let published =
            bizops_bus::publish(js, event.subject.clone(), Some(&event.msg_id), event.payload.clone().into())
                .await;
        match published {
            Ok(_) => done.push(event.id),
            Err(e) => {
                // This one waits (with backoff); the events behind it go on.
                tracing::warn!(error = %e, outbox_id = event.id, "outbox event not published; will retry later");
                system.outbox_retry_later(event.id).await?;
                failed += 1;
            }
        }
    }
    system.outbox_done(&done).await?;
    if failed > 0 && done.is_empty() {
        anyhow::bail!("{failed} outbox events could not be published");
    }
    Ok(done.len())
}
