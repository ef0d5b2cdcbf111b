//! The monitor's checkpoint: per partition, where to resume and the state needed to rebuild
//! exactly the windows not yet written. Stored as records of a compacted topic (commit
//! metadata would do on Apache Kafka, but not every Kafka-protocol broker keeps it). The
//! fields are named on the wire as in the code; checkpoints written before that (`max_ts`,
//! `closed`, `end`) are still read.

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
