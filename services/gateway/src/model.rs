//! The JSON shapes of the public API (documented by the OpenAPI document) and
//! their conversions to and from the backends' protobuf messages.
//!
//! A Pilot's spec and its steps are `bizops_pilot_spec`'s types, the same as the
//! steps of the `bizops.pilot/v1` export format. Times are RFC 3339 strings in
//! UTC; enums are lower-case names.

use bizops_proto::{
    catalog::v1 as catalog, events::v1 as events, executor::v1 as executor, identity::v1 as identity,
    vault::v1 as vault,
};
use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use utoipa::{IntoParams, ToSchema};

/// RFC 3339 form of a protobuf timestamp (`None` when unset).
pub fn ts(t: Option<&prost_types::Timestamp>) -> Option<String> {
    t.and_then(bizops_proto::timestamp::from_proto).and_then(|t| t.format(&Rfc3339).ok())
}

/// RFC 3339 form of an instant.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// `RUN_STATUS_AWAITING_APPROVAL` → `awaiting_approval`.
fn enum_name(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix).unwrap_or(full).to_ascii_lowercase()
}

fn default_true() -> bool {
    true
}

// ---------------------------------------------------------------- errors

/// Every error: `{"error": {"code", "message", "field"}}` (docs/errors.md).
/// Mirrors `bizops_errors::HttpErrorBody` for the OpenAPI document.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The inner object of an error.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorDetail {
    /// Stable code, e.g. `NOT_FOUND`.
    pub code: String,
    /// Short, safe explanation.
    pub message: String,
    /// The path of the field the error is about, when it is about one: within a
    /// Pilot's spec for its content (`title`, `steps[2].slack.text`,
    /// `schedules[0].cron`), else the request's field (`email`, `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

// ---------------------------------------------------------------- accounts

/// An account as its owner sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Account {
    /// Account id (UUID); the owner of everything it creates.
    pub id: String,
    /// Normalised email address.
    pub email: String,
    /// Display name (empty when not set).
    pub display_name: String,
    /// When the account was created (RFC 3339).
    pub created_at: Option<String>,
    /// When the password was last set (RFC 3339).
    pub password_changed_at: Option<String>,
}

impl From<identity::Account> for Account {
    fn from(a: identity::Account) -> Self {
        Self {
            id: a.id,
            email: a.email,
            display_name: a.display_name,
            created_at: ts(a.created_at.as_ref()),
            password_changed_at: ts(a.password_changed_at.as_ref()),
        }
    }
}

/// Sign-up.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    /// Email address.
    pub email: String,
    /// Password: 12–1,024 characters, hard to guess.
    pub password: String,
    /// Optional display name.
    #[serde(default)]
    pub display_name: String,
}

/// Sign-in.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    /// Email address.
    pub email: String,
    /// Password.
    pub password: String,
}

/// Who is signed in, and the CSRF token to send as `X-CSRF-Token` with every
/// state-changing request made with the session cookie.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionInfo {
    /// The account.
    pub account: Account,
    /// The session id.
    pub session_id: String,
    /// When the session ends at the latest (RFC 3339).
    pub expires_at: String,
    /// The synchronizer token of this session.
    pub csrf_token: String,
}

/// Password change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordBody {
    /// The current password.
    pub current_password: String,
    /// The new password.
    pub new_password: String,
}

/// Account deletion: the password, re-entered.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteAccountBody {
    /// The account's password.
    pub password: String,
}

/// Everything of an account that can be exported: the account and every Pilot
/// in the `bizops.pilot/v1` format.
#[derive(Serialize, ToSchema)]
pub struct AccountExport {
    /// Always `bizops.account-export/v1`.
    pub format: &'static str,
    /// When the export was made (RFC 3339).
    pub exported_at: String,
    /// The account.
    pub account: Account,
    /// One `bizops.pilot/v1` document per Pilot, each with its `id` and `enabled` flag.
    pub pilots: Vec<ExportedPilot>,
}

/// One Pilot in an account export.
#[derive(Serialize, ToSchema)]
pub struct ExportedPilot {
    /// Pilot id.
    pub id: String,
    /// Whether it accepts triggers.
    pub enabled: bool,
    /// The `bizops.pilot/v1` document.
    #[schema(value_type = Object)]
    pub document: serde_json::Value,
}

// ---------------------------------------------------------------- pilots

pub use bizops_pilot_spec::{
    AiConfig, AiTask, ApprovalConfig, ConditionConfig, EmailConfig, HttpConfig, HttpHeader, HttpMethod,
    OnFalse, PilotSpec, RetryPolicy, Schedule, SlackConfig, Step, StepKind, TransformConfig,
};

/// A Pilot at its current version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Pilot {
    /// Pilot id (UUID).
    pub id: String,
    /// Current version, from 1.
    pub version: i64,
    /// Whether it accepts triggers.
    pub enabled: bool,
    /// Content of the current version.
    pub spec: PilotSpec,
    /// When created (RFC 3339).
    pub created_at: Option<String>,
    /// When the current version was written (RFC 3339).
    pub updated_at: Option<String>,
    /// When the webhook secret was last issued (RFC 3339).
    pub webhook_secret_issued_at: Option<String>,
    /// Where to POST webhooks for this Pilot.
    pub webhook_url: String,
}

impl Pilot {
    /// The JSON form of a Pilot; `origin` is the gateway's public origin.
    pub fn from_proto(p: catalog::Pilot, origin: &str) -> Self {
        Self {
            webhook_url: format!("{origin}/hooks/{}", p.id),
            id: p.id,
            version: p.version,
            enabled: p.enabled,
            spec: p.spec.map(Into::into).unwrap_or_default(),
            created_at: ts(p.created_at.as_ref()),
            updated_at: ts(p.updated_at.as_ref()),
            webhook_secret_issued_at: ts(p.webhook_secret_issued_at.as_ref()),
        }
    }
}

/// A new Pilot.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePilotBody {
    /// Content of version 1.
    pub spec: PilotSpec,
    /// Whether it starts enabled (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
}

/// A Pilot with its webhook secret, shown this once.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct PilotWithSecret {
    /// The Pilot.
    pub pilot: Pilot,
    /// The webhook secret (`whsec_…`). It is never shown again.
    pub webhook_secret: String,
}

/// A new version of a Pilot.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePilotBody {
    /// The version that was edited; a newer one gives 409 STALE_VERSION.
    pub expected_version: i64,
    /// The new content.
    pub spec: PilotSpec,
}

/// A page of Pilots.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct PilotList {
    /// Newest first.
    pub pilots: Vec<Pilot>,
    /// Token of the next page; empty on the last.
    pub next_page_token: String,
}

/// Paging parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1–100 (default 20).
    pub page_size: Option<u32>,
    /// Token from the previous page.
    pub page_token: Option<String>,
}

/// One version in a Pilot's history.
#[derive(Serialize, ToSchema)]
pub struct VersionSummary {
    /// Version number.
    pub version: i64,
    /// Title at that version.
    pub title: String,
    /// Number of steps.
    pub step_count: u32,
    /// When written (RFC 3339).
    pub created_at: Option<String>,
}

/// A page of versions.
#[derive(Serialize, ToSchema)]
pub struct VersionList {
    /// Newest first.
    pub versions: Vec<VersionSummary>,
    /// Token of the next page; empty on the last.
    pub next_page_token: String,
}

/// One immutable version.
#[derive(Serialize, ToSchema)]
pub struct PilotVersion {
    /// Pilot id.
    pub pilot_id: String,
    /// Version number.
    pub version: i64,
    /// Content.
    pub spec: PilotSpec,
    /// When written (RFC 3339).
    pub created_at: Option<String>,
}

/// A Pilot's schedules (part of its spec).
#[derive(Serialize, ToSchema)]
pub struct ScheduleList {
    /// The Pilot's current version.
    pub version: i64,
    /// Its schedules.
    pub schedules: Vec<Schedule>,
}

/// New schedules for a Pilot (writes a new version).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSchedulesBody {
    /// The version that was edited.
    pub expected_version: i64,
    /// The complete list of schedules.
    pub schedules: Vec<Schedule>,
}

/// An import.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportBody {
    /// A `bizops.pilot/v1` document as exported.
    #[schema(value_type = Object)]
    pub document: serde_json::Value,
    /// Whether the new Pilot starts enabled (default false).
    #[serde(default)]
    pub enabled: bool,
}

/// A new webhook secret.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct RotatedSecret {
    /// The new secret, shown this once.
    pub webhook_secret: String,
    /// Until when the previous secret still works (RFC 3339).
    pub previous_valid_until: Option<String>,
}

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

// ---------------------------------------------------------------- runs

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

// ---------------------------------------------------------------- approvals

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

// ---------------------------------------------------------------- connectors

/// Kinds of connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorKind {
    /// Slack incoming-webhook URL.
    Slack,
    /// Resend API key.
    Resend,
    /// Anthropic API key.
    Anthropic,
    /// A bearer token for HTTP steps.
    HttpBearer,
}

impl ConnectorKind {
    /// The protobuf enum.
    pub fn to_proto(self) -> vault::ConnectorKind {
        match self {
            ConnectorKind::Slack => vault::ConnectorKind::Slack,
            ConnectorKind::Resend => vault::ConnectorKind::Resend,
            ConnectorKind::Anthropic => vault::ConnectorKind::Anthropic,
            ConnectorKind::HttpBearer => vault::ConnectorKind::HttpBearer,
        }
    }

    /// Parses the lower-case name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "slack" => ConnectorKind::Slack,
            "resend" => ConnectorKind::Resend,
            "anthropic" => ConnectorKind::Anthropic,
            "http_bearer" => ConnectorKind::HttpBearer,
            _ => return None,
        })
    }
}

/// A connected credential: metadata only, never the value.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Connector {
    /// Name, `[a-z][a-z0-9_-]{0,62}`.
    pub name: String,
    /// `slack`, `resend`, `anthropic` or `http_bearer`.
    pub kind: String,
    /// When first stored (RFC 3339).
    pub created_at: Option<String>,
    /// When last replaced (RFC 3339).
    pub updated_at: Option<String>,
    /// When a run last used it (RFC 3339).
    pub last_used_at: Option<String>,
    /// A short fingerprint like `…a1b2`.
    pub fingerprint: String,
}

impl From<vault::CredentialInfo> for Connector {
    fn from(c: vault::CredentialInfo) -> Self {
        Self {
            kind: enum_name(c.kind().as_str_name(), "CONNECTOR_KIND_"),
            name: c.name,
            created_at: ts(c.created_at.as_ref()),
            updated_at: ts(c.updated_at.as_ref()),
            last_used_at: ts(c.last_used_at.as_ref()),
            fingerprint: c.fingerprint,
        }
    }
}

/// The caller's connectors.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ConnectorList {
    /// By name.
    pub connectors: Vec<Connector>,
}

/// Connecting (or replacing) a credential.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutConnectorBody {
    /// Kind.
    pub kind: ConnectorKind,
    /// The secret value; write-only, never shown again.
    pub value: String,
}

/// A live check of a credential.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ConnectorTest {
    /// Whether the provider accepted it.
    pub ok: bool,
    /// A short, safe explanation.
    pub detail: String,
    /// The provider's HTTP status, 0 if unreachable.
    pub provider_status: u32,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_documented_error_shape_is_the_one_sent() {
        let (_, body) = bizops_errors::Error::not_found("pilot").to_http();
        let mirrored: ErrorBody = serde_json::from_value(serde_json::to_value(&body).unwrap()).unwrap();
        assert_eq!(mirrored.error.code, "NOT_FOUND");
    }

    #[test]
    fn statuses_have_short_names() {
        assert_eq!(run_status_name(events::RunStatus::AwaitingApproval), "awaiting_approval");
        assert_eq!(step_status_name(events::StepStatus::Succeeded), "succeeded");
        assert!(run_status_is_final(events::RunStatus::Rejected));
        assert!(!run_status_is_final(events::RunStatus::Running));
    }
}
