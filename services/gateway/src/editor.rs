//! The Pilot editor's form: a Pilot spec as flat form fields
//! (`steps[0].key`, `steps[0].slack.text`, `schedules[1].cron`, …), the
//! editing actions that work without JavaScript (add, remove and reorder steps
//! and schedules), and the placement of the catalog's validation messages beside
//! the field they name.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use crate::model::{
    AiConfig, AiTask, ApprovalConfig, ConditionConfig, EmailConfig, HttpConfig, HttpHeader, HttpMethod,
    OnFalse, PilotSpec, RetryPolicy, Schedule, SlackConfig, Step, StepKind, TransformConfig,
};

/// Most steps the editor builds (the catalog enforces its own limit too).
const MAX_STEPS: usize = 100;
/// Most schedules the editor builds.
const MAX_SCHEDULES: usize = 50;

/// Step kinds, in the order the editor offers them.
pub const KINDS: &[(&str, &str)] = &[
    ("ai", "AI"),
    ("slack", "Slack message"),
    ("email", "Email"),
    ("http", "HTTP request"),
    ("transform", "Transform"),
    ("condition", "Condition"),
    ("approval", "Approval"),
];

/// One input of a step's form.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FieldDef {
    /// Name under the step, e.g. `slack.text`.
    pub name: &'static str,
    /// Label.
    pub label: &'static str,
    /// `text`, `textarea`, `number`, `select:<options>` or `checkbox`.
    pub input: &'static str,
    /// Help text.
    pub help: &'static str,
}

const fn f(name: &'static str, label: &'static str, input: &'static str, help: &'static str) -> FieldDef {
    FieldDef { name, label, input, help }
}

const AI_FIELDS: &[FieldDef] = &[
    f("ai.task", "Task", "select:summarize,classify,extract,generate", ""),
    f("ai.input", "Input", "textarea", "Template of the text to work on, e.g. {{ trigger.body }}"),
    f("ai.labels", "Labels (classify)", "textarea", "One per line"),
    f("ai.fields", "Fields (extract)", "textarea", "One field name per line"),
    f("ai.prompt", "Prompt", "textarea", "Required for generate; an extra instruction otherwise"),
    f("ai.model", "Model", "text", "Empty: the server's default"),
    f("ai.max_tokens", "Max output tokens", "number", "0: the server's default"),
    f("ai.connector", "Anthropic connector", "text", "Empty: anthropic"),
];
const SLACK_FIELDS: &[FieldDef] = &[
    f("slack.connector", "Slack connector", "text", "Empty: slack"),
    f("slack.text", "Message", "textarea", "Template, e.g. New order: {{ trigger.id }}"),
];
const EMAIL_FIELDS: &[FieldDef] = &[
    f("email.connector", "Resend connector", "text", "Empty: resend"),
    f("email.from", "From", "text", "e.g. Acme <ops@acme.test>"),
    f("email.to", "To", "textarea", "One recipient per line"),
    f("email.subject", "Subject", "text", ""),
    f("email.text", "Text body", "textarea", ""),
    f("email.html", "HTML body", "textarea", ""),
];
const HTTP_FIELDS: &[FieldDef] = &[
    f("http.method", "Method", "select:GET,POST,PUT,PATCH,DELETE", ""),
    f("http.url", "URL", "text", "http:// or https://"),
    f("http.headers", "Headers", "textarea", "One per line: Name: value"),
    f("http.body", "JSON body", "textarea", "Template; empty: no body"),
    f("http.bearer_connector", "Bearer token connector", "text", "Empty: none"),
];
const TRANSFORM_FIELDS: &[FieldDef] =
    &[f("transform.template", "Template", "textarea", "Renders a JSON document")];
const CONDITION_FIELDS: &[FieldDef] = &[
    f("condition.expression", "Expression", "text", "e.g. steps.classify.output.label == 'urgent'"),
    f("condition.on_false", "When false", "select:stop,jump", ""),
    f("condition.jump_to", "Jump to step", "text", "Key of a later step (when false: jump)"),
];
const APPROVAL_FIELDS: &[FieldDef] = &[
    f("approval.message", "Question for the approver", "textarea", ""),
    f("approval.expires_after_seconds", "Expires after (seconds)", "number", "0: 72 hours"),
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
    f("key", "Key", "text", "Lower-case letters, digits and _; later steps read steps.<key>.output"),
    f("name", "Name", "text", "Optional"),
    f(
        "requires_approval",
        "Ask for approval before this step",
        "checkbox",
        "Slack, email and non-GET HTTP steps",
    ),
    f("timeout_ms", "Timeout (ms)", "number", "0: the server's default"),
    f("retry.max_attempts", "Attempts", "number", "0: the server's default"),
    f("retry.initial_backoff_ms", "First backoff (ms)", "number", ""),
    f("retry.max_backoff_ms", "Longest backoff (ms)", "number", ""),
];

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
        })
    }

    /// Every field name the form renders (for placing errors).
    pub fn field_names(&self) -> HashSet<String> {
        let mut names: HashSet<String> = ["title", "description"].into_iter().map(str::to_owned).collect();
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
        let mut v = BTreeMap::new();
        let mut put = |k: &str, val: String| {
            v.insert(k.to_owned(), val);
        };
        put("key", step.key.clone());
        put("name", step.name.clone());
        if step.requires_approval {
            put("requires_approval", "on".into());
        }
        let num = |n: u32| if n == 0 { String::new() } else { n.to_string() };
        put("timeout_ms", num(step.timeout_ms));
        if let Some(r) = &step.retry {
            put("retry.max_attempts", num(r.max_attempts));
            put("retry.initial_backoff_ms", num(r.initial_backoff_ms));
            put("retry.max_backoff_ms", num(r.max_backoff_ms));
        }
        match &step.kind {
            StepKind::Ai(a) => {
                let task = match a.task {
                    Some(AiTask::Summarize) | None => "summarize",
                    Some(AiTask::Classify) => "classify",
                    Some(AiTask::Extract) => "extract",
                    Some(AiTask::Generate) => "generate",
                };
                put("ai.task", task.into());
                put("ai.input", a.input.clone());
                put("ai.labels", a.labels.join("\n"));
                put("ai.fields", a.fields.join("\n"));
                put("ai.prompt", a.prompt.clone());
                put("ai.model", a.model.clone());
                put("ai.max_tokens", num(a.max_tokens));
                put("ai.connector", a.connector.clone());
            }
            StepKind::Slack(s) => {
                put("slack.connector", s.connector.clone());
                put("slack.text", s.text.clone());
            }
            StepKind::Email(e) => {
                put("email.connector", e.connector.clone());
                put("email.from", e.from.clone());
                put("email.to", e.to.join("\n"));
                put("email.subject", e.subject.clone());
                put("email.text", e.text.clone());
                put("email.html", e.html.clone());
            }
            StepKind::Http(h) => {
                let method = match h.method {
                    Some(HttpMethod::Get) => "GET",
                    Some(HttpMethod::Post) | None => "POST",
                    Some(HttpMethod::Put) => "PUT",
                    Some(HttpMethod::Patch) => "PATCH",
                    Some(HttpMethod::Delete) => "DELETE",
                };
                put("http.method", method.into());
                put("http.url", h.url.clone());
                put(
                    "http.headers",
                    h.headers
                        .iter()
                        .map(|h| format!("{}: {}", h.name, h.value))
                        .collect::<Vec<_>>()
                        .join("\n"),
                );
                put("http.body", h.body.clone());
                put("http.bearer_connector", h.bearer_connector.clone());
            }
            StepKind::Transform(t) => put("transform.template", t.template.clone()),
            StepKind::Condition(c) => {
                put("condition.expression", c.expression.clone());
                put(
                    "condition.on_false",
                    if c.on_false == Some(OnFalse::Jump) { "jump" } else { "stop" }.into(),
                );
                put("condition.jump_to", c.jump_to.clone());
            }
            StepKind::Approval(a) => {
                put("approval.message", a.message.clone());
                put("approval.expires_after_seconds", num(a.expires_after_seconds));
            }
        }
        Self { kind: step.kind.name().to_owned(), values: v }
    }

    fn get(&self, name: &str) -> String {
        self.values.get(name).cloned().unwrap_or_default()
    }

    fn number(&self, name: &'static str) -> Result<u32, (&'static str, &'static str)> {
        let text = self.get(name);
        let text = text.trim();
        if text.is_empty() { Ok(0) } else { text.parse().map_err(|_| (name, "must be a whole number")) }
    }

    /// The step; `Err((field, problem))` for a field that is not a number or an
    /// unknown kind.
    pub fn to_step(&self) -> Result<Step, (&'static str, &'static str)> {
        let kind = match self.kind.as_str() {
            "ai" => StepKind::Ai(AiConfig {
                task: Some(match self.get("ai.task").as_str() {
                    "classify" => AiTask::Classify,
                    "extract" => AiTask::Extract,
                    "generate" => AiTask::Generate,
                    _ => AiTask::Summarize,
                }),
                input: self.get("ai.input"),
                labels: lines(&self.get("ai.labels")),
                fields: lines(&self.get("ai.fields")),
                prompt: self.get("ai.prompt"),
                model: self.get("ai.model").trim().to_owned(),
                max_tokens: self.number("ai.max_tokens")?,
                connector: self.get("ai.connector").trim().to_owned(),
            }),
            "slack" => StepKind::Slack(SlackConfig {
                connector: self.get("slack.connector").trim().to_owned(),
                text: self.get("slack.text"),
            }),
            "email" => StepKind::Email(EmailConfig {
                connector: self.get("email.connector").trim().to_owned(),
                from: self.get("email.from"),
                to: lines(&self.get("email.to")),
                subject: self.get("email.subject"),
                html: self.get("email.html"),
                text: self.get("email.text"),
            }),
            "http" => StepKind::Http(HttpConfig {
                method: Some(match self.get("http.method").as_str() {
                    "GET" => HttpMethod::Get,
                    "PUT" => HttpMethod::Put,
                    "PATCH" => HttpMethod::Patch,
                    "DELETE" => HttpMethod::Delete,
                    _ => HttpMethod::Post,
                }),
                url: self.get("http.url").trim().to_owned(),
                headers: lines(&self.get("http.headers"))
                    .into_iter()
                    .map(|l| match l.split_once(':') {
                        Some((n, v)) => HttpHeader { name: n.trim().to_owned(), value: v.trim().to_owned() },
                        None => HttpHeader { name: l, value: String::new() },
                    })
                    .collect(),
                body: self.get("http.body"),
                bearer_connector: self.get("http.bearer_connector").trim().to_owned(),
            }),
            "transform" => StepKind::Transform(TransformConfig { template: self.get("transform.template") }),
            "condition" => StepKind::Condition(ConditionConfig {
                expression: self.get("condition.expression"),
                on_false: Some(if self.get("condition.on_false") == "jump" {
                    OnFalse::Jump
                } else {
                    OnFalse::Stop
                }),
                jump_to: if self.get("condition.on_false") == "jump" {
                    self.get("condition.jump_to").trim().to_owned()
                } else {
                    String::new()
                },
            }),
            "approval" => StepKind::Approval(ApprovalConfig {
                message: self.get("approval.message"),
                expires_after_seconds: self.number("approval.expires_after_seconds")?,
            }),
            _ => return Err(("kind", "is not a step kind")),
        };
        let retry = RetryPolicy {
            max_attempts: self.number("retry.max_attempts")?,
            initial_backoff_ms: self.number("retry.initial_backoff_ms")?,
            max_backoff_ms: self.number("retry.max_backoff_ms")?,
        };
        Ok(Step {
            key: self.get("key").trim().to_owned(),
            name: self.get("name").trim().to_owned(),
            kind,
            requires_approval: self.values.get("requires_approval").is_some_and(|v| v == "on" || v == "true"),
            timeout_ms: self.number("timeout_ms")?,
            retry: (retry != RetryPolicy::default()).then_some(retry),
        })
    }
}

/// Splits a catalog validation message into the form field it names and the
/// problem: `steps[3] "notify": slack.text: is required` →
/// (`steps[3].slack.text`, `is required`); `title: is required` → (`title`, …).
pub fn error_path(message: &str) -> Option<(String, String)> {
    if let Some(rest) = message.strip_prefix("steps[") {
        let (index, rest) = rest.split_once(']')?;
        let index: usize = index.parse().ok()?;
        // ` "key": field: problem` (the key is quoted and cannot contain quotes).
        let rest = rest.trim_start();
        let rest = rest.strip_prefix('"')?;
        let (_, rest) = rest.split_once("\": ")?;
        let (field, problem) = rest.split_once(": ")?;
        return Some((format!("steps[{index}].{field}"), problem.to_owned()));
    }
    let (field, problem) = message.split_once(": ")?;
    let plausible =
        !field.is_empty() && field.chars().all(|c| c.is_ascii_alphanumeric() || "_.[]".contains(c));
    plausible.then(|| (field.to_owned(), problem.to_owned()))
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
    fn catalog_messages_land_beside_their_field() {
        let (form, _) =
            EditorForm::from_pairs(&pairs(&[("steps[0].kind", "email"), ("steps[0].key", "mail")]));
        let fields = form.field_names();
        let (path, problem) = error_path("steps[0] \"mail\": email.to[1]: refers to step \"x\"").unwrap();
        assert_eq!(problem, "refers to step \"x\"");
        assert_eq!(place(&path, &fields).as_deref(), Some("steps[0].email.to"));
        let (path, _) = error_path("steps[0] \"mail\": email: needs html, text or both").unwrap();
        assert_eq!(place(&path, &fields).as_deref(), Some("steps[0]"));
        let (path, _) = error_path("title: is required").unwrap();
        assert_eq!(place(&path, &fields).as_deref(), Some("title"));
        assert_eq!(error_path("the Pilot is 300000 bytes; at most 262144 are allowed"), None);
        let (path, _) = error_path("schedules[3].cron: bad").unwrap();
        assert_eq!(place(&path, &fields), None);
    }
}
