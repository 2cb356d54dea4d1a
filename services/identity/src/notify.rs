//! Notices to the account's address (password changed, account deleted), sent
//! through the server's Resend key when one is configured. Without a key they are
//! skipped and the skip is logged. A failed notice never fails the change itself.

use std::time::Duration;

use secrecy::ExposeSecret as _;
use serde_json::json;

use crate::config::NotificationsConfig;

/// Which notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// After ChangePassword.
    PasswordChanged,
    /// After an account deletion finished.
    AccountDeleted,
}

impl Notice {
    fn label(self) -> &'static str {
        match self {
            Notice::PasswordChanged => "password_changed",
            Notice::AccountDeleted => "account_deleted",
        }
    }

    fn content(self) -> (&'static str, &'static str) {
        match self {
            Notice::PasswordChanged => (
                "Your BizOps Pilot password was changed",
                "The password of your BizOps Pilot account was just changed, and every other session was signed out.\n\n\
                 If this was not you, reset your password right away and write to support@bizopspilot.com.",
            ),
            Notice::AccountDeleted => (
                "Your BizOps Pilot account was deleted",
                "Your BizOps Pilot account and everything in it — Pilots, run history, queued jobs and connected \
                 credentials — were permanently deleted, as you asked.\n\nNothing of it is kept. Thank you for using BizOps Pilot.",
            ),
        }
    }
}

/// Sends notices.
#[derive(Clone)]
pub struct Notifier {
    config: NotificationsConfig,
    http: reqwest::Client,
}

impl Notifier {
    /// A notifier with `config` (no key: every notice is skipped).
    pub fn new(config: NotificationsConfig) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self { config, http })
    }

    /// Sends `notice` to `to`; logs the outcome, never fails.
    pub async fn send(&self, notice: Notice, to: &str, idempotency_key: &str) {
        let Some(key) = &self.config.resend_api_key else {
            tracing::info!(notice = notice.label(), "notice skipped: no server Resend key configured");
            metrics::counter!("identity_notices_total", "notice" => notice.label(), "result" => "skipped")
                .increment(1);
            return;
        };
        let (subject, text) = notice.content();
        let result = self
            .http
            .post(format!("{}/emails", self.config.resend_base_url.trim_end_matches('/')))
            .bearer_auth(key.expose_secret())
            .header("Idempotency-Key", idempotency_key)
            .json(&json!({ "from": self.config.from, "to": [to], "subject": subject, "text": text }))
            .send()
            .await;
        let outcome = match result {
            Ok(r) if r.status().is_success() => "sent",
            Ok(r) => {
                tracing::warn!(
                    notice = notice.label(),
                    status = r.status().as_u16(),
                    "notice not accepted by Resend"
                );
                "failed"
            }
            Err(e) => {
                tracing::warn!(notice = notice.label(), error = %e.without_url(), "notice not sent");
                "failed"
            }
        };
        if outcome == "sent" {
            tracing::info!(notice = notice.label(), "notice sent");
        }
        metrics::counter!("identity_notices_total", "notice" => notice.label(), "result" => outcome)
            .increment(1);
    }
}
