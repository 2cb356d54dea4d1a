//! `Debug` for messages that carry secrets: the secret fields print as
//! `[REDACTED]` (or `[EMPTY]` when unset, which helps debugging without leaking).

use std::fmt;

use crate::{catalog::v1 as catalog, events::v1 as events, identity::v1 as identity, vault::v1 as vault};

struct Redacted<'a>(&'a str);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() { f.write_str("[EMPTY]") } else { f.write_str("[REDACTED]") }
    }
}

struct RedactedBytes(usize);

impl fmt::Debug for RedactedBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{} bytes]", self.0)
    }
}

impl fmt::Debug for identity::RegisterRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterRequest")
            .field("email", &self.email)
            .field("password", &Redacted(&self.password))
            .field("display_name", &self.display_name)
            .finish()
    }
}

impl fmt::Debug for identity::LoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRequest")
            .field("email", &self.email)
            .field("password", &Redacted(&self.password))
            .finish()
    }
}

impl fmt::Debug for identity::Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("token", &Redacted(&self.token))
            .field("session_id", &self.session_id)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl fmt::Debug for identity::ChangePasswordRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangePasswordRequest")
            .field("current_password", &Redacted(&self.current_password))
            .field("new_password", &Redacted(&self.new_password))
            .finish()
    }
}

impl fmt::Debug for identity::VerifySessionRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifySessionRequest").field("token", &Redacted(&self.token)).finish()
    }
}

impl fmt::Debug for identity::DeleteAccountRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeleteAccountRequest").field("password", &Redacted(&self.password)).finish()
    }
}

impl fmt::Debug for catalog::CreatePilotResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatePilotResponse")
            .field("pilot", &self.pilot)
            .field("webhook_secret", &Redacted(&self.webhook_secret))
            .finish()
    }
}

impl fmt::Debug for catalog::ImportPilotResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportPilotResponse")
            .field("pilot", &self.pilot)
            .field("webhook_secret", &Redacted(&self.webhook_secret))
            .finish()
    }
}

impl fmt::Debug for catalog::RotateWebhookSecretResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotateWebhookSecretResponse")
            .field("webhook_secret", &Redacted(&self.webhook_secret))
            .field("previous_valid_until", &self.previous_valid_until)
            .finish()
    }
}

impl fmt::Debug for catalog::VerifyWebhookRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|h| h.name.as_str()).collect();
        f.debug_struct("VerifyWebhookRequest")
            .field("pilot_id", &self.pilot_id)
            .field("header_names", &names)
            .field("body", &RedactedBytes(self.body.len()))
            .finish()
    }
}

impl fmt::Debug for vault::PutCredentialRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PutCredentialRequest")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("value", &Redacted(&self.value))
            .finish()
    }
}

impl fmt::Debug for vault::ResolvedCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvedCredential")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("value", &Redacted(&self.value))
            .finish()
    }
}

impl fmt::Debug for events::Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trigger")
            .field("trigger_id", &self.trigger_id)
            .field("owner_id", &self.owner_id)
            .field("pilot_id", &self.pilot_id)
            .field("pilot_version", &self.pilot_version)
            .field("idempotency_key", &self.idempotency_key)
            .field("source", &self.source)
            .field("payload", &RedactedBytes(self.payload.len()))
            .field("content_type", &self.content_type)
            .field("accepted_at", &self.accepted_at)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let req = identity::LoginRequest { email: "a@b.test".into(), password: "hunter2-canary".into() };
        let text = format!("{req:?}");
        assert!(!text.contains("hunter2-canary"), "{text}");
        assert!(text.contains("a@b.test"));
        let resp = identity::LoginResponse {
            account: None,
            session: Some(identity::Session { token: "eyJ-canary".into(), ..Default::default() }),
        };
        assert!(!format!("{resp:?}").contains("eyJ-canary"));
        let put = vault::PutCredentialRequest { name: "slack".into(), kind: 1, value: "xoxb-canary".into() };
        assert!(!format!("{put:?}").contains("xoxb-canary"));
        let verify = catalog::VerifyWebhookRequest {
            pilot_id: "p".into(),
            headers: vec![catalog::HttpHeader {
                name: "x-pilot-secret".into(),
                value: "whsec_canary".into(),
            }],
            body: b"{\"card\":\"4111\"}".to_vec().into(),
        };
        let text = format!("{verify:?}");
        assert!(!text.contains("whsec_canary") && !text.contains("4111"), "{text}");
    }
}
