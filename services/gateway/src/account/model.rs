//! The account's JSON shapes: the account, sign-up and sign-in, the session and
//! its CSRF token, password change, deletion and the export.

use bizops_proto::identity::v1 as identity;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::shared::model::ts;

/// An account as its owner sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Account {
    /// Account id (UUID); the owner of everything it creates.
    pub id: String,
    /// Normalised email address.
    pub email: String,
    /// Display name (empty when not set).
    pub display_name: String,
    /// When the account was created (RFC 3339).
    pub created_at: Option<String>,
    /// When the password was last set (RFC 3339).
    pub password_changed_at: Option<String>,
}

impl From<identity::Account> for Account {
    fn from(a: identity::Account) -> Self {
        Self {
            id: a.id,
            email: a.email,
            display_name: a.display_name,
            created_at: ts(a.created_at.as_ref()),
            password_changed_at: ts(a.password_changed_at.as_ref()),
        }
    }
}

/// Sign-up.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    /// Email address.
    pub email: String,
    /// Password: 12–1,024 characters, hard to guess.
    pub password: String,
    /// Optional display name.
    #[serde(default)]
    pub display_name: String,
}

/// Sign-in.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    /// Email address.
    pub email: String,
    /// Password.
    pub password: String,
}

/// Who is signed in, and the CSRF token to send as `X-CSRF-Token` with every
/// state-changing request made with the session cookie.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionInfo {
    /// The account.
    pub account: Account,
    /// The session id.
    pub session_id: String,
    /// When the session ends at the latest (RFC 3339).
    pub expires_at: String,
    /// The synchronizer token of this session.
    pub csrf_token: String,
}

/// Password change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordBody {
    /// The current password.
    pub current_password: String,
    /// The new password.
    pub new_password: String,
}

/// Account deletion: the password, re-entered.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteAccountBody {
    /// The account's password.
    pub password: String,
}

/// Everything of an account that can be exported: the account and every Pilot
/// in the `bizops.pilot/v1` format.
#[derive(Serialize, ToSchema)]
pub struct AccountExport {
    /// Always `bizops.account-export/v1`.
    pub format: &'static str,
    /// When the export was made (RFC 3339).
    pub exported_at: String,
    /// The account.
    pub account: Account,
    /// One `bizops.pilot/v1` document per Pilot, each with its `id` and `enabled` flag.
    pub pilots: Vec<ExportedPilot>,
}

/// One Pilot in an account export.
#[derive(Serialize, ToSchema)]
pub struct ExportedPilot {
    /// Pilot id.
    pub id: String,
    /// Whether it accepts triggers.
    pub enabled: bool,
    /// The `bizops.pilot/v1` document.
    #[schema(value_type = Object)]
    pub document: serde_json::Value,
}
