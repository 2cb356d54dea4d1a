//! The JSON shapes of Pilots: a Pilot, its versions, schedules, import and the
//! webhook secret. A Pilot's spec and its steps are `bizops_pilot_spec`'s types,
//! the same as the steps of the `bizops.pilot/v1` export format.

use bizops_proto::catalog::v1 as catalog;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::shared::model::ts;

fn default_true() -> bool {
    true
}

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
