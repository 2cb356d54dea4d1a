//! ExchangeToken: access tokens (≤ 55 s) minted only from a live session — none
//! after sign-out, a password change, the idle timeout or the account's deletion.

use std::{sync::Arc, time::Duration};

use bizops_authn::{SessionVerifier, TokenError};
use bizops_proto::identity::v1 as pb;
use bizops_runtime::clock::ShiftedClock;
use tonic::Code;

use crate::harness::*;

fn access_verifier(id: &Identity) -> SessionVerifier {
    SessionVerifier::access([&id.signing_key.public()], "bizops-identity", "bizops")
}

fn refused(result: Result<pb::ExchangeTokenResponse, tonic::Status>, why: &str) {
    let s = assert_status(result, Code::Unauthenticated, "UNAUTHENTICATED");
    assert!(s.message().contains("sign in again"), "{why}: {}", s.message());
}

#[tokio::test]
async fn a_live_session_gets_a_short_lived_access_token_of_its_own() {
    let id = Identity::start().await;
    let email = unique_email("exchange");
    let account = id.register(&email).await;
    let login = id.login(&email, PASSWORD).await.unwrap();
    let session = login.session.unwrap();

    let answer = id.exchange(&session.token).await.unwrap();
    assert_eq!(
        (answer.owner_id.as_str(), answer.session_id.as_str()),
        (account.id.as_str(), session.session_id.as_str())
    );
    let verified =
        access_verifier(&id).verify(&answer.access_token).expect("an access token of identity's key");
    assert_eq!(verified.owner_id.to_string(), account.id);
    assert_eq!(verified.session_id.to_string(), session.session_id);
    let lifetime = verified.expires_at - verified.issued_at;
    assert!(lifetime <= time::Duration::seconds(55) && lifetime > time::Duration::ZERO, "{lifetime}");
    let expires_at = bizops_proto::timestamp::from_proto(answer.expires_at.as_ref().unwrap()).unwrap();
    assert_eq!(expires_at.unix_timestamp(), verified.expires_at.unix_timestamp());
    // Postgres keeps microseconds: compare whole seconds.
    let session_ends = session.expires_at.as_ref().map(|t| t.seconds);
    assert_eq!(answer.session_expires_at.as_ref().map(|t| t.seconds), session_ends);
    assert!(answer.idle_expires_at.is_some());

    // Two kinds, each where it belongs: identity's session calls refuse the access
    // token, and an access token is no subject for another exchange.
    let s = assert_status(
        id.client().get_account(authed(&answer.access_token, pb::GetAccountRequest {})).await,
        Code::Unauthenticated,
        "UNAUTHENTICATED",
    );
    assert!(!s.message().contains(&answer.access_token));
    refused(id.exchange(&answer.access_token).await, "an access token");
    refused(id.exchange("not a token").await, "garbage");
    // A session token where an access token is expected says what to do.
    assert_eq!(access_verifier(&id).verify(&session.token), Err(TokenError::SessionToken));
}

#[tokio::test]
async fn no_access_token_after_sign_out_password_change_or_deletion() {
    let id = Identity::start().await;

    // Sign-out.
    let email = unique_email("signout");
    id.register(&email).await;
    let token = id.token(&email).await;
    id.exchange(&token).await.unwrap();
    id.client().logout(authed(&token, pb::LogoutRequest {})).await.unwrap();
    refused(id.exchange(&token).await, "signed out");

    // A password change ends every session, the one that changed it included.
    let email = unique_email("password");
    id.register(&email).await;
    let (token, other_device) = (id.token(&email).await, id.token(&email).await);
    id.exchange(&other_device).await.unwrap();
    let fresh = id
        .client()
        .change_password(authed(
            &token,
            pb::ChangePasswordRequest {
                current_password: PASSWORD.into(),
                new_password: NEW_PASSWORD.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    refused(id.exchange(&token).await, "the session that changed the password");
    refused(id.exchange(&other_device).await, "another device");
    id.exchange(&fresh.token).await.expect("the fresh session exchanges");

    // Account deletion.
    let email = unique_email("deleted");
    id.register(&email).await;
    let token = id.token(&email).await;
    id.exchange(&token).await.unwrap();
    id.client()
        .delete_account(authed(&token, pb::DeleteAccountRequest { password: PASSWORD.into() }))
        .await
        .unwrap();
    refused(id.exchange(&token).await, "deleted");
}

#[tokio::test]
async fn no_access_token_after_the_idle_timeout() {
    let idle = time::Duration::minutes(30);
    let clock = ShiftedClock::default();
    let id = Identity::start_with_clock(Arc::new(clock.clone()), |c| {
        c.session.idle_timeout = idle.try_into().unwrap();
        c.session.last_seen_resolution = Duration::ZERO;
    })
    .await;
    let email = unique_email("idle");
    id.register(&email).await;
    let token = id.token(&email).await;
    let minute = time::Duration::minutes(1);
    clock.set_offset(idle - minute);
    id.exchange(&token).await.expect("used within the idle window");
    clock.set_offset(2 * (idle - minute));
    id.exchange(&token).await.expect("last use was 29 minutes ago");
    clock.set_offset(2 * (idle - minute) + idle + minute);
    let s = assert_status(id.exchange(&token).await, Code::Unauthenticated, "UNAUTHENTICATED");
    assert!(s.message().contains("idle"), "{}", s.message());
}

#[tokio::test]
async fn an_access_token_never_outlives_its_session() {
    let id = Identity::start_with(|c| c.session.ttl = Duration::from_secs(20)).await;
    let email = unique_email("short");
    id.register(&email).await;
    let token = id.token(&email).await;
    let answer = id.exchange(&token).await.unwrap();
    let access_ends = answer.expires_at.as_ref().map(|t| t.seconds);
    assert_eq!(access_ends, answer.session_expires_at.as_ref().map(|t| t.seconds));
}

#[tokio::test]
async fn an_access_lifetime_beyond_55_s_is_refused_at_start() {
    let db = bizops_testkit::TestDb::create(&identity::MIGRATOR).await.unwrap();
    let key = bizops_authn::SigningKey::generate("k").unwrap();
    let gateway =
        bizops_authn::ServiceSigner::new("gateway", bizops_authn::SigningKey::generate("gateway").unwrap());
    let mut config = base_config(&db, &key, &gateway);
    config.session.access_ttl = Duration::from_secs(56);
    let error = identity::App::build(config).await.err().expect("refused");
    assert!(error.to_string().contains("BIZOPS_SESSION__ACCESS_TTL"), "{error:#}");
}
