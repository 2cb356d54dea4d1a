//! The JSON shapes of connectors: credentials by name and kind, metadata only
//! (the value is write-only).

use bizops_proto::vault::v1 as vault;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::shared::model::{enum_name, ts};

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
