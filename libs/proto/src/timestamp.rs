//! Conversions between `prost_types::Timestamp` and `time::OffsetDateTime` (UTC).

use time::OffsetDateTime;

/// A protobuf timestamp for `t`.
pub fn to_proto(t: OffsetDateTime) -> prost_types::Timestamp {
    let nanos = t.unix_timestamp_nanos();
    prost_types::Timestamp {
        seconds: nanos.div_euclid(1_000_000_000) as i64,
        nanos: nanos.rem_euclid(1_000_000_000) as i32,
    }
}

/// The instant of a protobuf timestamp, or `None` when it is out of range.
pub fn from_proto(ts: &prost_types::Timestamp) -> Option<OffsetDateTime> {
    let nanos = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos);
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_nanoseconds_and_handles_pre_epoch() {
        for t in [
            OffsetDateTime::UNIX_EPOCH,
            OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).unwrap(),
            OffsetDateTime::from_unix_timestamp_nanos(-1_500_000_001).unwrap(),
        ] {
            let p = to_proto(t);
            assert!((0..1_000_000_000).contains(&p.nanos));
            assert_eq!(from_proto(&p), Some(t));
        }
    }
}
