//! How a service (other than identity) authenticates its callers and itself.

use std::{sync::Arc, time::Duration};

use bizops_config::{duration, string_list};
use secrecy::SecretString;
use serde::Deserialize;

use crate::{
    Authenticator, JwksCache, JwksSource, PublicKey, ServiceSigner, ServiceVerifier, SessionVerifier,
    SigningKey, UserToken, keys::Jwk, session::futures_lite::BoxFuture,
};

/// Longest `BIZOPS_AUTH__JWKS_REFRESH`: a retired key is trusted at most this long.
pub const MAX_JWKS_REFRESH: Duration = Duration::from_secs(15 * 60);

/// `BIZOPS_AUTH__IDENTITY_URL` became `BIZOPS_IDENTITY_URL` (every URL of a service
/// another calls is `BIZOPS_<SERVICE>_URL`): in the renames of every service that
/// has an [`AuthConfig`].
pub const RENAMED_IDENTITY_URL: bizops_config::Renamed =
    bizops_config::Renamed { old: "auth.identity_url", new: "identity_url" };

/// Authentication settings shared by pilot-catalog, credential-vault, executor and
/// the gateway (`BIZOPS_AUTH__*`). identity's URL, where session keys come from, is
/// the service's `identity_url` (`BIZOPS_IDENTITY_URL`, like every URL of a service
/// it calls) and is handed to [`AuthConfig::authenticator`].
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Static public keys `<kid>:<base64>` of identity's token signing keys, used
    /// instead of (or in addition to) identity's JWKS; comma-separated in env.
    #[serde(deserialize_with = "string_list")]
    pub session_public_keys: Vec<String>,
    /// `iss` of user tokens.
    pub session_issuer: String,
    /// `aud` of user tokens.
    pub session_audience: String,
    /// How often identity's JWKS is fetched again (also at once when a token names
    /// an unknown key, at most every 30 s): a key identity no longer publishes is
    /// refused after at most this long. 5 minutes by default, at most 15.
    #[serde(deserialize_with = "duration")]
    pub jwks_refresh: Duration,
    /// This service's own Ed25519 key `<name>:<base64 seed>` for calling others.
    pub service_key: Option<SecretString>,
    /// Public keys `<service>:<base64>` of the services allowed to call this one.
    #[serde(deserialize_with = "string_list")]
    pub trusted_callers: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            session_public_keys: Vec::new(),
            session_issuer: "bizops-identity".into(),
            session_audience: "bizops".into(),
            jwks_refresh: Duration::from_secs(5 * 60),
            service_key: None,
            trusted_callers: Vec::new(),
        }
    }
}

impl AuthConfig {
    /// The request authenticator of service `me`: users' access tokens (never
    /// session tokens) verified against the static keys or the JWKS of identity at
    /// `identity_url` (fetched from its GetJwks every `jwks_refresh` and when a
    /// token names an unknown key), service tokens from the trusted callers.
    /// With an identity URL it must be called within a Tokio runtime (the refresh
    /// runs as a task for as long as the authenticator lives).
    pub fn authenticator(&self, me: &str, identity_url: Option<&str>) -> anyhow::Result<Authenticator> {
        let callers = parse_public(&self.trusted_callers, "BIZOPS_AUTH__TRUSTED_CALLERS")?;
        let statics = parse_public(&self.session_public_keys, "BIZOPS_AUTH__SESSION_PUBLIC_KEYS")?;
        anyhow::ensure!(
            !self.jwks_refresh.is_zero() && self.jwks_refresh <= MAX_JWKS_REFRESH,
            "BIZOPS_AUTH__JWKS_REFRESH: must be more than 0 and at most {} minutes",
            MAX_JWKS_REFRESH.as_secs() / 60
        );
        let auth = Authenticator::none().with_services(ServiceVerifier::new(me, &callers));
        Ok(match identity_url {
            Some(url) => {
                let source = IdentityJwks::new(url)?.with_static(statics);
                let cache = Arc::new(JwksCache::new(
                    source,
                    UserToken::Access,
                    &self.session_issuer,
                    &self.session_audience,
                    Duration::from_secs(30).min(self.jwks_refresh),
                ));
                cache.keep_fresh(self.jwks_refresh);
                auth.with_jwks(cache)
            }
            None => {
                if statics.is_empty() {
                    tracing::warn!("no BIZOPS_IDENTITY_URL or session keys: user tokens will be refused");
                }
                let verifier =
                    SessionVerifier::access(&statics, &self.session_issuer, &self.session_audience);
                auth.with_local_sessions(Arc::new(std::sync::RwLock::new(verifier)))
            }
        })
    }

    /// This service's signer for outgoing calls, if a key is configured. The key id
    /// must be the service's name.
    pub fn signer(&self, me: &str) -> anyhow::Result<Option<ServiceSigner>> {
        let Some(text) = &self.service_key else { return Ok(None) };
        let key = SigningKey::parse(text).map_err(|e| anyhow::anyhow!("BIZOPS_AUTH__SERVICE_KEY: {e}"))?;
        anyhow::ensure!(
            key.kid() == me,
            "BIZOPS_AUTH__SERVICE_KEY: the key id must be `{me}`, not `{}`",
            key.kid()
        );
        Ok(Some(ServiceSigner::new(me, key)))
    }
}

fn parse_public(list: &[String], name: &str) -> anyhow::Result<Vec<PublicKey>> {
    list.iter().map(|t| PublicKey::parse(t).map_err(|e| anyhow::anyhow!("{name}: {e}"))).collect()
}

/// Fetches identity's JWKS over gRPC (GetJwks), plus optional static keys.
#[derive(Debug, Clone)]
pub struct IdentityJwks {
    channel: tonic::transport::Channel,
    statics: Vec<PublicKey>,
}

impl IdentityJwks {
    /// A lazily connecting source for identity at `url` (e.g. `http://identity:50051`).
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
            .map_err(|e| anyhow::anyhow!("BIZOPS_IDENTITY_URL: {e}"))?
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(5))
            .connect_lazy();
        Ok(Self { channel, statics: Vec::new() })
    }

    /// Also trusts these keys.
    pub fn with_static(mut self, keys: Vec<PublicKey>) -> Self {
        self.statics = keys;
        self
    }
}

impl JwksSource for IdentityJwks {
    fn fetch(&self) -> BoxFuture<'_, Result<Vec<Jwk>, String>> {
        Box::pin(async move {
            use bizops_proto::identity::v1::{
                GetJwksRequest, identity_service_client::IdentityServiceClient,
            };
            let mut keys: Vec<Jwk> = self.statics.iter().map(PublicKey::to_jwk).collect();
            let response = IdentityServiceClient::new(self.channel.clone())
                .get_jwks(GetJwksRequest {})
                .await
                .map_err(|e| format!("GetJwks: {}", e.code()))?;
            keys.extend(response.into_inner().keys.into_iter().map(|k| Jwk {
                kty: k.kty,
                crv: k.crv,
                kid: k.kid,
                x: k.x,
                alg: k.alg,
                key_use: k.r#use,
            }));
            Ok(keys)
        })
    }
}
