//! Envelope encryption of credential values (AES-256-GCM, two layers).
//!
//! - A fresh random 256-bit **data key** per stored value encrypts the value under a
//!   random 96-bit nonce. Stored `ciphertext` = `nonce (12) ‖ ciphertext ‖ tag (16)`.
//! - The data key is **wrapped** by the active key-encryption key (KEK) under another
//!   random nonce. Stored `wrapped_key` = `"v<N>:" ‖ nonce (12) ‖ encrypted key (32) ‖
//!   tag (16)`, where `N` is the KEK version (also kept in the `kek_version` column;
//!   the two must agree).
//! - Both layers authenticate the same associated data: the owner id, the connector
//!   kind, the credential name and the credential id, each length-prefixed (the
//!   wrapping layer also the KEK version), so a row copied to another owner, kind,
//!   name or id fails to decrypt.
//! - The fingerprint shown to users is `…` and the last 4 characters of the value
//!   (what a provider shows of a key too), or just `…` for a value shorter than 12
//!   characters; see [`fingerprint`].
//!
//! Data keys and plaintext live in [`Zeroizing`] buffers and are wiped when dropped;
//! no error or `Debug` output carries key material or plaintext.

use std::{collections::BTreeMap, fmt};

use aes_gcm::{
    Aes256Gcm, KeyInit as _,
    aead::{AeadInOut as _, Nonce},
};
use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD},
};
use bizops_authn::OwnerId;
use hmac::{Hmac, Mac as _};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::config::KeysConfig;

/// Length of keys (KEKs and data keys), bytes.
pub const KEY_LEN: usize = 32;
/// Length of AES-GCM nonces, bytes.
pub const NONCE_LEN: usize = 12;
/// Length of AES-GCM tags, bytes.
pub const TAG_LEN: usize = 16;
/// Length of a wrapped data key after its `v<N>:` prefix.
pub const WRAPPED_BODY_LEN: usize = NONCE_LEN + KEY_LEN + TAG_LEN;

const DOMAIN: &[u8] = b"bizops.vault.v1";
const LAYER_VALUE: &[u8] = b"value";
const LAYER_DATA_KEY: &[u8] = b"data-key";
const LABEL_KEY_CHECK: &[u8] = b"kek-check";

/// Which stored part failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The value ciphertext.
    Value,
    /// The wrapped data key.
    DataKey,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Value => "value ciphertext",
            Part::DataKey => "wrapped data key",
        })
    }
}

/// Why a value could not be sealed or opened. Never carries key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The data key is wrapped under a KEK version the keyring does not hold.
    #[error("its data key is wrapped under KEK version {0}, which is not in the keyring")]
    UnknownKek(u32),
    /// The data key is wrapped under a retired KEK version.
    #[error(
        "its data key is wrapped under KEK version {version}, below the minimum decryption version {min}"
    )]
    Retired {
        /// The version of the wrapped key.
        version: u32,
        /// The minimum decryption version in force.
        min: u32,
    },
    /// The stored bytes do not have the expected shape.
    #[error("its stored {0} is malformed")]
    Malformed(Part),
    /// The `v<N>:` prefix of the wrapped key disagrees with the `kek_version` column.
    #[error("its wrapped data key names KEK version {prefix}, but the row says {column}")]
    VersionMismatch {
        /// Version in the wrapped key's prefix.
        prefix: u32,
        /// Version in the row's column.
        column: u32,
    },
    /// Authentication failed: tampered, corrupted, or moved to another owner,
    /// connector, name or id.
    #[error("its stored {0} failed authentication (tampered with, corrupted, or moved)")]
    Integrity(Part),
    /// The operating system gave no randomness.
    #[error("no randomness available")]
    Rng,
    /// The cipher refused to encrypt (only for absurd lengths).
    #[error("encryption failed")]
    Encrypt,
}

/// Why the configured keyring cannot be used. Names versions, never key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// No KEK configured.
    #[error(
        "no key-encryption key configured: set BIZOPS_KEYS__KEYRING to `<version>:<base64 of 32 bytes>` \
         (`credential-vault keygen --aes` prints a key) and BIZOPS_KEYS__ACTIVE; \
         the vault never makes one up"
    )]
    Empty,
    /// An entry is not `<version>:<base64>`.
    #[error("BIZOPS_KEYS__KEYRING entry {0}: must look like <version>:<base64 of 32 bytes>, version ≥ 1")]
    Format(usize),
    /// The key part is not 32 bytes of base64.
    #[error("BIZOPS_KEYS__KEYRING: KEK version {0} is not base64 of exactly 32 bytes")]
    Length(u32),
    /// The key is all zeros (a placeholder, not a key).
    #[error("BIZOPS_KEYS__KEYRING: KEK version {0} is all zeros")]
    Zero(u32),
    /// Two entries share a version.
    #[error("BIZOPS_KEYS__KEYRING: KEK version {0} is configured twice")]
    Duplicate(u32),
    /// No active version chosen.
    #[error("BIZOPS_KEYS__ACTIVE is not set: choose which configured KEK version wraps new data keys")]
    NoActive,
    /// The active version is not in the keyring.
    #[error("BIZOPS_KEYS__ACTIVE is {0}, but the keyring has no KEK version {0}")]
    ActiveMissing(u32),
}

/// What a sealed value is bound to (its associated data).
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    /// Owner of the credential.
    pub owner: OwnerId,
    /// Credential id.
    pub credential_id: Uuid,
    /// Connector kind (`slack`, `resend`, …).
    pub kind: &'a str,
    /// Credential name.
    pub name: &'a str,
}

/// The stored form of one value.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    /// `nonce ‖ ciphertext ‖ tag` of the value under its data key.
    pub ciphertext: Vec<u8>,
    /// `"v<N>:" ‖ nonce ‖ encrypted data key ‖ tag` under KEK version N.
    pub wrapped_key: Vec<u8>,
    /// N.
    pub kek_version: u32,
    /// [`fingerprint`] of the value: `…` and its last 4 characters.
    pub fingerprint: String,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("ciphertext_len", &self.ciphertext.len())
            .field("kek_version", &self.kek_version)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// The KEK keyring: several versions, one active. `Debug` shows versions only.
pub struct KeyRing {
    keks: BTreeMap<u32, Zeroizing<[u8; KEY_LEN]>>,
    active: u32,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("versions", &self.keks.keys().collect::<Vec<_>>())
            .field("active", &self.active)
            .finish()
    }
}

impl KeyRing {
    /// The keyring of the configuration, or why it cannot be used.
    pub fn from_config(config: &KeysConfig) -> Result<Self, KeyringError> {
        let mut keks = BTreeMap::new();
        for (i, entry) in config.keyring.iter().enumerate() {
            let (version, key) = parse_entry(i + 1, entry)?;
            if keks.insert(version, key).is_some() {
                return Err(KeyringError::Duplicate(version));
            }
        }
        Self::build(keks, config.active.unwrap_or(0))
    }

    /// A keyring from raw keys (tests and tools).
    pub fn from_keys(
        keys: impl IntoIterator<Item = (u32, [u8; KEY_LEN])>,
        active: u32,
    ) -> Result<Self, KeyringError> {
        let mut keks = BTreeMap::new();
        for (version, key) in keys {
            if version == 0 {
                return Err(KeyringError::Format(0));
            }
            if keks.insert(version, Zeroizing::new(key)).is_some() {
                return Err(KeyringError::Duplicate(version));
            }
        }
        Self::build(keks, active)
    }

    fn build(keks: BTreeMap<u32, Zeroizing<[u8; KEY_LEN]>>, active: u32) -> Result<Self, KeyringError> {
        if keks.is_empty() {
            return Err(KeyringError::Empty);
        }
        if let Some((v, _)) = keks.iter().find(|(_, k)| k.iter().all(|b| *b == 0)) {
            return Err(KeyringError::Zero(*v));
        }
        if active == 0 {
            return Err(KeyringError::NoActive);
        }
        if !keks.contains_key(&active) {
            return Err(KeyringError::ActiveMissing(active));
        }
        Ok(Self { keks, active })
    }

    /// The version new data keys are wrapped under.
    pub fn active_version(&self) -> u32 {
        self.active
    }

    /// Every configured version, ascending.
    pub fn versions(&self) -> impl Iterator<Item = u32> + '_ {
        self.keks.keys().copied()
    }

    /// Whether `version` is configured.
    pub fn contains(&self, version: u32) -> bool {
        self.keks.contains_key(&version)
    }

    /// The key-check value of a KEK version: HMAC-SHA256 keyed by the KEK over a
    /// fixed label. It identifies the key without revealing it.
    pub fn check_value(&self, version: u32) -> Option<[u8; 32]> {
        let kek = self.keks.get(&version)?;
        Some(hmac(&kek[..], &[DOMAIN, LABEL_KEY_CHECK]))
    }

    /// Whether `stored` is the key-check value of `version` (constant time).
    pub fn check_matches(&self, version: u32, stored: &[u8]) -> bool {
        self.check_value(version).is_some_and(|mine| bool::from(mine.ct_eq(stored)))
    }

    /// Encrypts `plaintext` under a fresh data key wrapped by the active KEK.
    pub fn seal(&self, binding: &Binding<'_>, plaintext: &[u8]) -> Result<Sealed, CryptoError> {
        let data_key = random::<KEY_LEN>()?;
        let ciphertext = aead_seal(&data_key[..], &aad(LAYER_VALUE, binding, None), plaintext)?;
        let wrapped_key = self.wrap(binding, &data_key[..], self.active)?;
        // Values arrive as protobuf strings, so they are UTF-8; anything else shows nothing.
        let fingerprint =
            std::str::from_utf8(plaintext).map_or_else(|_| FINGERPRINT_HIDDEN.to_owned(), fingerprint);
        Ok(Sealed { ciphertext, wrapped_key, kek_version: self.active, fingerprint })
    }

    /// Decrypts a stored value. `kek_version` is the row's column, `min_version` the
    /// minimum decryption version in force.
    pub fn open(
        &self,
        binding: &Binding<'_>,
        ciphertext: &[u8],
        wrapped_key: &[u8],
        kek_version: u32,
        min_version: u32,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let data_key = self.unwrap(binding, wrapped_key, kek_version, min_version)?;
        aead_open(&data_key, &aad(LAYER_VALUE, binding, None), ciphertext, Part::Value)
    }

    /// Rewraps a stored data key under KEK version `target`, without touching the
    /// value: only the data key is unwrapped, in a buffer wiped on return.
    pub fn rewrap(
        &self,
        binding: &Binding<'_>,
        wrapped_key: &[u8],
        kek_version: u32,
        min_version: u32,
        target: u32,
    ) -> Result<Vec<u8>, CryptoError> {
        let data_key = self.unwrap(binding, wrapped_key, kek_version, min_version)?;
        self.wrap(binding, &data_key, target)
    }

    fn wrap(&self, binding: &Binding<'_>, data_key: &[u8], version: u32) -> Result<Vec<u8>, CryptoError> {
        let kek = self.keks.get(&version).ok_or(CryptoError::UnknownKek(version))?;
        let body = aead_seal(&kek[..], &aad(LAYER_DATA_KEY, binding, Some(version)), data_key)?;
        let mut out = format!("v{version}:").into_bytes();
        out.extend_from_slice(&body);
        Ok(out)
    }

    fn unwrap(
        &self,
        binding: &Binding<'_>,
        wrapped_key: &[u8],
        kek_version: u32,
        min_version: u32,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let (version, body) = parse_wrapped(wrapped_key)?;
        if version != kek_version {
            return Err(CryptoError::VersionMismatch { prefix: version, column: kek_version });
        }
        if version < min_version {
            return Err(CryptoError::Retired { version, min: min_version });
        }
        let kek = self.keks.get(&version).ok_or(CryptoError::UnknownKek(version))?;
        let data_key =
            aead_open(&kek[..], &aad(LAYER_DATA_KEY, binding, Some(version)), body, Part::DataKey)?;
        if data_key.len() != KEY_LEN {
            return Err(CryptoError::Malformed(Part::DataKey));
        }
        Ok(data_key)
    }
}

/// The KEK version named by a wrapped key's `v<N>:` prefix.
pub fn wrapped_version(wrapped_key: &[u8]) -> Option<u32> {
    parse_wrapped(wrapped_key).ok().map(|(v, _)| v)
}

fn parse_entry(index: usize, entry: &SecretString) -> Result<(u32, Zeroizing<[u8; KEY_LEN]>), KeyringError> {
    let text = entry.expose_secret().trim();
    let (version, b64) = text.split_once(':').ok_or(KeyringError::Format(index))?;
    let version = version.trim();
    if version.is_empty() || version.len() > 9 || !version.bytes().all(|b| b.is_ascii_digit()) {
        return Err(KeyringError::Format(index));
    }
    let version: u32 = version.parse().map_err(|_| KeyringError::Format(index))?;
    if version == 0 {
        return Err(KeyringError::Format(index));
    }
    let b64 = b64.trim();
    let bytes = Zeroizing::new(
        STANDARD
            .decode(b64)
            .or_else(|_| URL_SAFE.decode(b64))
            .or_else(|_| URL_SAFE_NO_PAD.decode(b64))
            .map_err(|_| KeyringError::Length(version))?,
    );
    if bytes.len() != KEY_LEN {
        return Err(KeyringError::Length(version));
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(&bytes);
    Ok((version, key))
}

/// Splits `"v<N>:" ‖ body` and checks the body's length.
fn parse_wrapped(wrapped: &[u8]) -> Result<(u32, &[u8]), CryptoError> {
    let malformed = CryptoError::Malformed(Part::DataKey);
    let rest = wrapped.strip_prefix(b"v").ok_or(malformed.clone())?;
    let colon = rest.iter().position(|b| *b == b':').ok_or(malformed.clone())?;
    let (digits, body) = (&rest[..colon], &rest[colon + 1..]);
    if digits.is_empty() || digits.len() > 9 || digits[0] == b'0' || !digits.iter().all(u8::is_ascii_digit) {
        return Err(malformed);
    }
    let version = digits.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    if body.len() != WRAPPED_BODY_LEN {
        return Err(malformed);
    }
    Ok((version, body))
}

/// The associated data of a layer: each part length-prefixed (u64, big-endian).
fn aad(layer: &[u8], b: &Binding<'_>, kek_version: Option<u32>) -> Vec<u8> {
    let version = kek_version.map(u32::to_be_bytes);
    let owner = b.owner.as_uuid();
    let parts: [&[u8]; 6] =
        [DOMAIN, layer, owner.as_bytes(), b.kind.as_bytes(), b.name.as_bytes(), b.credential_id.as_bytes()];
    let mut out = Vec::with_capacity(128 + b.kind.len() + b.name.len());
    for part in parts.iter().copied().chain(version.as_ref().map(|v| &v[..])) {
        out.extend_from_slice(&(part.len() as u64).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

fn random<const N: usize>() -> Result<Zeroizing<[u8; N]>, CryptoError> {
    let mut out = Zeroizing::new([0u8; N]);
    getrandom::fill(&mut out[..]).map_err(|_| CryptoError::Rng)?;
    Ok(out)
}

/// `nonce ‖ AES-256-GCM(key, nonce, aad, plaintext) ‖ tag` with a random nonce.
fn aead_seal(key: &[u8], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| CryptoError::Encrypt)?;
    let nonce_bytes = random::<NONCE_LEN>()?;
    let nonce = Nonce::<Aes256Gcm>::from(*nonce_bytes);
    // Sized for the tag up front, so the plaintext copy is never reallocated (and
    // left behind unwiped) while encrypting in place.
    let mut buf = Zeroizing::new(Vec::with_capacity(plaintext.len() + TAG_LEN));
    buf.extend_from_slice(plaintext);
    cipher.encrypt_in_place(&nonce, aad, &mut *buf).map_err(|_| CryptoError::Encrypt)?;
    let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
    out.extend_from_slice(&nonce_bytes[..]);
    out.extend_from_slice(&buf);
    Ok(out)
}

fn aead_open(key: &[u8], aad: &[u8], blob: &[u8], part: Part) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if blob.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Malformed(part));
    }
    let (nonce, sealed) = blob.split_at(NONCE_LEN);
    let nonce = Nonce::<Aes256Gcm>::try_from(nonce).map_err(|_| CryptoError::Malformed(part))?;
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| CryptoError::Malformed(part))?;
    let mut buf = Zeroizing::new(sealed.to_vec());
    cipher.decrypt_in_place(&nonce, aad, &mut *buf).map_err(|_| CryptoError::Integrity(part))?;
    Ok(buf)
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut out = [0u8; 32];
    if let Ok(mut mac) = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key) {
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        out.copy_from_slice(&mac.finalize().into_bytes());
    }
    out
}

/// Characters of a value a fingerprint shows (its last ones).
pub const FINGERPRINT_CHARS: usize = 4;
/// Values shorter than this many characters (trimmed) show none of them.
pub const FINGERPRINT_MIN_CHARS: usize = 12;
/// The fingerprint of a value too short to show any of it.
pub const FINGERPRINT_HIDDEN: &str = "…";

/// What a user sees of a stored value: `…` and its last 4 characters after
/// trimming (`…a1b2`), which they can match against what the provider shows of
/// the key. A value shorter than 12 characters shows only `…`, so a short token
/// never gives away a third of itself.
pub fn fingerprint(value: &str) -> String {
    let value = value.trim();
    if value.chars().count() < FINGERPRINT_MIN_CHARS {
        return FINGERPRINT_HIDDEN.to_owned();
    }
    let tail = value.char_indices().rev().nth(FINGERPRINT_CHARS - 1).map_or(value, |(i, _)| &value[i..]);
    format!("{FINGERPRINT_HIDDEN}{tail}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    const SECRET: &[u8] = b"xoxb-very-secret-token-value-0123456789";

    fn ring(active: u32) -> KeyRing {
        KeyRing::from_keys([(1, [1u8; 32]), (2, [2u8; 32]), (3, [3u8; 32])], active).unwrap()
    }

    fn binding(owner: OwnerId, id: Uuid) -> Binding<'static> {
        Binding { owner, credential_id: id, kind: "slack", name: "team-alerts" }
    }

    fn fixture() -> (KeyRing, OwnerId, Uuid, Sealed) {
        let ring = ring(2);
        let (owner, id) = (OwnerId(Uuid::now_v7()), Uuid::now_v7());
        let sealed = ring.seal(&binding(owner, id), SECRET).unwrap();
        (ring, owner, id, sealed)
    }

    fn assert_clean(err: &CryptoError) {
        let text = format!("{err} {err:?}");
        assert!(!text.contains("xoxb") && !text.contains("secret"), "{text}");
    }

    #[test]
    fn round_trip_and_format() {
        let (ring, owner, id, s) = fixture();
        assert_eq!(s.kek_version, 2);
        assert!(s.wrapped_key.starts_with(b"v2:"));
        assert_eq!(s.wrapped_key.len(), 3 + WRAPPED_BODY_LEN);
        assert_eq!(s.ciphertext.len(), NONCE_LEN + SECRET.len() + TAG_LEN);
        assert_eq!(wrapped_version(&s.wrapped_key), Some(2));
        let plain = ring.open(&binding(owner, id), &s.ciphertext, &s.wrapped_key, 2, 0).unwrap();
        assert_eq!(&plain[..], SECRET);
        assert_eq!(s.fingerprint, "…6789");
        assert!(!format!("{s:?}").contains("xoxb"));
    }

    #[test]
    fn fingerprints_show_the_last_four_characters_of_values_of_twelve_or_more() {
        assert_eq!(fingerprint("re_live_abcdef_7f3a9c"), "…3a9c");
        // Trimmed first: what the provider shows ends at the key, not at a newline.
        assert_eq!(fingerprint("  sk-ant-api03-xyzQ9w8e7\n"), "…w8e7");
        // 12 characters show their last 4; 11 (after trimming) show nothing.
        assert_eq!(fingerprint("abcdefgh1234"), "…1234");
        assert_eq!(fingerprint("abcdefgh123"), "…");
        assert_eq!(fingerprint("  abcdefgh123  "), "…");
        assert_eq!(fingerprint(""), "…");
        // Characters, not bytes.
        assert_eq!(fingerprint("pässwörd-ünïcødé"), "…cødé");
        // The same value always gives the same fingerprint, whatever its data key.
        let ring = ring(1);
        let b = binding(OwnerId(Uuid::now_v7()), Uuid::now_v7());
        let (one, two) = (ring.seal(&b, SECRET).unwrap(), ring.seal(&b, SECRET).unwrap());
        assert_eq!((one.fingerprint.as_str(), two.fingerprint.as_str()), ("…6789", "…6789"));
        assert_eq!(ring.seal(&b, &[0xff; 20]).unwrap().fingerprint, "…");
    }

    #[test]
    fn flipping_any_single_byte_of_the_ciphertext_fails_closed() {
        let (ring, owner, id, s) = fixture();
        for i in 0..s.ciphertext.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = s.ciphertext.clone();
                bad[i] ^= bit;
                let err = ring.open(&binding(owner, id), &bad, &s.wrapped_key, 2, 0).unwrap_err();
                assert_eq!(err, CryptoError::Integrity(Part::Value), "byte {i}");
                assert_clean(&err);
            }
        }
        // Truncated or extended.
        for bad in
            [&s.ciphertext[..s.ciphertext.len() - 1], &s.ciphertext[..NONCE_LEN + TAG_LEN - 1], &[][..]]
        {
            assert!(ring.open(&binding(owner, id), bad, &s.wrapped_key, 2, 0).is_err());
        }
        let mut longer = s.ciphertext.clone();
        longer.push(0);
        assert!(ring.open(&binding(owner, id), &longer, &s.wrapped_key, 2, 0).is_err());
    }

    #[test]
    fn flipping_any_single_byte_of_the_wrapped_key_fails_closed() {
        let (ring, owner, id, s) = fixture();
        for i in 0..s.wrapped_key.len() {
            for bit in [0x01u8, 0x02, 0x80] {
                let mut bad = s.wrapped_key.clone();
                bad[i] ^= bit;
                let err = ring.open(&binding(owner, id), &s.ciphertext, &bad, 2, 0).unwrap_err();
                assert_clean(&err);
                if i >= 3 {
                    assert_eq!(err, CryptoError::Integrity(Part::DataKey), "byte {i}");
                }
            }
        }
        // Even when the column is changed along with the prefix ("v2:" → "v3:"), the
        // version is authenticated: KEK 3 cannot open what KEK 2 wrapped.
        let mut moved = s.wrapped_key.clone();
        moved[1] = b'3';
        assert_eq!(
            ring.open(&binding(owner, id), &s.ciphertext, &moved, 3, 0).unwrap_err(),
            CryptoError::Integrity(Part::DataKey)
        );
    }

    #[test]
    fn moving_a_row_to_another_owner_kind_name_or_id_fails() {
        let (ring, owner, id, s) = fixture();
        let open = |b: Binding<'_>| ring.open(&b, &s.ciphertext, &s.wrapped_key, 2, 0);
        let other = OwnerId(Uuid::now_v7());
        for b in [
            Binding { owner: other, ..binding(owner, id) },
            Binding { credential_id: Uuid::now_v7(), ..binding(owner, id) },
            Binding { kind: "http_bearer", ..binding(owner, id) },
            Binding { name: "team-alerts2", ..binding(owner, id) },
        ] {
            assert_eq!(open(b).unwrap_err(), CryptoError::Integrity(Part::DataKey), "{b:?}");
        }
        // Length prefixes: moving bytes between kind and name does not collide.
        let a = Binding { kind: "ab", name: "c", ..binding(owner, id) };
        let b = Binding { kind: "a", name: "bc", ..binding(owner, id) };
        let sealed = ring.seal(&a, SECRET).unwrap();
        assert!(ring.open(&b, &sealed.ciphertext, &sealed.wrapped_key, 2, 0).is_err());
    }

    #[test]
    fn unknown_retired_and_mismatched_versions_fail() {
        let (ring, owner, id, s) = fixture();
        let b = binding(owner, id);
        let only_v1 = KeyRing::from_keys([(1, [1u8; 32])], 1).unwrap();
        assert_eq!(
            only_v1.open(&b, &s.ciphertext, &s.wrapped_key, 2, 0).unwrap_err(),
            CryptoError::UnknownKek(2)
        );
        assert_eq!(
            ring.open(&b, &s.ciphertext, &s.wrapped_key, 2, 3).unwrap_err(),
            CryptoError::Retired { version: 2, min: 3 }
        );
        assert_eq!(
            ring.open(&b, &s.ciphertext, &s.wrapped_key, 1, 0).unwrap_err(),
            CryptoError::VersionMismatch { prefix: 2, column: 1 }
        );
        // A KEK with the right version but other bytes cannot unwrap.
        let wrong = KeyRing::from_keys([(2, [9u8; 32])], 2).unwrap();
        assert_eq!(
            wrong.open(&b, &s.ciphertext, &s.wrapped_key, 2, 0).unwrap_err(),
            CryptoError::Integrity(Part::DataKey)
        );
        for bad in [&b"2:abc"[..], b"v:abc", b"v02:abc", b"v2", b"v2:short", b"vx:abc", b""] {
            assert_eq!(
                ring.open(&b, &s.ciphertext, bad, 2, 0).unwrap_err(),
                CryptoError::Malformed(Part::DataKey)
            );
        }
    }

    #[test]
    fn rewrap_changes_only_the_wrapped_key() {
        let (_, owner, id, s) = fixture();
        let b = binding(owner, id);
        let ring3 = ring(3);
        let rewrapped = ring3.rewrap(&b, &s.wrapped_key, 2, 0, 3).unwrap();
        assert!(rewrapped.starts_with(b"v3:"));
        assert_eq!(&ring3.open(&b, &s.ciphertext, &rewrapped, 3, 3).unwrap()[..], SECRET);
        assert_eq!(
            ring3.rewrap(&b, &s.wrapped_key, 2, 3, 3).unwrap_err(),
            CryptoError::Retired { version: 2, min: 3 }
        );
        assert_eq!(ring3.rewrap(&b, &s.wrapped_key, 2, 0, 7).unwrap_err(), CryptoError::UnknownKek(7));
    }

    #[test]
    fn the_same_plaintext_twice_gives_different_ciphertexts() {
        let (ring, owner, id, s) = fixture();
        let again = ring.seal(&binding(owner, id), SECRET).unwrap();
        assert_ne!(s.ciphertext, again.ciphertext);
        assert_ne!(s.wrapped_key, again.wrapped_key);
        assert_ne!(s.ciphertext[..NONCE_LEN], again.ciphertext[..NONCE_LEN]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn no_nonce_repeats_over_many_encryptions(value in proptest::collection::vec(any::<u8>(), 0..256), n in 200usize..400) {
            let ring = ring(1);
            let b = binding(OwnerId(Uuid::now_v7()), Uuid::now_v7());
            let mut seen = HashSet::new();
            for _ in 0..n {
                let s = ring.seal(&b, &value).unwrap();
                prop_assert!(seen.insert(s.ciphertext[..NONCE_LEN].to_vec()), "value nonce repeated");
                prop_assert!(seen.insert(s.wrapped_key[3..3 + NONCE_LEN].to_vec()), "wrapping nonce repeated");
                let plain = ring.open(&b, &s.ciphertext, &s.wrapped_key, 1, 0).unwrap();
                prop_assert_eq!(&plain[..], &value[..]);
            }
        }
    }

    #[test]
    fn key_check_values_identify_keys_without_revealing_them() {
        let r = ring(1);
        let v1 = r.check_value(1).unwrap();
        assert_ne!(v1, r.check_value(2).unwrap());
        assert_eq!(v1, ring(2).check_value(1).unwrap());
        assert!(r.check_matches(1, &v1));
        assert!(!r.check_matches(2, &v1));
        assert!(!r.check_matches(1, &v1[..31]));
        assert!(r.check_value(9).is_none());
        assert!(!v1.windows(4).any(|w| w == [1u8; 4]));
    }

    #[test]
    fn keyring_configuration_is_checked_and_errors_name_versions_only() {
        let key = STANDARD.encode([7u8; 32]);
        let cfg = |entries: &[&str], active: u32| KeysConfig {
            keyring: entries.iter().map(|e| SecretString::from(*e)).collect(),
            active: Some(active),
        };
        let ok = KeyRing::from_config(&cfg(&[&format!("1:{key}"), &format!(" 2 : {key} ")], 2)).unwrap();
        assert_eq!(ok.versions().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(ok.active_version(), 2);
        assert!(!format!("{ok:?}").contains(&key));

        assert_eq!(KeyRing::from_config(&cfg(&[], 1)).unwrap_err(), KeyringError::Empty);
        assert_eq!(
            KeyRing::from_config(&cfg(&[&format!("1:{key}")], 0)).unwrap_err(),
            KeyringError::NoActive
        );
        assert_eq!(
            KeyRing::from_config(&cfg(&[&format!("1:{key}")], 2)).unwrap_err(),
            KeyringError::ActiveMissing(2)
        );
        assert_eq!(
            KeyRing::from_config(&cfg(&[&format!("1:{key}"), &format!("1:{key}")], 1)).unwrap_err(),
            KeyringError::Duplicate(1)
        );
        assert_eq!(KeyRing::from_config(&cfg(&[&key], 1)).unwrap_err(), KeyringError::Format(1));
        assert_eq!(
            KeyRing::from_config(&cfg(&[&format!("0:{key}")], 1)).unwrap_err(),
            KeyringError::Format(1)
        );
        let short = KeyRing::from_config(&cfg(&["3:c2hvcnQtc2VjcmV0"], 3)).unwrap_err();
        assert_eq!(short, KeyringError::Length(3));
        assert!(!short.to_string().contains("c2hvcnQ"));
        let zero = STANDARD.encode([0u8; 32]);
        assert_eq!(
            KeyRing::from_config(&cfg(&[&format!("1:{zero}")], 1)).unwrap_err(),
            KeyringError::Zero(1)
        );
        assert!(KeyringError::Empty.to_string().contains("no key-encryption key configured"));
    }
}
