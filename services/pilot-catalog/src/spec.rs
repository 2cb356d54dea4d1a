//! Validation of a Pilot's content (`PilotSpec`) at save time: sizes, keys,
//! kind-specific fields, schedules, and every template — parsed with minijinja,
//! with references checked: `trigger.*`, `steps.<earlier key>.output.*`,
//! `secrets.<connector name>`. Errors are `INVALID_ARGUMENT` naming the step and
//! field, e.g. `steps[2] "notify": slack.text: refers to step "later", which runs after it`.

use std::collections::{HashMap, HashSet};

use bizops_errors::{Error, ErrorCode};
use bizops_proto::catalog::v1::{self as pb, step::Kind};
use prost::Message as _;

use crate::schedule;

/// Content limits (configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Steps per Pilot.
    pub max_steps: usize,
    /// Encoded size of a Pilot's content, in bytes.
    pub max_document_bytes: usize,
}

use bizops_pilot_spec::limits::{
    MAX_APPROVAL_SECONDS, MAX_ATTEMPTS, MAX_BACKOFF_MS, MAX_DESCRIPTION, MAX_EXECUTION_SECONDS,
    MAX_HEADER_NAME, MAX_LABEL, MAX_LIST, MAX_MODEL, MAX_STEP_NAME, MAX_TEMPLATE, MAX_TIMEOUT_MS, MAX_TITLE,
    MAX_TOKENS, MIN_EXECUTION_SECONDS, is_connector_name, is_field_name, is_step_key,
};
/// Functions minijinja provides that templates may call.
const BUILTIN_FUNCTIONS: &[&str] = &["range", "dict", "namespace", "debug", "loop"];

/// Checks and normalises `spec` in place (trims the title, assigns ids to new
/// schedules). `now` is used to check that every schedule can fire.
pub fn validate(spec: &mut pb::PilotSpec, limits: Limits) -> Result<(), Error> {
    spec.title = spec.title.trim().to_owned();
    let title_len = spec.title.chars().count();
    if title_len == 0 {
        return Err(Error::invalid("title", "is required"));
    }
    if title_len > MAX_TITLE {
        return Err(Error::invalid(
            "title",
            format!("must be at most {MAX_TITLE} characters (it has {title_len})"),
        ));
    }
    if spec.description.chars().count() > MAX_DESCRIPTION {
        return Err(Error::invalid("description", format!("must be at most {MAX_DESCRIPTION} characters")));
    }
    let deadline = spec.max_execution_seconds;
    if deadline != 0 && !(MIN_EXECUTION_SECONDS..=MAX_EXECUTION_SECONDS).contains(&deadline) {
        return Err(Error::invalid(
            "max_execution_seconds",
            format!(
                "must be between {MIN_EXECUTION_SECONDS} and {MAX_EXECUTION_SECONDS} seconds (or 0 for the default)"
            ),
        ));
    }
    if spec.steps.len() > limits.max_steps {
        return Err(Error::invalid(
            "steps",
            format!("a Pilot can have at most {} steps (it has {})", limits.max_steps, spec.steps.len()),
        ));
    }
    validate_steps(&spec.steps)?;
    validate_schedules(&mut spec.schedules)?;
    let size = spec.encoded_len();
    if size > limits.max_document_bytes {
        return Err(Error::new(
            ErrorCode::PayloadTooLarge,
            format!("the Pilot is {size} bytes; at most {} are allowed", limits.max_document_bytes),
        ));
    }
    Ok(())
}

fn validate_schedules(schedules: &mut [pb::Schedule]) -> Result<(), Error> {
    if schedules.len() > MAX_LIST {
        return Err(Error::invalid("schedules", format!("at most {MAX_LIST} schedules")));
    }
    let mut ids = HashSet::new();
    for (i, s) in schedules.iter_mut().enumerate() {
        let field = |f: &str| format!("schedules[{i}].{f}");
        if s.id.trim().is_empty() {
            s.id = uuid::Uuid::now_v7().to_string();
        }
        let id: uuid::Uuid =
            s.id.trim().parse().map_err(|_| Error::invalid(&field("id"), "must be a UUID or empty"))?;
        s.id = id.to_string();
        if !ids.insert(id) {
            return Err(Error::invalid(&field("id"), "is used twice"));
        }
        s.cron = s.cron.trim().to_owned();
        s.timezone = s.timezone.trim().to_owned();
        let parsed = schedule::parse(&s.cron).map_err(|e| Error::invalid(&field("cron"), e))?;
        let tz = schedule::timezone(&s.timezone).map_err(|e| Error::invalid(&field("timezone"), e))?;
        schedule::check_fires(&parsed, tz).map_err(|e| Error::invalid(&field("cron"), e))?;
    }
    Ok(())
}

/// Where in the Pilot a problem is, for error messages.
struct At<'a> {
    index: usize,
    key: &'a str,
}

impl At<'_> {
    /// `INVALID_ARGUMENT` about `field` of this step: the message says
    /// `steps[2] "notify": slack.text: <problem>`, the field path is
    /// `steps[2].slack.text`.
    fn err(&self, field: &str, problem: impl std::fmt::Display) -> Error {
        let problem = problem.to_string();
        Error::new(
            ErrorCode::InvalidArgument,
            format!("steps[{}] \"{}\": {field}: {problem}", self.index, self.key),
        )
        .with_field(format!("steps[{}].{field}", self.index), problem)
    }
}

fn validate_steps(steps: &[pb::Step]) -> Result<(), Error> {
    let position: HashMap<&str, usize> = steps.iter().enumerate().map(|(i, s)| (s.key.as_str(), i)).collect();
    let env = template_env();
    let mut seen = HashSet::new();
    for (index, step) in steps.iter().enumerate() {
        let at = At { index, key: &step.key };
        if !is_step_key(&step.key) {
            return Err(at.err("key", "must match [a-z][a-z0-9_]{0,62}"));
        }
        if !seen.insert(step.key.as_str()) {
            return Err(at.err("key", "is used by an earlier step; keys must be unique"));
        }
        if step.name.chars().count() > MAX_STEP_NAME {
            return Err(at.err("name", format!("must be at most {MAX_STEP_NAME} characters")));
        }
        let Some(kind) = &step.kind else {
            return Err(at.err("kind", format!("is required ({})", one_of(&bizops_pilot_spec::KINDS))));
        };
        let refs = Refs { env: &env, at: &at, position: &position };
        validate_kind(kind, step, &refs)?;
        if step.timeout_ms > MAX_TIMEOUT_MS {
            return Err(at.err("timeout_ms", format!("must be at most {MAX_TIMEOUT_MS}")));
        }
        if let Some(retry) = &step.retry {
            if retry.max_attempts > MAX_ATTEMPTS {
                return Err(at.err("retry.max_attempts", format!("must be at most {MAX_ATTEMPTS}")));
            }
            if retry.initial_backoff_ms > MAX_BACKOFF_MS || retry.max_backoff_ms > MAX_BACKOFF_MS {
                return Err(at.err("retry", format!("backoffs must be at most {MAX_BACKOFF_MS} ms")));
            }
            if retry.max_backoff_ms != 0 && retry.max_backoff_ms < retry.initial_backoff_ms {
                return Err(at.err("retry.max_backoff_ms", "must not be smaller than initial_backoff_ms"));
            }
        }
    }
    Ok(())
}

fn validate_kind(kind: &Kind, step: &pb::Step, r: &Refs<'_>) -> Result<(), Error> {
    let at = r.at;
    let mutating = match kind {
        Kind::Slack(_) | Kind::Email(_) => true,
        Kind::Http(h) => h.method() != pb::HttpMethod::Get,
        _ => false,
    };
    if step.requires_approval && !mutating {
        return Err(at.err(
            "requires_approval",
            "applies to slack, email and non-GET http steps (use an approval step to pause elsewhere)",
        ));
    }
    match kind {
        Kind::Ai(ai) => {
            let task = pb::AiTask::try_from(ai.task).unwrap_or(pb::AiTask::Unspecified);
            if task == pb::AiTask::Unspecified {
                return Err(at.err("ai.task", "is required (summarize, classify, extract or generate)"));
            }
            r.connector("ai.connector", &ai.connector)?;
            if task == pb::AiTask::Generate {
                r.required_template("ai.prompt", &ai.prompt)?;
                r.template("ai.input", &ai.input)?;
            } else {
                r.required_template("ai.input", &ai.input)?;
                r.template("ai.prompt", &ai.prompt)?;
            }
            match task {
                pb::AiTask::Classify => {
                    r.list("ai.labels", &ai.labels, |l| !l.trim().is_empty() && l.len() <= MAX_LABEL)?
                }
                pb::AiTask::Extract => r.list("ai.fields", &ai.fields, is_field_name)?,
                _ => {
                    if !ai.labels.is_empty() || !ai.fields.is_empty() {
                        return Err(at.err("ai", "labels are for classify and fields for extract"));
                    }
                }
            }
            if ai.model.len() > MAX_MODEL {
                return Err(at.err("ai.model", format!("must be at most {MAX_MODEL} characters")));
            }
            if ai.max_tokens > MAX_TOKENS {
                return Err(at.err("ai.max_tokens", format!("must be at most {MAX_TOKENS}")));
            }
        }
        Kind::Slack(s) => {
            r.connector("slack.connector", &s.connector)?;
            r.required_template("slack.text", &s.text)?;
        }
        Kind::Email(e) => {
            r.connector("email.connector", &e.connector)?;
            r.required_template("email.from", &e.from)?;
            if e.to.is_empty() || e.to.len() > MAX_LIST {
                return Err(at.err("email.to", format!("needs 1-{MAX_LIST} recipients")));
            }
            for (i, to) in e.to.iter().enumerate() {
                r.required_template(&format!("email.to[{i}]"), to)?;
            }
            r.required_template("email.subject", &e.subject)?;
            if e.html.trim().is_empty() && e.text.trim().is_empty() {
                return Err(at.err("email", "needs html, text or both"));
            }
            r.template("email.html", &e.html)?;
            r.template("email.text", &e.text)?;
        }
        Kind::Http(h) => {
            if h.method() == pb::HttpMethod::Unspecified {
                return Err(at.err("http.method", "is required (GET, POST, PUT, PATCH or DELETE)"));
            }
            r.required_template("http.url", &h.url)?;
            let literal = h.url.trim_start();
            if !(literal.starts_with("{{")
                || literal.starts_with("https://")
                || literal.starts_with("http://"))
            {
                return Err(at.err("http.url", "must start with http:// or https://"));
            }
            if h.headers.len() > MAX_LIST {
                return Err(at.err("http.headers", format!("at most {MAX_LIST} headers")));
            }
            for (i, header) in h.headers.iter().enumerate() {
                let valid = !header.name.is_empty()
                    && header.name.len() <= MAX_HEADER_NAME
                    && header
                        .name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                if !valid {
                    return Err(at.err(&format!("http.headers[{i}].name"), "is not a valid header name"));
                }
                if header.name.eq_ignore_ascii_case("authorization") && !h.bearer_connector.is_empty() {
                    return Err(
                        at.err(&format!("http.headers[{i}]"), "Authorization is set by bearer_connector")
                    );
                }
                r.template(&format!("http.headers[{i}].value"), &header.value)?;
            }
            r.template("http.body", &h.body)?;
            r.connector("http.bearer_connector", &h.bearer_connector)?;
        }
        Kind::Transform(t) => r.required_template("transform.template", &t.template)?,
        Kind::Condition(c) => {
            r.expression("condition.expression", &c.expression)?;
            match c.on_false() {
                pb::OnFalse::Unspecified => {
                    return Err(at.err("condition.on_false", "is required (stop or jump)"));
                }
                pb::OnFalse::Stop if !c.jump_to.is_empty() => {
                    return Err(at.err("condition.jump_to", "is only for on_false = jump"));
                }
                pb::OnFalse::Stop => {}
                pb::OnFalse::Jump => match r.position.get(c.jump_to.as_str()) {
                    None => {
                        return Err(
                            at.err("condition.jump_to", format!("no step has the key \"{}\"", c.jump_to))
                        );
                    }
                    Some(&target) if target <= at.index => {
                        return Err(
                            at.err("condition.jump_to", "must name a later step (jumps go forward only)")
                        );
                    }
                    Some(_) => {}
                },
            }
        }
        Kind::Approval(a) => {
            r.required_template("approval.message", &a.message)?;
            if a.expires_after_seconds > MAX_APPROVAL_SECONDS {
                return Err(at.err(
                    "approval.expires_after_seconds",
                    format!("must be at most {MAX_APPROVAL_SECONDS}"),
                ));
            }
        }
    }
    Ok(())
}

/// `a, b or c`.
fn one_of(names: &[&str]) -> String {
    match names.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// The environment templates are parsed with (the executor renders with the same
/// syntax; parsing needs no data).
fn template_env() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env
}

struct Refs<'a> {
    env: &'a minijinja::Environment<'static>,
    at: &'a At<'a>,
    position: &'a HashMap<&'a str, usize>,
}

impl Refs<'_> {
    fn connector(&self, field: &str, name: &str) -> Result<(), Error> {
        if name.is_empty() || is_connector_name(name) {
            Ok(())
        } else {
            Err(self.at.err(field, "must match [a-z][a-z0-9_-]{0,62}"))
        }
    }

    fn list(&self, field: &str, items: &[String], valid: impl Fn(&str) -> bool) -> Result<(), Error> {
        if items.is_empty() || items.len() > MAX_LIST {
            return Err(self.at.err(field, format!("needs 1-{MAX_LIST} entries")));
        }
        let mut seen = HashSet::new();
        for (i, item) in items.iter().enumerate() {
            if !valid(item) {
                return Err(self.at.err(&format!("{field}[{i}]"), "is not valid"));
            }
            if !seen.insert(item.as_str()) {
                return Err(self.at.err(&format!("{field}[{i}]"), "is listed twice"));
            }
        }
        Ok(())
    }

    fn required_template(&self, field: &str, source: &str) -> Result<(), Error> {
        if source.trim().is_empty() {
            return Err(self.at.err(field, "is required"));
        }
        self.template(field, source)
    }

    fn template(&self, field: &str, source: &str) -> Result<(), Error> {
        if source.len() > MAX_TEMPLATE {
            return Err(self.at.err(field, format!("must be at most {MAX_TEMPLATE} bytes")));
        }
        if source.is_empty() {
            return Ok(());
        }
        let template =
            self.env.template_from_str(source).map_err(|e| self.at.err(field, syntax_error(&e)))?;
        self.references(field, source, template.undeclared_variables(true))
    }

    fn expression(&self, field: &str, source: &str) -> Result<(), Error> {
        if source.trim().is_empty() {
            return Err(self.at.err(field, "is required"));
        }
        if source.len() > MAX_TEMPLATE {
            return Err(self.at.err(field, format!("must be at most {MAX_TEMPLATE} bytes")));
        }
        let expr = self.env.compile_expression(source).map_err(|e| self.at.err(field, syntax_error(&e)))?;
        self.references(field, source, expr.undeclared_variables(true))
    }

    /// Every variable a template reads must be `trigger…`, `steps.<earlier key>…`
    /// or `secrets.<name>`.
    fn references(&self, field: &str, source: &str, vars: HashSet<String>) -> Result<(), Error> {
        let mut vars: Vec<String> = vars.into_iter().collect();
        vars.sort();
        for var in vars {
            let mut parts = var.split('.');
            let root = parts.next().unwrap_or_default();
            let second = parts.next();
            match (root, second) {
                ("trigger", _) => {}
                ("steps", None) => {
                    return Err(self.at.err(field, "refer to a step's output as steps.<key>.output"));
                }
                ("steps", Some(key)) => match self.position.get(key) {
                    Some(&i) if i < self.at.index => {
                        if parts.next() != Some("output") {
                            return Err(self
                                .at
                                .err(field, format!("use steps.{key}.output to read that step's result")));
                        }
                    }
                    Some(&i) if i == self.at.index => {
                        return Err(self.at.err(field, "a step cannot refer to its own output"));
                    }
                    Some(_) => {
                        return Err(self
                            .at
                            .err(field, format!("refers to step \"{key}\", which runs after it")));
                    }
                    None => {
                        return Err(self
                            .at
                            .err(field, format!("refers to step \"{key}\", which does not exist")));
                    }
                },
                ("secrets", None) => {
                    // `secrets['team-slack']`: names with a hyphen cannot be written
                    // as attributes; constant subscripts are fine, anything else is not.
                    for name in secret_subscripts(source).map_err(|problem| self.at.err(field, problem))? {
                        if !is_connector_name(&name) {
                            return Err(self
                                .at
                                .err(field, format!("\"{name}\" is not a valid credential name")));
                        }
                    }
                }
                ("secrets", Some(name)) if is_connector_name(name) => {}
                ("secrets", Some(name)) => {
                    return Err(self.at.err(field, format!("\"{name}\" is not a valid credential name")));
                }
                (name, _) if BUILTIN_FUNCTIONS.contains(&name) => {}
                (name, _) => {
                    return Err(self.at.err(
                        field,
                        format!("unknown variable \"{name}\" (templates can use trigger, steps.<key>.output and secrets.<name>)"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The names in `secrets['name']` / `secrets["name"]` subscripts of a template,
/// failing if `secrets` is used any other way than `.name` or such a subscript.
pub fn secret_subscripts(source: &str) -> Result<Vec<String>, String> {
    static MENTION: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let Some(re) = MENTION.get_or_init(|| {
        regex::Regex::new(r#"\bsecrets\b\s*(\.\s*[A-Za-z_]|\[\s*(?:"([^"]*)"|'([^']*)')\s*\])?"#).ok()
    }) else {
        return Err("could not check the template".into());
    };
    let mut names = Vec::new();
    for c in re.captures_iter(source) {
        match (c.get(1), c.get(2).or_else(|| c.get(3))) {
            (Some(_), Some(name)) => names.push(name.as_str().to_owned()),
            (Some(_), None) => {}
            (None, _) => {
                return Err(
                    "refer to a credential as secrets.<name> or secrets['<name>'] (a constant name)".into()
                );
            }
        }
    }
    Ok(names)
}

/// A template syntax error with its line, without minijinja's decorations.
fn syntax_error(e: &minijinja::Error) -> String {
    let what = e.detail().map(str::to_owned).unwrap_or_else(|| e.kind().to_string());
    match e.line() {
        Some(line) => format!("template syntax error on line {line}: {what}"),
        None => format!("template syntax error: {what}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    use bizops_testkit::steps::{step, transform};

    fn limits() -> Limits {
        Limits { max_steps: 50, max_document_bytes: 256 * 1024 }
    }

    fn spec(steps: Vec<pb::Step>) -> pb::PilotSpec {
        pb::PilotSpec { title: "T".into(), steps, ..Default::default() }
    }

    /// The message of the validation error; every one names its field, and the
    /// message ends with the problem the field path points at.
    fn message(s: &mut pb::PilotSpec) -> String {
        let e = validate(s, limits()).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidArgument, "{}", e.message());
        let (field, problem) = (e.field().unwrap(), e.problem().unwrap());
        assert!(e.message().ends_with(&format!(": {problem}")), "{} / {problem}", e.message());
        assert!(!field.is_empty() && !field.contains(' '), "{field}");
        e.message().to_owned()
    }

    /// The field path and problem of the validation error.
    fn field(s: &mut pb::PilotSpec) -> (String, String) {
        let e = validate(s, limits()).unwrap_err();
        (e.field().unwrap().to_owned(), e.problem().unwrap().to_owned())
    }

    #[test]
    fn references_are_checked() {
        let ok = vec![
            step("first", transform("{\"a\": {{ trigger.body.x | tojson }}}")),
            step(
                "second",
                Kind::Slack(pb::SlackStep {
                    connector: "team-slack".into(),
                    text: "{{ steps.first.output.a }} {% for i in range(3) %}{{ i }}{% endfor %} {{ secrets.token }}".into(),
                }),
            ),
        ];
        validate(&mut spec(ok.clone()), limits()).unwrap();

        let mut forward =
            spec(vec![step("a", transform("{{ steps.b.output }}")), step("b", transform("{}"))]);
        assert_eq!(
            message(&mut forward),
            "steps[0] \"a\": transform.template: refers to step \"b\", which runs after it"
        );
        let mut unknown = spec(vec![step("a", transform("{{ steps.zzz.output }}"))]);
        assert!(message(&mut unknown).contains("step \"zzz\", which does not exist"));
        let mut own = spec(vec![step("a", transform("{{ steps.a.output }}"))]);
        assert!(message(&mut own).contains("its own output"));
        let mut stray = spec(vec![step("a", transform("{{ whatever }}"))]);
        assert!(message(&mut stray).contains("unknown variable \"whatever\""));
        let ok =
            spec(vec![step("a", transform(r#"{"t": "{{ secrets['team-slack'] }} {{ secrets.slack }}"}"#))]);
        validate(&mut ok.clone(), limits()).unwrap();
        let mut dynamic = spec(vec![step("a", transform("{{ secrets[trigger.which] }}"))]);
        assert!(message(&mut dynamic).contains("constant name"));
        let mut whole = spec(vec![step("a", transform("{{ secrets | tojson }}"))]);
        assert!(message(&mut whole).contains("constant name"));
        let mut bad_sub = spec(vec![step("a", transform("{{ secrets['Nope!'] }}"))]);
        assert!(message(&mut bad_sub).contains("not a valid credential name"));
        let mut bad_secret = spec(vec![step("a", transform("{{ secrets.Bad_Name }}"))]);
        assert!(message(&mut bad_secret).contains("not a valid credential name"));
        let mut syntax = spec(vec![step("a", transform("{{ trigger.x "))]);
        let m = message(&mut syntax);
        assert!(m.starts_with("steps[0] \"a\": transform.template: template syntax error"), "{m}");
    }

    #[test]
    fn keys_kinds_and_fields() {
        let mut dup = spec(vec![step("a", transform("{}")), step("a", transform("{}"))]);
        assert!(message(&mut dup).contains("unique"));
        let mut bad_key = spec(vec![step("A", transform("{}"))]);
        assert!(message(&mut bad_key).contains("key: must match"));
        let mut no_kind = spec(vec![pb::Step { key: "a".into(), ..Default::default() }]);
        assert!(message(&mut no_kind).contains("kind: is required"));
        assert_eq!(field(&mut no_kind).0, "steps[0].kind");
        let mut classify = spec(vec![step(
            "c",
            Kind::Ai(pb::AiStep {
                task: pb::AiTask::Classify as i32,
                input: "{{ trigger }}".into(),
                ..Default::default()
            }),
        )]);
        assert!(message(&mut classify).contains("ai.labels: needs 1-50 entries"));
        assert_eq!(field(&mut classify), ("steps[0].ai.labels".into(), "needs 1-50 entries".into()));
        let mut approval_on_ai = spec(vec![pb::Step {
            requires_approval: true,
            ..step(
                "c",
                Kind::Ai(pb::AiStep {
                    task: pb::AiTask::Summarize as i32,
                    input: "x".into(),
                    ..Default::default()
                }),
            )
        }]);
        assert!(message(&mut approval_on_ai).contains("requires_approval"));
        let mut jump_back = spec(vec![
            step("a", transform("{}")),
            step(
                "cond",
                Kind::Condition(pb::ConditionStep {
                    expression: "trigger.ok".into(),
                    on_false: pb::OnFalse::Jump as i32,
                    jump_to: "a".into(),
                }),
            ),
        ]);
        assert!(message(&mut jump_back).contains("forward only"));
        let mut bad_expr = spec(vec![step(
            "cond",
            Kind::Condition(pb::ConditionStep {
                expression: "steps.x.output ==".into(),
                on_false: pb::OnFalse::Stop as i32,
                jump_to: String::new(),
            }),
        )]);
        assert!(message(&mut bad_expr).contains("condition.expression: template syntax error"));
        let (path, problem) = field(&mut bad_expr);
        assert_eq!(path, "steps[0].condition.expression");
        assert!(problem.starts_with("template syntax error"), "{problem}");
    }

    #[test]
    fn title_and_size_limits() {
        let mut s = spec(vec![]);
        s.title = "   ".into();
        assert_eq!(message(&mut s), "title: is required");
        assert_eq!(field(&mut s), ("title".into(), "is required".into()));
        s.title = "x".repeat(201);
        assert!(message(&mut s).contains("at most 200"));
        let mut big = spec(vec![step("a", transform(&"x".repeat(60_000)))]);
        let e = validate(&mut big, Limits { max_steps: 50, max_document_bytes: 1024 }).unwrap_err();
        assert_eq!(e.code(), ErrorCode::PayloadTooLarge);
        let many: Vec<_> = (0..51).map(|i| step(&format!("s{i}"), transform("{}"))).collect();
        assert!(message(&mut spec(many)).contains("at most 50 steps"));
    }

    #[test]
    fn an_execution_limit_is_a_minute_to_a_day_or_the_default() {
        for ok in [0, 60, 3600, 86_400] {
            let mut s = pb::PilotSpec { max_execution_seconds: ok, ..spec(vec![]) };
            validate(&mut s, limits()).unwrap();
        }
        for bad in [1, 59, 86_401, u32::MAX] {
            let mut s = pb::PilotSpec { max_execution_seconds: bad, ..spec(vec![]) };
            let (field, problem) = field(&mut s);
            assert_eq!(field, "max_execution_seconds");
            assert!(problem.contains("between 60 and 86400 seconds"), "{problem}");
        }
    }

    #[test]
    fn schedules_get_ids_and_are_validated() {
        let mut s = spec(vec![]);
        s.schedules.push(pb::Schedule {
            cron: "0 9 * * 1-5".into(),
            timezone: "Europe/Berlin".into(),
            enabled: true,
            ..Default::default()
        });
        validate(&mut s, limits()).unwrap();
        assert!(s.schedules[0].id.parse::<uuid::Uuid>().is_ok());
        s.schedules[0].timezone = "Mars/Olympus".into();
        assert!(message(&mut s).starts_with("schedules[0].timezone:"));
        assert_eq!(field(&mut s).0, "schedules[0].timezone");
        s.schedules[0].timezone = "UTC".into();
        s.schedules[0].cron = "61 * * * *".into();
        assert!(message(&mut s).starts_with("schedules[0].cron:"));
        s.schedules[0].cron = "0 0 30 2 *".into();
        assert!(message(&mut s).contains("never"), "Feb 30 never fires");
    }
}
