//! What the account's API and pages both do: sign-up, sign-in (with its rate
//! limits), sign-out, password change, deletion and the export (which walks the
//! account's Pilots).

use std::net::IpAddr;

use bizops_errors::{Error, ErrorCode};
use bizops_proto::identity::v1 as identity;
use secrecy::SecretString;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    account::model::{Account, AccountExport, ExportedPilot, RegisterBody},
    pilots,
    shared::{
        backend::rpc, error::rate_limited, extract::ClientIp, model::rfc3339, ratelimit::source_key,
        session::CurrentSession, state::AppState,
    },
};

/// Page size for "everything" walks (export).
const WALK_PAGE: u32 = 100;
/// Upper bound on Pilots in one account export (the catalog allows 500).
const MAX_EXPORT_PILOTS: usize = 1000;

/// A session as identity hands it out, checked.
pub struct NewSession {
    /// The JWT.
    pub token: SecretString,
    /// Session id.
    pub session_id: Uuid,
    /// Absolute expiry.
    pub expires_at: OffsetDateTime,
}

fn new_session(session: Option<identity::Session>) -> Result<NewSession, Error> {
    let s = session.ok_or_else(|| Error::internal(std::io::Error::other("identity returned no session")))?;
    let session_id = s
        .session_id
        .parse()
        .map_err(|_| Error::internal(std::io::Error::other("identity returned a malformed session id")))?;
    let expires_at = s
        .expires_at
        .as_ref()
        .and_then(bizops_proto::timestamp::from_proto)
        .unwrap_or_else(|| OffsetDateTime::now_utc() + time::Duration::hours(12));
    Ok(NewSession { token: SecretString::from(s.token), session_id, expires_at })
}

/// The rate limit of sign-in and sign-up: per client network. There is no limit
/// per email here: identity throttles failed passwords per email and address and
/// never blocks an address the owner used before, while a per-email budget charged
/// before the password is checked would let anyone lock any account out.
pub fn check_login_limits(st: &AppState, ip: ClientIp) -> Result<(), Error> {
    if let Some(ip) = ip.0 {
        st.limits.login_per_source.check(&source_key(ip)).map_err(rate_limited)?;
    }
    Ok(())
}

/// Register.
pub async fn register(st: &AppState, source: Option<IpAddr>, body: &RegisterBody) -> Result<Account, Error> {
    let b = &st.backends;
    let response = rpc!(
        st.backends,
        identity.register,
        b.for_end_user(
            None,
            source,
            identity::RegisterRequest {
                email: body.email.clone(),
                password: body.password.clone(),
                display_name: body.display_name.clone(),
            },
        )
    )?;
    response.account.map(Into::into).ok_or_else(|| Error::internal(std::io::Error::other("no account")))
}

/// Login.
pub async fn login(
    st: &AppState,
    source: Option<IpAddr>,
    email: &str,
    password: &str,
) -> Result<(Account, NewSession), Error> {
    let b = &st.backends;
    let response = rpc!(
        st.backends,
        identity.login,
        b.for_end_user(
            None,
            source,
            identity::LoginRequest { email: email.to_owned(), password: password.to_owned() },
        )
    )?;
    let account = response
        .account
        .map(Into::into)
        .ok_or_else(|| Error::internal(std::io::Error::other("no account")))?;
    Ok((account, new_session(response.session)?))
}

/// Logout (the session stops working at once).
pub async fn logout(st: &AppState, s: &CurrentSession) -> Result<(), Error> {
    let b = &st.backends;
    let result = rpc!(st.backends, identity.logout, b.user(&s.token, identity::LogoutRequest {}));
    st.sessions.forget(&s.token);
    match result {
        Ok(_) => Ok(()),
        // Already gone: the goal is reached.
        Err(e) if e.code() == ErrorCode::Unauthenticated => Ok(()),
        Err(e) => Err(e),
    }
}

/// The caller's account.
pub async fn account(st: &AppState, s: &CurrentSession) -> Result<Account, Error> {
    account_of(st, &s.token).await
}

/// The account of the session `token` (identity takes the session token itself).
pub async fn account_of(st: &AppState, token: &SecretString) -> Result<Account, Error> {
    let b = &st.backends;
    let response = rpc!(st.backends, identity.get_account, b.user(token, identity::GetAccountRequest {}))?;
    response.account.map(Into::into).ok_or_else(|| Error::internal(std::io::Error::other("no account")))
}

/// Change password: every session ends, a fresh one is returned.
pub async fn change_password(
    st: &AppState,
    s: &CurrentSession,
    source: Option<IpAddr>,
    current: &str,
    new: &str,
) -> Result<NewSession, Error> {
    let b = &st.backends;
    let response = rpc!(
        st.backends,
        identity.change_password,
        b.for_end_user(
            Some(&s.token),
            source,
            identity::ChangePasswordRequest {
                current_password: current.to_owned(),
                new_password: new.to_owned()
            },
        )
    )?;
    st.sessions.forget(&s.token);
    new_session(response.session)
}

/// Delete the account and everything it owns.
pub async fn delete_account(
    st: &AppState,
    s: &CurrentSession,
    source: Option<IpAddr>,
    password: &str,
) -> Result<(), Error> {
    let b = &st.backends;
    // Deletion fans out to every service; give it more time than one call.
    let timeout = st.backends.timeout() * 3;
    b.call_with_timeout("delete_account", timeout, || {
        let request = b.for_end_user(
            Some(&s.token),
            source,
            identity::DeleteAccountRequest { password: password.to_owned() },
        )?;
        let mut client = b.identity();
        Ok(async move { client.delete_account(request).await })
    })
    .await?;
    st.sessions.forget(&s.token);
    Ok(())
}

/// Every Pilot of the caller as `bizops.pilot/v1` documents.
pub async fn export_account(st: &AppState, s: &CurrentSession) -> Result<AccountExport, Error> {
    let account = account(st, s).await?;
    let mut pilots = Vec::new();
    let mut token = String::new();
    let mut s = s.clone();
    loop {
        // A long walk can outlive an access token: each page takes the session's
        // current one, and the walk ends with the session.
        s = st.sessions.verify(s.token.clone()).await?.ok_or_else(|| {
            Error::new(ErrorCode::Unauthenticated, "the session is not valid; sign in again")
        })?;
        let s = &s;
        let list = pilots::ops::list_pilots(st, s, Some(WALK_PAGE), Some(token)).await?;
        for p in list.pilots {
            let document = pilots::ops::export_pilot(st, s, &p.id).await?;
            pilots.push(ExportedPilot { id: p.id, enabled: p.enabled, document });
        }
        if list.next_page_token.is_empty() || pilots.len() >= MAX_EXPORT_PILOTS {
            break;
        }
        token = list.next_page_token;
    }
    Ok(AccountExport {
        format: "bizops.account-export/v1",
        exported_at: rfc3339(OffsetDateTime::now_utc()),
        account,
        pilots,
    })
}
