//! Input visit records: decoding and validation of what arrives on the `visits` topic.
//!
//! Decoding never panics and never guesses: a record is either a [`Visit`] or a [`Rejection`].

use crate::record::rejection::{decode_object, json_type, required, RejectReason, Rejection};
use chrono::{DateTime, Utc};
use serde_json::Value;

/// The fields of a visit that the synchronizer keeps; every other field is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visit {
    /// The visit's identifier (JSON strings and integers are both accepted, kept as text).
    pub id: String,
    /// When the visit happened, as stated by the producer of the record.
    pub event_time: DateTime<Utc>,
}

impl Visit {
    /// Decodes a record value into a visit.
    ///
    /// Requires an object with `visit_id` (string or integer) and `event_time` (RFC 3339 string)
    /// not before 1970 (reduced records carry it as non-negative Unix seconds).
    pub fn decode(payload: Option<&[u8]>) -> Result<Visit, Rejection> {
        let visit = Self::decode_fields(payload)?;
        if visit.event_time.timestamp() < 0 {
            return Err(Rejection::new(
                RejectReason::InvalidEventTime,
                format!(
                    "event_time {} is before 1970-01-01T00:00:00Z",
                    visit.event_time.to_rfc3339()
                ),
            ));
        }
        Ok(visit)
    }

    fn decode_fields(payload: Option<&[u8]>) -> Result<Visit, Rejection> {
        if let Some(Ok(view)) = payload.map(serde_json::from_slice::<VisitView<'_>>) {
            if let (Some(id), Ok(event_time)) = (
                view.visit_id.0,
                DateTime::parse_from_rfc3339(&view.event_time),
            ) {
                return Ok(Visit {
                    id,
                    event_time: event_time.with_timezone(&Utc),
                });
            }
        }
        Self::decode_in_full(payload)
    }

    /// The reference decoder: builds the JSON tree and says precisely what is wrong. The fast
    /// path of [`Visit::decode`] gives the same result for every record it accepts.
    fn decode_in_full(payload: Option<&[u8]>) -> Result<Visit, Rejection> {
        let object = decode_object(payload)?;
        let id = match required(&object, "visit_id")? {
            Value::String(s) if !s.is_empty() => s.clone(),
            Value::String(_) => {
                return Err(Rejection::new(
                    RejectReason::MissingField,
                    "visit_id is an empty string",
                ))
            }
            Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
            other => {
                return Err(Rejection::new(
                    RejectReason::WrongType,
                    format!(
                        "visit_id must be a string or an integer, got {}",
                        json_type(other)
                    ),
                ))
            }
        };
        let event_time = match required(&object, "event_time")? {
            Value::String(s) => DateTime::parse_from_rfc3339(s)
                .map_err(|e| {
                    Rejection::new(
                        RejectReason::InvalidEventTime,
                        format!("event_time {s:?} is not an RFC 3339 date-time: {e}"),
                    )
                })?
                .with_timezone(&Utc),
            other => {
                return Err(Rejection::new(
                    RejectReason::WrongType,
                    format!("event_time must be a string, got {}", json_type(other)),
                ))
            }
        };
        Ok(Visit { id, event_time })
    }
}

/// The two fields of a valid visit, read in one pass; other fields are skipped unread.
#[derive(serde::Deserialize)]
struct VisitView<'a> {
    visit_id: IdText,
    #[serde(borrow)]
    event_time: std::borrow::Cow<'a, str>,
}

/// A `visit_id` as the reference decoder keeps it: a non-empty string, or an integer as text;
/// `None` for anything else (left to the reference decoder to explain).
struct IdText(Option<String>);

impl<'de> serde::Deserialize<'de> for IdText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl serde::de::Visitor<'_> for IdVisitor {
            type Value = IdText;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a visit id")
            }
            fn visit_str<E>(self, s: &str) -> Result<IdText, E> {
                Ok(IdText((!s.is_empty()).then(|| s.to_string())))
            }
            fn visit_i64<E>(self, n: i64) -> Result<IdText, E> {
                Ok(IdText(Some(n.to_string())))
            }
            fn visit_u64<E>(self, n: u64) -> Result<IdText, E> {
                Ok(IdText(Some(n.to_string())))
            }
            fn visit_f64<E>(self, _: f64) -> Result<IdText, E> {
                Ok(IdText(None))
            }
        }
        deserializer.deserialize_any(IdVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reason(payload: &[u8]) -> RejectReason {
        Visit::decode(Some(payload)).unwrap_err().reason
    }

    #[test]
    fn an_event_time_before_1970_is_refused() {
        assert_eq!(
            reason(br#"{"visit_id":"v","event_time":"1969-12-31T23:59:59Z"}"#),
            RejectReason::InvalidEventTime
        );
        assert!(Visit::decode(Some(
            br#"{"visit_id":"v","event_time":"1970-01-01T00:00:00Z"}"#
        ))
        .is_ok());
    }

    #[test]
    fn decodes_a_full_visit_and_ignores_other_fields() {
        let v = Visit::decode(Some(
            br#"{"visit_id":"v-1","event_time":"2026-11-21T10:00:01.500Z","page":"/home"}"#,
        ))
        .unwrap();
        assert_eq!(v.id, "v-1");
        assert_eq!(v.event_time.timestamp_millis(), 1_795_255_201_500);
    }

    #[test]
    fn accepts_integer_ids_and_offsets_in_event_time() {
        let v = Visit::decode(Some(
            br#"{"visit_id":42,"event_time":"2026-11-21T12:00:00+02:00"}"#,
        ))
        .unwrap();
        assert_eq!(v.id, "42");
        assert_eq!(v.event_time.to_rfc3339(), "2026-11-21T10:00:00+00:00");
    }

    #[test]
    fn classifies_every_kind_of_bad_record() {
        assert_eq!(
            Visit::decode(None).unwrap_err().reason,
            RejectReason::EmptyPayload
        );
        assert_eq!(reason(b"{not json"), RejectReason::InvalidJson);
        assert_eq!(reason(b"\xff\xfe"), RejectReason::InvalidJson);
        assert_eq!(reason(b"[1,2]"), RejectReason::NotAnObject);
        assert_eq!(
            reason(br#"{"event_time":"2026-11-21T10:00:00Z"}"#),
            RejectReason::MissingField
        );
        assert_eq!(
            reason(br#"{"visit_id":null,"event_time":"2026-11-21T10:00:00Z"}"#),
            RejectReason::MissingField
        );
        assert_eq!(reason(br#"{"visit_id":"a"}"#), RejectReason::MissingField);
        assert_eq!(
            reason(br#"{"visit_id":true,"event_time":"2026-11-21T10:00:00Z"}"#),
            RejectReason::WrongType
        );
        assert_eq!(
            reason(br#"{"visit_id":"a","event_time":1700000000}"#),
            RejectReason::WrongType
        );
        assert_eq!(
            reason(br#"{"visit_id":"a","event_time":"yesterday"}"#),
            RejectReason::InvalidEventTime
        );
    }

    #[test]
    fn rejection_detail_names_the_field() {
        let r = Visit::decode(Some(br#"{"visit_id":1.5,"event_time":"x"}"#)).unwrap_err();
        assert!(r.to_string().contains("visit_id"), "{r}");
    }

    fn visit_payloads() -> impl Strategy<Value = String> {
        let id = prop_oneof![
            Just(r#""v-1""#.to_string()),
            Just(r#""""#.to_string()),
            Just(r#""esc\"aped""#.to_string()),
            Just("42".to_string()),
            Just("-7".to_string()),
            Just("1.5".to_string()),
            Just("null".to_string()),
            Just("[1]".to_string()),
        ];
        let time = prop_oneof![
            Just(r#""2026-11-21T10:00:01.900Z""#.to_string()),
            Just(r#""2026-11-21T10:00:01+02:00""#.to_string()),
            Just(r#""2026-11-21 10:00:01""#.to_string()),
            Just(r#""yesterday""#.to_string()),
            Just("1795255205".to_string()),
            Just("null".to_string()),
        ];
        (id, time, any::<u8>()).prop_map(|(id, time, shape)| match shape % 6 {
            0 => format!(r#"{{"visit_id":{id},"event_time":{time},"page":"/p","duration_ms":5}}"#),
            1 => format!(r#"{{"event_time":{time},"visit_id":{id}}}"#),
            2 => format!(r#"{{"visit_id":{id}}}"#),
            3 => format!(r#"{{"visit_id":{id},"event_time":{time},"visit_id":"dup"}}"#),
            4 => format!(r#"[{id}]"#),
            _ => format!(r#"{{"visit_id":{id},"event_time":{time}"#),
        })
    }

    proptest! {
        #[test]
        fn fast_decoding_agrees_with_the_reference_decoder(payload in visit_payloads()) {
            let bytes = Some(payload.as_bytes());
            prop_assert_eq!(Visit::decode(bytes), Visit::decode_in_full(bytes));
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Visit::decode(Some(&bytes));
        }

        #[test]
        fn round_trips_any_valid_visit(id in "[a-zA-Z0-9-]{1,40}", ms in 0i64..4_102_444_800_000) {
            let t = DateTime::from_timestamp_millis(ms).unwrap();
            let json = serde_json::json!({"visit_id": id, "event_time": t.to_rfc3339()});
            let v = Visit::decode(Some(json.to_string().as_bytes())).unwrap();
            prop_assert_eq!(v.id, id);
            prop_assert_eq!(v.event_time, t);
        }
    }
}
