//! What the API and the dashboard do, once: each function validates its input at
//! the edge, makes the backend calls and returns the API's JSON shapes.

use std::net::IpAddr;

use bizops_errors::{Error, ErrorCode};
use bizops_proto::{
    catalog::v1 as catalog, executor::v1 as executor, identity::v1 as identity, vault::v1 as vault,
};
use secrecy::SecretString;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    model::{self, ConnectorKind, Decision, PilotSpec},
    rpc,
    session::CurrentSession,
    state::AppState,
};

/// Page size for "everything" walks (export).
const WALK_PAGE: u32 = 100;
/// Upper bound on Pilots in one account export (the catalog allows 500).
const MAX_EXPORT_PILOTS: usize = 1000;

/// A UUID path parameter, or `INVALID_ARGUMENT` naming it.
pub fn parse_id(field: &str, text: &str) -> Result<Uuid, Error> {
    text.trim().parse::<Uuid>().map_err(|_| Error::invalid(field, "must be a UUID"))
}

/// A connector name as the vault accepts it, `[a-z][a-z0-9_-]{0,62}`.
pub fn parse_connector_name(text: &str) -> Result<String, Error> {
    let mut chars = text.chars();
    let ok = text.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok { Ok(text.to_owned()) } else { Err(Error::invalid("name", "must match [a-z][a-z0-9_-]{0,62}")) }
}

fn page(size: Option<u32>) -> u32 {
    size.unwrap_or(0).min(100)
}

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

// ---------------------------------------------------------------- identity

/// Register.
pub async fn register(
    st: &AppState,
    source: Option<IpAddr>,
    body: &model::RegisterBody,
) -> Result<model::Account, Error> {
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
) -> Result<(model::Account, NewSession), Error> {
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
pub async fn account(st: &AppState, s: &CurrentSession) -> Result<model::Account, Error> {
    let b = &st.backends;
    let response = rpc!(st.backends, identity.get_account, b.user(&s.token, identity::GetAccountRequest {}))?;
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
    let timeout = st.backends_timeout() * 3;
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
pub async fn export_account(st: &AppState, s: &CurrentSession) -> Result<model::AccountExport, Error> {
    let account = account(st, s).await?;
    let mut pilots = Vec::new();
    let mut token = String::new();
    loop {
        let list = list_pilots(st, s, Some(WALK_PAGE), Some(token)).await?;
        for p in list.pilots {
            let document = export_pilot(st, s, &p.id).await?;
            pilots.push(model::ExportedPilot { id: p.id, enabled: p.enabled, document });
        }
        if list.next_page_token.is_empty() || pilots.len() >= MAX_EXPORT_PILOTS {
            break;
        }
        token = list.next_page_token;
    }
    Ok(model::AccountExport {
        format: "bizops.account-export/v1",
        exported_at: model::rfc3339(OffsetDateTime::now_utc()),
        account,
        pilots,
    })
}

// ---------------------------------------------------------------- catalog

fn pilot_of(st: &AppState, p: Option<catalog::Pilot>) -> Result<model::Pilot, Error> {
    p.map(|p| model::Pilot::from_proto(p, &st.origin))
        .ok_or_else(|| Error::internal(std::io::Error::other("catalog returned no pilot")))
}

/// A page of Pilots.
pub async fn list_pilots(
    st: &AppState,
    s: &CurrentSession,
    page_size: Option<u32>,
    page_token: Option<String>,
) -> Result<model::PilotList, Error> {
    let b = &st.backends;
    let r = rpc!(
        st.backends,
        catalog.list_pilots,
        b.user(
            &s.token,
            catalog::ListPilotsRequest {
                page_size: page(page_size),
                page_token: page_token.clone().unwrap_or_default()
            },
        )
    )?;
    Ok(model::PilotList {
        pilots: r.pilots.into_iter().map(|p| model::Pilot::from_proto(p, &st.origin)).collect(),
        next_page_token: r.next_page_token,
    })
}

/// Create a Pilot; the secret is in this answer only.
pub async fn create_pilot(
    st: &AppState,
    s: &CurrentSession,
    spec: PilotSpec,
    enabled: bool,
) -> Result<model::PilotWithSecret, Error> {
    let b = &st.backends;
    let spec: catalog::PilotSpec = spec.into();
    let r = rpc!(
        st.backends,
        catalog.create_pilot,
        b.user(&s.token, catalog::CreatePilotRequest { spec: Some(spec.clone()), enabled })
    )?;
    Ok(model::PilotWithSecret { pilot: pilot_of(st, r.pilot)?, webhook_secret: r.webhook_secret })
}

/// One Pilot.
pub async fn get_pilot(st: &AppState, s: &CurrentSession, id: &str) -> Result<model::Pilot, Error> {
    let id = parse_id("pilot_id", id)?.to_string();
    let b = &st.backends;
    let r = rpc!(
        st.backends,
        catalog.get_pilot,
        b.user(&s.token, catalog::GetPilotRequest { pilot_id: id.clone() })
    )?;
    pilot_of(st, r.pilot)
}

/// A new version.
pub async fn update_pilot(
    st: &AppState,
    s: &CurrentSession,
    id: &str,
    expected_version: i64,
    spec: PilotSpec,
) -> Result<model::Pilot, Error> {
    let id = parse_id("pilot_id", id)?.to_string();
    let b = &st.backends;
    let spec: catalog::PilotSpec = spec.into();
    let r = rpc!(
        st.backends,
        catalog.update_pilot,
        b.user(
            &s.token,
            catalog::UpdatePilotRequest { pilot_id: id.clone(), expected_version, spec: Some(spec.clone()) },
        )
    )?;
    pilot_of(st, r.pilot)
}

/// Delete a Pilot (its runs go too).
pub async fn delete_pilot(st: &AppState, s: &CurrentSession, id: &str) -> Result<(), Error> {
    let id = parse_id("pilot_id", id)?.to_string();
    let b = &st.backends;
    rpc!(
        st.backends,
        catalog.delete_pilot,
        b.user(&s.token, catalog::DeletePilotRequest { pilot_id: id.clone() })
    )?;
    Ok(())
}

/// Enable or disable.
pub async fn set_enabled(
    st: &AppState,
    s: &CurrentSession,
    id: &str,
    enabled: bool,
) -> Result<model::Pilot, Error> {
    let id = parse_id("pilot_id", id)?.to_string();
    let b = &st.backends;
    let r = rpc!(
        st.backends,
        catalog.set_enabled,
        b.user(&s.token, catalog::SetEnabledRequest { pilot_id: id.clone(), enabled })
    )?;
    pilot_of(st, r.pilot)
}

/// Version history.
pub async fn list_versions(
    st: &AppState,
    s: &CurrentSession,
    id: &str,
    page_size: Option<u32>,
    page_token: Option<String>,
) -> Result<model::VersionList, Error> {
    let id = parse_id("pilot_id", id)?.to_string();
    let b = &st.backends;
    let r = rpc!(
        st.backends,
        catalog.list_versions,
        b.user(
            &s.token,
            catalog::ListVersionsRequest {
                pilot_id: id.clone(),
                page_size: page(page_size),
                page_token: page_token.clone().unwrap_or_default(),
            },
        )
    )?;
    Ok(model::VersionList {
        versions: r
            .versions
            .into_iter()
            .map(|v| model::VersionSummary {
                version: v.version,
                title: v.title,
                step_count: v.step_count,
                created_at: model::ts(v.created_at.as_ref()),
            })
            .collect(),
        next_page_token: r.next_page_token,
    })
}

/// One version.
pub async fn get_version(
    st: &AppState,
    s: &CurrentSession,
    id: &str,
    version: i64,
) -> Result<model::PilotVersion, Error> {
    let id = parse_id("pilot_id", id)?.to_string();
    let b = &st.backends;
    let r = rpc!(
        st.backends,
        catalog.get_version,
        b.user(&s.token, catalog::GetVersionRequest { pilot_id: id.clone(), version })
    )?;
    let v = r.version.ok_or_else(|| Error::internal(std::io::Error::other("catalog returned no version")))?;
    Ok(model::PilotVersion {
        pilot_id: v.pilot_id,
        version: v.version,
        spec: v.spec.map(Into::into).unwrap_or_default(),
        created_at: model::ts(v.created_at.as_ref()),
    })
}

/// The `bizops.pilot/v1` document of a Pilot.
pub async fn export_pilot(st: &AppState, s: &CurrentSession, id: &str) -> Result<serde_json::Value, Error> {
    let id = parse_id("pilot_id", id)?.to_string();
    let b = &st.backends;
    let r = rpc!(
        st.backends,
        catalog.export_pilot,
        b.user(&s.token, catalog::ExportPilotRequest { pilot_id: id.clone() })
    )?;
    serde_json::from_str(&r.json).map_err(Error::internal)
}

/// Import a document as a new Pilot.
pub async fn import_pilot(
    st: &AppState,
    s: &CurrentSession,
    document: &str,
    enabled: bool,
) -> Result<model::PilotWithSecret, Error> {
    let b = &st.backends;
    let r = rpc!(
        st.backends,
        catalog.import_pilot,
        b.user(&s.token, catalog::ImportPilotRequest { json: document.to_owned(), enabled })
    )?;
    Ok(model::PilotWithSecret { pilot: pilot_of(st, r.pilot)?, webhook_secret: r.webhook_secret })
}

/// A new webhook secret.
pub async fn rotate_secret(
    st: &AppState,
    s: &CurrentSession,
    id: &str,
) -> Result<model::RotatedSecret, Error> {
    let id = parse_id("pilot_id", id)?.to_string();
    let b = &st.backends;
    let r = rpc!(
        st.backends,
        catalog.rotate_webhook_secret,
        b.user(&s.token, catalog::RotateWebhookSecretRequest { pilot_id: id.clone() })
    )?;
    Ok(model::RotatedSecret {
        webhook_secret: r.webhook_secret,
        previous_valid_until: model::ts(r.previous_valid_until.as_ref()),
    })
}

// ---------------------------------------------------------------- executor

/// Run now.
pub async fn run_now(
    st: &AppState,
    s: &CurrentSession,
    id: &str,
    payload: Option<serde_json::Value>,
    idempotency_key: Option<String>,
) -> Result<model::TriggerAccepted, Error> {
    let id = parse_id("pilot_id", id)?.to_string();
    let payload_json =
        serde_json::to_string(&payload.unwrap_or_else(|| serde_json::json!({}))).map_err(Error::internal)?;
    // Without a key from the client, one per request: a retried StartRun (the
    // gateway retries UNAVAILABLE) then cannot start a second run.
    let key = idempotency_key.filter(|k| !k.is_empty()).unwrap_or_else(|| Uuid::now_v7().to_string());
    if key.len() > 200 {
        return Err(Error::invalid("idempotency_key", "must be at most 200 characters"));
    }
    let b = &st.backends;
    let r = rpc!(
        st.backends,
        executor.start_run,
        b.user(
            &s.token,
            executor::StartRunRequest {
                pilot_id: id.clone(),
                payload_json: payload_json.clone(),
                idempotency_key: key.clone()
            },
        )
    )?;
    Ok(model::TriggerAccepted { trigger_id: r.trigger_id })
}

/// Runs of a Pilot.
pub async fn list_runs(
    st: &AppState,
    s: &CurrentSession,
    pilot_id: &str,
    page_size: Option<u32>,
    page_token: Option<String>,
) -> Result<model::RunList, Error> {
    let id = parse_id("pilot_id", pilot_id)?.to_string();
    let b = &st.backends;
    // The executor lists whatever runs the caller owns for that id, so another
    // owner's (or no) Pilot would be an empty page; the catalog decides: 404.
    let (pilot, runs) = tokio::join!(get_pilot(st, s, &id), async {
        rpc!(
            st.backends,
            executor.list_runs,
            b.user(
                &s.token,
                executor::ListRunsRequest {
                    pilot_id: id.clone(),
                    page_size: page(page_size),
                    page_token: page_token.clone().unwrap_or_default(),
                },
            )
        )
    });
    pilot?;
    let r = runs?;
    Ok(model::RunList {
        runs: r.runs.into_iter().map(Into::into).collect(),
        next_page_token: r.next_page_token,
    })
}

/// One run with its steps (the raw message; callers convert).
pub async fn get_run_proto(st: &AppState, s: &CurrentSession, run_id: Uuid) -> Result<executor::Run, Error> {
    let b = &st.backends;
    let r = rpc!(
        st.backends,
        executor.get_run,
        b.user(&s.token, executor::GetRunRequest { run_id: run_id.to_string() })
    )?;
    r.run.ok_or_else(|| Error::internal(std::io::Error::other("executor returned no run")))
}

/// One run with its steps.
pub async fn get_run(st: &AppState, s: &CurrentSession, run_id: &str) -> Result<model::Run, Error> {
    let id = parse_id("run_id", run_id)?;
    Ok(get_run_proto(st, s, id).await?.into())
}

/// Cancel a run.
pub async fn cancel_run(st: &AppState, s: &CurrentSession, run_id: &str) -> Result<model::Run, Error> {
    let id = parse_id("run_id", run_id)?.to_string();
    let b = &st.backends;
    let r = rpc!(
        st.backends,
        executor.cancel_run,
        b.user(&s.token, executor::CancelRunRequest { run_id: id.clone() })
    )?;
    r.run.map(Into::into).ok_or_else(|| Error::internal(std::io::Error::other("executor returned no run")))
}

/// Replay a run.
pub async fn replay_run(
    st: &AppState,
    s: &CurrentSession,
    run_id: &str,
    from_failed_step: bool,
) -> Result<model::TriggerAccepted, Error> {
    let id = parse_id("run_id", run_id)?.to_string();
    let b = &st.backends;
    let r = rpc!(
        st.backends,
        executor.replay_run,
        b.user(&s.token, executor::ReplayRunRequest { run_id: id.clone(), from_failed_step })
    )?;
    Ok(model::TriggerAccepted { trigger_id: r.trigger_id })
}

/// Pending approvals.
pub async fn list_approvals(
    st: &AppState,
    s: &CurrentSession,
    page_size: Option<u32>,
    page_token: Option<String>,
) -> Result<model::ApprovalList, Error> {
    let b = &st.backends;
    let r = rpc!(
        st.backends,
        executor.list_approvals,
        b.user(
            &s.token,
            executor::ListApprovalsRequest {
                page_size: page(page_size),
                page_token: page_token.clone().unwrap_or_default()
            },
        )
    )?;
    Ok(model::ApprovalList {
        approvals: r.approvals.into_iter().map(Into::into).collect(),
        next_page_token: r.next_page_token,
    })
}

/// Approve or reject.
pub async fn decide(
    st: &AppState,
    s: &CurrentSession,
    approval_id: &str,
    decision: Decision,
    comment: &str,
) -> Result<model::Approval, Error> {
    let id = parse_id("approval_id", approval_id)?.to_string();
    if comment.chars().count() > 2000 {
        return Err(Error::invalid("comment", "must be at most 2000 characters"));
    }
    let decision = match decision {
        Decision::Approve => executor::Decision::Approve,
        Decision::Reject => executor::Decision::Reject,
    } as i32;
    let b = &st.backends;
    let r = rpc!(
        st.backends,
        executor.decide_approval,
        b.user(
            &s.token,
            executor::DecideApprovalRequest {
                approval_id: id.clone(),
                decision,
                comment: comment.to_owned()
            }
        )
    )?;
    r.approval
        .map(Into::into)
        .ok_or_else(|| Error::internal(std::io::Error::other("executor returned no approval")))
}

// ---------------------------------------------------------------- vault

/// The caller's connectors.
pub async fn list_connectors(st: &AppState, s: &CurrentSession) -> Result<model::ConnectorList, Error> {
    let b = &st.backends;
    let r = rpc!(st.backends, vault.list_credentials, b.user(&s.token, vault::ListCredentialsRequest {}))?;
    Ok(model::ConnectorList { connectors: r.credentials.into_iter().map(Into::into).collect() })
}

/// Connect or replace.
pub async fn put_connector(
    st: &AppState,
    s: &CurrentSession,
    name: &str,
    kind: ConnectorKind,
    value: &str,
) -> Result<model::Connector, Error> {
    let name = parse_connector_name(name)?;
    if value.trim().is_empty() {
        return Err(Error::invalid("value", "is required"));
    }
    let b = &st.backends;
    let r = rpc!(
        st.backends,
        vault.put_credential,
        b.user(
            &s.token,
            vault::PutCredentialRequest {
                name: name.clone(),
                kind: kind.to_proto() as i32,
                value: value.to_owned()
            },
        )
    )?;
    r.credential
        .map(Into::into)
        .ok_or_else(|| Error::internal(std::io::Error::other("vault returned no credential")))
}

/// Live check.
pub async fn test_connector(
    st: &AppState,
    s: &CurrentSession,
    name: &str,
) -> Result<model::ConnectorTest, Error> {
    let name = parse_connector_name(name)?;
    let b = &st.backends;
    let r = rpc!(
        st.backends,
        vault.test_credential,
        b.user(&s.token, vault::TestCredentialRequest { name: name.clone() })
    )?;
    Ok(model::ConnectorTest { ok: r.ok, detail: r.detail, provider_status: r.provider_status })
}

/// Disconnect.
pub async fn delete_connector(st: &AppState, s: &CurrentSession, name: &str) -> Result<(), Error> {
    let name = parse_connector_name(name)?;
    let b = &st.backends;
    rpc!(
        st.backends,
        vault.delete_credential,
        b.user(&s.token, vault::DeleteCredentialRequest { name: name.clone() })
    )?;
    Ok(())
}

impl AppState {
    fn backends_timeout(&self) -> std::time::Duration {
        self.backends.timeout()
    }
}
