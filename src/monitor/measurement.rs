//! From a consumed record to a latency measurement: by default event time is the record's
//! Kafka timestamp (LogAppendTime, or CreateTime where the broker does not apply it) and the
//! latency is that minus the start stamp (`start_processing_time_ms` of a reduced visit);
//! both ends can be read from elsewhere (see [`crate::record::stamp`]).

use crate::record::json_pointer::Scalar;
use crate::record::rejection::{RejectReason, Rejection};
use crate::record::stamp::{EndSource, LatencyStamps, RecordHeaders};

/// The kind of timestamp a record carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimestampKind {
    /// The broker's append time: what the monitor is designed for.
    LogAppendTime,
    /// The producer's create time: used as is, but only meaningful if the producer stamps
    /// the time of the produce call.
    CreateTime,
    /// A stamp the pipeline wrote (`--end-time field:…` or `header:…`), not a Kafka timestamp.
    Stamp,
}

impl TimestampKind {
    /// Stable label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            TimestampKind::LogAppendTime => "log_append_time",
            TimestampKind::CreateTime => "create_time",
            TimestampKind::Stamp => "stamp",
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

/// A consumed record, as much of it as a measurement reads.
pub struct InputRecord<'a> {
    /// The Kafka timestamp, if the record has one.
    pub timestamp: Option<(TimestampKind, i64)>,
    /// The value.
    pub payload: Option<&'a [u8]>,
    /// The headers (only those the stamps name are ever looked up).
    pub headers: &'a dyn RecordHeaders,
}

/// Field stamps already read from the record's value in a pass shared with other fields
/// (`None`: not read, read them as usual).
#[derive(Debug, Default)]
pub struct Prefound<'a> {
    /// What the start stamp's pointer found.
    pub start: Option<Option<Scalar<'a>>>,
    /// What the end stamp's pointer found.
    pub end: Option<Option<Scalar<'a>>>,
}

/// Measures a record: the latency from `stamps.start` to `stamps.end`. End times ahead of
/// `now_ms` and latencies outside `bounds` are refused.
pub fn measure(
    record: &InputRecord<'_>,
    stamps: &LatencyStamps,
    now_ms: i64,
    bounds: &Plausibility,
) -> Result<Measurement, Rejection> {
    measure_with(record, stamps, now_ms, bounds, Prefound::default())
}

/// [`measure`], with the field stamps `prefound` already read (the same result).
pub fn measure_with(
    record: &InputRecord<'_>,
    stamps: &LatencyStamps,
    now_ms: i64,
    bounds: &Plausibility,
    prefound: Prefound<'_>,
) -> Result<Measurement, Rejection> {
    let max_future_ms = bounds.max_future_ms;
    let (timestamp_kind, event_time) = match &stamps.end {
        EndSource::KafkaTimestamp => {
            let (kind, time) = record.timestamp.ok_or_else(|| {
                Rejection::new(
                    RejectReason::MissingTimestamp,
                    "record has no Kafka timestamp",
                )
            })?;
            if time < 0 {
                return Err(Rejection::new(
                    RejectReason::NegativeValue,
                    format!("record timestamp is negative ({time})"),
                ));
            }
            (kind, time)
        }
        EndSource::Stamp(end) => (
            TimestampKind::Stamp,
            match prefound.end {
                Some(found) => end.found_ms("end", found)?,
                None => end.read_ms("end", record.payload, record.headers)?,
            },
        ),
    };
    if event_time > now_ms.saturating_add(max_future_ms) {
        return Err(Rejection::new(
            RejectReason::TimestampInFuture,
            format!(
                "record's end time {event_time} is {} ms ahead of this host's clock",
                event_time - now_ms
            ),
        ));
    }
    let start = match prefound.start {
        Some(found) => stamps.start.found_ms("start", found)?,
        None => stamps
            .start
            .read_ms("start", record.payload, record.headers)?,
    };
    let latency_ms = event_time - start;
    if latency_ms > bounds.max_latency_ms {
        return Err(Rejection::new(
            RejectReason::ImplausibleLatency,
            format!(
                "latency {latency_ms} ms (start time {start} from {}) exceeds the plausible maximum \
                 of {} ms (--max-latency)",
                stamps.start.source, bounds.max_latency_ms
            ),
        ));
    }
    if latency_ms < -bounds.max_clock_skew_ms {
        return Err(Rejection::new(
            RejectReason::ClockSkew,
            format!(
                "start time {start} from {} is {} ms after the record's end time: more clock skew \
                 than the {} ms tolerated (--max-clock-skew)",
                stamps.start.source, -latency_ms, bounds.max_clock_skew_ms
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
    use crate::record::stamp::{NoHeaders, Stamp, TimeFormat};

    /// Measures with the demo pipeline's stamps.
    fn demo_measure(
        payload: Option<&[u8]>,
        timestamp: Option<(TimestampKind, i64)>,
        now_ms: i64,
        bounds: &Plausibility,
    ) -> Result<Measurement, Rejection> {
        let record = InputRecord {
            timestamp,
            payload,
            headers: &NoHeaders,
        };
        measure(&record, &LatencyStamps::default(), now_ms, bounds)
    }

    #[test]
    fn both_ends_can_be_stamps_and_the_kafka_timestamp_is_then_unused() {
        let stamps = LatencyStamps {
            start: Stamp {
                source: "header:start".parse().unwrap(),
                format: TimeFormat::UnixMs,
            },
            end: EndSource::Stamp(Stamp {
                source: "field:/done".parse().unwrap(),
                format: TimeFormat::UnixS,
            }),
        };
        let start = (NOW - 2_500).to_string();
        let headers: &[(&str, &[u8])] = &[("start", start.as_bytes())];
        let payload = format!(r#"{{"done":{}}}"#, NOW / 1000);
        let record = InputRecord {
            timestamp: None,
            payload: Some(payload.as_bytes()),
            headers: &headers,
        };
        let m = measure(&record, &stamps, NOW, &future(0)).unwrap();
        assert_eq!(
            (m.event_time, m.latency_ms, m.timestamp_kind),
            (
                NOW / 1000 * 1000,
                NOW / 1000 * 1000 - NOW + 2_500,
                TimestampKind::Stamp
            )
        );
        let late_end = format!(r#"{{"done":{}}}"#, NOW / 1000 + 10);
        let record = InputRecord {
            timestamp: None,
            payload: Some(late_end.as_bytes()),
            headers: &headers,
        };
        assert_eq!(
            measure(&record, &stamps, NOW, &future(0))
                .unwrap_err()
                .reason,
            RejectReason::TimestampInFuture
        );
    }

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
        let m = demo_measure(
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
            demo_measure(Some(&p), ts, NOW, &future(60_000))
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
        assert!(demo_measure(
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
            demo_measure(Some(b"x"), ts, NOW, &future(0))
                .unwrap_err()
                .reason,
            RejectReason::InvalidJson
        );
        assert_eq!(
            demo_measure(Some(&payload(-3)), ts, NOW, &future(0))
                .unwrap_err()
                .reason,
            RejectReason::NegativeValue
        );
    }

    #[test]
    fn implausible_latencies_are_refused_and_small_skew_is_kept() {
        let ts = Some((TimestampKind::LogAppendTime, NOW));
        let bounds = future(60_000);
        let at = |start: i64| demo_measure(Some(&payload(start)), ts, NOW, &bounds);
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
