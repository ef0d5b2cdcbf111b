//! The monitor's checkpoint: per partition, where to resume and the state needed to rebuild
//! exactly the windows whose parts are not yet acknowledged on the shuffle topic (a window's
//! part, once acknowledged there, is the merger's to write; the partition's offsets are
//! committed up to the first record such a window still needs). Stored as records of a compacted topic (commit
//! metadata would do on Apache Kafka, but not every Kafka-protocol broker keeps it). The
//! fields are named on the wire as in the code; checkpoints written before that (`max_ts`,
//! `closed`, `end`) are still read.

use crate::shuffle::MAX_AHEAD_MS;
use serde::{Deserialize, Serialize};

/// Per-partition state saved before each offset commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The offset to resume from: the first record still needed by a window whose part is
    /// not yet acknowledged on the shuffle topic.
    pub offset: i64,
    /// The partition's highest event time among records before `offset`.
    #[serde(alias = "max_ts", default, skip_serializing_if = "Option::is_none")]
    pub max_event_time_before: Option<i64>,
    /// Watermark through which every window's part was published and acknowledged on the
    /// shuffle topic.
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

/// A checkpoint record: which group, topic and partition it belongs to, which job saved it,
/// and the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// Consumer group of the monitor.
    pub group: String,
    /// Consumed topic.
    pub topic: String,
    /// Partition of the consumed topic.
    pub partition: i32,
    /// Job name of the monitor that saved it (empty in format 0 records).
    #[serde(default)]
    pub job: String,
    /// Window length (ms) of the monitor that saved it (0 in format 0 records).
    #[serde(default)]
    pub window_ms: i64,
    /// The checkpoint.
    #[serde(flatten)]
    pub checkpoint: Checkpoint,
}

/// The checkpoint format this release writes: the record's JSON with `"format":1` first and
/// `"crc":N` last, N the CRC-32 of the JSON before `,"crc":` closed by `}`. Format 0 (the
/// record alone, written before format 1) is still read.
pub const FORMAT_VERSION: u64 = 1;
const CRC_FIELD: &str = ",\"crc\":";

#[derive(Serialize)]
struct FramedRef<'a> {
    format: u64,
    #[serde(flatten)]
    record: &'a CheckpointRecord,
}

#[derive(Deserialize)]
struct Framed {
    format: Option<u64>,
    #[serde(flatten)]
    record: CheckpointRecord,
}

/// What a decoded checkpoint value says of its own format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Format 0: no version, no identity, no checksum (read as it is).
    Unversioned,
    /// Format [`FORMAT_VERSION`], its checksum matching.
    Current,
    /// A format this release does not know (written by a newer release).
    Unknown(u64),
    /// Says it is format 1 but its checksum is missing or wrong.
    Corrupted,
}

impl CheckpointRecord {
    /// The record key (compaction keeps the last record per key).
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.group, self.topic, self.partition)
    }

    /// The record value, in format [`FORMAT_VERSION`].
    pub fn encode(&self) -> String {
        let framed = FramedRef {
            format: FORMAT_VERSION,
            record: self,
        };
        let whole = serde_json::to_string(&framed).expect("serialisable");
        let checksum = crc32fast::hash(whole.as_bytes());
        let open = whole.strip_suffix('}').expect("a JSON object");
        format!("{open}{CRC_FIELD}{checksum}}}")
    }

    /// Decodes a record value with what it says of its format; `None` for anything else
    /// found on the topic.
    pub fn decode(value: &[u8]) -> Option<(CheckpointRecord, Format)> {
        let text = std::str::from_utf8(value).ok()?;
        if let Some(at) = text.rfind(CRC_FIELD) {
            let body = format!("{}}}", &text[..at]);
            let checksum = text[at + CRC_FIELD.len()..].strip_suffix('}')?;
            let framed: Framed = serde_json::from_str(&body).ok()?;
            let intact = checksum.parse::<u32>().ok() == Some(crc32fast::hash(body.as_bytes()));
            let format = match framed.format {
                Some(FORMAT_VERSION) if intact => Format::Current,
                Some(v) if v > FORMAT_VERSION => Format::Unknown(v),
                _ => Format::Corrupted,
            };
            return Some((framed.record, format));
        }
        let framed: Framed = serde_json::from_str(text).ok()?;
        let format = match framed.format {
            None => Format::Unversioned,
            Some(v) if v > FORMAT_VERSION => Format::Unknown(v),
            Some(_) => Format::Corrupted,
        };
        Some((framed.record, format))
    }

    /// Whether a monitor running as `job` with `window_ms` windows may restore this record
    /// read in `format`: the refusal reason (a metric label) and what is wrong otherwise.
    pub fn usable_by(
        &self,
        format: Format,
        job: &str,
        window_ms: i64,
    ) -> Result<(), (&'static str, String)> {
        match format {
            Format::Unversioned => Ok(()),
            Format::Corrupted => Err((
                "integrity",
                "its checksum is missing or does not match (corrupted or forged)".into(),
            )),
            Format::Unknown(v) => Err((
                "unknown_version",
                format!(
                    "it is in format {v}, this release reads formats 0 to {FORMAT_VERSION}: it \
                     was saved by a newer release; run the same release on every instance"
                ),
            )),
            Format::Current if self.job != job || self.window_ms != window_ms => Err((
                "foreign_identity",
                format!(
                    "it was saved by job {} with {} ms windows, this monitor is job {job} with \
                     {window_ms} ms windows",
                    self.job, self.window_ms
                ),
            )),
            Format::Current => Ok(()),
        }
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
            if let Some((record, format)) = CheckpointRecord::decode(&bytes) {
                let _ = record.usable_by(format, "job", 60_000);
                let _ = record.checkpoint.check(NOW);
            }
        }

        #[test]
        fn decoding_any_fields_never_panics(offset in any::<i64>(), end in any::<i64>(), t in any::<Option<i64>>(), partition in any::<i32>()) {
            let value = serde_json::json!({"group": "g", "topic": "t", "partition": partition, "offset": offset, "replay_end": end, "durable_through": t});
            let (record, _) = CheckpointRecord::decode(value.to_string().as_bytes()).unwrap();
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
            job: "job".into(),
            window_ms: 60_000,
            checkpoint: Checkpoint {
                offset: 40,
                max_event_time_before: Some(1_700_000_000_000),
                durable_through: Some(1_699_999_999_999),
                replay_end: 42,
            },
        };
        let encoded = record.encode();
        assert!(encoded.starts_with(r#"{"format":1,"#), "{encoded}");
        assert_eq!(
            CheckpointRecord::decode(encoded.as_bytes()),
            Some((record.clone(), Format::Current))
        );
        assert_eq!(record.usable_by(Format::Current, "job", 60_000), Ok(()));
        assert_eq!(record.key(), "g/reduced_visits/1");
        assert_eq!(CheckpointRecord::decode(b"{}"), None);
        let old =
            br#"{"group":"g","topic":"t","partition":0,"offset":4,"max_ts":9,"closed":7,"end":6}"#;
        let (read, format) = CheckpointRecord::decode(old).unwrap();
        assert_eq!(format, Format::Unversioned);
        assert_eq!(
            read.checkpoint,
            Checkpoint {
                offset: 4,
                max_event_time_before: Some(9),
                durable_through: Some(7),
                replay_end: 6,
            }
        );
        assert_eq!(
            read.usable_by(format, "job", 60_000),
            Ok(()),
            "format 0 is still read"
        );
        assert_eq!(CheckpointRecord::decode(b"nope"), None);
    }

    #[test]
    fn corrupted_newer_and_other_jobs_checkpoints_are_not_usable() {
        let record = CheckpointRecord {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            job: "job".into(),
            window_ms: 60_000,
            checkpoint: checkpoint(4, 6, None),
        };
        let reason = |value: &str| {
            let (read, format) = CheckpointRecord::decode(value.as_bytes()).unwrap();
            read.usable_by(format, "job", 60_000).unwrap_err().0
        };
        let encoded = record.encode();
        assert_eq!(
            reason(&encoded.replace(r#""offset":4"#, r#""offset":3"#)),
            "integrity"
        );
        let without_checksum = encoded[..encoded.rfind(CRC_FIELD).unwrap()].to_string() + "}";
        assert_eq!(reason(&without_checksum), "integrity");
        assert_eq!(
            reason(&without_checksum.replace(r#""format":1"#, r#""format":2"#)),
            "unknown_version"
        );
        for (job, window_ms) in [("job", 10_000), ("other", 60_000)] {
            let other = CheckpointRecord {
                job: job.into(),
                window_ms,
                ..record.clone()
            };
            assert_eq!(reason(&other.encode()), "foreign_identity");
        }
    }
}
