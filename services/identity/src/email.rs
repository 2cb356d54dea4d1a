//! The `Email` newtype: normalised (trimmed, lower-cased) and validated at the edge.

use std::fmt;

use bizops_errors::Error;

/// A normalised, syntactically valid email address.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Personal data: show the domain only.
        let domain = self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        write!(f, "Email(…@{domain})")
    }
}

impl Email {
    /// Normalises and validates; the error names the `email` field and the rule.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let email = normalise(input);
        validate(&email).map_err(|problem| Error::invalid("email", problem))?;
        Ok(Self(email))
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before `@`, used as a zxcvbn hint (a password containing it is weak).
    pub fn local_part(&self) -> &str {
        self.0.split_once('@').map(|(l, _)| l).unwrap_or(&self.0)
    }

    pub(crate) fn from_trusted(stored: String) -> Self {
        Self(stored)
    }
}

/// Trims surrounding whitespace and lower-cases (addresses are treated as
/// case-insensitive, so `Ann@Example.com` and `ann@example.com` are one account).
pub fn normalise(input: &str) -> String {
    input.trim().to_lowercase()
}

const LOCAL_SPECIALS: &str = "!#$%&'*+/=?^_`{|}~-.";

fn validate(email: &str) -> Result<(), &'static str> {
    if email.is_empty() {
        return Err("is required");
    }
    if email.chars().count() > 254 {
        return Err("must be at most 254 characters");
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters");
    }
    let (local, domain) = email.split_once('@').ok_or("must contain @")?;
    if domain.contains('@') {
        return Err("must contain exactly one @");
    }
    if local.is_empty() || local.chars().count() > 64 {
        return Err("the part before @ must be 1-64 characters");
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err("the part before @ must not start or end with a dot or contain two dots in a row");
    }
    if !local.chars().all(|c| c.is_alphanumeric() || LOCAL_SPECIALS.contains(c)) {
        return Err("the part before @ contains a character that is not allowed");
    }
    if domain.chars().count() > 253 {
        return Err("the domain must be at most 253 characters");
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err("the domain must contain a dot, e.g. example.com");
    }
    for label in &labels {
        if label.is_empty() || label.chars().count() > 63 {
            return Err("each part of the domain must be 1-63 characters");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a part of the domain must not start or end with a hyphen");
        }
        if !label.chars().all(|c| c.is_alphanumeric() || c == '-') {
            return Err("the domain contains a character that is not allowed");
        }
    }
    if labels.last().is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit())) {
        return Err("the domain must end in a name, not a number");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn normalises_case_and_whitespace() {
        assert_eq!(Email::parse("  Ann.Lee+ops@Example.COM ").unwrap().as_str(), "ann.lee+ops@example.com");
        assert_eq!(Email::parse("jörg@bücher.de").unwrap().as_str(), "jörg@bücher.de");
    }

    #[test]
    fn rejects_with_a_clear_reason() {
        for (bad, why) in [
            ("", "required"),
            ("no-at-sign", "@"),
            ("a@b@c.com", "exactly one @"),
            ("@example.com", "before @"),
            (".a@example.com", "dot"),
            ("a..b@example.com", "dot"),
            ("a b@example.com", "spaces"),
            ("a@localhost", "dot"),
            ("a@-x.com", "hyphen"),
            ("a@x..com", "1-63"),
            ("a@1.2.3.4", "number"),
            ("a(b)@x.com", "not allowed"),
        ] {
            let err = Email::parse(bad).unwrap_err();
            assert!(err.message().starts_with("email: "), "{bad}: {}", err.message());
            assert!(err.message().contains(why), "{bad}: {}", err.message());
        }
        assert!(Email::parse(&format!("{}@x.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn debug_hides_the_local_part() {
        assert_eq!(
            format!("{:?}", Email::parse("secret.person@example.com").unwrap()),
            "Email(…@example.com)"
        );
    }

    proptest! {
        #[test]
        fn never_panics_and_accepted_addresses_are_normalised(s in "\\PC{0,80}") {
            if let Ok(e) = Email::parse(&s) {
                prop_assert_eq!(e.as_str(), normalise(e.as_str()));
                prop_assert!(Email::parse(e.as_str()).is_ok(), "normalisation is idempotent");
            }
        }

        #[test]
        fn plain_addresses_are_accepted(local in "[a-z0-9]{1,20}(\\.[a-z0-9]{1,10})?", domain in "[a-z0-9]{1,20}\\.[a-z]{2,6}") {
            let addr = format!("{local}@{domain}");
            let parsed = Email::parse(&addr.to_uppercase()).unwrap();
            prop_assert_eq!(parsed.as_str(), addr.as_str());
        }
    }
}
