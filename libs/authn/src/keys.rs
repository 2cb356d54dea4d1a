//! Ed25519 key material: private keys as `<kid>:<base64 32-byte seed>`, public keys
//! as `<kid>:<base64 32-byte key>`, and their JWK form (RFC 8037).

use std::fmt;

use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use jsonwebtoken::{DecodingKey, EncodingKey};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Why key material could not be used. Never contains key bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// Not `<kid>:<base64>`.
    #[error("key must look like <kid>:<base64 of 32 bytes>")]
    Format,
    /// The key id is empty or has characters outside `[A-Za-z0-9._-]`.
    #[error("key id must be 1-64 characters of A-Z a-z 0-9 . _ -")]
    Kid,
    /// The base64 part does not decode to 32 bytes.
    #[error("key {kid}: not base64 of exactly 32 bytes")]
    Length {
        /// The key id.
        kid: String,
    },
    /// The public key is not a valid Ed25519 point.
    #[error("key {kid}: not a valid Ed25519 public key")]
    Invalid {
        /// The key id.
        kid: String,
    },
}

fn split(text: &str) -> Result<(&str, &str), KeyError> {
    let (kid, b64) = text.trim().split_once(':').ok_or(KeyError::Format)?;
    if kid.is_empty()
        || kid.len() > 64
        || !kid.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(KeyError::Kid);
    }
    Ok((kid, b64))
}

fn decode32(kid: &str, b64: &str) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let bytes = Zeroizing::new(
        STANDARD
            .decode(b64.trim())
            .or_else(|_| URL_SAFE_NO_PAD.decode(b64.trim()))
            .map_err(|_| KeyError::Length { kid: kid.to_owned() })?,
    );
    let mut out = Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        return Err(KeyError::Length { kid: kid.to_owned() });
    }
    out.copy_from_slice(&bytes);
    Ok(out)
}

/// An Ed25519 private key with its key id. `Debug` shows only the kid.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    key: ed25519_dalek::SigningKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Parses `<kid>:<base64 32-byte seed>`.
    pub fn parse(text: &SecretString) -> Result<Self, KeyError> {
        let (kid, b64) = split(text.expose_secret())?;
        let seed = decode32(kid, b64)?;
        Ok(Self { kid: kid.to_owned(), key: ed25519_dalek::SigningKey::from_bytes(&seed) })
    }

    /// A fresh random key (for development key files and tests).
    pub fn generate(kid: &str) -> Result<Self, KeyError> {
        split(&format!("{kid}:x"))?;
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|_| KeyError::Format)?;
        Ok(Self { kid: kid.to_owned(), key: ed25519_dalek::SigningKey::from_bytes(&seed) })
    }

    /// The same key under another key id.
    pub fn with_kid(mut self, kid: &str) -> Result<Self, KeyError> {
        split(&format!("{kid}:x"))?;
        self.kid = kid.to_owned();
        Ok(self)
    }

    /// A 256-bit key derived from this private key for another purpose
    /// (HMAC-SHA256 keyed by the seed over `label`), so one configured secret can
    /// key e.g. the login throttle's hashes without a second secret to manage.
    pub fn derive_subkey(&self, label: &str) -> Zeroizing<[u8; 32]> {
        use hmac::{KeyInit as _, Mac as _};
        let mut out = Zeroizing::new([0u8; 32]);
        if let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.key.to_bytes()) {
            mac.update(label.as_bytes());
            out.copy_from_slice(&mac.finalize().into_bytes());
        }
        out
    }

    /// `<kid>:<base64 seed>`, the form [`SigningKey::parse`] reads.
    pub fn to_secret_string(&self) -> SecretString {
        SecretString::from(format!("{}:{}", self.kid, STANDARD.encode(self.key.to_bytes())))
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey { kid: self.kid.clone(), key: self.key.verifying_key() }
    }

    /// The key in the PKCS#8 v1 DER form jsonwebtoken signs with (RFC 8410).
    pub(crate) fn encoding_key(&self) -> EncodingKey {
        const PREFIX: [u8; 16] =
            [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
        let mut der = Zeroizing::new(Vec::with_capacity(48));
        der.extend_from_slice(&PREFIX);
        der.extend_from_slice(&self.key.to_bytes());
        EncodingKey::from_ed_der(&der)
    }
}

/// An Ed25519 public key with its key id.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    kid: String,
    key: ed25519_dalek::VerifyingKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({}:{})", self.kid, STANDARD.encode(self.key.as_bytes()))
    }
}

impl PublicKey {
    /// Parses `<kid>:<base64 32-byte public key>`.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let (kid, b64) = split(text)?;
        let bytes = decode32(kid, b64)?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map_err(|_| KeyError::Invalid { kid: kid.to_owned() })?;
        Ok(Self { kid: kid.to_owned(), key })
    }

    /// From a JWK (kty OKP, crv Ed25519).
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        if jwk.kty != "OKP" || jwk.crv != "Ed25519" {
            return Err(KeyError::Invalid { kid: jwk.kid.clone() });
        }
        let bytes = URL_SAFE_NO_PAD.decode(&jwk.x).map_err(|_| KeyError::Length { kid: jwk.kid.clone() })?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| KeyError::Length { kid: jwk.kid.clone() })?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&arr)
            .map_err(|_| KeyError::Invalid { kid: jwk.kid.clone() })?;
        Ok(Self { kid: jwk.kid.clone(), key })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// `<kid>:<base64>`, the form [`PublicKey::parse`] reads.
    pub fn to_config_string(&self) -> String {
        format!("{}:{}", self.kid, STANDARD.encode(self.key.as_bytes()))
    }

    /// JWK form.
    pub fn to_jwk(&self) -> Jwk {
        Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            kid: self.kid.clone(),
            x: URL_SAFE_NO_PAD.encode(self.key.as_bytes()),
            alg: "EdDSA".into(),
            key_use: "sig".into(),
        }
    }

    pub(crate) fn decoding_key(&self) -> DecodingKey {
        DecodingKey::from_ed_der(self.key.as_bytes())
    }
}

/// One public key in JWK form (RFC 8037).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Always "OKP".
    pub kty: String,
    /// Always "Ed25519".
    pub crv: String,
    /// Key id.
    pub kid: String,
    /// Public key, base64url without padding.
    pub x: String,
    /// Always "EdDSA".
    pub alg: String,
    /// Always "sig".
    #[serde(rename = "use")]
    pub key_use: String,
}

/// A JSON Web Key Set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct JwkSet {
    /// The keys, current first.
    pub keys: Vec<Jwk>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn round_trips_and_never_prints_the_seed() {
        let k = SigningKey::generate("k1").unwrap();
        let again = SigningKey::parse(&k.to_secret_string()).unwrap();
        assert_eq!(again.public(), k.public());
        let seed = STANDARD.encode(k.key.to_bytes());
        assert!(!format!("{k:?}").contains(&seed));
        assert_eq!(PublicKey::parse(&k.public().to_config_string()).unwrap(), k.public());
        assert_eq!(PublicKey::from_jwk(&k.public().to_jwk()).unwrap(), k.public());
        let renamed = k.clone().with_kid("executor").unwrap();
        assert_eq!(renamed.public().kid(), "executor");
        assert_ne!(*k.derive_subkey("a"), *k.derive_subkey("b"));
        assert_eq!(*k.derive_subkey("a"), *again.derive_subkey("a"));
    }

    #[test]
    fn rejects_malformed_keys_without_echoing_them() {
        assert_eq!(SigningKey::parse(&"no-colon".into()).unwrap_err(), KeyError::Format);
        assert_eq!(SigningKey::parse(&":AAAA".into()).unwrap_err(), KeyError::Kid);
        assert_eq!(SigningKey::parse(&"bad kid:AAAA".into()).unwrap_err(), KeyError::Kid);
        let err = SigningKey::parse(&"k1:c2hvcnQ=".into()).unwrap_err();
        assert_eq!(err, KeyError::Length { kid: "k1".into() });
        assert!(!err.to_string().contains("c2hvcnQ"));
    }
}
