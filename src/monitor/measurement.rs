//! From a consumed reduced-visit record to a latency measurement: event time is the record's
//! Kafka timestamp (LogAppendTime, or CreateTime where the broker does not apply it), latency
//! is that minus `start_processing_time_ms`.

use crate::reduced_visit::start_processing_time_ms;
use crate::rejection::{RejectReason, Rejection};

/// The kind of timestamp a record carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimestampKind {
    /// The broker's append time: what the monitor is designed for.
    LogAppendTime,
    /// The producer's create time: used as is, but only meaningful if the producer stamps
    /// the time of the produce call.
    CreateTime,
}

impl TimestampKind {
    /// Stable label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            TimestampKind::LogAppendTime => "log_append_time",
            TimestampKind::CreateTime => "create_time",
        }
    }
}

/// What the monitor accepts as a measurement. A record outside these bounds says more about a
/// faulty producer or clock than about the pipeline, and one such record would move a window's
/// p99 and max: it is dead-lettered with the reason instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plausibility {
    /// Timestamps further ahead of this host's clock are refused (ms).
    pub max_future_ms: i64,
    /// Latencies above this are refused (ms).
    pub max_latency_ms: i64,
    /// Negative latencies (stamp after the timestamp: clocks disagree) down to minus this are
    /// accepted and counted; below it they are refused (ms).
    pub max_clock_skew_ms: i64,
}

/// One latency measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measurement {
    /// Event time (ms): the record's timestamp.
    pub event_time: i64,
    /// Latency (ms); negative when clocks disagree.
    pub latency_ms: i64,
    /// Which timestamp the record had.
    pub timestamp_kind: TimestampKind,
}

/// Measures a record. `timestamp` is `None` when the record has none; timestamps ahead of
/// `now_ms` and latencies outside `bounds` are refused.
pub fn measure(
    payload: Option<&[u8]>,
    timestamp: Option<(TimestampKind, i64)>,
    now_ms: i64,
    bounds: &Plausibility,
) -> Result<Measurement, Rejection> {
    let max_future_ms = bounds.max_future_ms;
    let (timestamp_kind, event_time) = timestamp.ok_or_else(|| {
        Rejection::new(
            RejectReason::MissingTimestamp,
            "record has no Kafka timestamp",
        )
    })?;
    if event_time < 0 {
        return Err(Rejection::new(
            RejectReason::NegativeValue,
            format!("record timestamp is negative ({event_time})"),
        ));
    }
    if event_time > now_ms.saturating_add(max_future_ms) {
        return Err(Rejection::new(
            RejectReason::TimestampInFuture,
            format!(
                "record timestamp {event_time} is {} ms ahead of this host's clock",
                event_time - now_ms
            ),
        ));
    }
    let start_processing_time_ms = start_processing_time_ms(payload)?;
    let latency_ms = event_time - start_processing_time_ms;
    if latency_ms > bounds.max_latency_ms {
        return Err(Rejection::new(
            RejectReason::ImplausibleLatency,
            format!(
                "latency {latency_ms} ms (start_processing_time_ms {start_processing_time_ms}) exceeds the \
                 plausible maximum of {} ms (--max-latency)",
                bounds.max_latency_ms
            ),
        ));
    }
    if latency_ms < -bounds.max_clock_skew_ms {
        return Err(Rejection::new(
            RejectReason::ClockSkew,
            format!(
                "start_processing_time_ms {start_processing_time_ms} is {} ms after the record's timestamp: \
                 more clock skew than the {} ms tolerated (--max-clock-skew)",
                -latency_ms, bounds.max_clock_skew_ms
            ),
        ));
    }
    Ok(Measurement {
        event_time,
        latency_ms,
        timestamp_kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn future(max_future_ms: i64) -> Plausibility {
        Plausibility {
            max_future_ms,
            max_latency_ms: 3_600_000,
            max_clock_skew_ms: 5_000,
        }
    }

    fn payload(start: i64) -> Vec<u8> {
        format!(r#"{{"visit":{{"id":"a","event_time":1}},"start_processing_time_ms":{start}}}"#)
            .into_bytes()
    }

    #[test]
    fn latency_is_timestamp_minus_start() {
        let m = measure(
            Some(&payload(NOW - 10_250)),
            Some((TimestampKind::LogAppendTime, NOW)),
            NOW,
            &future(60_000),
        )
        .unwrap();
        assert_eq!(m.latency_ms, 10_250);
        assert_eq!(m.event_time, NOW);
    }

    #[test]
    fn refuses_missing_future_and_negative_timestamps() {
        let p = payload(NOW);
        let reason = |ts| {
            measure(Some(&p), ts, NOW, &future(60_000))
                .unwrap_err()
                .reason
        };
        assert_eq!(reason(None), RejectReason::MissingTimestamp);
        assert_eq!(
            reason(Some((TimestampKind::CreateTime, NOW + 60_001))),
            RejectReason::TimestampInFuture
        );
        assert_eq!(
            reason(Some((TimestampKind::CreateTime, -1))),
            RejectReason::NegativeValue
        );
        assert!(measure(
            Some(&p),
            Some((TimestampKind::CreateTime, NOW + 60_000)),
            NOW,
            &future(60_000)
        )
        .is_ok());
    }

    #[test]
    fn bad_payloads_are_refused_with_reasons() {
        let ts = Some((TimestampKind::CreateTime, NOW));
        assert_eq!(
            measure(Some(b"x"), ts, NOW, &future(0)).unwrap_err().reason,
            RejectReason::InvalidJson
        );
        assert_eq!(
            measure(Some(&payload(-3)), ts, NOW, &future(0))
                .unwrap_err()
                .reason,
            RejectReason::NegativeValue
        );
    }

    #[test]
    fn implausible_latencies_are_refused_and_small_skew_is_kept() {
        let ts = Some((TimestampKind::LogAppendTime, NOW));
        let bounds = future(60_000);
        let at = |start: i64| measure(Some(&payload(start)), ts, NOW, &bounds);
        // A stamp of 1 ms after the epoch: a latency of 57 years.
        assert_eq!(at(1).unwrap_err().reason, RejectReason::ImplausibleLatency);
        assert!(at(NOW - 3_600_000).is_ok(), "exactly the maximum is kept");
        assert_eq!(
            at(NOW - 3_600_001).unwrap_err().reason,
            RejectReason::ImplausibleLatency
        );
        assert_eq!(
            at(NOW + 4_000).unwrap().latency_ms,
            -4_000,
            "skew within tolerance"
        );
        assert_eq!(at(NOW + 5_001).unwrap_err().reason, RejectReason::ClockSkew);
    }
}
