//! Live run events on core NATS (`<P>.runs.<owner_id>.<run_id>`), for the
//! dashboard. Not stored; secret values are already redacted.

use bizops_bus::Subjects;
use bizops_proto::{events::v1 as ev, timestamp::to_proto};
use prost::Message as _;
use time::OffsetDateTime;

use crate::model::RunState;

/// Publishes live events (best effort: a lost event only delays a live view).
#[derive(Clone)]
pub struct Events {
    client: async_nats::Client,
    subjects: Subjects,
}

impl Events {
    /// Events through `client` under `subjects`' prefix.
    pub fn new(client: async_nats::Client, subjects: Subjects) -> Self {
        Self { client, subjects }
    }

    /// A run's new state, optionally about one step.
    pub async fn publish(&self, state: &RunState, step: Option<ev::StepEvent>) {
        let event = ev::RunEvent {
            run_id: state.id.to_string(),
            owner_id: state.owner_id.to_string(),
            pilot_id: state.pilot_id.to_string(),
            run_status: i32::from(state.status),
            step,
            occurred_at: Some(to_proto(OffsetDateTime::now_utc())),
            sequence: u64::try_from(state.seq).unwrap_or(0),
        };
        let mut headers = async_nats::HeaderMap::new();
        bizops_telemetry::propagation::inject_nats(&mut headers);
        let subject = self.subjects.run_events(state.owner_id, state.id);
        if let Err(e) = self.client.publish_with_headers(subject, headers, event.encode_to_vec().into()).await
        {
            tracing::debug!(error = %e, "live run event not published");
        }
    }
}
