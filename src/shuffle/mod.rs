//! The shuffle between monitor instances: what one instance publishes about the input
//! partitions it owns so that whichever instance merges a window can write it whole.
//!
//! Several instances of one monitor share the input partitions through Kafka's consumer-group
//! protocol, but a window spans every partition. As Kafka Streams repartitions through an
//! internal topic, the instances meet on a compacted *shuffle topic*:
//! - when a partition's windows close, its owner publishes each window's **part** (the
//!   partition's latencies and over-SLA count), keyed by window and partition, to the shuffle
//!   partition that merges that window (window number modulo the shuffle partitions);
//! - then it publishes the partition's **progress** (the watermark through which its windows
//!   are closed and their parts sent) to every shuffle partition; parts and progress of a
//!   partition come from one producer in order, so progress never overtakes a part;
//! - the owner of a shuffle partition merges a window once every input partition's progress
//!   has passed its end, writes it, then records **merged** (through which window it wrote)
//!   and deletes the window's parts (tombstones), so compaction keeps the topic small.
//!
//! Keys carry a namespace (the monitor's group and input topic) so that several monitors can
//! share one shuffle topic. Values are postcard-encoded: floats travel bit for bit, so a
//! window merged from received parts is the window one instance computes.
//!
//! This module is the protocol (records, keys, routing, decoding, no I/O); [`publisher`]
//! writes it to the topic.

pub mod publisher;

use crate::digest::{DigestConfig, DigestParts, LatencyDigest};
use crate::window::WindowPart;
use serde::{Deserialize, Serialize};

/// One record of the shuffle topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ShuffleRecord {
    /// One input partition's part of one window.
    Part {
        /// The window's start (ms).
        window_start: i64,
        /// The input partition.
        partition: i32,
        /// Its latencies in the window.
        digest: DigestParts,
        /// Of them, those above the SLA.
        over_sla: u64,
    },
    /// Through which watermark an input partition's windows are closed, their parts sent.
    Progress {
        /// The input partition.
        partition: i32,
        /// Windows closing at or before this watermark (ms) are published for it.
        closed_through: i64,
    },
    /// Through which watermark this shuffle partition's windows are written durably.
    Merged {
        /// Windows closing at or before this watermark (ms) are written.
        written_through: i64,
    },
}

/// What a shuffle record (or a tombstone) means to the merger.
#[derive(Debug, Clone, PartialEq)]
pub enum ShuffleEvent {
    /// A record of this monitor.
    Record(ShuffleRecord),
    /// A part deleted after its window was written.
    PartRemoved,
    /// A record of another monitor sharing the topic, or one this version cannot read.
    Foreign,
}

/// Errors reading a shuffle record.
#[derive(Debug, thiserror::Error)]
pub enum ShuffleError {
    /// The value does not decode although the key is this monitor's.
    #[error("undecodable shuffle record {key}: {source}")]
    Undecodable {
        /// The record's key.
        key: String,
        /// Why it does not decode.
        source: postcard::Error,
    },
}

/// Why a shuffle record was refused: it is skipped, counted by reason and logged, never merged
/// and never fatal (one bad record must not stop every instance that reads its partition).
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// A stable reason, a metric label: `undecodable`, `unaligned_window`, `bad_partition`,
    /// `inconsistent_part` or `time_out_of_bounds`.
    pub reason: &'static str,
    /// What was wrong, for the log.
    pub detail: String,
}

impl Refused {
    fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        Refused {
            reason,
            detail: detail.into(),
        }
    }
}

/// Every reason a shuffle record can be refused for.
pub const REFUSAL_REASONS: [&str; 5] = [
    "undecodable",
    "unaligned_window",
    "bad_partition",
    "inconsistent_part",
    "time_out_of_bounds",
];

/// How far ahead of this host's clock a shuffle record's time may lie. Progress follows event
/// times, which the monitor accepts up to `--max-future` ahead (5 minutes by default); a day
/// leaves room for any sane setting and keeps a record at `i64::MAX` from stopping merging.
pub const MAX_AHEAD_MS: i64 = 24 * 3_600_000;

impl ShuffleRecord {
    /// Whether the record is one this monitor could have written, for windows of
    /// `window_size_ms`, read at processing time `now_ms`: an aligned window, a valid
    /// partition, a self-consistent part (see [`DigestParts::check`]) with no more records
    /// over the SLA than records, and times not beyond [`MAX_AHEAD_MS`] ahead of the clock.
    pub fn check(&self, window_size_ms: i64, now_ms: i64) -> Result<(), Refused> {
        let latest = now_ms.saturating_add(MAX_AHEAD_MS);
        let in_bounds = |what: &str, t: i64| {
            if t > latest {
                Err(Refused::new(
                    "time_out_of_bounds",
                    format!("{what} {t} lies more than a day ahead of this host's clock"),
                ))
            } else {
                Ok(())
            }
        };
        let valid_partition = |partition: i32| {
            if partition < 0 {
                Err(Refused::new(
                    "bad_partition",
                    format!("partition {partition}"),
                ))
            } else {
                Ok(())
            }
        };
        match self {
            ShuffleRecord::Part {
                window_start,
                partition,
                digest,
                over_sla,
            } => {
                if window_start.rem_euclid(window_size_ms) != 0 {
                    return Err(Refused::new(
                        "unaligned_window",
                        format!(
                            "window start {window_start} is not a multiple of {window_size_ms} ms"
                        ),
                    ));
                }
                valid_partition(*partition)?;
                in_bounds("window start", *window_start)?;
                digest
                    .check()
                    .map_err(|e| Refused::new("inconsistent_part", e))?;
                if *over_sla > digest.count {
                    return Err(Refused::new(
                        "inconsistent_part",
                        format!("{over_sla} records over the SLA of {}", digest.count),
                    ));
                }
                Ok(())
            }
            ShuffleRecord::Progress {
                partition,
                closed_through,
            } => {
                valid_partition(*partition)?;
                in_bounds("progress", *closed_through)
            }
            ShuffleRecord::Merged { written_through } => {
                in_bounds("written marker", *written_through)
            }
        }
    }
}

/// Keys and routing of one monitor's shuffle records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shuffle {
    namespace: String,
}

impl Shuffle {
    /// The shuffle of the monitor with consumer group `group` reading `input_topic`.
    pub fn new(group: &str, input_topic: &str) -> Self {
        Shuffle {
            namespace: format!("{group}/{input_topic}"),
        }
    }

    /// The record's key: parts by window and partition (compaction keeps the latest), progress
    /// by partition, one merged marker.
    pub fn key(&self, record: &ShuffleRecord) -> String {
        match record {
            ShuffleRecord::Part {
                window_start,
                partition,
                ..
            } => self.part_key(*window_start, *partition),
            ShuffleRecord::Progress { partition, .. } => {
                format!("{}|progress|{partition}", self.namespace)
            }
            ShuffleRecord::Merged { .. } => format!("{}|merged", self.namespace),
        }
    }

    /// The key of a window's part (also the key of its tombstone).
    pub fn part_key(&self, window_start: i64, partition: i32) -> String {
        format!("{}|part|{window_start}|{partition}", self.namespace)
    }

    /// Encodes a record's value.
    pub fn encode(record: &ShuffleRecord) -> Vec<u8> {
        postcard::to_stdvec(record).expect("shuffle records always encode")
    }

    /// Reads a record of the shuffle topic.
    pub fn decode(
        &self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<ShuffleEvent, ShuffleError> {
        let Some(key) = key.and_then(|k| std::str::from_utf8(k).ok()) else {
            return Ok(ShuffleEvent::Foreign);
        };
        match key.strip_prefix(self.namespace.as_str()) {
            Some(rest) if rest.starts_with('|') => {}
            _ => return Ok(ShuffleEvent::Foreign),
        }
        match value {
            None => Ok(ShuffleEvent::PartRemoved),
            Some(value) => postcard::from_bytes(value)
                .map(ShuffleEvent::Record)
                .map_err(|source| ShuffleError::Undecodable {
                    key: key.to_string(),
                    source,
                }),
        }
    }
}

/// The shuffle partition that merges the window starting at `window_start`.
pub fn merging_partition(window_start: i64, window_size_ms: i64, shuffle_partitions: i32) -> i32 {
    window_start
        .div_euclid(window_size_ms)
        .rem_euclid(i64::from(shuffle_partitions.max(1))) as i32
}

/// The part record of `partition` in the window starting at `window_start`.
pub fn part_record(window_start: i64, partition: i32, part: &WindowPart) -> ShuffleRecord {
    ShuffleRecord::Part {
        window_start,
        partition,
        digest: part.digest.to_parts(),
        over_sla: part.over_sla,
    }
}

/// The window part a part record carries.
pub fn window_part(digest: DigestParts, over_sla: u64, config: DigestConfig) -> WindowPart {
    WindowPart {
        digest: LatencyDigest::from_parts(digest, config),
        over_sla,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_other_monitors_are_ignored() {
        let shuffle = Shuffle::new("g", "reduced_visits");
        let mut digest = LatencyDigest::new(DigestConfig::default());
        digest.add(12.5);
        let part = WindowPart {
            digest,
            over_sla: 1,
        };
        for record in [
            part_record(60_000, 3, &part),
            ShuffleRecord::Progress {
                partition: 3,
                closed_through: 119_999,
            },
            ShuffleRecord::Merged {
                written_through: 59_999,
            },
        ] {
            let key = shuffle.key(&record);
            let value = Shuffle::encode(&record);
            assert_eq!(
                shuffle.decode(Some(key.as_bytes()), Some(&value)).unwrap(),
                ShuffleEvent::Record(record.clone())
            );
            let other = Shuffle::new("g2", "reduced_visits");
            assert_eq!(
                other.decode(Some(key.as_bytes()), Some(&value)).unwrap(),
                ShuffleEvent::Foreign
            );
        }
        let tombstone = shuffle.part_key(60_000, 3);
        assert_eq!(
            shuffle.decode(Some(tombstone.as_bytes()), None).unwrap(),
            ShuffleEvent::PartRemoved
        );
        // A namespace that merely starts like ours is another monitor's.
        let longer = Shuffle::new("g", "reduced_visits_2");
        let key = longer.key(&ShuffleRecord::Merged { written_through: 1 });
        assert_eq!(
            shuffle.decode(Some(key.as_bytes()), Some(&[0])).unwrap(),
            ShuffleEvent::Foreign
        );
        assert!(shuffle
            .decode(Some(shuffle.part_key(0, 0).as_bytes()), Some(&[0xff, 0xff]))
            .is_err());
    }

    #[test]
    fn windows_are_spread_over_the_shuffle_partitions_in_turn() {
        let starts: Vec<i32> = (-2..4)
            .map(|w| merging_partition(w * 60_000, 60_000, 3))
            .collect();
        assert_eq!(starts, vec![1, 2, 0, 1, 2, 0]);
        assert_eq!(merging_partition(120_000, 60_000, 0), 0);
    }
}
