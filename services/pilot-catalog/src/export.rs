//! The export format `bizops.pilot/v1`: a versioned JSON document of a Pilot's
//! content, without secrets or ids, that ImportPilot turns back into a new Pilot
//! (round trip lossless). Its JSON Schema is `docs/pilot-export.schema.json`.

use bizops_errors::{Error, ErrorCode};
use bizops_proto::catalog::v1::{self as pb, step::Kind};
use serde::{Deserialize, Serialize};

/// The value of `format`.
pub const FORMAT: &str = "bizops.pilot/v1";

/// The document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// Always `bizops.pilot/v1`.
    pub format: String,
    /// When it was exported (RFC 3339); informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exported_at: Option<String>,
    /// The Pilot's content.
    pub pilot: PilotJson,
}

/// A Pilot's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PilotJson {
    title: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    description: String,
    #[serde(default)]
    steps: Vec<StepJson>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    schedules: Vec<ScheduleJson>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepJson {
    key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    name: String,
    kind: KindTag,
    /// The kind's configuration, parsed by `kind` into its typed form.
    config: serde_json::Value,
    #[serde(default, skip_serializing_if = "is_false")]
    requires_approval: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    timeout_ms: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry: Option<RetryJson>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum KindTag {
    Ai,
    Slack,
    Email,
    Http,
    Transform,
    Condition,
    Approval,
}

/// A step's configuration in its typed form.
#[derive(Debug, Clone, PartialEq)]
enum KindJson {
    Ai(AiJson),
    Slack(SlackJson),
    Email(EmailJson),
    Http(HttpJson),
    Transform(TransformJson),
    Condition(ConditionJson),
    Approval(ApprovalJson),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum AiTaskJson {
    Summarize,
    Classify,
    Extract,
    Generate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AiJson {
    task: AiTaskJson,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    input: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    labels: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    fields: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    prompt: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    model: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    max_tokens: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    connector: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlackJson {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    connector: String,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailJson {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    connector: String,
    from: String,
    to: Vec<String>,
    subject: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    html: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
enum MethodJson {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderJson {
    name: String,
    value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpJson {
    method: MethodJson,
    url: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    headers: Vec<HeaderJson>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    body: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    bearer_connector: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransformJson {
    template: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum OnFalseJson {
    Stop,
    Jump,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionJson {
    expression: String,
    on_false: OnFalseJson,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    jump_to: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalJson {
    message: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    expires_after_seconds: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryJson {
    #[serde(default)]
    max_attempts: u32,
    #[serde(default)]
    initial_backoff_ms: u32,
    #[serde(default)]
    max_backoff_ms: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleJson {
    cron: String,
    timezone: String,
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

/// Why a document could not be converted (a value the format cannot represent,
/// e.g. an unspecified enum in stored content).
fn unrepresentable(what: &str) -> Error {
    Error::invalid("pilot", format!("{what} has no value in the export format"))
}

/// The document of a Pilot's content.
pub fn to_document(spec: &pb::PilotSpec, exported_at: Option<String>) -> Result<Document, Error> {
    let steps = spec.steps.iter().map(step_json).collect::<Result<Vec<_>, _>>()?;
    let schedules = spec
        .schedules
        .iter()
        .map(|s| ScheduleJson { cron: s.cron.clone(), timezone: s.timezone.clone(), enabled: s.enabled })
        .collect();
    Ok(Document {
        format: FORMAT.to_owned(),
        exported_at,
        pilot: PilotJson {
            title: spec.title.clone(),
            description: spec.description.clone(),
            steps,
            schedules,
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

/// Parses a document; errors are `INVALID_ARGUMENT` saying where.
pub fn parse(json: &str, max_bytes: usize) -> Result<pb::PilotSpec, Error> {
    if json.len() > max_bytes {
        return Err(Error::new(
            ErrorCode::PayloadTooLarge,
            format!("the document is {} bytes; at most {max_bytes} are allowed", json.len()),
        ));
    }
    let doc: Document = serde_json::from_str(json)
        .map_err(|e| Error::invalid("json", format!("not a bizops.pilot/v1 document: {e}")))?;
    if doc.format != FORMAT {
        return Err(Error::invalid("json", format!("format must be \"{FORMAT}\", not \"{}\"", doc.format)));
    }
    from_pilot(doc.pilot)
}

fn step_json(step: &pb::Step) -> Result<StepJson, Error> {
    let kind = match step.kind.as_ref().ok_or_else(|| unrepresentable("a step without kind"))? {
        Kind::Ai(a) => KindJson::Ai(AiJson {
            task: match a.task() {
                pb::AiTask::Summarize => AiTaskJson::Summarize,
                pb::AiTask::Classify => AiTaskJson::Classify,
                pb::AiTask::Extract => AiTaskJson::Extract,
                pb::AiTask::Generate => AiTaskJson::Generate,
                pb::AiTask::Unspecified => return Err(unrepresentable("an ai step without task")),
            },
            input: a.input.clone(),
            labels: a.labels.clone(),
            fields: a.fields.clone(),
            prompt: a.prompt.clone(),
            model: a.model.clone(),
            max_tokens: a.max_tokens,
            connector: a.connector.clone(),
        }),
        Kind::Slack(s) => KindJson::Slack(SlackJson { connector: s.connector.clone(), text: s.text.clone() }),
        Kind::Email(e) => KindJson::Email(EmailJson {
            connector: e.connector.clone(),
            from: e.from.clone(),
            to: e.to.clone(),
            subject: e.subject.clone(),
            html: e.html.clone(),
            text: e.text.clone(),
        }),
        Kind::Http(h) => KindJson::Http(HttpJson {
            method: match h.method() {
                pb::HttpMethod::Get => MethodJson::Get,
                pb::HttpMethod::Post => MethodJson::Post,
                pb::HttpMethod::Put => MethodJson::Put,
                pb::HttpMethod::Patch => MethodJson::Patch,
                pb::HttpMethod::Delete => MethodJson::Delete,
                pb::HttpMethod::Unspecified => return Err(unrepresentable("an http step without method")),
            },
            url: h.url.clone(),
            headers: h
                .headers
                .iter()
                .map(|x| HeaderJson { name: x.name.clone(), value: x.value.clone() })
                .collect(),
            body: h.body.clone(),
            bearer_connector: h.bearer_connector.clone(),
        }),
        Kind::Transform(t) => KindJson::Transform(TransformJson { template: t.template.clone() }),
        Kind::Condition(c) => KindJson::Condition(ConditionJson {
            expression: c.expression.clone(),
            on_false: match c.on_false() {
                pb::OnFalse::Stop => OnFalseJson::Stop,
                pb::OnFalse::Jump => OnFalseJson::Jump,
                pb::OnFalse::Unspecified => return Err(unrepresentable("a condition without on_false")),
            },
            jump_to: c.jump_to.clone(),
        }),
        Kind::Approval(a) => KindJson::Approval(ApprovalJson {
            message: a.message.clone(),
            expires_after_seconds: a.expires_after_seconds,
        }),
    };
    let (tag, config) = match &kind {
        KindJson::Ai(c) => (KindTag::Ai, serde_json::to_value(c)),
        KindJson::Slack(c) => (KindTag::Slack, serde_json::to_value(c)),
        KindJson::Email(c) => (KindTag::Email, serde_json::to_value(c)),
        KindJson::Http(c) => (KindTag::Http, serde_json::to_value(c)),
        KindJson::Transform(c) => (KindTag::Transform, serde_json::to_value(c)),
        KindJson::Condition(c) => (KindTag::Condition, serde_json::to_value(c)),
        KindJson::Approval(c) => (KindTag::Approval, serde_json::to_value(c)),
    };
    Ok(StepJson {
        key: step.key.clone(),
        name: step.name.clone(),
        kind: tag,
        config: config.map_err(Error::internal)?,
        requires_approval: step.requires_approval,
        timeout_ms: step.timeout_ms,
        retry: step.retry.as_ref().map(|r| RetryJson {
            max_attempts: r.max_attempts,
            initial_backoff_ms: r.initial_backoff_ms,
            max_backoff_ms: r.max_backoff_ms,
        }),
    })
}

fn from_pilot(p: PilotJson) -> Result<pb::PilotSpec, Error> {
    let steps =
        p.steps.into_iter().enumerate().map(|(i, s)| from_step(i, s)).collect::<Result<Vec<_>, _>>()?;
    Ok(pb::PilotSpec {
        title: p.title,
        description: p.description,
        steps,
        schedules: p
            .schedules
            .into_iter()
            .map(|s| pb::Schedule {
                id: String::new(),
                cron: s.cron,
                timezone: s.timezone,
                enabled: s.enabled,
            })
            .collect(),
    })
}

fn typed<T: serde::de::DeserializeOwned>(index: usize, config: serde_json::Value) -> Result<T, Error> {
    serde_json::from_value(config).map_err(|e| Error::invalid(&format!("pilot.steps[{index}].config"), e))
}

fn from_step(index: usize, s: StepJson) -> Result<pb::Step, Error> {
    let parsed = match s.kind {
        KindTag::Ai => KindJson::Ai(typed(index, s.config)?),
        KindTag::Slack => KindJson::Slack(typed(index, s.config)?),
        KindTag::Email => KindJson::Email(typed(index, s.config)?),
        KindTag::Http => KindJson::Http(typed(index, s.config)?),
        KindTag::Transform => KindJson::Transform(typed(index, s.config)?),
        KindTag::Condition => KindJson::Condition(typed(index, s.config)?),
        KindTag::Approval => KindJson::Approval(typed(index, s.config)?),
    };
    let kind = match parsed {
        KindJson::Ai(a) => Kind::Ai(pb::AiStep {
            task: match a.task {
                AiTaskJson::Summarize => pb::AiTask::Summarize,
                AiTaskJson::Classify => pb::AiTask::Classify,
                AiTaskJson::Extract => pb::AiTask::Extract,
                AiTaskJson::Generate => pb::AiTask::Generate,
            } as i32,
            input: a.input,
            labels: a.labels,
            fields: a.fields,
            prompt: a.prompt,
            model: a.model,
            max_tokens: a.max_tokens,
            connector: a.connector,
        }),
        KindJson::Slack(x) => Kind::Slack(pb::SlackStep { connector: x.connector, text: x.text }),
        KindJson::Email(e) => Kind::Email(pb::EmailStep {
            connector: e.connector,
            from: e.from,
            to: e.to,
            subject: e.subject,
            html: e.html,
            text: e.text,
        }),
        KindJson::Http(h) => Kind::Http(pb::HttpStep {
            method: match h.method {
                MethodJson::Get => pb::HttpMethod::Get,
                MethodJson::Post => pb::HttpMethod::Post,
                MethodJson::Put => pb::HttpMethod::Put,
                MethodJson::Patch => pb::HttpMethod::Patch,
                MethodJson::Delete => pb::HttpMethod::Delete,
            } as i32,
            url: h.url,
            headers: h
                .headers
                .into_iter()
                .map(|x| pb::HttpHeaderTemplate { name: x.name, value: x.value })
                .collect(),
            body: h.body,
            bearer_connector: h.bearer_connector,
        }),
        KindJson::Transform(t) => Kind::Transform(pb::TransformStep { template: t.template }),
        KindJson::Condition(c) => Kind::Condition(pb::ConditionStep {
            expression: c.expression,
            on_false: match c.on_false {
                OnFalseJson::Stop => pb::OnFalse::Stop,
                OnFalseJson::Jump => pb::OnFalse::Jump,
            } as i32,
            jump_to: c.jump_to,
        }),
        KindJson::Approval(a) => Kind::Approval(pb::ApprovalStep {
            message: a.message,
            expires_after_seconds: a.expires_after_seconds,
        }),
    };
    Ok(pb::Step {
        key: s.key,
        name: s.name,
        kind: Some(kind),
        requires_approval: s.requires_approval,
        timeout_ms: s.timeout_ms,
        retry: s.retry.map(|r| pb::RetryPolicy {
            max_attempts: r.max_attempts,
            initial_backoff_ms: r.initial_backoff_ms,
            max_backoff_ms: r.max_backoff_ms,
        }),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use proptest::prelude::*;

    use super::*;
    use crate::spec::{Limits, validate};

    fn text() -> impl Strategy<Value = String> {
        // Plain text (with quotes, backslashes, newlines and non-ASCII) and simple
        // references; nothing that could be a template syntax error.
        prop_oneof![
            "[a-zA-Z0-9 ,.!?\"'\\\n\tÄé€]{1,60}",
            Just("{{ trigger.body }}".to_owned()),
            Just("Hi {{ trigger.name | upper }}\n\"quoted\"".to_owned())
        ]
    }

    /// Inserts condition steps that stop or jump forward to an existing later step.
    fn with_conditions(mut spec: pb::PilotSpec, at: &[(usize, bool)]) -> pb::PilotSpec {
        for (n, (pos, jump)) in at.iter().enumerate() {
            let pos = (*pos).min(spec.steps.len());
            let target = spec.steps.get(pos).map(|s| s.key.clone());
            let (on_false, jump_to) = match (jump, target) {
                (true, Some(t)) => (pb::OnFalse::Jump, t),
                _ => (pb::OnFalse::Stop, String::new()),
            };
            spec.steps.insert(
                pos,
                pb::Step {
                    key: format!("cond_{n}"),
                    kind: Some(Kind::Condition(pb::ConditionStep {
                        expression: "trigger.ok == true".into(),
                        on_false: on_false as i32,
                        jump_to,
                    })),
                    ..Default::default()
                },
            );
        }
        spec
    }

    fn kind() -> impl Strategy<Value = (Kind, bool)> {
        prop_oneof![
            (
                0usize..4,
                text(),
                proptest::collection::btree_set("[a-z]{1,8}", 1..4),
                "[a-z-]{0,12}",
                0u32..4000
            )
                .prop_map(|(task, input, set, model, max_tokens)| {
                    let items: Vec<String> = set.into_iter().collect();
                    let (t, labels, fields) = match task {
                        0 => (pb::AiTask::Summarize, vec![], vec![]),
                        1 => (pb::AiTask::Classify, items, vec![]),
                        2 => (pb::AiTask::Extract, vec![], items),
                        _ => (pb::AiTask::Generate, vec![], vec![]),
                    };
                    let prompt = if t == pb::AiTask::Generate {
                        "Write about {{ trigger.topic }}".to_owned()
                    } else {
                        String::new()
                    };
                    (
                        Kind::Ai(pb::AiStep {
                            task: t as i32,
                            input,
                            labels,
                            fields,
                            prompt,
                            model,
                            max_tokens,
                            connector: String::new(),
                        }),
                        false,
                    )
                }),
            (text(), any::<bool>()).prop_map(|(t, approve)| (
                Kind::Slack(pb::SlackStep { connector: "slack".into(), text: t }),
                approve
            )),
            (text(), text(), any::<bool>()).prop_map(|(subject, body, approve)| (
                Kind::Email(pb::EmailStep {
                    connector: String::new(),
                    from: "ops@example.com".into(),
                    to: vec!["a@example.com".into(), "{{ trigger.email }}".into()],
                    subject,
                    html: String::new(),
                    text: body,
                }),
                approve
            )),
            (0i32..5, "[a-z]{1,10}", text()).prop_map(|(m, path, body)| {
                let method = [
                    pb::HttpMethod::Get,
                    pb::HttpMethod::Post,
                    pb::HttpMethod::Put,
                    pb::HttpMethod::Patch,
                    pb::HttpMethod::Delete,
                ][m as usize];
                (
                    Kind::Http(pb::HttpStep {
                        method: method as i32,
                        url: format!("https://api.example.com/{path}"),
                        headers: vec![pb::HttpHeaderTemplate {
                            name: "X-Trace".into(),
                            value: "{{ trigger.id }}".into(),
                        }],
                        body: if method == pb::HttpMethod::Get { String::new() } else { body },
                        bearer_connector: "api-token".into(),
                    }),
                    false,
                )
            }),
            text().prop_map(|t| (
                Kind::Transform(pb::TransformStep { template: format!("{{\"v\": \"{t}\"}}") }),
                false
            )),
            (text(), 0u32..100_000).prop_map(|(m, secs)| (
                Kind::Approval(pb::ApprovalStep { message: m, expires_after_seconds: secs }),
                false
            )),
        ]
    }

    fn spec() -> impl Strategy<Value = pb::PilotSpec> {
        (
            "[A-Za-z][A-Za-z0-9 ]{0,40}",
            "\\PC{0,200}",
            proptest::collection::vec(
                (kind(), proptest::option::of((1u32..10, 0u32..5000, 5000u32..60000)), 0u32..300_000),
                0..8,
            ),
            proptest::collection::vec((0usize..3, 0usize..3, any::<bool>()), 0..3),
        )
            .prop_map(|(title, description, steps, schedules)| pb::PilotSpec {
                title,
                description,
                steps: steps
                    .into_iter()
                    .enumerate()
                    .map(|(i, ((kind, approve), retry, timeout))| pb::Step {
                        key: format!("step_{i}"),
                        name: if i % 2 == 0 { format!("Step {i}") } else { String::new() },
                        requires_approval: approve
                            && !matches!(&kind, Kind::Http(h) if h.method() == pb::HttpMethod::Get),
                        kind: Some(kind),
                        timeout_ms: timeout,
                        retry: retry.map(|(a, i, m)| pb::RetryPolicy {
                            max_attempts: a,
                            initial_backoff_ms: i,
                            max_backoff_ms: m,
                        }),
                    })
                    .collect(),
                schedules: schedules
                    .into_iter()
                    .map(|(c, z, enabled)| pb::Schedule {
                        id: String::new(),
                        cron: ["0 9 * * 1-5", "*/15 * * * *", "30 2 1 * *"][c].into(),
                        timezone: ["UTC", "Europe/Berlin", "America/New_York"][z].into(),
                        enabled,
                    })
                    .collect(),
            })
    }

    proptest! {
        #[test]
        fn any_valid_pilot_survives_export_then_import(
            original in spec(),
            conditions in proptest::collection::vec((0usize..8, any::<bool>()), 0..3),
        ) {
            let mut original = with_conditions(original, &conditions);
            let limits = Limits { max_steps: 50, max_document_bytes: 256 * 1024 };
            prop_assume!(validate(&mut original, limits).is_ok());
            let json = to_json(&to_document(&original, Some("2026-11-27T00:00:00Z".into())).unwrap()).unwrap();
            let mut imported = parse(&json, json_envelope(limits.max_document_bytes)).unwrap();
            validate(&mut imported, limits).unwrap();
            // Schedule ids are per Pilot and not exported; everything else is equal.
            let strip = |mut s: pb::PilotSpec| { for x in &mut s.schedules { x.id.clear(); } s };
            prop_assert_eq!(strip(imported), strip(original));
        }

        #[test]
        fn the_importer_never_panics(json in "\\PC{0,400}") {
            let _ = parse(&json, 1 << 20);
        }
    }

    #[test]
    fn a_pilot_at_the_size_limit_still_imports() {
        let limits = Limits { max_steps: 50, max_document_bytes: 256 * 1024 };
        // ~250 KiB of content made of the characters JSON escapes most expensively.
        let chunk = "\"\\\n\t".repeat(600);
        let steps = (0..50)
            .map(|i| pb::Step {
                key: format!("s{i}"),
                kind: Some(Kind::Transform(pb::TransformStep {
                    template: format!("{{\"v\": {}}}", serde_json::to_string(&chunk).unwrap()),
                })),
                ..Default::default()
            })
            .collect();
        let mut spec = pb::PilotSpec { title: "Big".into(), steps, ..Default::default() };
        validate(&mut spec, limits).unwrap();
        assert!(prost::Message::encoded_len(&spec) > 200 * 1024);
        let json = to_json(&to_document(&spec, None).unwrap()).unwrap();
        assert!(json.len() > limits.max_document_bytes, "JSON is bigger than the content");
        let mut back = parse(&json, json_envelope(limits.max_document_bytes)).unwrap();
        validate(&mut back, limits).unwrap();
        assert_eq!(back, spec);
    }

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
        let e = parse("{}", 10).unwrap_err();
        assert!(e.message().contains("not a bizops.pilot/v1 document"), "{}", e.message());
        let e = parse(&"x".repeat(11), 10).unwrap_err();
        assert_eq!(e.code(), ErrorCode::PayloadTooLarge);
    }

    #[test]
    fn the_json_schema_matches_the_format() {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../../docs/pilot-export.schema.json")).unwrap();
        assert_eq!(schema["properties"]["format"]["const"], FORMAT);
        let kinds = schema["$defs"]["step"]["properties"]["kind"]["enum"].as_array().unwrap().clone();
        for k in ["ai", "slack", "email", "http", "transform", "condition", "approval"] {
            assert!(kinds.contains(&serde_json::Value::String(k.into())), "{k}");
        }
    }
}
