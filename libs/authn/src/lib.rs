//! Who is calling: session tokens (EdDSA JWTs issued by identity, accepted by
//! identity alone), access tokens (minted by identity from a live session, at most
//! 60 s, verified by every other service against identity's JWKS), service tokens (short-lived EdDSA JWTs each service signs with its own
//! key), and a tower layer that puts the verified [`Caller`] into request extensions.
//!
//! Ownership starts here: [`require_user`] yields the [`OwnerId`] every user-scoped
//! query is filtered by (and that row-level security enforces). Caller and tenant
//! extraction live only in this crate, so moving the tenant key from owner to
//! workspace later is a change in one place.
#![forbid(unsafe_code)]

mod caller;
mod config;
mod keys;
mod layer;
mod service;
mod session;

pub use caller::{
    Caller, FORWARDED_SOURCE_METADATA, OwnerId, SERVICE_TOKEN_METADATA, UserCaller, caller, require_service,
    require_user, source_address,
};
pub use config::{AuthConfig, IdentityJwks, MAX_JWKS_REFRESH, RENAMED_IDENTITY_URL};
pub use keys::{Jwk, JwkSet, KeyError, PublicKey, SigningKey};
pub use layer::{AuthLayer, AuthService, Authenticator};
pub use service::{
    MAX_SERVICE_TOKEN_LIFETIME, ServiceClaims, ServiceSigner, ServiceTokenInterceptor, ServiceVerifier,
};
pub use session::{
    JwksCache, JwksSource, MAX_ACCESS_TOKEN_LIFETIME, SessionClaims, SessionSigner, SessionVerifier,
    TokenError, UserToken, VerifiedSession,
};

/// `token_use` claim of session tokens.
pub const TOKEN_USE_SESSION: &str = "session";
/// `token_use` claim of access tokens.
pub const TOKEN_USE_ACCESS: &str = "access";
/// `token_use` claim of service tokens.
pub const TOKEN_USE_SERVICE: &str = "service";
