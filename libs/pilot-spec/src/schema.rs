//! The JSON Schema of the export format, generated from the types' utoipa schemas
//! (their fields, descriptions and constraints) and the format's envelope. The
//! committed `docs/pilot-export.schema.json` must equal [`export_schema`]; the test
//! below fails when it does not (`BIZOPS_UPDATE_SCHEMA=1 cargo test -p
//! bizops-pilot-spec --features openapi` rewrites it).

use serde_json::{Map, Value, json};
use utoipa::{PartialSchema, ToSchema};

use crate::{
    AiConfig, ApprovalConfig, ConditionConfig, EmailConfig, HttpConfig, KINDS, PilotSpec, RetryPolicy,
    Schedule, SlackConfig, Step, TransformConfig, export::FORMAT,
};

/// The `$defs` name of a type's schema.
fn def_name(type_name: &str) -> String {
    match type_name {
        "AiConfig" => "ai".into(),
        "SlackConfig" => "slack".into(),
        "EmailConfig" => "email".into(),
        "HttpConfig" => "http".into(),
        "TransformConfig" => "transform".into(),
        "ConditionConfig" => "condition".into(),
        "ApprovalConfig" => "approval".into(),
        "RetryPolicy" => "retry".into(),
        other => {
            // AiTask → ai_task
            let mut out = String::new();
            for (i, c) in other.chars().enumerate() {
                if c.is_ascii_uppercase() {
                    if i > 0 {
                        out.push('_');
                    }
                    out.push(c.to_ascii_lowercase());
                } else {
                    out.push(c);
                }
            }
            out
        }
    }
}

/// A type's schema as JSON, with references into `$defs`.
fn schema_of<T: PartialSchema>() -> Value {
    let mut value = serde_json::to_value(T::schema()).unwrap_or(Value::Null);
    rewrite_refs(&mut value);
    value
}

fn rewrite_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get_mut("$ref")
                && let Some(name) = r.strip_prefix("#/components/schemas/")
            {
                *r = format!("#/$defs/{}", def_name(name));
            }
            map.values_mut().for_each(rewrite_refs);
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

/// The schemas `T` refers to, by `$defs` name.
fn dependencies<T: ToSchema>(defs: &mut Map<String, Value>) {
    let mut found = Vec::new();
    T::schemas(&mut found);
    for (name, schema) in found {
        let mut value = serde_json::to_value(schema).unwrap_or(Value::Null);
        rewrite_refs(&mut value);
        defs.insert(def_name(&name), value);
    }
}

fn property(schema: &Value, name: &str) -> Value {
    schema["properties"][name].clone()
}

/// The object schema of a type, restricted to `keep` (in that order), refusing
/// anything else.
fn object(schema: &Value, keep: &[&str]) -> Value {
    let properties: Map<String, Value> =
        keep.iter().map(|k| ((*k).to_owned(), property(schema, k))).collect();
    let required: Vec<Value> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r.as_str().is_some_and(|r| keep.contains(&r)))
        .cloned()
        .collect();
    let mut out = json!({ "type": "object", "additionalProperties": false });
    if let Some(description) = schema.get("description") {
        out["description"] = description.clone();
    }
    if !required.is_empty() {
        out["required"] = Value::Array(required);
    }
    out["properties"] = Value::Object(properties);
    out
}

/// The common fields of a step (everything but `kind` and `config`): `Step`'s
/// own object schema (utoipa writes the flattened kind beside it).
fn step_fields() -> Value {
    let step = schema_of::<Step>();
    let parts = step["allOf"].as_array().cloned().unwrap_or_default();
    parts.into_iter().find(|p| p["properties"].get("key").is_some()).unwrap_or(step)
}

/// The export format's JSON Schema.
pub fn export_schema() -> Value {
    let mut defs = Map::new();
    let configs: [(&str, Value); 7] = [
        ("ai", schema_of::<AiConfig>()),
        ("slack", schema_of::<SlackConfig>()),
        ("email", schema_of::<EmailConfig>()),
        ("http", schema_of::<HttpConfig>()),
        ("transform", schema_of::<TransformConfig>()),
        ("condition", schema_of::<ConditionConfig>()),
        ("approval", schema_of::<ApprovalConfig>()),
    ];
    dependencies::<AiConfig>(&mut defs);
    dependencies::<HttpConfig>(&mut defs);
    dependencies::<ConditionConfig>(&mut defs);
    for (name, schema) in &configs {
        defs.insert((*name).to_owned(), schema.clone());
    }
    defs.insert("retry".into(), schema_of::<RetryPolicy>());
    defs.insert("schedule".into(), object(&schema_of::<Schedule>(), &["cron", "timezone", "enabled"]));

    let fields = step_fields();
    let mut step = object(&fields, &["key", "name", "requires_approval", "timeout_ms", "retry"]);
    step["description"] = json!("One step: its kind, the kind's configuration, and how it runs.");
    step["required"] = json!(["key", "kind", "config"]);
    step["properties"]["kind"] = json!({ "enum": KINDS });
    step["properties"]["config"] = json!({
        "type": "object",
        "description": "The kind's configuration: $defs.<kind>. Its text fields are minijinja templates that may \
                        read trigger.*, steps.<earlier key>.output.* and secrets.<name>."
    });
    step["allOf"] = KINDS
        .iter()
        .map(|k| {
            json!({
                "if": { "properties": { "kind": { "const": k } } },
                "then": { "properties": { "config": { "$ref": format!("#/$defs/{k}") } } }
            })
        })
        .collect();
    defs.insert("step".into(), step);

    let spec = schema_of::<PilotSpec>();
    let mut pilot = object(&spec, &["title", "description", "steps", "schedules", "max_execution_seconds"]);
    pilot["properties"]["steps"]["items"] = json!({ "$ref": "#/$defs/step" });
    pilot["properties"]["schedules"]["items"] = json!({ "$ref": "#/$defs/schedule" });

    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://bizopspilot.com/schemas/pilot-export/v1.json",
        "title": "BizOps Pilot export (bizops.pilot/v1)",
        "description": "A Pilot's content as ExportPilot writes it and ImportPilot reads it. No secrets and no ids: webhook secrets, credentials and schedule ids are never exported; templates may refer to credentials by name as secrets.<name>. Generated from libs/pilot-spec; do not edit.",
        "type": "object",
        "additionalProperties": false,
        "required": ["format", "pilot"],
        "properties": {
            "format": { "const": FORMAT },
            "exported_at": { "type": "string", "format": "date-time" },
            "pilot": pilot,
        },
        "$defs": defs,
    })
}

/// `value` with every object's keys in sorted order, whether or not serde_json
/// keeps insertion order in this build (its `preserve_order` feature is unified
/// across the workspace).
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// [`export_schema`] as the committed file spells it (keys sorted).
pub fn export_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&sorted(export_schema())).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::limits;

    const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/pilot-export.schema.json");

    #[test]
    fn the_committed_schema_is_the_generated_one() {
        let generated = export_schema_text();
        if std::env::var_os("BIZOPS_UPDATE_SCHEMA").is_some() {
            std::fs::write(COMMITTED, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(COMMITTED).unwrap();
        assert!(
            committed == generated,
            "docs/pilot-export.schema.json differs from the types in libs/pilot-spec; regenerate it with \
             BIZOPS_UPDATE_SCHEMA=1 cargo test -p bizops-pilot-spec --features openapi"
        );
    }

    #[test]
    fn the_schema_states_the_limits_the_catalog_enforces() {
        let s = export_schema();
        let defs = &s["$defs"];
        let pilot = &s["properties"]["pilot"]["properties"];
        let n = |v: &Value| v.as_u64().unwrap();
        assert_eq!(n(&pilot["title"]["maxLength"]), limits::MAX_TITLE as u64);
        assert_eq!(n(&pilot["title"]["minLength"]), 1);
        assert_eq!(n(&pilot["description"]["maxLength"]), limits::MAX_DESCRIPTION as u64);
        assert_eq!(n(&pilot["steps"]["maxItems"]), limits::MAX_STEPS as u64);
        assert_eq!(n(&pilot["schedules"]["maxItems"]), limits::MAX_LIST as u64);
        let step = &defs["step"]["properties"];
        assert_eq!(n(&step["name"]["maxLength"]), limits::MAX_STEP_NAME as u64);
        assert_eq!(n(&step["timeout_ms"]["maximum"]), u64::from(limits::MAX_TIMEOUT_MS));
        let retry = &defs["retry"]["properties"];
        assert_eq!(n(&retry["max_attempts"]["maximum"]), u64::from(limits::MAX_ATTEMPTS));
        assert_eq!(n(&retry["initial_backoff_ms"]["maximum"]), u64::from(limits::MAX_BACKOFF_MS));
        assert_eq!(n(&retry["max_backoff_ms"]["maximum"]), u64::from(limits::MAX_BACKOFF_MS));
        let ai = &defs["ai"]["properties"];
        assert_eq!(n(&ai["labels"]["maxItems"]), limits::MAX_LIST as u64);
        assert_eq!(n(&ai["fields"]["maxItems"]), limits::MAX_LIST as u64);
        assert_eq!(n(&ai["model"]["maxLength"]), limits::MAX_MODEL as u64);
        assert_eq!(n(&ai["max_tokens"]["maximum"]), u64::from(limits::MAX_TOKENS));
        assert_eq!(n(&defs["email"]["properties"]["to"]["maxItems"]), limits::MAX_LIST as u64);
        assert_eq!(n(&defs["http"]["properties"]["headers"]["maxItems"]), limits::MAX_LIST as u64);
        assert_eq!(
            n(&defs["approval"]["properties"]["expires_after_seconds"]["maximum"]),
            u64::from(limits::MAX_APPROVAL_SECONDS)
        );
        // The patterns say what the checks check.
        let pattern = |v: &Value| v["pattern"].as_str().unwrap().to_owned();
        assert_eq!(pattern(&step["key"]), "^[a-z][a-z0-9_]{0,62}$");
        for (def, field) in [
            ("ai", "connector"),
            ("slack", "connector"),
            ("email", "connector"),
            ("http", "bearer_connector"),
        ] {
            assert_eq!(pattern(&defs[def]["properties"][field]), "^[a-z][a-z0-9_-]{0,62}$", "{def}.{field}");
        }
        assert_eq!(pattern(&ai["fields"]["items"]), "^[A-Za-z_][A-Za-z0-9_]{0,63}$");
        for (text, is) in [("a", true), ("a_1", true), ("A", false), ("1a", false), ("a-b", false)] {
            assert_eq!(limits::is_step_key(text), is, "{text}");
        }
        for (text, is) in [("team-slack", true), ("a_1", true), ("Slack", false), ("-a", false)] {
            assert_eq!(limits::is_connector_name(text), is, "{text}");
        }
        for (text, is) in [("Name", true), ("_x1", true), ("1x", false), ("a-b", false)] {
            assert_eq!(limits::is_field_name(text), is, "{text}");
        }
    }

    #[test]
    fn every_kind_has_its_config_schema() {
        let s = export_schema();
        let kinds: Vec<&str> = s["$defs"]["step"]["properties"]["kind"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        assert_eq!(kinds, KINDS);
        for kind in KINDS {
            assert_eq!(s["$defs"][kind]["type"], "object", "{kind}");
            assert_eq!(s["$defs"][kind]["additionalProperties"], false, "{kind}");
        }
        assert_eq!(s["properties"]["format"]["const"], FORMAT);
    }

    fn validator() -> jsonschema::Validator {
        jsonschema::draft202012::new(&export_schema()).unwrap()
    }

    fn document(steps: Value) -> Value {
        json!({"format": FORMAT, "exported_at": "2026-12-04T10:00:00Z", "pilot": {"title": "Orders", "steps": steps,
            "schedules": [{"cron": "0 9 * * 1-5", "timezone": "Europe/Berlin"}]}})
    }

    #[test]
    fn exported_documents_satisfy_the_schema() {
        let steps = json!([
            {"key": "a", "kind": "ai", "config": {"task": "classify", "input": "{{ trigger.body }}", "labels": ["x", "y"]}},
            {"key": "n", "name": "Notify", "kind": "slack", "config": {"text": "hi", "connector": "team-slack"},
             "requires_approval": true, "timeout_ms": 5000,
             "retry": {"max_attempts": 3, "initial_backoff_ms": 100, "max_backoff_ms": 1000}},
            {"key": "h", "kind": "http", "config": {"method": "POST", "url": "https://x.test", "headers": [{"name": "A", "value": "b"}]}},
            {"key": "c", "kind": "condition", "config": {"expression": "true", "on_false": "jump", "jump_to": "z"}},
            {"key": "e", "kind": "email", "config": {"from": "a@b.test", "to": ["c@d.test"], "subject": "s", "text": "t"}},
            {"key": "t", "kind": "transform", "config": {"template": "{}"}},
            {"key": "z", "kind": "approval", "config": {"message": "ok?", "expires_after_seconds": 60}}
        ]);
        // Through the types and back out, as ExportPilot writes it.
        let spec: crate::PilotSpec =
            serde_json::from_value(json!({"title": "Orders", "steps": steps, "schedules": []})).unwrap();
        let doc = crate::export::to_document(&spec.into(), Some("2026-12-04T10:00:00Z".into())).unwrap();
        let written: Value = serde_json::from_str(&crate::export::to_json(&doc).unwrap()).unwrap();
        let v = validator();
        assert!(
            v.is_valid(&written),
            "{:?}",
            v.iter_errors(&written).map(|e| e.to_string()).collect::<Vec<_>>()
        );
        assert!(v.is_valid(&document(steps)));
    }

    #[test]
    fn the_schema_refuses_what_the_format_refuses() {
        let v = validator();
        let bad = [
            json!([{"key": "a", "kind": "slack", "config": {"text": "x", "oops": 1}}]),
            json!([{"key": "A", "kind": "slack", "config": {"text": "x"}}]),
            json!([{"key": "a", "kind": "teleport", "config": {}}]),
            json!([{"key": "a", "kind": "slack", "config": {"text": "x"}, "colour": "red"}]),
            json!([{"key": "a", "kind": "ai", "config": {"input": "x"}}]),
            json!([{"key": "a", "kind": "http", "config": {"method": "FETCH", "url": "https://x.test"}}]),
            json!([{"key": "a", "kind": "slack", "config": {"text": "x", "connector": "Bad Name"}}]),
            json!([{"key": "a", "kind": "slack", "config": {"text": "x"}, "timeout_ms": 300001}]),
            json!([{"key": "a", "kind": "email", "config": {"from": "a", "to": [], "subject": "s"}}]),
            json!([{"key": "a", "kind": "approval", "config": {"message": "m", "expires_after_seconds": 2592001}}]),
            json!([{"key": "a", "kind": "transform", "config": {"template": "{}"}, "retry": {"max_attempts": 11}}]),
        ];
        for steps in bad {
            assert!(!v.is_valid(&document(steps.clone())), "accepted {steps}");
        }
        let mut long_title = document(json!([]));
        long_title["pilot"]["title"] = json!("x".repeat(201));
        assert!(!v.is_valid(&long_title));
        let mut with_id = document(json!([]));
        with_id["pilot"]["schedules"][0]["id"] = json!("x");
        assert!(!v.is_valid(&with_id), "schedule ids are not part of the format");
    }
}
