//! The JSON shapes of the public API (documented by the OpenAPI document) and
//! their conversions to and from the backends' protobuf messages.
//!
//! A Pilot's spec uses the same step layout as the `bizops.pilot/v1` export
//! format: `{"key", "name", "kind", "config", "requires_approval", "timeout_ms",
//! "retry"}`. Times are RFC 3339 strings in UTC; enums are lower-case names.

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

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn default_true() -> bool {
    true
}

// ---------------------------------------------------------------- errors

/// Every error: `{"error": {"code", "message"}}` (codes in docs/errors.md).
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

/// The editable content of a Pilot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PilotSpec {
    /// Title, 1–200 characters.
    pub title: String,
    /// Description, at most 5,000 characters.
    #[serde(default)]
    pub description: String,
    /// Ordered steps.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// Schedules that trigger the Pilot.
    #[serde(default)]
    pub schedules: Vec<Schedule>,
}

/// One step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Step {
    /// Stable key, `[a-z][a-z0-9_]{0,62}`; later templates read `steps.<key>.output`.
    pub key: String,
    /// Optional human-readable name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The kind (`kind`) and its configuration (`config`).
    #[serde(flatten)]
    pub kind: StepKind,
    /// Pause for a human approval first (slack, email and non-GET http steps).
    #[serde(default, skip_serializing_if = "is_false")]
    pub requires_approval: bool,
    /// Per-attempt timeout in milliseconds; 0 = the server's default.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout_ms: u32,
    /// Retries on retryable errors; absent = the server's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
}

/// A step's kind and configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", content = "config", rename_all = "snake_case")]
pub enum StepKind {
    /// Calls an AI model (the owner's key, the server's, or a local fallback).
    Ai(AiConfig),
    /// Posts to a Slack incoming webhook.
    Slack(SlackConfig),
    /// Sends an email through Resend.
    Email(EmailConfig),
    /// Calls an HTTP endpoint.
    Http(HttpConfig),
    /// Renders a template to JSON.
    Transform(TransformConfig),
    /// Branches on an expression.
    Condition(ConditionConfig),
    /// Waits for a person to approve or reject.
    Approval(ApprovalConfig),
}

impl StepKind {
    /// The kind's name.
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Ai(_) => "ai",
            StepKind::Slack(_) => "slack",
            StepKind::Email(_) => "email",
            StepKind::Http(_) => "http",
            StepKind::Transform(_) => "transform",
            StepKind::Condition(_) => "condition",
            StepKind::Approval(_) => "approval",
        }
    }

    /// An empty configuration of kind `name`.
    pub fn empty(name: &str) -> Option<Self> {
        Some(match name {
            "ai" => StepKind::Ai(AiConfig { task: Some(AiTask::Summarize), ..AiConfig::default() }),
            "slack" => StepKind::Slack(SlackConfig::default()),
            "email" => StepKind::Email(EmailConfig::default()),
            "http" => StepKind::Http(HttpConfig { method: Some(HttpMethod::Post), ..HttpConfig::default() }),
            "transform" => StepKind::Transform(TransformConfig::default()),
            "condition" => {
                StepKind::Condition(ConditionConfig { on_false: Some(OnFalse::Stop), ..Default::default() })
            }
            "approval" => StepKind::Approval(ApprovalConfig::default()),
            _ => return None,
        })
    }
}

/// What an AI step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AiTask {
    /// Summarise the input.
    Summarize,
    /// Pick one of `labels`.
    Classify,
    /// Extract `fields` as JSON.
    Extract,
    /// Free generation from `prompt`.
    Generate,
}

/// `ai` configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AiConfig {
    /// The task (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<AiTask>,
    /// Template of the text to work on.
    #[serde(default)]
    pub input: String,
    /// classify: labels to choose from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// extract: field names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// generate: the prompt template; otherwise an optional extra instruction.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prompt: String,
    /// Model; empty = the server's default.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
    /// Output token limit; 0 = the server's default.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_tokens: u32,
    /// Credential name of an Anthropic key; empty = `anthropic`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub connector: String,
}

/// `slack` configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// Credential name of the Slack webhook URL; empty = `slack`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub connector: String,
    /// Template of the message.
    #[serde(default)]
    pub text: String,
}

/// `email` configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// Credential name of the Resend key; empty = `resend`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub connector: String,
    /// Template of the sender.
    #[serde(default)]
    pub from: String,
    /// Templates of the recipients.
    #[serde(default)]
    pub to: Vec<String>,
    /// Template of the subject.
    #[serde(default)]
    pub subject: String,
    /// Template of the HTML body.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub html: String,
    /// Template of the text body.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
}

/// HTTP method of an `http` step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// GET
    Get,
    /// POST
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
}

/// One header of an `http` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpHeader {
    /// Header name.
    pub name: String,
    /// Template of the value.
    pub value: String,
}

/// `http` configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Method (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<HttpMethod>,
    /// Template of the URL.
    #[serde(default)]
    pub url: String,
    /// Extra headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HttpHeader>,
    /// Template of a JSON body; empty = none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
    /// Credential name of a bearer token; empty = none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bearer_connector: String,
}

/// `transform` configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransformConfig {
    /// Template rendering a JSON document.
    #[serde(default)]
    pub template: String,
}

/// What a condition does when false.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnFalse {
    /// End the run as skipped.
    Stop,
    /// Continue at `jump_to`.
    Jump,
}

/// `condition` configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConditionConfig {
    /// Expression, e.g. `steps.classify.output.label == 'urgent'`.
    #[serde(default)]
    pub expression: String,
    /// What to do when false (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_false: Option<OnFalse>,
    /// `jump`: the key of a later step.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jump_to: String,
}

/// `approval` configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalConfig {
    /// Template of what the approver is asked.
    #[serde(default)]
    pub message: String,
    /// Deadline in seconds; 0 = the server's default (72 h).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub expires_after_seconds: u32,
}

/// Retries of a step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Total attempts, 1–10; 0 = default.
    #[serde(default)]
    pub max_attempts: u32,
    /// First backoff in ms; 0 = default.
    #[serde(default)]
    pub initial_backoff_ms: u32,
    /// Largest backoff in ms; 0 = default.
    #[serde(default)]
    pub max_backoff_ms: u32,
}

/// A schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Schedule id; empty for a new one, keep it when updating.
    #[serde(default)]
    pub id: String,
    /// Five-field cron expression, e.g. `0 9 * * 1-5`.
    pub cron: String,
    /// IANA time zone, e.g. `Europe/Berlin`.
    pub timezone: String,
    /// Whether it fires.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl From<PilotSpec> for catalog::PilotSpec {
    fn from(s: PilotSpec) -> Self {
        Self {
            title: s.title,
            description: s.description,
            steps: s.steps.into_iter().map(Into::into).collect(),
            schedules: s
                .schedules
                .into_iter()
                .map(|s| catalog::Schedule {
                    id: s.id,
                    cron: s.cron,
                    timezone: s.timezone,
                    enabled: s.enabled,
                })
                .collect(),
        }
    }
}

impl From<catalog::PilotSpec> for PilotSpec {
    fn from(s: catalog::PilotSpec) -> Self {
        Self {
            title: s.title,
            description: s.description,
            steps: s.steps.into_iter().filter_map(Step::from_proto).collect(),
            schedules: s
                .schedules
                .into_iter()
                .map(|s| Schedule { id: s.id, cron: s.cron, timezone: s.timezone, enabled: s.enabled })
                .collect(),
        }
    }
}

impl From<Step> for catalog::Step {
    fn from(s: Step) -> Self {
        use catalog::step::Kind as K;
        let kind = match s.kind {
            StepKind::Ai(a) => K::Ai(catalog::AiStep {
                task: a.task.map_or(catalog::AiTask::Unspecified, |t| match t {
                    AiTask::Summarize => catalog::AiTask::Summarize,
                    AiTask::Classify => catalog::AiTask::Classify,
                    AiTask::Extract => catalog::AiTask::Extract,
                    AiTask::Generate => catalog::AiTask::Generate,
                }) as i32,
                input: a.input,
                labels: a.labels,
                fields: a.fields,
                prompt: a.prompt,
                model: a.model,
                max_tokens: a.max_tokens,
                connector: a.connector,
            }),
            StepKind::Slack(c) => K::Slack(catalog::SlackStep { connector: c.connector, text: c.text }),
            StepKind::Email(e) => K::Email(catalog::EmailStep {
                connector: e.connector,
                from: e.from,
                to: e.to,
                subject: e.subject,
                html: e.html,
                text: e.text,
            }),
            StepKind::Http(h) => K::Http(catalog::HttpStep {
                method: h.method.map_or(catalog::HttpMethod::Unspecified, |m| match m {
                    HttpMethod::Get => catalog::HttpMethod::Get,
                    HttpMethod::Post => catalog::HttpMethod::Post,
                    HttpMethod::Put => catalog::HttpMethod::Put,
                    HttpMethod::Patch => catalog::HttpMethod::Patch,
                    HttpMethod::Delete => catalog::HttpMethod::Delete,
                }) as i32,
                url: h.url,
                headers: h
                    .headers
                    .into_iter()
                    .map(|h| catalog::HttpHeaderTemplate { name: h.name, value: h.value })
                    .collect(),
                body: h.body,
                bearer_connector: h.bearer_connector,
            }),
            StepKind::Transform(t) => K::Transform(catalog::TransformStep { template: t.template }),
            StepKind::Condition(c) => K::Condition(catalog::ConditionStep {
                expression: c.expression,
                on_false: c.on_false.map_or(catalog::OnFalse::Unspecified, |o| match o {
                    OnFalse::Stop => catalog::OnFalse::Stop,
                    OnFalse::Jump => catalog::OnFalse::Jump,
                }) as i32,
                jump_to: c.jump_to,
            }),
            StepKind::Approval(a) => K::Approval(catalog::ApprovalStep {
                message: a.message,
                expires_after_seconds: a.expires_after_seconds,
            }),
        };
        Self {
            key: s.key,
            name: s.name,
            kind: Some(kind),
            requires_approval: s.requires_approval,
            timeout_ms: s.timeout_ms,
            retry: s.retry.map(|r| catalog::RetryPolicy {
                max_attempts: r.max_attempts,
                initial_backoff_ms: r.initial_backoff_ms,
                max_backoff_ms: r.max_backoff_ms,
            }),
        }
    }
}

impl Step {
    /// The JSON form of a stored step (`None` for a step without a kind, which
    /// the catalog never stores).
    pub fn from_proto(s: catalog::Step) -> Option<Self> {
        use catalog::step::Kind as K;
        let kind = match s.kind? {
            K::Ai(a) => StepKind::Ai(AiConfig {
                task: match a.task() {
                    catalog::AiTask::Unspecified => None,
                    catalog::AiTask::Summarize => Some(AiTask::Summarize),
                    catalog::AiTask::Classify => Some(AiTask::Classify),
                    catalog::AiTask::Extract => Some(AiTask::Extract),
                    catalog::AiTask::Generate => Some(AiTask::Generate),
                },
                input: a.input,
                labels: a.labels,
                fields: a.fields,
                prompt: a.prompt,
                model: a.model,
                max_tokens: a.max_tokens,
                connector: a.connector,
            }),
            K::Slack(c) => StepKind::Slack(SlackConfig { connector: c.connector, text: c.text }),
            K::Email(e) => StepKind::Email(EmailConfig {
                connector: e.connector,
                from: e.from,
                to: e.to,
                subject: e.subject,
                html: e.html,
                text: e.text,
            }),
            K::Http(h) => StepKind::Http(HttpConfig {
                method: match h.method() {
                    catalog::HttpMethod::Unspecified => None,
                    catalog::HttpMethod::Get => Some(HttpMethod::Get),
                    catalog::HttpMethod::Post => Some(HttpMethod::Post),
                    catalog::HttpMethod::Put => Some(HttpMethod::Put),
                    catalog::HttpMethod::Patch => Some(HttpMethod::Patch),
                    catalog::HttpMethod::Delete => Some(HttpMethod::Delete),
                },
                url: h.url,
                headers: h.headers.into_iter().map(|h| HttpHeader { name: h.name, value: h.value }).collect(),
                body: h.body,
                bearer_connector: h.bearer_connector,
            }),
            K::Transform(t) => StepKind::Transform(TransformConfig { template: t.template }),
            K::Condition(c) => StepKind::Condition(ConditionConfig {
                on_false: match c.on_false() {
                    catalog::OnFalse::Unspecified => None,
                    catalog::OnFalse::Stop => Some(OnFalse::Stop),
                    catalog::OnFalse::Jump => Some(OnFalse::Jump),
                },
                expression: c.expression,
                jump_to: c.jump_to,
            }),
            K::Approval(a) => StepKind::Approval(ApprovalConfig {
                message: a.message,
                expires_after_seconds: a.expires_after_seconds,
            }),
        };
        Some(Self {
            key: s.key,
            name: s.name,
            kind,
            requires_approval: s.requires_approval,
            timeout_ms: s.timeout_ms,
            retry: s.retry.map(|r| RetryPolicy {
                max_attempts: r.max_attempts,
                initial_backoff_ms: r.initial_backoff_ms,
                max_backoff_ms: r.max_backoff_ms,
            }),
        })
    }
}

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
    fn steps_use_the_export_layout_and_round_trip_through_protobuf() {
        let json = serde_json::json!({
            "title": "T",
            "steps": [
                {"key": "a", "kind": "ai", "config": {"task": "classify", "input": "{{ trigger.body }}", "labels": ["x", "y"]}},
                {"key": "n", "kind": "slack", "config": {"text": "hi"}, "requires_approval": true, "timeout_ms": 5000,
                 "retry": {"max_attempts": 3, "initial_backoff_ms": 100, "max_backoff_ms": 1000}},
                {"key": "h", "kind": "http", "config": {"method": "POST", "url": "https://x.test", "headers": [{"name": "A", "value": "b"}]}},
                {"key": "c", "kind": "condition", "config": {"expression": "true", "on_false": "jump", "jump_to": "z"}},
                {"key": "e", "kind": "email", "config": {"from": "a@b.test", "to": ["c@d.test"], "subject": "s", "text": "t"}},
                {"key": "t", "kind": "transform", "config": {"template": "{}"}},
                {"key": "z", "kind": "approval", "config": {"message": "ok?", "expires_after_seconds": 60}}
            ],
            "schedules": [{"cron": "0 9 * * 1-5", "timezone": "Europe/Berlin"}]
        });
        let spec: PilotSpec = serde_json::from_value(json.clone()).unwrap();
        assert!(spec.schedules[0].enabled, "schedules default to enabled");
        let back: PilotSpec = catalog::PilotSpec::from(spec.clone()).into();
        assert_eq!(back, spec);
        let again = serde_json::to_value(&back).unwrap();
        assert_eq!(again["steps"][1]["kind"], "slack");
        assert_eq!(again["steps"][1]["config"]["text"], "hi");
        assert_eq!(again["steps"][2]["config"]["method"], "POST");
    }

    #[test]
    fn unknown_config_fields_are_refused() {
        let bad = serde_json::json!({"key": "n", "kind": "slack", "config": {"txt": "hi"}});
        assert!(serde_json::from_value::<Step>(bad).is_err());
        let bad = serde_json::json!({"key": "n", "kind": "teleport", "config": {}});
        assert!(serde_json::from_value::<Step>(bad).is_err());
    }

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
