//! The session signing key ring: the current key signs; the current and previous
//! public keys verify and are published as the JWKS.

use std::sync::{Arc, RwLock};

use bizops_authn::{JwkSet, PublicKey, SessionSigner, SessionVerifier, SigningKey};

use crate::{
    config::{KeysConfig, SessionConfig},
    throttle::HashKey,
};

/// Keys built from configuration.
#[derive(Debug, Clone)]
pub struct KeyRing {
    signer: SessionSigner,
    hash_key: HashKey,
    public: Vec<PublicKey>,
    verifier: Arc<RwLock<SessionVerifier>>,
}

impl KeyRing {
    /// Refuses to work without a signing key, with a message that says how to get one.
    pub fn from_config(keys: &KeysConfig, session: &SessionConfig) -> anyhow::Result<Self> {
        let Some(signing) = &keys.signing_key else {
            anyhow::bail!(
                "no session signing key configured: set BIZOPS_KEYS__SIGNING_KEY=<kid>:<base64 of a 32-byte Ed25519 seed> \
                 (`identity keygen` prints one; `make run` generates a development key into .dev/keys.env)"
            );
        };
        let current =
            SigningKey::parse(signing).map_err(|e| anyhow::anyhow!("BIZOPS_KEYS__SIGNING_KEY: {e}"))?;
        Self::new(current, &keys.previous_public_keys, session)
    }

    /// A ring from a current key and previous public keys (`<kid>:<base64>`).
    pub fn new(current: SigningKey, previous: &[String], session: &SessionConfig) -> anyhow::Result<Self> {
        let mut public = vec![current.public()];
        for text in previous {
            let key = PublicKey::parse(text)
                .map_err(|e| anyhow::anyhow!("BIZOPS_KEYS__PREVIOUS_PUBLIC_KEYS: {e}"))?;
            if public.iter().any(|k| k.kid() == key.kid()) {
                anyhow::bail!("BIZOPS_KEYS__PREVIOUS_PUBLIC_KEYS: key id {} is used twice", key.kid());
            }
            public.push(key);
        }
        let verifier = SessionVerifier::new(&public, &session.issuer, &session.audience);
        Ok(Self {
            hash_key: HashKey::new(current.derive_subkey("bizops/identity/throttle/v1")),
            signer: SessionSigner::new(current, &session.issuer, &session.audience),
            public,
            verifier: Arc::new(RwLock::new(verifier)),
        })
    }

    /// Signs session tokens.
    pub fn signer(&self) -> &SessionSigner {
        &self.signer
    }

    /// Verifies session tokens (shared with the auth layer).
    pub fn verifier(&self) -> Arc<RwLock<SessionVerifier>> {
        self.verifier.clone()
    }

    /// The key of throttle and known-source hashes (derived from the signing key;
    /// a key rotation resets throttle counts and known addresses, which is safe).
    pub fn hash_key(&self) -> HashKey {
        self.hash_key.clone()
    }

    /// Current key first, then previous keys.
    pub fn jwks(&self) -> JwkSet {
        JwkSet { keys: self.public.iter().map(PublicKey::to_jwk).collect() }
    }
}
