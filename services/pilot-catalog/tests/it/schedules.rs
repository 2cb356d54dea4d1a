//! ListDueSchedules: the executor's view of what fires when, across a DST change.

use bizops_proto::{
    catalog::v1 as pb,
    timestamp::{from_proto, to_proto},
};
use time::macros::datetime;
use tonic::Code;

use crate::harness::*;

fn with_schedule(cron: &str, tz: &str, enabled: bool) -> pb::PilotSpec {
    let mut s = sample_spec();
    s.schedules = vec![pb::Schedule { id: String::new(), cron: cron.into(), timezone: tz.into(), enabled }];
    s
}

#[tokio::test]
async fn due_schedules_are_computed_across_a_dst_change() {
    let cat = Catalog::start().await;
    let token = cat.user(owner());
    let nightly = cat.create(&token, with_schedule("30 2 * * *", "Europe/Berlin", true)).await.pilot.unwrap();
    // Neither a disabled schedule nor a disabled Pilot fires.
    cat.create(&token, with_schedule("30 2 * * *", "Europe/Berlin", false)).await;
    let off = cat.create(&token, with_schedule("30 2 * * *", "Europe/Berlin", true)).await.pilot.unwrap();
    cat.client()
        .set_enabled(authed(&token, pb::SetEnabledRequest { pilot_id: off.id, enabled: false }))
        .await
        .unwrap();

    // Spring forward in Berlin: 2026-03-29 02:00 CET → 03:00 CEST; 02:30 does not exist.
    let due = cat
        .client()
        .list_due_schedules(as_service(
            &cat.executor,
            pb::ListDueSchedulesRequest {
                after: Some(to_proto(datetime!(2026-03-28 01:00 UTC))),
                until: Some(to_proto(datetime!(2026-03-29 01:00 UTC))),
                limit: 0,
                page_token: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .due;
    let ticks: Vec<_> = due.iter().map(|d| from_proto(d.tick.as_ref().unwrap()).unwrap()).collect();
    assert_eq!(
        ticks,
        [datetime!(2026-03-28 01:30 UTC), datetime!(2026-03-29 01:00 UTC)],
        "CET 02:30, then right after the gap"
    );
    assert!(due.iter().all(|d| d.pilot_id == nightly.id && d.pilot_version == 1));
    assert_eq!(due[0].schedule_id, nightly.spec.as_ref().unwrap().schedules[0].id);

    // Fall back: 2026-10-25 03:00 CEST → 02:00 CET; 02:30 happens twice but fires once.
    let due = cat
        .client()
        .list_due_schedules(as_service(
            &cat.executor,
            pb::ListDueSchedulesRequest {
                after: Some(to_proto(datetime!(2026-10-24 22:00 UTC))),
                until: Some(to_proto(datetime!(2026-10-25 12:00 UTC))),
                limit: 0,
                page_token: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .due;
    let ticks: Vec<_> = due.iter().map(|d| from_proto(d.tick.as_ref().unwrap()).unwrap()).collect();
    assert_eq!(ticks, [datetime!(2026-10-25 00:30 UTC)]);
}

#[tokio::test]
async fn windows_are_bounded() {
    let cat = Catalog::start().await;
    let s = assert_status(
        cat.client()
            .list_due_schedules(as_service(
                &cat.executor,
                pb::ListDueSchedulesRequest {
                    after: Some(to_proto(datetime!(2026-01-01 00:00 UTC))),
                    until: Some(to_proto(datetime!(2026-01-03 00:00 UTC))),
                    limit: 0,
                    page_token: String::new(),
                },
            ))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert!(s.message().contains("24 hours"), "{}", s.message());
}

fn every_minute(n: usize) -> pb::PilotSpec {
    let mut s = sample_spec();
    s.schedules = (0..n)
        .map(|_| pb::Schedule {
            id: String::new(),
            cron: "* * * * *".into(),
            timezone: "UTC".into(),
            enabled: true,
        })
        .collect();
    s
}

/// Every tick of a window comes out, page by page, once each and in order, and
/// one owner's flood of schedules is capped per minute and per account, so it
/// cannot push anyone else's ticks out of a page or a window.
#[tokio::test]
async fn pages_hand_out_every_tick_and_one_owner_cannot_crowd_out_others() {
    let cat = Catalog::start_with(|c| {
        c.limits.max_schedules = 10;
        c.limits.schedule_ticks_per_minute = 3;
    })
    .await;
    let flood = cat.user(owner());
    let victim = cat.user(owner());
    cat.create(&flood, every_minute(10)).await;
    // The account's eleventh schedule is refused, on the field that holds it.
    let s = assert_status(
        cat.client()
            .create_pilot(authed(
                &flood,
                pb::CreatePilotRequest { spec: Some(every_minute(1)), enabled: true },
            ))
            .await,
        Code::FailedPrecondition,
        "LIMIT_EXCEEDED",
    );
    assert!(s.message().contains("at most 10 schedules"), "{}", s.message());
    // Two of the victim's Pilots whose schedules share an id (ids are chosen
    // by the client and unique only within a Pilot): pages order by Pilot too.
    let shared = |mut spec: pb::PilotSpec| {
        spec.schedules[0].id = "0193a000-0000-7000-8000-000000000001".into();
        spec
    };
    let theirs = cat.create(&victim, shared(every_minute(1))).await.pilot.unwrap();
    let also_theirs = cat.create(&victim, shared(every_minute(1))).await.pilot.unwrap();

    // Five minutes, two ticks a page.
    let (after, until) = (datetime!(2026-06-01 10:00 UTC), datetime!(2026-06-01 10:05 UTC));
    let mut token = String::new();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = cat
            .client()
            .list_due_schedules(as_service(
                &cat.executor,
                pb::ListDueSchedulesRequest {
                    after: Some(to_proto(after)),
                    until: Some(to_proto(until)),
                    limit: 2,
                    page_token: token.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.due.len() <= 2);
        seen.extend(page.due);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        assert!(pages < 100, "paging does not end");
    }
    let keys: Vec<(i64, String, String)> = seen
        .iter()
        .map(|d| (d.tick.as_ref().unwrap().seconds, d.pilot_id.clone(), d.schedule_id.clone()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(keys, sorted, "in order, none twice");
    for pilot in [&theirs.id, &also_theirs.id] {
        let mine = seen.iter().filter(|d| &d.pilot_id == pilot).count();
        assert_eq!(mine, 5, "every one of the victim's ticks, of both Pilots");
    }
    assert_eq!(seen.len() - 10, 5 * 3, "the flood: three ticks a minute");
    assert_eq!(pages, 13);

    let bad = pb::ListDueSchedulesRequest {
        after: Some(to_proto(after)),
        until: Some(to_proto(until)),
        limit: 2,
        page_token: "nonsense".into(),
    };
    assert_status(
        cat.client().list_due_schedules(as_service(&cat.executor, bad)).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
}

/// An account over the schedule limit (it was lowered) may still save its Pilots
/// with as many schedules as they had, or fewer, but not add any.
#[tokio::test]
async fn an_account_over_the_schedule_limit_may_keep_but_not_grow() {
    let cat = Catalog::start_with(|c| c.limits.max_schedules = 3).await;
    let owner = owner();
    let token = cat.user(owner);
    let full = cat.create(&token, every_minute(3)).await.pilot.unwrap();
    let other = cat.create(&token, every_minute(0)).await.pilot.unwrap();
    // Two more, as if the limit had been higher when they were saved.
    let db = cat.superuser().await;
    sqlx::query(
        "INSERT INTO catalog.schedules (pilot_id, id, owner_id, cron, timezone, enabled)
         SELECT $1, gen_random_uuid(), $2, '* * * * *', 'UTC', true FROM generate_series(1, 2)",
    )
    .bind(other.id.parse::<uuid::Uuid>().unwrap())
    .bind(owner.as_uuid())
    .execute(&db)
    .await
    .unwrap();
    let update = |pilot: &pb::Pilot, n: usize| {
        let (id, version) = (pilot.id.clone(), pilot.version);
        let token = token.clone();
        let cat = &cat;
        async move {
            cat.client()
                .update_pilot(authed(
                    &token,
                    pb::UpdatePilotRequest {
                        pilot_id: id,
                        expected_version: version,
                        spec: Some(every_minute(n)),
                    },
                ))
                .await
        }
    };
    // Five in all, the limit three: the full Pilot keeps its three.
    let kept = update(&full, 3).await.unwrap().into_inner().pilot.unwrap();
    assert_eq!(kept.version, full.version + 1);
    // But no Pilot gets one more.
    assert_status(update(&kept, 4).await, Code::FailedPrecondition, "LIMIT_EXCEEDED");
    // Fewer is always fine.
    update(&kept, 1).await.unwrap();
}
