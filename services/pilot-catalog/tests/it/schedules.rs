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
                },
            ))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert!(s.message().contains("24 hours"), "{}", s.message());
}
