//! The document written per closed window: what Grafana and the alert rule read.

use crate::dimension::spec::{key_values, OTHER_VALUE};
use crate::distribution::latency_histogram::WindowHistogram;
use crate::event_time::merge::{Figures, ValueWindow};
use crate::event_time::window::WindowResult;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// One window's latency summary, as stored in the sink.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowDocument {
    /// Stable identity: `{job}-{window start ms}`, so a replay overwrites instead of duplicating.
    #[serde(skip)]
    pub id: String,
    /// Window start (ISO-8601 UTC): the document's time for dashboards.
    #[serde(rename = "@timestamp")]
    pub timestamp: String,
    /// Window end (ISO-8601 UTC, exclusive).
    pub window_end: String,
    /// Window start in Unix ms.
    pub window_start_ms: i64,
    /// Which monitored pipeline this is (the monitor's `--job-name`).
    pub job: String,
    /// Records in the window.
    pub count: u64,
    /// Latency percentiles (ms), keyed `p50`, `p75`, `p90`, `p99`, `p99_9`, …
    #[serde(flatten)]
    pub percentiles: Map<String, Value>,
    /// Smallest latency (ms).
    pub min: f64,
    /// Largest latency (ms).
    pub max: f64,
    /// Mean latency (ms).
    pub mean: f64,
    /// The SLA threshold (ms) the window was judged against.
    pub sla_ms: i64,
    /// Records whose latency exceeded the SLA.
    pub over_sla_count: u64,
    /// Records within the SLA (`count - over_sla_count`), for burn-rate queries.
    pub within_sla_count: u64,
    /// Whether the percentiles are exact (small window) or t-digest estimates.
    pub exact: bool,
    /// The whole latency distribution (Elasticsearch `histogram` field): exact counts per
    /// latency for windows up to the exact threshold, buckets within a proved bound above (see
    /// [`crate::distribution::latency_histogram`]). Absent only while a part came from an older release.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_histogram: Option<WindowHistogram>,
    /// In a dimension value's document (`--dimension`): each dimension's name and the value;
    /// in the document of the values without one of their own, every name maps to
    /// `__other__`. Absent in whole-window documents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<BTreeMap<String, String>>,
    /// In a dimension value's document: how many of its records may be counted under
    /// `__other__` instead (0: its figures hold every one of its records). Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records_elsewhere_at_most: Option<u64>,
}

/// The field name of quantile `q`: 0.5 → `p50`, 0.999 → `p99_9`.
pub fn percentile_field(q: f64) -> String {
    let pct = format!("{:.4}", q * 100.0);
    let pct = pct.trim_end_matches('0').trim_end_matches('.');
    format!("p{}", pct.replace('.', "_"))
}

/// A percentile as stored: rounded to the nanosecond (six decimals of a millisecond). The
/// interpolation between two whole-millisecond latencies leaves binary floating-point noise
/// (`1074.5700000000002` for 1074.57); the rounding removes it and moves no value by more than
/// half a nanosecond.
pub fn stored_percentile(ms: f64) -> f64 {
    if ms.is_finite() {
        (ms * 1e6).round() / 1e6
    } else {
        ms
    }
}

/// A Unix-ms time as the documents store it: ISO-8601 UTC with milliseconds.
pub(crate) fn iso(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl WindowDocument {
    /// Builds the document of a closed window for `job`.
    pub fn new(job: &str, sla_ms: i64, result: &WindowResult) -> Self {
        let figures = Figures {
            stats: result.stats.clone(),
            over_sla: result.over_sla,
            histogram: result.histogram.clone(),
        };
        Self::of_figures(job, sla_ms, result.start_ms, result.end_ms, &figures)
    }

    /// Builds the document of one dimension value of `job`'s window `[start_ms, end_ms)`,
    /// `names` being the job's dimension names in order (`--dimension`). Its id is the whole
    /// window's followed by a digest of the value, so a replay overwrites it.
    pub fn of_value(
        job: &str,
        sla_ms: i64,
        (start_ms, end_ms): (i64, i64),
        names: &[&str],
        value: &ValueWindow,
    ) -> Self {
        let mut document = Self::of_figures(job, sla_ms, start_ms, end_ms, &value.figures);
        let values: Vec<&str> = if value.key == OTHER_VALUE {
            vec![OTHER_VALUE; names.len()]
        } else {
            key_values(&value.key).collect()
        };
        document.dimensions = Some(
            names
                .iter()
                .zip(values)
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        );
        document.records_elsewhere_at_most = value.missing_at_most;
        let digest = Sha256::digest(value.key.as_bytes());
        document.id = format!("{}-{}", document.id, crate::hex::hex(&digest[..8]));
        document
    }

    fn of_figures(job: &str, sla_ms: i64, start_ms: i64, end_ms: i64, figures: &Figures) -> Self {
        let stats = &figures.stats;
        let percentiles = stats
            .quantiles
            .iter()
            .map(|&(q, v)| (percentile_field(q), Value::from(stored_percentile(v))))
            .collect();
        WindowDocument {
            id: format!("{job}-{start_ms}"),
            timestamp: iso(start_ms),
            window_end: iso(end_ms),
            window_start_ms: start_ms,
            job: job.to_string(),
            count: stats.count,
            percentiles,
            min: stats.min,
            max: stats.max,
            mean: stats.mean,
            sla_ms,
            over_sla_count: figures.over_sla,
            within_sla_count: stats.count - figures.over_sla,
            exact: stats.exact,
            latency_histogram: figures.histogram.clone(),
            dimensions: None,
            records_elsewhere_at_most: None,
        }
    }
}

#[cfg(test)]
impl WindowDocument {
    /// The document of `job`'s one-second window starting at `start_ms` holding one record of
    /// 5 ms (for tests of sinks).
    pub(crate) fn of_one_record(job: &str, start_ms: i64) -> Self {
        WindowDocument::new(
            job,
            100,
            &WindowResult {
                start_ms,
                end_ms: start_ms + 1_000,
                stats: one_record_of_5_ms(),
                over_sla: 0,
                histogram: None,
                parts: Default::default(),
                values: None,
            },
        )
    }
}

/// The statistics of one record of 5 ms (for tests).
#[cfg(test)]
fn one_record_of_5_ms() -> crate::distribution::digest::LatencyStats {
    crate::distribution::digest::LatencyStats {
        count: 1,
        min: 5.0,
        max: 5.0,
        mean: 5.0,
        quantiles: vec![(0.5, 5.0)],
        exact: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distribution::digest::LatencyStats;
    use std::collections::BTreeMap;

    #[test]
    fn stored_percentiles_carry_no_float_noise() {
        use crate::distribution::digest::exact_quantile;
        // 137 latencies of 1000, 1001, … ms: p99 interpolates at 134.64.
        let sorted: Vec<f64> = (0..137).map(|i| 1_000.0 + i as f64).collect();
        let raw = exact_quantile(&sorted, 0.99);
        assert_eq!(
            raw.to_string(),
            "1134.6399999999999",
            "the interpolation is noisy"
        );
        assert_eq!(stored_percentile(raw).to_string(), "1134.64");
        assert_eq!(stored_percentile(1074.5700000000002), 1074.57);
        assert_eq!(stored_percentile(12.0), 12.0);
        assert!((stored_percentile(1_234.567_890_4) - 1_234.567_890_4).abs() <= 5e-7);
        assert!(stored_percentile(f64::NAN).is_nan());
    }

    #[test]
    fn field_names() {
        assert_eq!(percentile_field(0.5), "p50");
        assert_eq!(percentile_field(0.99), "p99");
        assert_eq!(percentile_field(0.999), "p99_9");
        assert_eq!(percentile_field(0.75), "p75");
    }

    #[test]
    fn document_shape() {
        let result = WindowResult {
            start_ms: 1_795_255_200_000,
            end_ms: 1_795_255_260_000,
            stats: LatencyStats {
                count: 10,
                min: 1.0,
                max: 12_000.0,
                mean: 3_000.0,
                quantiles: vec![(0.5, 100.0), (0.99, 11_000.0)],
                exact: true,
            },
            over_sla: 3,
            histogram: None,
            parts: BTreeMap::new(),
            values: None,
        };
        let doc = WindowDocument::new("sync", 5_000, &result);
        assert_eq!(doc.id, "sync-1795255200000");
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["@timestamp"], "2026-11-21T10:00:00.000Z");
        assert_eq!(json["window_end"], "2026-11-21T10:01:00.000Z");
        assert_eq!(json["p99"], 11_000.0);
        assert_eq!(json["within_sla_count"], 7);
        assert!(json.get("id").is_none());
    }

    #[test]
    fn a_value_document_names_its_dimensions_and_whole_window_documents_do_not_change() {
        use crate::dimension::spec::KEY_SEPARATOR;
        let result = WindowDocument::of_one_record("checkout", 60_000);
        let whole = serde_json::to_value(&result).unwrap();
        assert!(whole.get("dimensions").is_none());
        assert!(whole.get("records_elsewhere_at_most").is_none());
        let figures = Figures {
            stats: one_record_of_5_ms(),
            over_sla: 0,
            histogram: None,
        };
        let gold = ValueWindow {
            key: format!("gold{KEY_SEPARATOR}eu"),
            figures: figures.clone(),
            missing_at_most: Some(0),
        };
        let names = ["tenant", "region"];
        let document = WindowDocument::of_value("checkout", 100, (60_000, 61_000), &names, &gold);
        let json = serde_json::to_value(&document).unwrap();
        assert_eq!(
            json["dimensions"],
            serde_json::json!({"tenant": "gold", "region": "eu"})
        );
        assert_eq!(json["records_elsewhere_at_most"], 0);
        assert_eq!(json["count"], whole["count"]);
        assert!(document.id.starts_with("checkout-60000-") && document.id != result.id);
        let again = WindowDocument::of_value("checkout", 100, (60_000, 61_000), &names, &gold);
        assert_eq!(again.id, document.id, "a replay overwrites");
        let other = ValueWindow {
            key: OTHER_VALUE.to_string(),
            figures,
            missing_at_most: None,
        };
        let other = WindowDocument::of_value("checkout", 100, (60_000, 61_000), &names, &other);
        let json = serde_json::to_value(&other).unwrap();
        assert_eq!(
            json["dimensions"],
            serde_json::json!({"tenant": "__other__", "region": "__other__"})
        );
        assert!(json.get("records_elsewhere_at_most").is_none());
        assert_ne!(other.id, document.id);
    }
}
