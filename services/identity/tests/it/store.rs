//! The storage mechanisms that close races, exercised directly.

use bizops_authn::OwnerId;
use identity::{
    store::{AccountRow, AccountStore, PgAccountStore, SessionRow},
    system::SystemStore,
};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::harness::*;

async fn stores(id: &Identity) -> (PgAccountStore, SystemStore) {
    let service = sqlx::PgPool::connect(&id.db.url("bizops_identity")).await.unwrap();
    let system = sqlx::PgPool::connect(&id.db.url("bizops_identity_system")).await.unwrap();
    (PgAccountStore::new(service), SystemStore::new(system))
}

fn session(owner: Uuid, created: OffsetDateTime, last_seen: OffsetDateTime) -> SessionRow {
    SessionRow {
        id: Uuid::now_v7(),
        owner_id: owner,
        created_at: created,
        expires_at: created + Duration::hours(12),
        last_seen_at: last_seen,
    }
}

#[tokio::test]
async fn a_sign_in_that_raced_a_password_change_gets_no_session() {
    let id = Identity::start().await;
    let (store, _) = stores(&id).await;
    let now = OffsetDateTime::now_utc();
    let owner = Uuid::now_v7();
    let account = AccountRow {
        id: owner,
        email: unique_email("race"),
        display_name: None,
        password_hash: "$scrypt$ln=4,r=8,p=1$old$old".into(),
        created_at: now,
        password_changed_at: now,
    };
    store.create_account(&account).await.unwrap();
    // The password changes (compare-and-swap on the hash the change verified)...
    let fresh = session(owner, now, now);
    assert!(
        store
            .replace_password(OwnerId(owner), &account.password_hash, "$scrypt$ln=4,r=8,p=1$new$new", &fresh)
            .await
            .unwrap()
    );
    // ...a second change based on the stale hash is refused...
    assert!(
        !store
            .replace_password(OwnerId(owner), &account.password_hash, "$scrypt$x", &session(owner, now, now))
            .await
            .unwrap()
    );
    // ...and a sign-in that checked the old hash cannot open a session afterwards.
    assert!(!store.create_session(&session(owner, now, now), &account.password_hash).await.unwrap());
    assert!(store.create_session(&session(owner, now, now), "$scrypt$ln=4,r=8,p=1$new$new").await.unwrap());
    assert!(store.session(OwnerId(owner), fresh.id).await.unwrap().is_some());
}

#[tokio::test]
async fn expired_and_idle_sessions_are_swept() {
    // The service's own sweeper reads a clock a day behind, so it never takes
    // this test's sessions first (its first pass runs at start, any time).
    let behind = bizops_runtime::clock::ShiftedClock::default();
    behind.set_offset(-Duration::days(1));
    let id = Identity::start_with_clock(std::sync::Arc::new(behind), |_| {}).await;
    let (store, system) = stores(&id).await;
    let now = OffsetDateTime::now_utc();
    let owner = Uuid::now_v7();
    let hash = "$scrypt$ln=4,r=8,p=1$s$h";
    store
        .create_account(&AccountRow {
            id: owner,
            email: unique_email("sweep"),
            display_name: None,
            password_hash: hash.into(),
            created_at: now,
            password_changed_at: now,
        })
        .await
        .unwrap();
    let live = session(owner, now, now);
    let idle = session(owner, now - Duration::hours(3), now - Duration::hours(3));
    let expired = SessionRow {
        expires_at: now - Duration::minutes(1),
        ..session(owner, now - Duration::hours(13), now)
    };
    for s in [&live, &idle, &expired] {
        assert!(store.create_session(s, hash).await.unwrap());
    }
    assert_eq!(system.sweep_sessions(now, now - Duration::hours(2)).await.unwrap(), 2);
    assert!(store.session(OwnerId(owner), live.id).await.unwrap().is_some());
    assert!(store.session(OwnerId(owner), idle.id).await.unwrap().is_none());
    assert!(store.session(OwnerId(owner), expired.id).await.unwrap().is_none());
}
