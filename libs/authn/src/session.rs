//! User tokens: EdDSA JWTs with `kid`, `iss`, `sub` (owner), `sid` (session),
//! `aud`, `iat`, `exp` and `token_use` — `"session"` for the session a person signs
//! in to (identity alone accepts it), `"access"` for the short-lived token identity
//! mints from a live session (ExchangeToken, at most
//! [`MAX_ACCESS_TOKEN_LIFETIME`]) that every other service accepts.
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
    OwnerId, TOKEN_USE_ACCESS, TOKEN_USE_SESSION,
    keys::{Jwk, PublicKey, SigningKey},
};

/// The longest an access token may live (`exp - iat`); identity signs none longer
/// and verifiers refuse longer ones. With the verifiers' 5 s leeway for clock skew,
/// an access token is refused everywhere within 60 s of being minted, so within
/// 60 s of its session's end.
pub const MAX_ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(55);

/// Clock skew a verifier tolerates on `exp`.
const LEEWAY_SECS: u64 = 5;

/// Which kind of user token a verifier accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserToken {
    /// Session tokens (identity: sign-out, password change, ExchangeToken, …).
    Session,
    /// Access tokens (pilot-catalog, credential-vault, executor).
    Access,
}

impl UserToken {
    /// The `token_use` claim of this kind.
    pub fn token_use(self) -> &'static str {
        match self {
            UserToken::Session => TOKEN_USE_SESSION,
            UserToken::Access => TOKEN_USE_ACCESS,
        }
    }
}

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
    /// Lives longer than allowed (service and access tokens).
    #[error("token lifetime is too long")]
    Lifetime,
    /// A session token presented where only access tokens are accepted.
    #[error(
        "a session token is not accepted here; exchange the session for an access token \
         (identity's ExchangeToken)"
    )]
    SessionToken,
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

/// Claims of a user token (session or access).
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
    /// "session" or "access".
    pub token_use: String,
}

/// A user token that passed signature, expiry, issuer, audience and kind checks.
/// (Whether the session is still open is identity's to say: VerifySession and
/// ExchangeToken; an access token lives too briefly to need asking.)
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

/// Issues session and access tokens (identity only).
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
        self.sign_kind(UserToken::Session, owner, session, issued_at, expires_at)
    }

    /// Signs an access token for `owner`/`session`, valid from `issued_at` until
    /// `expires_at`, which must be at most [`MAX_ACCESS_TOKEN_LIFETIME`] later.
    pub fn sign_access(
        &self,
        owner: OwnerId,
        session: Uuid,
        issued_at: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<String, TokenError> {
        if expires_at - issued_at > MAX_ACCESS_TOKEN_LIFETIME {
            return Err(TokenError::Lifetime);
        }
        self.sign_kind(UserToken::Access, owner, session, issued_at, expires_at)
    }

    fn sign_kind(
        &self,
        kind: UserToken,
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
            token_use: kind.token_use().to_owned(),
        };
        jsonwebtoken::encode(&header, &claims, &self.key.encoding_key()).map_err(|_| TokenError::Malformed)
    }
}

/// Verifies user tokens of one kind against a set of public keys (a JWKS).
#[derive(Clone)]
pub struct SessionVerifier {
    keys: HashMap<String, jsonwebtoken::DecodingKey>,
    validation: Validation,
    kind: UserToken,
}

impl std::fmt::Debug for SessionVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionVerifier")
            .field("kind", &self.kind)
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SessionVerifier {
    /// A verifier for session tokens from `issuer` for `audience`, signed by one of `keys`.
    pub fn new<'a>(keys: impl IntoIterator<Item = &'a PublicKey>, issuer: &str, audience: &str) -> Self {
        Self::of_kind(UserToken::Session, keys, issuer, audience)
    }

    /// A verifier for access tokens from `issuer` for `audience`, signed by one of `keys`.
    pub fn access<'a>(keys: impl IntoIterator<Item = &'a PublicKey>, issuer: &str, audience: &str) -> Self {
        Self::of_kind(UserToken::Access, keys, issuer, audience)
    }

    /// A verifier for tokens of `kind`.
    pub fn of_kind<'a>(
        kind: UserToken,
        keys: impl IntoIterator<Item = &'a PublicKey>,
        issuer: &str,
        audience: &str,
    ) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
        Self {
            keys: keys.into_iter().map(|k| (k.kid().to_owned(), k.decoding_key())).collect(),
            validation,
            kind,
        }
    }

    /// The kind of token this verifier accepts.
    pub fn kind(&self) -> UserToken {
        self.kind
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
        if c.token_use != self.kind.token_use() {
            return Err(if self.kind == UserToken::Access && c.token_use == TOKEN_USE_SESSION {
                TokenError::SessionToken
            } else {
                TokenError::WrongAudience
            });
        }
        if self.kind == UserToken::Access
            && c.exp.saturating_sub(c.iat) > MAX_ACCESS_TOKEN_LIFETIME.as_secs().cast_signed()
        {
            return Err(TokenError::Lifetime);
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
/// token names an unknown `kid` (key rotation, at most once per `min_refresh`) and,
/// once [`JwksCache::keep_fresh`] runs, periodically — each refresh replaces the
/// whole set, so a key identity no longer publishes stops being accepted.
pub struct JwksCache {
    source: Box<dyn JwksSource>,
    kind: UserToken,
    issuer: String,
    audience: String,
    min_refresh: Duration,
    state: RwLock<(Arc<SessionVerifier>, Option<Instant>)>,
    refresh: tokio::sync::Mutex<()>,
}

impl JwksCache {
    /// A cache of verifiers for tokens of `kind` that fetches on first use.
    pub fn new(
        source: impl JwksSource,
        kind: UserToken,
        issuer: &str,
        audience: &str,
        min_refresh: Duration,
    ) -> Self {
        Self {
            source: Box::new(source),
            kind,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            min_refresh,
            state: RwLock::new((Arc::new(SessionVerifier::of_kind(kind, [], issuer, audience)), None)),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    fn current(&self) -> (Arc<SessionVerifier>, Option<Instant>) {
        match self.state.read() {
            Ok(g) => (g.0.clone(), g.1),
            Err(p) => (p.get_ref().0.clone(), p.get_ref().1),
        }
    }

    /// Replaces the verifier; `for_unknown_kid` also restarts the `min_refresh`
    /// wait of lookups for unknown key ids (a periodic refresh does not, so a key
    /// identity starts using right after one is still fetched at once).
    fn store(&self, verifier: Arc<SessionVerifier>, for_unknown_kid: bool) {
        let mut g = match self.state.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let fetched = if for_unknown_kid { Some(Instant::now()) } else { g.1 };
        *g = (verifier, fetched);
    }

    /// Fetches the key set and makes it the one tokens are verified with; on a
    /// failure the previous set stays.
    async fn reload(&self, for_unknown_kid: bool) -> Result<Arc<SessionVerifier>, Arc<SessionVerifier>> {
        match self.source.fetch().await {
            Ok(jwks) => {
                let keys: Vec<PublicKey> = jwks.iter().filter_map(|j| PublicKey::from_jwk(j).ok()).collect();
                let verifier =
                    Arc::new(SessionVerifier::of_kind(self.kind, &keys, &self.issuer, &self.audience));
                self.store(verifier.clone(), for_unknown_kid);
                Ok(verifier)
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not refresh the session key set");
                let (verifier, _) = self.current();
                self.store(verifier.clone(), for_unknown_kid);
                Err(verifier)
            }
        }
    }

    /// Refreshes the key set every `every` (every `min_refresh` after a failed
    /// fetch) for as long as the cache lives. Needs a Tokio runtime.
    pub fn keep_fresh(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let cache = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut wait = every;
            loop {
                tokio::time::sleep(wait).await;
                let Some(cache) = cache.upgrade() else { return };
                let _guard = cache.refresh.lock().await;
                wait = match cache.reload(false).await {
                    Ok(_) => every,
                    Err(_) => cache.min_refresh.min(every),
                };
            }
        })
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
        match self.reload(true).await {
            Ok(verifier) | Err(verifier) => verifier.verify(token),
        }
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
            UserToken::Session,
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

    #[test]
    fn access_tokens_are_their_own_kind_and_short_lived() {
        let key = SigningKey::generate("k1").unwrap();
        let access = SessionVerifier::access([&key.public()], "bizops-identity", "bizops");
        let sessions = SessionVerifier::new([&key.public()], "bizops-identity", "bizops");
        let signer = SessionSigner::new(key, "bizops-identity", "bizops");
        let (owner, sid, now) = (OwnerId(Uuid::now_v7()), Uuid::now_v7(), OffsetDateTime::now_utc());

        let token = signer.sign_access(owner, sid, now, now + TD::seconds(55)).unwrap();
        let v = access.verify(&token).unwrap();
        assert_eq!((v.owner_id, v.session_id), (owner, sid));
        // identity's session verifier does not take an access token for a session.
        assert_eq!(sessions.verify(&token), Err(TokenError::WrongAudience));

        // A session token at a service: refused, and the error says what to do.
        let session = signer.sign(owner, sid, now, now + TD::hours(12)).unwrap();
        let refused = access.verify(&session).unwrap_err();
        assert_eq!(refused, TokenError::SessionToken);
        assert!(refused.to_string().contains("ExchangeToken"), "{refused}");

        // Longer than 55 s: identity will not sign it, and a verifier refuses one.
        assert_eq!(signer.sign_access(owner, sid, now, now + TD::seconds(56)), Err(TokenError::Lifetime));
        let long = signer.sign_kind(UserToken::Access, owner, sid, now, now + TD::minutes(10)).unwrap();
        assert_eq!(access.verify(&long), Err(TokenError::Lifetime));

        let expired = signer.sign_access(owner, sid, now - TD::seconds(60), now - TD::seconds(10)).unwrap();
        assert_eq!(access.verify(&expired), Err(TokenError::Expired));
    }

    /// A key source whose set the test changes.
    #[derive(Clone)]
    struct Swappable(Arc<std::sync::Mutex<Vec<Jwk>>>);
    impl JwksSource for Swappable {
        fn fetch(&self) -> futures_lite::BoxFuture<'_, Result<Vec<Jwk>, String>> {
            let keys = self.0.lock().unwrap().clone();
            Box::pin(async move { Ok(keys) })
        }
    }

    #[tokio::test]
    async fn a_key_identity_stops_publishing_is_dropped_at_the_next_refresh() {
        let old = SigningKey::generate("old").unwrap();
        let new = SigningKey::generate("new").unwrap();
        let published =
            Swappable(Arc::new(std::sync::Mutex::new(vec![new.public().to_jwk(), old.public().to_jwk()])));
        let cache = Arc::new(JwksCache::new(
            published.clone(),
            UserToken::Access,
            "bizops-identity",
            "bizops",
            Duration::from_secs(3600),
        ));
        let refresher = cache.keep_fresh(Duration::from_millis(50));
        let (owner, now) = (OwnerId(Uuid::now_v7()), OffsetDateTime::now_utc());
        let by_old = SessionSigner::new(old, "bizops-identity", "bizops")
            .sign_access(owner, Uuid::now_v7(), now, now + TD::seconds(55))
            .unwrap();
        let by_new = SessionSigner::new(new, "bizops-identity", "bizops")
            .sign_access(owner, Uuid::now_v7(), now, now + TD::seconds(55))
            .unwrap();
        assert!(cache.verify(&by_old).await.is_ok());

        // identity retires the old key: within a refresh interval it is refused,
        // although the token itself is still within its lifetime and a lookup of an
        // unknown kid would not refetch for an hour.
        published.0.lock().unwrap().retain(|k| k.kid == "new");
        let deadline = Instant::now() + Duration::from_secs(10);
        while cache.verify(&by_old).await.is_ok() {
            assert!(Instant::now() < deadline, "the retired key is still accepted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(cache.verify(&by_old).await, Err(TokenError::UnknownKey));
        assert!(cache.verify(&by_new).await.is_ok());

        // The refresher ends with the cache.
        drop(cache);
        tokio::time::timeout(Duration::from_secs(5), refresher).await.unwrap().unwrap();
    }
}
