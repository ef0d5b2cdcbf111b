//! A deterministic source of visit records, valid and deliberately broken, so that every
//! failure path downstream can be exercised. Pure: the caller supplies the clock.

use chrono::{DateTime, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::time::Duration;

/// What kind of record the generator produced, for its own report and for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKind {
    /// A well-formed visit with a current event time.
    Valid,
    /// A well-formed visit whose event time lies `late_by` in the past.
    Late,
    /// An exact copy of an earlier valid record (same key and value).
    Duplicate,
    /// Bytes that are not JSON.
    InvalidJson,
    /// A JSON object without `visit_id` or `event_time`.
    MissingField,
    /// A JSON object whose `visit_id` or `event_time` has the wrong type.
    WrongType,
}

impl RecordKind {
    /// Every kind, in report order.
    pub const ALL: [RecordKind; 6] = [
        RecordKind::Valid,
        RecordKind::Late,
        RecordKind::Duplicate,
        RecordKind::InvalidJson,
        RecordKind::MissingField,
        RecordKind::WrongType,
    ];

    /// Stable snake_case name, used in metrics and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Valid => "valid",
            RecordKind::Late => "late",
            RecordKind::Duplicate => "duplicate",
            RecordKind::InvalidJson => "invalid_json",
            RecordKind::MissingField => "missing_field",
            RecordKind::WrongType => "wrong_type",
        }
    }
}

/// Percentages (0–100) of each deliberately unusual kind of record; the rest are valid.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RecordMix {
    /// Percentage of records that are not JSON at all.
    pub invalid_json_pct: f64,
    /// Percentage of JSON records lacking a required field.
    pub missing_field_pct: f64,
    /// Percentage of JSON records with a required field of the wrong type.
    pub wrong_type_pct: f64,
    /// Percentage of records that repeat an earlier valid record.
    pub duplicate_pct: f64,
    /// Percentage of valid records whose event time is `late_by` in the past.
    pub late_pct: f64,
    /// How far in the past late records' event times lie.
    pub late_by: Duration,
}

/// Error returned when a [`RecordMix`] does not describe a valid distribution.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RecordMixError {
    /// A percentage is negative, not a number or above 100.
    #[error("{name} must be between 0 and 100, got {value}")]
    OutOfRange {
        /// The flag's name.
        name: &'static str,
        /// The offending value.
        value: f64,
    },
    /// The percentages add up to more than 100.
    #[error("the percentages of unusual records add up to {0}, more than 100")]
    TooMuch(f64),
}

impl RecordMix {
    fn shares(&self) -> [(&'static str, RecordKind, f64); 5] {
        [
            (
                "invalid-json-pct",
                RecordKind::InvalidJson,
                self.invalid_json_pct,
            ),
            (
                "missing-field-pct",
                RecordKind::MissingField,
                self.missing_field_pct,
            ),
            ("wrong-type-pct", RecordKind::WrongType, self.wrong_type_pct),
            ("duplicate-pct", RecordKind::Duplicate, self.duplicate_pct),
            ("late-pct", RecordKind::Late, self.late_pct),
        ]
    }

    /// Checks that every percentage is within 0–100 and that they sum to at most 100.
    pub fn validate(&self) -> Result<(), RecordMixError> {
        let mut total = 0.0;
        for (name, _, value) in self.shares() {
            if !(0.0..=100.0).contains(&value) {
                return Err(RecordMixError::OutOfRange { name, value });
            }
            total += value;
        }
        if total > 100.0 + 1e-9 {
            return Err(RecordMixError::TooMuch(total));
        }
        Ok(())
    }
}

/// One record to produce: key, value and what kind it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedRecord {
    /// The record key (the visit id for decodable records).
    pub key: Option<String>,
    /// The record value.
    pub value: Vec<u8>,
    /// What the record is meant to exercise.
    pub kind: RecordKind,
}

const PAGES: [&str; 8] = [
    "/",
    "/products",
    "/products/42",
    "/products/7",
    "/cart",
    "/checkout",
    "/account",
    "/search?q=shoes",
];
const REFERRERS: [&str; 5] = [
    "",
    "https://www.google.com/",
    "https://duckduckgo.com/",
    "https://news.ycombinator.com/",
    "https://t.co/abc",
];
const DEVICES: [&str; 3] = ["desktop", "mobile", "tablet"];

/// Produces visit records; the same seed and clock readings give the same records.
#[derive(Debug)]
pub struct VisitGenerator {
    rng: StdRng,
    mix: RecordMix,
    seed: u64,
    sequence: u64,
    last_valid: Option<GeneratedRecord>,
}

impl VisitGenerator {
    /// Creates a generator. The mix must have been validated.
    pub fn new(seed: u64, mix: RecordMix) -> Self {
        VisitGenerator {
            rng: StdRng::seed_from_u64(seed),
            mix,
            seed,
            sequence: 0,
            last_valid: None,
        }
    }

    /// The next record, with `now` as the event time of a current visit.
    pub fn next_record(&mut self, now: DateTime<Utc>) -> GeneratedRecord {
        let kind = self.pick_kind();
        self.sequence += 1;
        match kind {
            RecordKind::Duplicate => match &self.last_valid {
                Some(previous) => GeneratedRecord {
                    kind: RecordKind::Duplicate,
                    ..previous.clone()
                },
                None => self.valid(now, RecordKind::Valid),
            },
            RecordKind::Valid => self.valid(now, RecordKind::Valid),
            RecordKind::Late => {
                let late = chrono::Duration::from_std(self.mix.late_by)
                    .unwrap_or(chrono::Duration::zero());
                self.valid(now - late, RecordKind::Late)
            }
            RecordKind::InvalidJson => GeneratedRecord {
                key: Some(self.visit_id()),
                value: format!("{{\"visit_id\": \"{}\", \"event_time\": ", self.visit_id())
                    .into_bytes(),
                kind,
            },
            RecordKind::MissingField => {
                let mut visit = self.visit_json(now);
                let field = if self.rng.random_bool(0.5) {
                    "visit_id"
                } else {
                    "event_time"
                };
                visit.as_object_mut().expect("object").remove(field);
                GeneratedRecord {
                    key: Some(self.visit_id()),
                    value: visit.to_string().into_bytes(),
                    kind,
                }
            }
            RecordKind::WrongType => {
                let mut visit = self.visit_json(now);
                if self.rng.random_bool(0.5) {
                    visit["visit_id"] = json!({"nested": true});
                } else {
                    visit["event_time"] = json!(now.timestamp());
                }
                GeneratedRecord {
                    key: Some(self.visit_id()),
                    value: visit.to_string().into_bytes(),
                    kind,
                }
            }
        }
    }

    fn pick_kind(&mut self) -> RecordKind {
        let roll: f64 = self.rng.random_range(0.0..100.0);
        let mut threshold = 0.0;
        for (_, kind, pct) in self.mix.shares() {
            threshold += pct;
            if roll < threshold {
                return kind;
            }
        }
        RecordKind::Valid
    }

    fn visit_id(&self) -> String {
        format!("{:08x}-{:010}", self.seed as u32, self.sequence)
    }

    fn visit_json(&mut self, event_time: DateTime<Utc>) -> serde_json::Value {
        let user = self.rng.random_range(1..=5_000u32);
        json!({
            "visit_id": self.visit_id(),
            "event_time": event_time.to_rfc3339_opts(SecondsFormat::Millis, true),
            "user_id": format!("user-{user}"),
            "page": PAGES[self.rng.random_range(0..PAGES.len())],
            "referrer": REFERRERS[self.rng.random_range(0..REFERRERS.len())],
            "device": DEVICES[self.rng.random_range(0..DEVICES.len())],
            "duration_ms": self.rng.random_range(100..120_000u32),
        })
    }

    fn valid(&mut self, event_time: DateTime<Utc>, kind: RecordKind) -> GeneratedRecord {
        let record = GeneratedRecord {
            key: Some(self.visit_id()),
            value: self.visit_json(event_time).to_string().into_bytes(),
            kind,
        };
        self.last_valid = Some(record.clone());
        record
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::rejection::RejectReason;
    use crate::record::visit::Visit;
    use std::collections::HashMap;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-21T10:00:00Z")
            .unwrap()
            .into()
    }

    fn mix() -> RecordMix {
        RecordMix {
            invalid_json_pct: 5.0,
            missing_field_pct: 5.0,
            wrong_type_pct: 5.0,
            duplicate_pct: 5.0,
            late_pct: 5.0,
            late_by: Duration::from_secs(300),
        }
    }

    #[test]
    fn same_seed_same_records() {
        let mut a = VisitGenerator::new(7, mix());
        let mut b = VisitGenerator::new(7, mix());
        for _ in 0..500 {
            assert_eq!(a.next_record(now()), b.next_record(now()));
        }
    }

    #[test]
    fn each_kind_decodes_as_intended() {
        let mut g = VisitGenerator::new(3, mix());
        let mut counts: HashMap<RecordKind, usize> = HashMap::new();
        for _ in 0..20_000 {
            let r = g.next_record(now());
            *counts.entry(r.kind).or_default() += 1;
            let decoded = Visit::decode(Some(&r.value));
            match r.kind {
                RecordKind::Valid => assert_eq!(decoded.unwrap().event_time, now()),
                // A duplicate repeats the previous decodable record, which may be a late one.
                RecordKind::Duplicate => assert!(decoded.is_ok()),
                RecordKind::Late => assert_eq!(
                    decoded.unwrap().event_time,
                    now() - chrono::Duration::seconds(300)
                ),
                RecordKind::InvalidJson => {
                    assert_eq!(decoded.unwrap_err().reason, RejectReason::InvalidJson)
                }
                RecordKind::MissingField => {
                    assert_eq!(decoded.unwrap_err().reason, RejectReason::MissingField)
                }
                RecordKind::WrongType => {
                    assert_eq!(decoded.unwrap_err().reason, RejectReason::WrongType)
                }
            }
        }
        for kind in RecordKind::ALL {
            let share = counts[&kind] as f64 / 20_000.0 * 100.0;
            let expected = if kind == RecordKind::Valid { 75.0 } else { 5.0 };
            assert!((share - expected).abs() < 1.5, "{kind:?}: {share}%");
        }
    }

    #[test]
    fn duplicates_repeat_an_earlier_record_exactly() {
        let mut g = VisitGenerator::new(
            11,
            RecordMix {
                duplicate_pct: 50.0,
                ..Default::default()
            },
        );
        let mut previous: Option<GeneratedRecord> = None;
        for _ in 0..200 {
            let r = g.next_record(now());
            if r.kind == RecordKind::Duplicate {
                let p = previous.as_ref().unwrap();
                assert_eq!((&r.key, &r.value), (&p.key, &p.value));
            }
            previous = Some(r);
        }
    }

    #[test]
    fn rejects_impossible_mixes() {
        let too_much = RecordMix {
            invalid_json_pct: 60.0,
            late_pct: 50.0,
            ..Default::default()
        };
        assert_eq!(too_much.validate(), Err(RecordMixError::TooMuch(110.0)));
        let negative = RecordMix {
            wrong_type_pct: -1.0,
            ..Default::default()
        };
        assert!(negative.validate().is_err());
        assert!(mix().validate().is_ok());
    }
}
