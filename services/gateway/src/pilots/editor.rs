//! The Pilot editor's form: a Pilot spec as flat form fields
//! (`steps[0].key`, `steps[0].slack.text`, `schedules[1].cron`, …), the
//! editing actions that work without JavaScript (add, remove and reorder steps
//! and schedules), and the placement of the catalog's validation errors beside
//! the field they name (`bizops_errors::Error::field`).

use std::collections::{BTreeMap, HashSet};

use bizops_pilot_spec::{PilotSpec, RetryPolicy, Schedule, Step, StepKind};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// Most steps the editor builds (the catalog enforces its own limit too).
const MAX_STEPS: usize = 100;
/// Most schedules the editor builds.
const MAX_SCHEDULES: usize = 50;

/// Step kinds (`bizops_pilot_spec::KINDS`), with their labels, in the order the
/// editor offers them.
pub const KINDS: &[(&str, &str)] = &[
    ("ai", "AI"),
    ("slack", "Slack message"),
    ("email", "Email"),
    ("http", "HTTP request"),
    ("transform", "Transform"),
    ("condition", "Condition"),
    ("approval", "Approval"),
];

/// How a form value maps to the step's JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A string, trimmed or as typed.
    Text { trim: bool },
    /// A whole number; empty is 0.
    Number,
    /// One of the select's options; anything else is `default`.
    Choice { default: &'static str },
    /// A list of strings, one per non-empty line.
    Lines,
    /// HTTP headers, one `Name: value` per line.
    Headers,
    /// A checkbox.
    Flag,
}

/// One input of a step's form.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FieldDef {
    /// Name under the step, e.g. `slack.text`: `<kind>.<config field>`, or a
    /// field of the step itself (`key`, `retry.max_attempts`).
    pub name: &'static str,
    /// Label.
    pub label: &'static str,
    /// `text`, `textarea`, `number`, `select:<options>` or `checkbox`.
    pub input: &'static str,
    /// Help text.
    pub help: &'static str,
    #[serde(skip)]
    shape: Shape,
}

const TRIM: Shape = Shape::Text { trim: true };
const AS_TYPED: Shape = Shape::Text { trim: false };

const fn f(
    name: &'static str,
    label: &'static str,
    input: &'static str,
    shape: Shape,
    help: &'static str,
) -> FieldDef {
    FieldDef { name, label, input, help, shape }
}

const AI_FIELDS: &[FieldDef] = &[
    f(
        "ai.task",
        "Task",
        "select:summarize,classify,extract,generate",
        Shape::Choice { default: "summarize" },
        "",
    ),
    f("ai.input", "Input", "textarea", AS_TYPED, "Template of the text to work on, e.g. {{ trigger.body }}"),
    f("ai.labels", "Labels (classify)", "textarea", Shape::Lines, "One per line"),
    f("ai.fields", "Fields (extract)", "textarea", Shape::Lines, "One field name per line"),
    f("ai.prompt", "Prompt", "textarea", AS_TYPED, "Required for generate; an extra instruction otherwise"),
    f("ai.model", "Model", "text", TRIM, "Empty: the server's default"),
    f("ai.max_tokens", "Max output tokens", "number", Shape::Number, "0: the server's default"),
    f("ai.connector", "Anthropic connector", "text", TRIM, "Empty: anthropic"),
];
const SLACK_FIELDS: &[FieldDef] = &[
    f("slack.connector", "Slack connector", "text", TRIM, "Empty: slack"),
    f("slack.text", "Message", "textarea", AS_TYPED, "Template, e.g. New order: {{ trigger.id }}"),
];
const EMAIL_FIELDS: &[FieldDef] = &[
    f("email.connector", "Resend connector", "text", TRIM, "Empty: resend"),
    f("email.from", "From", "text", AS_TYPED, "e.g. Acme <ops@acme.test>"),
    f("email.to", "To", "textarea", Shape::Lines, "One recipient per line"),
    f("email.subject", "Subject", "text", AS_TYPED, ""),
    f("email.text", "Text body", "textarea", AS_TYPED, ""),
    f("email.html", "HTML body", "textarea", AS_TYPED, ""),
];
const HTTP_FIELDS: &[FieldDef] = &[
    f("http.method", "Method", "select:GET,POST,PUT,PATCH,DELETE", Shape::Choice { default: "POST" }, ""),
    f("http.url", "URL", "text", TRIM, "http:// or https://"),
    f("http.headers", "Headers", "textarea", Shape::Headers, "One per line: Name: value"),
    f("http.body", "JSON body", "textarea", AS_TYPED, "Template; empty: no body"),
    f("http.bearer_connector", "Bearer token connector", "text", TRIM, "Empty: none"),
];
const TRANSFORM_FIELDS: &[FieldDef] =
    &[f("transform.template", "Template", "textarea", AS_TYPED, "Renders a JSON document")];
const CONDITION_FIELDS: &[FieldDef] = &[
    f("condition.expression", "Expression", "text", AS_TYPED, "e.g. steps.classify.output.label == 'urgent'"),
    f("condition.on_false", "When false", "select:stop,jump", Shape::Choice { default: "stop" }, ""),
    f("condition.jump_to", "Jump to step", "text", TRIM, "Key of a later step (when false: jump)"),
];
const APPROVAL_FIELDS: &[FieldDef] = &[
    f("approval.message", "Question for the approver", "textarea", AS_TYPED, ""),
    f("approval.expires_after_seconds", "Expires after (seconds)", "number", Shape::Number, "0: 72 hours"),
];

/// The kind-specific fields of each kind.
pub fn kind_fields(kind: &str) -> &'static [FieldDef] {
    match kind {
        "ai" => AI_FIELDS,
        "slack" => SLACK_FIELDS,
        "email" => EMAIL_FIELDS,
        "http" => HTTP_FIELDS,
        "transform" => TRANSFORM_FIELDS,
        "condition" => CONDITION_FIELDS,
        "approval" => APPROVAL_FIELDS,
        _ => &[],
    }
}

/// Fields every step has.
pub const COMMON_FIELDS: &[FieldDef] = &[
    f("key", "Key", "text", TRIM, "Lower-case letters, digits and _; later steps read steps.<key>.output"),
    f("name", "Name", "text", TRIM, "Optional"),
    f(
        "requires_approval",
        "Ask for approval before this step",
        "checkbox",
        Shape::Flag,
        "Slack, email and non-GET HTTP steps",
    ),
    f("timeout_ms", "Timeout (ms)", "number", Shape::Number, "0: the server's default"),
    f("retry.max_attempts", "Attempts", "number", Shape::Number, "0: the server's default"),
    f("retry.initial_backoff_ms", "First backoff (ms)", "number", Shape::Number, ""),
    f("retry.max_backoff_ms", "Longest backoff (ms)", "number", Shape::Number, ""),
];

/// Where a field's value lives in the step's JSON: `slack.text` → `config.text`,
/// `retry.max_attempts` → `retry.max_attempts`, `key` → `key`.
fn json_path<'a>(kind: &str, name: &'a str) -> (Option<&'a str>, &'a str) {
    match name.split_once('.') {
        Some((head, field)) if head == kind => (Some("config"), field),
        Some((head, field)) => (Some(head), field),
        None => (None, name),
    }
}

/// One step as form values.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StepForm {
    /// The kind.
    pub kind: String,
    /// Values by field name (`key`, `slack.text`, …).
    pub values: BTreeMap<String, String>,
}

/// One schedule as form values.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ScheduleForm {
    /// Id (empty for a new one).
    pub id: String,
    /// Cron expression.
    pub cron: String,
    /// Time zone.
    pub timezone: String,
    /// Enabled.
    pub enabled: bool,
}

/// The whole editor.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EditorForm {
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// The execution limit in seconds, as typed (empty: the server's default).
    pub max_execution_seconds: String,
    /// For a new Pilot: starts enabled.
    pub enabled: bool,
    /// The version being edited (0 for a new Pilot).
    pub expected_version: i64,
    /// Steps in order.
    pub steps: Vec<StepForm>,
    /// Schedules.
    pub schedules: Vec<ScheduleForm>,
}

/// What the submit button asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Save the Pilot.
    Save,
    /// Append a step of this kind.
    AddStep(String),
    /// Remove step i.
    RemoveStep(usize),
    /// Move step i up.
    StepUp(usize),
    /// Move step i down.
    StepDown(usize),
    /// Append a schedule.
    AddSchedule,
    /// Remove schedule i.
    RemoveSchedule(usize),
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

/// Parses `steps[3].slack.text` → (3, "slack.text"); the same for `schedules[...]`.
fn indexed<'a>(name: &'a str, prefix: &str) -> Option<(usize, &'a str)> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('[')?;
    let (index, rest) = rest.split_once(']')?;
    let field = rest.strip_prefix('.')?;
    Some((index.parse().ok()?, field))
}

impl EditorForm {
    /// The form of an existing spec.
    pub fn from_spec(spec: &PilotSpec, version: i64, enabled: bool) -> Self {
        Self {
            title: spec.title.clone(),
            description: spec.description.clone(),
            max_execution_seconds: match spec.max_execution_seconds {
                0 => String::new(),
                s => s.to_string(),
            },
            enabled,
            expected_version: version,
            steps: spec.steps.iter().map(StepForm::from_step).collect(),
            schedules: spec
                .schedules
                .iter()
                .map(|s| ScheduleForm {
                    id: s.id.clone(),
                    cron: s.cron.clone(),
                    timezone: s.timezone.clone(),
                    enabled: s.enabled,
                })
                .collect(),
        }
    }

    /// Reads a submitted form (field order does not matter) and its action.
    pub fn from_pairs(pairs: &[(String, String)]) -> (Self, Action) {
        let mut form = EditorForm::default();
        let mut steps: BTreeMap<usize, StepForm> = BTreeMap::new();
        let mut schedules: BTreeMap<usize, ScheduleForm> = BTreeMap::new();
        let mut action = Action::Save;
        let mut new_kind = String::new();
        for (name, value) in pairs {
            match name.as_str() {
                "title" => form.title = value.clone(),
                "description" => form.description = value.clone(),
                "max_execution_seconds" => form.max_execution_seconds = value.clone(),
                "enabled" => form.enabled = value == "on" || value == "true",
                "expected_version" => form.expected_version = value.trim().parse().unwrap_or(0),
                "new_step_kind" => new_kind = value.clone(),
                "action" => action = parse_action(value),
                _ => {
                    if let Some((i, field)) = indexed(name, "steps").filter(|(i, _)| *i < MAX_STEPS) {
                        let step = steps.entry(i).or_default();
                        if field == "kind" {
                            step.kind = value.clone();
                        } else {
                            step.values.insert(field.to_owned(), value.clone());
                        }
                    } else if let Some((i, field)) =
                        indexed(name, "schedules").filter(|(i, _)| *i < MAX_SCHEDULES)
                    {
                        let s = schedules.entry(i).or_default();
                        match field {
                            "id" => s.id = value.clone(),
                            "cron" => s.cron = value.clone(),
                            "timezone" => s.timezone = value.clone(),
                            "enabled" => s.enabled = value == "on" || value == "true",
                            _ => {}
                        }
                    }
                }
            }
        }
        form.steps = steps.into_values().collect();
        form.schedules = schedules.into_values().collect();
        if let Action::AddStep(kind) = &mut action {
            *kind = new_kind;
        }
        (form, action)
    }

    /// Applies an editing action; `false` when it does not apply (bad index or kind).
    pub fn apply(&mut self, action: &Action) -> bool {
        match action {
            Action::Save => false,
            Action::AddStep(kind) => {
                if StepKind::empty(kind).is_none() || self.steps.len() >= MAX_STEPS {
                    return false;
                }
                let mut step = StepForm { kind: kind.clone(), values: BTreeMap::new() };
                step.values.insert("key".into(), self.fresh_key(kind));
                if let Some(k) = StepKind::empty(kind) {
                    let defaults = StepForm::from_step(&Step {
                        key: String::new(),
                        name: String::new(),
                        kind: k,
                        requires_approval: false,
                        timeout_ms: 0,
                        retry: None,
                    });
                    for (name, value) in defaults.values {
                        step.values.entry(name).or_insert(value);
                    }
                }
                self.steps.push(step);
                true
            }
            Action::RemoveStep(i) if *i < self.steps.len() => {
                self.steps.remove(*i);
                true
            }
            Action::StepUp(i) if *i > 0 && *i < self.steps.len() => {
                self.steps.swap(*i, i - 1);
                true
            }
            Action::StepDown(i) if i + 1 < self.steps.len() => {
                self.steps.swap(*i, i + 1);
                true
            }
            Action::AddSchedule if self.schedules.len() < MAX_SCHEDULES => {
                self.schedules.push(ScheduleForm {
                    id: String::new(),
                    cron: "0 9 * * 1-5".into(),
                    timezone: "UTC".into(),
                    enabled: true,
                });
                true
            }
            Action::RemoveSchedule(i) if *i < self.schedules.len() => {
                self.schedules.remove(*i);
                true
            }
            _ => false,
        }
    }

    fn fresh_key(&self, kind: &str) -> String {
        let taken: HashSet<&str> =
            self.steps.iter().filter_map(|s| s.values.get("key").map(String::as_str)).collect();
        (1..)
            .map(|n| if n == 1 { kind.to_owned() } else { format!("{kind}_{n}") })
            .find(|k| !taken.contains(k.as_str()))
            .unwrap_or_else(|| kind.to_owned())
    }

    /// The spec, or the form fields that are not numbers where numbers belong.
    pub fn to_spec(&self) -> Result<PilotSpec, BTreeMap<String, String>> {
        let mut errors = BTreeMap::new();
        let mut steps = Vec::with_capacity(self.steps.len());
        for (i, step) in self.steps.iter().enumerate() {
            match step.to_step() {
                Ok(s) => steps.push(s),
                Err((field, problem)) => {
                    errors.insert(format!("steps[{i}].{field}"), problem.to_owned());
                }
            }
        }
        let limit = self.max_execution_seconds.trim();
        let max_execution_seconds = if limit.is_empty() {
            0
        } else {
            limit.parse::<u32>().unwrap_or_else(|_| {
                errors.insert("max_execution_seconds".into(), "must be a whole number of seconds".into());
                0
            })
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(PilotSpec {
            title: self.title.clone(),
            description: self.description.clone(),
            steps,
            schedules: self
                .schedules
                .iter()
                .map(|s| Schedule {
                    id: s.id.trim().to_owned(),
                    cron: s.cron.clone(),
                    timezone: s.timezone.clone(),
                    enabled: s.enabled,
                })
                .collect(),
            max_execution_seconds,
        })
    }

    /// Every field name the form renders (for placing errors).
    pub fn field_names(&self) -> HashSet<String> {
        let mut names: HashSet<String> =
            ["title", "description", "max_execution_seconds"].into_iter().map(str::to_owned).collect();
        for (i, step) in self.steps.iter().enumerate() {
            names.insert(format!("steps[{i}]"));
            for def in COMMON_FIELDS.iter().chain(kind_fields(&step.kind)) {
                names.insert(format!("steps[{i}].{}", def.name));
            }
        }
        for i in 0..self.schedules.len() {
            names.insert(format!("schedules[{i}]"));
            for field in ["cron", "timezone", "enabled"] {
                names.insert(format!("schedules[{i}].{field}"));
            }
        }
        names
    }
}

fn parse_action(value: &str) -> Action {
    let index = |rest: &str| rest.parse::<usize>().ok();
    match value.split_once(':') {
        None if value == "add_step" => Action::AddStep(String::new()),
        None if value == "add_schedule" => Action::AddSchedule,
        Some(("remove_step", i)) => index(i).map_or(Action::Save, Action::RemoveStep),
        Some(("up", i)) => index(i).map_or(Action::Save, Action::StepUp),
        Some(("down", i)) => index(i).map_or(Action::Save, Action::StepDown),
        Some(("remove_schedule", i)) => index(i).map_or(Action::Save, Action::RemoveSchedule),
        _ => Action::Save,
    }
}

impl StepForm {
    /// The form values of a step.
    pub fn from_step(step: &Step) -> Self {
        let kind = step.kind.name();
        let json = serde_json::to_value(step).unwrap_or(Value::Null);
        let mut values = BTreeMap::new();
        for def in COMMON_FIELDS.iter().chain(kind_fields(kind)) {
            let value = match json_path(kind, def.name) {
                (Some(parent), field) => &json[parent][field],
                (None, field) => &json[field],
            };
            if let Some(text) = form_value(def.shape, value) {
                values.insert(def.name.to_owned(), text);
            }
        }
        Self { kind: kind.to_owned(), values }
    }

    fn get(&self, name: &str) -> String {
        self.values.get(name).cloned().unwrap_or_default()
    }

    /// The step; `Err((field, problem))` for a field that is not a number or an
    /// unknown kind.
    pub fn to_step(&self) -> Result<Step, (&'static str, &'static str)> {
        let Some(kind) = bizops_pilot_spec::KINDS.iter().copied().find(|k| *k == self.kind) else {
            return Err(("kind", "is not a step kind"));
        };
        let mut step = Map::new();
        let mut config = Map::new();
        let mut retry = Map::new();
        for def in COMMON_FIELDS.iter().chain(kind_fields(kind)) {
            let value = json_value(def, &self.get(def.name))?;
            match json_path(kind, def.name) {
                (Some("config"), field) => config.insert(field.to_owned(), value),
                (Some(_), field) => retry.insert(field.to_owned(), value),
                (None, field) => step.insert(field.to_owned(), value),
            };
        }
        // A jump target only counts when the condition jumps.
        if kind == "condition" && config.get("on_false") != Some(&json!("jump")) {
            config.insert("jump_to".into(), json!(""));
        }
        step.insert("kind".into(), json!(kind));
        step.insert("config".into(), Value::Object(config));
        let mut step: Step =
            serde_json::from_value(Value::Object(step)).map_err(|_| ("kind", "could not be read"))?;
        let retry: RetryPolicy = serde_json::from_value(Value::Object(retry)).unwrap_or_default();
        step.retry = (retry != RetryPolicy::default()).then_some(retry);
        Ok(step)
    }
}

/// The form text of a JSON value (`None`: leave the input empty).
fn form_value(shape: Shape, value: &Value) -> Option<String> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().into_iter().flatten().filter_map(|x| x.as_str().map(str::to_owned)).collect()
    };
    match shape {
        Shape::Text { .. } => Some(value.as_str().unwrap_or_default().to_owned()),
        Shape::Number => Some(value.as_u64().filter(|n| *n != 0).map(|n| n.to_string()).unwrap_or_default()),
        Shape::Choice { default } => Some(value.as_str().unwrap_or(default).to_owned()),
        Shape::Lines => Some(strings(value).join("\n")),
        Shape::Headers => Some(
            value
                .as_array()
                .into_iter()
                .flatten()
                .map(|h| {
                    format!(
                        "{}: {}",
                        h["name"].as_str().unwrap_or_default(),
                        h["value"].as_str().unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        Shape::Flag => value.as_bool().filter(|on| *on).map(|_| "on".to_owned()),
    }
}

/// The JSON value of a form text.
fn json_value(def: &FieldDef, text: &str) -> Result<Value, (&'static str, &'static str)> {
    Ok(match def.shape {
        Shape::Text { trim: true } => json!(text.trim()),
        Shape::Text { trim: false } => json!(text),
        Shape::Number => {
            let text = text.trim();
            if text.is_empty() {
                json!(0)
            } else {
                json!(text.parse::<u32>().map_err(|_| (def.name, "must be a whole number"))?)
            }
        }
        Shape::Choice { default } => {
            let options = def.input.strip_prefix("select:").unwrap_or_default();
            json!(if options.split(',').any(|o| o == text) { text } else { default })
        }
        Shape::Lines => json!(lines(text)),
        Shape::Headers => Value::Array(
            lines(text)
                .into_iter()
                .map(|l| match l.split_once(':') {
                    Some((n, v)) => json!({ "name": n.trim(), "value": v.trim() }),
                    None => json!({ "name": l, "value": "" }),
                })
                .collect(),
        ),
        Shape::Flag => json!(text == "on" || text == "true"),
    })
}

/// The rendered field an error path belongs to: the path itself, else its
/// nearest enclosing field (`steps[3].email.to[0]` → `steps[3].email.to`, then
/// `steps[3]`), else `None` (shown at the top of the form).
pub fn place(path: &str, fields: &HashSet<String>) -> Option<String> {
    let mut current = path.to_owned();
    loop {
        if fields.contains(&current) {
            return Some(current);
        }
        let cut = current.rfind(['.', '['])?;
        current.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
    }

    #[test]
    fn a_submitted_form_becomes_a_spec() {
        let (form, action) = EditorForm::from_pairs(&pairs(&[
            ("title", "Orders"),
            ("steps[1].kind", "approval"),
            ("steps[1].key", "ok"),
            ("steps[1].approval.message", "Post it?"),
            ("steps[0].kind", "slack"),
            ("steps[0].key", "notify"),
            ("steps[0].slack.text", "New order {{ trigger.id }}"),
            ("steps[0].requires_approval", "on"),
            ("steps[0].retry.max_attempts", "3"),
            ("schedules[0].cron", "0 9 * * *"),
            ("schedules[0].timezone", "UTC"),
            ("schedules[0].enabled", "on"),
            ("action", "save"),
        ]));
        assert_eq!(action, Action::Save);
        let spec = form.to_spec().unwrap();
        assert_eq!(spec.steps.len(), 2);
        assert_eq!(spec.steps[0].key, "notify");
        assert!(spec.steps[0].requires_approval);
        assert_eq!(spec.steps[0].retry.as_ref().unwrap().max_attempts, 3);
        assert!(matches!(&spec.steps[1].kind, StepKind::Approval(a) if a.message == "Post it?"));
        assert!(spec.schedules[0].enabled);
        // And back: the form of the spec round-trips.
        let again = EditorForm::from_spec(&spec, 1, true);
        assert_eq!(again.to_spec().unwrap(), spec);
    }

    #[test]
    fn actions_add_remove_and_reorder() {
        let (mut form, action) =
            EditorForm::from_pairs(&pairs(&[("action", "add_step"), ("new_step_kind", "slack")]));
        assert!(form.apply(&action));
        assert!(form.apply(&Action::AddStep("approval".into())));
        assert!(form.apply(&Action::AddStep("slack".into())));
        let keys: Vec<_> = form.steps.iter().map(|s| s.values["key"].clone()).collect();
        assert_eq!(keys, ["slack", "approval", "slack_2"]);
        assert!(form.apply(&Action::StepUp(1)));
        assert_eq!(form.steps[0].kind, "approval");
        assert!(form.apply(&Action::StepDown(0)));
        assert_eq!(form.steps[1].kind, "approval");
        assert!(!form.apply(&Action::StepDown(2)), "the last step cannot move down");
        assert!(form.apply(&Action::RemoveStep(0)));
        assert_eq!(form.steps.len(), 2);
        assert!(!form.apply(&Action::AddStep("teleport".into())));
        assert_eq!(parse_action("remove_schedule:2"), Action::RemoveSchedule(2));
        assert_eq!(parse_action("up:x"), Action::Save);
    }

    #[test]
    fn non_numbers_are_named() {
        let (form, _) = EditorForm::from_pairs(&pairs(&[
            ("steps[0].kind", "slack"),
            ("steps[0].key", "a"),
            ("steps[0].timeout_ms", "soon"),
        ]));
        let errors = form.to_spec().unwrap_err();
        assert!(errors.contains_key("steps[0].timeout_ms"));
    }

    #[test]
    fn error_fields_land_beside_their_input() {
        let (form, _) =
            EditorForm::from_pairs(&pairs(&[("steps[0].kind", "email"), ("steps[0].key", "mail")]));
        let fields = form.field_names();
        assert_eq!(place("steps[0].email.to[1]", &fields).as_deref(), Some("steps[0].email.to"));
        assert_eq!(place("steps[0].email", &fields).as_deref(), Some("steps[0]"));
        assert_eq!(place("title", &fields).as_deref(), Some("title"));
        assert_eq!(place("schedules[3].cron", &fields), None, "no such schedule: shown at the top");
    }

    #[test]
    fn the_editor_has_an_input_for_every_field_of_every_kind() {
        use bizops_pilot_spec::{
            AiConfig, ApprovalConfig, ConditionConfig, EmailConfig, HttpConfig, SlackConfig, TransformConfig,
        };
        use utoipa::PartialSchema;

        fn fields<T: PartialSchema>() -> Vec<String> {
            let schema = serde_json::to_value(T::schema()).unwrap();
            let mut names: Vec<String> = schema["properties"].as_object().unwrap().keys().cloned().collect();
            names.sort();
            names
        }
        let offered: Vec<&str> = KINDS.iter().map(|(k, _)| *k).collect();
        assert_eq!(offered, bizops_pilot_spec::KINDS, "the editor offers every kind");
        for kind in bizops_pilot_spec::KINDS {
            let schema = match kind {
                "ai" => fields::<AiConfig>(),
                "slack" => fields::<SlackConfig>(),
                "email" => fields::<EmailConfig>(),
                "http" => fields::<HttpConfig>(),
                "transform" => fields::<TransformConfig>(),
                "condition" => fields::<ConditionConfig>(),
                _ => fields::<ApprovalConfig>(),
            };
            let mut inputs: Vec<String> = kind_fields(kind)
                .iter()
                .map(|d| d.name.strip_prefix(&format!("{kind}.")).unwrap().to_owned())
                .collect();
            inputs.sort();
            assert_eq!(inputs, schema, "the {kind} form edits exactly the {kind} configuration");
        }
        let mut common: Vec<String> = COMMON_FIELDS.iter().map(|d| d.name.to_owned()).collect();
        common.sort();
        let mut expected: Vec<String> = ["key", "name", "requires_approval", "timeout_ms"]
            .into_iter()
            .map(str::to_owned)
            .chain(fields::<RetryPolicy>().into_iter().map(|f| format!("retry.{f}")))
            .collect();
        expected.sort();
        assert_eq!(common, expected);
    }

    #[test]
    fn every_kind_round_trips_through_the_form() {
        let json = serde_json::json!([
            {"key": "a", "kind": "ai", "config": {"task": "extract", "input": " {{ trigger.body }}", "fields": ["name", "email"],
             "model": "m", "max_tokens": 10, "connector": "anthropic"}},
            {"key": "n", "name": "Notify", "kind": "slack", "config": {"text": "hi ", "connector": "team-slack"},
             "requires_approval": true, "timeout_ms": 5000, "retry": {"max_attempts": 3, "initial_backoff_ms": 100, "max_backoff_ms": 1000}},
            {"key": "h", "kind": "http", "config": {"method": "GET", "url": "https://x.test", "headers": [{"name": "A", "value": "b: c"}],
             "bearer_connector": "tok"}},
            {"key": "c", "kind": "condition", "config": {"expression": "true", "on_false": "jump", "jump_to": "z"}},
            {"key": "d", "kind": "condition", "config": {"expression": "true", "on_false": "stop"}},
            {"key": "e", "kind": "email", "config": {"from": "a@b.test", "to": ["c@d.test", "e@f.test"], "subject": "s", "text": "t", "html": "<p>h</p>"}},
            {"key": "t", "kind": "transform", "config": {"template": "{}"}},
            {"key": "z", "kind": "approval", "config": {"message": "ok?", "expires_after_seconds": 60}}
        ]);
        let steps: Vec<Step> = serde_json::from_value(json).unwrap();
        for step in steps {
            assert_eq!(StepForm::from_step(&step).to_step().unwrap(), step);
        }
    }
}
