//! One evaluation of a rule at a point in time: query A against Elasticsearch over the rule's
//! relative range, reduce B, threshold C.

use super::rule::AlertRule;
use elasticsearch::http::request::JsonBody;
use elasticsearch::{Elasticsearch, MsearchParts};
use serde_json::Value;

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

    /// Runs query A against `index` as Grafana would at `now_ms` and evaluates the condition.
    pub async fn evaluate(&self, client: &Elasticsearch, index: &str, now_ms: i64) -> Evaluation {
        match self.query_series(client, index, now_ms).await {
            Ok(series) => self.evaluate_series(&series),
            Err(e) => Evaluation::Error(e),
        }
    }

    /// Query A's series at `now_ms`.
    pub async fn query_series(
        &self,
        client: &Elasticsearch,
        index: &str,
        now_ms: i64,
    ) -> Result<Vec<(i64, Option<f64>)>, String> {
        let from = now_ms - self.range_from.as_millis() as i64;
        let to = now_ms - self.range_to.as_millis() as i64;
        let (header, body) = self.query.msearch(index, from, to);
        let response = client
            .msearch(MsearchParts::None)
            .body(vec![JsonBody::new(header), JsonBody::new(body)])
            .send()
            .await
            .map_err(|e| format!("querying Elasticsearch: {e}"))?;
        let status = response.status_code().as_u16();
        let json: Value = response
            .json()
            .await
            .map_err(|e| format!("reading the Elasticsearch response: {e}"))?;
        if !(200..300).contains(&status) {
            return Err(format!(
                "Elasticsearch answered {status}: {}",
                json["error"]["reason"].as_str().unwrap_or("")
            ));
        }
        self.query.parse_response(&json)
    }
}
