//! Service tokens (ARCHITECTURE.md, Service identity): each service signs a JWT with
//! its own Ed25519 key — `kid` and `iss` = its name, `aud` = the callee, lifetime
//! ≤ 60 s, `token_use: "service"` — sent as `authorization: Bearer`. Each callee
//! trusts the public keys of the services allowed to call it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{
    TOKEN_USE_SERVICE,
    keys::{PublicKey, SigningKey},
    session::{TokenError, header_kid},
};

/// The longest lifetime (`exp - iat`) a service token may have.
pub const MAX_SERVICE_TOKEN_LIFETIME: time::Duration = time::Duration::seconds(60);

/// Claims of a service token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceClaims {
    /// The calling service.
    pub iss: String,
    /// The calling service.
    pub sub: String,
    /// The callee.
    pub aud: String,
    /// Issued at (unix seconds).
    pub iat: i64,
    /// Expires at (unix seconds).
    pub exp: i64,
    /// Always "service".
    pub token_use: String,
}

/// Signs this service's tokens, reusing one per audience until 20 s before expiry.
#[derive(Debug, Clone)]
pub struct ServiceSigner {
    name: String,
    key: SigningKey,
    cache: Arc<Mutex<HashMap<String, (String, OffsetDateTime)>>>,
}

impl ServiceSigner {
    /// A signer for service `name`. The key's id becomes the name, because callees
    /// look up the caller's public key by it (see [`ServiceSigner::public_key`]).
    pub fn new(name: &str, key: SigningKey) -> Self {
        let key = key.clone().with_kid(name).unwrap_or(key);
        Self { name: name.to_owned(), key, cache: Arc::default() }
    }

    /// This service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public key callees must trust, as `<name>:<base64>`.
    pub fn public_key(&self) -> PublicKey {
        self.key.public()
    }

    /// A token for calling `audience`.
    pub fn token_for(&self, audience: &str) -> Result<String, TokenError> {
        let now = OffsetDateTime::now_utc();
        if let Ok(cache) = self.cache.lock()
            && let Some((token, exp)) = cache.get(audience)
            && *exp - now > time::Duration::seconds(20)
        {
            return Ok(token.clone());
        }
        let exp = now + MAX_SERVICE_TOKEN_LIFETIME;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.name.clone());
        let claims = ServiceClaims {
            iss: self.name.clone(),
            sub: self.name.clone(),
            aud: audience.to_owned(),
            iat: now.unix_timestamp(),
            exp: exp.unix_timestamp(),
            token_use: TOKEN_USE_SERVICE.to_owned(),
        };
        let token = jsonwebtoken::encode(&header, &claims, &self.key.encoding_key())
            .map_err(|_| TokenError::Malformed)?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(audience.to_owned(), (token.clone(), exp));
        }
        Ok(token)
    }
}

/// Verifies service tokens addressed to this service from the callers it trusts.
#[derive(Clone)]
pub struct ServiceVerifier {
    me: String,
    callers: HashMap<String, (jsonwebtoken::DecodingKey, Validation)>,
}

impl std::fmt::Debug for ServiceVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceVerifier")
            .field("me", &self.me)
            .field("callers", &self.callers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ServiceVerifier {
    /// `me` is this service's name; `callers` are the trusted services' public keys,
    /// each with its service name as key id.
    pub fn new<'a>(me: &str, callers: impl IntoIterator<Item = &'a PublicKey>) -> Self {
        let callers = callers
            .into_iter()
            .map(|k| {
                let mut v = Validation::new(Algorithm::EdDSA);
                v.set_issuer(&[k.kid()]);
                v.set_audience(&[me]);
                v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
                v.leeway = 5;
                (k.kid().to_owned(), (k.decoding_key(), v))
            })
            .collect();
        Self { me: me.to_owned(), callers }
    }

    /// Whether `name` is a trusted caller.
    pub fn trusts(&self, name: &str) -> bool {
        self.callers.contains_key(name)
    }

    /// Whether the token's header names a trusted caller (no signature check).
    pub fn claims_to_be_service(&self, token: &str) -> bool {
        header_kid(token).is_ok_and(|kid| self.trusts(&kid))
    }

    /// Verifies a token and returns the calling service's name.
    pub fn verify(&self, token: &str) -> Result<String, TokenError> {
        let kid = header_kid(token)?;
        let (key, validation) = self.callers.get(&kid).ok_or(TokenError::UnknownKey)?;
        let data = jsonwebtoken::decode::<ServiceClaims>(token, key, validation)
            .map_err(|e| TokenError::from_jwt(&e))?;
        let c = data.claims;
        if c.token_use != TOKEN_USE_SERVICE || c.sub != c.iss || c.iss != kid {
            return Err(TokenError::WrongAudience);
        }
        if c.exp - c.iat > MAX_SERVICE_TOKEN_LIFETIME.whole_seconds() {
            return Err(TokenError::Lifetime);
        }
        Ok(c.iss)
    }
}

/// A tonic interceptor that authenticates outgoing calls to `audience` with this
/// service's token (and adds the trace context).
#[derive(Debug, Clone)]
pub struct ServiceTokenInterceptor {
    signer: ServiceSigner,
    audience: String,
}

impl ServiceTokenInterceptor {
    /// Calls to `audience` signed by `signer`.
    pub fn new(signer: ServiceSigner, audience: &str) -> Self {
        Self { signer, audience: audience.to_owned() }
    }
}

impl tonic::service::Interceptor for ServiceTokenInterceptor {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let token = self
            .signer
            .token_for(&self.audience)
            .map_err(|_| tonic::Status::internal("could not sign service token"))?;
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| tonic::Status::internal("could not encode service token"))?;
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
    use uuid::Uuid;

    use super::*;
    use crate::{OwnerId, SessionSigner};

    #[test]
    fn a_trusted_service_passes_others_do_not() {
        let executor = ServiceSigner::new("executor", SigningKey::generate("executor").unwrap());
        let gateway = ServiceSigner::new("gateway", SigningKey::generate("gateway").unwrap());
        let vault = ServiceVerifier::new("vault", [&executor.public_key()]);

        assert_eq!(vault.verify(&executor.token_for("vault").unwrap()).unwrap(), "executor");
        // Cached token is reused.
        assert_eq!(executor.token_for("vault").unwrap(), executor.token_for("vault").unwrap());
        // Not trusted by the vault.
        assert_eq!(vault.verify(&gateway.token_for("vault").unwrap()), Err(TokenError::UnknownKey));
        // Trusted, but addressed to someone else.
        assert_eq!(vault.verify(&executor.token_for("catalog").unwrap()), Err(TokenError::WrongAudience));
    }

    #[test]
    fn the_public_key_is_published_under_the_service_name() {
        let signer = ServiceSigner::new("executor", SigningKey::generate("some-other-kid").unwrap());
        assert_eq!(signer.public_key().kid(), "executor");
        let vault = ServiceVerifier::new("vault", [&signer.public_key()]);
        assert_eq!(vault.verify(&signer.token_for("vault").unwrap()).unwrap(), "executor");
    }

    #[test]
    fn an_impostor_with_the_right_name_fails() {
        let real = ServiceSigner::new("executor", SigningKey::generate("executor").unwrap());
        let fake = ServiceSigner::new("executor", SigningKey::generate("executor").unwrap());
        let vault = ServiceVerifier::new("vault", [&real.public_key()]);
        assert_eq!(vault.verify(&fake.token_for("vault").unwrap()), Err(TokenError::Signature));
    }

    #[test]
    fn a_user_session_token_never_passes_as_a_service() {
        // Even if a session signing key id collided with a service name, the issuer,
        // audience and token_use claims do not fit.
        let key = SigningKey::generate("executor").unwrap();
        let vault = ServiceVerifier::new("vault", [&key.public()]);
        let now = OffsetDateTime::now_utc();
        let session = SessionSigner::new(key, "bizops-identity", "bizops")
            .sign(OwnerId(Uuid::now_v7()), Uuid::now_v7(), now, now + time::Duration::hours(1))
            .unwrap();
        assert!(vault.verify(&session).is_err());
    }

    #[test]
    fn long_lived_tokens_are_refused() {
        let key = SigningKey::generate("executor").unwrap();
        let vault = ServiceVerifier::new("vault", [&key.public()]);
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let claims = ServiceClaims {
            iss: "executor".into(),
            sub: "executor".into(),
            aud: "vault".into(),
            iat: now,
            exp: now + 3600,
            token_use: TOKEN_USE_SERVICE.into(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("executor".into());
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding_key()).unwrap();
        assert_eq!(vault.verify(&token), Err(TokenError::Lifetime));
    }

    #[test]
    fn alg_none_service_token_is_refused() {
        let key = SigningKey::generate("executor").unwrap();
        let vault = ServiceVerifier::new("vault", [&key.public()]);
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"executor"}"#);
        let c = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&serde_json::json!({"iss":"executor","sub":"executor","aud":"vault","iat":now,"exp":now+30,"token_use":"service"})).unwrap(),
        );
        assert_eq!(vault.verify(&format!("{h}.{c}.")), Err(TokenError::Algorithm));
    }
}
