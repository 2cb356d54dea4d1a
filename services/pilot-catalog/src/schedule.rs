//! Schedules: five-field cron expressions in an IANA time zone (croner +
//! chrono-tz), and the ticks that fall in a time window.
//!
//! Daylight saving time follows Vixie cron: a fixed-time tick that falls into a
//! spring-forward gap fires at the first valid time after the gap; one that falls
//! into a fall-back overlap fires once, at its first occurrence. Wildcard or
//! interval schedules (e.g. every 15 minutes) follow the wall clock: they skip the
//! missing hour and fire in both passes of the repeated hour.

use chrono::{DateTime, TimeZone as _, Utc};
use chrono_tz::Tz;
use croner::{Cron, parser::CronParser};
use time::OffsetDateTime;

/// Parses a five-field cron expression (minute hour day-of-month month
/// day-of-week); no seconds, no years, no `@nicknames`.
pub fn parse(expr: &str) -> Result<Cron, String> {
    let fields = expr.split_whitespace().count();
    if fields != 5 {
        return Err(format!(
            "must have 5 fields (minute hour day-of-month month day-of-week), e.g. \"0 9 * * 1-5\"; it has {fields}"
        ));
    }
    CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| format!("is not a valid cron expression: {e}"))
}

/// Parses an IANA time-zone name such as `Europe/Berlin` or `UTC`.
pub fn timezone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>()
        .map_err(|_| format!("\"{name}\" is not an IANA time zone name such as Europe/Berlin or UTC"))
}

/// Fails if the expression never fires (e.g. February 30th).
pub fn check_fires(cron: &Cron, tz: Tz) -> Result<(), String> {
    let now = Utc::now().with_timezone(&tz);
    cron.find_next_occurrence(&now, false).map(|_| ()).map_err(|_| "never fires".to_owned())
}

fn to_chrono(t: OffsetDateTime) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(t.unix_timestamp(), t.nanosecond()).single()
}

fn from_chrono(t: DateTime<Utc>) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(t.timestamp()).ok()
}

/// The ticks of `cron` in `tz` with `after < tick <= until`, oldest first, at
/// most `limit`. Every tick is an instant: the answer for a window is the same as
/// the union of the answers for any slicing of it.
pub fn ticks(
    cron: &Cron,
    tz: Tz,
    after: OffsetDateTime,
    until: OffsetDateTime,
    limit: usize,
) -> Vec<OffsetDateTime> {
    let (Some(after_c), Some(until_c)) = (to_chrono(after), to_chrono(until)) else { return Vec::new() };
    // The iterator walks wall-clock time; around a fall-back it yields the repeated
    // hour's instants out of absolute order. Walk until wall-clock time is safely
    // past `until` (DST shifts are at most 2 h), then sort.
    let stop_local = until_c.with_timezone(&tz).naive_local() + chrono::Duration::hours(3);
    let mut out: Vec<OffsetDateTime> = Vec::new();
    // Start 2 h early: iterating from inside the first pass of a repeated hour would
    // skip its second pass; ticks before `after` are filtered out below.
    for tick in cron.iter_after((after_c - chrono::Duration::hours(2)).with_timezone(&tz)) {
        if tick.naive_local() > stop_local || out.len() > limit.saturating_add(16) {
            break;
        }
        let utc = tick.with_timezone(&Utc);
        if utc > after_c
            && utc <= until_c
            && let Some(t) = from_chrono(utc)
        {
            out.push(t);
        }
    }
    out.sort();
    out.dedup();
    out.truncate(limit);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use time::macros::datetime;

    use super::*;

    fn utc(ticks: &[OffsetDateTime]) -> Vec<String> {
        ticks.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn validates_fields_and_zones() {
        assert!(parse("0 9 * * 1-5").is_ok());
        assert!(parse("*/15 * * * *").is_ok());
        assert!(parse("0 9 * *").unwrap_err().contains("5 fields"));
        assert!(parse("0 0 9 * * *").unwrap_err().contains("5 fields"));
        assert!(parse("@daily").is_err());
        assert!(parse("61 * * * *").is_err());
        assert!(timezone("Europe/Berlin").is_ok());
        assert!(timezone("Nowhere/Land").is_err());
    }

    #[test]
    fn weekday_mornings_in_berlin() {
        let cron = parse("0 9 * * 1-5").unwrap();
        let tz = timezone("Europe/Berlin").unwrap();
        // Friday 2026-11-27 to Tuesday 2026-12-01 (CET, UTC+1).
        let t = ticks(&cron, tz, datetime!(2026-11-27 00:00 UTC), datetime!(2026-12-01 23:59 UTC), 100);
        assert_eq!(
            utc(&t),
            [
                "2026-11-27 8:00:00.0 +00:00:00",
                "2026-11-30 8:00:00.0 +00:00:00",
                "2026-12-01 8:00:00.0 +00:00:00"
            ]
        );
    }

    #[test]
    fn spring_forward_gap_fires_once_right_after_the_gap() {
        // Europe/Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist.
        let tz = timezone("Europe/Berlin").unwrap();
        let cron = parse("30 2 * * *").unwrap();
        let t = ticks(&cron, tz, datetime!(2026-03-28 00:00 UTC), datetime!(2026-03-30 23:59 UTC), 100);
        assert_eq!(
            utc(&t),
            [
                "2026-03-28 1:30:00.0 +00:00:00", // 02:30 CET
                "2026-03-29 1:00:00.0 +00:00:00", // the gap: first valid time after it, 03:00 CEST
                "2026-03-30 0:30:00.0 +00:00:00", // 02:30 CEST
            ]
        );
    }

    #[test]
    fn fall_back_overlap_fires_once() {
        // Europe/Berlin, 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
        let tz = timezone("Europe/Berlin").unwrap();
        let cron = parse("30 2 * * *").unwrap();
        let t = ticks(&cron, tz, datetime!(2026-10-24 00:00 UTC), datetime!(2026-10-26 23:59 UTC), 100);
        assert_eq!(
            utc(&t),
            [
                "2026-10-24 0:30:00.0 +00:00:00", // 02:30 CEST
                "2026-10-25 0:30:00.0 +00:00:00", // first 02:30 (CEST) only
                "2026-10-26 1:30:00.0 +00:00:00", // 02:30 CET
            ]
        );
    }

    #[test]
    fn intervals_across_the_fall_back_do_not_depend_on_the_window() {
        let tz = timezone("Europe/Berlin").unwrap();
        let cron = parse("*/15 * * * *").unwrap();
        let (from, to) = (datetime!(2026-10-24 23:00 UTC), datetime!(2026-10-25 03:00 UTC));
        let whole = ticks(&cron, tz, from, to, 1000);
        let mut sliced = Vec::new();
        let mut t = from;
        while t < to {
            let next = (t + time::Duration::minutes(7)).min(to);
            sliced.extend(ticks(&cron, tz, t, next, 1000));
            t = next;
        }
        assert_eq!(whole, sliced, "one window or many: the same ticks");
        assert!(whole.windows(2).all(|w| w[0] < w[1]), "{whole:?}");
        // 4 hours of absolute time, every 15 minutes (the repeated hour fires twice
        // by wall clock, which is 4 ticks per absolute hour throughout).
        assert_eq!(whole.len(), 16, "{:?}", utc(&whole));
    }

    #[test]
    fn window_bounds_and_limit() {
        let cron = parse("* * * * *").unwrap();
        let tz = timezone("UTC").unwrap();
        let t = ticks(&cron, tz, datetime!(2026-01-01 00:00 UTC), datetime!(2026-01-01 00:05 UTC), 100);
        assert_eq!(t.len(), 5, "after is exclusive, until inclusive");
        assert_eq!(t[0], datetime!(2026-01-01 00:01 UTC));
        assert_eq!(t[4], datetime!(2026-01-01 00:05 UTC));
        assert_eq!(
            ticks(&cron, tz, datetime!(2026-01-01 00:00 UTC), datetime!(2026-01-02 00:00 UTC), 3).len(),
            3
        );
    }
}
