//! The export format `bizops.pilot/v1`: a versioned JSON document of a Pilot's
//! content, without secrets or ids, that ImportPilot turns back into a new Pilot
//! (round trip lossless). Its steps are [`Step`]s; its JSON Schema is generated
//! into `docs/pilot-export.schema.json` by [`crate::schema`].

use bizops_errors::{Error, ErrorCode};
use bizops_proto::catalog::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::{PilotSpec, RawStep, Step, default_true};

/// The value of `format`.
pub const FORMAT: &str = "bizops.pilot/v1";

/// The document. Written with `S` = [`Step`]; read with `S` = a JSON value per
/// step, so that an error can say which step it is in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "S: Deserialize<'de>"))]
pub struct Document<S = Step> {
    /// Always `bizops.pilot/v1`.
    pub format: String,
    /// When it was exported (RFC 3339); informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exported_at: Option<String>,
    /// The Pilot's content.
    pub pilot: Content<S>,
}

/// A Pilot's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "S: Deserialize<'de>"))]
pub struct Content<S = Step> {
    /// The title.
    pub title: String,
    /// The description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The steps, in order.
    #[serde(default)]
    pub steps: Vec<S>,
    /// The schedules (without their ids, which belong to one Pilot).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<ExportedSchedule>,
    /// How long one run may execute in all, in seconds (0: the server's default).
    #[serde(default, skip_serializing_if = "crate::is_zero")]
    pub max_execution_seconds: u32,
}

/// A schedule in an export: a [`crate::Schedule`] without its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedSchedule {
    /// Five-field cron expression.
    pub cron: String,
    /// IANA time zone.
    pub timezone: String,
    /// Whether it fires.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

/// Why stored content could not be exported (a value the format cannot
/// represent, e.g. an unspecified enum).
fn unrepresentable(what: &str) -> Error {
    Error::invalid("pilot", format!("{what} has no value in the export format"))
}

/// The document of a Pilot's content.
pub fn to_document(spec: &pb::PilotSpec, exported_at: Option<String>) -> Result<Document, Error> {
    if spec.steps.iter().any(|s| s.kind.is_none()) {
        return Err(unrepresentable("a step without kind"));
    }
    let spec = PilotSpec::from(spec.clone());
    if let Some(choice) = spec.steps.iter().find_map(Step::missing_choice) {
        return Err(unrepresentable(&format!("a step without {choice}")));
    }
    Ok(Document {
        format: FORMAT.to_owned(),
        exported_at,
        pilot: Content {
            title: spec.title,
            description: spec.description,
            steps: spec.steps,
            schedules: spec
                .schedules
                .into_iter()
                .map(|s| ExportedSchedule { cron: s.cron, timezone: s.timezone, enabled: s.enabled })
                .collect(),
            max_execution_seconds: spec.max_execution_seconds,
        },
    })
}

/// Serialises a document (pretty, stable field order).
pub fn to_json(doc: &Document) -> Result<String, Error> {
    serde_json::to_string_pretty(doc).map_err(Error::internal)
}

/// The largest import document accepted for content of at most `max_content`
/// bytes: JSON spells the same content out at several times its encoded size.
pub fn json_envelope(max_content: usize) -> usize {
    max_content.saturating_mul(6)
}

/// Parses a document; errors are `INVALID_ARGUMENT` saying where
/// (`pilot.steps[2].config: unknown field …`). Schedule ids are never imported.
pub fn parse(json: &str, max_bytes: usize) -> Result<pb::PilotSpec, Error> {
    if json.len() > max_bytes {
        return Err(Error::new(
            ErrorCode::PayloadTooLarge,
            format!("the document is {} bytes; at most {max_bytes} are allowed", json.len()),
        ));
    }
    let doc: Document<serde_json::Value> = serde_json::from_str(json)
        .map_err(|e| Error::invalid("json", format!("not a bizops.pilot/v1 document: {e}")))?;
    if doc.format != FORMAT {
        return Err(Error::invalid("json", format!("format must be \"{FORMAT}\", not \"{}\"", doc.format)));
    }
    let steps = doc
        .pilot
        .steps
        .into_iter()
        .enumerate()
        .map(|(i, step)| {
            let raw: RawStep =
                serde_json::from_value(step).map_err(|e| Error::invalid(&format!("pilot.steps[{i}]"), e))?;
            Step::try_from(raw)
                .map_err(|e| Error::invalid(&format!("pilot.steps[{i}].{}", e.field), e.problem))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PilotSpec {
        title: doc.pilot.title,
        description: doc.pilot.description,
        steps,
        schedules: doc
            .pilot
            .schedules
            .into_iter()
            .map(|s| crate::Schedule {
                id: String::new(),
                cron: s.cron,
                timezone: s.timezone,
                enabled: s.enabled,
            })
            .collect(),
        max_execution_seconds: doc.pilot.max_execution_seconds,
    }
    .into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn import_errors_say_where() {
        let e = parse(r#"{"format":"bizops.pilot/v2","pilot":{"title":"x"}}"#, 1 << 20).unwrap_err();
        assert!(e.message().contains("format must be"), "{}", e.message());
        let e = parse(r#"{"format":"bizops.pilot/v1","pilot":{"title":"x","steps":[{"key":"a","kind":"slack","config":{"text":"x","oops":1}}]}}"#, 1 << 20).unwrap_err();
        assert!(
            e.message().starts_with("pilot.steps[0].config:") && e.message().contains("oops"),
            "{}",
            e.message()
        );
        let e = parse(
            r#"{"format":"bizops.pilot/v1","pilot":{"title":"x","steps":[{"key":"a"},{"key":"b","kind":"x","config":{}}]}}"#,
            1 << 20,
        )
        .unwrap_err();
        assert!(e.message().starts_with("pilot.steps[0]: missing field"), "{}", e.message());
        let e = parse("{}", 10).unwrap_err();
        assert!(e.message().contains("not a bizops.pilot/v1 document"), "{}", e.message());
        let e = parse(&"x".repeat(11), 10).unwrap_err();
        assert_eq!(e.code(), ErrorCode::PayloadTooLarge);
    }

    #[test]
    fn content_the_format_cannot_hold_is_not_exported() {
        let spec = pb::PilotSpec {
            title: "t".into(),
            steps: vec![pb::Step {
                key: "a".into(),
                kind: Some(pb::step::Kind::Http(pb::HttpStep {
                    url: "https://x.test".into(),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        };
        let e = to_document(&spec, None).unwrap_err();
        assert_eq!(e.message(), "pilot: a step without http.method has no value in the export format");
        let spec = pb::PilotSpec { steps: vec![pb::Step::default()], ..spec };
        assert!(to_document(&spec, None).unwrap_err().message().contains("a step without kind"));
    }

    #[test]
    fn schedule_ids_are_neither_exported_nor_imported() {
        let spec = pb::PilotSpec {
            title: "t".into(),
            schedules: vec![pb::Schedule {
                id: "0193a1b2-0000-7000-8000-000000000000".into(),
                cron: "0 9 * * *".into(),
                timezone: "UTC".into(),
                enabled: false,
            }],
            ..Default::default()
        };
        let json = to_json(&to_document(&spec, None).unwrap()).unwrap();
        assert!(!json.contains("0193a1b2"), "{json}");
        let back = parse(&json, 1 << 20).unwrap();
        assert_eq!(back.schedules[0].id, "");
        assert!(!back.schedules[0].enabled);
        let with_id = json.replace("\"cron\"", "\"id\": \"x\", \"cron\"");
        assert!(parse(&with_id, 1 << 20).is_err());
    }
}
