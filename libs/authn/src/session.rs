//! Session tokens: EdDSA JWTs with `kid`, `iss`, `sub` (owner), `sid` (session),
//! `aud`, `iat`, `exp` and `token_use: "session"`.
//!
//! Verification accepts only EdDSA: a token whose header says `none`, `HS256` or
//! anything else is rejected before any key is looked at.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    OwnerId, TOKEN_USE_SESSION,
    keys::{Jwk, PublicKey, SigningKey},
};

/// Why a token was refused. The messages are safe to return to a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT, bad base64, bad JSON.
    #[error("token is malformed")]
    Malformed,
    /// Header algorithm other than EdDSA (including `none` and HS256).
    #[error("token algorithm is not accepted")]
    Algorithm,
    /// No `kid`, or a `kid` this verifier does not know.
    #[error("token key is unknown")]
    UnknownKey,
    /// Signature does not verify.
    #[error("token signature is invalid")]
    Signature,
    /// Past `exp`.
    #[error("token has expired")]
    Expired,
    /// Wrong `aud`, `iss` or `token_use`, or a missing claim.
    #[error("token is not meant for this service")]
    WrongAudience,
    /// Lives longer than allowed (service tokens).
    #[error("token lifetime is too long")]
    Lifetime,
}

impl TokenError {
    pub(crate) fn from_jwt(err: &jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind as K;
        match err.kind() {
            K::InvalidAlgorithm | K::InvalidAlgorithmName | K::MissingAlgorithm => TokenError::Algorithm,
            K::InvalidSignature | K::InvalidEddsaKey | K::InvalidKeyFormat => TokenError::Signature,
            K::ExpiredSignature | K::ImmatureSignature => TokenError::Expired,
            K::InvalidAudience | K::InvalidIssuer | K::InvalidSubject | K::MissingRequiredClaim(_) => {
                TokenError::WrongAudience
            }
            _ => TokenError::Malformed,
        }
    }
}

/// Claims of a session token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClaims {
    /// Issuer (identity's configured issuer).
    pub iss: String,
    /// Owner id (the account).
    pub sub: String,
    /// Audience.
    pub aud: String,
    /// Session id.
    pub sid: String,
    /// Issued at (unix seconds).
    pub iat: i64,
    /// Expires at (unix seconds).
    pub exp: i64,
    /// Always "session".
    pub token_use: String,
}

/// A session token that passed signature, expiry, issuer and audience checks.
/// (Whether the session is still open is identity's VerifySession to say.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedSession {
    /// The account.
    pub owner_id: OwnerId,
    /// The session.
    pub session_id: Uuid,
    /// Issued at.
    pub issued_at: OffsetDateTime,
    /// Absolute expiry.
    pub expires_at: OffsetDateTime,
}

/// Issues session tokens (identity only).
#[derive(Debug, Clone)]
pub struct SessionSigner {
    key: SigningKey,
    issuer: String,
    audience: String,
}

impl SessionSigner {
    /// A signer with the current key.
    pub fn new(key: SigningKey, issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self { key, issuer: issuer.into(), audience: audience.into() }
    }

    /// Signs a token for `owner`/`session`, valid from `issued_at` until `expires_at`.
    pub fn sign(
        &self,
        owner: OwnerId,
        session: Uuid,
        issued_at: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<String, TokenError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.key.kid().to_owned());
        let claims = SessionClaims {
            iss: self.issuer.clone(),
            sub: owner.to_string(),
            aud: self.audience.clone(),
            sid: session.to_string(),
            iat: issued_at.unix_timestamp(),
            exp: expires_at.unix_timestamp(),
            token_use: TOKEN_USE_SESSION.to_owned(),
        };
        jsonwebtoken::encode(&header, &claims, &self.key.encoding_key()).map_err(|_| TokenError::Malformed)
    }
}

/// Verifies session tokens against a set of public keys (a JWKS).
#[derive(Clone)]
pub struct SessionVerifier {
    keys: HashMap<String, jsonwebtoken::DecodingKey>,
    validation: Validation,
}

impl std::fmt::Debug for SessionVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionVerifier").field("kids", &self.keys.keys().collect::<Vec<_>>()).finish()
    }
}

impl SessionVerifier {
    /// A verifier for tokens from `issuer` for `audience`, signed by one of `keys`.
    pub fn new<'a>(keys: impl IntoIterator<Item = &'a PublicKey>, issuer: &str, audience: &str) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 5;
        Self { keys: keys.into_iter().map(|k| (k.kid().to_owned(), k.decoding_key())).collect(), validation }
    }

    /// Whether a key id is known.
    pub fn knows(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// Checks algorithm, key, signature, expiry, issuer, audience and claim shapes.
    pub fn verify(&self, token: &str) -> Result<VerifiedSession, TokenError> {
        let kid = header_kid(token)?;
        let key = self.keys.get(&kid).ok_or(TokenError::UnknownKey)?;
        let data = jsonwebtoken::decode::<SessionClaims>(token, key, &self.validation)
            .map_err(|e| TokenError::from_jwt(&e))?;
        let c = data.claims;
        if c.token_use != TOKEN_USE_SESSION {
            return Err(TokenError::WrongAudience);
        }
        let owner_id = c.sub.parse::<Uuid>().map_err(|_| TokenError::Malformed)?;
        let session_id = c.sid.parse::<Uuid>().map_err(|_| TokenError::Malformed)?;
        let issued_at = OffsetDateTime::from_unix_timestamp(c.iat).map_err(|_| TokenError::Malformed)?;
        let expires_at = OffsetDateTime::from_unix_timestamp(c.exp).map_err(|_| TokenError::Malformed)?;
        Ok(VerifiedSession { owner_id: OwnerId(owner_id), session_id, issued_at, expires_at })
    }
}

/// The `kid` of a token whose header names EdDSA; anything else is refused here.
pub(crate) fn header_kid(token: &str) -> Result<String, TokenError> {
    // `decode_header` fails on unknown algorithms such as "none".
    let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::Json(_) => TokenError::Algorithm,
        _ => TokenError::Malformed,
    })?;
    if header.alg != Algorithm::EdDSA {
        return Err(TokenError::Algorithm);
    }
    header.kid.ok_or(TokenError::UnknownKey)
}

/// Where a [`JwksCache`] gets keys from (identity's GetJwks in production).
pub trait JwksSource: Send + Sync + 'static {
    /// Fetches the current key set.
    fn fetch(&self) -> futures_lite::BoxFuture<'_, Result<Vec<Jwk>, String>>;
}

/// Minimal boxed-future alias, to avoid a futures dependency.
pub mod futures_lite {
    /// A pinned, boxed, sendable future.
    pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
}

/// A [`SessionVerifier`] kept up to date from a [`JwksSource`]: refreshed when a
/// token names an unknown `kid` (key rotation), at most once per `min_refresh`.
pub struct JwksCache {
    source: Box<dyn JwksSource>,
    issuer: String,
    audience: String,
    min_refresh: Duration,
    state: RwLock<(Arc<SessionVerifier>, Option<Instant>)>,
    refresh: tokio::sync::Mutex<()>,
}

impl JwksCache {
    /// A cache that fetches on first use.
    pub fn new(source: impl JwksSource, issuer: &str, audience: &str, min_refresh: Duration) -> Self {
        Self {
            source: Box::new(source),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            min_refresh,
            state: RwLock::new((Arc::new(SessionVerifier::new([], issuer, audience)), None)),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    fn current(&self) -> (Arc<SessionVerifier>, Option<Instant>) {
        match self.state.read() {
            Ok(g) => (g.0.clone(), g.1),
            Err(p) => (p.get_ref().0.clone(), p.get_ref().1),
        }
    }

    /// Verifies a token, refreshing the key set first if its `kid` is unknown.
    pub async fn verify(&self, token: &str) -> Result<VerifiedSession, TokenError> {
        let kid = header_kid(token)?;
        let (verifier, fetched) = self.current();
        if verifier.knows(&kid) {
            return verifier.verify(token);
        }
        if fetched.is_some_and(|at| at.elapsed() < self.min_refresh) {
            return Err(TokenError::UnknownKey);
        }
        let _guard = self.refresh.lock().await;
        // Someone else may have refreshed while we waited.
        let (verifier, fetched) = self.current();
        if verifier.knows(&kid) {
            return verifier.verify(token);
        }
        if fetched.is_some_and(|at| at.elapsed() < self.min_refresh) {
            return Err(TokenError::UnknownKey);
        }
        let verifier = match self.source.fetch().await {
            Ok(jwks) => {
                let keys: Vec<PublicKey> = jwks.iter().filter_map(|j| PublicKey::from_jwk(j).ok()).collect();
                Arc::new(SessionVerifier::new(&keys, &self.issuer, &self.audience))
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not refresh the session key set");
                verifier
            }
        };
        match self.state.write() {
            Ok(mut g) => *g = (verifier.clone(), Some(Instant::now())),
            Err(p) => *p.into_inner() = (verifier.clone(), Some(Instant::now())),
        }
        verifier.verify(token)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
    use time::Duration as TD;

    use super::*;

    fn setup() -> (SessionSigner, SessionVerifier) {
        let key = SigningKey::generate("k1").unwrap();
        let verifier = SessionVerifier::new([&key.public()], "bizops-identity", "bizops");
        (SessionSigner::new(key, "bizops-identity", "bizops"), verifier)
    }

    fn b64(v: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn round_trip() {
        let (signer, verifier) = setup();
        let owner = OwnerId(Uuid::now_v7());
        let sid = Uuid::now_v7();
        let now = OffsetDateTime::now_utc();
        let token = signer.sign(owner, sid, now, now + TD::hours(12)).unwrap();
        let v = verifier.verify(&token).unwrap();
        assert_eq!((v.owner_id, v.session_id), (owner, sid));
        assert_eq!(v.expires_at.unix_timestamp(), (now + TD::hours(12)).unix_timestamp());
    }

    #[test]
    fn rejects_expired_tampered_and_foreign_tokens() {
        let (signer, verifier) = setup();
        let now = OffsetDateTime::now_utc();
        let owner = OwnerId(Uuid::now_v7());
        let expired = signer.sign(owner, Uuid::now_v7(), now - TD::hours(13), now - TD::hours(1)).unwrap();
        assert_eq!(verifier.verify(&expired), Err(TokenError::Expired));

        let good = signer.sign(owner, Uuid::now_v7(), now, now + TD::hours(1)).unwrap();
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
        claims["sub"] = serde_json::Value::String(Uuid::now_v7().to_string());
        parts[1] = b64(&claims);
        assert_eq!(verifier.verify(&parts.join(".")), Err(TokenError::Signature));

        // Signed by a key with the same kid that the verifier does not trust.
        let other = SessionSigner::new(SigningKey::generate("k1").unwrap(), "bizops-identity", "bizops");
        let forged = other.sign(owner, Uuid::now_v7(), now, now + TD::hours(1)).unwrap();
        assert_eq!(verifier.verify(&forged), Err(TokenError::Signature));

        // Right key, wrong audience.
        let key = SigningKey::generate("k2").unwrap();
        let aud_verifier = SessionVerifier::new([&key.public()], "bizops-identity", "bizops");
        let wrong_aud = SessionSigner::new(key, "bizops-identity", "elsewhere")
            .sign(owner, Uuid::now_v7(), now, now + TD::hours(1))
            .unwrap();
        assert_eq!(aud_verifier.verify(&wrong_aud), Err(TokenError::WrongAudience));

        assert_eq!(verifier.verify("not.a.jwt"), Err(TokenError::Malformed));
        assert_eq!(verifier.verify(""), Err(TokenError::Malformed));
    }

    #[test]
    fn rejects_alg_none_and_hs256() {
        let (signer, verifier) = setup();
        let now = OffsetDateTime::now_utc();
        let good = signer.sign(OwnerId(Uuid::now_v7()), Uuid::now_v7(), now, now + TD::hours(1)).unwrap();
        let claims = good.split('.').nth(1).unwrap().to_owned();

        let none =
            format!("{}.{claims}.", b64(&serde_json::json!({"alg": "none", "typ": "JWT", "kid": "k1"})));
        assert_eq!(verifier.verify(&none), Err(TokenError::Algorithm));

        // HS256 signed with the public key bytes as the HMAC secret: the classic
        // algorithm-confusion attack.
        let claims: SessionClaims =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&claims).unwrap()).unwrap();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        let x = signer.key.public().to_jwk().x;
        let hs =
            jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(x.as_bytes()))
                .unwrap();
        assert_eq!(verifier.verify(&hs), Err(TokenError::Algorithm));
    }

    #[test]
    fn a_service_token_is_not_a_session() {
        let key = SigningKey::generate("gateway").unwrap();
        let verifier = SessionVerifier::new([&key.public()], "gateway", "identity");
        let token = crate::ServiceSigner::new("gateway", key).token_for("identity").unwrap();
        // Even with the service's key trusted, issuer and token_use do not fit.
        assert!(verifier.verify(&token).is_err());
    }

    struct Fixed(Vec<Jwk>, Arc<std::sync::atomic::AtomicUsize>);
    impl JwksSource for Fixed {
        fn fetch(&self) -> futures_lite::BoxFuture<'_, Result<Vec<Jwk>, String>> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move { Ok(self.0.clone()) })
        }
    }

    #[tokio::test]
    async fn jwks_cache_fetches_unknown_kids_but_not_too_often() {
        let (signer, _) = setup();
        let jwks = vec![signer.key.public().to_jwk()];
        let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let cache = JwksCache::new(
            Fixed(jwks, fetches.clone()),
            "bizops-identity",
            "bizops",
            Duration::from_secs(30),
        );
        let now = OffsetDateTime::now_utc();
        let token = signer.sign(OwnerId(Uuid::now_v7()), Uuid::now_v7(), now, now + TD::hours(1)).unwrap();
        assert!(cache.verify(&token).await.is_ok());
        assert!(cache.verify(&token).await.is_ok());
        let stranger = SessionSigner::new(SigningKey::generate("k9").unwrap(), "bizops-identity", "bizops")
            .sign(OwnerId(Uuid::now_v7()), Uuid::now_v7(), now, now + TD::hours(1))
            .unwrap();
        assert_eq!(cache.verify(&stranger).await, Err(TokenError::UnknownKey));
        assert_eq!(cache.verify(&stranger).await, Err(TokenError::UnknownKey));
        // One fetch on first use; unknown kids within min_refresh do not refetch.
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
