//! Small Postgres helpers shared by the system-role stores ([`crate::system`],
//! [`crate::lease`]).

use std::time::Duration;

use serde_json::Value;

/// A duration as a Postgres `interval`.
pub(crate) fn interval(d: Duration) -> sqlx::postgres::types::PgInterval {
    sqlx::postgres::types::PgInterval {
        months: 0,
        days: 0,
        microseconds: i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
    }
}

/// Postgres `text` and `jsonb` cannot hold NUL (U+0000). A step output, error or
/// message carrying one (copied from a trigger payload, say) is stored with U+FFFD
/// in its place, so the run still ends instead of failing to be stored forever.
pub(crate) fn pg_text(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

/// [`pg_text`] for every string and key of a JSON value.
pub(crate) fn pg_json(v: &Value) -> Value {
    fn has_nul(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(a) => a.iter().any(has_nul),
            Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            _ => false,
        }
    }
    fn clean(v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(pg_text(s)),
            Value::Array(a) => Value::Array(a.iter().map(clean).collect()),
            Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (pg_text(k), clean(v))).collect()),
            other => other.clone(),
        }
    }
    if has_nul(v) { clean(v) } else { v.clone() }
}
