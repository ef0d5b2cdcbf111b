//! One evaluation of a rule at a point in time: query A against Elasticsearch over the rule's
//! relative range, reduce B, threshold C.

use super::aligned::AlignedSearch;
use super::es_query::Series;
use super::rule::AlertRule;
use elasticsearch::http::request::JsonBody;
use elasticsearch::{Elasticsearch, MsearchParts};
use serde_json::Value;
use std::collections::BTreeMap;

/// The labels of an alert instance: those of its series (`{job: …}`), empty for a rule with
/// one series and for a result that concerns the whole rule (no data at all, an error).
pub type Labels = BTreeMap<String, String>;

/// One evaluation's results: one per series, as Grafana's `eval.Results`.
pub type Results = Vec<(Labels, Evaluation)>;

/// The outcome of evaluating a rule once.
#[derive(Debug, Clone, PartialEq)]
pub enum Evaluation {
    /// B has a value; `met` tells whether C (the condition) holds.
    Value {
        /// The reduced value (B).
        value: f64,
        /// Whether the threshold holds.
        met: bool,
    },
    /// The query returned no data points (or only nulls, with dropNN).
    NoData,
    /// The query failed.
    Error(String),
}

impl AlertRule {
    /// The condition's outcome for a series returned by query A.
    pub fn evaluate_series(&self, series: &[(i64, Option<f64>)]) -> Evaluation {
        let values: Vec<Option<f64>> = series.iter().map(|(_, v)| *v).collect();
        match self.reduce.apply(&values) {
            None => Evaluation::NoData,
            Some(value) => Evaluation::Value {
                value,
                met: self.threshold.is_met(value),
            },
        }
    }

    /// The results for every series query A returned: one per series, or — when it returned
    /// none (no document matched) — one NoData for the whole rule, as Grafana's evaluator.
    pub fn evaluate_frames(&self, series: &[Series]) -> Results {
        if series.is_empty() {
            return vec![(Labels::new(), Evaluation::NoData)];
        }
        series
            .iter()
            .map(|s| (s.labels.clone(), self.evaluate_series(&s.points)))
            .collect()
    }

    /// Runs query A against `index` as Grafana would at `now_ms` and evaluates the condition.
    pub async fn evaluate(&self, client: &Elasticsearch, index: &str, now_ms: i64) -> Results {
        self.evaluate_many(client, index, &[now_ms])
            .await
            .pop()
            .expect("one evaluation per time")
    }

    /// Evaluates the rule as if it had run at each of `times` (one `_msearch` with a query per
    /// time, each over the rule's relative range from that time). A failed request is an Error
    /// for every time it carried; a failed item only for its own.
    pub async fn evaluate_many(
        &self,
        client: &Elasticsearch,
        index: &str,
        times: &[i64],
    ) -> Vec<Results> {
        let error = |e: String| vec![(Labels::new(), Evaluation::Error(e))];
        let index = self.index.as_deref().unwrap_or(index);
        match self.query_many(client, index, times).await {
            Ok(items) => items
                .iter()
                .map(|item| match self.query.parse_item(item) {
                    Ok(series) => self.evaluate_frames(&series),
                    Err(e) => error(e),
                })
                .collect(),
            Err(e) => times.iter().map(|_| error(e.clone())).collect(),
        }
    }

    async fn query_many(
        &self,
        client: &Elasticsearch,
        index: &str,
        times: &[i64],
    ) -> Result<Vec<Value>, String> {
        let mut searches = Vec::with_capacity(times.len());
        for &at in times {
            let from = at - self.range_from.as_millis() as i64;
            let to = at - self.range_to.as_millis() as i64;
            searches.push(self.query.msearch(index, from, to));
        }
        // Only what the series is read from: halves the response (keys as strings, doc
        // counts and shard statistics are dropped), which matters over long backtests. Each
        // level of terms nests the histogram one `buckets` deeper.
        let mut paths = vec![
            "responses.error".to_string(),
            "responses.status".to_string(),
        ];
        let mut prefix = "responses.aggregations.*.buckets".to_string();
        for _ in 0..=self.query.group_by.len() {
            paths.push(format!("{prefix}.key"));
            paths.push(format!("{prefix}.*.value"));
            prefix.push_str(".*.buckets");
        }
        let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
        msearch(client, searches, &paths).await
    }

    /// Evaluates the rule at each of `times` like [`Self::evaluate_many`], with two searches
    /// in all when the times and the rule's range are aligned on its histogram interval (see
    /// [`AlignedSearch`]: the same results, read from the same buckets), else one per time.
    pub async fn evaluate_range(
        &self,
        client: &Elasticsearch,
        index: &str,
        times: &[i64],
    ) -> Vec<Results> {
        match self.evaluate_aligned(client, index, times).await {
            Some(results) => results,
            None => self.evaluate_many(client, index, times).await,
        }
    }

    /// The two-search way of [`Self::evaluate_range`]; `None` when it does not apply (times
    /// or range not aligned, terms it cannot reproduce) or a search failed.
    pub async fn evaluate_aligned(
        &self,
        client: &Elasticsearch,
        index: &str,
        times: &[i64],
    ) -> Option<Vec<Results>> {
        let index = self.index.as_deref().unwrap_or(index);
        let range = (
            self.range_from.as_millis() as i64,
            self.range_to.as_millis() as i64,
        );
        let plan = AlignedSearch::plan(&self.query, range, times)?;
        let searches = plan.searches(&self.query, index, times).to_vec();
        let paths = [
            "responses.error",
            "responses.status",
            "responses.aggregations.*.sum_other_doc_count",
            "responses.aggregations.*.buckets.key",
            "responses.aggregations.*.buckets.doc_count",
            "responses.aggregations.*.buckets.*.value",
            "responses.aggregations.*.buckets.*.sum_other_doc_count",
            "responses.aggregations.*.buckets.*.buckets.key",
            "responses.aggregations.*.buckets.*.buckets.doc_count",
            "responses.aggregations.*.buckets.*.buckets.*.value",
        ];
        let items = msearch(client, searches, &paths).await.ok()?;
        let series = plan.assemble(&self.query, &items[0], &items[1], times)?;
        Some(series.iter().map(|s| self.evaluate_frames(s)).collect())
    }
}

/// Sends `searches` (header, body) in one `_msearch`, keeping `filter_path`; the reply's
/// items, one per search.
async fn msearch(
    client: &Elasticsearch,
    searches: Vec<(Value, Value)>,
    filter_path: &[&str],
) -> Result<Vec<Value>, String> {
    let count = searches.len();
    let lines: Vec<JsonBody<Value>> = searches
        .into_iter()
        .flat_map(|(header, body)| [JsonBody::new(header), JsonBody::new(body)])
        .collect();
    let response = client
        .msearch(MsearchParts::None)
        .filter_path(filter_path)
        .body(lines)
        .send()
        .await
        .map_err(|e| format!("querying Elasticsearch: {e}"))?;
    let status = response.status_code().as_u16();
    let mut json: Value = response
        .json()
        .await
        .map_err(|e| format!("reading the Elasticsearch response: {e}"))?;
    if !(200..300).contains(&status) {
        return Err(format!(
            "Elasticsearch answered {status}: {}",
            json["error"]["reason"].as_str().unwrap_or("")
        ));
    }
    match json["responses"].take() {
        Value::Array(items) if items.len() == count => Ok(items),
        _ => Err(format!("unexpected response: {json}")),
    }
}
