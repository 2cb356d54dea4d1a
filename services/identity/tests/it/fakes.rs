//! Fake catalog, executor and vault answering only DeleteOwnerData, recording
//! each call and failing on demand: identity's side of account deletion is tested
//! here; the real services together are tested in `tests/` (bizops-e2e).

use std::{
    collections::HashSet,
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bizops_authn::{PublicKey, ServiceVerifier};
use bizops_proto::catalog::v1::DeleteOwnerDataRequest;
use tonic::{Request, Response, Status, server::NamedService};

/// One recorded call: which service, for which owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub service: &'static str,
    pub owner_id: String,
}

#[derive(Clone)]
pub struct Fakes {
    calls: Arc<Mutex<Vec<Call>>>,
    failing: Arc<Mutex<HashSet<&'static str>>>,
    identity: PublicKey,
    pub addr: SocketAddr,
}

impl Fakes {
    /// Serves the three fakes on a free port; calls must carry a service token
    /// signed by `identity` for the right audience.
    pub async fn start(identity: PublicKey) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fakes = Self { calls: Arc::default(), failing: Arc::default(), identity, addr };
        let server = tonic::transport::Server::builder()
            .add_service(Fake::<Catalog>::new(&fakes))
            .add_service(Fake::<Executor>::new(&fakes))
            .add_service(Fake::<Vault>::new(&fakes))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        tokio::spawn(server);
        fakes
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// Makes `service` ("catalog", "executor", "vault") answer UNAVAILABLE.
    pub fn fail(&self, service: &'static str, failing: bool) {
        let mut set = self.failing.lock().unwrap();
        if failing {
            set.insert(service);
        } else {
            set.remove(service);
        }
    }
}

pub trait Which: Send + Sync + 'static {
    const NAME: &'static str;
    const AUDIENCE: &'static str;
}
pub struct Catalog;
pub struct Executor;
pub struct Vault;
impl Which for Catalog {
    const NAME: &'static str = "bizops.catalog.v1.CatalogService";
    const AUDIENCE: &'static str = "catalog";
}
impl Which for Executor {
    const NAME: &'static str = "bizops.executor.v1.ExecutorService";
    const AUDIENCE: &'static str = "executor";
}
impl Which for Vault {
    const NAME: &'static str = "bizops.vault.v1.VaultService";
    const AUDIENCE: &'static str = "vault";
}

pub struct Fake<W> {
    fakes: Fakes,
    which: std::marker::PhantomData<fn() -> W>,
}

impl<W> Clone for Fake<W> {
    fn clone(&self) -> Self {
        Self { fakes: self.fakes.clone(), which: std::marker::PhantomData }
    }
}

impl<W: Which> Fake<W> {
    fn new(fakes: &Fakes) -> Self {
        Self { fakes: fakes.clone(), which: std::marker::PhantomData }
    }
}

impl<W: Which> NamedService for Fake<W> {
    const NAME: &'static str = W::NAME;
}

struct Handler<W> {
    fakes: Fakes,
    which: std::marker::PhantomData<fn() -> W>,
}

impl<W: Which> tonic::server::UnaryService<DeleteOwnerDataRequest> for Handler<W> {
    type Response = ();
    type Future = std::future::Ready<Result<Response<()>, Status>>;

    fn call(&mut self, request: Request<DeleteOwnerDataRequest>) -> Self::Future {
        let verifier = ServiceVerifier::new(W::AUDIENCE, [&self.fakes.identity]);
        let token = bizops_testkit::bearer_of(&request).unwrap_or_default();
        if verifier.verify(token).is_err() {
            return std::future::ready(Err(Status::unauthenticated("no valid identity service token")));
        }
        if self.fakes.failing.lock().unwrap().contains(W::AUDIENCE) {
            return std::future::ready(Err(Status::unavailable("fake outage")));
        }
        let owner_id = request.into_inner().owner_id;
        self.fakes.calls.lock().unwrap().push(Call { service: W::AUDIENCE, owner_id });
        std::future::ready(Ok(Response::new(())))
    }
}

impl<W: Which> tower::Service<http::Request<tonic::body::Body>> for Fake<W> {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let handler = Handler::<W> { fakes: self.fakes.clone(), which: std::marker::PhantomData };
        Box::pin(async move {
            let mut grpc =
                tonic::server::Grpc::new(tonic_prost::ProstCodec::<(), DeleteOwnerDataRequest>::default());
            Ok(grpc.unary(handler, request).await)
        })
    }
}
