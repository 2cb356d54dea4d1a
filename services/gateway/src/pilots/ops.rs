//! What the Pilots' API and pages both do: the catalog calls for Pilots, their
//! versions, export and import, and the webhook secret.

use bizops_errors::Error;
use bizops_proto::catalog::v1 as catalog;

use crate::{
    pilots::model::{
        Pilot, PilotList, PilotSpec, PilotVersion, PilotWithSecret, RotatedSecret, VersionList,
        VersionSummary,
    },
    shared::{
        backend::rpc,
        model::ts,
        ops::{page, parse_id},
        session::CurrentSession,
        state::AppState,
    },
};

fn pilot_of(st: &AppState, p: Option<catalog::Pilot>) -> Result<Pilot, Error> {
    p.map(|p| Pilot::from_proto(p, &st.origin))
        .ok_or_else(|| Error::internal(std::io::Error::other("catalog returned no pilot")))
}

/// A page of Pilots.
pub async fn list_pilots(
    st: &AppState,
    s: &CurrentSession,
    page_size: Option<u32>,
    page_token: Option<String>,
) -> Result<PilotList, Error> {
    let b = &st.backends;
    let r = rpc!(
        st.backends,
        catalog.list_pilots,
        b.user(
            &s.access,
            catalog::ListPilotsRequest {
                page_size: page(page_size),
                page_token: page_token.clone().unwrap_or_default()
            },
        )
    )?;
    Ok(PilotList {
        pilots: r.pilots.into_iter().map(|p| Pilot::from_proto(p, &st.origin)).collect(),
        next_page_token: r.next_page_token,
    })
}

/// Create a Pilot; the secret is in this answer only.
pub async fn create_pilot(
    st: &AppState,
    s: &CurrentSession,
    spec: PilotSpec,
    enabled: bool,
) -> Result<PilotWithSecret, Error> {
    let b = &st.backends;
    let spec: catalog::PilotSpec = spec.into();
    let r = rpc!(
        st.backends,
        catalog.create_pilot,
        b.user(&s.access, catalog::CreatePilotRequest { spec: Some(spec.clone()), enabled })
    )?;
    Ok(PilotWithSecret { pilot: pilot_of(st, r.pilot)?, webhook_secret: r.webhook_secret })
}

/// One Pilot.
pub async fn get_pilot(st: &AppState, s: &CurrentSession, id: &str) -> Result<Pilot, Error> {
    let id = parse_id("pilot_id", id)?.to_string();
    let b = &st.backends;
    let r = rpc!(
        st.backends,
        catalog.get_pilot,
        b.user(&s.access, catalog::GetPilotRequest { pilot_id: id.clone() })
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
) -> Result<Pilot, Error> {
    let id = parse_id("pilot_id", id)?.to_string();
    let b = &st.backends;
    let spec: catalog::PilotSpec = spec.into();
    let r = rpc!(
        st.backends,
        catalog.update_pilot,
        b.user(
            &s.access,
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
        b.user(&s.access, catalog::DeletePilotRequest { pilot_id: id.clone() })
    )?;
    Ok(())
}

/// Enable or disable.
pub async fn set_enabled(st: &AppState, s: &CurrentSession, id: &str, enabled: bool) -> Result<Pilot, Error> {
    let id = parse_id("pilot_id", id)?.to_string();
    let b = &st.backends;
    let r = rpc!(
        st.backends,
        catalog.set_enabled,
        b.user(&s.access, catalog::SetEnabledRequest { pilot_id: id.clone(), enabled })
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
) -> Result<VersionList, Error> {
    let id = parse_id("pilot_id", id)?.to_string();
    let b = &st.backends;
    let r = rpc!(
        st.backends,
        catalog.list_versions,
        b.user(
            &s.access,
            catalog::ListVersionsRequest {
                pilot_id: id.clone(),
                page_size: page(page_size),
                page_token: page_token.clone().unwrap_or_default(),
            },
        )
    )?;
    Ok(VersionList {
        versions: r
            .versions
            .into_iter()
            .map(|v| VersionSummary {
                version: v.version,
                title: v.title,
                step_count: v.step_count,
                created_at: ts(v.created_at.as_ref()),
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
) -> Result<PilotVersion, Error> {
    let id = parse_id("pilot_id", id)?.to_string();
    let b = &st.backends;
    let r = rpc!(
        st.backends,
        catalog.get_version,
        b.user(&s.access, catalog::GetVersionRequest { pilot_id: id.clone(), version })
    )?;
    let v = r.version.ok_or_else(|| Error::internal(std::io::Error::other("catalog returned no version")))?;
    Ok(PilotVersion {
        pilot_id: v.pilot_id,
        version: v.version,
        spec: v.spec.map(Into::into).unwrap_or_default(),
        created_at: ts(v.created_at.as_ref()),
    })
}

/// The `bizops.pilot/v1` document of a Pilot.
pub async fn export_pilot(st: &AppState, s: &CurrentSession, id: &str) -> Result<serde_json::Value, Error> {
    let id = parse_id("pilot_id", id)?.to_string();
    let b = &st.backends;
    let r = rpc!(
        st.backends,
        catalog.export_pilot,
        b.user(&s.access, catalog::ExportPilotRequest { pilot_id: id.clone() })
    )?;
    serde_json::from_str(&r.json).map_err(Error::internal)
}

/// Import a document as a new Pilot.
pub async fn import_pilot(
    st: &AppState,
    s: &CurrentSession,
    document: &str,
    enabled: bool,
) -> Result<PilotWithSecret, Error> {
    let b = &st.backends;
    let r = rpc!(
        st.backends,
        catalog.import_pilot,
        b.user(&s.access, catalog::ImportPilotRequest { json: document.to_owned(), enabled })
    )?;
    Ok(PilotWithSecret { pilot: pilot_of(st, r.pilot)?, webhook_secret: r.webhook_secret })
}

/// A new webhook secret.
pub async fn rotate_secret(st: &AppState, s: &CurrentSession, id: &str) -> Result<RotatedSecret, Error> {
    let id = parse_id("pilot_id", id)?.to_string();
    let b = &st.backends;
    let r = rpc!(
        st.backends,
        catalog.rotate_webhook_secret,
        b.user(&s.access, catalog::RotateWebhookSecretRequest { pilot_id: id.clone() })
    )?;
    Ok(RotatedSecret {
        webhook_secret: r.webhook_secret,
        previous_valid_until: ts(r.previous_valid_until.as_ref()),
    })
}
