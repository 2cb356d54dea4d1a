//! What the connectors' API and pages both do: the vault calls to list,
//! connect, test and disconnect credentials.

use bizops_errors::Error;
use bizops_proto::vault::v1 as vault;

use crate::{
    connectors::model::{Connector, ConnectorKind, ConnectorList, ConnectorTest},
    shared::{backend::rpc, session::CurrentSession, state::AppState},
};

/// A connector name as the vault accepts it, `[a-z][a-z0-9_-]{0,62}`.
pub fn parse_connector_name(text: &str) -> Result<String, Error> {
    let mut chars = text.chars();
    let ok = text.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok { Ok(text.to_owned()) } else { Err(Error::invalid("name", "must match [a-z][a-z0-9_-]{0,62}")) }
}

/// The caller's connectors.
pub async fn list_connectors(st: &AppState, s: &CurrentSession) -> Result<ConnectorList, Error> {
    let b = &st.backends;
    let r = rpc!(st.backends, vault.list_credentials, b.user(&s.access, vault::ListCredentialsRequest {}))?;
    Ok(ConnectorList { connectors: r.credentials.into_iter().map(Into::into).collect() })
}

/// Connect or replace.
pub async fn put_connector(
    st: &AppState,
    s: &CurrentSession,
    name: &str,
    kind: ConnectorKind,
    value: &str,
) -> Result<Connector, Error> {
    let name = parse_connector_name(name)?;
    if value.trim().is_empty() {
        return Err(Error::invalid("value", "is required"));
    }
    let b = &st.backends;
    let r = rpc!(
        st.backends,
        vault.put_credential,
        b.user(
            &s.access,
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
pub async fn test_connector(st: &AppState, s: &CurrentSession, name: &str) -> Result<ConnectorTest, Error> {
    let name = parse_connector_name(name)?;
    let b = &st.backends;
    let r = rpc!(
        st.backends,
        vault.test_credential,
        b.user(&s.access, vault::TestCredentialRequest { name: name.clone() })
    )?;
    Ok(ConnectorTest { ok: r.ok, detail: r.detail, provider_status: r.provider_status })
}

/// Disconnect.
pub async fn delete_connector(st: &AppState, s: &CurrentSession, name: &str) -> Result<(), Error> {
    let name = parse_connector_name(name)?;
    let b = &st.backends;
    rpc!(
        st.backends,
        vault.delete_credential,
        b.user(&s.access, vault::DeleteCredentialRequest { name: name.clone() })
    )?;
    Ok(())
}
