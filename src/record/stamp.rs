//! Where a record's latency starts and ends: a time stamp read from a JSON field (an RFC 6901
//! pointer into the value) or from a Kafka header, in a chosen unit or as RFC 3339, and by
//! default the end is the record's Kafka timestamp (LogAppendTime). This is what lets the
//! monitor watch any pipeline, not only records shaped like the demo's reduced visits.
//!
//! With a header source the value is never decoded, so any payload encoding works (Avro,
//! Protobuf, bytes). With a field source only the pointer's path is read. A stamp that is
//! missing, malformed or out of range is refused with a reason and a detail naming the source.

use crate::record::json_pointer::{JsonPointer, Scalar};
use crate::record::lineage::{Lineage, LINEAGE_HEADER};
use crate::record::reduced_visit::canonical_stamp;
use crate::record::rejection::{RejectReason, Rejection};
use std::fmt;
use std::str::FromStr;

/// Where one stamp is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StampSource {
    /// A member of the JSON value, named by a JSON pointer (`field:/meta/processed_at`).
    Field(JsonPointer),
    /// A Kafka header (`header:processed_at`); of repeated headers the last counts.
    Header(String),
    /// The source record's timestamp in the record's lineage header (`lineage`, see
    /// [`crate::record::lineage`]): the latency starts where the record entered the pipeline,
    /// so time it waited before a stage picked it up counts. Always Unix milliseconds.
    Lineage,
}

impl fmt::Display for StampSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StampSource::Field(pointer) => write!(f, "field:{pointer}"),
            StampSource::Header(name) => write!(f, "header:{name}"),
            StampSource::Lineage => f.write_str("lineage"),
        }
    }
}

/// A source flag that cannot be used, with what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(String);

impl FromStr for StampSource {
    type Err = SourceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "lineage" {
            return Ok(StampSource::Lineage);
        }
        if let Some(pointer) = text.strip_prefix("field:") {
            JsonPointer::parse(pointer)
                .map(StampSource::Field)
                .map_err(|e| SourceError(e.to_string()))
        } else if let Some(name) = text.strip_prefix("header:") {
            if name.is_empty() {
                return Err(SourceError(
                    "header: needs a header name, e.g. header:processed_at".into(),
                ));
            }
            Ok(StampSource::Header(name.to_string()))
        } else {
            Err(SourceError(format!(
                "{text:?} is not a stamp source: write field:<JSON pointer> (e.g. field:/meta/processed_at) \
                 or header:<name> (e.g. header:processed_at), or lineage (the source record's \
                 timestamp in the lineage header)"
            )))
        }
    }
}

/// How a stamp is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TimeFormat {
    /// Unix time in seconds (an integer, or a number with a fraction as Python's `time.time()`).
    #[value(name = "unix_s")]
    UnixS,
    /// Unix time in milliseconds (Java's `System.currentTimeMillis()`).
    #[value(name = "unix_ms")]
    UnixMs,
    /// Unix time in microseconds.
    #[value(name = "unix_us")]
    UnixUs,
    /// Unix time in nanoseconds (Go's `time.Now().UnixNano()`).
    #[value(name = "unix_ns")]
    UnixNs,
    /// An RFC 3339 date-time, e.g. `2026-11-30T05:50:00.123Z`.
    #[value(name = "rfc3339")]
    Rfc3339,
}

impl TimeFormat {
    /// The flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeFormat::UnixS => "unix_s",
            TimeFormat::UnixMs => "unix_ms",
            TimeFormat::UnixUs => "unix_us",
            TimeFormat::UnixNs => "unix_ns",
            TimeFormat::Rfc3339 => "rfc3339",
        }
    }

    /// Milliseconds of an integer in this unit, rounded down; `None` when it does not fit.
    fn integer_ms(self, value: i64) -> Option<i64> {
        match self {
            TimeFormat::UnixS => value.checked_mul(1_000),
            TimeFormat::UnixMs | TimeFormat::Rfc3339 => Some(value),
            TimeFormat::UnixUs => Some(value.div_euclid(1_000)),
            TimeFormat::UnixNs => Some(value.div_euclid(1_000_000)),
        }
    }

    /// Milliseconds of a number with a fraction in this unit, rounded down.
    fn float_ms(self, value: f64) -> Option<i64> {
        let ms = match self {
            TimeFormat::UnixS => value * 1e3,
            TimeFormat::UnixMs | TimeFormat::Rfc3339 => value,
            TimeFormat::UnixUs => value / 1e3,
            TimeFormat::UnixNs => value / 1e6,
        }
        .floor();
        // i64::MAX as f64 rounds up to 2^63, which does not fit.
        (ms.is_finite() && ms >= i64::MIN as f64 && ms < i64::MAX as f64).then_some(ms as i64)
    }
}

/// One stamp: where it is and how it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// Where.
    pub source: StampSource,
    /// How.
    pub format: TimeFormat,
}

/// The headers of a record, as the stamp reader asks for them.
pub trait RecordHeaders: Sync {
    /// The value of the last header called `name` (a header without a value reads as empty),
    /// or `None` when the record has no such header.
    fn last(&self, name: &str) -> Option<&[u8]>;
}

/// A record without headers.
pub struct NoHeaders;

impl RecordHeaders for NoHeaders {
    fn last(&self, _: &str) -> Option<&[u8]> {
        None
    }
}

impl RecordHeaders for &[(&str, &[u8])] {
    fn last(&self, name: &str) -> Option<&[u8]> {
        self.iter().rev().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
}

/// The demo pipeline's start: `field:/start_processing_time_ms` in `unix_ms`.
pub const DEFAULT_START: &str = "field:/start_processing_time_ms";

impl Stamp {
    /// The demo pipeline's start stamp (the synchronizer writes it).
    pub fn demo_start() -> Stamp {
        Stamp {
            source: DEFAULT_START.parse().expect("the default source parses"),
            format: TimeFormat::UnixMs,
        }
    }

    /// Reads the stamp of a record as Unix milliseconds. `role` ("start" or "end") is named in
    /// the detail of a refusal.
    pub fn read_ms(
        &self,
        role: &str,
        payload: Option<&[u8]>,
        headers: &dyn RecordHeaders,
    ) -> Result<i64, Rejection> {
        if self.format == TimeFormat::UnixMs
            && matches!(&self.source, StampSource::Field(p) if p.as_str() == "/start_processing_time_ms")
        {
            // The synchronizer's exact encoding, read without a parser (a quarter of the
            // monitor's time went into parsing); anything else takes the general path.
            if let Some(stamp) = payload.and_then(canonical_stamp) {
                return Ok(stamp);
            }
        }
        self.read_general(role, payload, headers)
    }

    /// The stamp of a record from the value its field pointer found (`found`, read in a pass
    /// shared with other fields, see [`crate::record::json_pointer::find_each`]): what
    /// [`Self::read_ms`] returns for the same record.
    pub fn found_ms(&self, role: &str, found: Option<Scalar<'_>>) -> Result<i64, Rejection> {
        let refuse = |reason, what: String| {
            Rejection::new(reason, format!("{role} time {}: {what}", self.source))
        };
        let scalar = found.ok_or_else(|| refuse(RejectReason::MissingField, "missing".into()))?;
        self.scalar_ms(scalar)
            .map_err(|(reason, what)| refuse(reason, what))
    }

    fn read_general(
        &self,
        role: &str,
        payload: Option<&[u8]>,
        headers: &dyn RecordHeaders,
    ) -> Result<i64, Rejection> {
        let refuse = |reason, what: String| {
            Rejection::new(reason, format!("{role} time {}: {what}", self.source))
        };
        let scalar = match &self.source {
            StampSource::Field(pointer) => {
                let bytes = match payload {
                    Some(b) if !b.is_empty() => b,
                    _ => {
                        return Err(refuse(
                            RejectReason::EmptyPayload,
                            "the record has no value".into(),
                        ))
                    }
                };
                match pointer.find(bytes) {
                    Ok(Some(scalar)) => scalar,
                    Ok(None) => return Err(refuse(RejectReason::MissingField, "missing".into())),
                    Err(e) => {
                        return Err(refuse(
                            RejectReason::InvalidJson,
                            format!("the value is not JSON: {e}"),
                        ))
                    }
                }
            }
            StampSource::Header(name) => {
                let Some(bytes) = headers.last(name) else {
                    return Err(refuse(
                        RejectReason::MissingHeader,
                        "the record has no such header".into(),
                    ));
                };
                header_scalar(bytes, self.format)
                    .map_err(|what| refuse(RejectReason::InvalidStamp, what))?
            }
            StampSource::Lineage => {
                let Some(bytes) = headers.last(LINEAGE_HEADER) else {
                    return Err(refuse(
                        RejectReason::MissingHeader,
                        format!("the record has no {LINEAGE_HEADER} header"),
                    ));
                };
                let lineage = Lineage::parse(bytes)
                    .map_err(|e| refuse(RejectReason::InvalidStamp, e.to_string()))?;
                return lineage.timestamp_ms.ok_or_else(|| {
                    refuse(
                        RejectReason::MissingField,
                        "the lineage names no source timestamp".into(),
                    )
                });
            }
        };
        self.scalar_ms(scalar)
            .map_err(|(reason, what)| refuse(reason, what))
    }

    fn scalar_ms(&self, scalar: Scalar<'_>) -> Result<i64, (RejectReason, String)> {
        let format = self.format;
        let in_range = |ms: Option<i64>, shown: &dyn fmt::Display| match ms {
            Some(ms) if ms >= 0 => Ok(ms),
            Some(_) => Err((
                RejectReason::NegativeValue,
                format!("{shown} is before 1970"),
            )),
            None => Err((
                RejectReason::StampOutOfRange,
                format!("{shown} is out of range for {}", format.as_str()),
            )),
        };
        match (scalar, format) {
            (Scalar::Null, _) => Err((RejectReason::MissingField, "null".into())),
            (Scalar::Text(text), TimeFormat::Rfc3339) => {
                match chrono::DateTime::parse_from_rfc3339(text.trim()) {
                    Ok(t) => in_range(Some(t.timestamp_millis()), &text),
                    Err(e) => Err((
                        RejectReason::InvalidStamp,
                        format!("{text:?} is not an RFC 3339 date-time ({e})"),
                    )),
                }
            }
            (other, TimeFormat::Rfc3339) => Err((
                RejectReason::WrongType,
                format!("must be an RFC 3339 string, got {}", other.type_name()),
            )),
            (Scalar::Integer(n), _) => in_range(format.integer_ms(n), &n),
            (Scalar::Unsigned(n), _) => in_range(None, &n),
            (Scalar::Float(f), _) if f < 0.0 => in_range(Some(-1), &f),
            (Scalar::Float(f), _) => in_range(format.float_ms(f), &f),
            (Scalar::Text(text), _) => match decimal(text.trim()) {
                Some(Scalar::Integer(n)) => in_range(format.integer_ms(n), &n),
                Some(Scalar::Float(f)) if f < 0.0 => in_range(Some(-1), &f),
                Some(Scalar::Float(f)) => in_range(format.float_ms(f), &f),
                _ => Err((
                    RejectReason::InvalidStamp,
                    format!("{text:?} is not a number of {}", unit_name(format)),
                )),
            },
            (other, _) => Err((
                RejectReason::WrongType,
                format!(
                    "must be a number of {}, got {}",
                    unit_name(format),
                    other.type_name()
                ),
            )),
        }
    }
}

fn unit_name(format: TimeFormat) -> &'static str {
    match format {
        TimeFormat::UnixS => "seconds (unix_s)",
        TimeFormat::UnixMs => "milliseconds (unix_ms)",
        TimeFormat::UnixUs => "microseconds (unix_us)",
        TimeFormat::UnixNs => "nanoseconds (unix_ns)",
        TimeFormat::Rfc3339 => "RFC 3339",
    }
}

/// A number written as decimal text (what producers that quote long integers write).
fn decimal(text: &str) -> Option<Scalar<'static>> {
    let plain = |t: &str| {
        let digits = t.strip_prefix('-').unwrap_or(t);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    };
    if !plain(text) {
        return None;
    }
    text.parse::<i64>().map(Scalar::Integer).ok().or_else(|| {
        text.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Scalar::Float)
    })
}

/// A header's value: decimal or RFC 3339 text, or — when it is exactly 8 bytes that are not all
/// digits — a big-endian signed integer (Java's `Longs.toByteArray`, Go's
/// `binary.BigEndian.PutUint64`). Eight digits of text would be a time in 1970 in any unit, so
/// the two cannot be confused for a real stamp.
fn header_scalar(bytes: &[u8], format: TimeFormat) -> Result<Scalar<'_>, String> {
    if format != TimeFormat::Rfc3339 && bytes.len() == 8 && !bytes.iter().all(u8::is_ascii_digit) {
        let value = i64::from_be_bytes(bytes.try_into().expect("8 bytes"));
        return Ok(Scalar::Integer(value));
    }
    match std::str::from_utf8(bytes) {
        Ok("") => Err("the header is empty".into()),
        Ok(text) => Ok(Scalar::Text(text.into())),
        Err(_) => Err(format!(
            "{} bytes that are neither text nor an 8-byte big-endian integer",
            bytes.len()
        )),
    }
}

/// Where the end of each latency comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndSource {
    /// The record's Kafka timestamp: the broker's append time (LogAppendTime) on a topic so
    /// configured — the default and the design.
    KafkaTimestamp,
    /// A stamp the pipeline wrote itself.
    Stamp(Stamp),
}

/// The two ends of the latency the monitor measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyStamps {
    /// Where processing started.
    pub start: Stamp,
    /// Where it ended (also the record's event time).
    pub end: EndSource,
}

impl Default for LatencyStamps {
    /// The demo pipeline: `start_processing_time_ms` to the broker's append time.
    fn default() -> Self {
        LatencyStamps {
            start: Stamp::demo_start(),
            end: EndSource::KafkaTimestamp,
        }
    }
}

impl LatencyStamps {
    /// The header names the stamps are read from, so the edge looks up only those.
    pub fn header_names(&self) -> impl Iterator<Item = &str> {
        let end = match &self.end {
            EndSource::Stamp(stamp) => Some(stamp),
            EndSource::KafkaTimestamp => None,
        };
        std::iter::once(&self.start)
            .chain(end)
            .filter_map(|s| match &s.source {
                StampSource::Header(name) => Some(name.as_str()),
                StampSource::Lineage => Some(LINEAGE_HEADER),
                StampSource::Field(_) => None,
            })
    }

    /// Whether the payload is ever read (not with header sources alone).
    pub fn reads_payload(&self) -> bool {
        let field = |s: &Stamp| matches!(s.source, StampSource::Field(_));
        field(&self.start) || matches!(&self.end, EndSource::Stamp(s) if field(s))
    }
}

impl fmt::Display for LatencyStamps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "from {} ({})",
            self.start.source,
            self.start.format.as_str()
        )?;
        match &self.end {
            EndSource::KafkaTimestamp => write!(f, " to the record's Kafka timestamp"),
            EndSource::Stamp(s) => write!(f, " to {} ({})", s.source, s.format.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stamp(source: &str, format: TimeFormat) -> Stamp {
        Stamp {
            source: source.parse().unwrap(),
            format,
        }
    }

    fn field(pointer: &str, format: TimeFormat, payload: &str) -> Result<i64, Rejection> {
        stamp(&format!("field:{pointer}"), format).read_ms(
            "start",
            Some(payload.as_bytes()),
            &NoHeaders,
        )
    }

    fn header(format: TimeFormat, value: &[u8]) -> Result<i64, Rejection> {
        let headers: &[(&str, &[u8])] = &[("other", b"1"), ("ts", value)];
        stamp("header:ts", format).read_ms("start", Some(b"\x00\xff binary"), &headers)
    }

    const MS: i64 = 1_796_000_000_123;

    #[test]
    fn reads_fields_in_every_format() {
        use TimeFormat::*;
        assert_eq!(field("/t", UnixMs, &format!(r#"{{"t":{MS}}}"#)), Ok(MS));
        assert_eq!(
            field("/t", UnixS, r#"{"t":1796000000}"#),
            Ok(1_796_000_000_000)
        );
        assert_eq!(field("/t", UnixS, r#"{"t":1796000000.1234}"#), Ok(MS));
        assert_eq!(field("/t", UnixUs, r#"{"t":1796000000123999}"#), Ok(MS));
        assert_eq!(field("/t", UnixNs, r#"{"t":1796000000123999999}"#), Ok(MS));
        assert_eq!(
            field("/t", UnixMs, &format!(r#"{{"t":"{MS}"}}"#)),
            Ok(MS),
            "quoted integers"
        );
        assert_eq!(
            field(
                "/meta/processed_at",
                Rfc3339,
                r#"{"order":{"id":1},"meta":{"processed_at":"2026-11-30T00:53:20.123Z"}}"#
            ),
            Ok(MS)
        );
        assert_eq!(
            field("/t", Rfc3339, r#"{"t":"2026-11-30T01:53:20.123456+01:00"}"#),
            Ok(MS)
        );
    }

    #[test]
    fn refuses_with_reasons_naming_the_source() {
        use TimeFormat::*;
        let refused = |r: Result<i64, Rejection>| r.unwrap_err();
        let missing = refused(field("/meta/t", UnixMs, r#"{"meta":{}}"#));
        assert_eq!(missing.reason, RejectReason::MissingField);
        assert!(
            missing.detail.starts_with("start time field:/meta/t"),
            "{}",
            missing.detail
        );
        let cases = [
            (UnixMs, r#"{"t":null}"#, RejectReason::MissingField),
            (UnixMs, r#"{"t":true}"#, RejectReason::WrongType),
            (UnixMs, r#"{"t":-5}"#, RejectReason::NegativeValue),
            (UnixMs, r#"{"t":"soon"}"#, RejectReason::InvalidStamp),
            (
                UnixMs,
                r#"{"t":18446744073709551615}"#,
                RejectReason::StampOutOfRange,
            ),
            (
                UnixS,
                r#"{"t":9223372036854775807}"#,
                RejectReason::StampOutOfRange,
            ),
            (UnixMs, r#"{"t":1e300}"#, RejectReason::StampOutOfRange),
            (Rfc3339, r#"{"t":17}"#, RejectReason::WrongType),
            (Rfc3339, r#"{"t":"yesterday"}"#, RejectReason::InvalidStamp),
            (
                Rfc3339,
                r#"{"t":"1969-12-31T23:59:59Z"}"#,
                RejectReason::NegativeValue,
            ),
            (UnixMs, r#"{"t":1"#, RejectReason::InvalidJson),
        ];
        for (format, payload, reason) in cases {
            assert_eq!(
                refused(field("/t", format, payload)).reason,
                reason,
                "{payload}"
            );
        }
        let empty = stamp("field:/t", UnixMs)
            .read_ms("end", None, &NoHeaders)
            .unwrap_err();
        assert_eq!(empty.reason, RejectReason::EmptyPayload);
        assert!(
            empty.detail.starts_with("end time field:/t"),
            "{}",
            empty.detail
        );
    }

    #[test]
    fn reads_headers_as_text_or_eight_big_endian_bytes_and_never_the_payload() {
        use TimeFormat::*;
        assert_eq!(header(UnixMs, MS.to_string().as_bytes()), Ok(MS));
        assert_eq!(header(UnixMs, &MS.to_be_bytes()), Ok(MS));
        assert_eq!(header(UnixNs, &(MS * 1_000_000).to_be_bytes()), Ok(MS));
        assert_eq!(
            header(UnixS, &1_796_000_000i64.to_be_bytes()),
            Ok(1_796_000_000_000)
        );
        assert_eq!(header(Rfc3339, b"2026-11-30T00:53:20.123Z"), Ok(MS));
        assert_eq!(
            header(UnixMs, &(-1i64).to_be_bytes()).unwrap_err().reason,
            RejectReason::NegativeValue
        );
        assert_eq!(
            header(UnixMs, b"\xff\xfe").unwrap_err().reason,
            RejectReason::InvalidStamp
        );
        assert_eq!(
            header(UnixMs, b"").unwrap_err().reason,
            RejectReason::InvalidStamp
        );
        let missing = stamp("header:absent", UnixMs)
            .read_ms("start", None, &NoHeaders)
            .unwrap_err();
        assert_eq!(missing.reason, RejectReason::MissingHeader);
        assert!(missing.detail.contains("header:absent"));
        let repeated: &[(&str, &[u8])] = &[("ts", b"1"), ("ts", b"2")];
        assert_eq!(
            stamp("header:ts", UnixMs).read_ms("start", None, &repeated),
            Ok(2),
            "the last header counts"
        );
    }

    #[test]
    fn the_lineage_source_reads_the_source_records_timestamp() {
        let lineage = stamp("lineage", TimeFormat::UnixMs);
        assert_eq!(lineage.source.to_string(), "lineage");
        let read = |value: &[u8]| {
            let headers: &[(&str, &[u8])] = &[("lineage", value)];
            lineage.read_ms("start", Some(b"not json"), &headers)
        };
        assert_eq!(read(format!("visits:3:48213:{MS}").as_bytes()), Ok(MS));
        let untimed = read(b"visits:3:48213").unwrap_err();
        assert_eq!(untimed.reason, RejectReason::MissingField);
        assert!(
            untimed.detail.contains("start time lineage"),
            "{}",
            untimed.detail
        );
        let bad = read(b"visits:three:1:2").unwrap_err();
        assert_eq!(bad.reason, RejectReason::InvalidStamp);
        assert!(bad.detail.contains("partition"), "{}", bad.detail);
        let missing = lineage.read_ms("start", None, &NoHeaders).unwrap_err();
        assert_eq!(missing.reason, RejectReason::MissingHeader);
        let stamps = LatencyStamps {
            start: lineage.clone(),
            end: EndSource::KafkaTimestamp,
        };
        assert_eq!(stamps.header_names().collect::<Vec<_>>(), ["lineage"]);
        assert!(!stamps.reads_payload());
    }

    #[test]
    fn sources_parse_or_say_what_to_write() {
        assert!("field:/a/b".parse::<StampSource>().is_ok());
        assert_eq!(
            "header:ts".parse::<StampSource>(),
            Ok(StampSource::Header("ts".into()))
        );
        for bad in ["/a", "field:a", "header:", "json:/a"] {
            let e = bad.parse::<StampSource>().unwrap_err().to_string();
            assert!(
                e.contains("field:") || e.contains("pointer") || e.contains("header"),
                "{bad}: {e}"
            );
        }
        let stamps = LatencyStamps {
            start: stamp("header:start", TimeFormat::UnixMs),
            end: EndSource::Stamp(stamp("header:end", TimeFormat::UnixMs)),
        };
        assert_eq!(stamps.header_names().collect::<Vec<_>>(), ["start", "end"]);
        assert!(!stamps.reads_payload());
        assert!(LatencyStamps::default().reads_payload());
    }

    proptest! {
        /// The default source's fast path for the synchronizer's encoding reads what the
        /// general path reads, for values in that encoding and any near it.
        #[test]
        fn the_demo_fast_path_agrees_with_the_general_reader(id in any::<String>(), event in 0i64..5_000_000_000, start in prop_oneof![0i64..i64::MAX, Just(0), Just(i64::MAX)], tail in 0u8..4) {
            let end = ["}", "} ", "", "}}"][tail as usize];
            let payload = format!(r#"{{"visit":{{"id":{},"event_time":{event}}},"start_processing_time_ms":{start}{end}"#, serde_json::Value::from(id));
            let demo = Stamp::demo_start();
            let fast = demo.read_ms("start", Some(payload.as_bytes()), &NoHeaders);
            let general = demo.read_general("start", Some(payload.as_bytes()), &NoHeaders);
            prop_assert_eq!(fast, general);
        }

        #[test]
        fn any_bytes_are_read_or_refused_never_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40), format in prop_oneof![Just(TimeFormat::UnixS), Just(TimeFormat::UnixMs), Just(TimeFormat::UnixNs), Just(TimeFormat::Rfc3339)]) {
            let headers: &[(&str, &[u8])] = &[("ts", &bytes)];
            let _ = stamp("header:ts", format).read_ms("start", None, &headers);
            let _ = stamp("field:/a/0", format).read_ms("start", Some(&bytes), &NoHeaders);
        }
    }
}
