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
    // Registered from elsewhere, so 127.0.0.1 is not an address the owner used.
    id.register_from("198.51.100.9", &email).await;
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
async fn someone_behind_the_owners_address_cannot_lock_the_owner_out() {
    let id = Identity::start().await;
    let email = unique_email("office");
    let office = "198.51.100.60";
    id.register_from(office, &email).await;
    // A colleague behind the same NAT guesses well past every limit.
    for _ in 0..12 {
        assert_status(
            id.login_from(office, &email, "guess guess guess").await,
            Code::Unauthenticated,
            "INVALID_CREDENTIALS",
        );
    }
    // The owner, from that address, signs in at the first attempt.
    assert!(id.login_from(office, &email, PASSWORD).await.is_ok());
    // From an address the owner never used, the pair limit still holds.
    for _ in 0..5 {
        let _ = id.login_from("203.0.113.61", &email, "guess guess guess").await;
    }
    assert_status(
        id.login_from("203.0.113.61", &email, PASSWORD).await,
        Code::ResourceExhausted,
        "RATE_LIMITED",
    );
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

#[tokio::test]
async fn parallel_guesses_cannot_slip_under_the_limit() {
    let id = Identity::start().await;
    let email = unique_email("parallel");
    id.register(&email).await;
    let attempts = (0..20).map(|_| {
        let id = &id;
        let email = email.clone();
        async move { id.login_from("203.0.113.50", &email, "guess guess guess").await }
    });
    let results = futures_join_all(attempts).await;
    let checked = results.iter().filter(|r| matches!(r, Err(s) if s.code() == Code::Unauthenticated)).count();
    let throttled =
        results.iter().filter(|r| matches!(r, Err(s) if s.code() == Code::ResourceExhausted)).count();
    assert_eq!(checked + throttled, 20, "{results:?}");
    assert!(checked <= 5, "only the pair limit's worth of guesses may be checked, got {checked}");
}

#[tokio::test]
async fn registrations_per_source_are_limited() {
    let id = Identity::start_with(|c| c.login_limits.register_per_source_per_hour = 2).await;
    let register = |n: u32| {
        let mut client = id.client();
        let mut req = tonic::Request::new(bizops_proto::identity::v1::RegisterRequest {
            email: unique_email(&format!("signup{n}")),
            password: PASSWORD.into(),
            display_name: String::new(),
        });
        req.metadata_mut().insert("x-bizops-source", "203.0.113.60".parse().unwrap());
        req.metadata_mut()
            .insert("x-bizops-service-token", id.gateway.token_for("identity").unwrap().parse().unwrap());
        async move { client.register(req).await }
    };
    assert!(register(1).await.is_ok());
    assert!(register(2).await.is_ok());
    let s = assert_status(register(3).await, Code::ResourceExhausted, "RATE_LIMITED");
    assert!(s.metadata().get("retry-after").is_some());
}

#[tokio::test]
async fn the_address_an_account_registered_from_is_never_locked_out() {
    let id = Identity::start_with(|c| {
        c.login_limits.per_pair = 3;
        c.login_limits.per_email = 6;
        c.login_limits.per_source = 6;
    })
    .await;
    let email = unique_email("fresh");
    let home = "198.51.100.77";
    let mut req = tonic::Request::new(bizops_proto::identity::v1::RegisterRequest {
        email: email.clone(),
        password: PASSWORD.into(),
        display_name: String::new(),
    });
    req.metadata_mut().insert("x-bizops-source", home.parse().unwrap());
    req.metadata_mut()
        .insert("x-bizops-service-token", id.gateway.token_for("identity").unwrap().parse().unwrap());
    id.client().register(req).await.unwrap();
    for source in ["203.0.113.11", "203.0.113.12", "203.0.113.13"] {
        for _ in 0..3 {
            let _ = id.login_from(source, &email, "guess guess guess").await;
        }
    }
    assert_status(
        id.login_from("192.0.2.1", &email, PASSWORD).await,
        Code::ResourceExhausted,
        "RATE_LIMITED",
    );
    assert!(
        id.login_from(home, &email, PASSWORD).await.is_ok(),
        "never signed in before, but registered from here"
    );
}

/// `futures::future::join_all` without the dependency.
async fn futures_join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out = Vec::with_capacity(handles.len());
    let mut pending: Vec<_> = handles.into_iter().map(Some).collect();
    let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (i, slot) in pending.iter_mut().enumerate() {
            if let Some(fut) = slot {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        results[i] = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
    out.extend(results.into_iter().flatten());
    out
}
