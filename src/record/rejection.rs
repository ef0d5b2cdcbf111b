//! Why a record was refused: a small, fixed set of reasons shared by every job, usable as
//! metric labels and dead-letter headers, plus the JSON helpers the decoders share.

use serde_json::{Map, Value};

/// Why a record was refused; the label names are stable (dashboards and alerts use them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// The record has no value (a tombstone or an empty payload).
    EmptyPayload,
    /// The value is not valid UTF-8 JSON.
    InvalidJson,
    /// The value is JSON but not an object.
    NotAnObject,
    /// A required field is absent or null.
    MissingField,
    /// A required field has the wrong JSON type.
    WrongType,
    /// `event_time` is a string but not an RFC 3339 / ISO-8601 date-time.
    InvalidEventTime,
    /// A numeric field that must not be negative is negative.
    NegativeValue,
    /// The Kafka record carries no timestamp, so it has no event time.
    MissingTimestamp,
    /// The record's timestamp lies further in the future than the job tolerates.
    TimestampInFuture,
    /// The record arrived after its event-time window had closed.
    Late,
    /// The latency is above the plausible maximum (a broken stamp, not a slow pipeline).
    ImplausibleLatency,
    /// The stamp lies after the record's timestamp by more than the tolerated clock skew.
    ClockSkew,
    /// The record (or what the job makes of it) is larger than the producer may send
    /// (`message.max.bytes`) or the broker accepts.
    TooLarge,
    /// The header a latency stamp is read from (`--start-time header:…`) is absent.
    MissingHeader,
    /// A latency stamp is text or bytes that are not a time in the configured format.
    InvalidStamp,
    /// A latency stamp is a number too large to be a time in the configured unit.
    StampOutOfRange,
}

impl RejectReason {
    /// Every reason, so that each job's rejection counters exist (at 0) from its start and
    /// alerts on their rate or absence work.
    pub const ALL: [RejectReason; 16] = [
        RejectReason::EmptyPayload,
        RejectReason::InvalidJson,
        RejectReason::NotAnObject,
        RejectReason::MissingField,
        RejectReason::WrongType,
        RejectReason::InvalidEventTime,
        RejectReason::NegativeValue,
        RejectReason::MissingTimestamp,
        RejectReason::TimestampInFuture,
        RejectReason::Late,
        RejectReason::ImplausibleLatency,
        RejectReason::ClockSkew,
        RejectReason::TooLarge,
        RejectReason::MissingHeader,
        RejectReason::InvalidStamp,
        RejectReason::StampOutOfRange,
    ];

    /// The stable snake_case name used in metric labels and dead-letter headers.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::EmptyPayload => "empty_payload",
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::NotAnObject => "not_an_object",
            RejectReason::MissingField => "missing_field",
            RejectReason::WrongType => "wrong_type",
            RejectReason::InvalidEventTime => "invalid_event_time",
            RejectReason::NegativeValue => "negative_value",
            RejectReason::MissingTimestamp => "missing_timestamp",
            RejectReason::TimestampInFuture => "timestamp_in_future",
            RejectReason::Late => "late",
            RejectReason::ImplausibleLatency => "implausible_latency",
            RejectReason::ClockSkew => "clock_skew",
            RejectReason::TooLarge => "too_large",
            RejectReason::MissingHeader => "missing_header",
            RejectReason::InvalidStamp => "invalid_stamp",
            RejectReason::StampOutOfRange => "stamp_out_of_range",
        }
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record that failed validation: the reason (for counting) and a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Rejection {
    /// The category, used for metrics and the dead-letter `dlq.reason` header.
    pub reason: RejectReason,
    /// What exactly was wrong, e.g. which field.
    pub detail: String,
}

impl Rejection {
    /// Builds a rejection from a reason and a detail message.
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
        }
    }
}

/// Parses a record value as a JSON object, the first step of every decoder.
pub(crate) fn decode_object(payload: Option<&[u8]>) -> Result<Map<String, Value>, Rejection> {
    let bytes = match payload {
        Some(b) if !b.is_empty() => b,
        _ => {
            return Err(Rejection::new(
                RejectReason::EmptyPayload,
                "record has no value",
            ))
        }
    };
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| Rejection::new(RejectReason::InvalidJson, e.to_string()))?;
    match value {
        Value::Object(object) => Ok(object),
        other => Err(Rejection::new(
            RejectReason::NotAnObject,
            format!("expected a JSON object, got {}", json_type(&other)),
        )),
    }
}

/// Returns a field of a JSON object, or a `MissingField` rejection when it is absent or null.
pub(crate) fn required<'a>(
    object: &'a Map<String, Value>,
    field: &str,
) -> Result<&'a Value, Rejection> {
    match object.get(field) {
        None | Some(Value::Null) => Err(Rejection::new(
            RejectReason::MissingField,
            format!("{field} is missing"),
        )),
        Some(v) => Ok(v),
    }
}

/// The JSON type name of a value, for error messages.
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_reason_once() {
        // Adding a variant breaks this match, which is the reminder to list it in ALL.
        let position = |r: RejectReason| match r {
            RejectReason::EmptyPayload => 0,
            RejectReason::InvalidJson => 1,
            RejectReason::NotAnObject => 2,
            RejectReason::MissingField => 3,
            RejectReason::WrongType => 4,
            RejectReason::InvalidEventTime => 5,
            RejectReason::NegativeValue => 6,
            RejectReason::MissingTimestamp => 7,
            RejectReason::TimestampInFuture => 8,
            RejectReason::Late => 9,
            RejectReason::ImplausibleLatency => 10,
            RejectReason::ClockSkew => 11,
            RejectReason::TooLarge => 12,
            RejectReason::MissingHeader => 13,
            RejectReason::InvalidStamp => 14,
            RejectReason::StampOutOfRange => 15,
        };
        let positions: Vec<usize> = RejectReason::ALL.iter().map(|&r| position(r)).collect();
        assert_eq!(positions, (0..16).collect::<Vec<_>>());
    }
}
