//! In-memory fakes of identity, pilot-catalog, credential-vault and executor,
//! implementing the generated service traits, on one in-process tonic server.
//! They keep just enough state to behave like the real services towards the
//! gateway: sessions that can be revoked, owner-scoped data that answers
//! NOT_FOUND to anyone else, and a record of the metadata each call carried.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use bizops_authn::{PublicKey, ServiceVerifier};
use bizops_errors::{Error, ErrorCode};
use bizops_proto::{
    catalog::v1::{
        self as catalog,
        catalog_service_server::{CatalogService, CatalogServiceServer},
    },
    events::v1 as events,
    executor::v1::{
        self as executor,
        executor_service_server::{ExecutorService, ExecutorServiceServer},
    },
    identity::v1::{
        self as identity,
        identity_service_server::{IdentityService, IdentityServiceServer},
    },
    vault::v1::{
        self as vault,
        vault_service_server::{VaultService, VaultServiceServer},
    },
};
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use tonic::{Request, Response, Status};
use uuid::Uuid;

type Reply<T> = Result<Response<T>, Status>;

fn err(code: ErrorCode, message: &str) -> Status {
    Error::new(code, message.to_owned()).into()
}

fn now() -> prost_types::Timestamp {
    bizops_proto::timestamp::to_proto(OffsetDateTime::now_utc())
}

#[derive(Clone)]
pub struct Account {
    pub id: Uuid,
    pub email: String,
    pub password: String,
}

#[derive(Clone)]
pub struct Session {
    pub owner: Uuid,
    pub id: Uuid,
}

#[derive(Clone)]
pub struct FakePilot {
    pub owner: Uuid,
    pub version: i64,
    pub spec: catalog::PilotSpec,
    pub enabled: bool,
    pub secret: String,
}

/// One recorded call: the RPC and its metadata (ASCII values).
#[derive(Debug, Clone)]
pub struct Call {
    pub rpc: &'static str,
    pub metadata: HashMap<String, String>,
}

/// Everything the fakes know.
#[derive(Default)]
pub struct World {
    pub accounts: HashMap<String, Account>,
    pub sessions: HashMap<String, Session>,
    pub pilots: HashMap<Uuid, FakePilot>,
    pub runs: HashMap<Uuid, executor::Run>,
    pub approvals: HashMap<Uuid, executor::Approval>,
    pub credentials: HashMap<(Uuid, String), (vault::CredentialInfo, String)>,
    pub started: Vec<executor::StartRunRequest>,
    pub calls: Vec<Call>,
    /// VerifySession and ExchangeToken calls (identity asked about a session).
    pub verify_session_calls: usize,
    /// ExchangeToken calls alone.
    pub exchange_calls: usize,
    /// Access tokens minted: the session they came from and when they expire.
    /// The other fakes accept only these, until they expire, like the real
    /// services (a revoked session's access token keeps working until then).
    pub access: HashMap<String, (Session, OffsetDateTime)>,
    /// Lifetime of the access tokens ExchangeToken mints (55 s unless a test
    /// shortens it).
    pub access_ttl: Option<time::Duration>,
    /// When set, CreatePilot and UpdatePilot answer INVALID_ARGUMENT with it.
    /// The catalog's refusal of the next spec: message, field path, problem.
    pub reject_spec: Option<(String, String, String)>,
    /// Statuses answered instead, one per call, by RPC name (after the call is
    /// recorded): failures the real services cannot be made to produce.
    pub inject: HashMap<&'static str, VecDeque<Status>>,
}

pub type Shared = Arc<Mutex<World>>;

#[derive(Clone)]
pub struct Fakes {
    pub world: Shared,
    /// Verifies the gateway's service tokens (catalog's VerifyWebhook, identity's forwarding).
    pub gateway_key: PublicKey,
}

impl Fakes {
    fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record<T>(&self, rpc: &'static str, request: &Request<T>) {
        let metadata = request
            .metadata()
            .iter()
            .filter_map(|kv| match kv {
                tonic::metadata::KeyAndValueRef::Ascii(k, v) => {
                    Some((k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
                }
                tonic::metadata::KeyAndValueRef::Binary(..) => None,
            })
            .collect();
        self.lock().calls.push(Call { rpc, metadata });
    }

    fn bearer<T>(request: &Request<T>) -> Option<String> {
        bizops_testkit::bearer_of(request).map(str::to_owned)
    }

    /// The owner behind the request's access token, like the caller layer of
    /// pilot-catalog, credential-vault and executor: a session token is refused.
    fn owner<T>(&self, request: &Request<T>) -> Result<Uuid, Status> {
        let token = Self::bearer(request).ok_or_else(|| err(ErrorCode::Unauthenticated, "no session"))?;
        let w = self.lock();
        if w.sessions.contains_key(&token) {
            return Err(err(ErrorCode::Unauthenticated, "a session token is not accepted here"));
        }
        w.access
            .get(&token)
            .filter(|(_, expires)| *expires > OffsetDateTime::now_utc())
            .map(|(s, _)| s.owner)
            .ok_or_else(|| err(ErrorCode::Unauthenticated, "access token is not valid"))
    }

    /// The owner behind the request's session token (identity's own calls).
    fn session_owner<T>(&self, request: &Request<T>) -> Result<Uuid, Status> {
        let token = Self::bearer(request).ok_or_else(|| err(ErrorCode::Unauthenticated, "no session"))?;
        self.lock()
            .sessions
            .get(&token)
            .map(|s| s.owner)
            .ok_or_else(|| err(ErrorCode::Unauthenticated, "session is not valid"))
    }

    fn service_caller(&self, token: &str, audience: &str) -> Option<String> {
        ServiceVerifier::new(audience, [&self.gateway_key]).verify(token).ok()
    }

    /// The next injected failure of `rpc`, if any.
    fn injected(&self, rpc: &'static str) -> Result<(), Status> {
        match self.lock().inject.get_mut(rpc).and_then(VecDeque::pop_front) {
            Some(status) => Err(status),
            None => Ok(()),
        }
    }

    /// Revokes every session of the account with `email` (as identity would after
    /// an out-of-band revocation).
    pub fn revoke_all(&self, email: &str) {
        let mut w = self.lock();
        let Some(owner) = w.accounts.get(email).map(|a| a.id) else { return };
        w.sessions.retain(|_, s| s.owner != owner);
    }
}

fn new_token() -> String {
    format!("fk.{}.{}", Uuid::now_v7().simple(), Uuid::now_v7().simple())
}

fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(Uuid::now_v7().as_bytes());
    bytes[16..].copy_from_slice(Uuid::now_v7().as_bytes());
    format!("whsec_{}", STANDARD.encode(bytes))
}

fn session(w: &mut World, owner: Uuid) -> identity::Session {
    let token = new_token();
    let id = Uuid::now_v7();
    w.sessions.insert(token.clone(), Session { owner, id });
    identity::Session {
        token,
        session_id: id.to_string(),
        expires_at: Some(bizops_proto::timestamp::to_proto(
            OffsetDateTime::now_utc() + time::Duration::hours(12),
        )),
    }
}

fn account_pb(a: &Account) -> identity::Account {
    identity::Account {
        id: a.id.to_string(),
        email: a.email.clone(),
        display_name: String::new(),
        created_at: Some(now()),
        password_changed_at: Some(now()),
    }
}

#[tonic::async_trait]
impl IdentityService for Fakes {
    async fn register(
        &self,
        request: Request<identity::RegisterRequest>,
    ) -> Reply<identity::RegisterResponse> {
        self.record("Register", &request);
        let r = request.into_inner();
        let email = r.email.trim().to_lowercase();
        if !email.contains('@') {
            return Err(err(ErrorCode::InvalidArgument, "email: is not an email address"));
        }
        if r.password.chars().count() < 12 {
            return Err(err(ErrorCode::WeakPassword, "password: must be at least 12 characters"));
        }
        let mut w = self.lock();
        if w.accounts.contains_key(&email) {
            return Err(err(ErrorCode::AlreadyExists, "an account with this email exists"));
        }
        let account = Account { id: Uuid::now_v7(), email: email.clone(), password: r.password };
        w.accounts.insert(email, account.clone());
        Ok(Response::new(identity::RegisterResponse { account: Some(account_pb(&account)) }))
    }

    async fn login(&self, request: Request<identity::LoginRequest>) -> Reply<identity::LoginResponse> {
        self.record("Login", &request);
        let r = request.into_inner();
        let mut w = self.lock();
        let Some(account) = w.accounts.get(&r.email.trim().to_lowercase()).cloned() else {
            return Err(err(ErrorCode::InvalidCredentials, "email or password is wrong"));
        };
        if account.password != r.password {
            return Err(err(ErrorCode::InvalidCredentials, "email or password is wrong"));
        }
        let s = session(&mut w, account.id);
        Ok(Response::new(identity::LoginResponse { account: Some(account_pb(&account)), session: Some(s) }))
    }

    async fn logout(&self, request: Request<identity::LogoutRequest>) -> Reply<identity::LogoutResponse> {
        self.record("Logout", &request);
        let token = Self::bearer(&request).ok_or_else(|| err(ErrorCode::Unauthenticated, "no session"))?;
        if self.lock().sessions.remove(&token).is_none() {
            return Err(err(ErrorCode::Unauthenticated, "session is not valid"));
        }
        Ok(Response::new(identity::LogoutResponse {}))
    }

    async fn change_password(
        &self,
        request: Request<identity::ChangePasswordRequest>,
    ) -> Reply<identity::ChangePasswordResponse> {
        self.record("ChangePassword", &request);
        let owner = self.session_owner(&request)?;
        let r = request.into_inner();
        let mut w = self.lock();
        let Some(account) = w.accounts.values_mut().find(|a| a.id == owner) else {
            return Err(err(ErrorCode::Unauthenticated, "no account"));
        };
        if account.password != r.current_password {
            return Err(err(ErrorCode::InvalidCredentials, "the current password is wrong"));
        }
        if r.new_password.chars().count() < 12 {
            return Err(err(ErrorCode::WeakPassword, "password: must be at least 12 characters"));
        }
        account.password = r.new_password;
        w.sessions.retain(|_, s| s.owner != owner);
        let s = session(&mut w, owner);
        Ok(Response::new(identity::ChangePasswordResponse { session: Some(s) }))
    }

    async fn verify_session(
        &self,
        request: Request<identity::VerifySessionRequest>,
    ) -> Reply<identity::VerifySessionResponse> {
        let mut w = self.lock();
        w.verify_session_calls += 1;
        let Some(s) = w.sessions.get(&request.get_ref().token).cloned() else {
            return Err(err(ErrorCode::Unauthenticated, "session is not valid"));
        };
        Ok(Response::new(identity::VerifySessionResponse {
            owner_id: s.owner.to_string(),
            session_id: s.id.to_string(),
            expires_at: Some(bizops_proto::timestamp::to_proto(
                OffsetDateTime::now_utc() + time::Duration::hours(12),
            )),
            idle_expires_at: Some(bizops_proto::timestamp::to_proto(
                OffsetDateTime::now_utc() + time::Duration::hours(2),
            )),
        }))
    }

    async fn exchange_token(
        &self,
        request: Request<identity::ExchangeTokenRequest>,
    ) -> Reply<identity::ExchangeTokenResponse> {
        let mut w = self.lock();
        w.verify_session_calls += 1;
        w.exchange_calls += 1;
        let subject = request.into_inner().subject_token;
        let Some(s) = w.sessions.get(&subject).cloned() else {
            return Err(err(ErrorCode::Unauthenticated, "session is not valid"));
        };
        let access = format!("fa.{}.{}", Uuid::now_v7().simple(), Uuid::now_v7().simple());
        let now = OffsetDateTime::now_utc();
        let ttl = w.access_ttl.unwrap_or(time::Duration::seconds(55));
        w.access.insert(access.clone(), (s.clone(), now + ttl));
        Ok(Response::new(identity::ExchangeTokenResponse {
            access_token: access,
            expires_at: Some(bizops_proto::timestamp::to_proto(now + ttl)),
            owner_id: s.owner.to_string(),
            session_id: s.id.to_string(),
            session_expires_at: Some(bizops_proto::timestamp::to_proto(now + time::Duration::hours(12))),
            idle_expires_at: Some(bizops_proto::timestamp::to_proto(now + time::Duration::hours(2))),
        }))
    }

    async fn get_account(
        &self,
        request: Request<identity::GetAccountRequest>,
    ) -> Reply<identity::GetAccountResponse> {
        self.record("GetAccount", &request);
        let owner = self.session_owner(&request)?;
        let w = self.lock();
        let account = w
            .accounts
            .values()
            .find(|a| a.id == owner)
            .ok_or_else(|| err(ErrorCode::NotFound, "no account"))?;
        Ok(Response::new(identity::GetAccountResponse { account: Some(account_pb(account)) }))
    }

    async fn get_jwks(&self, _: Request<identity::GetJwksRequest>) -> Reply<identity::GetJwksResponse> {
        Ok(Response::new(identity::GetJwksResponse::default()))
    }

    async fn delete_account(
        &self,
        request: Request<identity::DeleteAccountRequest>,
    ) -> Reply<identity::DeleteAccountResponse> {
        self.record("DeleteAccount", &request);
        let owner = self.session_owner(&request)?;
        let mut w = self.lock();
        let Some(email) = w.accounts.values().find(|a| a.id == owner).map(|a| a.email.clone()) else {
            return Err(err(ErrorCode::Unauthenticated, "no account"));
        };
        if w.accounts[&email].password != request.get_ref().password {
            return Err(err(ErrorCode::InvalidCredentials, "the password is wrong"));
        }
        w.accounts.remove(&email);
        w.sessions.retain(|_, s| s.owner != owner);
        w.pilots.retain(|_, p| p.owner != owner);
        w.runs.retain(|_, r| r.owner_id != owner.to_string());
        w.credentials.retain(|(o, _), _| *o != owner);
        Ok(Response::new(identity::DeleteAccountResponse { deleted_at: Some(now()) }))
    }
}

fn pilot_pb(id: Uuid, p: &FakePilot) -> catalog::Pilot {
    catalog::Pilot {
        id: id.to_string(),
        owner_id: p.owner.to_string(),
        version: p.version,
        spec: Some(p.spec.clone()),
        enabled: p.enabled,
        created_at: Some(now()),
        updated_at: Some(now()),
        webhook_secret_issued_at: Some(now()),
    }
}

fn parse(id: &str) -> Result<Uuid, Status> {
    id.parse().map_err(|_| err(ErrorCode::InvalidArgument, "id: must be a UUID"))
}

impl Fakes {
    fn own_pilot(&self, owner: Uuid, id: &str) -> Result<(Uuid, FakePilot), Status> {
        let id = parse(id)?;
        self.lock()
            .pilots
            .get(&id)
            .filter(|p| p.owner == owner)
            .cloned()
            .map(|p| (id, p))
            .ok_or_else(|| err(ErrorCode::NotFound, "pilot not found"))
    }

    fn check_spec(&self, spec: &catalog::PilotSpec) -> Result<(), Status> {
        if let Some((message, path, problem)) = self.lock().reject_spec.clone() {
            return Err(Error::new(ErrorCode::InvalidArgument, message).with_field(path, problem).into());
        }
        if spec.title.trim().is_empty() {
            return Err(Error::invalid("title", "is required").into());
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl CatalogService for Fakes {
    async fn create_pilot(
        &self,
        request: Request<catalog::CreatePilotRequest>,
    ) -> Reply<catalog::CreatePilotResponse> {
        let owner = self.owner(&request)?;
        let r = request.into_inner();
        let mut spec = r.spec.unwrap_or_default();
        self.check_spec(&spec)?;
        for s in &mut spec.schedules {
            if s.id.is_empty() {
                s.id = Uuid::now_v7().to_string();
            }
        }
        let id = Uuid::now_v7();
        let pilot = FakePilot { owner, version: 1, spec, enabled: r.enabled, secret: new_secret() };
        self.lock().pilots.insert(id, pilot.clone());
        Ok(Response::new(catalog::CreatePilotResponse {
            pilot: Some(pilot_pb(id, &pilot)),
            webhook_secret: pilot.secret,
        }))
    }

    async fn get_pilot(
        &self,
        request: Request<catalog::GetPilotRequest>,
    ) -> Reply<catalog::GetPilotResponse> {
        let owner = self.owner(&request)?;
        let (id, p) = self.own_pilot(owner, &request.get_ref().pilot_id)?;
        Ok(Response::new(catalog::GetPilotResponse { pilot: Some(pilot_pb(id, &p)) }))
    }

    async fn list_pilots(
        &self,
        request: Request<catalog::ListPilotsRequest>,
    ) -> Reply<catalog::ListPilotsResponse> {
        self.record("ListPilots", &request);
        let owner = self.owner(&request)?;
        let w = self.lock();
        let mut pilots: Vec<_> =
            w.pilots.iter().filter(|(_, p)| p.owner == owner).map(|(id, p)| pilot_pb(*id, p)).collect();
        pilots.sort_by(|a, b| b.id.cmp(&a.id));
        Ok(Response::new(catalog::ListPilotsResponse { pilots, next_page_token: String::new() }))
    }

    async fn update_pilot(
        &self,
        request: Request<catalog::UpdatePilotRequest>,
    ) -> Reply<catalog::UpdatePilotResponse> {
        let owner = self.owner(&request)?;
        let r = request.into_inner();
        let (id, mut p) = self.own_pilot(owner, &r.pilot_id)?;
        if r.expected_version != p.version {
            return Err(err(ErrorCode::StaleVersion, "someone saved a newer version"));
        }
        let spec = r.spec.unwrap_or_default();
        self.check_spec(&spec)?;
        p.spec = spec;
        p.version += 1;
        self.lock().pilots.insert(id, p.clone());
        Ok(Response::new(catalog::UpdatePilotResponse { pilot: Some(pilot_pb(id, &p)) }))
    }

    async fn delete_pilot(
        &self,
        request: Request<catalog::DeletePilotRequest>,
    ) -> Reply<catalog::DeletePilotResponse> {
        let owner = self.owner(&request)?;
        let (id, _) = self.own_pilot(owner, &request.get_ref().pilot_id)?;
        self.lock().pilots.remove(&id);
        Ok(Response::new(catalog::DeletePilotResponse {}))
    }

    async fn set_enabled(
        &self,
        request: Request<catalog::SetEnabledRequest>,
    ) -> Reply<catalog::SetEnabledResponse> {
        let owner = self.owner(&request)?;
        let (id, mut p) = self.own_pilot(owner, &request.get_ref().pilot_id)?;
        p.enabled = request.get_ref().enabled;
        self.lock().pilots.insert(id, p.clone());
        Ok(Response::new(catalog::SetEnabledResponse { pilot: Some(pilot_pb(id, &p)) }))
    }

    async fn list_versions(
        &self,
        request: Request<catalog::ListVersionsRequest>,
    ) -> Reply<catalog::ListVersionsResponse> {
        let owner = self.owner(&request)?;
        let (_, p) = self.own_pilot(owner, &request.get_ref().pilot_id)?;
        let versions = (1..=p.version)
            .rev()
            .map(|v| catalog::PilotVersionSummary {
                version: v,
                title: p.spec.title.clone(),
                step_count: p.spec.steps.len() as u32,
                created_at: Some(now()),
            })
            .collect();
        Ok(Response::new(catalog::ListVersionsResponse { versions, next_page_token: String::new() }))
    }

    async fn get_version(
        &self,
        request: Request<catalog::GetVersionRequest>,
    ) -> Reply<catalog::GetVersionResponse> {
        let owner = self.owner(&request)?;
        let (id, p) = self.own_pilot(owner, &request.get_ref().pilot_id)?;
        if request.get_ref().version != p.version {
            return Err(err(ErrorCode::NotFound, "version not found"));
        }
        Ok(Response::new(catalog::GetVersionResponse {
            version: Some(catalog::PilotVersion {
                pilot_id: id.to_string(),
                owner_id: owner.to_string(),
                version: p.version,
                spec: Some(p.spec),
                created_at: Some(now()),
            }),
        }))
    }

    async fn export_pilot(
        &self,
        request: Request<catalog::ExportPilotRequest>,
    ) -> Reply<catalog::ExportPilotResponse> {
        let owner = self.owner(&request)?;
        let (_, p) = self.own_pilot(owner, &request.get_ref().pilot_id)?;
        let json = serde_json::json!({
            "format": "bizops.pilot/v1",
            "pilot": {"title": p.spec.title, "description": p.spec.description, "steps": []}
        });
        Ok(Response::new(catalog::ExportPilotResponse { json: json.to_string() }))
    }

    async fn import_pilot(
        &self,
        request: Request<catalog::ImportPilotRequest>,
    ) -> Reply<catalog::ImportPilotResponse> {
        let owner = self.owner(&request)?;
        let r = request.into_inner();
        let doc: serde_json::Value = serde_json::from_str(&r.json)
            .map_err(|_| err(ErrorCode::InvalidArgument, "json: is not valid JSON"))?;
        if doc["format"] != "bizops.pilot/v1" {
            return Err(err(ErrorCode::InvalidArgument, "format: must be bizops.pilot/v1"));
        }
        let title = doc["pilot"]["title"].as_str().unwrap_or_default().to_owned();
        let spec = catalog::PilotSpec { title, ..Default::default() };
        self.check_spec(&spec)?;
        let id = Uuid::now_v7();
        let pilot = FakePilot { owner, version: 1, spec, enabled: r.enabled, secret: new_secret() };
        self.lock().pilots.insert(id, pilot.clone());
        Ok(Response::new(catalog::ImportPilotResponse {
            pilot: Some(pilot_pb(id, &pilot)),
            webhook_secret: pilot.secret,
        }))
    }

    async fn rotate_webhook_secret(
        &self,
        request: Request<catalog::RotateWebhookSecretRequest>,
    ) -> Reply<catalog::RotateWebhookSecretResponse> {
        let owner = self.owner(&request)?;
        let (id, mut p) = self.own_pilot(owner, &request.get_ref().pilot_id)?;
        p.secret = new_secret();
        self.lock().pilots.insert(id, p.clone());
        Ok(Response::new(catalog::RotateWebhookSecretResponse {
            webhook_secret: p.secret,
            previous_valid_until: Some(now()),
        }))
    }

    async fn verify_webhook(
        &self,
        request: Request<catalog::VerifyWebhookRequest>,
    ) -> Reply<catalog::VerifyWebhookResponse> {
        self.record("VerifyWebhook", &request);
        self.injected("VerifyWebhook")?;
        let token = Self::bearer(&request).unwrap_or_default();
        if self.service_caller(&token, "catalog").as_deref() != Some("gateway") {
            return Err(err(ErrorCode::PermissionDenied, "this call is internal"));
        }
        let r = request.into_inner();
        let rejected = || err(ErrorCode::WebhookRejected, "webhook not accepted");
        let id: Uuid = r.pilot_id.parse().map_err(|_| rejected())?;
        let pilot = self.lock().pilots.get(&id).cloned().ok_or_else(rejected)?;
        let presented = r
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("x-pilot-secret"))
            .map(|h| h.value.as_str());
        if presented != Some(pilot.secret.as_str()) {
            return Err(rejected());
        }
        if !pilot.enabled {
            return Err(err(ErrorCode::PilotDisabled, "the Pilot is disabled"));
        }
        Ok(Response::new(catalog::VerifyWebhookResponse {
            owner_id: pilot.owner.to_string(),
            pilot_id: id.to_string(),
            pilot_version: pilot.version,
        }))
    }

    async fn list_due_schedules(
        &self,
        _: Request<catalog::ListDueSchedulesRequest>,
    ) -> Reply<catalog::ListDueSchedulesResponse> {
        Err(Status::unimplemented("not used by the gateway"))
    }

    async fn delete_owner_data(
        &self,
        _: Request<catalog::DeleteOwnerDataRequest>,
    ) -> Reply<catalog::DeleteOwnerDataResponse> {
        Err(Status::unimplemented("not used by the gateway"))
    }

    async fn get_version_for_run(
        &self,
        _: Request<catalog::GetVersionForRunRequest>,
    ) -> Reply<catalog::GetVersionForRunResponse> {
        Err(Status::unimplemented("not used by the gateway"))
    }
}

fn credential_kind_ok(kind: vault::ConnectorKind, value: &str) -> bool {
    match kind {
        vault::ConnectorKind::Slack => value.starts_with("https://") || value.starts_with("http://"),
        vault::ConnectorKind::Unspecified => false,
        _ => !value.is_empty(),
    }
}

#[tonic::async_trait]
impl VaultService for Fakes {
    async fn put_credential(
        &self,
        request: Request<vault::PutCredentialRequest>,
    ) -> Reply<vault::PutCredentialResponse> {
        let owner = self.owner(&request)?;
        let r = request.into_inner();
        if !credential_kind_ok(r.kind(), &r.value) {
            return Err(err(ErrorCode::InvalidArgument, "value: is not valid for this kind"));
        }
        let info = vault::CredentialInfo {
            name: r.name.clone(),
            kind: r.kind,
            created_at: Some(now()),
            updated_at: Some(now()),
            last_used_at: None,
            fingerprint: "…f00d".into(),
        };
        self.lock().credentials.insert((owner, r.name), (info.clone(), r.value));
        Ok(Response::new(vault::PutCredentialResponse { credential: Some(info) }))
    }

    async fn list_credentials(
        &self,
        request: Request<vault::ListCredentialsRequest>,
    ) -> Reply<vault::ListCredentialsResponse> {
        let owner = self.owner(&request)?;
        let w = self.lock();
        let mut credentials: Vec<_> =
            w.credentials.iter().filter(|((o, _), _)| *o == owner).map(|(_, (i, _))| i.clone()).collect();
        credentials.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Response::new(vault::ListCredentialsResponse { credentials }))
    }

    async fn delete_credential(
        &self,
        request: Request<vault::DeleteCredentialRequest>,
    ) -> Reply<vault::DeleteCredentialResponse> {
        let owner = self.owner(&request)?;
        let name = request.into_inner().name;
        if self.lock().credentials.remove(&(owner, name)).is_none() {
            return Err(err(ErrorCode::NotFound, "credential not found"));
        }
        Ok(Response::new(vault::DeleteCredentialResponse {}))
    }

    async fn test_credential(
        &self,
        request: Request<vault::TestCredentialRequest>,
    ) -> Reply<vault::TestCredentialResponse> {
        let owner = self.owner(&request)?;
        let name = request.into_inner().name;
        if !self.lock().credentials.contains_key(&(owner, name)) {
            return Err(err(ErrorCode::NotFound, "credential not found"));
        }
        Ok(Response::new(vault::TestCredentialResponse {
            ok: true,
            detail: "the provider accepted it".into(),
            provider_status: 200,
        }))
    }

    async fn resolve_for_run(
        &self,
        _: Request<vault::ResolveForRunRequest>,
    ) -> Reply<vault::ResolveForRunResponse> {
        Err(Status::unimplemented("not used by the gateway"))
    }

    async fn start_key_rotation(
        &self,
        _: Request<vault::StartKeyRotationRequest>,
    ) -> Reply<vault::StartKeyRotationResponse> {
        Err(Status::unimplemented("not used by the gateway"))
    }

    async fn get_key_rotation(
        &self,
        _: Request<vault::GetKeyRotationRequest>,
    ) -> Reply<vault::GetKeyRotationResponse> {
        Err(Status::unimplemented("not used by the gateway"))
    }

    async fn set_min_decryption_version(
        &self,
        _: Request<vault::SetMinDecryptionVersionRequest>,
    ) -> Reply<vault::SetMinDecryptionVersionResponse> {
        Err(Status::unimplemented("not used by the gateway"))
    }

    async fn delete_owner_data(
        &self,
        _: Request<vault::DeleteOwnerDataRequest>,
    ) -> Reply<vault::DeleteOwnerDataResponse> {
        Err(Status::unimplemented("not used by the gateway"))
    }
}

impl Fakes {
    /// Adds a run of `pilot` for its owner, with one step per entry of `steps`
    /// (key, status), and a pending approval when `awaiting` names a step.
    pub fn add_run(
        &self,
        pilot: Uuid,
        status: events::RunStatus,
        steps: &[(&str, events::StepStatus)],
    ) -> Uuid {
        let mut w = self.lock();
        let owner = w.pilots[&pilot].owner;
        let id = Uuid::now_v7();
        let run = executor::Run {
            id: id.to_string(),
            owner_id: owner.to_string(),
            pilot_id: pilot.to_string(),
            pilot_version: 1,
            trigger_id: Uuid::now_v7().to_string(),
            source: events::TriggerSource::Webhook as i32,
            status: status as i32,
            created_at: Some(now()),
            steps: steps
                .iter()
                .map(|(key, status)| executor::StepRun {
                    step_key: (*key).to_owned(),
                    kind: "approval".into(),
                    status: *status as i32,
                    output_preview: "{\"ok\": true}".into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        if status == events::RunStatus::AwaitingApproval {
            let approval = Uuid::now_v7();
            w.approvals.insert(
                approval,
                executor::Approval {
                    id: approval.to_string(),
                    run_id: id.to_string(),
                    pilot_id: pilot.to_string(),
                    step_key: steps.first().map(|s| s.0.to_owned()).unwrap_or_default(),
                    status: executor::ApprovalStatus::Pending as i32,
                    message: "Post it to Slack?".into(),
                    created_at: Some(now()),
                    expires_at: Some(now()),
                    ..Default::default()
                },
            );
        }
        w.runs.insert(id, run);
        id
    }

    fn own_run(&self, owner: Uuid, id: &str) -> Result<executor::Run, Status> {
        let id = parse(id)?;
        self.lock()
            .runs
            .get(&id)
            .filter(|r| r.owner_id == owner.to_string())
            .cloned()
            .ok_or_else(|| err(ErrorCode::NotFound, "run not found"))
    }
}

#[tonic::async_trait]
impl ExecutorService for Fakes {
    async fn start_run(
        &self,
        request: Request<executor::StartRunRequest>,
    ) -> Reply<executor::StartRunResponse> {
        let owner = self.owner(&request)?;
        let r = request.into_inner();
        let (_, pilot) = self.own_pilot(owner, &r.pilot_id)?;
        if !pilot.enabled {
            return Err(err(ErrorCode::PilotDisabled, "the Pilot is disabled"));
        }
        self.lock().started.push(r);
        self.injected("StartRun")?;
        Ok(Response::new(executor::StartRunResponse { trigger_id: Uuid::now_v7().to_string() }))
    }

    async fn get_run(&self, request: Request<executor::GetRunRequest>) -> Reply<executor::GetRunResponse> {
        let owner = self.owner(&request)?;
        let run = self.own_run(owner, &request.get_ref().run_id)?;
        Ok(Response::new(executor::GetRunResponse { run: Some(run) }))
    }

    async fn list_runs(
        &self,
        request: Request<executor::ListRunsRequest>,
    ) -> Reply<executor::ListRunsResponse> {
        let owner = self.owner(&request)?;
        let (id, _) = self.own_pilot(owner, &request.get_ref().pilot_id)?;
        let w = self.lock();
        let runs = w
            .runs
            .values()
            .filter(|r| r.pilot_id == id.to_string())
            .map(|r| executor::Run { steps: Vec::new(), ..r.clone() })
            .collect();
        Ok(Response::new(executor::ListRunsResponse { runs, next_page_token: String::new() }))
    }

    async fn cancel_run(
        &self,
        request: Request<executor::CancelRunRequest>,
    ) -> Reply<executor::CancelRunResponse> {
        let owner = self.owner(&request)?;
        let mut run = self.own_run(owner, &request.get_ref().run_id)?;
        if run.status() == events::RunStatus::Succeeded {
            return Err(err(ErrorCode::FailedPrecondition, "the run has finished"));
        }
        run.status = events::RunStatus::Cancelled as i32;
        self.lock().runs.insert(parse(&run.id)?, run.clone());
        Ok(Response::new(executor::CancelRunResponse { run: Some(run) }))
    }

    async fn replay_run(
        &self,
        request: Request<executor::ReplayRunRequest>,
    ) -> Reply<executor::ReplayRunResponse> {
        let owner = self.owner(&request)?;
        self.own_run(owner, &request.get_ref().run_id)?;
        Ok(Response::new(executor::ReplayRunResponse { trigger_id: Uuid::now_v7().to_string() }))
    }

    async fn list_approvals(
        &self,
        request: Request<executor::ListApprovalsRequest>,
    ) -> Reply<executor::ListApprovalsResponse> {
        let owner = self.owner(&request)?.to_string();
        let w = self.lock();
        let approvals = w
            .approvals
            .values()
            .filter(|a| a.status() == executor::ApprovalStatus::Pending)
            .filter(|a| {
                w.runs.get(&a.run_id.parse().unwrap_or_default()).is_some_and(|r| r.owner_id == owner)
            })
            .cloned()
            .collect();
        Ok(Response::new(executor::ListApprovalsResponse { approvals, next_page_token: String::new() }))
    }

    async fn decide_approval(
        &self,
        request: Request<executor::DecideApprovalRequest>,
    ) -> Reply<executor::DecideApprovalResponse> {
        let owner = self.owner(&request)?.to_string();
        let r = request.into_inner();
        let id = parse(&r.approval_id)?;
        let mut w = self.lock();
        let Some(approval) = w.approvals.get(&id).cloned() else {
            return Err(err(ErrorCode::NotFound, "approval not found"));
        };
        let run_id: Uuid = approval.run_id.parse().unwrap_or_default();
        if w.runs.get(&run_id).is_none_or(|run| run.owner_id != owner) {
            return Err(err(ErrorCode::NotFound, "approval not found"));
        }
        let approve = r.decision() == executor::Decision::Approve;
        let decided = executor::Approval {
            status: if approve {
                executor::ApprovalStatus::Approved
            } else {
                executor::ApprovalStatus::Rejected
            } as i32,
            decided_by: owner,
            decided_at: Some(now()),
            comment: r.comment,
            ..approval
        };
        w.approvals.insert(id, decided.clone());
        if let Some(run) = w.runs.get_mut(&run_id) {
            run.status =
                if approve { events::RunStatus::Running } else { events::RunStatus::Rejected } as i32;
        }
        Ok(Response::new(executor::DecideApprovalResponse { approval: Some(decided) }))
    }

    async fn delete_pilot_data(
        &self,
        _: Request<executor::DeletePilotDataRequest>,
    ) -> Reply<executor::DeletePilotDataResponse> {
        Err(Status::unimplemented("not used by the gateway"))
    }

    async fn delete_owner_data(
        &self,
        _: Request<executor::DeleteOwnerDataRequest>,
    ) -> Reply<executor::DeleteOwnerDataResponse> {
        Err(Status::unimplemented("not used by the gateway"))
    }
}

/// The four fakes on one port.
pub struct FakeServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl FakeServer {
    pub async fn start(fakes: Fakes) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind fakes");
        let addr = listener.local_addr().expect("fakes addr");
        let server = tonic::transport::Server::builder()
            .add_service(IdentityServiceServer::new(fakes.clone()))
            .add_service(CatalogServiceServer::new(fakes.clone()))
            .add_service(VaultServiceServer::new(fakes.clone()))
            .add_service(ExecutorServiceServer::new(fakes))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        let task = tokio::spawn(async move {
            let _ = server.await;
        });
        Self { addr, task }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
