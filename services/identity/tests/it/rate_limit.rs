//! Failed-login throttling: the attacker is stopped, the owner is not locked out.

use tonic::Code;

use crate::harness::*;

#[tokio::test]
async fn pair_limit_trips_and_the_real_user_from_another_source_still_logs_in() {
    let id = Identity::start().await;
    let email = unique_email("victim");
    id.register(&email).await;
    let attacker = "203.0.113.7";
    for _ in 0..5 {
        assert_status(
            id.login_from(attacker, &email, "guess guess guess").await,
            Code::Unauthenticated,
            "INVALID_CREDENTIALS",
        );
    }
    // The sixth attempt is not even checked: the right password is refused too.
    let s = assert_status(
        id.login_from(attacker, &email, PASSWORD).await,
        Code::ResourceExhausted,
        "RATE_LIMITED",
    );
    let retry: u64 = s.metadata().get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry), "retry-after {retry}");
    assert!(s.message().contains("try again in"), "{}", s.message());

    // The owner, elsewhere, is unaffected.
    assert!(id.login_from("198.51.100.20", &email, PASSWORD).await.is_ok());
    // Another account from the attacker's address is unaffected by this pair.
    let other = unique_email("bystander");
    id.register(&other).await;
    assert!(id.login_from(attacker, &other, PASSWORD).await.is_ok());
}

#[tokio::test]
async fn a_forged_source_header_without_a_service_token_is_ignored() {
    let id = Identity::start().await;
    let email = unique_email("spoof");
    id.register(&email).await;
    // Direct callers are limited by their real peer address (127.0.0.1 here)...
    for _ in 0..5 {
        let _ = id.login(&email, "guess guess guess").await;
    }
    assert_status(id.login(&email, PASSWORD).await, Code::ResourceExhausted, "RATE_LIMITED");
    // ...and cannot escape by claiming another address without the gateway's token.
    let mut req = tonic::Request::new(bizops_proto::identity::v1::LoginRequest {
        email: email.clone(),
        password: PASSWORD.into(),
    });
    req.metadata_mut().insert("x-bizops-source", "192.0.2.99".parse().unwrap());
    let s = id.client().login(req).await.unwrap_err();
    assert_eq!(s.code(), Code::ResourceExhausted);
}

#[tokio::test]
async fn the_per_email_limit_never_locks_out_an_address_the_owner_used_before() {
    let id = Identity::start_with(|c| {
        c.login_limits.per_pair = 3;
        c.login_limits.per_email = 8;
    })
    .await;
    let email = unique_email("distributed");
    id.register(&email).await;
    let home = "198.51.100.5";
    assert!(id.login_from(home, &email, PASSWORD).await.is_ok(), "the owner signs in once from home");

    // A distributed attack: three addresses, three failures each.
    for source in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        for _ in 0..3 {
            let _ = id.login_from(source, &email, "guess guess guess").await;
        }
    }
    // The email is now over its limit: a new address is refused...
    assert_status(
        id.login_from("192.0.2.44", &email, PASSWORD).await,
        Code::ResourceExhausted,
        "RATE_LIMITED",
    );
    // ...but the owner's known address still works.
    assert!(id.login_from(home, &email, PASSWORD).await.is_ok());
}

#[tokio::test]
async fn password_re_entry_on_delete_is_throttled_too() {
    let id = Identity::start().await;
    let email = unique_email("reentry");
    id.register(&email).await;
    let token = id.token(&email).await;
    for _ in 0..5 {
        let _ = id
            .client()
            .delete_account(authed(
                &token,
                bizops_proto::identity::v1::DeleteAccountRequest { password: "nope nope nope".into() },
            ))
            .await;
    }
    let s = id
        .client()
        .delete_account(authed(
            &token,
            bizops_proto::identity::v1::DeleteAccountRequest { password: PASSWORD.into() },
        ))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::ResourceExhausted);
    assert!(id.verify(&token).await.is_ok(), "the account is still there");
}
