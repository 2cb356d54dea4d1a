//! JetStream facts for tests: whether durable consumers have handed out every
//! message and had every delivery acknowledged, and a wait until they have
//! ([`quiesce`]), optionally together with the service's own "nothing in hand"
//! signal ([`quiesce_with`]). A test that must show that nothing (more) happened
//! waits for this first: then the work that could have made it happen is done.

use async_nats::jetstream;

use crate::wait::{PATIENCE, until};

/// Whether every durable consumer, given as (stream, consumer), exists and has
/// nothing left to deliver (`num_pending == 0`) and no delivery awaiting its
/// acknowledgement (`num_ack_pending == 0`). A missing stream or consumer, or an
/// error asking, is not quiet.
pub async fn consumers_quiet(js: &jetstream::Context, consumers: &[(&str, &str)]) -> bool {
    for (stream, consumer) in consumers {
        let Ok(stream) = js.get_stream(stream).await else {
            return false;
        };
        match stream.consumer_info(consumer).await {
            Ok(info) if info.num_pending == 0 && info.num_ack_pending == 0 => {}
            _ => return false,
        }
    }
    true
}

/// Waits (at most [`PATIENCE`]) until [`consumers_quiet`] holds for `consumers`.
pub async fn quiesce(js: &jetstream::Context, consumers: &[(&str, &str)]) {
    quiesce_with(js, consumers, || true).await;
}

/// Waits (at most [`PATIENCE`]) until, in one poll, the consumers are quiet and
/// then `idle` holds: the service's signal that what it took from them is done
/// (e.g. nothing being taken in, no run queued or executing). The consumers are
/// read first: work a consumer hands over stays visible to `idle` until it is
/// finished, so nothing slips between the two reads.
pub async fn quiesce_with(js: &jetstream::Context, consumers: &[(&str, &str)], idle: impl Fn() -> bool) {
    let idle = &idle;
    let what = format!("the consumers {consumers:?} to be quiet and the service idle");
    until(what, PATIENCE, || async move { consumers_quiet(js, consumers).await && idle() }).await;
}
