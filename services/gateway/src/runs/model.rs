//! The JSON shapes of runs: a run and its steps, the live events, and the
//! answers and bodies of starting one (run now, replay, webhook).

use bizops_proto::{events::v1 as events, executor::v1 as executor};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::shared::model::{enum_name, ts};

/// Run now.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RunNowBody {
    /// JSON available as `trigger` in templates (default `{}`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub payload: Option<serde_json::Value>,
    /// Optional idempotency key; the same key never starts a second run.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// A trigger accepted for running.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct TriggerAccepted {
    /// The trigger's id (UUIDv7).
    pub trigger_id: String,
}

/// One step of a run.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StepRun {
    /// The step's key.
    pub step_key: String,
    /// The step's kind.
    pub kind: String,
    /// `pending`, `running`, `awaiting_approval`, `succeeded`, `failed`, `skipped`, `rejected`, `cancelled`.
    pub status: String,
    /// When the first attempt started (RFC 3339).
    pub started_at: Option<String>,
    /// When it finished (RFC 3339).
    pub finished_at: Option<String>,
    /// Duration in milliseconds.
    pub duration_ms: u64,
    /// Attempts made.
    pub attempts: u32,
    /// AI steps: `user`, `server` or `local`.
    pub provider: String,
    /// The output as JSON text, redacted, at most 16 KiB.
    pub output_preview: String,
    /// Whether the preview was cut.
    pub output_truncated: bool,
    /// Redacted error.
    pub error: String,
}

/// A run.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Run {
    /// Run id.
    pub id: String,
    /// The Pilot.
    pub pilot_id: String,
    /// The pinned Pilot version.
    pub pilot_version: i64,
    /// The trigger that started it.
    pub trigger_id: String,
    /// `webhook`, `schedule`, `manual` or `replay`.
    pub source: String,
    /// `queued`, `running`, `awaiting_approval`, `succeeded`, `failed`, `skipped`, `rejected`, `expired`, `cancelled`.
    pub status: String,
    /// Whether the status is final.
    pub finished: bool,
    /// When the trigger was accepted (RFC 3339).
    pub created_at: Option<String>,
    /// When execution started (RFC 3339).
    pub started_at: Option<String>,
    /// When it finished (RFC 3339).
    pub finished_at: Option<String>,
    /// Redacted error.
    pub error: String,
    /// Steps in order (empty in lists).
    pub steps: Vec<StepRun>,
    /// The run this one replays, if any.
    pub replay_of_run_id: String,
}

/// `running` → false, `succeeded` → true, …
pub fn run_status_is_final(status: events::RunStatus) -> bool {
    use events::RunStatus as S;
    matches!(status, S::Succeeded | S::Failed | S::Skipped | S::Rejected | S::Expired | S::Cancelled)
}

/// `RUN_STATUS_AWAITING_APPROVAL` → `awaiting_approval`.
pub fn run_status_name(status: events::RunStatus) -> String {
    enum_name(status.as_str_name(), "RUN_STATUS_")
}

/// `STEP_STATUS_SUCCEEDED` → `succeeded`.
pub fn step_status_name(status: events::StepStatus) -> String {
    enum_name(status.as_str_name(), "STEP_STATUS_")
}

impl From<executor::Run> for Run {
    fn from(r: executor::Run) -> Self {
        let status = r.status();
        Self {
            source: enum_name(r.source().as_str_name(), "TRIGGER_SOURCE_"),
            status: run_status_name(status),
            finished: run_status_is_final(status),
            id: r.id,
            pilot_id: r.pilot_id,
            pilot_version: r.pilot_version,
            trigger_id: r.trigger_id,
            created_at: ts(r.created_at.as_ref()),
            started_at: ts(r.started_at.as_ref()),
            finished_at: ts(r.finished_at.as_ref()),
            error: r.error,
            steps: r
                .steps
                .into_iter()
                .map(|s| StepRun {
                    status: step_status_name(s.status()),
                    step_key: s.step_key,
                    kind: s.kind,
                    started_at: ts(s.started_at.as_ref()),
                    finished_at: ts(s.finished_at.as_ref()),
                    duration_ms: s.duration_ms,
                    attempts: s.attempts,
                    provider: s.provider,
                    output_preview: s.output_preview,
                    output_truncated: s.output_truncated,
                    error: s.error,
                })
                .collect(),
            replay_of_run_id: r.replay_of_run_id,
        }
    }
}

/// A page of runs.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct RunList {
    /// Newest first, without steps.
    pub runs: Vec<Run>,
    /// Token of the next page; empty on the last.
    pub next_page_token: String,
}

/// A replay.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    /// Resume from the failed step instead of the first.
    #[serde(default)]
    pub from_failed_step: bool,
}

/// A live change of a run, as sent on the event stream.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RunEvent {
    /// The run.
    pub run_id: String,
    /// Run status after the change.
    pub run_status: String,
    /// Set when the change concerns one step.
    pub step: Option<StepEvent>,
    /// When it happened (RFC 3339).
    pub occurred_at: Option<String>,
    /// Monotonic per run.
    pub sequence: u64,
}

/// One step's change.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StepEvent {
    /// The step.
    pub step_key: String,
    /// Status after the change.
    pub status: String,
    /// Attempt, from 1.
    pub attempt: u32,
    /// AI provider.
    pub provider: String,
    /// Redacted error.
    pub error: String,
    /// Duration so far in ms.
    pub duration_ms: u64,
}

impl From<events::RunEvent> for RunEvent {
    fn from(e: events::RunEvent) -> Self {
        Self {
            run_status: run_status_name(e.run_status()),
            run_id: e.run_id,
            step: e.step.map(|s| StepEvent {
                status: step_status_name(s.status()),
                step_key: s.step_key,
                attempt: s.attempt,
                provider: s.provider,
                error: s.error,
                duration_ms: s.duration_ms,
            }),
            occurred_at: ts(e.occurred_at.as_ref()),
            sequence: e.sequence,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_have_short_names() {
        assert_eq!(run_status_name(events::RunStatus::AwaitingApproval), "awaiting_approval");
        assert_eq!(step_status_name(events::StepStatus::Succeeded), "succeeded");
        assert!(run_status_is_final(events::RunStatus::Rejected));
        assert!(!run_status_is_final(events::RunStatus::Running));
    }
}
