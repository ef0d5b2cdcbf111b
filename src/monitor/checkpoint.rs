//! The monitor's checkpoint: per partition, where to resume and the state needed to rebuild
//! exactly the windows not yet written. Stored as records of a compacted topic (commit
//! metadata would do on Apache Kafka, but not every Kafka-protocol broker keeps it). The
//! fields are named on the wire as in the code; checkpoints written before that (`max_ts`,
//! `closed`, `end`) are still read.

use crate::shuffle::MAX_AHEAD_MS;
use serde::{Deserialize, Serialize};

/// Per-partition state saved before each offset commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The offset to resume from: the first record still needed by an unwritten window.
    pub offset: i64,
    /// The partition's highest event time among records before `offset`.
    #[serde(alias = "max_ts", default, skip_serializing_if = "Option::is_none")]
    pub max_event_time_before: Option<i64>,
    /// Watermark through which every window was written and acknowledged by the sink.
    #[serde(alias = "closed", default, skip_serializing_if = "Option::is_none")]
    pub durable_through: Option<i64>,
    /// The next offset the run that saved this had not yet consumed: records from `offset` up
    /// to here are replayed after a restart (and not counted twice where a written window
    /// holds them).
    #[serde(alias = "end")]
    pub replay_end: i64,
}

impl Checkpoint {
    /// Whether this checkpoint is one a monitor could have saved, read at processing time
    /// `now_ms`: offsets not negative, the replay end not before the resume offset and far from
    /// `i64::MAX`, times not beyond [`MAX_AHEAD_MS`] ahead of the clock. A checkpoint that
    /// fails this is not used (the partition resumes from the committed offset): an offset of
    /// `i64::MAX` would mark every record as already counted, a time there would overflow.
    pub fn check(&self, now_ms: i64) -> Result<(), String> {
        if self.offset < 0 || self.replay_end < self.offset {
            return Err(format!(
                "offsets out of order: resume at {}, replay to {}",
                self.offset, self.replay_end
            ));
        }
        if self.replay_end > MAX_OFFSET {
            return Err(format!(
                "replay end {} is beyond any offset",
                self.replay_end
            ));
        }
        let latest = now_ms.saturating_add(MAX_AHEAD_MS);
        for (what, time) in [
            ("max_event_time_before", self.max_event_time_before),
            ("durable_through", self.durable_through),
        ] {
            if let Some(t) = time {
                if !(0..=latest).contains(&t) {
                    return Err(format!("{what} {t} is not a plausible time"));
                }
            }
        }
        Ok(())
    }
}

/// The highest offset a checkpoint may name (2^62: far beyond any real partition, far enough
/// from `i64::MAX` that offset arithmetic cannot overflow).
pub const MAX_OFFSET: i64 = 1 << 62;

/// A checkpoint record: which group, topic and partition it belongs to, and the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// Consumer group of the monitor.
    pub group: String,
    /// Consumed topic.
    pub topic: String,
    /// Partition of the consumed topic.
    pub partition: i32,
    /// The checkpoint.
    #[serde(flatten)]
    pub checkpoint: Checkpoint,
}

impl CheckpointRecord {
    /// The record key (compaction keeps the last record per key).
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.group, self.topic, self.partition)
    }

    /// The record value.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("serialisable")
    }

    /// Decodes a record value; `None` for anything else found on the topic.
    pub fn decode(value: &[u8]) -> Option<CheckpointRecord> {
        serde_json::from_slice(value).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_795_000_000_000;

    fn checkpoint(offset: i64, replay_end: i64, times: Option<i64>) -> Checkpoint {
        Checkpoint {
            offset,
            max_event_time_before: times,
            durable_through: times,
            replay_end,
        }
    }

    #[test]
    fn implausible_checkpoints_are_refused() {
        assert!(checkpoint(40, 42, Some(NOW - 1_000)).check(NOW).is_ok());
        assert!(checkpoint(0, 0, None).check(NOW).is_ok());
        for bad in [
            checkpoint(-1, 5, None),
            checkpoint(9, 5, None),
            checkpoint(i64::MAX, i64::MAX, None),
            checkpoint(0, MAX_OFFSET + 1, None),
            checkpoint(4, 6, Some(i64::MAX)),
            checkpoint(4, 6, Some(-5)),
            checkpoint(4, 6, Some(NOW + MAX_AHEAD_MS + 1)),
        ] {
            assert!(bad.check(NOW).is_err(), "{bad:?}");
        }
    }

    proptest! {
        /// Any bytes on the checkpoint topic decode to a record or to nothing, never a panic.
        #[test]
        fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Some(record) = CheckpointRecord::decode(&bytes) {
                let _ = record.checkpoint.check(NOW);
            }
        }

        #[test]
        fn decoding_any_fields_never_panics(offset in any::<i64>(), end in any::<i64>(), t in any::<Option<i64>>(), partition in any::<i32>()) {
            let value = serde_json::json!({"group": "g", "topic": "t", "partition": partition, "offset": offset, "replay_end": end, "durable_through": t});
            let record = CheckpointRecord::decode(value.to_string().as_bytes()).unwrap();
            let checked = record.checkpoint.check(NOW);
            prop_assert!(checked.is_err() || (offset >= 0 && end >= offset && end <= MAX_OFFSET));
        }
    }

    #[test]
    fn round_trips_and_ignores_foreign_records() {
        let record = CheckpointRecord {
            group: "g".into(),
            topic: "reduced_visits".into(),
            partition: 1,
            checkpoint: Checkpoint {
                offset: 40,
                max_event_time_before: Some(1_700_000_000_000),
                durable_through: Some(1_699_999_999_999),
                replay_end: 42,
            },
        };
        assert_eq!(
            CheckpointRecord::decode(record.encode().as_bytes()),
            Some(record.clone())
        );
        assert_eq!(record.key(), "g/reduced_visits/1");
        assert_eq!(CheckpointRecord::decode(b"{}"), None);
        let old =
            br#"{"group":"g","topic":"t","partition":0,"offset":4,"max_ts":9,"closed":7,"end":6}"#;
        assert_eq!(
            CheckpointRecord::decode(old).unwrap().checkpoint,
            Checkpoint {
                offset: 4,
                max_event_time_before: Some(9),
                durable_through: Some(7),
                replay_end: 6,
            }
        );
        assert_eq!(CheckpointRecord::decode(b"nope"), None);
    }
}
