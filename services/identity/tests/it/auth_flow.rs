//! register → login → verify → change password → logout → delete account, and the
//! answers for bad input.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bizops_proto::identity::v1 as pb;
use bizops_runtime::clock::ShiftedClock;
use tonic::Code;

use crate::harness::*;

#[tokio::test]
async fn full_account_lifecycle() {
    let id = Identity::start().await;
    let email = unique_email("Lifecycle");
    let account = id.register(&format!("  {}  ", email.to_uppercase())).await;
    assert_eq!(account.email, email.to_lowercase(), "email is normalised");

    // Two sessions on two devices.
    let first = id.login(&email, PASSWORD).await.unwrap();
    assert_eq!(first.account.as_ref().unwrap().id, account.id);
    let token = first.session.unwrap().token;
    let other_device = id.token(&email).await;
    let verified = id.verify(&token).await.unwrap();
    assert_eq!(verified.owner_id, account.id);
    let got = id.client().get_account(authed(&token, pb::GetAccountRequest {})).await.unwrap().into_inner();
    assert_eq!(got.account.unwrap().email, email.to_lowercase());

    // Change password: every earlier session is revoked, the fresh one works.
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
        .unwrap()
        .token;
    for old in [&token, &other_device] {
        assert_status(id.verify(old).await, Code::Unauthenticated, "UNAUTHENTICATED");
        assert_status(
            id.client().get_account(authed(old, pb::GetAccountRequest {})).await,
            Code::Unauthenticated,
            "UNAUTHENTICATED",
        );
    }
    assert_eq!(id.verify(&fresh).await.unwrap().owner_id, account.id);
    assert_status(id.login(&email, PASSWORD).await, Code::Unauthenticated, "INVALID_CREDENTIALS");
    let after_change = id.login(&email, NEW_PASSWORD).await.unwrap().session.unwrap().token;

    // Logout ends exactly that session.
    id.client().logout(authed(&fresh, pb::LogoutRequest {})).await.unwrap();
    assert_status(id.verify(&fresh).await, Code::Unauthenticated, "UNAUTHENTICATED");
    assert_status(
        id.client().logout(authed(&fresh, pb::LogoutRequest {})).await,
        Code::Unauthenticated,
        "UNAUTHENTICATED",
    );
    assert!(id.verify(&after_change).await.is_ok());

    // Delete: the wrong password is refused, the right one deletes everything.
    assert_status(
        id.client()
            .delete_account(authed(&after_change, pb::DeleteAccountRequest { password: PASSWORD.into() }))
            .await,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );
    id.client()
        .delete_account(authed(&after_change, pb::DeleteAccountRequest { password: NEW_PASSWORD.into() }))
        .await
        .unwrap();
    let pool = id.superuser().await;
    let owner: uuid::Uuid = account.id.parse().unwrap();
    for table in [
        "identity.accounts WHERE id = $1",
        "identity.sessions WHERE owner_id = $1",
        "identity.known_sources WHERE owner_id = $1",
    ] {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .bind(owner)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 0, "{table}");
    }
    let failures: i64 =
        sqlx::query_scalar("SELECT count(*) FROM identity.login_failures").fetch_one(&pool).await.unwrap();
    assert_eq!(failures, 0, "failures of the deleted email are forgotten");

    assert_status(id.login(&email, NEW_PASSWORD).await, Code::Unauthenticated, "INVALID_CREDENTIALS");
    assert_status(id.verify(&after_change).await, Code::Unauthenticated, "UNAUTHENTICATED");
}

#[tokio::test]
async fn duplicate_email_is_already_exists() {
    let id = Identity::start().await;
    let email = unique_email("dup");
    id.register(&email).await;
    let again = id
        .client()
        .register(pb::RegisterRequest {
            email: email.to_uppercase(),
            password: "a different but strong passphrase 9".into(),
            display_name: String::new(),
        })
        .await;
    let status = assert_status(again, Code::AlreadyExists, "ALREADY_EXISTS");
    assert!(status.message().contains("email"), "{}", status.message());
}

#[tokio::test]
async fn bad_email_short_and_weak_passwords_are_invalid_argument_with_a_clear_message() {
    let id = Identity::start().await;
    let register = |email: &str, password: &str| {
        let mut client = id.client();
        let req = pb::RegisterRequest {
            email: email.into(),
            password: password.into(),
            display_name: String::new(),
        };
        async move { client.register(req).await }
    };
    let s =
        assert_status(register("not-an-email", PASSWORD).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(s.message(), "email: must contain @");
    let s = assert_status(
        register(&unique_email("short"), "Sh0rt!").await,
        Code::InvalidArgument,
        "WEAK_PASSWORD",
    );
    assert!(s.message().contains("at least 12 characters"), "{}", s.message());
    let s = assert_status(
        register(&unique_email("weak"), "password1234").await,
        Code::InvalidArgument,
        "WEAK_PASSWORD",
    );
    assert!(s.message().contains("too easy to guess"), "{}", s.message());
    assert!(
        s.message().len() > "password: too easy to guess".len() + 20,
        "carries zxcvbn feedback: {}",
        s.message()
    );
    let long_name = pb::RegisterRequest {
        email: unique_email("name"),
        password: PASSWORD.into(),
        display_name: "x".repeat(101),
    };
    let s = assert_status(id.client().register(long_name).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert!(s.message().starts_with("display_name:"), "{}", s.message());

    // A weak new password on ChangePassword names the field.
    let email = unique_email("change");
    id.register(&email).await;
    let token = id.token(&email).await;
    let s = assert_status(
        id.client()
            .change_password(authed(
                &token,
                pb::ChangePasswordRequest { current_password: PASSWORD.into(), new_password: "abc".into() },
            ))
            .await,
        Code::InvalidArgument,
        "WEAK_PASSWORD",
    );
    assert!(s.message().starts_with("new_password:"), "{}", s.message());
    // Nothing changed: the old password and session still work.
    assert!(id.verify(&token).await.is_ok());
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_answer_in_the_same_time() {
    // Parameters costly enough that hashing dominates the timing.
    let id = Identity::start_with(|c| {
        c.scrypt.log_n = 13;
        c.login_limits.per_pair = 1000;
        c.login_limits.per_source = 1000;
        c.login_limits.per_email = 1000;
    })
    .await;
    let email = unique_email("timing");
    id.register(&email).await;
    let mut wrong = Vec::new();
    let mut unknown = Vec::new();
    for i in 0..7 {
        let t = Instant::now();
        let a = id.login(&email, "not the password at all").await.unwrap_err();
        wrong.push(t.elapsed());
        let t = Instant::now();
        let b = id.login(&unique_email(&format!("nobody{i}")), "not the password at all").await.unwrap_err();
        unknown.push(t.elapsed());
        assert_eq!((a.code(), a.message(), code_of(&a)), (b.code(), b.message(), code_of(&b)));
        assert_eq!(a.code(), Code::Unauthenticated);
        assert_eq!(a.message(), "email or password is incorrect");
    }
    wrong.sort();
    unknown.sort();
    let (w, u) = (wrong[3], unknown[3]);
    assert!(
        u * 2 > w && w * 2 > u,
        "median wrong-password {w:?} vs unknown-email {u:?}: an unknown email must cost a hash"
    );
}

#[tokio::test]
async fn idle_sessions_end() {
    // identity's clock is moved; real time only adds the milliseconds of the calls.
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
    assert!(id.verify(&token).await.is_ok(), "use within the idle window keeps it alive");
    // Longer after sign-in than the idle timeout, but not after the last use.
    clock.set_offset(2 * (idle - minute));
    assert!(id.verify(&token).await.is_ok(), "last use was 29 minutes ago");
    clock.set_offset(2 * (idle - minute) + idle + minute);
    let s = assert_status(id.verify(&token).await, Code::Unauthenticated, "UNAUTHENTICATED");
    assert!(s.message().contains("idle"), "{}", s.message());
}

#[tokio::test]
async fn no_password_hash_token_or_email_in_the_logs() {
    let id = Identity::start().await;
    let email = unique_email("logs");
    let account = id.register(&email).await;
    let _ = id.login(&email, "a wrong guess for the log test").await;
    let token = id.token(&email).await;
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
        .unwrap()
        .token;
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM identity.accounts WHERE id = $1")
        .bind(account.id.parse::<uuid::Uuid>().unwrap())
        .fetch_one(&id.superuser().await)
        .await
        .unwrap();
    id.client()
        .delete_account(authed(&fresh, pb::DeleteAccountRequest { password: NEW_PASSWORD.into() }))
        .await
        .unwrap();

    let logs = id.logs.contents();
    assert!(logs.contains("login succeeded") && logs.contains("account deleted"), "logs were captured");
    let salt_and_hash = hash.rsplit('$').take(2).collect::<Vec<_>>();
    id.logs.assert_absent(&[
        PASSWORD,
        NEW_PASSWORD,
        "a wrong guess for the log test",
        &hash,
        salt_and_hash[0],
        salt_and_hash[1],
        &token,
        &fresh,
        // Signatures alone are secrets too.
        token.rsplit('.').next().unwrap(),
        &email,
    ]);
}
