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
//! is the window one instance computes), and an HMAC-SHA256 under the instances' shared key
//! ([`authentication`]) or, without a key, a CRC-32. A record of another job or window
//! length, of an unknown format version, failing its tag or checksum, or without a tag while
//! a key is set, is refused, never merged; checksummed formats 1 (before parts carried their
//! latency histogram) and 2 are read when no key is set; format 0 (no version, identity or
//! checksum) is no longer read.
//!
//! This module is the protocol (records, keys, routing, decoding, no I/O); [`publisher`]
//! writes it to the topic.

pub mod authentication;
pub mod publisher;

use authentication::{RecordAuthentication, KEY_ID_LEN, TAG_LEN};

use crate::completeness::stream::StreamArrivals;
use crate::dimension::spec::{MAX_DIMENSIONS, MAX_VALUE_BYTES};
use crate::dimension::split_pieces::SplitPiece;
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
    /// What one input partition's records of one window showed of the pipeline's source
    /// (`--source-topic` only), on the [`COMPLETENESS_PARTITION`].
    Arrivals {
        /// The window's start (ms).
        window_start: i64,
        /// The input partition.
        partition: i32,
        /// Its arrivals.
        arrivals: StreamArrivals,
    },
    /// Through which source-time window the completeness accounting is final and written
    /// (`--source-topic` only), on the [`COMPLETENESS_PARTITION`].
    Accounted {
        /// The first source window accounted (ms).
        first_window: i64,
        /// Source windows ending at or before this (ms) are final.
        final_through: i64,
    },
    /// A further piece of an input partition's arrivals in one window, when they do not fit
    /// one record (scattered arrivals: see
    /// [`StreamArrivals::split`](crate::completeness::stream::StreamArrivals::split)); the
    /// first piece is an [`ShuffleRecord::Arrivals`].
    ArrivalsPiece {
        /// The window's start (ms).
        window_start: i64,
        /// The input partition.
        partition: i32,
        /// Which piece (1, 2, …).
        piece: u32,
        /// Its arrivals.
        arrivals: StreamArrivals,
    },
    /// A piece of an input partition's part of one window split by dimension value
    /// (`--dimension`), on the shuffle partition that merges the window, published with (after)
    /// the partition's whole part; see [`crate::dimension::split_pieces`].
    Values {
        /// The window's start (ms).
        window_start: i64,
        /// The input partition.
        partition: i32,
        /// Which piece (0, 1, …).
        piece: u32,
        /// How many pieces the partition's split has.
        pieces: u32,
        /// The records of values the partition gave up (piece 0 only).
        other: Option<EncodedPart>,
        /// The most records a value not kept can have had (piece 0 only).
        untracked_at_most: u64,
        /// Values kept.
        values: Vec<EncodedValue>,
    },
}

/// A window part as it travels (see [`part_record`] for whole parts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncodedPart {
    /// Its latencies.
    pub digest: DigestParts,
    /// Of them, those above their SLA.
    pub over_sla: u64,
    /// Their distribution.
    pub histogram: Option<HistogramParts>,
}

/// One dimension value's part as it travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncodedValue {
    /// The value's key.
    pub key: String,
    /// The weight it inherited (see [`crate::dimension::value_table`]).
    pub inherited: u64,
    /// Its part.
    pub part: EncodedPart,
}

impl EncodedPart {
    /// A part, encoded.
    pub fn of(part: &WindowPart) -> Self {
        EncodedPart {
            digest: part.digest.to_parts(),
            over_sla: part.over_sla,
            histogram: part.histogram.as_ref().map(LatencyHistogram::to_parts),
        }
    }

    /// The part (checked by [`ShuffleRecord::check`] first).
    pub fn decode(self, config: DigestConfig) -> WindowPart {
        window_part(self.digest, self.over_sla, self.histogram, config)
    }

    /// Whether the part is self-consistent: see [`ShuffleRecord::check`].
    fn check(&self) -> Result<(), Refused> {
        check_part(&self.digest, self.over_sla, self.histogram.as_ref())
    }
}

/// A self-consistent part: a valid digest, no more records over the SLA than records, and a
/// histogram (if any) of as many records.
fn check_part(
    digest: &DigestParts,
    over_sla: u64,
    histogram: Option<&HistogramParts>,
) -> Result<(), Refused> {
    digest
        .check()
        .map_err(|e| Refused::new("inconsistent_part", e))?;
    if over_sla > digest.count {
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

/// The records of one input partition's split of one window: `pieces` in order (see
/// [`crate::dimension::split_pieces::into_pieces`]).
pub fn values_records(
    window_start: i64,
    partition: i32,
    pieces: Vec<SplitPiece>,
) -> Vec<ShuffleRecord> {
    pieces
        .into_iter()
        .map(|piece| ShuffleRecord::Values {
            window_start,
            partition,
            piece: piece.piece,
            pieces: piece.pieces,
            other: piece.other.as_ref().map(EncodedPart::of),
            untracked_at_most: piece.untracked_at_most,
            values: piece
                .values
                .iter()
                .map(|(key, part, inherited)| EncodedValue {
                    key: key.clone(),
                    inherited: *inherited,
                    part: EncodedPart::of(part),
                })
                .collect(),
        })
        .collect()
}

/// Pieces numbered from here are late records' arrivals published alone (see
/// [`late_arrival_piece`]); a window's own pieces are numbered below.
const LATE_ARRIVAL_PIECES: u32 = 1 << 31;

/// The piece under which the arrival of the late record at input `offset` is published on
/// its own (its partition had no open window to carry it): one per offset, the same on replay.
pub fn late_arrival_piece(offset: i64) -> u32 {
    LATE_ARRIVAL_PIECES | (offset as u32 & !LATE_ARRIVAL_PIECES)
}

/// The shuffle partition that carries completeness (arrivals and the accounted marker): its
/// owner keeps the ledger (see [`crate::completeness::ledger`]).
pub const COMPLETENESS_PARTITION: i32 = 0;

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
        "shuffle record {key} is in format {version}, this release reads formats 1 to \
         {FORMAT_VERSION}: it was written by a newer release; run the same release on every \
         instance of the monitor"
    )]
    UnknownVersion {
        /// The record's key.
        key: String,
        /// Its format version.
        version: u8,
    },
    /// Without a tag (or without any framing) while this monitor requires one.
    #[error(
        "shuffle record {key} is {what}, and this monitor reads authenticated records only \
         (--internal-key-file): an instance without the key, or a forgery"
    )]
    Unauthenticated {
        /// The record's key.
        key: String,
        /// What it is instead.
        what: String,
    },
    /// Its tag does not verify (see [`authentication::Unverified`]).
    #[error("shuffle record {key}: {detail}")]
    Unverified {
        /// The record's key.
        key: String,
        /// Which check failed.
        why: authentication::Unverified,
        /// What is wrong, for the log.
        detail: String,
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
            ShuffleError::Unauthenticated { .. } => "unauthenticated",
            ShuffleError::Unverified { why, .. } => why.reason(),
        }
    }
}

/// The newest shuffle format, written with a key: `SM`, the version byte, the signing key's
/// id (4 bytes), the postcard-encoded envelope (writer identity and record), and the
/// HMAC-SHA256 of everything before it.
pub const FORMAT_VERSION: u8 = 3;
/// The format written without a key: `SM`, the version byte, the envelope, and a CRC-32
/// (little endian) of everything before it. Format 1 is the same without the parts' latency
/// histograms (read, its parts without one).
pub const CHECKSUMMED_FORMAT: u8 = 2;
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
pub const REFUSAL_REASONS: [&str; 11] = [
    "undecodable",
    "integrity",
    "unknown_version",
    "foreign_identity",
    "unauthenticated",
    "unknown_key",
    "bad_signature",
    "unaligned_window",
    "bad_partition",
    "inconsistent_part",
    "time_out_of_bounds",
];

/// How far the clock of the instance that wrote an internal record may run ahead of the
/// clock of the one reading it.
pub const CLOCK_SKEW_MS: i64 = 60_000;

/// The latest time an internal record read at processing time `now_ms` may carry, when event
/// times are accepted up to `max_future_ms` ahead (`--max-future`): progress, merged markers
/// and windows follow event times, so nothing a monitor writes lies further ahead than that
/// plus [`CLOCK_SKEW_MS`].
pub fn latest_plausible(now_ms: i64, max_future_ms: i64) -> i64 {
    now_ms
        .saturating_add(max_future_ms.max(0))
        .saturating_add(CLOCK_SKEW_MS)
}

impl ShuffleRecord {
    /// Whether the record is one this monitor could have written, for windows of
    /// `window_size_ms` over an input topic of `input_partitions` partitions (0: not known
    /// yet), read when times up to `latest_ms` (see [`latest_plausible`]) are plausible: an
    /// aligned window, an existing partition, a self-consistent part (see
    /// [`DigestParts::check`]) with no more records over the SLA than records, and no time
    /// beyond `latest_ms`.
    pub fn check(
        &self,
        window_size_ms: i64,
        latest_ms: i64,
        input_partitions: usize,
    ) -> Result<(), Refused> {
        let in_bounds = |what: &str, t: i64| {
            if t > latest_ms {
                Err(Refused::new(
                    "time_out_of_bounds",
                    format!(
                        "{what} {t} lies beyond {latest_ms}, this host's clock plus --max-future \
                         and a minute of clock skew"
                    ),
                ))
            } else {
                Ok(())
            }
        };
        let valid_partition = |partition: i32| {
            let beyond = input_partitions > 0
                && usize::try_from(partition).is_ok_and(|p| p >= input_partitions);
            if partition < 0 || beyond {
                Err(Refused::new(
                    "bad_partition",
                    format!(
                        "partition {partition} of an input topic of {input_partitions} partitions"
                    ),
                ))
            } else {
                Ok(())
            }
        };
        let aligned = |window_start: i64| {
            if window_start.rem_euclid(window_size_ms) != 0 {
                Err(Refused::new(
                    "unaligned_window",
                    format!("window start {window_start} is not a multiple of {window_size_ms} ms"),
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
                aligned(*window_start)?;
                valid_partition(*partition)?;
                in_bounds("window start", *window_start)?;
                check_part(digest, *over_sla, histogram.as_ref())
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
            ShuffleRecord::Arrivals {
                window_start,
                partition,
                arrivals,
            }
            | ShuffleRecord::ArrivalsPiece {
                window_start,
                partition,
                arrivals,
                ..
            } => {
                aligned(*window_start)?;
                valid_partition(*partition)?;
                in_bounds("window start", *window_start)?;
                arrivals
                    .check()
                    .map_err(|e| Refused::new("inconsistent_part", e))
            }
            ShuffleRecord::Values {
                window_start,
                partition,
                piece,
                pieces,
                other,
                values,
                ..
            } => {
                aligned(*window_start)?;
                valid_partition(*partition)?;
                in_bounds("window start", *window_start)?;
                if piece >= pieces || (*piece == 0) != other.is_some() {
                    return Err(Refused::new(
                        "inconsistent_part",
                        format!(
                            "value piece {piece} of {pieces} {} the other part",
                            if other.is_some() { "with" } else { "without" }
                        ),
                    ));
                }
                match other {
                    // No value was given up: an empty part.
                    Some(other) if other.digest.count == 0 => {
                        let empty = other.over_sla == 0
                            && other.digest.values.is_empty()
                            && other.digest.digest.is_none()
                            && other.histogram.as_ref().is_none_or(|h| h.count() == 0);
                        if !empty {
                            return Err(Refused::new(
                                "inconsistent_part",
                                "an other part of no records holding some".to_string(),
                            ));
                        }
                    }
                    Some(other) => other.check()?,
                    None => {}
                }
                let longest_key = MAX_DIMENSIONS * (MAX_VALUE_BYTES + 4);
                for value in values {
                    if value.key.len() > longest_key {
                        return Err(Refused::new(
                            "inconsistent_part",
                            format!("a dimension key of {} bytes", value.key.len()),
                        ));
                    }
                    value.part.check()?;
                }
                Ok(())
            }
            ShuffleRecord::Accounted {
                first_window,
                final_through,
            } => {
                aligned(*first_window)?;
                in_bounds("accounted marker", *final_through)
            }
        }
    }
}

/// Keys, encoding and routing of one monitor's shuffle records.
#[derive(Debug, Clone)]
pub struct Shuffle {
    namespace: String,
    identity: JobIdentity,
    authentication: RecordAuthentication,
}

impl Shuffle {
    /// The shuffle of the monitor `identity`, its records authenticated as `authentication`
    /// says.
    pub fn new(identity: JobIdentity, authentication: RecordAuthentication) -> Self {
        Shuffle {
            namespace: format!("{}/{}", identity.group, identity.input_topic),
            identity,
            authentication,
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
            ShuffleRecord::Arrivals {
                window_start,
                partition,
                ..
            } => self.arrivals_key(*window_start, *partition, 0),
            ShuffleRecord::ArrivalsPiece {
                window_start,
                partition,
                piece,
                ..
            } => self.arrivals_key(*window_start, *partition, *piece),
            ShuffleRecord::Accounted { .. } => format!("{}|accounted", self.namespace),
            ShuffleRecord::Values {
                window_start,
                partition,
                piece,
                ..
            } => self.values_key(*window_start, *partition, *piece),
        }
    }

    /// The key of a piece of an input partition's split of a window (also the key of its
    /// tombstone).
    pub fn values_key(&self, window_start: i64, partition: i32, piece: u32) -> String {
        format!(
            "{}|values|{window_start}|{partition}|{piece}",
            self.namespace
        )
    }

    /// The key of (a piece of) an input partition's arrivals in a window (also the key of its
    /// tombstone); the first piece's key has no piece number.
    pub fn arrivals_key(&self, window_start: i64, partition: i32, piece: u32) -> String {
        match piece {
            0 => format!("{}|arrivals|{window_start}|{partition}", self.namespace),
            piece => format!(
                "{}|arrivals|{window_start}|{partition}|{piece}",
                self.namespace
            ),
        }
    }

    /// The key of a window's part (also the key of its tombstone).
    pub fn part_key(&self, window_start: i64, partition: i32) -> String {
        format!("{}|part|{window_start}|{partition}", self.namespace)
    }

    /// Encodes a record's value: format [`FORMAT_VERSION`] with a key, else
    /// [`CHECKSUMMED_FORMAT`].
    pub fn encode(&self, record: &ShuffleRecord) -> Vec<u8> {
        let envelope = EnvelopeRef {
            identity: &self.identity,
            record,
        };
        let mut value = MAGIC.to_vec();
        let signing_id = self.authentication.signing_id();
        match signing_id {
            Some(id) => {
                value.push(FORMAT_VERSION);
                value.extend_from_slice(&id);
            }
            None => value.push(CHECKSUMMED_FORMAT),
        }
        let mut value =
            postcard::to_extend(&envelope, value).expect("shuffle records always encode");
        match self.authentication.sign(&value) {
            Some((_, tag)) => value.extend_from_slice(&tag),
            None => {
                let checksum = crc32fast::hash(&value);
                value.extend_from_slice(&checksum.to_le_bytes());
            }
        }
        value
    }

    /// A record value of this monitor, authenticated (format 3) or checksummed (formats 2
    /// and 1) as this monitor's authentication allows, and identified.
    fn decode_value(&self, key: &str, value: &[u8]) -> Result<ShuffleRecord, ShuffleError> {
        let undecodable = |source| ShuffleError::Undecodable {
            key: key.to_string(),
            source,
        };
        let unauthenticated = |what: &str| ShuffleError::Unauthenticated {
            key: key.to_string(),
            what: what.to_string(),
        };
        let Some(rest) = value.strip_prefix(MAGIC) else {
            // Format 0 (a bare postcard record) carried no identity or checksum.
            return Err(if self.authentication.reads_unauthenticated() {
                undecodable(postcard::Error::DeserializeBadEncoding)
            } else {
                unauthenticated("not framed (format 0 or foreign bytes)")
            });
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
        let head = MAGIC.len() + 1;
        let body = if version == FORMAT_VERSION {
            if value.len() < head + KEY_ID_LEN + TAG_LEN {
                return Err(undecodable(postcard::Error::DeserializeUnexpectedEnd));
            }
            let (content, tag) = value.split_at(value.len() - TAG_LEN);
            let key_id: [u8; KEY_ID_LEN] = content[head..head + KEY_ID_LEN]
                .try_into()
                .expect("sliced to the id's length");
            self.authentication
                .verify(&key_id, content, tag)
                .map_err(|why| ShuffleError::Unverified {
                    key: key.to_string(),
                    why,
                    detail: why.describe(&key_id),
                })?;
            &content[head + KEY_ID_LEN..]
        } else {
            if !self.authentication.reads_unauthenticated() {
                return Err(unauthenticated(&format!(
                    "in checksummed format {version}, without an authentication tag"
                )));
            }
            if value.len() < head + 4 {
                return Err(undecodable(postcard::Error::DeserializeUnexpectedEnd));
            }
            let (content, checksum) = value.split_at(value.len() - 4);
            if crc32fast::hash(content).to_le_bytes() != checksum {
                return Err(ShuffleError::Integrity {
                    key: key.to_string(),
                });
            }
            &content[head..]
        };
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
        let shuffle = Shuffle::new(
            JobIdentity::new("g", "reduced_visits", "job", 60_000),
            RecordAuthentication::none(),
        );
        let mut digest = LatencyDigest::new(DigestConfig::default());
        digest.add(12.5);
        let mut histogram = LatencyHistogram::new();
        histogram.add(12);
        let part = WindowPart {
            digest,
            over_sla: 1,
            histogram: Some(histogram),
        };
        let mut arrivals = crate::completeness::stream::StreamArrivals::default();
        let rules = crate::completeness::stream::CompletenessRules {
            window_ms: 60_000,
            sla_ms: 5_000,
            lost_after_ms: 600_000,
        };
        arrivals.record(&rules, 1, 42, 60_100, 60_200);
        assert_ne!(
            shuffle.arrivals_key(60_000, 3, 0),
            shuffle.arrivals_key(60_000, 3, 2),
            "each piece has its own key"
        );
        for record in [
            part_record(60_000, 3, &part),
            ShuffleRecord::Progress {
                partition: 3,
                closed_through: 119_999,
            },
            ShuffleRecord::Merged {
                written_through: 59_999,
            },
            ShuffleRecord::Arrivals {
                window_start: 60_000,
                partition: 3,
                arrivals: arrivals.clone(),
            },
            ShuffleRecord::ArrivalsPiece {
                window_start: 60_000,
                partition: 3,
                piece: 2,
                arrivals: arrivals.clone(),
            },
        ] {
            let key = shuffle.key(&record);
            let value = shuffle.encode(&record);
            assert_eq!(
                shuffle.decode(Some(key.as_bytes()), Some(&value)).unwrap(),
                ShuffleEvent::Record(record.clone())
            );
            let other = Shuffle::new(
                JobIdentity::new("g2", "reduced_visits", "job", 60_000),
                RecordAuthentication::none(),
            );
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
        let longer = Shuffle::new(
            JobIdentity::new("g", "reduced_visits_2", "job", 60_000),
            RecordAuthentication::none(),
        );
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
        let shuffle = Shuffle::new(identity.clone(), RecordAuthentication::none());
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
    fn foreign_corrupted_newer_and_unframed_records_are_refused() {
        let ours = Shuffle::new(
            JobIdentity::new("g", "t", "job", 60_000),
            RecordAuthentication::none(),
        );
        let record = ShuffleRecord::Progress {
            partition: 1,
            closed_through: 119_999,
        };
        let key = ours.key(&record);
        let read = |value: &[u8]| ours.decode(Some(key.as_bytes()), Some(value));

        // Format 0 (a bare record: no identity, no checksum) is no longer read.
        let format_0 = postcard::to_stdvec(&record).unwrap();
        assert_eq!(read(&format_0).unwrap_err().reason(), "undecodable");
        assert_eq!(
            read(&ours.encode(&record)).unwrap(),
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
            let value = Shuffle::new(other, RecordAuthentication::none()).encode(&record);
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

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const OTHER_KEY: &[u8] = b"fedcba9876543210fedcba9876543210";

    fn keyed(key: &[u8], accepted: Option<&[u8]>, switching_on: bool) -> Shuffle {
        Shuffle::new(
            JobIdentity::new("g", "t", "job", 60_000),
            RecordAuthentication::with_keys(key, accepted, switching_on).unwrap(),
        )
    }

    /// With a key, every record is signed, and a record without a valid tag — checksummed,
    /// unframed, signed with another key, or changed — is refused whatever it says.
    #[test]
    fn with_a_key_only_records_signed_with_a_held_key_are_read() {
        let ours = keyed(KEY, None, false);
        let record = ShuffleRecord::Merged {
            written_through: 119_999,
        };
        let key = ours.key(&record);
        let read = |value: &[u8]| ours.decode(Some(key.as_bytes()), Some(value));
        let signed = ours.encode(&record);
        assert_eq!(signed[2], FORMAT_VERSION);
        assert_eq!(read(&signed).unwrap(), ShuffleEvent::Record(record.clone()));

        let unkeyed = Shuffle::new(
            JobIdentity::new("g", "t", "job", 60_000),
            RecordAuthentication::none(),
        );
        let checksummed = unkeyed.encode(&record);
        let error = read(&checksummed).unwrap_err();
        assert_eq!(error.reason(), "unauthenticated");
        assert!(error.to_string().contains("--internal-key-file"), "{error}");
        let format_0 = postcard::to_stdvec(&record).unwrap();
        assert_eq!(read(&format_0).unwrap_err().reason(), "unauthenticated");
        // A keyed record read by an instance without the key: refused, not trusted.
        assert_eq!(
            unkeyed
                .decode(Some(key.as_bytes()), Some(&signed))
                .unwrap_err()
                .reason(),
            "unknown_key"
        );

        let other = keyed(OTHER_KEY, None, false).encode(&record);
        assert_eq!(read(&other).unwrap_err().reason(), "unknown_key");
        // Another key's record under our key's id: its tag does not verify.
        let mut relabelled = other.clone();
        relabelled[3..3 + KEY_ID_LEN].copy_from_slice(&signed[3..3 + KEY_ID_LEN]);
        assert_eq!(read(&relabelled).unwrap_err().reason(), "bad_signature");
        let mut changed = signed.clone();
        let at = changed.len() - TAG_LEN - 1;
        changed[at] ^= 0x01;
        assert_eq!(read(&changed).unwrap_err().reason(), "bad_signature");
        assert_eq!(read(&signed[..20]).unwrap_err().reason(), "undecodable");

        // Switching authentication on: checksummed records are still read; rotating: the
        // other key's records are read too.
        let switching = keyed(KEY, None, true);
        assert!(switching
            .decode(Some(key.as_bytes()), Some(&checksummed))
            .is_ok());
        let rotating = keyed(KEY, Some(OTHER_KEY), false);
        assert!(rotating.decode(Some(key.as_bytes()), Some(&other)).is_ok());
        for reason in ["unauthenticated", "unknown_key", "bad_signature"] {
            assert!(REFUSAL_REASONS.contains(&reason));
        }
    }

    proptest::proptest! {
        /// Whatever bytes a writer without the key puts under this monitor's keys, a keyed
        /// monitor reads none of them as a record.
        #[test]
        fn without_the_key_no_bytes_are_accepted(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), framed in proptest::prelude::any::<bool>()) {
            let ours = keyed(KEY, None, false);
            let mut value = bytes;
            if framed {
                let mut head = vec![b'S', b'M', FORMAT_VERSION];
                head.append(&mut value);
                value = head;
            }
            proptest::prop_assert!(ours.decode(Some(ours.part_key(0, 0).as_bytes()), Some(&value)).is_err());
        }

        /// Any bytes under this monitor's key are a record or a refusal, never a panic.
        #[test]
        fn decoding_any_value_never_panics(mut bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120), framed in proptest::prelude::any::<bool>()) {
            let ours = Shuffle::new(JobIdentity::new("g", "t", "job", 60_000), RecordAuthentication::none());
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

    /// The largest parts the flags allow — `--exact-threshold` at its maximum, every value
    /// raw; `--digest-compression` at its maximum, folded — with a histogram of latencies from
    /// 1 ms to an hour, stay well below a broker's default record size (1 MB).
    #[test]
    fn the_largest_parts_the_flags_allow_fit_a_default_broker_record() {
        use crate::distribution::digest::{MAX_COMPRESSION, MAX_EXACT_THRESHOLD};
        let shuffle = keyed(KEY, None, false);
        let spread = |i: usize, n: usize| 1.0 + (i as f64 / n as f64) * 3_600_000.0;
        let mut sizes = Vec::new();
        for (config, n) in [
            (
                DigestConfig {
                    exact_threshold: MAX_EXACT_THRESHOLD,
                    compression: 500,
                },
                MAX_EXACT_THRESHOLD,
            ),
            (
                DigestConfig {
                    exact_threshold: 0,
                    compression: MAX_COMPRESSION,
                },
                20 * MAX_COMPRESSION,
            ),
        ] {
            let mut digest = LatencyDigest::new(config);
            let mut histogram = LatencyHistogram::new();
            for i in 0..n {
                digest.add(spread(i, n));
                histogram.add(spread(i, n) as i64);
            }
            if n > config.exact_threshold {
                digest.fold_values();
            }
            let part = WindowPart {
                digest,
                over_sla: 0,
                histogram: Some(histogram),
            };
            let value = shuffle.encode(&part_record(0, 0, &part));
            sizes.push(value.len());
        }
        assert!(sizes.iter().all(|&size| size < 900_000), "{sizes:?}");
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
