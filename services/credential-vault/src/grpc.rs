//! The gRPC edge of the vault: validation into newtypes, ownership from the verified
//! caller, and every error mapped to one stable code (internal detail is logged).
//!
//! Who may call what:
//!
//! | RPC | caller |
//! |---|---|
//! | PutCredential, ListCredentials, DeleteCredential, TestCredential | the owner's session |
//! | ResolveForRun | service `executor` |
//! | StartKeyRotation, GetKeyRotation, SetMinDecryptionVersion | services in `key_admins` |
//! | DeleteOwnerData | service `identity` |

use std::{collections::HashSet, sync::Arc};

use bizops_authn::{OwnerId, require_service, require_user};
use bizops_errors::{Error, ErrorCode};
use bizops_proto::{
    timestamp::to_proto,
    vault::v1::{self as pb, vault_service_server::VaultService},
};
use bizops_runtime::clock::Clock;
use secrecy::{ExposeSecret as _, SecretString};
use tonic::{Request, Response, Status};
use uuid::Uuid;
use zeroize::{Zeroize as _, Zeroizing};

use crate::{
    config::LimitsConfig,
    connectors::{self, Checker, Connector},
    crypto::{Binding, CryptoError, KeyRing},
    rotation::{DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE, Rotator, StartError, parse_job_id},
    store::{CredentialMeta, CredentialStore, SealedRow},
    system::{JobRow, MinVersion, SystemStore},
};

/// The only service that may resolve plaintext values.
pub const RESOLVER: &str = "executor";
/// The only service that may delete an owner's data.
pub const OWNER_DELETER: &str = "identity";

/// A credential name: `[a-z][a-z0-9_-]{0,62}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CredentialName(String);

impl CredentialName {
    /// Parses a name from an RPC field, naming the field on error.
    pub fn parse(field: &str, text: &str) -> Result<Self, Error> {
        let mut chars = text.chars();
        let valid = text.len() <= 63
            && chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !valid {
            return Err(Error::invalid(
                field,
                "must be 1-63 characters: a lowercase letter, then lowercase letters, digits, `_` or `-`",
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Everything the RPC handlers share.
pub struct Vault<S> {
    pub(crate) store: S,
    pub(crate) system: SystemStore,
    pub(crate) keys: Arc<KeyRing>,
    pub(crate) checker: Checker,
    pub(crate) rotator: Rotator,
    pub(crate) limits: LimitsConfig,
    pub(crate) key_admins: Vec<String>,
    /// Remembered absence of credentials (see [`crate::absence`]).
    pub(crate) absence: Arc<crate::absence::Absence>,
    /// Where "now" comes from (the same clock as `absence`'s).
    pub(crate) clock: Arc<dyn Clock>,
}

fn info_pb(m: &CredentialMeta) -> pb::CredentialInfo {
    pb::CredentialInfo {
        name: m.name.clone(),
        kind: connectors::by_name(&m.kind).map_or(pb::ConnectorKind::Unspecified, |c| c.proto()) as i32,
        created_at: Some(to_proto(m.created_at)),
        updated_at: Some(to_proto(m.updated_at)),
        last_used_at: m.last_used_at.map(to_proto),
        fingerprint: m.fingerprint.clone(),
    }
}

fn job_pb(j: &JobRow) -> pb::KeyRotation {
    let state = match j.state.as_str() {
        "running" => pb::RotationState::Running,
        "completed" => pb::RotationState::Completed,
        "failed" => pb::RotationState::Failed,
        _ => pb::RotationState::Unspecified,
    };
    pb::KeyRotation {
        job_id: j.id.to_string(),
        state: state as i32,
        target_kek_version: u32::try_from(j.target_version).unwrap_or(0),
        total: u64::try_from(j.total).unwrap_or(0),
        done: u64::try_from(j.done).unwrap_or(0),
        failed: u64::try_from(j.failed).unwrap_or(0),
        started_at: Some(to_proto(j.started_at)),
        finished_at: j.finished_at.map(to_proto),
    }
}

/// Turns a decrypted value into a string without copying it: the buffer becomes
/// the string, still wiped on drop. `None` (the bytes wiped) when it is not UTF-8.
fn into_utf8(mut plain: Zeroizing<Vec<u8>>) -> Option<Zeroizing<String>> {
    match String::from_utf8(std::mem::take(&mut *plain)) {
        Ok(text) => Some(Zeroizing::new(text)),
        Err(e) => {
            e.into_bytes().zeroize();
            None
        }
    }
}

/// What an operator or user can do about a credential that does not decrypt.
fn decrypt_hint(e: &CryptoError) -> &'static str {
    match e {
        CryptoError::Retired { .. } => {
            "an operator must finish a key rotation or lower the minimum decryption version"
        }
        CryptoError::UnknownKek(_) => "an operator must add that KEK version to the vault's keyring",
        _ => "store the credential again",
    }
}

impl<S: CredentialStore> Vault<S> {
    /// Decrypts a stored value, failing closed with a clear, value-free error.
    fn open(&self, row: &SealedRow) -> Result<Zeroizing<Vec<u8>>, Error> {
        let binding =
            Binding { owner: OwnerId(row.owner_id), credential_id: row.id, kind: &row.kind, name: &row.name };
        let kek_version = u32::try_from(row.kek_version).unwrap_or(0);
        let min = u32::try_from(row.min_decryption_version).unwrap_or(0);
        self.keys.open(&binding, &row.ciphertext, &row.wrapped_key, kek_version, min).map_err(|e| {
            metrics::counter!("vault_decrypt_failures_total").increment(1);
            tracing::error!(credential_id = %row.id, owner_id = %row.owner_id, kek_version = row.kek_version,
                error = %e, "credential could not be decrypted");
            Error::new(
                ErrorCode::FailedPrecondition,
                format!("credential `{}` cannot be decrypted: {e}; {}", row.name, decrypt_hint(&e)),
            )
        })
    }

    async fn put(
        &self,
        owner: OwnerId,
        mut req: pb::PutCredentialRequest,
    ) -> Result<pb::PutCredentialResponse, Error> {
        // Taken out of the message at once, wiped when dropped.
        let value = Zeroizing::new(std::mem::take(&mut req.value));
        let name = CredentialName::parse("name", &req.name)?;
        let connector = connectors::by_proto(req.kind).ok_or_else(|| {
            let kinds: Vec<&str> = connectors::CONNECTORS.iter().map(|c| c.name()).collect();
            Error::invalid("kind", format!("must be one of {}", kinds.join(", ")))
        })?;
        if value.len() > self.limits.max_value_bytes {
            return Err(Error::new(
                ErrorCode::PayloadTooLarge,
                format!("value: must be at most {} bytes", self.limits.max_value_bytes),
            ));
        }
        connector
            .validate(&value, self.checker.config())
            .map_err(|problem| Error::invalid("value", problem))?;
        let keys = &self.keys;
        let meta = self
            .store
            .put(
                owner,
                name.as_str(),
                connector.name(),
                self.limits.max_credentials_per_owner,
                self.clock.now(),
                |id| {
                    keys.seal(
                        &Binding { owner, credential_id: id, kind: connector.name(), name: name.as_str() },
                        value.as_bytes(),
                    )
                },
            )
            .await?;
        self.absence.stored(owner.as_uuid());
        metrics::counter!("vault_credentials_put_total", "kind" => connector.name()).increment(1);
        tracing::info!(owner_id = %owner, credential_id = %meta.id, name = %meta.name, kind = connector.name(),
            kek_version = keys.active_version(), "credential stored");
        Ok(pb::PutCredentialResponse { credential: Some(info_pb(&meta)) })
    }

    async fn list(&self, owner: OwnerId) -> Result<pb::ListCredentialsResponse, Error> {
        let rows = self.store.list(owner).await?;
        Ok(pb::ListCredentialsResponse { credentials: rows.iter().map(info_pb).collect() })
    }

    async fn delete(
        &self,
        owner: OwnerId,
        req: pb::DeleteCredentialRequest,
    ) -> Result<pb::DeleteCredentialResponse, Error> {
        let name = CredentialName::parse("name", &req.name)?;
        if !self.store.delete(owner, name.as_str()).await? {
            return Err(Error::not_found("credential"));
        }
        metrics::counter!("vault_credentials_deleted_total").increment(1);
        tracing::info!(owner_id = %owner, name = %name.as_str(), "credential deleted");
        Ok(pb::DeleteCredentialResponse {})
    }

    async fn test(
        &self,
        owner: OwnerId,
        req: pb::TestCredentialRequest,
    ) -> Result<pb::TestCredentialResponse, Error> {
        let name = CredentialName::parse("name", &req.name)?;
        let rows = self.store.sealed(owner, std::slice::from_ref(&name.0)).await?;
        let row = rows.into_iter().next().ok_or_else(|| Error::not_found("credential"))?;
        let connector: &dyn Connector = connectors::by_name(&row.kind).ok_or_else(|| {
            Error::internal(format!("credential {} has unknown kind {:?}", row.id, row.kind))
        })?;
        if !connector.live_check() {
            return Err(Error::new(
                ErrorCode::FailedPrecondition,
                format!(
                    "name: `{}` credentials have nothing to test against; an HTTP step uses them with the URL it names",
                    connector.name()
                ),
            ));
        }
        let plain = self.open(&row)?;
        let value = SecretString::from(
            std::str::from_utf8(&plain)
                .map_err(|_| Error::internal(format!("credential {} is not UTF-8", row.id)))?,
        );
        drop(plain);
        // The configuration may have changed since the value was stored (e.g. a Slack
        // host no longer allowed): a value is only ever sent where it is allowed now.
        connector.validate(value.expose_secret(), self.checker.config()).map_err(|problem| {
            Error::new(
                ErrorCode::FailedPrecondition,
                format!("name: the stored value is not valid any more ({problem}); store it again"),
            )
        })?;
        // No transaction is open here: the live check is a network call.
        let outcome = self
            .checker
            .check(connector, &value)
            .await
            .map_err(|problem| Error::internal(format!("live check of credential {}: {problem}", row.id)))?
            .ok_or_else(|| Error::new(ErrorCode::FailedPrecondition, "name: nothing to test against"))?;
        let result = if outcome.verdict.ok { "ok" } else { "rejected" };
        metrics::counter!("vault_credential_tests_total", "kind" => connector.name(), "result" => result)
            .increment(1);
        tracing::info!(owner_id = %owner, credential_id = %row.id, kind = connector.name(), result,
            provider_status = outcome.provider_status, "credential tested");
        Ok(pb::TestCredentialResponse {
            ok: outcome.verdict.ok,
            detail: outcome.verdict.detail,
            provider_status: u32::from(outcome.provider_status),
        })
    }

    async fn resolve(&self, req: pb::ResolveForRunRequest) -> Result<pb::ResolveForRunResponse, Error> {
        let owner = OwnerId::parse("owner_id", &req.owner_id)?;
        let run_id: Uuid =
            req.run_id.trim().parse().map_err(|_| Error::invalid("run_id", "must be a UUID"))?;
        let max = self.limits.max_credentials_per_owner as usize;
        if req.names.len() > max {
            return Err(Error::invalid("names", format!("at most {max} names")));
        }
        let mut seen = HashSet::new();
        let mut names = Vec::with_capacity(req.names.len());
        for (i, n) in req.names.iter().enumerate() {
            let name = CredentialName::parse(&format!("names[{i}]"), n)?;
            if seen.insert(name.0.clone()) {
                names.push(name.0);
            }
        }
        if self.absence.is_absent(owner.as_uuid(), &names) {
            return Ok(pb::ResolveForRunResponse { credentials: Vec::new(), missing: names });
        }
        let generation = self.absence.generation();
        let rows = self.store.sealed(owner, &names).await?;
        if rows.is_empty() {
            self.absence.remember(owner.as_uuid(), names.clone(), generation);
        }
        // Every value stays in its own wiped-on-drop decryption buffer until the
        // response is built, so an error below (another row, mark_used) wipes the
        // values already decrypted.
        let mut values: Vec<(&SealedRow, Zeroizing<String>)> = Vec::with_capacity(rows.len());
        for row in &rows {
            let value = into_utf8(self.open(row)?)
                .ok_or_else(|| Error::internal(format!("credential {} is not UTF-8", row.id)))?;
            values.push((row, value));
        }
        let found: HashSet<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        let missing: Vec<String> = names.iter().filter(|n| !found.contains(n.as_str())).cloned().collect();
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        self.store.mark_used(owner, &ids, self.clock.now()).await?;
        // The residual: the protobuf message needs a plain `String`, and tonic drops
        // the message (and its encode buffer) after sending without wiping either.
        // Each value's decryption buffer is moved into the message, not copied, so
        // that unwiped `String` is the only copy of the plaintext left behind.
        let credentials: Vec<pb::ResolvedCredential> = values
            .into_iter()
            .map(|(row, mut value)| {
                let kind =
                    connectors::by_name(&row.kind).map_or(pb::ConnectorKind::Unspecified, |c| c.proto());
                pb::ResolvedCredential {
                    name: row.name.clone(),
                    kind: kind as i32,
                    value: std::mem::take(&mut *value),
                }
            })
            .collect();
        metrics::counter!("vault_credentials_resolved_total").increment(credentials.len() as u64);
        tracing::info!(owner_id = %owner, run_id = %run_id, resolved = credentials.len(), missing = missing.len(),
            "credentials resolved for a run");
        Ok(pb::ResolveForRunResponse { credentials, missing })
    }

    async fn start_rotation(
        &self,
        req: pb::StartKeyRotationRequest,
    ) -> Result<pb::StartKeyRotationResponse, Error> {
        let batch = match req.batch_size {
            0 => DEFAULT_BATCH_SIZE,
            n if n <= MAX_BATCH_SIZE => n,
            _ => return Err(Error::invalid("batch_size", format!("must be at most {MAX_BATCH_SIZE}"))),
        };
        let (job, _) = self.rotator.start(batch).await.map_err(|e| match e {
            e @ StartError::KeyringBehind { .. } => Error::new(ErrorCode::FailedPrecondition, e.to_string()),
            StartError::Db(e) => Error::internal(e),
        })?;
        Ok(pb::StartKeyRotationResponse { job_id: job.id.to_string() })
    }

    async fn get_rotation(
        &self,
        req: pb::GetKeyRotationRequest,
    ) -> Result<pb::GetKeyRotationResponse, Error> {
        let id = parse_job_id(&req.job_id).ok_or_else(|| Error::invalid("job_id", "must be a UUID"))?;
        let job = self
            .system
            .job(id)
            .await
            .map_err(Error::internal)?
            .ok_or_else(|| Error::not_found("rotation job"))?;
        Ok(pb::GetKeyRotationResponse { rotation: Some(job_pb(&job)) })
    }

    async fn set_min_version(
        &self,
        caller: &str,
        req: pb::SetMinDecryptionVersionRequest,
    ) -> Result<pb::SetMinDecryptionVersionResponse, Error> {
        let version = req.min_decryption_version;
        let active = self.keys.active_version();
        if version > active {
            return Err(Error::new(
                ErrorCode::FailedPrecondition,
                format!(
                    "min_decryption_version: {version} is above the active KEK version {active}; \
                     new credentials could not be decrypted"
                ),
            ));
        }
        let below = match self
            .system
            .set_min_decryption_version(version, req.force)
            .await
            .map_err(Error::internal)?
        {
            MinVersion::Set { below } => below,
            MinVersion::Refused { below } => {
                let credentials = if below == 1 {
                    "1 credential is".to_owned()
                } else {
                    format!("{below} credentials are")
                };
                return Err(Error::new(
                    ErrorCode::FailedPrecondition,
                    format!(
                        "min_decryption_version: {credentials} still wrapped under a KEK version below {version} \
                         and would stop decrypting; let a key rotation finish first (StartKeyRotation, then \
                         GetKeyRotation until it completes), or set force to retire the version anyway"
                    ),
                ));
            }
        };
        tracing::warn!(
            caller,
            min_decryption_version = version,
            credentials_below = below,
            forced = req.force,
            "minimum decryption version set"
        );
        Ok(pb::SetMinDecryptionVersionResponse {
            min_decryption_version: version,
            credentials_below: u64::try_from(below).unwrap_or(0),
        })
    }

    async fn delete_owner(
        &self,
        req: pb::DeleteOwnerDataRequest,
    ) -> Result<pb::DeleteOwnerDataResponse, Error> {
        let owner = OwnerId::parse("owner_id", &req.owner_id)?;
        let deleted = self.system.delete_owner_data(owner).await.map_err(Error::internal)?;
        metrics::counter!("vault_owner_data_deleted_total").increment(1);
        tracing::info!(owner_id = %owner, credentials_deleted = deleted, "owner data deleted");
        Ok(pb::DeleteOwnerDataResponse { credentials_deleted: deleted })
    }

    fn require_key_admin<T>(&self, request: &Request<T>) -> Result<String, Error> {
        let admins: Vec<&str> = self.key_admins.iter().map(String::as_str).collect();
        require_service(request, &admins)
    }
}

fn reply<T>(result: Result<T, Error>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl<S: CredentialStore> VaultService for Vault<S> {
    #[tracing::instrument(skip_all)]
    async fn put_credential(
        &self,
        request: Request<pb::PutCredentialRequest>,
    ) -> Result<Response<pb::PutCredentialResponse>, Status> {
        reply(
            async {
                let user = require_user(&request)?;
                self.put(user.owner_id, request.into_inner()).await
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all)]
    async fn list_credentials(
        &self,
        request: Request<pb::ListCredentialsRequest>,
    ) -> Result<Response<pb::ListCredentialsResponse>, Status> {
        reply(
            async {
                let user = require_user(&request)?;
                self.list(user.owner_id).await
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all)]
    async fn delete_credential(
        &self,
        request: Request<pb::DeleteCredentialRequest>,
    ) -> Result<Response<pb::DeleteCredentialResponse>, Status> {
        reply(
            async {
                let user = require_user(&request)?;
                self.delete(user.owner_id, request.into_inner()).await
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all)]
    async fn test_credential(
        &self,
        request: Request<pb::TestCredentialRequest>,
    ) -> Result<Response<pb::TestCredentialResponse>, Status> {
        reply(
            async {
                let user = require_user(&request)?;
                self.test(user.owner_id, request.into_inner()).await
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all)]
    async fn resolve_for_run(
        &self,
        request: Request<pb::ResolveForRunRequest>,
    ) -> Result<Response<pb::ResolveForRunResponse>, Status> {
        reply(
            async {
                require_service(&request, &[RESOLVER])?;
                self.resolve(request.into_inner()).await
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all)]
    async fn start_key_rotation(
        &self,
        request: Request<pb::StartKeyRotationRequest>,
    ) -> Result<Response<pb::StartKeyRotationResponse>, Status> {
        reply(
            async {
                self.require_key_admin(&request)?;
                self.start_rotation(request.into_inner()).await
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all)]
    async fn get_key_rotation(
        &self,
        request: Request<pb::GetKeyRotationRequest>,
    ) -> Result<Response<pb::GetKeyRotationResponse>, Status> {
        reply(
            async {
                self.require_key_admin(&request)?;
                self.get_rotation(request.into_inner()).await
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all)]
    async fn set_min_decryption_version(
        &self,
        request: Request<pb::SetMinDecryptionVersionRequest>,
    ) -> Result<Response<pb::SetMinDecryptionVersionResponse>, Status> {
        reply(
            async {
                let caller = self.require_key_admin(&request)?;
                self.set_min_version(&caller, request.into_inner()).await
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all)]
    async fn delete_owner_data(
        &self,
        request: Request<pb::DeleteOwnerDataRequest>,
    ) -> Result<Response<pb::DeleteOwnerDataResponse>, Status> {
        reply(
            async {
                require_service(&request, &[OWNER_DELETER])?;
                self.delete_owner(request.into_inner()).await
            }
            .await,
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn decrypted_values_become_strings_without_a_copy() {
        let plain = Zeroizing::new(b"bearer-Secret-Token".to_vec());
        let at = plain.as_ptr();
        let text = into_utf8(plain).unwrap();
        assert_eq!(text.as_str(), "bearer-Secret-Token");
        assert_eq!(text.as_ptr(), at, "the decryption buffer itself, not a copy");
        assert!(into_utf8(Zeroizing::new(vec![0x66, 0xff, 0x66])).is_none());
    }

    #[test]
    fn credential_names_follow_the_pattern() {
        for ok in ["a", "slack", "team-alerts_2", &format!("a{}", "b".repeat(62))] {
            assert_eq!(CredentialName::parse("name", ok).unwrap().as_str(), ok);
        }
        for bad in
            ["", "A", "1abc", "-abc", "abc def", "abc.def", "äbc", &format!("a{}", "b".repeat(63)), "abc\n"]
        {
            let err = CredentialName::parse("name", bad).unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidArgument);
            assert!(err.message().starts_with("name:"));
        }
    }
}
