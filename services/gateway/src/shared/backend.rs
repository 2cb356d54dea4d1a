//! gRPC clients of identity, pilot-catalog, credential-vault and executor: a
//! timeout per attempt, retries on `UNAVAILABLE` only, the trace context on every
//! call, and the credentials each call needs:
//!
//! - user calls carry the user's access token (to pilot-catalog,
//!   credential-vault, executor) or session token (to identity) as
//!   `authorization: Bearer <jwt>`;
//! - calls that act for an end user at identity (Register, Login, ChangePassword,
//!   DeleteAccount) also carry the gateway's service token for identity in
//!   `x-bizops-service-token` and the client address in `x-bizops-source`;
//! - internal calls (catalog VerifyWebhook) carry the service token as
//!   `authorization`.

use std::{future::Future, net::IpAddr, time::Duration};

use bizops_authn::{FORWARDED_SOURCE_METADATA, SERVICE_TOKEN_METADATA, ServiceSigner};
use bizops_errors::{Error, ErrorCode};
use bizops_proto::{
    catalog::v1::catalog_service_client::CatalogServiceClient,
    executor::v1::executor_service_client::ExecutorServiceClient,
    identity::v1::identity_service_client::IdentityServiceClient,
    vault::v1::vault_service_client::VaultServiceClient,
};
use bizops_telemetry::propagation::TraceInterceptor;
use secrecy::{ExposeSecret as _, SecretString};
use tonic::{
    Code, Request,
    metadata::{AsciiMetadataValue, MetadataMap},
    service::interceptor::InterceptedService,
    transport::{Channel, Endpoint},
};

use crate::{config::TimeoutsConfig, shared::error::from_backend};

type Traced = InterceptedService<Channel, TraceInterceptor>;

/// Audiences of the service tokens (the callee's service name).
const IDENTITY: &str = "identity";
const CATALOG: &str = "catalog";

/// The four backends. Cheap to clone.
#[derive(Clone)]
pub struct Backends {
    identity: IdentityServiceClient<Traced>,
    catalog: CatalogServiceClient<Traced>,
    vault: VaultServiceClient<Traced>,
    executor: ExecutorServiceClient<Traced>,
    signer: ServiceSigner,
    timeout: Duration,
    retries: u32,
}

/// URLs of the backends.
#[derive(Debug, Clone)]
pub struct BackendUrls<'a> {
    /// identity
    pub identity: &'a str,
    /// pilot-catalog
    pub catalog: &'a str,
    /// credential-vault
    pub vault: &'a str,
    /// executor
    pub executor: &'a str,
}

fn channel(name: &str, url: &str, timeouts: &TimeoutsConfig) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(url.to_owned())
        .map_err(|e| anyhow::anyhow!("BIZOPS_{}_URL: {e}", name.to_ascii_uppercase()))?
        .connect_timeout(timeouts.connect)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .connect_lazy())
}

impl Backends {
    /// Lazily connecting clients (the gateway starts even if a backend is down).
    pub fn new(
        urls: &BackendUrls<'_>,
        signer: ServiceSigner,
        timeouts: &TimeoutsConfig,
    ) -> anyhow::Result<Self> {
        let traced = |name: &str, url: &str| -> anyhow::Result<Traced> {
            Ok(InterceptedService::new(channel(name, url, timeouts)?, TraceInterceptor))
        };
        Ok(Self {
            identity: IdentityServiceClient::new(traced("identity", urls.identity)?),
            catalog: CatalogServiceClient::new(traced("catalog", urls.catalog)?),
            vault: VaultServiceClient::new(traced("vault", urls.vault)?),
            executor: ExecutorServiceClient::new(traced("executor", urls.executor)?),
            signer,
            timeout: timeouts.rpc,
            retries: timeouts.rpc_retries,
        })
    }

    /// The per-attempt timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// identity's client.
    pub fn identity(&self) -> IdentityServiceClient<Traced> {
        self.identity.clone()
    }

    /// pilot-catalog's client.
    pub fn catalog(&self) -> CatalogServiceClient<Traced> {
        self.catalog.clone()
    }

    /// credential-vault's client.
    pub fn vault(&self) -> VaultServiceClient<Traced> {
        self.vault.clone()
    }

    /// executor's client.
    pub fn executor(&self) -> ExecutorServiceClient<Traced> {
        self.executor.clone()
    }

    /// A request carrying a user token: the session's access token for
    /// pilot-catalog, credential-vault and executor; the session token for identity.
    pub fn user<T>(&self, token: &SecretString, message: T) -> Result<Request<T>, Error> {
        let mut request = Request::new(message);
        insert(request.metadata_mut(), "authorization", &format!("Bearer {}", token.expose_secret()))?;
        Ok(request)
    }

    /// A request to identity on behalf of an end user at `source`, with the
    /// user's session when there is one.
    pub fn for_end_user<T>(
        &self,
        token: Option<&SecretString>,
        source: Option<IpAddr>,
        message: T,
    ) -> Result<Request<T>, Error> {
        let mut request = match token {
            Some(token) => self.user(token, message)?,
            None => Request::new(message),
        };
        let service = self.signer.token_for(IDENTITY).map_err(Error::internal)?;
        insert(request.metadata_mut(), SERVICE_TOKEN_METADATA, &service)?;
        if let Some(ip) = source {
            insert(request.metadata_mut(), FORWARDED_SOURCE_METADATA, &ip.to_string())?;
        }
        Ok(request)
    }

    /// An internal call to the catalog, authenticated as the gateway.
    pub fn as_gateway_to_catalog<T>(&self, message: T) -> Result<Request<T>, Error> {
        let mut request = Request::new(message);
        let service = self.signer.token_for(CATALOG).map_err(Error::internal)?;
        insert(request.metadata_mut(), "authorization", &format!("Bearer {service}"))?;
        Ok(request)
    }

    /// Runs one RPC: `attempt` builds and sends the request (called again for a
    /// retry), each attempt bounded by the timeout; `UNAVAILABLE` is retried with a
    /// short backoff, every other error is returned at once as the client sees it.
    pub async fn call<T, F, Fut>(&self, rpc: &'static str, attempt: F) -> Result<T, Error>
    where
        F: FnMut() -> Result<Fut, Error>,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.call_with_timeout(rpc, self.timeout, attempt).await
    }

    /// [`Backends::call`] with a per-attempt timeout other than the configured one
    /// (account deletion fans out to every service).
    pub async fn call_with_timeout<T, F, Fut>(
        &self,
        rpc: &'static str,
        timeout: Duration,
        attempt: F,
    ) -> Result<T, Error>
    where
        F: FnMut() -> Result<Fut, Error>,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.call_raw(rpc, timeout, attempt).await.map_err(|f| f.into_error(rpc))
    }

    /// [`Backends::call_with_timeout`], but a failure is handed back as it
    /// happened, so a caller can tell the callee's stable error codes from
    /// anything else (webhook ingest).
    pub async fn call_raw<T, F, Fut>(
        &self,
        rpc: &'static str,
        timeout: Duration,
        mut attempt: F,
    ) -> Result<T, Failure>
    where
        F: FnMut() -> Result<Fut, Error>,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut tries = 0u32;
        loop {
            let started = std::time::Instant::now();
            let outcome = tokio::time::timeout(timeout, attempt().map_err(Failure::Request)?).await;
            let code = match &outcome {
                Ok(Ok(_)) => "Ok".to_owned(),
                Ok(Err(s)) => format!("{:?}", s.code()),
                Err(_) => "Timeout".to_owned(),
            };
            metrics::histogram!("gateway_backend_request_duration_seconds", "rpc" => rpc)
                .record(started.elapsed().as_secs_f64());
            metrics::counter!("gateway_backend_requests_total", "rpc" => rpc, "code" => code).increment(1);
            match outcome {
                Ok(Ok(response)) => return Ok(response.into_inner()),
                Ok(Err(status)) if status.code() == Code::Unavailable && tries < self.retries => {
                    tries += 1;
                    tracing::debug!(rpc, attempt = tries, "backend unavailable, retrying");
                    tokio::time::sleep(Duration::from_millis(50 * 2u64.pow(tries))).await;
                }
                Ok(Err(status)) => return Err(Failure::Status(status)),
                Err(_) => return Err(Failure::Timeout(timeout)),
            }
        }
    }
}

/// How a backend call failed.
#[derive(Debug)]
pub enum Failure {
    /// The request could not be built (e.g. a token that is no metadata value).
    Request(Error),
    /// The backend (or something between) answered with this status.
    Status(tonic::Status),
    /// No answer within the per-attempt timeout.
    Timeout(Duration),
}

impl Failure {
    /// The stable code a BizOps service attached (`x-bizops-error-code`), if any:
    /// only these are decisions of the callee; a status without it may come from
    /// a proxy, a transport failure or a misconfiguration.
    pub fn stable_code(&self) -> Option<ErrorCode> {
        match self {
            Failure::Status(status) => status
                .metadata()
                .get(bizops_errors::CODE_METADATA_KEY)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok()),
            Failure::Request(_) | Failure::Timeout(_) => None,
        }
    }

    /// The error the client sees.
    pub fn into_error(self, rpc: &'static str) -> Error {
        match self {
            Failure::Request(e) => e,
            Failure::Status(status) => from_backend(rpc, &status),
            Failure::Timeout(timeout) => {
                Error::new(ErrorCode::DeadlineExceeded, "a service this request needs did not answer in time")
                    .with_source(std::io::Error::other(format!("{rpc}: timed out after {timeout:?}")))
            }
        }
    }
}

fn insert(metadata: &mut MetadataMap, key: &'static str, value: &str) -> Result<(), Error> {
    let value: AsciiMetadataValue = value
        .parse()
        .map_err(|_| Error::new(ErrorCode::Unauthenticated, "the session is not valid; sign in again"))?;
    metadata.insert(key, value);
    Ok(())
}

/// Calls `client.method(request)` through [`Backends::call`]; `request` is an
/// expression giving `Result<tonic::Request<_>, Error>`, evaluated per attempt.
macro_rules! rpc {
    ($backends:expr, $client:ident . $method:ident, $request:expr) => {{
        let backends: &$crate::shared::backend::Backends = &$backends;
        backends
            .call(stringify!($method), || {
                let request = $request?;
                let mut client = backends.$client();
                Ok(async move { client.$method(request).await })
            })
            .await
    }};
}
pub(crate) use rpc;
