//! NATS subjects and JetStream streams of ARCHITECTURE.md, all under a configurable
//! prefix `<P>` (default `bizops`) so environments and tests never collide:
//!
//! | stream | subjects | retention |
//! |---|---|---|
//! | `<P>_TRIGGERS` | `<P>.triggers.<owner_id>.<pilot_id>` | work queue, max age 7 days, dedup on `Nats-Msg-Id` |
//! | `<P>_EVENTS` | `<P>.events.<owner_id>.<kind>` | limits, max age 7 days |
//! | `<P>_DLQ` | `<P>.dlq.<owner_id>.<pilot_id>` | limits, max age 7 days |
//! | (core NATS) | `<P>.runs.<owner_id>.<run_id>` | not stored |
//!
//! The owner id is in every subject, so one owner's messages can be purged by subject.
#![forbid(unsafe_code)]

use std::{fmt, time::Duration};

use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use uuid::Uuid;

/// Default subject prefix.
pub const DEFAULT_PREFIX: &str = "bizops";
/// Retention of every stream (triggers, events, DLQ).
pub const STREAM_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default JetStream duplicate window of the triggers stream. Longer-term
/// idempotency is the executor's unique (pilot id, idempotency key).
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The prefix is not 1–32 characters of `[A-Za-z0-9_-]`.
    #[error("NATS prefix must be 1-32 characters of A-Z a-z 0-9 _ -")]
    Prefix,
    /// An event kind is not `[a-z0-9_]+`.
    #[error("event kind must be lowercase letters, digits and _")]
    Kind,
    /// The NATS server could not be reached.
    #[error("connecting to NATS: {0}")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// JetStream refused to create or update a stream.
    #[error("stream {stream}: {source}")]
    Stream {
        /// Stream name.
        stream: String,
        /// Cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A publish failed or was not acknowledged.
    #[error("publish to {subject}: {source}")]
    Publish {
        /// Subject.
        subject: String,
        /// Cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Kinds of owner-scoped events on `<P>.events.<owner_id>.<kind>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `bizops.events.v1.PilotDeleted`
    PilotDeleted,
    /// `bizops.events.v1.OwnerDeleted`
    OwnerDeleted,
}

impl EventKind {
    /// The subject token.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::PilotDeleted => "pilot_deleted",
            EventKind::OwnerDeleted => "owner_deleted",
        }
    }
}

/// Subject and stream names under one prefix.
///
/// ```
/// use bizops_bus::Subjects;
/// let s = Subjects::new("bizops").unwrap();
/// let (owner, pilot) = (uuid::Uuid::nil(), uuid::Uuid::nil());
/// assert_eq!(s.triggers_stream(), "bizops_TRIGGERS");
/// assert!(s.trigger(owner, pilot).starts_with("bizops.triggers.00000000-"));
/// assert!(Subjects::new("no.dots").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

impl fmt::Display for Subjects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.prefix)
    }
}

impl Subjects {
    /// Names under `prefix`.
    pub fn new(prefix: &str) -> Result<Self, BusError> {
        let ok = !prefix.is_empty()
            && prefix.len() <= 32
            && prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if ok { Ok(Self { prefix: prefix.to_owned() }) } else { Err(BusError::Prefix) }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<P>_TRIGGERS`
    pub fn triggers_stream(&self) -> String {
        format!("{}_TRIGGERS", self.prefix)
    }

    /// `<P>_EVENTS`
    pub fn events_stream(&self) -> String {
        format!("{}_EVENTS", self.prefix)
    }

    /// `<P>_DLQ`
    pub fn dlq_stream(&self) -> String {
        format!("{}_DLQ", self.prefix)
    }

    /// `<P>.triggers.<owner_id>.<pilot_id>`
    pub fn trigger(&self, owner: Uuid, pilot: Uuid) -> String {
        format!("{}.triggers.{owner}.{pilot}", self.prefix)
    }

    /// `<P>.events.<owner_id>.<kind>`
    pub fn event(&self, owner: Uuid, kind: EventKind) -> String {
        format!("{}.events.{owner}.{}", self.prefix, kind.as_str())
    }

    /// `<P>.dlq.<owner_id>.<pilot_id>`
    pub fn dlq(&self, owner: Uuid, pilot: Uuid) -> String {
        format!("{}.dlq.{owner}.{pilot}", self.prefix)
    }

    /// `<P>.runs.<owner_id>.<run_id>` (core NATS, live run events).
    pub fn run_events(&self, owner: Uuid, run: Uuid) -> String {
        format!("{}.runs.{owner}.{run}", self.prefix)
    }

    /// `<P>.runs.<owner_id>.*`, every live run event of an owner.
    pub fn owner_run_events(&self, owner: Uuid) -> String {
        format!("{}.runs.{owner}.*", self.prefix)
    }

    /// Subject filters matching every stored message of `owner`, per stream name,
    /// for purging an owner on account deletion.
    pub fn owner_filters(&self, owner: Uuid) -> [(String, String); 3] {
        [
            (self.triggers_stream(), format!("{}.triggers.{owner}.>", self.prefix)),
            (self.events_stream(), format!("{}.events.{owner}.>", self.prefix)),
            (self.dlq_stream(), format!("{}.dlq.{owner}.>", self.prefix)),
        ]
    }

    /// `Nats-Msg-Id` of a trigger: `<pilot_id>:<idempotency key>`, so one owner's
    /// key can never swallow another Pilot's trigger.
    pub fn trigger_msg_id(pilot: Uuid, key: &str) -> String {
        format!("{pilot}:{key}")
    }

    /// The stream configurations, with `replicas` copies each (1 locally, 3 in a
    /// cluster), the given duplicate window on the triggers stream, and messages
    /// dropped by NATS itself after `max_age` (7 days in production).
    pub fn stream_configs(
        &self,
        replicas: usize,
        duplicate_window: Duration,
        max_age: Duration,
    ) -> [stream::Config; 3] {
        let base = |name: String, subjects: String| stream::Config {
            name,
            subjects: vec![subjects],
            max_age,
            storage: stream::StorageType::File,
            num_replicas: replicas.max(1),
            ..Default::default()
        };
        [
            stream::Config {
                retention: stream::RetentionPolicy::WorkQueue,
                duplicate_window,
                ..base(self.triggers_stream(), format!("{}.triggers.*.*", self.prefix))
            },
            stream::Config {
                retention: stream::RetentionPolicy::Limits,
                ..base(self.events_stream(), format!("{}.events.*.*", self.prefix))
            },
            stream::Config {
                retention: stream::RetentionPolicy::Limits,
                ..base(self.dlq_stream(), format!("{}.dlq.*.*", self.prefix))
            },
        ]
    }
}

/// Creates or updates the three streams so their configuration matches
/// [`Subjects::stream_configs`]. Idempotent; every service that publishes or
/// consumes calls it at start-up.
pub async fn ensure_streams(
    js: &jetstream::Context,
    subjects: &Subjects,
    replicas: usize,
    duplicate_window: Duration,
    max_age: Duration,
) -> Result<(), BusError> {
    for config in subjects.stream_configs(replicas, duplicate_window, max_age) {
        let name = config.name.clone();
        js.create_or_update_stream(config)
            .await
            .map_err(|e| BusError::Stream { stream: name, source: Box::new(e) })?;
    }
    Ok(())
}

/// How a service reaches NATS (`BIZOPS_NATS__*`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL(s), comma-separated; may carry credentials, so it is a secret.
    pub url: secrecy::SecretString,
    /// Prefix of every subject and stream name.
    pub prefix: String,
    /// Replicas of each stream (1 locally, 3 in a cluster).
    pub replicas: usize,
    /// Duplicate window of the triggers stream.
    #[serde(deserialize_with = "bizops_config::duration")]
    pub duplicate_window: Duration,
    /// How long to wait for the server when connecting.
    #[serde(deserialize_with = "bizops_config::duration")]
    pub connect_timeout: Duration,
    /// Age after which NATS drops a stored message, consumed or not (the
    /// privacy policy's 7 days; shorter only in tests).
    #[serde(deserialize_with = "bizops_config::duration")]
    pub max_age: Duration,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: secrecy::SecretString::from("nats://127.0.0.1:4222"),
            prefix: DEFAULT_PREFIX.to_owned(),
            replicas: 1,
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
            connect_timeout: Duration::from_secs(5),
            max_age: STREAM_MAX_AGE,
        }
    }
}

impl NatsConfig {
    /// The subject names under the configured prefix.
    pub fn subjects(&self) -> Result<Subjects, BusError> {
        Subjects::new(&self.prefix)
    }

    /// Connects (named `name` on the server) and ensures the streams exist.
    pub async fn connect(&self, name: &str) -> Result<(async_nats::Client, jetstream::Context), BusError> {
        use secrecy::ExposeSecret as _;
        let client = async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(self.connect_timeout)
            .connect(self.url.expose_secret())
            .await
            .map_err(|e| BusError::Connect(Box::new(e)))?;
        let js = jetstream::new(client.clone());
        ensure_streams(&js, &self.subjects()?, self.replicas, self.duplicate_window, self.max_age).await?;
        Ok((client, js))
    }
}

/// Outcome of a JetStream publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Stream sequence of the stored message.
    pub sequence: u64,
    /// Whether the stream had this `Nats-Msg-Id` already (nothing new stored).
    pub duplicate: bool,
}

/// Publishes `payload` to a stream subject with the current trace context and an
/// optional `Nats-Msg-Id`, and waits for JetStream's acknowledgement (the message
/// is stored, per the stream's durability settings, when this returns `Ok`).
pub async fn publish(
    js: &jetstream::Context,
    subject: String,
    msg_id: Option<&str>,
    payload: Bytes,
) -> Result<Published, BusError> {
    let mut headers = async_nats::HeaderMap::new();
    bizops_telemetry::propagation::inject_nats(&mut headers);
    if let Some(id) = msg_id {
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
    }
    let ack = js
        .send_publish(
            subject.clone(),
            jetstream::message::PublishMessage::build().payload(payload).headers(headers),
        )
        .await
        .map_err(|e| BusError::Publish { subject: subject.clone(), source: Box::new(e) })?
        .await
        .map_err(|e| BusError::Publish { subject, source: Box::new(e) })?;
    Ok(Published { sequence: ack.sequence, duplicate: ack.duplicate })
}

/// Encodes a protobuf message for publishing.
pub fn encode<M: prost::Message>(msg: &M) -> Bytes {
    Bytes::from(msg.encode_to_vec())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_follow_the_architecture() {
        let s = Subjects::new("bizops").unwrap();
        let (o, p) = (Uuid::nil(), Uuid::max());
        assert_eq!(s.trigger(o, p), format!("bizops.triggers.{o}.{p}"));
        assert_eq!(s.event(o, EventKind::PilotDeleted), format!("bizops.events.{o}.pilot_deleted"));
        assert_eq!(s.dlq(o, p), format!("bizops.dlq.{o}.{p}"));
        assert_eq!(s.run_events(o, p), format!("bizops.runs.{o}.{p}"));
        assert_eq!(s.triggers_stream(), "bizops_TRIGGERS");
        assert_eq!(Subjects::trigger_msg_id(p, "abc"), format!("{p}:abc"));
    }

    #[test]
    fn prefixes_that_would_break_subjects_are_refused() {
        for bad in ["", "a.b", "a b", "a*", "a>", &"x".repeat(33)] {
            assert!(Subjects::new(bad).is_err(), "{bad:?}");
        }
        assert!(Subjects::new("t0193-abc_DEF").is_ok());
    }

    #[test]
    fn stream_configs_have_the_documented_retention() {
        let s = Subjects::new("p").unwrap();
        let [triggers, events, dlq] = s.stream_configs(3, DEFAULT_DUPLICATE_WINDOW, STREAM_MAX_AGE);
        assert_eq!(triggers.retention, stream::RetentionPolicy::WorkQueue);
        assert_eq!(triggers.subjects, vec!["p.triggers.*.*"]);
        assert_eq!(triggers.duplicate_window, DEFAULT_DUPLICATE_WINDOW);
        for c in [&triggers, &events, &dlq] {
            assert_eq!(c.max_age, STREAM_MAX_AGE);
            assert_eq!(c.num_replicas, 3);
            assert_eq!(c.storage, stream::StorageType::File);
        }
        assert_eq!(events.retention, stream::RetentionPolicy::Limits);
        assert_eq!(dlq.retention, stream::RetentionPolicy::Limits);
    }
}
