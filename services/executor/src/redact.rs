//! Redaction: every secret value resolved for a run is replaced by `[REDACTED]` in
//! step outputs, errors and events before anything is stored, published or logged.

use serde_json::Value;
use zeroize::Zeroizing;

/// What replaces a secret.
pub const MARK: &str = "[REDACTED]";

/// The secrets of one run.
#[derive(Default)]
pub struct Redactor {
    secrets: Vec<Zeroizing<String>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    /// A redactor for these values (values shorter than 4 characters are ignored:
    /// replacing them would shred ordinary text without protecting anything).
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut secrets: Vec<Zeroizing<String>> =
            values.into_iter().filter(|v| v.len() >= 4).map(|v| Zeroizing::new(v.to_owned())).collect();
        // Longest first, so a secret that contains another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup_by(|a, b| a.as_str() == b.as_str());
        Self { secrets }
    }

    /// `text` with every secret replaced.
    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MARK);
            }
        }
        out
    }

    /// A JSON value with every secret replaced in every string and key.
    pub fn json(&self, value: &Value) -> Value {
        match value {
            Value::String(s) => Value::String(self.text(s)),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.json(v)).collect()),
            Value::Object(map) => {
                Value::Object(map.iter().map(|(k, v)| (self.text(k), self.json(v))).collect())
            }
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_in_text_and_nested_json() {
        let r = Redactor::new(["xoxb-canary-123", "sk-ant-canary", "ab"]);
        assert_eq!(
            r.text("token=xoxb-canary-123; again xoxb-canary-123"),
            "token=[REDACTED]; again [REDACTED]"
        );
        let v = serde_json::json!({"a": ["sk-ant-canary", 3, {"sk-ant-canary": "x"}], "ab": "ab"});
        assert_eq!(r.json(&v), serde_json::json!({"a": ["[REDACTED]", 3, {"[REDACTED]": "x"}], "ab": "ab"}));
        assert!(!format!("{r:?}").contains("canary"));
    }
}
