//! The dashboard's templates: minijinja, compiled into the binary from
//! `templates/`, with the filters they use.

use bizops_errors::Error;
use minijinja::{Environment, Value};
use serde::Serialize;

/// The dashboard's templates.
pub struct Templates {
    env: Environment<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Templates")
    }
}

macro_rules! templates {
    ($env:ident, $($name:literal),+ $(,)?) => {
        $( $env.add_template($name, include_str!(concat!("../../templates/", $name)))?; )+
    };
}

/// `steps[0].slack.text` → `steps-0-slack-text`, for element ids.
fn fid(name: &str) -> String {
    let mut out: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    out.trim_matches('-').to_owned()
}

/// RFC 3339 → `2026-11-27 12:18 UTC`; empty for none.
fn when(value: Value) -> String {
    let Some(text) = value.as_str() else { return String::new() };
    match time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        Ok(t) => {
            let t = t.to_offset(time::UtcOffset::UTC);
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        }
        Err(_) => text.to_owned(),
    }
}

fn truncate(text: String, length: Option<usize>) -> String {
    let length = length.unwrap_or(255);
    if text.chars().count() <= length {
        return text;
    }
    let mut cut: String = text.chars().take(length.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

impl Templates {
    /// Compiles every template.
    pub fn new() -> Result<Self, minijinja::Error> {
        let mut env = Environment::new();
        templates!(
            env,
            "base.html",
            "macros.html",
            "error.html",
            "signin.html",
            "signup.html",
            "privacy.html",
            "pilots.html",
            "editor.html",
            "pilot.html",
            "runs.html",
            "run.html",
            "approvals.html",
            "connectors.html",
            "account.html",
        );
        env.add_filter("fid", fid);
        env.add_filter("when", when);
        env.add_filter("truncate", truncate);
        env.add_filter("urlencode", |text: String| {
            url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>()
        });
        Ok(Self { env })
    }

    /// Renders `name` with `ctx`.
    pub fn render<S: Serialize>(&self, name: &str, ctx: S) -> Result<String, Error> {
        self.env.get_template(name).and_then(|t| t.render(ctx)).map_err(Error::internal)
    }
}

#[cfg(test)]
impl Templates {
    /// Renders `name` with `ctx`, keeping minijinja's error (for tests).
    pub fn render_raw(&self, name: &str, ctx: Value) -> Result<String, minijinja::Error> {
        self.env.get_template(name).and_then(|t| t.render(ctx))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ids_and_dates_render() {
        assert_eq!(fid("steps[0].slack.text"), "steps-0-slack-text");
        assert_eq!(when(Value::from("2026-11-27T12:18:17.5Z")), "2026-11-27 12:18 UTC");
        assert_eq!(when(Value::from(())), "");
        assert_eq!(truncate("abcdef".into(), Some(4)), "abc…");
    }

    #[test]
    fn every_template_compiles() {
        assert!(Templates::new().is_ok());
    }
}
