//! Against the real local NATS (JetStream), under a unique prefix per test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_nats::jetstream;
use bizops_bus::{DEFAULT_DUPLICATE_WINDOW, EventKind, STREAM_MAX_AGE, Subjects, ensure_streams, publish};
use uuid::Uuid;

async fn setup() -> (jetstream::Context, Subjects) {
    let client =
        async_nats::connect(bizops_testkit::nats_url()).await.expect("NATS (run scripts/dev-services)");
    let js = jetstream::new(client);
    let subjects = Subjects::new(&bizops_testkit::nats_prefix()).unwrap();
    ensure_streams(&js, &subjects, 1, DEFAULT_DUPLICATE_WINDOW, STREAM_MAX_AGE).await.unwrap();
    (js, subjects)
}

async fn cleanup(js: &jetstream::Context, s: &Subjects) {
    for name in [s.triggers_stream(), s.events_stream(), s.dlq_stream()] {
        let _ = js.delete_stream(name).await;
    }
}

#[tokio::test]
async fn streams_are_created_idempotently_with_their_retention() {
    let (js, s) = setup().await;
    // A second call (another replica starting) changes nothing and does not fail.
    ensure_streams(&js, &s, 1, DEFAULT_DUPLICATE_WINDOW, STREAM_MAX_AGE).await.unwrap();
    let mut triggers = js.get_stream(s.triggers_stream()).await.unwrap();
    let info = triggers.info().await.unwrap();
    assert_eq!(info.config.retention, jetstream::stream::RetentionPolicy::WorkQueue);
    assert_eq!(info.config.max_age, STREAM_MAX_AGE);
    assert_eq!(info.config.duplicate_window, DEFAULT_DUPLICATE_WINDOW);
    let mut events = js.get_stream(s.events_stream()).await.unwrap();
    assert_eq!(events.info().await.unwrap().config.max_age, STREAM_MAX_AGE);
    cleanup(&js, &s).await;
}

#[tokio::test]
async fn msg_id_deduplicates_per_pilot_and_owner_subjects_purge() {
    let (js, s) = setup().await;
    let (owner, other_owner) = (Uuid::now_v7(), Uuid::now_v7());
    let (p1, p2) = (Uuid::now_v7(), Uuid::now_v7());

    let a = publish(&js, s.trigger(owner, p1), Some(&Subjects::trigger_msg_id(p1, "k")), "a".into())
        .await
        .unwrap();
    let again = publish(&js, s.trigger(owner, p1), Some(&Subjects::trigger_msg_id(p1, "k")), "a".into())
        .await
        .unwrap();
    assert!(!a.duplicate);
    assert!(again.duplicate, "same pilot + key is stored once");
    assert_eq!(again.sequence, a.sequence);
    // The same key on another Pilot is a different trigger.
    let b = publish(&js, s.trigger(owner, p2), Some(&Subjects::trigger_msg_id(p2, "k")), "b".into())
        .await
        .unwrap();
    assert!(!b.duplicate);
    publish(&js, s.trigger(other_owner, p1), None, "c".into()).await.unwrap();
    publish(&js, s.event(owner, EventKind::PilotDeleted), None, "d".into()).await.unwrap();

    // Purge one owner's messages by subject in every stream.
    for (stream, filter) in s.owner_filters(owner) {
        js.get_stream(stream).await.unwrap().purge().filter(filter).await.unwrap();
    }
    let mut triggers = js.get_stream(s.triggers_stream()).await.unwrap();
    assert_eq!(triggers.info().await.unwrap().state.messages, 1, "only the other owner's trigger is left");
    let mut events = js.get_stream(s.events_stream()).await.unwrap();
    assert_eq!(events.info().await.unwrap().state.messages, 0);
    cleanup(&js, &s).await;
}

#[tokio::test]
async fn nats_drops_messages_older_than_the_stream_max_age() {
    // The mechanism behind "finished queue jobs are gone after 7 days" on the bus:
    // the same stream configurations with a max age of one second.
    let client = async_nats::connect(bizops_testkit::nats_url()).await.unwrap();
    let js = jetstream::new(client);
    let s = Subjects::new(&bizops_testkit::nats_prefix()).unwrap();
    let age = std::time::Duration::from_secs(1);
    ensure_streams(&js, &s, 1, age, age).await.unwrap();
    let owner = Uuid::now_v7();
    publish(&js, s.trigger(owner, Uuid::now_v7()), None, "queued".into()).await.unwrap();
    publish(&js, s.event(owner, EventKind::PilotDeleted), None, "event".into()).await.unwrap();
    publish(&js, s.dlq(owner, Uuid::now_v7()), None, "dead".into()).await.unwrap();
    for name in [s.triggers_stream(), s.events_stream(), s.dlq_stream()] {
        let mut stream = js.get_stream(&name).await.unwrap();
        assert_eq!(stream.info().await.unwrap().state.messages, 1, "{name} holds the message");
    }
    let mut wait = bizops_testkit::wait::Polling::new(std::time::Duration::from_secs(10));
    for name in [s.triggers_stream(), s.events_stream(), s.dlq_stream()] {
        let mut stream = js.get_stream(&name).await.unwrap();
        while stream.info().await.unwrap().state.messages > 0 {
            wait.next(format!("{name} to drop its message at its max age")).await;
        }
    }
    cleanup(&js, &s).await;
}
