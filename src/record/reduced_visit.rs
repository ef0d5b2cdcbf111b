//! The reduced visit: what the synchronizer writes to `reduced_visits` and the monitor reads.
//!
//! Wire format: `{"visit":{"id":"…","event_time":<unix seconds>},"start_processing_time_ms":<unix ms>}`.

use crate::record::rejection::{decode_object, json_type, required, RejectReason, Rejection};
use crate::record::visit::Visit;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A visit reduced to the fields downstream needs, stamped with when its processing started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReducedVisit {
    /// The reduced visit itself.
    pub visit: ReducedVisitBody,
    /// Unix time in milliseconds at which the synchronizer started processing the record.
    pub start_processing_time_ms: i64,
}

/// The `visit` object of a [`ReducedVisit`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReducedVisitBody {
    /// The visit identifier, as text.
    pub id: String,
    /// The visit's event time in whole Unix seconds (UTC).
    pub event_time: i64,
}

impl ReducedVisit {
    /// Reduces a decoded visit, stamping it with the processing start time (Unix ms).
    pub fn from_visit(visit: &Visit, start_processing_time_ms: i64) -> Self {
        ReducedVisit {
            visit: ReducedVisitBody {
                id: visit.id.clone(),
                event_time: visit.event_time.timestamp(),
            },
            start_processing_time_ms,
        }
    }

    /// Serialises to the wire format.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a ReducedVisit always serialises")
    }

    /// Decodes and validates a record value from `reduced_visits`.
    ///
    /// `start_processing_time_ms` must be a non-negative integer and `visit.id` present; the
    /// reasons are those of [`RejectReason`].
    pub fn decode(payload: Option<&[u8]>) -> Result<ReducedVisit, Rejection> {
        let object = decode_object(payload)?;
        let start_processing_time_ms = non_negative_integer(
            required(&object, "start_processing_time_ms")?,
            "start_processing_time_ms",
        )?;
        let visit = match required(&object, "visit")? {
            Value::Object(visit) => visit,
            other => {
                return Err(Rejection::new(
                    RejectReason::WrongType,
                    format!("visit must be an object, got {}", json_type(other)),
                ))
            }
        };
        let id = match required(visit, "id")? {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => {
                return Err(Rejection::new(
                    RejectReason::WrongType,
                    format!("visit.id must be a string, got {}", json_type(other)),
                ))
            }
        };
        let event_time = non_negative_integer(required(visit, "event_time")?, "visit.event_time")?;
        Ok(ReducedVisit {
            visit: ReducedVisitBody { id, event_time },
            start_processing_time_ms,
        })
    }
}

/// The stamp of a value in exactly the synchronizer's encoding (`{"visit":{"id":"…",
/// "event_time":N},"start_processing_time_ms":N}`: a string id without escapes, non-negative
/// integers without leading zeros, no whitespace), read without a JSON parser — a quarter of the
/// monitor's time went into parsing. `None` for anything else, which the parser then decides
/// (`stamp::Stamp::read_ms`, whose property test checks that both agree).
pub(crate) fn canonical_stamp(bytes: &[u8]) -> Option<i64> {
    let rest = bytes.strip_prefix(br#"{"visit":{"id":""#)?;
    let end = rest
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    if rest[end] != b'"' {
        return None;
    }
    std::str::from_utf8(&rest[..end]).ok()?;
    let rest = rest[end + 1..].strip_prefix(br#","event_time":"#)?;
    let (_, rest) = natural_number(rest)?;
    let rest = rest.strip_prefix(br#"},"start_processing_time_ms":"#)?;
    let (stamp, rest) = natural_number(rest)?;
    (rest == b"}").then_some(stamp)
}

/// A JSON integer ≥ 0 that fits an `i64` at the start of `bytes`, and what follows it.
fn natural_number(bytes: &[u8]) -> Option<(i64, &[u8])> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || (digits > 1 && bytes[0] == b'0') {
        return None;
    }
    let mut value: i64 = 0;
    for &digit in &bytes[..digits] {
        value = value
            .checked_mul(10)?
            .checked_add(i64::from(digit - b'0'))?;
    }
    Some((value, &bytes[digits..]))
}

fn non_negative_integer(value: &Value, field: &str) -> Result<i64, Rejection> {
    match value.as_i64() {
        Some(n) if n >= 0 => Ok(n),
        Some(n) => Err(Rejection::new(
            RejectReason::NegativeValue,
            format!("{field} is negative ({n})"),
        )),
        None => Err(Rejection::new(
            RejectReason::WrongType,
            format!("{field} must be an integer, got {}", json_type(value)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::json_pointer::{JsonPointer, Scalar};
    use chrono::DateTime;
    use proptest::prelude::*;

    fn payloads() -> impl Strategy<Value = String> {
        let id = prop_oneof![
            Just(r#""v-1""#.to_string()),
            Just(r#""esc\"aped""#.to_string()),
            Just("42".to_string()),
            Just("1.5".to_string()),
            Just("null".to_string()),
            Just("[1]".to_string()),
            Just("{}".to_string()),
        ];
        let number = prop_oneof![
            (-5i64..5_000_000_000_000).prop_map(|n| n.to_string()),
            Just("1e3".to_string()),
            Just("2.0".to_string()),
            Just("null".to_string()),
            Just(r#""17""#.to_string()),
            Just("18446744073709551615".to_string()),
        ];
        (id, number.clone(), number, any::<u8>()).prop_map(|(id, event_time, stamp, shape)| {
            match shape % 8 {
                0 => format!(r#"{{"visit":{{"id":{id},"event_time":{event_time}}},"start_processing_time_ms":{stamp}}}"#),
                1 => format!(r#"{{"start_processing_time_ms":{stamp},"extra":[1,{{"a":2}}],"visit":{{"event_time":{event_time},"id":{id},"x":null}}}}"#),
                2 => format!(r#"{{"visit":{{"id":{id}}},"start_processing_time_ms":{stamp}}}"#),
                3 => format!(r#"{{"visit":{{"id":{id},"event_time":{event_time}}}}}"#),
                4 => format!(r#"{{"visit":{id},"start_processing_time_ms":{stamp}}}"#),
                5 => format!(r#"{{"visit":{{"id":{id},"event_time":{event_time}}},"start_processing_time_ms":{stamp},"start_processing_time_ms":7}}"#),
                6 => format!(r#"[{stamp}]"#),
                _ => format!(r#"{{"visit":{{"id":{id},"event_time":{event_time}}},"start_processing_time_ms":{stamp}"#),
            }
        })
    }

    /// Values in the canonical shape with any id text (quotes, escapes, control characters,
    /// any Unicode) and numbers around the edges.
    fn canonical_like() -> impl Strategy<Value = String> {
        let number = prop_oneof![
            (0i64..5_000_000_000_000).prop_map(|n| n.to_string()),
            Just("0".to_string()),
            Just("00".to_string()),
            Just("01".to_string()),
            Just("-1".to_string()),
            Just("9223372036854775807".to_string()),
            Just("9223372036854775808".to_string()),
            Just("1.0".to_string()),
            Just("1e2".to_string()),
        ];
        (any::<String>(), number.clone(), number, any::<u8>()).prop_map(|(id, event_time, stamp, tail)| {
            let end = match tail % 4 {
                0 => "}",
                1 => "} ",
                2 => "",
                _ => "}}",
            };
            format!(r#"{{"visit":{{"id":"{id}","event_time":{event_time}}},"start_processing_time_ms":{stamp}{end}"#)
        })
    }

    /// The fast path answers only for values that full decoding reads as a valid reduced
    /// visit with the same stamp, and that the general field reader reads the same way.
    fn agrees_when_it_answers(payload: &[u8]) -> Result<(), TestCaseError> {
        if let Some(stamp) = canonical_stamp(payload) {
            let full = ReducedVisit::decode(Some(payload)).map(|v| v.start_processing_time_ms);
            prop_assert_eq!(full, Ok(stamp));
            let pointer = JsonPointer::parse("/start_processing_time_ms").unwrap();
            prop_assert_eq!(pointer.find(payload).unwrap(), Some(Scalar::Integer(stamp)));
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn canonical_reading_agrees_with_full_decoding(payload in canonical_like()) {
            agrees_when_it_answers(payload.as_bytes())?;
        }

        #[test]
        fn canonical_reading_agrees_on_raw_bytes(prefix in proptest::collection::vec(any::<u8>(), 0..12), stamp in 0i64..i64::MAX) {
            let mut payload = br#"{"visit":{"id":""#.to_vec();
            payload.extend_from_slice(&prefix);
            payload.extend_from_slice(format!(r#"","event_time":1}},"start_processing_time_ms":{stamp}}}"#).as_bytes());
            agrees_when_it_answers(&payload)?;
        }

        #[test]
        fn fast_stamp_reading_agrees_with_full_decoding(payload in payloads()) {
            agrees_when_it_answers(payload.as_bytes())?;
        }
    }

    #[test]
    fn the_synchronizer_encoding_takes_the_fast_path() {
        let reduced = ReducedVisit {
            visit: ReducedVisitBody {
                id: "v-1".into(),
                event_time: 1,
            },
            start_processing_time_ms: 1_796_000_000_123,
        };
        assert_eq!(
            canonical_stamp(reduced.to_json().as_bytes()),
            Some(1_796_000_000_123)
        );
    }

    #[test]
    fn reduces_to_the_documented_wire_format() {
        let visit = Visit {
            id: "v-7".into(),
            event_time: DateTime::parse_from_rfc3339("2026-11-21T10:00:01.900Z")
                .unwrap()
                .into(),
        };
        let reduced = ReducedVisit::from_visit(&visit, 1_795_255_205_123);
        assert_eq!(
            reduced.to_json(),
            r#"{"visit":{"id":"v-7","event_time":1795255201},"start_processing_time_ms":1795255205123}"#
        );
    }

    #[test]
    fn decode_reports_reasons() {
        let reason = |s: &str| ReducedVisit::decode(Some(s.as_bytes())).unwrap_err().reason;
        assert_eq!(reason("nope"), RejectReason::InvalidJson);
        assert_eq!(
            reason(r#"{"visit":{"id":"a","event_time":1}}"#),
            RejectReason::MissingField
        );
        assert_eq!(
            reason(r#"{"visit":{"id":"a","event_time":1},"start_processing_time_ms":-5}"#),
            RejectReason::NegativeValue
        );
        assert_eq!(
            reason(r#"{"visit":{"id":"a","event_time":1},"start_processing_time_ms":"5"}"#),
            RejectReason::WrongType
        );
        assert_eq!(
            reason(r#"{"visit":"a","start_processing_time_ms":5}"#),
            RejectReason::WrongType
        );
        assert_eq!(
            reason(r#"{"visit":{"event_time":1},"start_processing_time_ms":5}"#),
            RejectReason::MissingField
        );
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(id in "[ -~]{0,30}", secs in 0i64..5_000_000_000, ms in 0i64..i64::MAX / 2) {
            let r = ReducedVisit { visit: ReducedVisitBody { id, event_time: secs }, start_processing_time_ms: ms };
            prop_assert_eq!(ReducedVisit::decode(Some(r.to_json().as_bytes())).unwrap(), r);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = ReducedVisit::decode(Some(&bytes));
        }
    }
}
