//! Session tokens that must never pass: tampered, expired, unsigned, HS256, foreign.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use bizops_authn::{OwnerId, SessionSigner, SigningKey};
use bizops_proto::identity::v1 as pb;
use time::{Duration, OffsetDateTime};
use tonic::Code;

use crate::harness::*;

fn b64json(v: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

fn claims_of(token: &str) -> serde_json::Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

async fn assert_rejected(id: &Identity, token: &str, what: &str) {
    let s = id.verify(token).await.expect_err(what);
    assert_eq!((s.code(), code_of(&s).as_str()), (Code::Unauthenticated, "UNAUTHENTICATED"), "{what}: {s:?}");
    let s = id.client().get_account(authed(token, pb::GetAccountRequest {})).await.expect_err(what);
    assert_eq!(s.code(), Code::Unauthenticated, "{what} as authorization: {s:?}");
}

#[tokio::test]
async fn tampered_expired_unsigned_hs256_and_foreign_tokens_are_rejected() {
    let id = Identity::start().await;
    let email = unique_email("tokens");
    let account = id.register(&email).await;
    let token = id.token(&email).await;
    assert!(id.verify(&token).await.is_ok());
    let owner = OwnerId(account.id.parse().unwrap());
    let claims = claims_of(&token);
    let sid: uuid::Uuid = claims["sid"].as_str().unwrap().parse().unwrap();
    let parts: Vec<&str> = token.split('.').collect();

    // Tampered: another owner's id in the claims, original signature.
    let mut forged = claims.clone();
    forged["sub"] = serde_json::Value::String(uuid::Uuid::now_v7().to_string());
    assert_rejected(&id, &format!("{}.{}.{}", parts[0], b64json(&forged), parts[2]), "tampered claims").await;
    // Tampered signature.
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    sig[0] ^= 1;
    assert_rejected(
        &id,
        &format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig)),
        "tampered signature",
    )
    .await;

    // Expired: right key, right session, exp in the past.
    let signer = SessionSigner::new(id.signing_key.clone(), "bizops-identity", "bizops");
    let now = OffsetDateTime::now_utc();
    let expired = signer.sign(owner, sid, now - Duration::hours(13), now - Duration::hours(1)).unwrap();
    assert_rejected(&id, &expired, "expired").await;

    // alg: none, no signature.
    let none_header = b64json(&serde_json::json!({"alg": "none", "typ": "JWT", "kid": "test-k1"}));
    assert_rejected(&id, &format!("{none_header}.{}.", parts[1]), "alg none").await;

    // HS256 keyed with the public key (algorithm confusion).
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("test-k1".into());
    let x = id.signing_key.public().to_jwk().x;
    let hs = jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(x.as_bytes()))
        .unwrap();
    assert_rejected(&id, &hs, "HS256").await;

    // A well-formed EdDSA token from a key identity does not hold.
    let stranger = SessionSigner::new(SigningKey::generate("test-k1").unwrap(), "bizops-identity", "bizops");
    assert_rejected(&id, &stranger.sign(owner, sid, now, now + Duration::hours(1)).unwrap(), "foreign key")
        .await;

    // A validly signed token for a session that does not exist.
    let ghost = signer.sign(owner, uuid::Uuid::now_v7(), now, now + Duration::hours(1)).unwrap();
    assert_rejected(&id, &ghost, "unknown session").await;

    // A service token is not a session.
    let service = id.gateway.token_for("identity").unwrap();
    let s = id.client().get_account(authed(&service, pb::GetAccountRequest {})).await.unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");

    // Garbage.
    assert_rejected(&id, "", "empty").await;
    assert_rejected(&id, "not-a-token", "garbage").await;
    // The real token still works after all that.
    assert!(id.verify(&token).await.is_ok());
}

#[tokio::test]
async fn jwks_lists_the_current_and_previous_keys_and_verifies_tokens() {
    let previous = SigningKey::generate("test-k0").unwrap();
    let prev_public = previous.public().to_config_string();
    let id = Identity::start_with(|c| c.keys.previous_public_keys = vec![prev_public]).await;
    let jwks = id.client().get_jwks(pb::GetJwksRequest {}).await.unwrap().into_inner();
    let kids: Vec<&str> = jwks.keys.iter().map(|k| k.kid.as_str()).collect();
    assert_eq!(kids, ["test-k1", "test-k0"], "current first");
    assert!(
        jwks.keys
            .iter()
            .all(|k| k.kty == "OKP" && k.crv == "Ed25519" && k.alg == "EdDSA" && k.r#use == "sig")
    );
    let set: bizops_authn::JwkSet = serde_json::from_str(&jwks.jwks_json).unwrap();
    assert_eq!(set.keys.len(), 2);

    // A verifier built only from the JWKS accepts identity's tokens.
    let email = unique_email("jwks");
    id.register(&email).await;
    let token = id.token(&email).await;
    let keys: Vec<_> = set.keys.iter().map(|k| bizops_authn::PublicKey::from_jwk(k).unwrap()).collect();
    let verifier = bizops_authn::SessionVerifier::new(&keys, "bizops-identity", "bizops");
    assert!(verifier.verify(&token).is_ok());

    // A token signed by the previous key (before rotation) is still accepted.
    let account = id.login(&email, PASSWORD).await.unwrap();
    let owner = bizops_authn::OwnerId(account.account.unwrap().id.parse().unwrap());
    let sid: uuid::Uuid = account.session.unwrap().session_id.parse().unwrap();
    let now = OffsetDateTime::now_utc();
    let old = SessionSigner::new(previous, "bizops-identity", "bizops")
        .sign(owner, sid, now, now + Duration::hours(1))
        .unwrap();
    assert!(id.verify(&old).await.is_ok());
}
