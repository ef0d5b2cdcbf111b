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
//! share one shuffle topic. Values are versioned envelopes (see [`FORMAT_VERSION`]): the
//! identity of the job that wrote them (group, input topic, job name, window length), the
//! record postcard-encoded (floats travel bit for bit, so a window merged from received parts
//! is the window one instance computes) and a CRC-32 of all that. A record of another job or
//! window length, of an unknown format version, or failing its checksum is refused, never
//! merged; formats 1 (before parts carried their latency histogram) and 0 (a bare postcard
//! record, before format 1) are still read.
//!
//! This module is the protocol (records, keys, routing, decoding, no I/O); [`publisher`]
//! writes it to the topic.

pub mod publisher;

use crate::distribution::digest::{DigestConfig, DigestParts, LatencyDigest};
use crate::distribution::latency_histogram::{HistogramParts, LatencyHistogram};
use crate::event_time::window::WindowPart;
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
        /// Their distribution (absent in parts of formats 0 and 1).
        histogram: Option<HistogramParts>,
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

/// A record of formats 0 and 1, written before parts carried their histogram.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
enum LegacyShuffleRecord {
    Part {
        window_start: i64,
        partition: i32,
        digest: DigestParts,
        over_sla: u64,
    },
    Progress {
        partition: i32,
        closed_through: i64,
    },
    Merged {
        written_through: i64,
    },
}

impl From<LegacyShuffleRecord> for ShuffleRecord {
    fn from(record: LegacyShuffleRecord) -> Self {
        match record {
            LegacyShuffleRecord::Part {
                window_start,
                partition,
                digest,
                over_sla,
            } => ShuffleRecord::Part {
                window_start,
                partition,
                digest,
                over_sla,
                histogram: None,
            },
            LegacyShuffleRecord::Progress {
                partition,
                closed_through,
            } => ShuffleRecord::Progress {
                partition,
                closed_through,
            },
            LegacyShuffleRecord::Merged { written_through } => {
                ShuffleRecord::Merged { written_through }
            }
        }
    }
}

/// What a shuffle record (or a tombstone) means to the merger. One exists at a time, briefly,
/// so the size of the record variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum ShuffleEvent {
    /// A record of this monitor.
    Record(ShuffleRecord),
    /// A part deleted after its window was written.
    PartRemoved,
    /// A record of another monitor sharing the topic, or one this version cannot read.
    Foreign,
}

/// Errors reading a shuffle record under this monitor's key.
#[derive(Debug, thiserror::Error)]
pub enum ShuffleError {
    /// The value does not decode.
    #[error("undecodable shuffle record {key}: {source}")]
    Undecodable {
        /// The record's key.
        key: String,
        /// Why it does not decode.
        source: postcard::Error,
    },
    /// The value's checksum does not match its content.
    #[error("shuffle record {key} fails its checksum (corrupted or forged)")]
    Integrity {
        /// The record's key.
        key: String,
    },
    /// Written in a format this release does not know.
    #[error(
        "shuffle record {key} is in format {version}, this release reads formats 0 to \
         {FORMAT_VERSION}: it was written by a newer release; run the same release on every \
         instance of the monitor"
    )]
    UnknownVersion {
        /// The record's key.
        key: String,
        /// Its format version.
        version: u8,
    },
    /// Written by another job or for another window length under this monitor's key.
    #[error("shuffle record {key} was written by {written_by}, not by this monitor ({ours})")]
    ForeignIdentity {
        /// The record's key.
        key: String,
        /// The identity it carries.
        written_by: String,
        /// This monitor's.
        ours: String,
    },
}

impl ShuffleError {
    /// The refusal reason (a metric label).
    pub fn reason(&self) -> &'static str {
        match self {
            ShuffleError::Undecodable { .. } => "undecodable",
            ShuffleError::Integrity { .. } => "integrity",
            ShuffleError::UnknownVersion { .. } => "unknown_version",
            ShuffleError::ForeignIdentity { .. } => "foreign_identity",
        }
    }
}

/// The shuffle format this release writes: `SM`, the version byte, the postcard-encoded
/// envelope (writer identity and record), and a CRC-32 (little endian) of everything before
/// it. Format 2 added the parts' latency histograms; format 1 (the same without them) and
/// format 0 (a bare postcard record of format 1's shape) are still read, their parts without
/// a histogram.
pub const FORMAT_VERSION: u8 = 2;
const MAGIC: &[u8; 2] = b"SM";

/// Which monitor wrote a shuffle record: only a monitor with the same identity merges it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobIdentity {
    /// The monitor's consumer group.
    pub group: String,
    /// The input topic.
    pub input_topic: String,
    /// The job name written into the window documents.
    pub job: String,
    /// The window length (ms).
    pub window_ms: i64,
}

impl JobIdentity {
    /// The identity of the monitor of `group` reading `input_topic` as `job` in `window_ms`
    /// windows.
    pub fn new(group: &str, input_topic: &str, job: &str, window_ms: i64) -> Self {
        JobIdentity {
            group: group.to_string(),
            input_topic: input_topic.to_string(),
            job: job.to_string(),
            window_ms,
        }
    }
}

impl std::fmt::Display for JobIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "job {} of group {} on {} with {} ms windows",
            self.job, self.group, self.input_topic, self.window_ms
        )
    }
}

#[derive(Serialize)]
struct EnvelopeRef<'a> {
    identity: &'a JobIdentity,
    record: &'a ShuffleRecord,
}

#[derive(Deserialize)]
struct Envelope<R> {
    identity: JobIdentity,
    record: R,
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
pub const REFUSAL_REASONS: [&str; 8] = [
    "undecodable",
    "integrity",
    "unknown_version",
    "foreign_identity",
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
                histogram,
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
                if let Some(histogram) = histogram {
                    histogram
                        .check()
                        .map_err(|e| Refused::new("inconsistent_part", e))?;
                    if histogram.count() != digest.count {
                        return Err(Refused::new(
                            "inconsistent_part",
                            format!(
                                "a histogram of {} records in a part of {}",
                                histogram.count(),
                                digest.count
                            ),
                        ));
                    }
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

/// Keys, encoding and routing of one monitor's shuffle records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shuffle {
    namespace: String,
    identity: JobIdentity,
}

impl Shuffle {
    /// The shuffle of the monitor `identity`.
    pub fn new(identity: JobIdentity) -> Self {
        Shuffle {
            namespace: format!("{}/{}", identity.group, identity.input_topic),
            identity,
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

    /// Encodes a record's value in format [`FORMAT_VERSION`].
    pub fn encode(&self, record: &ShuffleRecord) -> Vec<u8> {
        let mut value = MAGIC.to_vec();
        value.push(FORMAT_VERSION);
        let envelope = EnvelopeRef {
            identity: &self.identity,
            record,
        };
        let mut value =
            postcard::to_extend(&envelope, value).expect("shuffle records always encode");
        let checksum = crc32fast::hash(&value);
        value.extend_from_slice(&checksum.to_le_bytes());
        value
    }

    /// A record value of this monitor: formats 2 and 1 (checked and identified) or format 0.
    fn decode_value(&self, key: &str, value: &[u8]) -> Result<ShuffleRecord, ShuffleError> {
        let undecodable = |source| ShuffleError::Undecodable {
            key: key.to_string(),
            source,
        };
        let Some(rest) = value.strip_prefix(MAGIC) else {
            // Format 0: a bare postcard record.
            return postcard::from_bytes::<LegacyShuffleRecord>(value)
                .map(ShuffleRecord::from)
                .map_err(undecodable);
        };
        let Some((&version, _)) = rest.split_first() else {
            return Err(undecodable(postcard::Error::DeserializeUnexpectedEnd));
        };
        if version == 0 || version > FORMAT_VERSION {
            return Err(ShuffleError::UnknownVersion {
                key: key.to_string(),
                version,
            });
        }
        if value.len() < MAGIC.len() + 1 + 4 {
            return Err(undecodable(postcard::Error::DeserializeUnexpectedEnd));
        }
        let (content, checksum) = value.split_at(value.len() - 4);
        if crc32fast::hash(content).to_le_bytes() != checksum {
            return Err(ShuffleError::Integrity {
                key: key.to_string(),
            });
        }
        let body = &content[MAGIC.len() + 1..];
        let (identity, record) = if version == 1 {
            let envelope: Envelope<LegacyShuffleRecord> =
                postcard::from_bytes(body).map_err(undecodable)?;
            (envelope.identity, envelope.record.into())
        } else {
            let envelope: Envelope<ShuffleRecord> =
                postcard::from_bytes(body).map_err(undecodable)?;
            (envelope.identity, envelope.record)
        };
        if identity != self.identity {
            return Err(ShuffleError::ForeignIdentity {
                key: key.to_string(),
                written_by: identity.to_string(),
                ours: self.identity.to_string(),
            });
        }
        Ok(record)
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
            Some(value) => self.decode_value(key, value).map(ShuffleEvent::Record),
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
        histogram: part.histogram.as_ref().map(LatencyHistogram::to_parts),
    }
}

/// The window part a part record carries (checked by [`ShuffleRecord::check`] first).
pub fn window_part(
    digest: DigestParts,
    over_sla: u64,
    histogram: Option<HistogramParts>,
    config: DigestConfig,
) -> WindowPart {
    WindowPart {
        digest: LatencyDigest::from_parts(digest, config),
        over_sla,
        histogram: histogram.and_then(|h| LatencyHistogram::from_parts(h).ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_other_monitors_are_ignored() {
        let shuffle = Shuffle::new(JobIdentity::new("g", "reduced_visits", "job", 60_000));
        let mut digest = LatencyDigest::new(DigestConfig::default());
        digest.add(12.5);
        let mut histogram = LatencyHistogram::new();
        histogram.add(12);
        let part = WindowPart {
            digest,
            over_sla: 1,
            histogram: Some(histogram),
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
            let value = shuffle.encode(&record);
            assert_eq!(
                shuffle.decode(Some(key.as_bytes()), Some(&value)).unwrap(),
                ShuffleEvent::Record(record.clone())
            );
            let other = Shuffle::new(JobIdentity::new("g2", "reduced_visits", "job", 60_000));
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
        let longer = Shuffle::new(JobIdentity::new("g", "reduced_visits_2", "job", 60_000));
        let key = longer.key(&ShuffleRecord::Merged { written_through: 1 });
        assert_eq!(
            shuffle.decode(Some(key.as_bytes()), Some(&[0])).unwrap(),
            ShuffleEvent::Foreign
        );
        assert!(shuffle
            .decode(Some(shuffle.part_key(0, 0).as_bytes()), Some(&[0xff, 0xff]))
            .is_err());
    }

    /// A part an older release published (format 1: no histogram) is read, without one.
    #[test]
    fn parts_of_format_1_are_read_without_a_histogram() {
        let identity = JobIdentity::new("g", "t", "job", 60_000);
        let shuffle = Shuffle::new(identity.clone());
        let mut digest = LatencyDigest::new(DigestConfig::default());
        digest.add(12.0);
        #[derive(Serialize)]
        struct OldEnvelope<'a> {
            identity: &'a JobIdentity,
            record: LegacyShuffleRecord,
        }
        let old = OldEnvelope {
            identity: &identity,
            record: LegacyShuffleRecord::Part {
                window_start: 60_000,
                partition: 3,
                digest: digest.to_parts(),
                over_sla: 0,
            },
        };
        let mut value = MAGIC.to_vec();
        value.push(1);
        let mut value = postcard::to_extend(&old, value).unwrap();
        value.extend_from_slice(&crc32fast::hash(&value).to_le_bytes());
        let key = shuffle.part_key(60_000, 3);
        assert_eq!(
            shuffle.decode(Some(key.as_bytes()), Some(&value)).unwrap(),
            ShuffleEvent::Record(ShuffleRecord::Part {
                window_start: 60_000,
                partition: 3,
                digest: digest.to_parts(),
                over_sla: 0,
                histogram: None,
            })
        );
    }

    #[test]
    fn foreign_corrupted_and_newer_records_are_refused_and_format_0_is_read() {
        let ours = Shuffle::new(JobIdentity::new("g", "t", "job", 60_000));
        let record = ShuffleRecord::Progress {
            partition: 1,
            closed_through: 119_999,
        };
        let key = ours.key(&record);
        let read = |value: &[u8]| ours.decode(Some(key.as_bytes()), Some(value));

        let format_0 = postcard::to_stdvec(&record).unwrap();
        assert_eq!(
            read(&format_0).unwrap(),
            ShuffleEvent::Record(record.clone())
        );

        let mut corrupted = ours.encode(&record);
        let middle = corrupted.len() / 2;
        corrupted[middle] ^= 0x01;
        assert_eq!(read(&corrupted).unwrap_err().reason(), "integrity");

        let mut newer = ours.encode(&record);
        newer[2] = FORMAT_VERSION + 1;
        let error = read(&newer).unwrap_err();
        assert_eq!(error.reason(), "unknown_version");
        assert!(error.to_string().contains("same release"), "{error}");

        // Same group and topic (so the same keys), another window length or job name.
        for other in [
            JobIdentity::new("g", "t", "job", 10_000),
            JobIdentity::new("g", "t", "other-job", 60_000),
        ] {
            let value = Shuffle::new(other).encode(&record);
            assert_eq!(read(&value).unwrap_err().reason(), "foreign_identity");
        }
        assert!(read(b"SM").is_err() && read(b"SM\x01\x00").is_err());
        for reason in [
            "integrity",
            "unknown_version",
            "foreign_identity",
            "undecodable",
        ] {
            assert!(REFUSAL_REASONS.contains(&reason));
        }
    }

    proptest::proptest! {
        /// Any bytes under this monitor's key are a record or a refusal, never a panic.
        #[test]
        fn decoding_any_value_never_panics(mut bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120), framed in proptest::prelude::any::<bool>()) {
            let ours = Shuffle::new(JobIdentity::new("g", "t", "job", 60_000));
            if framed {
                let mut value = b"SM\x01".to_vec();
                value.append(&mut bytes);
                let checksum = crc32fast::hash(&value);
                value.extend_from_slice(&checksum.to_le_bytes());
                bytes = value;
            }
            let _ = ours.decode(Some(ours.part_key(0, 0).as_bytes()), Some(&bytes));
        }
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
