//! A tower layer for tonic servers that verifies `authorization: Bearer` (a user
//! token — session tokens at identity, access tokens everywhere else — or a service
//! token) and `x-bizops-service-token`, and stores the result in the
//! request extensions as [`Caller`] and [`ForwardingService`]. It never rejects a
//! request itself: handlers decide with [`crate::require_user`] and
//! [`crate::require_service`], so public RPCs (Register, Login) keep working.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, RwLock},
    task::{Context, Poll},
};

use crate::{
    JwksCache, SessionVerifier,
    caller::{Caller, ForwardingService, SERVICE_TOKEN_METADATA, UserCaller},
    service::ServiceVerifier,
};

enum Sessions {
    None,
    Local(Arc<RwLock<SessionVerifier>>),
    Jwks(Arc<JwksCache>),
}

/// Verifies the tokens of incoming requests.
pub struct Authenticator {
    sessions: Sessions,
    services: Option<ServiceVerifier>,
}

impl Authenticator {
    /// Accepts no session tokens and no service tokens (everything Anonymous).
    pub fn none() -> Self {
        Self { sessions: Sessions::None, services: None }
    }

    /// Verifies user tokens against a local key set (identity itself: session
    /// tokens; a service with static keys: access tokens — the verifier's kind).
    pub fn with_local_sessions(mut self, verifier: Arc<RwLock<SessionVerifier>>) -> Self {
        self.sessions = Sessions::Local(verifier);
        self
    }

    /// Verifies user tokens (the cache's kind) against identity's JWKS.
    pub fn with_jwks(mut self, cache: Arc<JwksCache>) -> Self {
        self.sessions = Sessions::Jwks(cache);
        self
    }

    /// Accepts service tokens from the callers `verifier` trusts.
    pub fn with_services(mut self, verifier: ServiceVerifier) -> Self {
        self.services = Some(verifier);
        self
    }

    /// Establishes the caller from request headers.
    pub async fn authenticate(&self, headers: &http::HeaderMap) -> (Caller, ForwardingService) {
        let bearer = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim);
        let mut forwarding = ForwardingService(None);
        let caller = match bearer {
            None => Caller::Anonymous,
            Some(token) => match &self.services {
                Some(services) if services.claims_to_be_service(token) => match services.verify(token) {
                    Ok(name) => {
                        forwarding.0 = Some(name.clone());
                        Caller::Service(name)
                    }
                    Err(e) => Caller::Rejected(e),
                },
                _ => self.verify_session(token).await,
            },
        };
        if let (Some(services), Some(token)) =
            (&self.services, headers.get(SERVICE_TOKEN_METADATA).and_then(|v| v.to_str().ok()))
            && let Ok(name) = services.verify(token.trim())
        {
            forwarding.0 = Some(name);
        }
        (caller, forwarding)
    }

    async fn verify_session(&self, token: &str) -> Caller {
        let result = match &self.sessions {
            Sessions::None => return Caller::Rejected(crate::TokenError::UnknownKey),
            Sessions::Local(v) => match v.read() {
                Ok(v) => v.verify(token),
                Err(p) => p.get_ref().verify(token),
            },
            Sessions::Jwks(cache) => cache.verify(token).await,
        };
        match result {
            Ok(s) => Caller::User(UserCaller { owner_id: s.owner_id, session_id: s.session_id }),
            Err(e) => Caller::Rejected(e),
        }
    }
}

/// The layer; cheap to clone.
#[derive(Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
}

impl AuthLayer {
    /// A layer using `auth`.
    pub fn new(auth: Authenticator) -> Self {
        Self { auth: Arc::new(auth) }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService { inner, auth: self.auth.clone() }
    }
}

/// The service of [`AuthLayer`].
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // Take the service that was driven to readiness; leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Box::pin(async move {
            let (caller, forwarding) = auth.authenticate(req.headers()).await;
            req.extensions_mut().insert(caller);
            req.extensions_mut().insert(forwarding);
            inner.call(req).await
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use time::OffsetDateTime;
    use uuid::Uuid;

    use super::*;
    use crate::{OwnerId, ServiceSigner, SessionSigner, SigningKey, TokenError};

    fn headers(pairs: &[(&str, String)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    #[tokio::test]
    async fn establishes_users_services_and_rejections() {
        let session_key = SigningKey::generate("s1").unwrap();
        let verifier = SessionVerifier::new([&session_key.public()], "bizops-identity", "bizops");
        let signer = SessionSigner::new(session_key, "bizops-identity", "bizops");
        let gateway = ServiceSigner::new("gateway", SigningKey::generate("gateway").unwrap());
        let auth = Authenticator::none()
            .with_local_sessions(Arc::new(RwLock::new(verifier)))
            .with_services(ServiceVerifier::new("identity", [&gateway.public_key()]));

        let (c, f) = auth.authenticate(&http::HeaderMap::new()).await;
        assert_eq!((c, f.0), (Caller::Anonymous, None));

        let owner = OwnerId(Uuid::now_v7());
        let now = OffsetDateTime::now_utc();
        let token = signer.sign(owner, Uuid::now_v7(), now, now + time::Duration::hours(1)).unwrap();
        let (c, _) = auth.authenticate(&headers(&[("authorization", format!("Bearer {token}"))])).await;
        assert!(matches!(c, Caller::User(u) if u.owner_id == owner));

        let svc = gateway.token_for("identity").unwrap();
        let (c, f) = auth.authenticate(&headers(&[("authorization", format!("Bearer {svc}"))])).await;
        assert_eq!((c, f.0.as_deref()), (Caller::Service("gateway".into()), Some("gateway")));

        // User session plus the gateway vouching for forwarded metadata.
        let (c, f) = auth
            .authenticate(&headers(&[
                ("authorization", format!("Bearer {token}")),
                (SERVICE_TOKEN_METADATA, svc.clone()),
            ]))
            .await;
        assert!(matches!(c, Caller::User(_)));
        assert_eq!(f.0.as_deref(), Some("gateway"));

        let (c, _) = auth.authenticate(&headers(&[("authorization", "Bearer garbage".into())])).await;
        assert_eq!(c, Caller::Rejected(TokenError::Malformed));
    }
}
