//! The export format `bizops.pilot/v1` is defined once, in
//! `bizops_pilot_spec::export` (re-exported here for the RPC edge and the fuzz
//! target). The properties below tie it to this service's validation: every Pilot
//! the catalog accepts survives export then import unchanged.

pub use bizops_pilot_spec::export::{Document, FORMAT, json_envelope, parse, to_document, to_json};

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use proptest::prelude::*;

    use bizops_proto::catalog::v1::{self as pb, step::Kind};

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
            prop_oneof![Just(0u32), 60u32..=86_400],
        )
            .prop_map(|(title, description, steps, schedules, max_execution_seconds)| {
                pb::PilotSpec {
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
                    max_execution_seconds,
                }
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
}
