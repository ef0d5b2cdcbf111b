//! The document written per source-time window: how many records entered the pipeline in
//! it and what became of each, as of the monitor's merged progress. Written again as the
//! progress moves (same id), last when final.

use super::ledger::WindowAccount;
use crate::event_time::window_document::iso;
use serde::Serialize;

/// One source-time window's completeness, as stored in the sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompletenessDocument {
    /// Stable identity: `{job}-completeness-{window start ms}`, so each version replaces the
    /// last (and a JSON-lines file holding window documents too tells them apart).
    #[serde(skip)]
    pub id: String,
    /// Window start (ISO-8601 UTC): when its records entered the pipeline.
    #[serde(rename = "@timestamp")]
    pub timestamp: String,
    /// Window end (ISO-8601 UTC, exclusive).
    pub window_end: String,
    /// Window start in Unix ms.
    pub window_start_ms: i64,
    /// Which monitored pipeline this is (the monitor's `--job-name`).
    pub job: String,
    /// The source topic the pipeline reads.
    pub source_topic: String,
    /// The merged progress this version is as of (ISO-8601 UTC).
    pub as_of: String,
    /// The merged progress in Unix ms.
    pub as_of_ms: i64,
    /// Whether no later arrival can change it (`as_of` is `lost_after` past the window).
    #[serde(rename = "final")]
    pub is_final: bool,
    /// The SLA (ms) arrivals are judged against, from the source record's timestamp.
    pub sla_ms: i64,
    /// After how long (ms) a missing record is lost.
    pub lost_after_ms: i64,
    /// Source records in the window; the sum of the eight classes below.
    pub expected: u64,
    /// Arrived within the SLA.
    pub arrived_within_sla: u64,
    /// Arrived after the SLA (within `lost_after`).
    pub arrived_late: u64,
    /// Dead-lettered by a stage.
    pub dead_lettered: u64,
    /// Declared filtered by a stage.
    pub filtered: u64,
    /// Missing, entered less than the SLA before `as_of`.
    pub in_flight: u64,
    /// Missing past the SLA: a miss now.
    pub overdue: u64,
    /// Missing past `lost_after`.
    pub lost: u64,
    /// Missing, and deleted from the source by retention before it could be checked.
    pub unknown: u64,
    /// Arrivals beyond the first of a record (not part of `expected`).
    pub duplicates: u64,
    /// Records counting against the SLA: `arrived_late + overdue + lost`.
    pub misses: u64,
    /// Records missing past the SLA now: `overdue + lost`.
    pub missing: u64,
    /// How long the oldest missing record has been missing at most (ms): `as_of` minus the
    /// window's start (its record entered the source at or after it); absent when nothing is
    /// missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_missing_age_ms: Option<i64>,
    /// Source partitions with a missing record, and the first missing offset of each:
    /// `"partition:offset"`, for the runbook (read it with any Kafka consumer).
    pub first_missing: Vec<String>,
}

/// What every document of one monitor shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletenessIdentity {
    /// `--job-name`.
    pub job: String,
    /// `--source-topic`.
    pub source_topic: String,
    /// Window length (ms).
    pub window_ms: i64,
    /// `--sla` (ms).
    pub sla_ms: i64,
    /// `--lost-after` (ms).
    pub lost_after_ms: i64,
}

impl CompletenessDocument {
    /// The document of one accounted window as of `as_of_ms`.
    pub fn new(identity: &CompletenessIdentity, as_of_ms: i64, account: &WindowAccount) -> Self {
        let c = &account.completeness;
        let start = account.window_start;
        let missing = c.overdue + c.lost;
        CompletenessDocument {
            id: format!("{}-completeness-{start}", identity.job),
            timestamp: iso(start),
            window_end: iso(start + identity.window_ms),
            window_start_ms: start,
            job: identity.job.clone(),
            source_topic: identity.source_topic.clone(),
            as_of: iso(as_of_ms),
            as_of_ms,
            is_final: account.is_final,
            sla_ms: identity.sla_ms,
            lost_after_ms: identity.lost_after_ms,
            expected: c.expected,
            arrived_within_sla: c.arrived_within_sla,
            arrived_late: c.arrived_late,
            dead_lettered: c.dead_lettered,
            filtered: c.filtered,
            in_flight: c.in_flight,
            overdue: c.overdue,
            lost: c.lost,
            unknown: c.unknown,
            duplicates: c.duplicates,
            misses: c.misses(),
            missing,
            oldest_missing_age_ms: (missing > 0).then_some(as_of_ms - start),
            first_missing: c
                .first_missing
                .iter()
                .map(|(p, o)| format!("{p}:{o}"))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::completeness::accounting::Completeness;
    use std::collections::BTreeMap;

    #[test]
    fn a_document_says_what_became_of_every_record() {
        let identity = CompletenessIdentity {
            job: "pipeline".into(),
            source_topic: "visits".into(),
            window_ms: 60_000,
            sla_ms: 1_000,
            lost_after_ms: 600_000,
        };
        let account = WindowAccount {
            window_start: 1_800_000_000_000,
            is_final: false,
            completeness: Completeness {
                expected: 10,
                arrived_within_sla: 6,
                arrived_late: 1,
                overdue: 2,
                in_flight: 1,
                duplicates: 3,
                first_missing: BTreeMap::from([(2, 41)]),
                ..Completeness::default()
            },
        };
        let document = CompletenessDocument::new(&identity, 1_800_000_090_000, &account);
        let json = serde_json::to_value(&document).unwrap();
        assert_eq!(document.id, "pipeline-completeness-1800000000000");
        assert_eq!(json["@timestamp"], "2027-01-15T08:00:00.000Z");
        assert_eq!(json["final"], false);
        assert_eq!(json["misses"], 3, "one late, two overdue");
        assert_eq!(json["missing"], 2);
        assert_eq!(json["oldest_missing_age_ms"], 90_000);
        assert_eq!(json["first_missing"], serde_json::json!(["2:41"]));
    }
}
