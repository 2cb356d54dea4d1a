//! Status numbers (the protobuf enums stored as smallint) and row types.

use bizops_proto::{events::v1 as ev, executor::v1::ApprovalStatus};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// `RunStatus` as stored.
pub mod run {
    use super::ev::RunStatus as R;
    pub const QUEUED: i16 = R::Queued as i16;
    pub const RUNNING: i16 = R::Running as i16;
    pub const AWAITING_APPROVAL: i16 = R::AwaitingApproval as i16;
    pub const SUCCEEDED: i16 = R::Succeeded as i16;
    pub const FAILED: i16 = R::Failed as i16;
    pub const SKIPPED: i16 = R::Skipped as i16;
    pub const REJECTED: i16 = R::Rejected as i16;
    pub const EXPIRED: i16 = R::Expired as i16;
    pub const CANCELLED: i16 = R::Cancelled as i16;

    /// Whether a run in this status is finished.
    pub fn is_terminal(status: i16) -> bool {
        ![QUEUED, RUNNING, AWAITING_APPROVAL].contains(&status)
    }
}

/// `StepStatus` as stored.
pub mod step {
    use super::ev::StepStatus as S;
    pub const PENDING: i16 = S::Pending as i16;
    pub const RUNNING: i16 = S::Running as i16;
    pub const AWAITING_APPROVAL: i16 = S::AwaitingApproval as i16;
    pub const SUCCEEDED: i16 = S::Succeeded as i16;
    pub const FAILED: i16 = S::Failed as i16;
    pub const SKIPPED: i16 = S::Skipped as i16;
    pub const REJECTED: i16 = S::Rejected as i16;
    pub const CANCELLED: i16 = S::Cancelled as i16;
}

/// `ApprovalStatus` as stored.
pub mod approval {
    use super::ApprovalStatus as A;
    pub const PENDING: i16 = A::Pending as i16;
    pub const APPROVED: i16 = A::Approved as i16;
    pub const REJECTED: i16 = A::Rejected as i16;
    pub const EXPIRED: i16 = A::Expired as i16;
}

/// A finished or changed run, for live events.
#[derive(Debug, Clone, Copy)]
pub struct RunState {
    /// Run.
    pub id: Uuid,
    /// Owner.
    pub owner_id: Uuid,
    /// Pilot.
    pub pilot_id: Uuid,
    /// New status.
    pub status: i16,
    /// Event sequence after the change.
    pub seq: i64,
}

/// A trigger taken in, ready to become a job and a run.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// Run id (UUIDv7).
    pub run_id: Uuid,
    /// The trigger id (also the job id).
    pub trigger_id: Uuid,
    /// Owner.
    pub owner_id: Uuid,
    /// Pilot.
    pub pilot_id: Uuid,
    /// Pinned version.
    pub pilot_version: i64,
    /// Deduplication key.
    pub idempotency_key: String,
    /// `TriggerSource`.
    pub source: i16,
    /// Payload as received.
    pub payload: Vec<u8>,
    /// Its media type.
    pub content_type: String,
    /// When the trigger was accepted.
    pub accepted_at: OffsetDateTime,
    /// For a replay: the original run and the step to resume from.
    pub replay: Option<(Uuid, Option<String>)>,
}

/// A run an executor holds the lease of.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Run id.
    pub id: Uuid,
    /// Owner.
    pub owner_id: Uuid,
    /// Pilot.
    pub pilot_id: Uuid,
    /// Pinned version.
    pub pilot_version: i64,
    /// First unfinished step.
    pub next_step: i32,
    /// Times the run was taken over from an executor that stopped holding it.
    pub takeovers: i32,
    /// The trigger payload (None when the job was swept).
    pub payload: Option<(Vec<u8>, String)>,
    /// Outputs of finished steps by index: (key, output).
    pub outputs: Vec<(i32, String, Option<Value>)>,
    /// Attempts the step at `next_step` made before the run waited for a retry.
    pub attempts_done: i32,
    /// Time the run held a slot so far, in milliseconds.
    pub executed_ms: i64,
}

/// A step result to store.
#[derive(Debug, Clone)]
pub struct StepRecord {
    /// Step index.
    pub idx: i32,
    /// Step key.
    pub key: String,
    /// Kind name.
    pub kind: &'static str,
    /// `StepStatus`.
    pub status: i16,
    /// Attempts made.
    pub attempts: i32,
    /// AI provider label.
    pub provider: Option<String>,
    /// Redacted output.
    pub output: Option<Value>,
    /// Whether the stored output was cut to the preview size.
    pub truncated: bool,
    /// Redacted error.
    pub error: Option<String>,
    /// First attempt started.
    pub started_at: Option<OffsetDateTime>,
    /// Finished.
    pub finished_at: Option<OffsetDateTime>,
}
