//! The monitor's checkpoint: per partition, where to resume and the state needed to rebuild
//! exactly the windows whose parts are not yet acknowledged on the shuffle topic (a window's
//! part, once acknowledged there, is the merger's to write; the partition's offsets are
//! committed up to the first record such a window still needs). Stored as records of a compacted topic (commit
//! metadata would do on Apache Kafka, but not every Kafka-protocol broker keeps it). The
//! fields are named on the wire as in the code; checkpoints written before that (`max_ts`,
//! `closed`, `end`) are still read.
//!
//! Like the shuffle's records, checkpoints are authenticated with the instances' shared key
//! when one is set ([`crate::shuffle::authentication`]): a writer to the topic without it can
//! no longer decide where a partition resumes.

use crate::hex::hex;
use crate::shuffle::authentication::{hex_id, KeyId, RecordAuthentication, Unverified};
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
    /// Whether this checkpoint is one a monitor could have saved, read when times up to
    /// `latest_ms` are plausible ([`crate::shuffle::latest_plausible`]): offsets not negative,
    /// the replay end not before the resume offset and far from `i64::MAX`, no time beyond
    /// `latest_ms`. A checkpoint that fails this is not used (the partition resumes from the
    /// committed offset): an offset of `i64::MAX` would mark every record as already counted,
    /// a `durable_through` ahead would make records late until then.
    pub fn check(&self, latest_ms: i64) -> Result<(), String> {
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
        let latest = latest_ms;
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

/// The checkpoint format written with a key: the record's JSON with `"format":2` first, then
/// `"key":"ID"` (the signing key's id) and `"mac":"TAG"` last, TAG the hex HMAC-SHA256 of the
/// JSON before `,"mac":` closed by `}`.
pub const FORMAT_VERSION: u64 = 2;
/// The format written without a key: `"format":1` first and `"crc":N` last, N the CRC-32 of
/// the JSON before `,"crc":` closed by `}`. Format 0 (the record alone: no identity, no
/// checksum) is no longer used.
pub const CHECKSUMMED_FORMAT: u64 = 1;
const CRC_FIELD: &str = ",\"crc\":";
const MAC_FIELD: &str = ",\"mac\":";

#[derive(Serialize)]
struct FramedRef<'a> {
    format: u64,
    #[serde(flatten)]
    record: &'a CheckpointRecord,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

#[derive(Deserialize)]
struct Framed {
    format: Option<u64>,
    #[serde(flatten)]
    record: CheckpointRecord,
    key: Option<String>,
}

/// What a decoded checkpoint value says of its own format and authenticity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Format 0: no version, no identity, no checksum (not used).
    Unversioned,
    /// Format [`CHECKSUMMED_FORMAT`], its checksum matching.
    Checksummed,
    /// Format [`FORMAT_VERSION`], its tag verified under a key this instance holds.
    Authenticated,
    /// Format [`FORMAT_VERSION`], its tag not verified.
    Unverified(Unverified),
    /// A format this release does not know (written by a newer release).
    Unknown(u64),
    /// Says it is checksummed or authenticated but its checksum or tag is missing or wrong.
    Corrupted,
}

fn parse_key_id(text: &str) -> Option<KeyId> {
    if text.len() != 8 || !text.is_ascii() {
        return None;
    }
    let mut id = [0; 4];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(id)
}

fn parse_tag(text: &str) -> Option<Vec<u8>> {
    let hex = text.strip_prefix('"')?.strip_suffix('"')?;
    if hex.len() % 2 != 0 || !hex.is_ascii() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

impl CheckpointRecord {
    /// The record key (compaction keeps the last record per key).
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.group, self.topic, self.partition)
    }

    /// The record value: format [`FORMAT_VERSION`] with a key, else
    /// [`CHECKSUMMED_FORMAT`].
    pub fn encode(&self, authentication: &RecordAuthentication) -> String {
        let signing_id = authentication.signing_id();
        let framed = FramedRef {
            format: if signing_id.is_some() {
                FORMAT_VERSION
            } else {
                CHECKSUMMED_FORMAT
            },
            record: self,
            key: signing_id.as_ref().map(hex_id),
        };
        let whole = serde_json::to_string(&framed).expect("serialisable");
        let open = whole.strip_suffix('}').expect("a JSON object");
        match authentication.sign(whole.as_bytes()) {
            Some((_, tag)) => format!("{open}{MAC_FIELD}\"{}\"}}", hex(&tag)),
            None => {
                let checksum = crc32fast::hash(whole.as_bytes());
                format!("{open}{CRC_FIELD}{checksum}}}")
            }
        }
    }

    /// Decodes a record value with what it says of its format, its tag verified under
    /// `authentication`'s keys; `None` for anything else found on the topic.
    pub fn decode(
        value: &[u8],
        authentication: &RecordAuthentication,
    ) -> Option<(CheckpointRecord, Format)> {
        let text = std::str::from_utf8(value).ok()?;
        if let Some(at) = text.rfind(MAC_FIELD) {
            let body = format!("{}}}", &text[..at]);
            let tag = parse_tag(text[at + MAC_FIELD.len()..].strip_suffix('}')?);
            let framed: Framed = serde_json::from_str(&body).ok()?;
            let key_id = framed.key.as_deref().and_then(parse_key_id);
            let format = match (framed.format, key_id, tag) {
                (Some(v), _, _) if v > FORMAT_VERSION => Format::Unknown(v),
                (Some(FORMAT_VERSION), Some(id), Some(tag)) => {
                    match authentication.verify(&id, body.as_bytes(), &tag) {
                        Ok(()) => Format::Authenticated,
                        Err(why) => Format::Unverified(why),
                    }
                }
                _ => Format::Corrupted,
            };
            return Some((framed.record, format));
        }
        if let Some(at) = text.rfind(CRC_FIELD) {
            let body = format!("{}}}", &text[..at]);
            let checksum = text[at + CRC_FIELD.len()..].strip_suffix('}')?;
            let framed: Framed = serde_json::from_str(&body).ok()?;
            let intact = checksum.parse::<u32>().ok() == Some(crc32fast::hash(body.as_bytes()));
            let format = match framed.format {
                Some(CHECKSUMMED_FORMAT) if intact => Format::Checksummed,
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

    /// Whether a monitor running as `job` with `window_ms` windows, authenticating as
    /// `authentication` says, may restore this record read in `format`: the refusal reason (a
    /// metric label) and what is wrong otherwise.
    pub fn usable_by(
        &self,
        format: Format,
        job: &str,
        window_ms: i64,
        authentication: &RecordAuthentication,
    ) -> Result<(), (&'static str, String)> {
        match format {
            Format::Unversioned if authentication.is_keyed() => Err((
                "unauthenticated",
                "it carries no authentication tag (format 0), and this monitor reads \
                 authenticated checkpoints only"
                    .into(),
            )),
            Format::Unversioned => Err((
                "unversioned",
                "it is in format 0 (no identity, no checksum), no longer used".into(),
            )),
            Format::Corrupted => Err((
                "integrity",
                "its checksum or tag is missing or does not match (corrupted or forged)".into(),
            )),
            Format::Unknown(v) => Err((
                "unknown_version",
                format!(
                    "it is in format {v}, this release reads formats {CHECKSUMMED_FORMAT} to \
                     {FORMAT_VERSION}: it was saved by a newer release; run the same release on \
                     every instance"
                ),
            )),
            Format::Unverified(why) => Err((
                why.reason(),
                format!(
                    "its tag does not verify ({}): an instance with another key, or a forgery",
                    why.reason()
                ),
            )),
            Format::Checksummed if !authentication.reads_unauthenticated() => Err((
                "unauthenticated",
                "it carries a checksum but no authentication tag, and this monitor reads \
                 authenticated checkpoints only (--internal-key-file): an instance without the \
                 key, or a forgery"
                    .into(),
            )),
            Format::Checksummed | Format::Authenticated
                if self.job != job || self.window_ms != window_ms =>
            {
                Err((
                    "foreign_identity",
                    format!(
                        "it was saved by job {} with {} ms windows, this monitor is job {job} \
                         with {window_ms} ms windows",
                        self.job, self.window_ms
                    ),
                ))
            }
            Format::Checksummed | Format::Authenticated => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_795_000_000_000;
    const LATEST: i64 = NOW + 120_000;
    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn none() -> RecordAuthentication {
        RecordAuthentication::none()
    }

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
        assert!(checkpoint(40, 42, Some(NOW - 1_000)).check(LATEST).is_ok());
        assert!(checkpoint(0, 0, None).check(LATEST).is_ok());
        for bad in [
            checkpoint(-1, 5, None),
            checkpoint(9, 5, None),
            checkpoint(i64::MAX, i64::MAX, None),
            checkpoint(0, MAX_OFFSET + 1, None),
            checkpoint(4, 6, Some(i64::MAX)),
            checkpoint(4, 6, Some(-5)),
            checkpoint(4, 6, Some(LATEST + 1)),
        ] {
            assert!(bad.check(LATEST).is_err(), "{bad:?}");
        }
    }

    proptest! {
        /// Any bytes on the checkpoint topic decode to a record or to nothing, never a panic.
        #[test]
        fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let keyed = RecordAuthentication::with_keys(KEY, None, false).unwrap();
            for authentication in [none(), keyed] {
                if let Some((record, format)) = CheckpointRecord::decode(&bytes, &authentication) {
                    let _ = record.usable_by(format, "job", 60_000, &authentication);
                    let _ = record.checkpoint.check(LATEST);
                }
            }
        }

        #[test]
        fn decoding_any_fields_never_panics(offset in any::<i64>(), end in any::<i64>(), t in any::<Option<i64>>(), partition in any::<i32>()) {
            let value = serde_json::json!({"group": "g", "topic": "t", "partition": partition, "offset": offset, "replay_end": end, "durable_through": t});
            let (record, _) = CheckpointRecord::decode(value.to_string().as_bytes(), &none()).unwrap();
            let checked = record.checkpoint.check(LATEST);
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
        let encoded = record.encode(&none());
        assert!(encoded.starts_with(r#"{"format":1,"#), "{encoded}");
        assert_eq!(
            CheckpointRecord::decode(encoded.as_bytes(), &none()),
            Some((record.clone(), Format::Checksummed))
        );
        assert_eq!(
            record.usable_by(Format::Checksummed, "job", 60_000, &none()),
            Ok(())
        );
        assert_eq!(record.key(), "g/reduced_visits/1");
        assert_eq!(CheckpointRecord::decode(b"{}", &none()), None);
        // Format 0, with the field names before they matched the code: decoded, not used.
        let old =
            br#"{"group":"g","topic":"t","partition":0,"offset":4,"max_ts":9,"closed":7,"end":6}"#;
        let (read, format) = CheckpointRecord::decode(old, &none()).unwrap();
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
            read.usable_by(format, "", 0, &none()).unwrap_err().0,
            "unversioned"
        );
        assert_eq!(CheckpointRecord::decode(b"nope", &none()), None);
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
            let (read, format) = CheckpointRecord::decode(value.as_bytes(), &none()).unwrap();
            read.usable_by(format, "job", 60_000, &none())
                .unwrap_err()
                .0
        };
        let encoded = record.encode(&none());
        assert_eq!(
            reason(&encoded.replace(r#""offset":4"#, r#""offset":3"#)),
            "integrity"
        );
        let without_checksum = encoded[..encoded.rfind(CRC_FIELD).unwrap()].to_string() + "}";
        assert_eq!(reason(&without_checksum), "integrity");
        assert_eq!(
            reason(&without_checksum.replace(r#""format":1"#, r#""format":3"#)),
            "unknown_version"
        );
        for (job, window_ms) in [("job", 10_000), ("other", 60_000)] {
            let other = CheckpointRecord {
                job: job.into(),
                window_ms,
                ..record.clone()
            };
            assert_eq!(reason(&other.encode(&none())), "foreign_identity");
        }
    }

    /// With a key, checkpoints are signed, and one without a valid tag — checksummed, format
    /// 0, another key's, or changed after signing — is not used.
    #[test]
    fn with_a_key_only_signed_checkpoints_are_used() {
        let keyed = RecordAuthentication::with_keys(KEY, None, false).unwrap();
        let record = CheckpointRecord {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            job: "job".into(),
            window_ms: 60_000,
            checkpoint: checkpoint(4, 6, Some(NOW)),
        };
        let reason = |value: &str| {
            let (read, format) = CheckpointRecord::decode(value.as_bytes(), &keyed).unwrap();
            read.usable_by(format, "job", 60_000, &keyed)
                .err()
                .map(|e| e.0)
        };
        let signed = record.encode(&keyed);
        assert!(signed.starts_with(r#"{"format":2,"#), "{signed}");
        assert!(signed.contains(r#","mac":""#), "{signed}");
        assert_eq!(reason(&signed), None);
        assert_eq!(
            CheckpointRecord::decode(signed.as_bytes(), &keyed).map(|(r, _)| r),
            Some(record.clone())
        );
        assert_eq!(reason(&record.encode(&none())), Some("unauthenticated"));
        let format_0 = serde_json::to_string(&record).unwrap();
        assert_eq!(reason(&format_0), Some("unauthenticated"));
        // A day ahead, as a forger would write it: the tag no longer matches.
        let forged = signed.replace(r#""durable_through":"#, r#""durable_through":9"#);
        assert_eq!(reason(&forged), Some("bad_signature"));
        let other = RecordAuthentication::with_keys(&[b'x'; 32], None, false).unwrap();
        assert_eq!(reason(&record.encode(&other)), Some("unknown_key"));
        // Read by an instance without a key: not trusted.
        let (read, format) = CheckpointRecord::decode(signed.as_bytes(), &none()).unwrap();
        assert_eq!(
            read.usable_by(format, "job", 60_000, &none())
                .unwrap_err()
                .0,
            "unknown_key"
        );
        // While switching on, checksummed checkpoints are still used.
        let switching = RecordAuthentication::with_keys(KEY, None, true).unwrap();
        let (read, format) =
            CheckpointRecord::decode(record.encode(&none()).as_bytes(), &switching).unwrap();
        assert_eq!(read.usable_by(format, "job", 60_000, &switching), Ok(()));
    }
}
