//! The life of a credential: put → list (metadata only) → resolve as the executor →
//! delete → resolve reports it missing; replace; validation and limits.

use bizops_proto::vault::v1::{self as pb, ConnectorKind};
use tonic::Code;

use crate::harness::*;

#[tokio::test]
async fn put_list_resolve_delete() {
    let v = Vault::start().await;
    let ann = v.new_user();

    let info = v.put(&ann, "team-alerts", ConnectorKind::Slack, SLACK_URL).await.unwrap();
    assert_eq!(info.name, "team-alerts");
    assert_eq!(info.kind, ConnectorKind::Slack as i32);
    assert!(info.created_at.is_some() && info.updated_at.is_some() && info.last_used_at.is_none());
    // The fingerprint is what the user can match at the provider: the last 4
    // characters of the value.
    assert_eq!(info.fingerprint, "…Z123");
    let mail = v.put(&ann, "mail", ConnectorKind::Resend, RESEND_KEY).await.unwrap();
    assert_eq!(mail.fingerprint, "…3a9c");

    // Metadata only: the value appears nowhere in the listing.
    let list = v.list(&ann).await;
    assert_eq!(list.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["mail", "team-alerts"]);
    let shown = format!("{list:?}");
    for secret in SECRETS {
        assert!(!shown.contains(secret), "{shown}");
    }
    let fingerprints: Vec<&str> = list.iter().map(|c| c.fingerprint.as_str()).collect();
    assert_eq!(fingerprints, ["…3a9c", "…Z123"]);

    // The executor gets plaintext, and last-used is recorded.
    let resolved = v.resolve(ann.owner, &["team-alerts", "mail", "nope", "mail"]).await.unwrap();
    let got: Vec<(&str, i32, &str)> =
        resolved.credentials.iter().map(|c| (c.name.as_str(), c.kind, c.value.as_str())).collect();
    assert_eq!(
        got,
        [
            ("mail", ConnectorKind::Resend as i32, RESEND_KEY),
            ("team-alerts", ConnectorKind::Slack as i32, SLACK_URL)
        ]
    );
    assert_eq!(resolved.missing, ["nope"]);
    // The resolved message's Debug never shows the value.
    assert!(!format!("{resolved:?}").contains(RESEND_KEY));
    let list = v.list(&ann).await;
    assert!(list.iter().all(|c| c.last_used_at.is_some()), "{list:?}");

    // Nobody but the executor may resolve.
    let req = || resolve_request(ann.owner, &["mail"]);
    assert_status(
        v.client().resolve_for_run(authed(&ann.token, req())).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    for other in [&v.keys.gateway, &v.keys.identity, &v.keys.ops] {
        let denied = v.client().resolve_for_run(as_service(other, req())).await;
        assert_status(denied, Code::PermissionDenied, "PERMISSION_DENIED");
    }
    assert_status(v.client().resolve_for_run(req()).await, Code::Unauthenticated, "UNAUTHENTICATED");
    // A token the vault does not trust is refused outright.
    let stranger =
        bizops_authn::ServiceSigner::new("executor", bizops_authn::SigningKey::generate("executor").unwrap());
    assert_status(
        v.client().resolve_for_run(as_service(&stranger, req())).await,
        Code::Unauthenticated,
        "UNAUTHENTICATED",
    );

    // Disconnect: the row is gone at once, and a resolve reports it missing.
    v.delete(&ann, "mail").await.unwrap();
    let after = v.resolve(ann.owner, &["mail"]).await.unwrap();
    assert!(after.credentials.is_empty());
    assert_eq!(after.missing, ["mail"]);
    assert_status(v.delete(&ann, "mail").await, Code::NotFound, "NOT_FOUND");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM vault.credentials WHERE name = 'mail'")
        .fetch_one(&v.superuser().await)
        .await
        .unwrap();
    assert_eq!(rows, 0, "hard delete, not a flag");
    v.logs.assert_absent(SECRETS);
}

#[tokio::test]
async fn user_rpcs_need_a_session() {
    let v = Vault::start().await;
    let put = pb::PutCredentialRequest {
        name: "x".into(),
        kind: ConnectorKind::HttpBearer as i32,
        value: BEARER.into(),
    };
    assert_status(v.client().put_credential(put.clone()).await, Code::Unauthenticated, "UNAUTHENTICATED");
    let denied = v.client().put_credential(as_service(&v.keys.executor, put.clone())).await;
    assert_status(denied, Code::PermissionDenied, "PERMISSION_DENIED");
    let bad = v.client().put_credential(authed("not-a-jwt", put)).await;
    assert_no_secret(&assert_status(bad, Code::Unauthenticated, "UNAUTHENTICATED"));
    assert_status(
        v.client().list_credentials(pb::ListCredentialsRequest {}).await,
        Code::Unauthenticated,
        "UNAUTHENTICATED",
    );
}

#[tokio::test]
async fn put_replaces_and_the_same_value_never_encrypts_the_same() {
    let v = Vault::start().await;
    let ann = v.new_user();
    let first = v.put(&ann, "key", ConnectorKind::Anthropic, ANTHROPIC_KEY).await.unwrap();
    let pool = v.superuser().await;
    let read = || async {
        sqlx::query_as::<_, (uuid::Uuid, Vec<u8>, Vec<u8>)>(
            "SELECT id, ciphertext, wrapped_key FROM vault.credentials WHERE name = 'key'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let before = read().await;
    let second = v.put(&ann, "key", ConnectorKind::Anthropic, ANTHROPIC_KEY).await.unwrap();
    let after = read().await;
    assert_eq!(before.0, after.0, "replacing keeps the credential");
    assert_ne!(before.1, after.1, "same plaintext, different ciphertext");
    assert_ne!(before.2, after.2, "a fresh data key");
    assert_eq!(first.created_at, second.created_at);
    assert!(at(&second.updated_at) > at(&first.updated_at));
    // The same value, the same fingerprint (it does not change with the data key).
    assert_eq!((first.fingerprint.as_str(), second.fingerprint.as_str()), ("…w8e7", "…w8e7"));

    // Another kind under the same name replaces it too.
    let third = v.put(&ann, "key", ConnectorKind::HttpBearer, BEARER).await.unwrap();
    assert_eq!(third.kind, ConnectorKind::HttpBearer as i32);
    assert_eq!(third.fingerprint, "…1+/=", "the last 4 of the new value");
    // A short token shows nothing of itself.
    let short = v.put(&ann, "key", ConnectorKind::HttpBearer, "tok-0123456").await.unwrap();
    assert_eq!(short.fingerprint, "…");
    assert_eq!(v.list(&ann).await[0].fingerprint, "…");
    let twelve = v.put(&ann, "key", ConnectorKind::HttpBearer, "tok-01234567").await.unwrap();
    assert_eq!(twelve.fingerprint, "…4567");
    v.put(&ann, "key", ConnectorKind::HttpBearer, BEARER).await.unwrap();
    assert_eq!(v.value_of(ann.owner, "key").await.unwrap(), BEARER);
    assert_eq!(v.list(&ann).await.len(), 1);

    // Two names, one plaintext: unrelated ciphertexts and nonces.
    v.put(&ann, "copy", ConnectorKind::HttpBearer, BEARER).await.unwrap();
    let rows: Vec<Vec<u8>> = sqlx::query_scalar("SELECT ciphertext FROM vault.credentials ORDER BY name")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_ne!(rows[0], rows[1]);
    assert_ne!(rows[0][..12], rows[1][..12]);
}

fn at(t: &Option<prost_types::Timestamp>) -> time::OffsetDateTime {
    bizops_proto::timestamp::from_proto(t.as_ref().unwrap()).unwrap()
}

#[tokio::test]
async fn values_are_validated_per_kind_without_echoing_them() {
    let v = Vault::start().await;
    let ann = v.new_user();
    let cases: &[(&str, ConnectorKind, &str)] = &[
        ("s", ConnectorKind::Slack, "http://evil.example/services/T/B/SecretPathA1"),
        ("s", ConnectorKind::Slack, "not a url SecretPathA2"),
        ("r", ConnectorKind::Resend, "sk-ant-SecretPathA3xx"),
        ("a", ConnectorKind::Anthropic, "re_SecretPathA4xxxx"),
        ("h", ConnectorKind::HttpBearer, "Secret PathA5"),
        ("h", ConnectorKind::HttpBearer, ""),
    ];
    for (name, kind, value) in cases {
        let err =
            assert_status(v.put(&ann, name, *kind, value).await, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert!(err.message().starts_with("value:"), "{}", err.message());
        assert!(!err.message().contains("SecretPath"), "{}", err.message());
    }
    // The configured https rule applies to Slack in production.
    let strict = Vault::start_with(|c| {
        c.connectors.slack_require_https = true;
        c.connectors.slack_allowed_hosts = vec!["hooks.slack.com".into()];
    })
    .await;
    let bob = strict.new_user();
    let http = SLACK_URL.replacen("https", "http", 1);
    assert_status(
        strict.put(&bob, "s", ConnectorKind::Slack, &http).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    strict.put(&bob, "s", ConnectorKind::Slack, SLACK_URL).await.unwrap();

    for bad_name in ["", "Upper", "9lives", "has space", &"x".repeat(64)] {
        let err = v.put(&ann, bad_name, ConnectorKind::HttpBearer, BEARER).await;
        let status = assert_status(err, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert!(status.message().starts_with("name:"));
    }
    let err = v.put(&ann, "k", ConnectorKind::Unspecified, BEARER).await;
    assert!(assert_status(err, Code::InvalidArgument, "INVALID_ARGUMENT").message().starts_with("kind:"));

    // 8 KiB is the limit.
    let big = "a".repeat(8 * 1024);
    v.put(&ann, "big", ConnectorKind::HttpBearer, &big).await.unwrap();
    assert_eq!(v.value_of(ann.owner, "big").await.unwrap(), big);
    let too_big = format!("{big}b");
    let status = assert_status(
        v.put(&ann, "big", ConnectorKind::HttpBearer, &too_big).await,
        Code::InvalidArgument,
        "PAYLOAD_TOO_LARGE",
    );
    assert!(status.message().contains("8192"), "{}", status.message());
    assert!(v.list(&ann).await.is_empty() || v.list(&ann).await.iter().all(|c| c.name == "big"));
}

#[tokio::test]
async fn at_most_100_credentials_per_owner_even_under_concurrency() {
    let v = Vault::start().await;
    let ann = v.new_user();
    for i in 0..95 {
        v.put(&ann, &format!("k{i}"), ConnectorKind::HttpBearer, BEARER).await.unwrap();
    }
    let mut set = tokio::task::JoinSet::new();
    for i in 0..10 {
        let (mut client, token) = (v.client(), ann.token.clone());
        let req = pb::PutCredentialRequest {
            name: format!("extra{i}"),
            kind: ConnectorKind::HttpBearer as i32,
            value: BEARER.into(),
        };
        set.spawn(async move { client.put_credential(authed(&token, req)).await.map(|r| r.into_inner()) });
    }
    let results = set.join_all().await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 5, "exactly up to the limit");
    for r in results.into_iter().filter(Result::is_err) {
        let status = assert_status(r, Code::FailedPrecondition, "LIMIT_EXCEEDED");
        assert!(status.message().contains("100"), "{}", status.message());
    }
    assert_eq!(v.list(&ann).await.len(), 100);
    // Replacing an existing one is still allowed at the limit; another owner is unaffected.
    v.put(&ann, "k0", ConnectorKind::HttpBearer, "replaced").await.unwrap();
    let bob = v.new_user();
    v.put(&bob, "k0", ConnectorKind::HttpBearer, BEARER).await.unwrap();
}

#[tokio::test]
async fn resolve_validates_its_request() {
    let v = Vault::start().await;
    let ann = v.new_user();
    let mut req = resolve_request(ann.owner, &["a"]);
    req.owner_id = "not-a-uuid".into();
    assert_status(
        v.client().resolve_for_run(as_service(&v.keys.executor, req)).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    let mut req = resolve_request(ann.owner, &["a"]);
    req.run_id = String::new();
    assert_status(
        v.client().resolve_for_run(as_service(&v.keys.executor, req)).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    let req = resolve_request(ann.owner, &["Bad Name"]);
    let status = assert_status(
        v.client().resolve_for_run(as_service(&v.keys.executor, req)).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert!(status.message().starts_with("names[0]:"), "{}", status.message());
    let empty = v.resolve(ann.owner, &[]).await.unwrap();
    assert!(empty.credentials.is_empty() && empty.missing.is_empty());
}

/// A run that found no key is remembered for a moment (no database work for the
/// next runs); a key connected right after is used by the very next run, and a
/// disconnected one is gone for the very next run.
#[tokio::test]
async fn a_key_connected_after_a_run_found_none_is_used_at_once_and_a_removed_one_is_gone_at_once() {
    let v = Vault::start().await;
    let ann = v.new_user();
    for _ in 0..2 {
        assert_eq!(v.resolve(ann.owner, &["anthropic"]).await.unwrap().missing, ["anthropic"]);
    }
    let key = "sk-ant-api03-connected-after-a-run-0000000000";
    v.put(&ann, "anthropic", ConnectorKind::Anthropic, key).await.unwrap();
    assert_eq!(v.value_of(ann.owner, "anthropic").await.unwrap(), key);
    v.delete(&ann, "anthropic").await.unwrap();
    assert_eq!(v.resolve(ann.owner, &["anthropic"]).await.unwrap().missing, ["anthropic"]);
}
