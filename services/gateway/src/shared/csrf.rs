//! CSRF protection without a second cookie: a state-changing request must come
//! from our own origin (`Origin`, or `Sec-Fetch-Site: same-origin` when a
//! browser sends no `Origin`) and carry the synchronizer token of its session,
//! `base64url(HMAC-SHA256(key, "bizops-csrf-v1:" || session id))`, in the
//! `X-CSRF-Token` header or the `csrf_token` form field. Tokens are compared in
//! constant time.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{KeyInit as _, Mac as _};
use http::{HeaderMap, header};
use subtle::ConstantTimeEq as _;
use uuid::Uuid;
use zeroize::Zeroizing;

/// Header carrying the token.
pub const HEADER: &str = "x-csrf-token";
/// Form field carrying the token.
pub const FORM_FIELD: &str = "csrf_token";
const LABEL: &[u8] = b"bizops-csrf-v1:";

/// Derives and checks tokens; knows the public origin.
#[derive(Clone)]
pub struct Csrf {
    key: Zeroizing<[u8; 32]>,
    origin: String,
}

impl std::fmt::Debug for Csrf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Csrf").field("origin", &self.origin).finish_non_exhaustive()
    }
}

impl Csrf {
    /// `origin` must be normalised (`scheme://host[:port]`, see [`normalise_origin`]).
    pub fn new(key: Zeroizing<[u8; 32]>, origin: String) -> Self {
        Self { key, origin }
    }

    fn mac(&self, session_id: Uuid) -> [u8; 32] {
        let mut out = [0u8; 32];
        if let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(self.key.as_ref()) {
            mac.update(LABEL);
            mac.update(session_id.as_bytes());
            out.copy_from_slice(&mac.finalize().into_bytes());
        }
        out
    }

    /// The token of a session.
    pub fn token(&self, session_id: Uuid) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(session_id))
    }

    /// Whether `presented` is the token of `session_id` (constant time).
    pub fn verify(&self, session_id: Uuid, presented: &str) -> bool {
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(presented.trim()) else { return false };
        let expected = self.mac(session_id);
        bytes.len() == expected.len() && bool::from(bytes.ct_eq(&expected))
    }

    /// Whether the request says it comes from our origin.
    pub fn same_origin(&self, headers: &HeaderMap) -> bool {
        if let Some(origin) = headers.get(header::ORIGIN) {
            return origin.to_str().is_ok_and(|o| o.eq_ignore_ascii_case(&self.origin));
        }
        headers.get("sec-fetch-site").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"same-origin"))
    }

    /// The public origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

/// `scheme://host[:port]` of a configured origin, lower-case, default port
/// dropped, refusing paths, queries and anything but http(s).
pub fn normalise_origin(text: &str) -> anyhow::Result<String> {
    let url =
        url::Url::parse(text.trim()).map_err(|e| anyhow::anyhow!("BIZOPS_PUBLIC_ORIGIN: not a URL ({e})"))?;
    anyhow::ensure!(
        matches!(url.scheme(), "http" | "https"),
        "BIZOPS_PUBLIC_ORIGIN: must be http:// or https://"
    );
    anyhow::ensure!(
        url.path() == "/" && url.query().is_none() && url.fragment().is_none() && url.username().is_empty(),
        "BIZOPS_PUBLIC_ORIGIN: only scheme, host and port (no path)"
    );
    let origin = url.origin().ascii_serialization();
    anyhow::ensure!(origin != "null", "BIZOPS_PUBLIC_ORIGIN: has no host");
    Ok(origin)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use proptest::prelude::*;

    use super::*;

    fn csrf() -> Csrf {
        Csrf::new(Zeroizing::new([7u8; 32]), "https://app.example.com".into())
    }

    #[test]
    fn tokens_bind_to_the_session_and_the_key() {
        let c = csrf();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let t = c.token(a);
        assert!(c.verify(a, &t));
        assert!(!c.verify(b, &t));
        assert!(!c.verify(a, ""));
        assert!(!c.verify(a, &t[..t.len() - 1]));
        let other = Csrf::new(Zeroizing::new([8u8; 32]), c.origin.clone());
        assert!(!other.verify(a, &t));
    }

    #[test]
    fn origin_must_match_exactly() {
        let c = csrf();
        let with = |k: &str, v: &str| {
            let mut h = HeaderMap::new();
            h.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
            h
        };
        assert!(c.same_origin(&with("origin", "https://app.example.com")));
        assert!(!c.same_origin(&with("origin", "https://app.example.com.evil.test")));
        assert!(!c.same_origin(&with("origin", "http://app.example.com")));
        assert!(!c.same_origin(&with("origin", "null")));
        assert!(c.same_origin(&with("sec-fetch-site", "same-origin")));
        assert!(!c.same_origin(&with("sec-fetch-site", "same-site")));
        assert!(!c.same_origin(&with("sec-fetch-site", "cross-site")));
        assert!(!c.same_origin(&HeaderMap::new()));
    }

    #[test]
    fn origins_are_normalised() {
        assert_eq!(normalise_origin("HTTPS://App.Example.com:443/").unwrap(), "https://app.example.com");
        assert_eq!(normalise_origin("http://127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080");
        assert!(normalise_origin("https://x.test/app").is_err());
        assert!(normalise_origin("ftp://x.test").is_err());
    }

    proptest! {
        #[test]
        fn random_strings_never_verify(s in ".{0,64}") {
            prop_assert!(!csrf().verify(Uuid::nil(), &s));
        }
    }
}
