//! The limits of a Pilot's content. The catalog enforces them at save time; the
//! schemas state them (`schema::tests` checks that the two agree).

/// Longest title, in characters.
pub const MAX_TITLE: usize = 200;
/// Longest description, in characters.
pub const MAX_DESCRIPTION: usize = 5_000;
/// Longest step name, in characters.
pub const MAX_STEP_NAME: usize = 200;
/// Most steps the schema allows (the catalog's configured limit defaults to it).
pub const MAX_STEPS: usize = 50;
/// Longest template or expression, in bytes.
pub const MAX_TEMPLATE: usize = 64 * 1024;
/// Most labels (classify) / fields (extract) / recipients / headers / schedules.
pub const MAX_LIST: usize = 50;
/// Longest per-attempt timeout.
pub const MAX_TIMEOUT_MS: u32 = 5 * 60 * 1000;
/// Most attempts of a retry policy.
pub const MAX_ATTEMPTS: u32 = 10;
/// Longest backoff.
pub const MAX_BACKOFF_MS: u32 = 10 * 60 * 1000;
/// Shortest and longest execution deadline a Pilot may set, in seconds (0: the
/// server's default).
pub const MIN_EXECUTION_SECONDS: u32 = 60;
/// See [`MIN_EXECUTION_SECONDS`].
pub const MAX_EXECUTION_SECONDS: u32 = 24 * 3600;
/// Longest approval deadline.
pub const MAX_APPROVAL_SECONDS: u32 = 30 * 24 * 3600;
/// Longest model name.
pub const MAX_MODEL: usize = 100;
/// Largest output token limit of an AI step.
pub const MAX_TOKENS: u32 = 64_000;
/// Longest classify label, in bytes.
pub const MAX_LABEL: usize = 100;
/// Longest header name, in bytes.
pub const MAX_HEADER_NAME: usize = 100;

/// A step key: `[a-z][a-z0-9_]{0,62}`.
pub fn is_step_key(key: &str) -> bool {
    let mut chars = key.chars();
    key.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A connector (credential) name: `[a-z][a-z0-9_-]{0,62}` (the vault's rule).
pub fn is_connector_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// An extract field name: `[A-Za-z_][A-Za-z0-9_]{0,63}`.
pub fn is_field_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
