//! Webhook secrets and signatures.
//!
//! A secret is `whsec_` + base64 of 32 random bytes (the Standard Webhooks format).
//! It is shown once, then stored encrypted with AES-256-GCM under a catalog key from
//! configuration, with the Pilot id as associated data, so a row copied to another
//! Pilot does not decrypt.
//!
//! Verification accepts
//! - Standard Webhooks signatures (<https://www.standardwebhooks.com>): headers
//!   `webhook-id`, `webhook-timestamp` (unix seconds, within the tolerance either
//!   way) and `webhook-signature` (space-separated `v1,<base64>` entries, each
//!   HMAC-SHA256 keyed by the decoded secret over `{id}.{timestamp}.{body}`; any
//!   matching entry passes) — over the raw body bytes, so any sender using a
//!   Standard Webhooks or Svix library is accepted unchanged;
//! - the simple form for senders that cannot sign: `x-pilot-secret: <secret>`.
//!
//! Every comparison is constant-time. The functions here are pure (time is a
//! parameter) so they can be fuzzed and property-tested.

use std::fmt;

use aes_gcm::{
    Aes256Gcm,
    aead::{Aead as _, KeyInit as _, Payload},
};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use hmac::Mac as _;
use secrecy::{ExposeSecret as _, SecretString};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

/// Prefix of every webhook secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Standard Webhooks headers.
pub const HEADER_ID: &str = "webhook-id";
/// Standard Webhooks headers.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// Standard Webhooks headers.
pub const HEADER_SIGNATURE: &str = "webhook-signature";
/// The simple form's header.
pub const HEADER_SIMPLE: &str = "x-pilot-secret";

/// A webhook secret's 32 key bytes. `Debug` never shows them.
#[derive(Clone)]
pub struct SecretKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([REDACTED])")
    }
}

impl SecretKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::fill(key.as_mut())?;
        Ok(Self(key))
    }

    /// Parses `whsec_<base64 of 32 bytes>`.
    pub fn parse(text: &str) -> Option<Self> {
        let b64 = text.trim().strip_prefix(SECRET_PREFIX)?;
        let bytes = Zeroizing::new(STANDARD.decode(b64).ok()?);
        let arr: [u8; 32] = bytes.as_slice().try_into().ok()?;
        Some(Self(Zeroizing::new(arr)))
    }

    /// The shown-once form, `whsec_<base64>`.
    pub fn to_secret_string(&self) -> SecretString {
        SecretString::from(format!("{SECRET_PREFIX}{}", STANDARD.encode(self.0.as_ref())))
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_ref()
    }
}

/// Why a request was not verified (for logs and metrics only; the public answer
/// is the same for all of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Neither signature headers nor `x-pilot-secret`.
    MissingHeaders,
    /// A header is present but malformed (non-numeric timestamp, …).
    MalformedHeaders,
    /// The timestamp is outside the tolerance.
    Timestamp,
    /// No signature entry or secret matched.
    Mismatch,
}

impl Rejection {
    /// A short label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Rejection::MissingHeaders => "missing_headers",
            Rejection::MalformedHeaders => "malformed_headers",
            Rejection::Timestamp => "timestamp",
            Rejection::Mismatch => "mismatch",
        }
    }
}

/// Case-insensitive header lookup over `(name, value)` pairs (first match).
fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// The Standard Webhooks signature (`v1,<base64>`) of a message, for senders and tests.
pub fn sign(key: &SecretKey, id: &str, timestamp: i64, body: &[u8]) -> String {
    format!("v1,{}", STANDARD.encode(mac(key, id, timestamp, body)))
}

fn mac(key: &SecretKey, id: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
    mac_raw(key, id, &timestamp.to_string(), body)
}

fn mac_raw(key: &SecretKey, id: &str, timestamp: &str, body: &[u8]) -> [u8; 32] {
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.bytes()) else { return [0; 32] };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// Verifies a request against any of `keys` (the current secret, and the previous
/// one during its grace period). `now` is unix seconds; `tolerance` in seconds.
pub fn verify(
    keys: &[SecretKey],
    headers: &[(String, String)],
    body: &[u8],
    now: i64,
    tolerance: i64,
) -> Result<(), Rejection> {
    // Every `webhook-signature` header counts (a proxy may split the list).
    let signatures: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(HEADER_SIGNATURE))
        .map(|(_, v)| v.as_str())
        .collect();
    if let (Some(id), Some(ts_text), false) =
        (header(headers, HEADER_ID), header(headers, HEADER_TIMESTAMP), signatures.is_empty())
    {
        let ts_text = ts_text.trim();
        let ts: i64 = ts_text.parse().map_err(|_| Rejection::MalformedHeaders)?;
        if id.is_empty() || id.len() > 256 {
            return Err(Rejection::MalformedHeaders);
        }
        if now.abs_diff(ts) > tolerance.max(0).unsigned_abs() {
            return Err(Rejection::Timestamp);
        }
        let candidates: Vec<Vec<u8>> = signatures
            .iter()
            .flat_map(|v| v.split(' '))
            .filter_map(|entry| entry.split_once(','))
            .filter(|(version, _)| *version == "v1")
            .filter_map(|(_, sig)| STANDARD.decode(sig).ok())
            .take(16)
            .collect();
        let mut matched = subtle::Choice::from(0u8);
        for key in keys {
            // Signed over the timestamp exactly as sent.
            let expected = mac_raw(key, id, ts_text, body);
            for candidate in &candidates {
                matched |= expected.as_slice().ct_eq(candidate.as_slice());
            }
        }
        return if bool::from(matched) { Ok(()) } else { Err(Rejection::Mismatch) };
    }
    if let Some(given) = header(headers, HEADER_SIMPLE) {
        let mut matched = subtle::Choice::from(0u8);
        for key in keys {
            let expected = key.to_secret_string();
            matched |= expected.expose_secret().as_bytes().ct_eq(given.trim().as_bytes());
        }
        return if bool::from(matched) { Ok(()) } else { Err(Rejection::Mismatch) };
    }
    Err(Rejection::MissingHeaders)
}

/// The catalog keys that encrypt stored webhook secrets: `<id>:<base64 of 32
/// bytes>`; the first one encrypts, all of them decrypt (rotation).
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<(String, Zeroizing<[u8; 32]>)>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("ids", &self.keys.iter().map(|(id, _)| id).collect::<Vec<_>>())
            .finish()
    }
}

/// Encryption failures (no secret material in them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The stored row names a key that is not configured.
    #[error("stored webhook secret uses key {0}, which is not configured")]
    UnknownKey(String),
    /// Tampered, truncated or moved to another Pilot.
    #[error("stored webhook secret does not decrypt")]
    Corrupt,
    /// No randomness.
    #[error("no randomness available")]
    Random,
}

impl Keyring {
    /// Parses the configured keys; refuses an empty list.
    pub fn parse(entries: &[SecretString]) -> Result<Self, String> {
        if entries.is_empty() {
            return Err("no webhook encryption key configured: set BIZOPS_KEYS__KEYRING=<id>:<base64 of 32 bytes> \
                        (`pilot-catalog keygen --aes` prints key material; `make run` generates a development key)"
                .into());
        }
        let mut keys = Vec::new();
        for entry in entries {
            let (id, b64) = entry
                .expose_secret()
                .trim()
                .split_once(':')
                .ok_or("BIZOPS_KEYS__KEYRING: each key must look like <id>:<base64 of 32 bytes>")?;
            let bytes = Zeroizing::new(
                STANDARD.decode(b64).map_err(|_| format!("BIZOPS_KEYS__KEYRING: key {id} is not base64"))?,
            );
            let arr: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| format!("BIZOPS_KEYS__KEYRING: key {id} is not 32 bytes"))?;
            if id.is_empty() || keys.iter().any(|(k, _)| k == id) {
                return Err(format!("BIZOPS_KEYS__KEYRING: key id {id:?} is empty or repeated"));
            }
            keys.push((id.to_owned(), Zeroizing::new(arr)));
        }
        Ok(Self { keys })
    }

    /// The configured keyring: [`Keyring::parse`] of its entries, with the
    /// `active` one (unset: the first) encrypting.
    pub fn from_config(config: &bizops_config::KeyringConfig<String>) -> Result<Self, String> {
        let mut ring = Self::parse(&config.keyring)?;
        if let Some(active) = &config.active {
            let i = ring.keys.iter().position(|(id, _)| id == active).ok_or_else(|| {
                format!("BIZOPS_KEYS__ACTIVE is {active:?}, but BIZOPS_KEYS__KEYRING has no key with that id")
            })?;
            let key = ring.keys.remove(i);
            ring.keys.insert(0, key);
        }
        Ok(ring)
    }

    /// A check value per key id (HMAC of a fixed label), stored at first use so a
    /// different key under a known id is caught at start-up.
    pub fn check_values(&self) -> Vec<(String, Vec<u8>)> {
        self.keys
            .iter()
            .map(|(id, key)| {
                let value = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_ref())
                    .map(|mut m| {
                        m.update(b"bizops/catalog/webhook-key-check/v1");
                        m.finalize().into_bytes().to_vec()
                    })
                    .unwrap_or_default();
                (id.clone(), value)
            })
            .collect()
    }

    /// Whether a key id is configured.
    pub fn knows(&self, key_id: &str) -> bool {
        self.keys.iter().any(|(id, _)| id == key_id)
    }

    /// Encrypts a secret for Pilot `aad`: returns (key id, nonce || ciphertext).
    pub fn seal(&self, secret: &SecretKey, aad: &[u8]) -> Result<(String, Vec<u8>), SealError> {
        let (id, key) = self.keys.first().ok_or(SealError::Random)?;
        let cipher = Aes256Gcm::new_from_slice(key.as_ref()).map_err(|_| SealError::Corrupt)?;
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|_| SealError::Random)?;
        let ct = cipher
            .encrypt(&nonce.into(), Payload { msg: secret.bytes(), aad })
            .map_err(|_| SealError::Corrupt)?;
        let mut out = Vec::with_capacity(12 + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok((id.clone(), out))
    }

    /// Decrypts what [`Keyring::seal`] produced for the same `aad`.
    pub fn open(&self, key_id: &str, sealed: &[u8], aad: &[u8]) -> Result<SecretKey, SealError> {
        let (_, key) = self
            .keys
            .iter()
            .find(|(id, _)| id == key_id)
            .ok_or_else(|| SealError::UnknownKey(key_id.to_owned()))?;
        if sealed.len() < 12 + 16 {
            return Err(SealError::Corrupt);
        }
        let (nonce, ct) = sealed.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| SealError::Corrupt)?;
        let cipher = Aes256Gcm::new_from_slice(key.as_ref()).map_err(|_| SealError::Corrupt)?;
        let plain = Zeroizing::new(
            cipher.decrypt(&nonce.into(), Payload { msg: ct, aad }).map_err(|_| SealError::Corrupt)?,
        );
        let arr: [u8; 32] = plain.as_slice().try_into().map_err(|_| SealError::Corrupt)?;
        Ok(SecretKey(Zeroizing::new(arr)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use proptest::prelude::*;

    use super::*;

    const NOW: i64 = 1_790_000_000;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn signed(key: &SecretKey, body: &[u8], ts: i64) -> Vec<(String, String)> {
        let sig = sign(key, "msg_1", ts, body);
        h(&[("Webhook-Id", "msg_1"), ("webhook-timestamp", &ts.to_string()), ("webhook-signature", &sig)])
    }

    #[test]
    fn standard_webhooks_signatures() {
        let key = SecretKey::generate().unwrap();
        let other = SecretKey::generate().unwrap();
        let body = br#"{"order": 42}"#;
        assert_eq!(verify(std::slice::from_ref(&key), &signed(&key, body, NOW), body, NOW, 300), Ok(()));
        assert_eq!(
            verify(std::slice::from_ref(&key), &signed(&key, body, NOW), b"{\"order\": 43}", NOW, 300),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            verify(std::slice::from_ref(&other), &signed(&key, body, NOW), body, NOW, 300),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            verify(std::slice::from_ref(&key), &signed(&key, body, NOW - 301), body, NOW, 300),
            Err(Rejection::Timestamp)
        );
        assert_eq!(
            verify(std::slice::from_ref(&key), &signed(&key, body, NOW + 301), body, NOW, 300),
            Err(Rejection::Timestamp)
        );
        assert_eq!(
            verify(std::slice::from_ref(&key), &signed(&key, body, NOW - 299), body, NOW, 300),
            Ok(())
        );
        // One valid entry among several passes; unknown versions are ignored.
        let good = sign(&key, "msg_1", NOW, body);
        let bad = sign(&other, "msg_1", NOW, body);
        let many = format!("v2,abc {bad} {good}");
        let headers = h(&[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", &NOW.to_string()),
            ("webhook-signature", &many),
        ]);
        assert_eq!(verify(std::slice::from_ref(&key), &headers, body, NOW, 300), Ok(()));
        // Previous + current secret during the grace period.
        assert_eq!(verify(&[other, key.clone()], &signed(&key, body, NOW), body, NOW, 300), Ok(()));
        // Signatures split over several headers count too.
        let split = vec![
            ("webhook-id".to_owned(), "msg_1".to_owned()),
            ("webhook-timestamp".to_owned(), NOW.to_string()),
            ("webhook-signature".to_owned(), bad.clone()),
            ("Webhook-Signature".to_owned(), good.clone()),
        ];
        assert_eq!(verify(std::slice::from_ref(&key), &split, body, NOW, 300), Ok(()));
        // The timestamp is signed as sent (leading zeros and all).
        let padded = format!("0{NOW}");
        let sig = format!("v1,{}", STANDARD.encode(mac_raw(&key, "msg_1", &padded, body)));
        let hs = vec![
            ("webhook-id".to_owned(), "msg_1".to_owned()),
            ("webhook-timestamp".to_owned(), padded),
            ("webhook-signature".to_owned(), sig),
        ];
        assert_eq!(verify(std::slice::from_ref(&key), &hs, body, NOW, 300), Ok(()));
        // Non-UTF-8 bodies are signed and verified as bytes.
        let binary = [0xff, 0x00, 0xfe];
        assert_eq!(
            verify(std::slice::from_ref(&key), &signed(&key, &binary, NOW), &binary, NOW, 300),
            Ok(())
        );
    }

    #[test]
    fn compatible_with_the_reference_implementation() {
        let key = SecretKey::generate().unwrap();
        let secret = key.to_secret_string();
        let reference = standardwebhooks::Webhook::new(secret.expose_secret()).unwrap();
        let body = br#"{"hello":"world"}"#;
        assert_eq!(reference.sign("msg_abc", NOW, body).unwrap(), sign(&key, "msg_abc", NOW, body));
    }

    #[test]
    fn simple_form_and_missing_headers() {
        let key = SecretKey::generate().unwrap();
        let secret = key.to_secret_string();
        let good = h(&[("X-Pilot-Secret", secret.expose_secret())]);
        assert_eq!(verify(std::slice::from_ref(&key), &good, b"x", NOW, 300), Ok(()));
        let other = SecretKey::generate().unwrap().to_secret_string();
        let wrong = h(&[("x-pilot-secret", other.expose_secret())]);
        assert_eq!(verify(std::slice::from_ref(&key), &wrong, b"x", NOW, 300), Err(Rejection::Mismatch));
        assert_eq!(
            verify(std::slice::from_ref(&key), &h(&[]), b"x", NOW, 300),
            Err(Rejection::MissingHeaders)
        );
        let partial = h(&[("webhook-id", "m"), ("webhook-timestamp", "nope"), ("webhook-signature", "v1,x")]);
        assert_eq!(verify(&[key], &partial, b"x", NOW, 300), Err(Rejection::MalformedHeaders));
    }

    #[test]
    fn secrets_round_trip_and_never_print() {
        let key = SecretKey::generate().unwrap();
        let text = key.to_secret_string();
        assert!(text.expose_secret().starts_with("whsec_"));
        assert_eq!(STANDARD.decode(&text.expose_secret()[6..]).unwrap().len(), 32);
        assert_eq!(SecretKey::parse(text.expose_secret()).unwrap().bytes(), key.bytes());
        assert!(!format!("{key:?}").contains(&text.expose_secret()[6..]));
        assert!(SecretKey::parse("whsec_short").is_none());
    }

    #[test]
    fn the_active_key_encrypts_and_every_key_decrypts() {
        let entry = |id: &str, b: u8| SecretString::from(format!("{id}:{}", STANDARD.encode([b; 32])));
        let mut config =
            bizops_config::KeyringConfig { keyring: vec![entry("k1", 1), entry("k2", 2)], active: None };
        let key = SecretKey::generate().unwrap();
        let (first, sealed) = Keyring::from_config(&config).unwrap().seal(&key, b"p").unwrap();
        assert_eq!(first, "k1", "unset: the first key encrypts");
        config.active = Some("k2".into());
        let ring = Keyring::from_config(&config).unwrap();
        assert_eq!(ring.seal(&key, b"p").unwrap().0, "k2");
        assert_eq!(ring.open("k1", &sealed, b"p").unwrap().bytes(), key.bytes());
        config.active = Some("k3".into());
        let err = Keyring::from_config(&config).unwrap_err();
        assert!(err.contains("BIZOPS_KEYS__ACTIVE") && err.contains("k3"), "{err}");
    }

    #[test]
    fn sealing_binds_the_pilot_and_detects_tampering() {
        let ring =
            Keyring::parse(&[SecretString::from(format!("k1:{}", STANDARD.encode([7u8; 32])))]).unwrap();
        let key = SecretKey::generate().unwrap();
        let (id, sealed) = ring.seal(&key, b"pilot-a").unwrap();
        assert_eq!(ring.open(&id, &sealed, b"pilot-a").unwrap().bytes(), key.bytes());
        assert_eq!(ring.open(&id, &sealed, b"pilot-b").unwrap_err(), SealError::Corrupt);
        assert!(matches!(ring.open("k9", &sealed, b"pilot-a"), Err(SealError::UnknownKey(_))));
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x01;
            assert_eq!(ring.open(&id, &t, b"pilot-a").unwrap_err(), SealError::Corrupt, "byte {i}");
        }
        let (_, again) = ring.seal(&key, b"pilot-a").unwrap();
        assert_ne!(sealed, again, "fresh nonce every time");
        assert!(Keyring::parse(&[]).is_err());
    }

    proptest! {
        #[test]
        fn verify_never_panics(
            names in proptest::collection::vec("[a-zA-Z-]{0,20}", 0..6),
            values in proptest::collection::vec("\\PC{0,80}", 0..6),
            body in proptest::collection::vec(any::<u8>(), 0..256),
            now in any::<i64>(),
            tolerance in any::<i64>(),
        ) {
            let headers: Vec<(String, String)> = names.into_iter().zip(values).collect();
            let key = SecretKey(Zeroizing::new([3; 32]));
            let _ = verify(&[key], &headers, &body, now, tolerance);
        }

        #[test]
        fn any_signed_body_verifies(body in proptest::collection::vec(any::<u8>(), 0..512), id in "[a-zA-Z0-9_]{1,40}") {
            let key = SecretKey(Zeroizing::new([9; 32]));
            let sig = sign(&key, &id, NOW, &body);
            let headers = vec![
                ("webhook-id".to_owned(), id),
                ("webhook-timestamp".to_owned(), NOW.to_string()),
                ("webhook-signature".to_owned(), sig),
            ];
            prop_assert_eq!(verify(&[key], &headers, &body, NOW, 300), Ok(()));
        }
    }
}
