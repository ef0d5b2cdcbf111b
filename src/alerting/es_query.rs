//! Query A of an alert rule on the Elasticsearch data source: built as Grafana's data source
//! builds it (an `_msearch` with a time-range filter, a Lucene `query_string` and a
//! `date_histogram` with extended bounds) and read back as one time series.

use serde_json::{json, Value};

/// Metric aggregation of the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// `max`
    Max,
    /// `min`
    Min,
    /// `avg`
    Avg,
    /// `sum`
    Sum,
}

impl MetricKind {
    fn name(self) -> &'static str {
        match self {
            MetricKind::Max => "max",
            MetricKind::Min => "min",
            MetricKind::Avg => "avg",
            MetricKind::Sum => "sum",
        }
    }
}

/// Bucket size of the date histogram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistogramInterval {
    /// A fixed interval such as `1m`.
    Fixed(String),
    /// Grafana's `auto`: range / maxDataPoints, at least intervalMs.
    Auto {
        /// Lower bound (ms).
        interval_ms: i64,
        /// Most buckets wanted.
        max_data_points: i64,
    },
}

/// A supported Elasticsearch query model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EsQuery {
    /// Lucene query string (`*` when empty).
    pub query: String,
    /// Id of the metric aggregation in the model.
    pub metric_id: String,
    /// The metric aggregation.
    pub metric: MetricKind,
    /// The field aggregated.
    pub field: String,
    /// Id of the date histogram in the model.
    pub bucket_id: String,
    /// The histogram's time field.
    pub time_field: String,
    /// The histogram's interval.
    pub interval: HistogramInterval,
    /// The histogram's min_doc_count.
    pub min_doc_count: u64,
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl EsQuery {
    /// Reads a Grafana Elasticsearch query model, refusing what this evaluator does not
    /// implement (so a rule is never evaluated differently from Grafana in silence).
    pub fn from_model(model: &Value) -> Result<EsQuery, String> {
        if let Some(kind) = model["queryType"]
            .as_str()
            .filter(|k| !k.is_empty() && *k != "metrics")
        {
            return Err(format!(
                "query type {kind:?} is not supported (only metric queries)"
            ));
        }
        let metrics: Vec<&Value> = model["metrics"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["hide"] != true)
            .collect();
        let [metric] = metrics.as_slice() else {
            return Err(format!(
                "exactly one visible metric is supported, the model has {}",
                metrics.len()
            ));
        };
        let kind = match metric["type"].as_str().unwrap_or("") {
            "max" => MetricKind::Max,
            "min" => MetricKind::Min,
            "avg" => MetricKind::Avg,
            "sum" => MetricKind::Sum,
            other => {
                return Err(format!(
                    "metric type {other:?} is not supported (max, min, avg, sum)"
                ))
            }
        };
        let field = metric["field"]
            .as_str()
            .filter(|f| !f.is_empty())
            .ok_or("the metric has no field")?
            .to_string();
        let buckets = model["bucketAggs"].as_array().cloned().unwrap_or_default();
        let [bucket] = buckets.as_slice() else {
            return Err(format!(
                "exactly one bucket aggregation (date_histogram) is supported, the model has {}",
                buckets.len()
            ));
        };
        if bucket["type"] != "date_histogram" {
            return Err(format!(
                "bucket aggregation {} is not supported (date_histogram only)",
                bucket["type"]
            ));
        }
        let settings = &bucket["settings"];
        let interval = match text(&settings["interval"]).as_deref().unwrap_or("auto") {
            "auto" | "" => HistogramInterval::Auto {
                interval_ms: model["intervalMs"].as_i64().unwrap_or(1_000).max(1),
                max_data_points: model["maxDataPoints"].as_i64().unwrap_or(43_200).max(1),
            },
            fixed if humantime::parse_duration(fixed).is_ok() => {
                HistogramInterval::Fixed(fixed.to_string())
            }
            other => {
                return Err(format!(
                    "histogram interval {other:?} is not supported (auto or a duration like 1m)"
                ))
            }
        };
        if text(&settings["offset"]).is_some_and(|o| !o.is_empty())
            || text(&settings["timeZone"]).is_some_and(|z| z != "utc" && !z.is_empty())
        {
            return Err("histogram offset and time zone are not supported".into());
        }
        let time_field = bucket["field"]
            .as_str()
            .or_else(|| model["timeField"].as_str())
            .unwrap_or("@timestamp")
            .to_string();
        let query = model["query"]
            .as_str()
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .unwrap_or("*")
            .to_string();
        Ok(EsQuery {
            query,
            metric_id: text(&metric["id"]).ok_or("the metric has no id")?,
            metric: kind,
            field,
            bucket_id: text(&bucket["id"]).ok_or("the bucket aggregation has no id")?,
            time_field,
            interval,
            min_doc_count: text(&settings["min_doc_count"])
                .and_then(|m| m.parse().ok())
                .unwrap_or(0),
        })
    }

    fn fixed_interval(&self, from_ms: i64, to_ms: i64) -> String {
        match &self.interval {
            HistogramInterval::Fixed(interval) => interval.clone(),
            HistogramInterval::Auto {
                interval_ms,
                max_data_points,
            } => {
                let ms = ((to_ms - from_ms) / max_data_points).max(*interval_ms);
                format!("{}ms", ms.max(1))
            }
        }
    }

    /// The `_msearch` header and body for `index` over `[from_ms, to_ms]`.
    pub fn msearch(&self, index: &str, from_ms: i64, to_ms: i64) -> (Value, Value) {
        let header = json!({ "search_type": "query_then_fetch", "ignore_unavailable": true, "index": index });
        let body = json!({
            "size": 0,
            "query": { "bool": { "filter": [
                { "range": { self.time_field.clone(): { "gte": from_ms, "lte": to_ms, "format": "epoch_millis" } } },
                { "query_string": { "analyze_wildcard": true, "query": self.query } }
            ] } },
            "aggs": { self.bucket_id.clone(): {
                "date_histogram": {
                    "field": self.time_field,
                    "min_doc_count": self.min_doc_count,
                    "extended_bounds": { "min": from_ms, "max": to_ms },
                    "format": "epoch_millis",
                    "fixed_interval": self.fixed_interval(from_ms, to_ms)
                },
                "aggs": { self.metric_id.clone(): { self.metric.name(): { "field": self.field } } }
            } }
        });
        (header, body)
    }

    /// The series in one item of an `_msearch` response's `responses`: (bucket start ms,
    /// value), `None` for empty buckets.
    pub fn parse_item(&self, first: &Value) -> Result<Vec<(i64, Option<f64>)>, String> {
        if !first["error"].is_null() {
            let e = &first["error"];
            let reason = e["root_cause"][0]["reason"]
                .as_str()
                .or(e["reason"].as_str())
                .unwrap_or("unknown error");
            return Err(format!("Elasticsearch error: {reason}"));
        }
        let buckets = first["aggregations"][&self.bucket_id]["buckets"].as_array();
        Ok(buckets
            .into_iter()
            .flatten()
            .filter_map(|b| Some((b["key"].as_i64()?, b[&self.metric_id]["value"].as_f64())))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arbitrary_json::arbitrary_json;
    use proptest::prelude::*;

    proptest! {
        /// Any item of an `_msearch` reply gives a series or an error, never a panic.
        #[test]
        fn any_search_reply_gives_a_series_or_an_error(
            item in arbitrary_json(&["error", "root_cause", "reason", "aggregations", "2", "buckets", "key", "1", "value", "doc_count"]),
        ) {
            let q = EsQuery::from_model(&model()).unwrap();
            let _ = q.parse_item(&item);
        }
    }

    fn model() -> Value {
        json!({
            "refId": "A", "query": "job:\"visits-synchronizer\"",
            "metrics": [{"id": "1", "type": "max", "field": "p99"}],
            "bucketAggs": [{"id": "2", "type": "date_histogram", "field": "@timestamp",
                            "settings": {"interval": "1m", "min_doc_count": "0"}}],
            "timeField": "@timestamp"
        })
    }

    #[test]
    fn builds_the_request_grafana_sends() {
        let q = EsQuery::from_model(&model()).unwrap();
        let (header, body) = q.msearch("visits_sync_sla", 1_000, 601_000);
        assert_eq!(header["index"], "visits_sync_sla");
        assert_eq!(
            body["query"]["bool"]["filter"][0]["range"]["@timestamp"]["gte"],
            1_000
        );
        assert_eq!(
            body["query"]["bool"]["filter"][1]["query_string"]["query"],
            "job:\"visits-synchronizer\""
        );
        let hist = &body["aggs"]["2"]["date_histogram"];
        assert_eq!(hist["fixed_interval"], "1m");
        assert_eq!(hist["extended_bounds"]["max"], 601_000);
        assert_eq!(body["aggs"]["2"]["aggs"]["1"]["max"]["field"], "p99");
    }

    #[test]
    fn reads_buckets_and_errors() {
        let q = EsQuery::from_model(&model()).unwrap();
        let ok = json!({"responses": [{"aggregations": {"2": {"buckets": [
            {"key": 0, "doc_count": 1, "1": {"value": 12.5}},
            {"key": 60000, "doc_count": 0, "1": {"value": null}}]}}}]});
        assert_eq!(
            q.parse_item(&ok["responses"][0]).unwrap(),
            vec![(0, Some(12.5)), (60_000, None)]
        );
        let err = json!({"responses": [{"error": {"root_cause": [{"reason": "No mapping found for [p99]"}]}, "status": 400}]});
        assert!(q
            .parse_item(&err["responses"][0])
            .unwrap_err()
            .contains("No mapping"));
    }

    #[test]
    fn refuses_unsupported_models() {
        let mut m = model();
        m["metrics"] = json!([{"id": "1", "type": "percentiles", "field": "p99"}]);
        assert!(EsQuery::from_model(&m).unwrap_err().contains("percentiles"));
        let mut m = model();
        m["bucketAggs"] = json!([{"id": "2", "type": "terms", "field": "job"}]);
        assert!(EsQuery::from_model(&m).is_err());
        let mut m = model();
        m["metrics"] = json!([{"id": "1", "type": "max", "field": "p99"}, {"id": "3", "type": "max", "field": "p50"}]);
        assert!(EsQuery::from_model(&m).unwrap_err().contains("exactly one"));
        let mut m = model();
        m["bucketAggs"][0]["settings"]["interval"] = json!("$__interval");
        assert!(EsQuery::from_model(&m).is_err());
    }

    #[test]
    fn auto_interval_follows_the_range() {
        let mut m = model();
        m["bucketAggs"][0]["settings"]["interval"] = json!("auto");
        m["intervalMs"] = json!(1000);
        m["maxDataPoints"] = json!(100);
        let q = EsQuery::from_model(&m).unwrap();
        assert_eq!(
            q.msearch("i", 0, 600_000).1["aggs"]["2"]["date_histogram"]["fixed_interval"],
            "6000ms"
        );
    }
}
