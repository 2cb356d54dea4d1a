//! gRPC clients of the services the executor calls as itself (service tokens),
//! with a cache of Pilot versions (immutable, so cached until the Pilot or its
//! owner is deleted).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use bizops_authn::{ServiceSigner, ServiceTokenInterceptor};
use bizops_proto::{
    catalog::v1::{self as cpb, catalog_service_client::CatalogServiceClient},
    vault::v1::{self as vpb, vault_service_client::VaultServiceClient},
};
use tonic::{codegen::InterceptedService, transport::Channel};
use uuid::Uuid;

type Intercepted = InterceptedService<Channel, Chain>;

/// Adds the service token and the trace context to every call.
#[derive(Clone)]
pub struct Chain(ServiceTokenInterceptor);

impl tonic::service::Interceptor for Chain {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let request = self.0.call(request)?;
        bizops_telemetry::propagation::TraceInterceptor.call(request)
    }
}

fn channel(url: &str) -> anyhow::Result<Channel> {
    Ok(tonic::transport::Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(15))
        .tcp_nodelay(true)
        .connect_lazy())
}

/// A Pilot version for a run.
#[derive(Debug, Clone)]
pub struct Version {
    /// Its content.
    pub spec: Arc<cpb::PilotSpec>,
    /// The credential names its steps use (worked out once per version: it
    /// parses every template).
    pub credential_names: Arc<Vec<String>>,
}

/// What the catalog said about a version.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// It exists.
    Found(Version),
    /// The Pilot, the version or the owner is gone.
    Gone,
}

/// Catalog and vault, called as the executor.
#[derive(Clone)]
pub struct Clients {
    catalog: CatalogServiceClient<Intercepted>,
    catalog_channel: Channel,
    vault: VaultServiceClient<Intercepted>,
    versions: Arc<Mutex<HashMap<VersionKey, Version>>>,
}

/// (owner, Pilot, version).
type VersionKey = (Uuid, Uuid, i64);

impl Clients {
    /// Lazily connecting clients.
    pub fn new(catalog_url: &str, vault_url: &str, signer: &ServiceSigner) -> anyhow::Result<Self> {
        let catalog_channel = channel(catalog_url)?;
        let catalog = CatalogServiceClient::with_interceptor(
            catalog_channel.clone(),
            Chain(ServiceTokenInterceptor::new(signer.clone(), "catalog")),
        );
        let vault = VaultServiceClient::with_interceptor(
            channel(vault_url)?,
            Chain(ServiceTokenInterceptor::new(signer.clone(), "vault")),
        );
        Ok(Self { catalog, catalog_channel, vault, versions: Arc::default() })
    }

    /// The catalog channel, for calls made on behalf of a user (their token).
    pub fn catalog_channel(&self) -> Channel {
        self.catalog_channel.clone()
    }

    /// A Pilot version, from the cache or the catalog.
    pub async fn version(&self, owner: Uuid, pilot: Uuid, version: i64) -> Result<Lookup, tonic::Status> {
        if let Some(v) = self.versions.lock().ok().and_then(|m| m.get(&(owner, pilot, version)).cloned()) {
            return Ok(Lookup::Found(v));
        }
        self.fetch_version(owner, pilot, version).await
    }

    /// A Pilot version from the catalog, never from the cache (intake: a Pilot
    /// deleted a moment ago must not get a new run).
    pub async fn fetch_version(
        &self,
        owner: Uuid,
        pilot: Uuid,
        version: i64,
    ) -> Result<Lookup, tonic::Status> {
        let request = cpb::GetVersionForRunRequest {
            owner_id: owner.to_string(),
            pilot_id: pilot.to_string(),
            version,
        };
        match self.catalog.clone().get_version_for_run(request).await {
            Ok(response) => {
                let spec = response.into_inner().version.and_then(|v| v.spec).unwrap_or_default();
                let credential_names =
                    Arc::new(crate::template::credential_names(&spec).into_iter().collect());
                let v = Version { spec: Arc::new(spec), credential_names };
                if let Ok(mut m) = self.versions.lock() {
                    if m.len() > 10_000 {
                        m.clear();
                    }
                    m.insert((owner, pilot, version), v.clone());
                }
                Ok(Lookup::Found(v))
            }
            Err(s) if s.code() == tonic::Code::NotFound => Ok(Lookup::Gone),
            Err(s) => Err(s),
        }
    }

    /// Forgets cached versions of a Pilot (deleted).
    pub fn forget_pilot(&self, pilot: Uuid) {
        if let Ok(mut m) = self.versions.lock() {
            m.retain(|(_, p, _), _| *p != pilot);
        }
    }

    /// Forgets cached versions of an owner (deleted).
    pub fn forget_owner(&self, owner: Uuid) {
        if let Ok(mut m) = self.versions.lock() {
            m.retain(|(o, _, _), _| *o != owner);
        }
    }

    /// One page of the schedule ticks due in `(after, until]`: the ticks and the
    /// token of the next page (empty: the window is done).
    pub async fn due(
        &self,
        after: prost_types::Timestamp,
        until: prost_types::Timestamp,
        page_token: String,
    ) -> Result<(Vec<cpb::DueSchedule>, String), tonic::Status> {
        let request =
            cpb::ListDueSchedulesRequest { after: Some(after), until: Some(until), limit: 1000, page_token };
        let page = self.catalog.clone().list_due_schedules(request).await?.into_inner();
        Ok((page.due, page.next_page_token))
    }

    /// This run's credentials.
    pub async fn resolve(
        &self,
        owner: Uuid,
        run: Uuid,
        names: Vec<String>,
    ) -> Result<vpb::ResolveForRunResponse, tonic::Status> {
        if names.is_empty() {
            return Ok(vpb::ResolveForRunResponse::default());
        }
        let request =
            vpb::ResolveForRunRequest { owner_id: owner.to_string(), names, run_id: run.to_string() };
        Ok(self.vault.clone().resolve_for_run(request).await?.into_inner())
    }
}
