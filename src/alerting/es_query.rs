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

/// A metric aggregation over a field (`max` of `p99`), with its id in the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldMetric {
    /// Id in the model (the aggregation's name in the request).
    pub id: String,
    /// The aggregation.
    pub kind: MetricKind,
    /// The field aggregated.
    pub field: String,
}

/// What the query's one visible metric is.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueMetric {
    /// A metric over a field.
    Field(FieldMetric),
    /// A `bucket_script` pipeline aggregation over hidden metrics, computed by Elasticsearch
    /// per bucket (e.g. `params.p99 - params.sla` over `max(p99)` and `max(sla_ms)`).
    Script {
        /// Id in the model.
        id: String,
        /// The Painless script.
        script: String,
        /// Its variables: name and the (hidden) metric it reads.
        variables: Vec<(String, ScriptInput)>,
    },
}

/// What a `bucket_script` variable reads.
#[derive(Debug, Clone, PartialEq)]
pub enum ScriptInput {
    /// A metric over a field, in the same bucket.
    Metric(FieldMetric),
    /// A `moving_fn` over such a metric: its script over the `window` buckets before the
    /// bucket (shifted by `shift`), e.g. `MovingFunctions.sum(values)` over 60 one-minute
    /// buckets for the last hour. Grafana passes its settings to Elasticsearch as written.
    MovingFn {
        /// Id in the model.
        id: String,
        /// The metric it slides over.
        of: FieldMetric,
        /// Its settings (`window`, `script`, `shift`), as in the model.
        settings: serde_json::Map<String, Value>,
    },
}

impl ScriptInput {
    /// The field metric read, directly or through the moving function.
    pub fn metric(&self) -> &FieldMetric {
        match self {
            ScriptInput::Metric(m) | ScriptInput::MovingFn { of: m, .. } => m,
        }
    }

    fn id(&self) -> &str {
        match self {
            ScriptInput::Metric(m) => &m.id,
            ScriptInput::MovingFn { id, .. } => id,
        }
    }
}

impl ValueMetric {
    fn id(&self) -> &str {
        match self {
            ValueMetric::Field(m) => &m.id,
            ValueMetric::Script { id, .. } => id,
        }
    }
}

/// A `terms` bucket aggregation around the date histogram: one series per value of `field`
/// (labelled `field=value`), hence one alert instance per value — a multi-dimensional rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terms {
    /// Id in the model.
    pub id: String,
    /// The field whose values split the series (e.g. `job`).
    pub field: String,
    /// Most values (Grafana: the `size` setting, 500 when absent or 0).
    pub size: u64,
    /// `orderBy` (`_key`, `_count`, `_term`), as Grafana passes it on.
    pub order_by: Option<String>,
    /// `order` (`desc` unless set).
    pub order: String,
    /// `min_doc_count`, if set.
    pub min_doc_count: Option<u64>,
}

/// A supported Elasticsearch query model.
#[derive(Debug, Clone, PartialEq)]
pub struct EsQuery {
    /// Lucene query string (`*` when empty).
    pub query: String,
    /// The one visible metric: the series' values.
    pub value: ValueMetric,
    /// The terms aggregations splitting the series, outermost first (none, `job`, or `job`
    /// then a dimension's value: one series per combination).
    pub group_by: Vec<Terms>,
    /// Id of the date histogram in the model.
    pub bucket_id: String,
    /// The histogram's time field.
    pub time_field: String,
    /// The histogram's interval.
    pub interval: HistogramInterval,
    /// The histogram's min_doc_count.
    pub min_doc_count: u64,
}

/// A JSON string or number as text (a term's key, a model setting).
pub(crate) fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn field_metric(metric: &Value) -> Result<FieldMetric, String> {
    let kind = match metric["type"].as_str().unwrap_or("") {
        "max" => MetricKind::Max,
        "min" => MetricKind::Min,
        "avg" => MetricKind::Avg,
        "sum" => MetricKind::Sum,
        other => {
            return Err(format!(
                "metric type {other:?} is not supported (max, min, avg, sum, or bucket_script over them)"
            ))
        }
    };
    Ok(FieldMetric {
        id: text(&metric["id"]).ok_or("the metric has no id")?,
        kind,
        field: metric["field"]
            .as_str()
            .filter(|f| !f.is_empty())
            .ok_or("the metric has no field")?
            .to_string(),
    })
}

/// A terms aggregation as Grafana's data source builds it (`addTermsAgg`).
fn terms_agg(terms: &Value) -> Result<Terms, String> {
    let settings = &terms["settings"];
    let order_by = text(&settings["orderBy"]).filter(|o| !o.is_empty());
    if order_by
        .as_deref()
        .is_some_and(|o| o.starts_with(|c: char| c.is_ascii_digit()))
    {
        return Err("terms ordered by a metric are not supported (order by _key or _count)".into());
    }
    Ok(Terms {
        id: text(&terms["id"]).ok_or("the terms aggregation has no id")?,
        field: terms["field"]
            .as_str()
            .filter(|f| !f.is_empty())
            .ok_or("the terms aggregation has no field")?
            .to_string(),
        size: text(&settings["size"])
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|&s| s > 0)
            .unwrap_or(500),
        order_by,
        order: text(&settings["order"]).unwrap_or_else(|| "desc".into()),
        min_doc_count: text(&settings["min_doc_count"]).and_then(|m| m.parse().ok()),
    })
}

/// One series of a query's result: its labels (`{job: …}` under a terms aggregation, none
/// otherwise) and its points (bucket start ms, value; `None` for an empty bucket).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Labels of the series.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Points, oldest first.
    pub points: Vec<(i64, Option<f64>)>,
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
        let all: Vec<&Value> = model["metrics"].as_array().into_iter().flatten().collect();
        let visible: Vec<&Value> = all.iter().copied().filter(|m| m["hide"] != true).collect();
        let [metric] = visible.as_slice() else {
            return Err(format!(
                "exactly one visible metric is supported, the model has {}",
                visible.len()
            ));
        };
        let value = if metric["type"] == "bucket_script" {
            let script = text(&metric["settings"]["script"])
                .or_else(|| text(&metric["settings"]["script"]["inline"]))
                .filter(|s| !s.is_empty())
                .ok_or("the bucket_script has no script")?;
            let mut variables = Vec::new();
            for variable in metric["pipelineVariables"].as_array().into_iter().flatten() {
                let name = text(&variable["name"]).ok_or("a pipeline variable has no name")?;
                let target = text(&variable["pipelineAgg"]).unwrap_or_default();
                let find = |target: &str| {
                    all.iter()
                        .find(|m| text(&m["id"]).as_deref() == Some(target))
                        .ok_or_else(|| format!("pipeline variable {name} reads metric {target:?}, which is not in the query"))
                };
                let input = find(&target)?;
                let input = if input["type"] == "moving_fn" {
                    // Grafana reads the metric a moving function slides over from `field`
                    // (older models: `pipelineAgg`).
                    let source = text(&input["field"])
                        .filter(|f| !f.is_empty())
                        .or_else(|| text(&input["pipelineAgg"]))
                        .unwrap_or_default();
                    let settings = input["settings"].as_object().cloned().unwrap_or_default();
                    if settings.get("window").and_then(text).is_none() {
                        return Err(format!("moving_fn {target} has no window"));
                    }
                    ScriptInput::MovingFn {
                        id: target.clone(),
                        of: field_metric(find(&source)?)?,
                        settings,
                    }
                } else {
                    ScriptInput::Metric(field_metric(input)?)
                };
                variables.push((name, input));
            }
            if variables.is_empty() {
                return Err("the bucket_script has no pipeline variables".into());
            }
            ValueMetric::Script {
                id: text(&metric["id"]).ok_or("the metric has no id")?,
                script,
                variables,
            }
        } else {
            ValueMetric::Field(field_metric(metric)?)
        };
        let buckets = model["bucketAggs"].as_array().cloned().unwrap_or_default();
        let Some((bucket, terms)) = buckets.split_last() else {
            return Err(
                "a date_histogram, optionally inside terms aggregations, is supported; the model has no bucket aggregation".into(),
            );
        };
        let group_by = terms
            .iter()
            .map(|terms| {
                if terms["type"] == "terms" {
                    terms_agg(terms)
                } else {
                    Err(format!(
                        "bucket aggregation {} around the date_histogram is not supported (terms only)",
                        terms["type"]
                    ))
                }
            })
            .collect::<Result<Vec<Terms>, String>>()?;
        if bucket["type"] != "date_histogram" {
            return Err(format!(
                "bucket aggregation {} is not supported (date_histogram, optionally inside terms)",
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
            value,
            group_by,
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
        let interval = self.fixed_interval(from_ms, to_ms);
        self.msearch_at(index, from_ms, to_ms, interval)
    }

    /// [`Self::msearch`] with the histogram interval given (ms) instead of derived from the
    /// range: a search over a longer span with the buckets of the rule's own range.
    pub fn msearch_with_interval(
        &self,
        index: &str,
        from_ms: i64,
        to_ms: i64,
        interval_ms: i64,
    ) -> (Value, Value) {
        self.msearch_at(index, from_ms, to_ms, format!("{interval_ms}ms"))
    }

    /// Whether a bucket's value depends on earlier buckets (a moving function): then it also
    /// depends on where the searched range starts.
    pub fn reads_earlier_buckets(&self) -> bool {
        matches!(&self.value, ValueMetric::Script { variables, .. }
            if variables.iter().any(|(_, input)| matches!(input, ScriptInput::MovingFn { .. })))
    }

    /// The id of the visible metric (where a bucket's value is read).
    pub fn value_id(&self) -> &str {
        self.value.id()
    }

    fn msearch_at(
        &self,
        index: &str,
        from_ms: i64,
        to_ms: i64,
        interval: String,
    ) -> (Value, Value) {
        let header = json!({ "search_type": "query_then_fetch", "ignore_unavailable": true, "index": index });
        let mut body = json!({
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
                    "fixed_interval": interval
                },
                "aggs": self.metric_aggs()
            } }
        });
        // Innermost first: each terms aggregation wraps what is inside it.
        for terms in self.group_by.iter().rev() {
            let inside = body["aggs"].take();
            let mut spec = json!({ "field": terms.field, "size": terms.size });
            if let Some(order_by) = &terms.order_by {
                spec["order"] = json!({ order_by.clone(): terms.order });
            }
            if let Some(min) = terms.min_doc_count {
                spec["min_doc_count"] = json!(min);
            }
            body["aggs"] = json!({ terms.id.clone(): { "terms": spec, "aggs": inside } });
        }
        (header, body)
    }

    /// The metric aggregations inside each histogram bucket (hidden inputs included).
    fn metric_aggs(&self) -> Value {
        let field = |m: &FieldMetric| json!({ m.kind.name(): { "field": m.field } });
        match &self.value {
            ValueMetric::Field(m) => json!({ m.id.clone(): field(m) }),
            ValueMetric::Script {
                id,
                script,
                variables,
            } => {
                let mut aggs = serde_json::Map::new();
                let mut paths = serde_json::Map::new();
                for (name, input) in variables {
                    let metric = input.metric();
                    aggs.insert(metric.id.clone(), field(metric));
                    if let ScriptInput::MovingFn { id, settings, .. } = input {
                        let mut spec = settings.clone();
                        spec.insert("buckets_path".into(), Value::from(metric.id.clone()));
                        aggs.insert(id.clone(), json!({ "moving_fn": spec }));
                    }
                    paths.insert(name.clone(), Value::from(input.id()));
                }
                aggs.insert(
                    id.clone(),
                    json!({ "bucket_script": { "buckets_path": paths, "script": script } }),
                );
                Value::Object(aggs)
            }
        }
    }

    /// The series in one item of an `_msearch` response's `responses`: one without a terms
    /// aggregation, one per term (in the reply's order) with it — none when no document
    /// matched.
    pub fn parse_item(&self, item: &Value) -> Result<Vec<Series>, String> {
        if !item["error"].is_null() {
            let e = &item["error"];
            let reason = e["root_cause"][0]["reason"]
                .as_str()
                .or(e["reason"].as_str())
                .unwrap_or("unknown error");
            return Err(format!("Elasticsearch error: {reason}"));
        }
        let points = |histogram: &Value| -> Vec<(i64, Option<f64>)> {
            histogram[&self.bucket_id]["buckets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|b| Some((b["key"].as_i64()?, b[self.value.id()]["value"].as_f64())))
                .collect()
        };
        // Down the terms aggregations, one label per level (Grafana names each by its field).
        let mut level: Vec<(std::collections::BTreeMap<String, String>, &Value)> =
            vec![(Default::default(), &item["aggregations"])];
        for terms in &self.group_by {
            level = level
                .into_iter()
                .flat_map(|(labels, aggregations)| {
                    aggregations[&terms.id]["buckets"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(move |bucket| {
                            let mut labels = labels.clone();
                            labels.insert(terms.field.clone(), text(&bucket["key"])?);
                            Some((labels, bucket))
                        })
                })
                .collect();
        }
        Ok(level
            .into_iter()
            .map(|(labels, aggregations)| Series {
                labels,
                points: points(aggregations),
            })
            .collect())
    }

    /// The one terms aggregation splitting the series, if there is exactly one.
    pub fn single_terms(&self) -> Option<&Terms> {
        match self.group_by.as_slice() {
            [terms] => Some(terms),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::aligned::AlignedSearch;
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
            vec![Series {
                labels: Default::default(),
                points: vec![(0, Some(12.5)), (60_000, None)]
            }]
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

    /// The provisioned multi-pipeline model: p99 minus the document's own SLA, per job.
    fn per_job_model() -> Value {
        json!({
            "refId": "A", "query": "*",
            "metrics": [
                {"id": "1", "type": "max", "field": "p99", "hide": true},
                {"id": "3", "type": "max", "field": "sla_ms", "hide": true},
                {"id": "4", "type": "bucket_script", "settings": {"script": "params.p99 - params.sla"},
                 "pipelineVariables": [{"name": "p99", "pipelineAgg": "1"}, {"name": "sla", "pipelineAgg": "3"}]}
            ],
            "bucketAggs": [
                {"id": "5", "type": "terms", "field": "job",
                 "settings": {"size": "0", "order": "asc", "orderBy": "_key", "min_doc_count": "1"}},
                {"id": "2", "type": "date_histogram", "field": "@timestamp",
                 "settings": {"interval": "1m", "min_doc_count": "0"}}
            ],
            "timeField": "@timestamp"
        })
    }

    #[test]
    fn a_terms_split_and_a_bucket_script_are_built_and_read_per_term() {
        let q = EsQuery::from_model(&per_job_model()).unwrap();
        let (_, body) = q.msearch("i", 0, 120_000);
        let terms = &body["aggs"]["5"];
        assert_eq!(
            terms["terms"],
            json!({"field": "job", "size": 500, "order": {"_key": "asc"}, "min_doc_count": 1})
        );
        let inner = &terms["aggs"]["2"]["aggs"];
        assert_eq!(inner["1"]["max"]["field"], "p99");
        assert_eq!(inner["3"]["max"]["field"], "sla_ms");
        assert_eq!(
            inner["4"]["bucket_script"]["buckets_path"],
            json!({"p99": "1", "sla": "3"})
        );
        assert_eq!(
            inner["4"]["bucket_script"]["script"],
            "params.p99 - params.sla"
        );
        let reply = json!({"aggregations": {"5": {"buckets": [
            {"key": "checkout", "2": {"buckets": [{"key": 0, "4": {"value": 250.0}}, {"key": 60000}]}},
            {"key": "visits", "2": {"buckets": [{"key": 0, "4": {"value": -4000.0}}]}}]}}});
        let series = q.parse_item(&reply).unwrap();
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].labels["job"], "checkout");
        assert_eq!(series[0].points, vec![(0, Some(250.0)), (60_000, None)]);
        assert_eq!(series[1].points, vec![(0, Some(-4000.0))]);
        assert!(q
            .parse_item(&json!({"aggregations": {"5": {"buckets": []}}}))
            .unwrap()
            .is_empty());
        let mut m = per_job_model();
        m["bucketAggs"][0]["settings"]["orderBy"] = json!("1");
        assert!(EsQuery::from_model(&m).unwrap_err().contains("metric"));
        let mut m = per_job_model();
        m["metrics"][2]["pipelineVariables"][1]["pipelineAgg"] = json!("9");
        assert!(EsQuery::from_model(&m).unwrap_err().contains("\"9\""));
    }

    #[test]
    fn nested_terms_give_one_series_per_job_and_value() {
        let mut m = per_job_model();
        let buckets = m["bucketAggs"].as_array_mut().unwrap();
        buckets.insert(
            1,
            json!({"id": "6", "type": "terms", "field": "dimensions.tenant",
                   "settings": {"size": "200", "order": "asc", "orderBy": "_key", "min_doc_count": "1"}}),
        );
        let q = EsQuery::from_model(&m).unwrap();
        let (_, body) = q.msearch("i", 0, 120_000);
        let tenant = &body["aggs"]["5"]["aggs"]["6"];
        assert_eq!(tenant["terms"]["field"], "dimensions.tenant");
        assert_eq!(tenant["terms"]["size"], 200);
        assert_eq!(
            tenant["aggs"]["2"]["aggs"]["4"]["bucket_script"]["script"],
            "params.p99 - params.sla"
        );
        let reply = json!({"aggregations": {"5": {"buckets": [
            {"key": "checkout", "6": {"buckets": [
                {"key": "gold", "2": {"buckets": [{"key": 0, "4": {"value": 250.0}}]}},
                {"key": "__other__", "2": {"buckets": [{"key": 0, "4": {"value": -10.0}}]}}]}},
            {"key": "visits", "6": {"buckets": [
                {"key": "gold", "2": {"buckets": [{"key": 0, "4": {"value": -4000.0}}]}}]}}]}}});
        let series = q.parse_item(&reply).unwrap();
        let labels: Vec<(String, String)> = series
            .iter()
            .map(|s| {
                (
                    s.labels["job"].clone(),
                    s.labels["dimensions.tenant"].clone(),
                )
            })
            .collect();
        assert_eq!(
            labels,
            [
                ("checkout".into(), "gold".into()),
                ("checkout".into(), "__other__".into()),
                ("visits".into(), "gold".into())
            ]
        );
        assert_eq!(series[0].points, vec![(0, Some(250.0))]);
        assert!(
            AlignedSearch::plan(&q, (600_000, 0), &[600_000]).is_none(),
            "nested terms are searched per evaluation"
        );
        let mut m = per_job_model();
        m["bucketAggs"][0]["type"] = json!("filters");
        assert!(EsQuery::from_model(&m).unwrap_err().contains("terms only"));
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
