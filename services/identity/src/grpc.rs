//! The gRPC edge of identity: validation into newtypes, ownership from the verified
//! caller, and every error mapped to one stable code (internal detail is logged).

use std::{net::IpAddr, sync::Arc, time::Duration};

use bizops_authn::{OwnerId, TokenError, UserCaller, require_user, source_address};
use bizops_errors::{Error, ErrorCode};
use bizops_proto::{
    identity::v1::{self as pb, identity_service_server::IdentityService},
    timestamp::to_proto,
};
use bizops_runtime::clock::Clock;
use secrecy::SecretString;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    config::SessionConfig,
    deletion::Deleter,
    email::{Email, normalise},
    keys::KeyRing,
    notify::{Notice, Notifier},
    password::{self, Hasher},
    store::{AccountRow, AccountStore, SessionRow},
    system::SystemStore,
    throttle::{Scope, Throttle},
};

/// The one answer for a wrong password and an unknown email.
const INVALID_CREDENTIALS: &str = "email or password is incorrect";

/// Longest display name, in characters.
const MAX_DISPLAY_NAME: usize = 100;

/// Everything the RPC handlers share.
pub struct Identity<S> {
    pub(crate) store: S,
    pub(crate) system: SystemStore,
    pub(crate) hasher: Arc<Hasher>,
    pub(crate) keys: KeyRing,
    pub(crate) throttle: Throttle,
    pub(crate) session: SessionConfig,
    pub(crate) trust_forwarded_from: Vec<String>,
    pub(crate) register_limiter: Arc<RegisterLimiter>,
    pub(crate) deleter: Deleter,
    pub(crate) notifier: Notifier,
    /// Where "now" comes from: session times, idle and expiry checks, throttling.
    pub(crate) clock: Arc<dyn Clock>,
}

/// Registrations per source address (each costs a full scrypt hash).
pub type RegisterLimiter = governor::DefaultKeyedRateLimiter<IpAddr>;

/// A limiter allowing `per_hour` registrations per address (bursts up to that).
pub fn register_limiter(per_hour: u32) -> RegisterLimiter {
    let per_hour = std::num::NonZeroU32::new(per_hour.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
    governor::RateLimiter::keyed(governor::Quota::per_hour(per_hour))
}

fn account_pb(a: &AccountRow) -> pb::Account {
    pb::Account {
        id: a.id.to_string(),
        email: a.email.clone(),
        display_name: a.display_name.clone().unwrap_or_default(),
        created_at: Some(to_proto(a.created_at)),
        password_changed_at: Some(to_proto(a.password_changed_at)),
    }
}

fn session_expired(reason: &str) -> Error {
    Error::new(ErrorCode::Unauthenticated, format!("session is not valid: {reason}; sign in again"))
}

impl<S: AccountStore> Identity<S> {
    fn source<T>(&self, request: &Request<T>) -> Option<IpAddr> {
        let trusted: Vec<&str> = self.trust_forwarded_from.iter().map(String::as_str).collect();
        source_address(request, &trusted)
    }

    /// Opens a session row and signs its token.
    async fn open_session(&self, owner: OwnerId) -> Result<(SessionRow, pb::Session), Error> {
        let now = self.clock.now();
        let row = SessionRow {
            id: Uuid::now_v7(),
            owner_id: owner.as_uuid(),
            created_at: now,
            expires_at: now + self.session.ttl,
            last_seen_at: now,
        };
        let session = self.sign(&row)?;
        Ok((row, session))
    }

    fn sign(&self, row: &SessionRow) -> Result<pb::Session, Error> {
        let token = self
            .keys
            .signer()
            .sign(OwnerId(row.owner_id), row.id, row.created_at, row.expires_at)
            .map_err(|e| Error::internal(format!("signing a session token: {e}")))?;
        Ok(pb::Session { token, session_id: row.id.to_string(), expires_at: Some(to_proto(row.expires_at)) })
    }

    /// Checks that a verified token's session is still open and not idle, and
    /// records the use. Revoked, expired and idle sessions are `UNAUTHENTICATED`.
    async fn live_session(&self, user: UserCaller) -> Result<SessionRow, Error> {
        let now = self.clock.now();
        let row = self
            .store
            .session(user.owner_id, user.session_id)
            .await?
            .ok_or_else(|| session_expired("it was signed out or revoked"))?;
        if row.expires_at <= now {
            self.store.delete_session(user.owner_id, row.id).await?;
            return Err(session_expired("it has expired"));
        }
        if now - row.last_seen_at > self.session.idle_timeout {
            self.store.delete_session(user.owner_id, row.id).await?;
            return Err(session_expired("it was idle for too long"));
        }
        if now - row.last_seen_at >= self.session.last_seen_resolution {
            self.store.touch_session(user.owner_id, row.id, now).await?;
        }
        Ok(SessionRow { last_seen_at: now.max(row.last_seen_at), ..row })
    }

    /// The caller's verified, live session.
    async fn caller_session<T>(&self, request: &Request<T>) -> Result<(UserCaller, SessionRow), Error> {
        let user = require_user(request)?;
        let row = self.live_session(user).await?;
        Ok((user, row))
    }

    /// Re-checks the account password for a sensitive change, throttled like Login.
    async fn recheck_password(
        &self,
        account: &AccountRow,
        password: String,
        source: Option<IpAddr>,
        field: &str,
    ) -> Result<(), Error> {
        let keys = self.throttle.keys(&account.email, source);
        let attempt = self.throttle.begin(&account.email, &keys, Scope::Reentry, self.clock.now()).await?;
        let verified =
            self.hasher.verify(SecretString::from(password), Some(account.password_hash.clone())).await?;
        if !verified.ok {
            return Err(Error::new(ErrorCode::InvalidCredentials, format!("{field}: password is incorrect")));
        }
        self.throttle.succeeded(attempt, &keys).await
    }

    async fn register(
        &self,
        source: Option<IpAddr>,
        req: pb::RegisterRequest,
    ) -> Result<pb::RegisterResponse, Error> {
        let limiter_key = source.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        if let Err(not_until) = self.register_limiter.check_key(&limiter_key) {
            let wait = not_until
                .wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
            return Err(Error::new(
                ErrorCode::RateLimited,
                format!(
                    "too many sign-ups from this address; try again in {} seconds",
                    wait.as_secs().max(1)
                ),
            )
            .with_retry_after(wait));
        }
        let email = Email::parse(&req.email)?;
        let display_name = req.display_name.trim().to_owned();
        if display_name.chars().count() > MAX_DISPLAY_NAME {
            return Err(Error::invalid(
                "display_name",
                format!("must be at most {MAX_DISPLAY_NAME} characters"),
            ));
        }
        if display_name.chars().any(char::is_control) {
            return Err(Error::invalid("display_name", "must not contain control characters"));
        }
        password::check_policy(&req.password, &email, &display_name)?;
        let hash = self.hasher.hash(SecretString::from(req.password)).await?;
        let now = self.clock.now();
        let account = AccountRow {
            id: Uuid::now_v7(),
            email: email.as_str().to_owned(),
            display_name: (!display_name.is_empty()).then_some(display_name),
            password_hash: hash,
            created_at: now,
            password_changed_at: now,
        };
        self.store.create_account(&account).await?;
        if source.is_some() {
            // The owner's own address is known from the start, so the per-email and
            // per-source limits can never lock them out of it.
            let keys = self.throttle.keys(&account.email, source);
            self.store.remember_source(OwnerId(account.id), keys.source(), now).await?;
        }
        metrics::counter!("identity_registrations_total").increment(1);
        tracing::info!(owner_id = %account.id, "account registered");
        Ok(pb::RegisterResponse { account: Some(account_pb(&account)) })
    }

    async fn login(&self, source: Option<IpAddr>, req: pb::LoginRequest) -> Result<pb::LoginResponse, Error> {
        // The raw normalised string, not `Email`: a malformed email must take the
        // same path (and time) as an unknown one.
        let email = normalise(&req.email);
        let keys = self.throttle.keys(&email, source);
        let now = self.clock.now();
        let attempt = self.throttle.begin(&email, &keys, Scope::Login, now).await?;

        // Unknown email, malformed email and over-long password all take the dummy
        // path: same work, same answer.
        let plausible = Email::parse(&email).is_ok() && req.password.chars().count() <= password::MAX_LEN;
        let record =
            if plausible { self.system.find_login(&email).await.map_err(Error::internal)? } else { None };
        let stored = record.as_ref().map(|r| r.password_hash.clone());
        let verified = self.hasher.verify(SecretString::from(req.password.clone()), stored).await?;
        let rejected = || {
            metrics::counter!("identity_logins_total", "result" => "invalid").increment(1);
            tracing::info!("login rejected");
            Error::new(ErrorCode::InvalidCredentials, INVALID_CREDENTIALS)
        };
        let Some(record) = record.filter(|_| verified.ok) else {
            // The attempt stays counted as a failure.
            return Err(rejected());
        };

        let owner = record.owner;
        if self.system.is_deleting(owner).await.map_err(Error::internal)? {
            // Only after the password checked out, so this says nothing to a guesser.
            metrics::counter!("identity_logins_total", "result" => "deleting").increment(1);
            tracing::info!(owner_id = %owner, "login refused: the account is being deleted");
            return Err(Error::new(
                ErrorCode::PermissionDenied,
                "this account is being deleted; signing in is closed",
            ));
        }
        self.throttle.succeeded(attempt, &keys).await?;
        self.store.remember_source(owner, keys.source(), now).await?;
        let mut current_hash = record.password_hash.clone();
        if verified.needs_upgrade {
            let new_hash = self.hasher.hash(SecretString::from(req.password)).await?;
            if self.store.upgrade_hash(owner, &record.password_hash, &new_hash).await? {
                tracing::info!(owner_id = %owner, "password hash upgraded to current parameters");
                current_hash = new_hash;
            }
        }
        let (row, session) = self.open_session(owner).await?;
        if !self.store.create_session(&row, &current_hash).await? {
            // The password changed while this sign-in was checking the old one.
            return Err(rejected());
        }
        let account = self.store.account(owner).await?.ok_or_else(rejected)?;
        metrics::counter!("identity_logins_total", "result" => "ok").increment(1);
        tracing::info!(owner_id = %owner, session_id = %row.id, "login succeeded");
        Ok(pb::LoginResponse { account: Some(account_pb(&account)), session: Some(session) })
    }

    /// A session token's session, checked like every use: signature, expiry,
    /// revocation, idle timeout.
    async fn session_of(&self, token: &str) -> Result<(UserCaller, SessionRow), Error> {
        let verified = {
            let verifier = self.keys.verifier();
            let guard = verifier.read().map_err(|_| Error::internal("key ring lock poisoned"))?;
            guard.verify(token.trim())
        };
        let verified = verified.map_err(|e: TokenError| session_expired(&e.to_string()))?;
        let user = UserCaller { owner_id: verified.owner_id, session_id: verified.session_id };
        let row = self.live_session(user).await?;
        Ok((user, row))
    }

    async fn verify_session(&self, token: &str) -> Result<pb::VerifySessionResponse, Error> {
        let (user, row) = self.session_of(token).await?;
        Ok(pb::VerifySessionResponse {
            owner_id: user.owner_id.to_string(),
            session_id: user.session_id.to_string(),
            expires_at: Some(to_proto(row.expires_at)),
            idle_expires_at: Some(to_proto(row.last_seen_at + self.session.idle_timeout)),
        })
    }

    /// Mints an access token from a live session; it never outlives the session.
    async fn exchange_token(&self, subject: &str) -> Result<pb::ExchangeTokenResponse, Error> {
        let outcome = self.session_of(subject).await;
        metrics::counter!("identity_token_exchanges_total", "result" => if outcome.is_ok() { "ok" } else { "refused" })
            .increment(1);
        let (user, row) = outcome?;
        let now = self.clock.now();
        let expires_at = (now + self.session.access_ttl).min(row.expires_at);
        let access_token = self
            .keys
            .signer()
            .sign_access(user.owner_id, user.session_id, now, expires_at)
            .map_err(|e| Error::internal(format!("signing an access token: {e}")))?;
        Ok(pb::ExchangeTokenResponse {
            access_token,
            expires_at: Some(to_proto(expires_at)),
            owner_id: user.owner_id.to_string(),
            session_id: user.session_id.to_string(),
            session_expires_at: Some(to_proto(row.expires_at)),
            idle_expires_at: Some(to_proto(row.last_seen_at + self.session.idle_timeout)),
        })
    }

    async fn change_password(
        &self,
        user: UserCaller,
        source: Option<IpAddr>,
        req: pb::ChangePasswordRequest,
    ) -> Result<pb::ChangePasswordResponse, Error> {
        let account =
            self.store.account(user.owner_id).await?.ok_or_else(|| session_expired("the account is gone"))?;
        self.recheck_password(&account, req.current_password, source, "current_password").await?;
        let email = Email::from_trusted(account.email.clone());
        password::check_policy(&req.new_password, &email, account.display_name.as_deref().unwrap_or(""))
            .map_err(|e| Error::new(e.code(), e.message().replacen("password:", "new_password:", 1)))?;
        let new_hash = self.hasher.hash(SecretString::from(req.new_password)).await?;
        let (row, session) = self.open_session(user.owner_id).await?;
        if !self.store.replace_password(user.owner_id, &account.password_hash, &new_hash, &row).await? {
            return Err(Error::new(
                ErrorCode::StaleVersion,
                "current_password: the password was changed at the same time; sign in again",
            ));
        }
        tracing::info!(owner_id = %user.owner_id, "password changed; every session revoked, a fresh one opened");
        let notifier = self.notifier.clone();
        let key = format!("password-changed/{}", row.id);
        tokio::spawn(async move { notifier.send(Notice::PasswordChanged, &account.email, &key).await });
        Ok(pb::ChangePasswordResponse { session: Some(session) })
    }

    async fn delete_account(
        &self,
        user: UserCaller,
        source: Option<IpAddr>,
        req: pb::DeleteAccountRequest,
    ) -> Result<pb::DeleteAccountResponse, Error> {
        let account =
            self.store.account(user.owner_id).await?.ok_or_else(|| session_expired("the account is gone"))?;
        self.recheck_password(&account, req.password, source, "password").await?;
        self.system.begin_deletion(user.owner_id, &account.email).await.map_err(Error::internal)?;
        tracing::info!(owner_id = %user.owner_id, "account deletion started");
        self.finish_deletion(user.owner_id).await
    }

    /// Runs a recorded deletion to the end. When a step fails, the caller learns
    /// that the deletion is under way and finishes by itself; repeating
    /// DeleteAccount with the same token finishes it now.
    async fn finish_deletion(&self, owner: OwnerId) -> Result<pb::DeleteAccountResponse, Error> {
        // In its own task: a caller hanging up must not cut a step in half.
        let deleter = self.deleter.clone();
        let outcome = tokio::spawn(async move { deleter.run(owner).await }).await.map_err(Error::internal)?;
        match outcome {
            Ok(()) => Ok(pb::DeleteAccountResponse { deleted_at: Some(to_proto(self.clock.now())) }),
            Err(stopped) => {
                tracing::warn!(owner_id = %owner, step = stopped.step, "account deletion paused; it will resume");
                Err(Error::new(
                    ErrorCode::Unavailable,
                    "account deletion has started and signing in is closed, but a service did not answer; \
                     the deletion finishes by itself within minutes (or repeat this request to finish it now)",
                )
                .with_retry_after(Duration::from_secs(30)))
            }
        }
    }
}

fn reply<T>(result: Result<T, Error>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl<S: AccountStore> IdentityService for Identity<S> {
    #[tracing::instrument(skip_all)]
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let source = self.source(&request);
        reply(self.register(source, request.into_inner()).await)
    }

    #[tracing::instrument(skip_all)]
    async fn login(&self, request: Request<pb::LoginRequest>) -> Result<Response<pb::LoginResponse>, Status> {
        let source = self.source(&request);
        reply(self.login(source, request.into_inner()).await)
    }

    #[tracing::instrument(skip_all)]
    async fn logout(
        &self,
        request: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        reply(
            async {
                let (user, row) = self.caller_session(&request).await?;
                self.store.delete_session(user.owner_id, row.id).await?;
                tracing::info!(owner_id = %user.owner_id, session_id = %row.id, "signed out");
                Ok(pb::LogoutResponse {})
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all)]
    async fn change_password(
        &self,
        request: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::ChangePasswordResponse>, Status> {
        let source = self.source(&request);
        reply(
            async {
                let (user, _) = self.caller_session(&request).await?;
                self.change_password(user, source, request.into_inner()).await
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all)]
    async fn verify_session(
        &self,
        request: Request<pb::VerifySessionRequest>,
    ) -> Result<Response<pb::VerifySessionResponse>, Status> {
        reply(self.verify_session(&request.into_inner().token).await)
    }

    #[tracing::instrument(skip_all)]
    async fn exchange_token(
        &self,
        request: Request<pb::ExchangeTokenRequest>,
    ) -> Result<Response<pb::ExchangeTokenResponse>, Status> {
        reply(self.exchange_token(&request.into_inner().subject_token).await)
    }

    #[tracing::instrument(skip_all)]
    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::GetAccountResponse>, Status> {
        reply(
            async {
                let (user, _) = self.caller_session(&request).await?;
                let account = self
                    .store
                    .account(user.owner_id)
                    .await?
                    .ok_or_else(|| session_expired("the account is gone"))?;
                Ok(pb::GetAccountResponse { account: Some(account_pb(&account)) })
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all)]
    async fn get_jwks(
        &self,
        _request: Request<pb::GetJwksRequest>,
    ) -> Result<Response<pb::GetJwksResponse>, Status> {
        reply(
            async {
                let set = self.keys.jwks();
                let jwks_json = serde_json::to_string(&set).map_err(Error::internal)?;
                let keys = set
                    .keys
                    .into_iter()
                    .map(|k| pb::Jwk {
                        kty: k.kty,
                        crv: k.crv,
                        kid: k.kid,
                        x: k.x,
                        alg: k.alg,
                        r#use: k.key_use,
                    })
                    .collect();
                Ok(pb::GetJwksResponse { keys, jwks_json })
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all)]
    async fn delete_account(
        &self,
        request: Request<pb::DeleteAccountRequest>,
    ) -> Result<Response<pb::DeleteAccountResponse>, Status> {
        let source = self.source(&request);
        reply(
            async {
                // The first step of a deletion revokes every session, this one's
                // too: a repeat with the same (still validly signed) token resumes
                // a deletion in progress instead of failing on the revoked session.
                let user = require_user(&request)?;
                if self.system.is_deleting(user.owner_id).await.map_err(Error::internal)? {
                    return self.finish_deletion(user.owner_id).await;
                }
                let (user, _) = self.caller_session(&request).await?;
                self.delete_account(user, source, request.into_inner()).await
            }
            .await,
        )
    }
}
