//! Many evaluations of a rule from two searches, exactly: the fast path of long backtests.
//!
//! One evaluation at time `t` searches `[t - from, t - to]` with a date histogram of interval
//! `I`. When `I` divides `t`, `from` and `to`, that search's buckets are whole buckets of a
//! histogram over a longer range, except the last one, which holds only the documents stamped
//! exactly `t - to` (the range ends there, inclusively). So a search over the whole stretch of
//! evaluations (the **span** search) and the same search restricted to documents stamped on a
//! bucket boundary (the **boundary** search) give every evaluation's buckets as Elasticsearch
//! computes them — values, `bucket_script` results and document counts included — and each
//! evaluation is assembled from them: interior buckets from the span, the last from the
//! boundary. Terms (one series per job) are assembled the same way, when the span shows every
//! term (fewer than `size`) and they are ordered by key; otherwise [`AlignedSearch::plan`] says no and each evaluation is searched alone.
//!
//! `tests/aligned_evaluations.rs` checks on real Elasticsearch that both ways give the same
//! results, documents on and off bucket boundaries, gaps and terms that come and go included.

use super::es_query::{EsQuery, HistogramInterval, Series};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// How a range of evaluation times can be answered by two searches.
#[derive(Debug, Clone, PartialEq)]
pub struct AlignedSearch {
    /// The histogram interval (ms), dividing every time involved.
    pub interval_ms: i64,
    /// The rule's range: from `t - from_ms` to `t - to_ms`.
    pub from_ms: i64,
    /// See `from_ms`.
    pub to_ms: i64,
}

/// One histogram bucket as read back: documents and the visible value.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Bucket {
    doc_count: u64,
    value: Option<f64>,
}

/// A series' points: bucket start and value.
type Points = Vec<(i64, Option<f64>)>;

/// Per series key (`None` without terms), per bucket start, the bucket.
type Buckets = BTreeMap<Option<String>, BTreeMap<i64, Bucket>>;

fn interval_ms(text: &str) -> Option<i64> {
    if let Some(ms) = text.strip_suffix("ms") {
        return ms.parse().ok();
    }
    humantime::parse_duration(text)
        .ok()
        .map(|d| d.as_millis() as i64)
}

impl AlignedSearch {
    /// The fast path for `query` over the relative range `(from_ms, to_ms)` at `times`, or
    /// `None` when it would not be exact (an interval not dividing the times or the range,
    /// terms ordered by count or a metric, a moving function).
    pub fn plan(query: &EsQuery, (from_ms, to_ms): (i64, i64), times: &[i64]) -> Option<Self> {
        if query.reads_earlier_buckets() {
            return None; // a longer search would change the first buckets' moving windows
        }
        let interval = match &query.interval {
            HistogramInterval::Fixed(text) => interval_ms(text)?,
            HistogramInterval::Auto {
                interval_ms,
                max_data_points,
            } => ((from_ms - to_ms) / max_data_points)
                .max(*interval_ms)
                .max(1),
        };
        let divides = |v: i64| v.rem_euclid(interval) == 0;
        // Terms ordered by key, each with at least one document: what assembled counts can
        // reproduce exactly (ordering by count or a metric, or terms without documents, would
        // need Elasticsearch's own tie-breaking and term dictionary).
        // One level of terms at most: nested terms are searched per evaluation.
        let terms_reproducible = query.group_by.len() <= 1
            && query.single_terms().is_none_or(|t| {
                matches!(t.order_by.as_deref(), None | Some("_key") | Some("_term"))
                    && t.min_doc_count.is_none_or(|m| m >= 1)
            });
        (interval > 0
            && from_ms >= to_ms
            && divides(from_ms)
            && divides(to_ms)
            && times.iter().all(|&t| divides(t))
            && terms_reproducible)
            .then_some(AlignedSearch {
                interval_ms: interval,
                from_ms,
                to_ms,
            })
    }

    /// The span and boundary searches (header, body pairs) covering `times`.
    pub fn searches(&self, query: &EsQuery, index: &str, times: &[i64]) -> [(Value, Value); 2] {
        let first = times.iter().min().copied().unwrap_or(0) - self.from_ms;
        let last = times.iter().max().copied().unwrap_or(0) - self.to_ms;
        let span = query.msearch_with_interval(index, first, last, self.interval_ms);
        let mut boundary = span.clone();
        let script = format!(
            "doc['{}'].value.toInstant().toEpochMilli() % params.interval == 0",
            query.time_field.replace('\'', "")
        );
        boundary.1["query"]["bool"]["filter"]
            .as_array_mut()
            .expect("the query is a bool filter")
            .push(json!({ "script": { "script": { "source": script, "params": { "interval": self.interval_ms } } } }));
        [span, boundary]
    }

    /// Reads the buckets of a span or boundary search's reply item; `None` when it is an
    /// error or shows that terms were cut off (more terms than `size`).
    fn buckets(&self, query: &EsQuery, item: &Value) -> Option<Buckets> {
        if !item["error"].is_null() {
            return None;
        }
        let histogram = |h: &Value| -> BTreeMap<i64, Bucket> {
            h[&query.bucket_id]["buckets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|b| {
                    Some((
                        b["key"].as_i64()?,
                        Bucket {
                            doc_count: b["doc_count"].as_u64().unwrap_or(0),
                            value: b[query.value_id()]["value"].as_f64(),
                        },
                    ))
                })
                .collect()
        };
        let aggregations = &item["aggregations"];
        let Some(terms) = query.single_terms() else {
            return Some(BTreeMap::from([(None, histogram(aggregations))]));
        };
        let reply = &aggregations[&terms.id];
        let buckets = reply["buckets"].as_array().cloned().unwrap_or_default();
        let cut_off = reply["sum_other_doc_count"].as_u64().unwrap_or(0) > 0
            || buckets.len() as u64 >= terms.size;
        if cut_off {
            return None;
        }
        Some(
            buckets
                .iter()
                .filter_map(|b| Some((Some(super::es_query::text(&b["key"])?), histogram(b))))
                .collect(),
        )
    }

    /// Every evaluation's series, assembled from the span and boundary replies (in `times`
    /// order); `None` when a reply cannot be used (then search each evaluation alone).
    pub fn assemble(
        &self,
        query: &EsQuery,
        span: &Value,
        boundary: &Value,
        times: &[i64],
    ) -> Option<Vec<Vec<Series>>> {
        let (span, boundary) = (self.buckets(query, span)?, self.buckets(query, boundary)?);
        let keys: Vec<&Option<String>> = span.keys().collect();
        let term_min_docs = query
            .single_terms()
            .map_or(0, |t| t.min_doc_count.unwrap_or(1));
        Some(
            times
                .iter()
                .map(|&t| {
                    let (lower, upper) = (t - self.from_ms, t - self.to_ms);
                    // Keys in ascending order (a BTreeMap's), as Elasticsearch orders by `_key`.
                    let mut series: Vec<(&Option<String>, Points)> = keys
                        .iter()
                        .filter_map(|key| {
                            let mut docs = 0;
                            let mut points = Vec::new();
                            let mut start = lower;
                            while start <= upper {
                                let source = if start == upper { &boundary } else { &span };
                                let bucket = source
                                    .get(*key)
                                    .and_then(|b| b.get(&start))
                                    .copied()
                                    .unwrap_or_default();
                                docs += bucket.doc_count;
                                if bucket.doc_count >= query.min_doc_count {
                                    points.push((start, bucket.value));
                                }
                                start += self.interval_ms;
                            }
                            (query.group_by.is_empty() || docs >= term_min_docs.max(1))
                                .then_some((*key, points))
                        })
                        .collect();
                    if query.single_terms().is_some_and(|t| t.order != "asc") {
                        series.reverse();
                    }
                    series
                        .into_iter()
                        .map(|(key, points)| Series {
                            labels: match (key, query.single_terms()) {
                                (Some(k), Some(t)) => [(t.field.clone(), k.clone())].into(),
                                _ => Default::default(),
                            },
                            points,
                        })
                        .collect()
                })
                .collect(),
        )
    }
}
