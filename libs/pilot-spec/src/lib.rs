//! The one definition of a Pilot's content.
//!
//! - the JSON shapes of a Pilot spec and its steps (the public API's `spec`, the
//!   dashboard editor's model, and the steps of the `bizops.pilot/v1` export);
//! - their mapping to and from the protobuf messages ([`proto`]);
//! - the step kinds and their names ([`KINDS`], [`kind_name`]);
//! - the content limits the catalog enforces ([`limits`]);
//! - the export format ([`export`]) and, with the `openapi` feature, the utoipa
//!   schemas of every type and the export's JSON Schema ([`schema`]), from which
//!   `docs/pilot-export.schema.json` is generated.
//!
//! A step is `{"key", "name", "kind", "config", "requires_approval", "timeout_ms",
//! "retry"}`; `config` is the kind's configuration. Fields a step needs are marked
//! required in the schema but default when absent, so the catalog's validation can
//! say which one is missing (`steps[0] "a": slack.text: is required`).
//!
//! Adding a step field: the field here (with its schema constraints), its line in
//! [`proto`], and its input in the gateway's editor table.
#![forbid(unsafe_code)]

pub mod export;
pub mod limits;
pub mod proto;
#[cfg(feature = "openapi")]
pub mod schema;

use serde::{Deserialize, Serialize};

pub use proto::kind_name;

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn default_true() -> bool {
    true
}

/// Every step kind's name, in the order the dashboard offers them.
pub const KINDS: [&str; 7] = ["ai", "slack", "email", "http", "transform", "condition", "approval"];

/// The editable content of a Pilot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PilotSpec {
    /// Title, 1–200 characters.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200))]
    pub title: String,
    /// Description, at most 5,000 characters.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 5000))]
    pub description: String,
    /// Ordered steps.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 50))]
    pub steps: Vec<Step>,
    /// Schedules that trigger the Pilot.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 50))]
    pub schedules: Vec<Schedule>,
    /// How long one run may execute in all, in seconds (60–86,400); 0 or absent:
    /// the server's default (1 h). Waiting for approvals, retries and execution
    /// slots does not count; the server may cut it to its own maximum.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[cfg_attr(feature = "openapi", schema(maximum = 86400))]
    pub max_execution_seconds: u32,
}

/// One step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(try_from = "RawStep")]
pub struct Step {
    /// Stable key, `[a-z][a-z0-9_]{0,62}`; later templates read `steps.<key>.output`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z][a-z0-9_]{0,62}$"))]
    pub key: String,
    /// Optional human-readable name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[cfg_attr(feature = "openapi", schema(max_length = 200))]
    pub name: String,
    /// The kind (`kind`) and its configuration (`config`).
    #[serde(flatten)]
    pub kind: StepKind,
    /// Pause for a human approval first (slack, email and non-GET http steps).
    #[serde(default, skip_serializing_if = "is_false")]
    pub requires_approval: bool,
    /// Per-attempt timeout in milliseconds; 0 = the server's default.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[cfg_attr(feature = "openapi", schema(maximum = 300000))]
    pub timeout_ms: u32,
    /// Retries on retryable errors; absent = the server's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub retry: Option<RetryPolicy>,
}

/// A step as written, before its `config` is read by its `kind`: unknown fields
/// are refused at both levels, and an error in `config` says so.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStep {
    key: String,
    #[serde(default)]
    name: String,
    kind: serde_json::Value,
    config: serde_json::Value,
    #[serde(default)]
    requires_approval: bool,
    #[serde(default)]
    timeout_ms: u32,
    #[serde(default)]
    retry: Option<RetryPolicy>,
}

/// Why a step's `kind` or `config` could not be read: which of the two, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    /// `kind` or `config`.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl TryFrom<RawStep> for Step {
    type Error = StepError;

    fn try_from(raw: RawStep) -> Result<Self, StepError> {
        let kind = match raw.kind {
            serde_json::Value::String(name) if KINDS.contains(&name.as_str()) => name,
            other => {
                return Err(StepError {
                    field: "kind",
                    problem: format!("{other} is not a step kind (one of {})", KINDS.join(", ")),
                });
            }
        };
        let kind = StepKind::deserialize(serde_json::json!({ "kind": kind, "config": raw.config }))
            .map_err(|e| StepError { field: "config", problem: e.to_string() })?;
        Ok(Self {
            key: raw.key,
            name: raw.name,
            kind,
            requires_approval: raw.requires_approval,
            timeout_ms: raw.timeout_ms,
            retry: raw.retry,
        })
    }
}

/// A step's kind and configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// The kind's name (one of [`KINDS`]).
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

    /// A new step's configuration of kind `name`, with the choices a form starts
    /// from (summarize, POST, stop) filled in.
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AiConfig {
    /// The task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(required = true, nullable = false))]
    pub task: Option<AiTask>,
    /// Template of the text to work on (required except for generate).
    #[serde(default)]
    pub input: String,
    /// classify: labels to choose from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(max_items = 50))]
    pub labels: Vec<String>,
    /// extract: field names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(max_items = 50, pattern = "^[A-Za-z_][A-Za-z0-9_]{0,63}$"))]
    pub fields: Vec<String>,
    /// generate: the prompt template; otherwise an optional extra instruction.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prompt: String,
    /// Model; empty = the server's default.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[cfg_attr(feature = "openapi", schema(max_length = 100))]
    pub model: String,
    /// Output token limit; 0 = the server's default.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[cfg_attr(feature = "openapi", schema(maximum = 64000))]
    pub max_tokens: u32,
    /// Credential name of an Anthropic key; empty = `anthropic`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z][a-z0-9_-]{0,62}$"))]
    pub connector: String,
}

/// `slack` configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// Credential name of the Slack webhook URL; empty = `slack`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z][a-z0-9_-]{0,62}$"))]
    pub connector: String,
    /// Template of the message.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub text: String,
}

/// `email` configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// Credential name of the Resend key; empty = `resend`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z][a-z0-9_-]{0,62}$"))]
    pub connector: String,
    /// Template of the sender.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub from: String,
    /// Templates of the recipients.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true, min_items = 1, max_items = 50))]
    pub to: Vec<String>,
    /// Template of the subject.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub subject: String,
    /// Template of the HTML body.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub html: String,
    /// Template of the text body.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
}

/// HTTP method of an `http` step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HttpHeader {
    /// Header name.
    pub name: String,
    /// Template of the value.
    pub value: String,
}

/// `http` configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(required = true, nullable = false))]
    pub method: Option<HttpMethod>,
    /// Template of the URL.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub url: String,
    /// Extra headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(max_items = 50))]
    pub headers: Vec<HttpHeader>,
    /// Template of a JSON body; empty = none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
    /// Credential name of a bearer token; empty = none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z][a-z0-9_-]{0,62}$"))]
    pub bearer_connector: String,
}

/// `transform` configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TransformConfig {
    /// Template rendering a JSON document.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub template: String,
}

/// What a condition does when false.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OnFalse {
    /// End the run as skipped.
    Stop,
    /// Continue at `jump_to`.
    Jump,
}

/// `condition` configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ConditionConfig {
    /// Expression, e.g. `steps.classify.output.label == 'urgent'`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub expression: String,
    /// What to do when false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(required = true, nullable = false))]
    pub on_false: Option<OnFalse>,
    /// `jump`: the key of a later step.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z][a-z0-9_]{0,62}$"))]
    pub jump_to: String,
}

/// `approval` configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ApprovalConfig {
    /// Template of what the approver is asked.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub message: String,
    /// Deadline in seconds; 0 = the server's default (72 h).
    #[serde(default, skip_serializing_if = "is_zero")]
    #[cfg_attr(feature = "openapi", schema(maximum = 2592000))]
    pub expires_after_seconds: u32,
}

/// Retries of a step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Total attempts, 1–10; 0 = default.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(maximum = 10))]
    pub max_attempts: u32,
    /// First backoff in ms; 0 = default.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(maximum = 600000))]
    pub initial_backoff_ms: u32,
    /// Largest backoff in ms; 0 = default.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(maximum = 600000))]
    pub max_backoff_ms: u32,
}

/// A schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Schedule id; empty for a new one, keep it when updating.
    #[serde(default)]
    pub id: String,
    /// Five fields: minute hour day-of-month month day-of-week, e.g. `0 9 * * 1-5`.
    pub cron: String,
    /// IANA time zone, e.g. `Europe/Berlin`.
    pub timezone: String,
    /// Whether it fires.
    #[serde(default = "default_true")]
    #[cfg_attr(feature = "openapi", schema(default = true))]
    pub enabled: bool,
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
        let back = PilotSpec::from(bizops_proto::catalog::v1::PilotSpec::from(spec.clone()));
        assert_eq!(back, spec);
        let again = serde_json::to_value(&back).unwrap();
        assert_eq!(again["steps"][1]["kind"], "slack");
        assert_eq!(again["steps"][1]["config"]["text"], "hi");
        assert_eq!(again["steps"][2]["config"]["method"], "POST");
    }

    #[test]
    fn unknown_fields_and_kinds_are_refused() {
        let bad = serde_json::json!({"key": "n", "kind": "slack", "config": {"txt": "hi"}});
        let e = serde_json::from_value::<Step>(bad).unwrap_err().to_string();
        assert!(e.starts_with("config: unknown field `txt`"), "{e}");
        let bad = serde_json::json!({"key": "n", "kind": "teleport", "config": {}});
        let e = serde_json::from_value::<Step>(bad).unwrap_err().to_string();
        assert!(e.contains("\"teleport\" is not a step kind"), "{e}");
        let bad = serde_json::json!({"key": "n", "kind": "slack", "config": {}, "colour": "red"});
        assert!(serde_json::from_value::<Step>(bad).unwrap_err().to_string().contains("colour"));
        let bad = serde_json::json!({"title": "t", "colour": "red"});
        assert!(serde_json::from_value::<PilotSpec>(bad).unwrap_err().to_string().contains("colour"));
    }

    #[test]
    fn missing_choices_stay_absent_so_validation_can_name_them() {
        let step: Step =
            serde_json::from_value(serde_json::json!({"key": "a", "kind": "ai", "config": {}})).unwrap();
        assert_eq!(step.kind, StepKind::Ai(AiConfig::default()));
        assert_eq!(
            serde_json::to_value(&step).unwrap(),
            serde_json::json!({"key": "a", "kind": "ai", "config": {"input": ""}})
        );
    }

    #[test]
    fn every_kind_has_a_name_and_an_empty_form() {
        for name in KINDS {
            assert_eq!(StepKind::empty(name).unwrap().name(), name);
        }
        assert_eq!(StepKind::empty("teleport"), None);
    }
}
