//! The JSON shapes of approvals: a request for a human decision, and the
//! decision.

use bizops_proto::executor::v1 as executor;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::shared::model::{enum_name, ts};

/// An approval request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Approval {
    /// Approval id.
    pub id: String,
    /// The run.
    pub run_id: String,
    /// The Pilot.
    pub pilot_id: String,
    /// The step waiting.
    pub step_key: String,
    /// `pending`, `approved`, `rejected`, `expired`.
    pub status: String,
    /// What the approver is asked.
    pub message: String,
    /// When requested (RFC 3339).
    pub created_at: Option<String>,
    /// Deadline (RFC 3339).
    pub expires_at: Option<String>,
    /// When decided (RFC 3339).
    pub decided_at: Option<String>,
    /// Who decided (account id).
    pub decided_by: String,
    /// The decider's comment.
    pub comment: String,
}

impl From<executor::Approval> for Approval {
    fn from(a: executor::Approval) -> Self {
        Self {
            status: enum_name(a.status().as_str_name(), "APPROVAL_STATUS_"),
            id: a.id,
            run_id: a.run_id,
            pilot_id: a.pilot_id,
            step_key: a.step_key,
            message: a.message,
            created_at: ts(a.created_at.as_ref()),
            expires_at: ts(a.expires_at.as_ref()),
            decided_at: ts(a.decided_at.as_ref()),
            decided_by: a.decided_by,
            comment: a.comment,
        }
    }
}

/// A page of pending approvals.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ApprovalList {
    /// Oldest first.
    pub approvals: Vec<Approval>,
    /// Token of the next page; empty on the last.
    pub next_page_token: String,
}

/// A decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Let the step run.
    Approve,
    /// End the run as rejected.
    Reject,
}

/// Deciding an approval.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// The decision.
    pub decision: Decision,
    /// Optional comment, at most 2,000 characters.
    #[serde(default)]
    pub comment: String,
}
