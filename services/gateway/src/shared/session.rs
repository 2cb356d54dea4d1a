//! The session cookie and revocation.
//!
//! Exactly one cookie exists: `__Host-bizops_session` holding identity's session
//! JWT (`HttpOnly; Secure; SameSite=Strict; Path=/`, no `Domain`). Only the
//! explicit development setting drops `Secure`, and then the name loses the
//! `__Host-` prefix (`bizops_session`), which browsers would otherwise refuse.
//!
//! Revocation is enforced here: every request with a cookie is checked with
//! identity, and an answer (also "not valid") is reused for at most 5 s. The
//! services behind the gateway accept only access tokens, which identity mints
//! from a live session (ExchangeToken, ≤ 55 s): the gateway exchanges a session
//! once and reuses its access token until 10 s before it expires; in between it
//! re-checks the session with VerifySession. A session identity no longer
//! vouches for gets no access token, and its last one expires within a minute.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bizops_errors::{Error, ErrorCode};
use bizops_proto::identity::v1 as pb;
use http::{HeaderMap, HeaderValue, header};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::shared::backend::Backends;

/// Name of the cookie in production.
pub const SECURE_COOKIE_NAME: &str = "__Host-bizops_session";
/// Name of the cookie with `insecure_dev_cookies` (plain http).
pub const DEV_COOKIE_NAME: &str = "bizops_session";
/// Longest token the gateway accepts from a cookie (identity's are ~400 bytes).
const MAX_TOKEN_BYTES: usize = 4096;
/// Entries the verification cache holds at most.
const MAX_CACHE_ENTRIES: usize = 100_000;

/// An access token is exchanged again this long before it expires.
const ACCESS_REFRESH_MARGIN: Duration = Duration::from_secs(10);

/// A session identity vouched for (within the cache bound).
#[derive(Clone)]
pub struct CurrentSession {
    /// The session JWT: identity's calls that act on the session (sign-out,
    /// password change, account) carry it.
    pub token: SecretString,
    /// A live access token of the session: every call to pilot-catalog,
    /// credential-vault and executor carries it.
    pub access: Arc<SecretString>,
    /// The account, owner of everything the request may touch.
    pub owner_id: Uuid,
    /// The session.
    pub session_id: Uuid,
    /// Absolute expiry.
    pub expires_at: OffsetDateTime,
}

impl fmt::Debug for CurrentSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurrentSession")
            .field("owner_id", &self.owner_id)
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

/// How the session cookie is written.
#[derive(Debug, Clone)]
pub struct CookieJar {
    secure: bool,
}

impl CookieJar {
    /// `secure = false` only for plain-http development.
    pub fn new(secure: bool) -> Self {
        Self { secure }
    }

    /// The cookie's name.
    pub fn name(&self) -> &'static str {
        if self.secure { SECURE_COOKIE_NAME } else { DEV_COOKIE_NAME }
    }

    /// `Set-Cookie` for a new session, expiring with it.
    pub fn set(&self, token: &str, expires_at: OffsetDateTime) -> Result<HeaderValue, Error> {
        let max_age = (expires_at - OffsetDateTime::now_utc()).whole_seconds().max(0);
        HeaderValue::from_str(&format!("{}={token}; {}; Max-Age={max_age}", self.name(), self.attributes()))
            .map_err(|_| Error::internal(std::io::Error::other("session token is not a valid cookie value")))
    }

    /// `Set-Cookie` that removes the cookie.
    pub fn clear(&self) -> HeaderValue {
        HeaderValue::from_str(&format!("{}=; {}; Max-Age=0", self.name(), self.attributes()))
            .unwrap_or_else(|_| HeaderValue::from_static("bizops_session=; Max-Age=0"))
    }

    fn attributes(&self) -> &'static str {
        if self.secure {
            "HttpOnly; Secure; SameSite=Strict; Path=/"
        } else {
            "HttpOnly; SameSite=Strict; Path=/"
        }
    }

    /// Whether the request carries the session cookie at all (valid or not).
    pub fn present(&self, headers: &HeaderMap) -> bool {
        let name = self.name();
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(k, _)| k == name)
    }

    /// The session token from the request's `Cookie` headers, if any.
    pub fn read(&self, headers: &HeaderMap) -> Option<SecretString> {
        let name = self.name();
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty() && v.len() <= MAX_TOKEN_BYTES && v.bytes().all(is_token_byte))
            .map(|v| SecretString::from(v.to_owned()))
    }
}

impl Cached {
    /// Whether the answer, or else the session's access token, is still fresh.
    fn useful(&self, now: Instant) -> bool {
        self.until > now || self.session.as_ref().is_some_and(|v| v.access.refresh_at > now)
    }
}

impl Vouched {
    fn current(&self, token: &SecretString) -> CurrentSession {
        CurrentSession {
            token: token.clone(),
            access: self.access.token.clone(),
            owner_id: self.owner_id,
            session_id: self.session_id,
            expires_at: self.expires_at,
        }
    }
}

fn ids(rpc: &str, owner: &str, session: &str) -> Result<(Uuid, Uuid), Error> {
    match (owner.parse(), session.parse()) {
        (Ok(owner), Ok(session)) => Ok((owner, session)),
        _ => Err(Error::internal(std::io::Error::other(format!("{rpc} answered malformed ids")))),
    }
}

/// JWTs are base64url segments separated by dots.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

#[derive(Clone)]
struct Cached {
    /// `None`: identity said the token is not valid (cached too, so a repeated
    /// bad cookie costs one call per TTL).
    session: Option<Vouched>,
    /// Identity's answer is reused until then.
    until: Instant,
}

#[derive(Clone)]
struct Vouched {
    owner_id: Uuid,
    session_id: Uuid,
    expires_at: OffsetDateTime,
    access: Access,
}

/// An access token and when to exchange the session again.
#[derive(Clone)]
struct Access {
    token: Arc<SecretString>,
    refresh_at: Instant,
}

/// Verifies session tokens with identity, remembering each answer, positive or
/// negative, for at most the configured TTL (≤ 5 s), and each session's access
/// token until 10 s before it expires. Keys are SHA-256 digests of tokens.
pub struct SessionVerifier {
    backends: Backends,
    ttl: Duration,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
}

impl SessionVerifier {
    /// A verifier asking identity through `backends`.
    pub fn new(backends: Backends, ttl: Duration) -> Self {
        Self { backends, ttl: ttl.min(crate::config::MAX_SESSION_CACHE_TTL), cache: Mutex::default() }
    }

    fn key(token: &SecretString) -> [u8; 32] {
        Sha256::digest(token.expose_secret().as_bytes()).into()
    }

    /// The session behind `token`; `Ok(None)` when identity says it is not valid
    /// (signed out, expired, revoked, forged); `Err` when identity cannot answer.
    pub async fn verify(&self, token: SecretString) -> Result<Option<CurrentSession>, Error> {
        match self.cached(&token) {
            Some(answer) => Ok(answer),
            None => self.ask(token).await,
        }
    }

    /// The remembered answer for `token`, if it and the session's access token
    /// are still fresh.
    pub fn cached(&self, token: &SecretString) -> Option<Option<CurrentSession>> {
        let now = Instant::now();
        let key = Self::key(token);
        let hit = self.lock().get(&key).filter(|c| c.until > now)?.session.clone();
        match hit {
            None => Some(None),
            Some(v) if v.access.refresh_at <= now => None,
            Some(v) if v.expires_at <= OffsetDateTime::now_utc() => Some(None),
            Some(v) => Some(Some(v.current(token))),
        }
    }

    /// Asks identity (no cache lookup) and remembers the answer: VerifySession
    /// while the session's access token is fresh, else ExchangeToken (which
    /// checks the session the same way and mints a new access token).
    pub async fn ask(&self, token: SecretString) -> Result<Option<CurrentSession>, Error> {
        let key = Self::key(&token);
        let now = Instant::now();
        let access = self
            .lock()
            .get(&key)
            .and_then(|c| c.session.as_ref())
            .map(|v| v.access.clone())
            .filter(|a| a.refresh_at > now);
        let answer = match access {
            Some(access) => self.verify_session(&token, access).await,
            None => self.exchange(&token).await,
        };
        let session = match answer {
            Ok(v) => v,
            Err(e) if matches!(e.code(), ErrorCode::Unauthenticated | ErrorCode::InvalidArgument) => {
                self.remember(key, Cached { session: None, until: now + self.ttl });
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let current = session.current(&token);
        // Identity's answer is not reused past the access token's refresh either.
        let until = (now + self.ttl).min(session.access.refresh_at.max(now));
        self.remember(key, Cached { session: Some(session), until });
        Ok(Some(current))
    }

    async fn verify_session(&self, token: &SecretString, access: Access) -> Result<Vouched, Error> {
        let b = &self.backends;
        let r = b
            .call("VerifySession", || {
                let request =
                    tonic::Request::new(pb::VerifySessionRequest { token: token.expose_secret().to_owned() });
                let mut client = b.identity();
                Ok(async move { client.verify_session(request).await })
            })
            .await?;
        let (owner_id, session_id) = ids("VerifySession", &r.owner_id, &r.session_id)?;
        let expires_at = r.expires_at.as_ref().and_then(bizops_proto::timestamp::from_proto);
        let expires_at = expires_at.unwrap_or_else(|| OffsetDateTime::now_utc() + self.ttl);
        Ok(Vouched { owner_id, session_id, expires_at, access })
    }

    async fn exchange(&self, token: &SecretString) -> Result<Vouched, Error> {
        let b = &self.backends;
        let r = b
            .call("ExchangeToken", || {
                let request = tonic::Request::new(pb::ExchangeTokenRequest {
                    subject_token: token.expose_secret().to_owned(),
                });
                let mut client = b.identity();
                Ok(async move { client.exchange_token(request).await })
            })
            .await?;
        let (owner_id, session_id) = ids("ExchangeToken", &r.owner_id, &r.session_id)?;
        let now = OffsetDateTime::now_utc();
        let expires_at = r.session_expires_at.as_ref().and_then(bizops_proto::timestamp::from_proto);
        let expires_at = expires_at.unwrap_or_else(|| now + self.ttl);
        let access_expires =
            r.expires_at.as_ref().and_then(bizops_proto::timestamp::from_proto).unwrap_or(now);
        // What is left by this clock, never more than an access token may live
        // (identity's clock may be ahead).
        let left = Duration::try_from(access_expires - now)
            .unwrap_or_default()
            .min(bizops_authn::MAX_ACCESS_TOKEN_LIFETIME);
        // Until 10 s before it expires; a token with less left (its session ends
        // soon) is used for the first half of what is left.
        let keep = left.saturating_sub(ACCESS_REFRESH_MARGIN).max(left / 2);
        let token = Arc::new(SecretString::from(r.access_token));
        let access = Access { token, refresh_at: Instant::now() + keep };
        metrics::counter!("gateway_token_exchanges_total").increment(1);
        Ok(Vouched { owner_id, session_id, expires_at, access })
    }

    /// Forgets `token` at once (after logout, password change, account deletion).
    pub fn forget(&self, token: &SecretString) {
        self.lock().remove(&Self::key(token));
    }

    fn remember(&self, key: [u8; 32], entry: Cached) {
        let mut cache = self.lock();
        if cache.len() >= MAX_CACHE_ENTRIES {
            let now = Instant::now();
            cache.retain(|_, c| c.useful(now));
            if cache.len() >= MAX_CACHE_ENTRIES {
                // Still full of live entries: skip caching rather than grow.
                return;
            }
        }
        cache.insert(key, entry);
    }

    /// Drops entries that are of no more use (called periodically).
    pub fn prune(&self) {
        let now = Instant::now();
        self.lock().retain(|_, c| c.useful(now));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Cached>> {
        match self.cache.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn production_cookie_has_every_attribute() {
        let jar = CookieJar::new(true);
        let exp = OffsetDateTime::now_utc() + time::Duration::hours(12);
        let v = jar.set("a.b.c", exp).unwrap();
        let v = v.to_str().unwrap();
        assert!(v.starts_with("__Host-bizops_session=a.b.c; "), "{v}");
        for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/", "Max-Age="] {
            assert!(v.contains(attr), "{attr} missing in {v}");
        }
        assert!(!v.to_ascii_lowercase().contains("domain"), "{v}");
        let cleared = jar.clear();
        assert!(cleared.to_str().unwrap().starts_with("__Host-bizops_session=; "));
        assert!(cleared.to_str().unwrap().contains("Max-Age=0"));
    }

    #[test]
    fn dev_cookie_drops_secure_and_the_prefix_only() {
        let jar = CookieJar::new(false);
        let v = jar.set("t", OffsetDateTime::now_utc() + time::Duration::hours(1)).unwrap();
        let v = v.to_str().unwrap();
        assert!(v.starts_with("bizops_session=t; "), "{v}");
        assert!(!v.contains("Secure"));
        assert!(v.contains("HttpOnly") && v.contains("SameSite=Strict") && v.contains("Path=/"));
    }

    #[test]
    fn reads_only_its_own_cookie_and_only_token_characters() {
        let jar = CookieJar::new(true);
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "bizops_session=dev; other=1".parse().unwrap());
        assert!(jar.read(&h).is_none(), "the dev name is not read in production");
        h.append(header::COOKIE, "__Host-bizops_session=aa.bb.cc".parse().unwrap());
        assert_eq!(jar.read(&h).unwrap().expose_secret(), "aa.bb.cc");
        let mut bad = HeaderMap::new();
        bad.insert(header::COOKIE, "__Host-bizops_session=a\"b".parse().unwrap());
        assert!(jar.read(&bad).is_none());
    }
}
