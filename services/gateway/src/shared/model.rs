//! The JSON shapes and helpers every feature's API uses: the error body (for the
//! OpenAPI document), paging parameters, RFC 3339 times (UTC) and lower-case
//! enum names.

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
pub fn enum_name(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix).unwrap_or(full).to_ascii_lowercase()
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

// ---------------------------------------------------------------- paging

/// Paging parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1–100 (default 20).
    pub page_size: Option<u32>,
    /// Token from the previous page.
    pub page_token: Option<String>,
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
}
