//! Rendering step inputs with minijinja, with limits: fuel (instructions per
//! render), recursion depth and output size. Templates see `trigger`,
//! `steps.<key>.output` and `secrets.<name>` (this run's credentials only).
//!
//! [`Renderer`] renders in the calling process and bounds neither memory nor
//! time per instruction: the engine renders through [`crate::sandbox::Templates`],
//! whose worker processes use a `Renderer` under a memory limit.

use std::collections::BTreeSet;

use bizops_proto::catalog::v1::{self as pb, step::Kind};
use minijinja::{Environment, UndefinedBehavior, Value as Jinja};
use serde_json::Value;

/// A template environment with this deployment's limits.
pub struct Renderer {
    env: Environment<'static>,
    max_output: usize,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer").field("max_output", &self.max_output).finish_non_exhaustive()
    }
}

impl Renderer {
    /// `fuel` bounds the work of one render; `max_output` its size in bytes.
    pub fn new(fuel: u64, max_output: usize) -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(fuel));
        env.set_recursion_limit(32);
        Self { env, max_output }
    }

    /// Renders `source` against `ctx`.
    pub fn render(&self, source: &str, ctx: &Value) -> Result<String, String> {
        if source.is_empty() {
            return Ok(String::new());
        }
        let out = self
            .env
            .render_str(source, Jinja::from_serialize(ctx))
            .map_err(|e| format!("template error: {}", describe(&e)))?;
        if out.len() > self.max_output {
            return Err(format!("rendered template is larger than {} bytes", self.max_output));
        }
        Ok(out)
    }

    /// Evaluates an expression against `ctx` and tells whether it is true.
    pub fn truthy(&self, expression: &str, ctx: &Value) -> Result<bool, String> {
        let expr = self
            .env
            .compile_expression(expression)
            .map_err(|e| format!("expression error: {}", describe(&e)))?;
        let value = expr
            .eval(Jinja::from_serialize(ctx))
            .map_err(|e| format!("expression error: {}", describe(&e)))?;
        Ok(value.is_true())
    }
}

fn describe(e: &minijinja::Error) -> String {
    let what = e.detail().map(str::to_owned).unwrap_or_else(|| e.kind().to_string());
    match e.line() {
        Some(line) => format!("{what} (line {line})"),
        None => what,
    }
}

/// The credential names a Pilot version needs: `secrets.<name>` in any template
/// and the connectors its steps use (with their defaults).
pub fn credential_names(spec: &pb::PilotSpec) -> BTreeSet<String> {
    let env = Environment::new();
    let mut names = BTreeSet::new();
    let mut templates: Vec<&str> = Vec::new();
    let mut expressions: Vec<&str> = Vec::new();
    for step in &spec.steps {
        match &step.kind {
            Some(Kind::Ai(a)) => {
                names.insert(connector(&a.connector, "anthropic"));
                templates.extend([a.input.as_str(), a.prompt.as_str()]);
            }
            Some(Kind::Slack(s)) => {
                names.insert(connector(&s.connector, "slack"));
                templates.push(&s.text);
            }
            Some(Kind::Email(e)) => {
                names.insert(connector(&e.connector, "resend"));
                templates.extend([e.from.as_str(), e.subject.as_str(), e.html.as_str(), e.text.as_str()]);
                templates.extend(e.to.iter().map(String::as_str));
            }
            Some(Kind::Http(h)) => {
                if !h.bearer_connector.is_empty() {
                    names.insert(h.bearer_connector.clone());
                }
                templates.extend([h.url.as_str(), h.body.as_str()]);
                templates.extend(h.headers.iter().map(|x| x.value.as_str()));
            }
            Some(Kind::Transform(t)) => templates.push(&t.template),
            Some(Kind::Approval(a)) => templates.push(&a.message),
            Some(Kind::Condition(c)) => expressions.push(&c.expression),
            None => {}
        }
    }
    let add = |names: &mut BTreeSet<String>, vars: std::collections::HashSet<String>| {
        for var in vars {
            let mut parts = var.split('.');
            if parts.next() == Some("secrets")
                && let Some(name) = parts.next()
            {
                names.insert(name.to_owned());
            }
        }
    };
    for source in templates.into_iter().filter(|s| !s.is_empty()) {
        if let Ok(t) = env.template_from_str(source) {
            add(&mut names, t.undeclared_variables(true));
        }
        // `secrets['team-slack']` (names with a hyphen cannot be attributes).
        if let Some(re) = subscript_pattern() {
            for c in re.captures_iter(source) {
                if let Some(name) = c.get(1).or_else(|| c.get(2)) {
                    names.insert(name.as_str().to_owned());
                }
            }
        }
    }
    for source in expressions {
        if let Ok(e) = env.compile_expression(source) {
            add(&mut names, e.undeclared_variables(true));
        }
    }
    names
}

fn subscript_pattern() -> Option<&'static regex::Regex> {
    static PATTERN: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    PATTERN
        .get_or_init(|| {
            regex::Regex::new(
                r#"\bsecrets\s*\[\s*(?:"([a-z][a-z0-9_-]{0,62})"|'([a-z][a-z0-9_-]{0,62})')\s*\]"#,
            )
            .ok()
        })
        .as_ref()
}

/// A step's connector name, or the kind's default.
pub fn connector(name: &str, default: &str) -> String {
    if name.is_empty() { default.to_owned() } else { name.to_owned() }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn renders_with_context_and_limits() {
        let t = Renderer::new(10_000, 1000);
        let ctx = serde_json::json!({"trigger": {"name": "Ann"}, "steps": {"a": {"output": {"n": 2}}}});
        assert_eq!(t.render("Hi {{ trigger.name }} {{ steps.a.output.n * 2 }}", &ctx).unwrap(), "Hi Ann 4");
        assert!(t.render("{{ trigger.missing }}", &ctx).unwrap_err().contains("undefined"));
        assert!(
            t.render("{% for i in range(100000) %}{{ i }}{% endfor %}", &ctx).unwrap_err().contains("fuel")
        );
        assert!(t.render("{{ 'x' * 2000 }}", &ctx).unwrap_err().contains("larger than"));
        assert!(t.truthy("steps.a.output.n == 2", &ctx).unwrap());
        assert!(!t.truthy("trigger.name == 'Bob'", &ctx).unwrap());
    }

    #[test]
    fn finds_the_credentials_a_pilot_needs() {
        let spec = pb::PilotSpec {
            steps: vec![
                pb::Step {
                    key: "a".into(),
                    kind: Some(Kind::Slack(pb::SlackStep {
                        connector: String::new(),
                        text: "{{ secrets.extra }} {{ secrets['team-slack'] }}".into(),
                    })),
                    ..Default::default()
                },
                pb::Step {
                    key: "b".into(),
                    kind: Some(Kind::Http(pb::HttpStep {
                        bearer_connector: "crm".into(),
                        url: "https://x".into(),
                        ..Default::default()
                    })),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let names: Vec<String> = credential_names(&spec).into_iter().collect();
        assert_eq!(names, ["crm", "extra", "slack", "team-slack"]);
    }
}
