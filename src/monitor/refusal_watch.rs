//! Whether the monitor refuses every record it reads: a wrong `--start-time` pointer or format,
//! or a wrong input topic, makes every record a dead letter and every window empty, while the
//! per-reason warnings look like ordinary bad input. Per interval, this counts the records
//! measured and the records refused by the measurement (not late records: those are
//! measurable, only too late), and says when all of an interval's records were refused, by
//! which reasons, and which flag to check. No I/O: the partition stage feeds it and acts.

use crate::record::rejection::RejectReason;
use std::collections::BTreeMap;

/// How long each judged interval lasts.
pub const INTERVAL_MS: i64 = 30_000;

/// An interval in which every record read was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllRefused {
    /// Records refused in the interval.
    pub records: u64,
    /// How many for each reason, most frequent first.
    pub reasons: Vec<(RejectReason, u64)>,
}

impl AllRefused {
    /// One line for the log and `/readyz`: the count, the reasons, what to check.
    pub fn describe(&self, settings: &str) -> String {
        let reasons: Vec<String> = self
            .reasons
            .iter()
            .map(|(reason, n)| format!("{reason} {n}"))
            .collect();
        let check = self
            .reasons
            .first()
            .map_or("--start-time", |(reason, _)| flag_to_check(*reason));
        format!(
            "all {} records of the last {} s were refused ({}): check {check} ({settings}); \
             they are on the dead-letter topic with their reasons",
            self.records,
            INTERVAL_MS / 1_000,
            reasons.join(", ")
        )
    }
}

/// The flag most likely wrong when every record is refused for `reason`.
pub fn flag_to_check(reason: RejectReason) -> &'static str {
    match reason {
        RejectReason::MissingField
        | RejectReason::WrongType
        | RejectReason::MissingHeader
        | RejectReason::InvalidStamp
        | RejectReason::NegativeValue
        | RejectReason::InvalidEventTime => "--start-time (or --end-time when it reads the record)",
        RejectReason::StampOutOfRange
        | RejectReason::ImplausibleLatency
        | RejectReason::ClockSkew => "--start-time-format (the stamp's unit) and --max-latency",
        RejectReason::EmptyPayload | RejectReason::InvalidJson | RejectReason::NotAnObject => {
            "--input-topic (its records are not JSON objects) or --start-time header:…"
        }
        RejectReason::MissingTimestamp | RejectReason::TimestampInFuture => {
            "--end-time and --max-future"
        }
        RejectReason::Late | RejectReason::TooLarge => "--input-topic",
    }
}

/// The records of the current interval and the verdict on the last one.
#[derive(Debug, Default)]
pub struct RefusalWatch {
    interval_start: Option<i64>,
    measured: u64,
    refused: BTreeMap<RejectReason, u64>,
    verdict: Option<AllRefused>,
}

impl RefusalWatch {
    /// A record measured (its latency is known; it may still be late).
    pub fn measured(&mut self, now_ms: i64) {
        self.start(now_ms);
        self.measured += 1;
    }

    /// A record the measurement refused for `reason`.
    pub fn refused(&mut self, reason: RejectReason, now_ms: i64) {
        self.start(now_ms);
        *self.refused.entry(reason).or_default() += 1;
    }

    fn start(&mut self, now_ms: i64) {
        self.interval_start.get_or_insert(now_ms);
    }

    /// Ends the interval when it has lasted [`INTERVAL_MS`] at `now_ms`: returns the new
    /// verdict when it changed (`Some(Some(_))`: every record of the interval was refused;
    /// `Some(None)`: no longer so). An interval without records keeps the verdict.
    pub fn tick(&mut self, now_ms: i64) -> Option<Option<AllRefused>> {
        let start = self.interval_start?;
        if now_ms - start < INTERVAL_MS {
            return None;
        }
        let refused: u64 = self.refused.values().sum();
        let verdict = (self.measured == 0 && refused > 0).then(|| {
            let mut reasons: Vec<(RejectReason, u64)> =
                std::mem::take(&mut self.refused).into_iter().collect();
            reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            AllRefused {
                records: refused,
                reasons,
            }
        });
        self.interval_start = None;
        self.measured = 0;
        self.refused.clear();
        let changed = match (&self.verdict, &verdict) {
            (None, None) => false,
            (Some(_), Some(_)) => true, // new counts: said again
            _ => true,
        };
        self.verdict = verdict.clone();
        changed.then_some(verdict)
    }

    /// Whether the last judged interval's records were all refused.
    pub fn all_refused(&self) -> Option<&AllRefused> {
        self.verdict.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interval_of_refused_records_only_is_said_with_its_reasons_and_flag() {
        let mut watch = RefusalWatch::default();
        for i in 0..10 {
            watch.refused(RejectReason::MissingField, i);
        }
        watch.refused(RejectReason::WrongType, 20);
        assert_eq!(
            watch.tick(INTERVAL_MS - 1),
            None,
            "the interval is not over"
        );
        let verdict = watch.tick(INTERVAL_MS).unwrap().unwrap();
        assert_eq!(verdict.records, 11);
        assert_eq!(
            verdict.reasons,
            vec![
                (RejectReason::MissingField, 10),
                (RejectReason::WrongType, 1)
            ]
        );
        let line = verdict.describe("now field:/start_processing_time_ms, unix_ms");
        assert!(line.starts_with("all 11 records of the last 30 s were refused (missing_field 10, wrong_type 1): check --start-time"), "{line}");
        assert!(watch.all_refused().is_some());
    }

    #[test]
    fn one_measured_record_clears_it_and_silence_keeps_it() {
        let mut watch = RefusalWatch::default();
        watch.refused(RejectReason::InvalidStamp, 0);
        assert!(watch.tick(INTERVAL_MS).unwrap().is_some());
        // No records at all: nothing judged, the verdict stays.
        assert_eq!(watch.tick(3 * INTERVAL_MS), None);
        assert!(watch.all_refused().is_some());
        watch.refused(RejectReason::InvalidStamp, 4 * INTERVAL_MS);
        watch.measured(4 * INTERVAL_MS + 1);
        assert_eq!(watch.tick(5 * INTERVAL_MS), Some(None));
        assert!(watch.all_refused().is_none());
        watch.measured(6 * INTERVAL_MS);
        assert_eq!(
            watch.tick(7 * INTERVAL_MS),
            None,
            "unchanged: nothing to say"
        );
    }

    #[test]
    fn every_reason_names_a_flag() {
        for reason in RejectReason::ALL {
            assert!(flag_to_check(reason).starts_with("--"), "{reason}");
        }
    }
}
