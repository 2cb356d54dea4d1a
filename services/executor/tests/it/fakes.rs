//! In-process fakes of pilot-catalog and credential-vault: just enough of their
//! contracts for the executor, with in-memory data and a record of calls.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use bizops_proto::{
    catalog::v1::{self as cpb, catalog_service_server as cs},
    vault::v1::{self as vpb, vault_service_server as vs},
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

#[derive(Clone, Default)]
pub struct CatalogData {
    /// (pilot, version) → (owner, spec, enabled)
    pub versions: Arc<Mutex<HashMap<(Uuid, i64), (Uuid, cpb::PilotSpec, bool)>>>,
    /// What ListDueSchedules answers (filtered by the window, in pages).
    pub due: Arc<Mutex<Vec<cpb::DueSchedule>>>,
    /// Ticks per ListDueSchedules page (0: the request's limit).
    pub due_page: Arc<std::sync::atomic::AtomicUsize>,
    /// Session verifier for GetPilot (called with the user's token).
    pub sessions: Arc<Mutex<Option<bizops_authn::SessionVerifier>>>,
}

impl CatalogData {
    pub fn put(&self, owner: Uuid, pilot: Uuid, version: i64, spec: cpb::PilotSpec) {
        self.versions.lock().unwrap().insert((pilot, version), (owner, spec, true));
    }

    pub fn remove_pilot(&self, pilot: Uuid) {
        self.versions.lock().unwrap().retain(|(p, _), _| *p != pilot);
    }
}

pub struct FakeCatalog(pub CatalogData);

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not part of the fake"))
}

#[tonic::async_trait]
impl cs::CatalogService for FakeCatalog {
    async fn create_pilot(
        &self,
        _: Request<cpb::CreatePilotRequest>,
    ) -> Result<Response<cpb::CreatePilotResponse>, Status> {
        unimplemented()
    }
    async fn get_pilot(
        &self,
        r: Request<cpb::GetPilotRequest>,
    ) -> Result<Response<cpb::GetPilotResponse>, Status> {
        let token =
            bizops_testkit::bearer_of(&r).ok_or_else(|| Status::unauthenticated("no token"))?.to_owned();
        let owner = self
            .0
            .sessions
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|v| v.verify(&token).ok())
            .ok_or_else(|| Status::unauthenticated("bad token"))?
            .owner_id
            .as_uuid();
        let pilot: Uuid = r.get_ref().pilot_id.parse().map_err(|_| Status::not_found("pilot"))?;
        let versions = self.0.versions.lock().unwrap();
        let latest = versions
            .iter()
            .filter(|((p, _), (o, _, _))| *p == pilot && *o == owner)
            .max_by_key(|((_, v), _)| *v)
            .ok_or_else(|| Status::not_found("pilot not found"))?;
        let ((_, version), (_, spec, enabled)) = latest;
        Ok(Response::new(cpb::GetPilotResponse {
            pilot: Some(cpb::Pilot {
                id: pilot.to_string(),
                owner_id: owner.to_string(),
                version: *version,
                spec: Some(spec.clone()),
                enabled: *enabled,
                ..Default::default()
            }),
        }))
    }
    async fn list_pilots(
        &self,
        _: Request<cpb::ListPilotsRequest>,
    ) -> Result<Response<cpb::ListPilotsResponse>, Status> {
        unimplemented()
    }
    async fn update_pilot(
        &self,
        _: Request<cpb::UpdatePilotRequest>,
    ) -> Result<Response<cpb::UpdatePilotResponse>, Status> {
        unimplemented()
    }
    async fn delete_pilot(
        &self,
        _: Request<cpb::DeletePilotRequest>,
    ) -> Result<Response<cpb::DeletePilotResponse>, Status> {
        unimplemented()
    }
    async fn set_enabled(
        &self,
        _: Request<cpb::SetEnabledRequest>,
    ) -> Result<Response<cpb::SetEnabledResponse>, Status> {
        unimplemented()
    }
    async fn list_versions(
        &self,
        _: Request<cpb::ListVersionsRequest>,
    ) -> Result<Response<cpb::ListVersionsResponse>, Status> {
        unimplemented()
    }
    async fn get_version(
        &self,
        _: Request<cpb::GetVersionRequest>,
    ) -> Result<Response<cpb::GetVersionResponse>, Status> {
        unimplemented()
    }
    async fn export_pilot(
        &self,
        _: Request<cpb::ExportPilotRequest>,
    ) -> Result<Response<cpb::ExportPilotResponse>, Status> {
        unimplemented()
    }
    async fn import_pilot(
        &self,
        _: Request<cpb::ImportPilotRequest>,
    ) -> Result<Response<cpb::ImportPilotResponse>, Status> {
        unimplemented()
    }
    async fn rotate_webhook_secret(
        &self,
        _: Request<cpb::RotateWebhookSecretRequest>,
    ) -> Result<Response<cpb::RotateWebhookSecretResponse>, Status> {
        unimplemented()
    }
    async fn verify_webhook(
        &self,
        _: Request<cpb::VerifyWebhookRequest>,
    ) -> Result<Response<cpb::VerifyWebhookResponse>, Status> {
        unimplemented()
    }
    async fn list_due_schedules(
        &self,
        r: Request<cpb::ListDueSchedulesRequest>,
    ) -> Result<Response<cpb::ListDueSchedulesResponse>, Status> {
        let req = r.into_inner();
        let (after, until) = (req.after.unwrap_or_default(), req.until.unwrap_or_default());
        let due = self
            .0
            .due
            .lock()
            .unwrap()
            .iter()
            .filter(|d| {
                let t = d.tick.unwrap_or_default();
                (t.seconds, t.nanos) > (after.seconds, after.nanos)
                    && (t.seconds, t.nanos) <= (until.seconds, until.nanos)
            })
            .cloned()
            .collect::<Vec<_>>();
        let mut due = due;
        due.sort_by_key(|d| d.tick.map(|t| (t.seconds, t.nanos)));
        let size = match self.0.due_page.load(std::sync::atomic::Ordering::SeqCst) {
            0 => req.limit as usize,
            n => n,
        };
        // The page token is the offset of the page (the fake's own format).
        let from: usize = req.page_token.parse().unwrap_or(0);
        let page: Vec<_> = due.iter().skip(from).take(size).cloned().collect();
        let next_page_token =
            if from + page.len() < due.len() { (from + page.len()).to_string() } else { String::new() };
        Ok(Response::new(cpb::ListDueSchedulesResponse { due: page, next_page_token }))
    }
    async fn delete_owner_data(
        &self,
        _: Request<cpb::DeleteOwnerDataRequest>,
    ) -> Result<Response<cpb::DeleteOwnerDataResponse>, Status> {
        unimplemented()
    }
    async fn get_version_for_run(
        &self,
        r: Request<cpb::GetVersionForRunRequest>,
    ) -> Result<Response<cpb::GetVersionForRunResponse>, Status> {
        let req = r.into_inner();
        let pilot: Uuid = req.pilot_id.parse().map_err(|_| Status::not_found("pilot"))?;
        let owner: Uuid = req.owner_id.parse().map_err(|_| Status::invalid_argument("owner"))?;
        let versions = self.0.versions.lock().unwrap();
        let (o, spec, enabled) =
            versions.get(&(pilot, req.version)).ok_or_else(|| Status::not_found("version"))?;
        if *o != owner {
            return Err(Status::not_found("version"));
        }
        Ok(Response::new(cpb::GetVersionForRunResponse {
            version: Some(cpb::PilotVersion {
                pilot_id: pilot.to_string(),
                owner_id: owner.to_string(),
                version: req.version,
                spec: Some(spec.clone()),
                created_at: None,
            }),
            enabled: *enabled,
        }))
    }
}

#[derive(Clone, Default)]
pub struct VaultData {
    /// (owner, name) → (kind, value)
    pub credentials: Arc<Mutex<HashMap<(Uuid, String), (vpb::ConnectorKind, String)>>>,
    /// Names asked for, per call.
    pub calls: Arc<Mutex<Vec<Vec<String>>>>,
}

impl VaultData {
    pub fn put(&self, owner: Uuid, name: &str, kind: vpb::ConnectorKind, value: &str) {
        self.credentials.lock().unwrap().insert((owner, name.into()), (kind, value.into()));
    }
}

pub struct FakeVault(pub VaultData);

#[tonic::async_trait]
impl vs::VaultService for FakeVault {
    async fn put_credential(
        &self,
        _: Request<vpb::PutCredentialRequest>,
    ) -> Result<Response<vpb::PutCredentialResponse>, Status> {
        unimplemented()
    }
    async fn list_credentials(
        &self,
        _: Request<vpb::ListCredentialsRequest>,
    ) -> Result<Response<vpb::ListCredentialsResponse>, Status> {
        unimplemented()
    }
    async fn delete_credential(
        &self,
        _: Request<vpb::DeleteCredentialRequest>,
    ) -> Result<Response<vpb::DeleteCredentialResponse>, Status> {
        unimplemented()
    }
    async fn test_credential(
        &self,
        _: Request<vpb::TestCredentialRequest>,
    ) -> Result<Response<vpb::TestCredentialResponse>, Status> {
        unimplemented()
    }
    async fn resolve_for_run(
        &self,
        r: Request<vpb::ResolveForRunRequest>,
    ) -> Result<Response<vpb::ResolveForRunResponse>, Status> {
        let req = r.into_inner();
        let owner: Uuid = req.owner_id.parse().map_err(|_| Status::invalid_argument("owner"))?;
        self.0.calls.lock().unwrap().push(req.names.clone());
        let store = self.0.credentials.lock().unwrap();
        let mut out = vpb::ResolveForRunResponse::default();
        for name in req.names {
            match store.get(&(owner, name.clone())) {
                Some((kind, value)) => out.credentials.push(vpb::ResolvedCredential {
                    name,
                    kind: *kind as i32,
                    value: value.clone(),
                }),
                None => out.missing.push(name),
            }
        }
        Ok(Response::new(out))
    }
    async fn start_key_rotation(
        &self,
        _: Request<vpb::StartKeyRotationRequest>,
    ) -> Result<Response<vpb::StartKeyRotationResponse>, Status> {
        unimplemented()
    }
    async fn get_key_rotation(
        &self,
        _: Request<vpb::GetKeyRotationRequest>,
    ) -> Result<Response<vpb::GetKeyRotationResponse>, Status> {
        unimplemented()
    }
    async fn set_min_decryption_version(
        &self,
        _: Request<vpb::SetMinDecryptionVersionRequest>,
    ) -> Result<Response<vpb::SetMinDecryptionVersionResponse>, Status> {
        unimplemented()
    }
    async fn delete_owner_data(
        &self,
        _: Request<vpb::DeleteOwnerDataRequest>,
    ) -> Result<Response<vpb::DeleteOwnerDataResponse>, Status> {
        unimplemented()
    }
}

/// Serves both fakes on one port.
pub async fn serve(catalog: CatalogData, vault: VaultData) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(cs::CatalogServiceServer::new(FakeCatalog(catalog)))
            .add_service(vs::VaultServiceServer::new(FakeVault(vault)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}
