//! The fast path of long backtests gives exactly what searching each evaluation alone gives,
//! on real Elasticsearch: every evaluation of a rule at 1-minute ticks over an index with
//! window documents on and off minute boundaries, a gap, and pipelines that come and go —
//! assembled from two searches (`AlertRule::evaluate_aligned`) and searched one by one
//! (`AlertRule::evaluate_many`, what Grafana does at each tick) — must be equal, for the
//! provisioned rule (terms on `job`, a `bucket_script`), a rule without terms, one with an
//! `auto` interval, and one whose histogram drops empty buckets.

mod support;

use elasticsearch::http::Method;
use serde_json::json;
use sla_monitor::alerting::es_query::EsQuery;
use sla_monitor::alerting::rule::{self, AlertRule};
use support::*;

const MINUTE: i64 = 60_000;

fn provisioned() -> AlertRule {
    let yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dashboards/grafana/provisioning/alerting/sla-alert-rules.yaml"
    ))
    .unwrap();
    rule::load(&yaml).unwrap().remove(0)
}

/// The provisioned rule with another query A model.
fn with_model(model: serde_json::Value) -> AlertRule {
    let mut rule = provisioned();
    rule.query = EsQuery::from_model(&model).unwrap();
    rule
}

fn document(job: &str, at: i64, p99: f64) -> serde_json::Value {
    let iso = |ms| iso_ms(ms);
    json!({
        "@timestamp": iso(at), "window_start_ms": at, "window_end": iso(at + MINUTE), "job": job,
        "count": 100, "exact": true, "sla_ms": if job == "b" { 2_000 } else { 5_000 },
        "min": 1.0, "max": p99, "mean": p99 / 2.0, "p50": p99 / 2.0, "p75": p99 / 2.0,
        "p90": p99 / 2.0, "p99": p99, "over_sla_count": 0, "within_sla_count": 100,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn two_searches_give_what_one_search_per_evaluation_gives() {
    let index = unique("sla_test_aligned");
    let quantiles = [0.5, 0.75, 0.9, 0.99];
    let mapping = sla_monitor::sink::elasticsearch::mapping::properties(&quantiles);
    let (status, body) = es_request(
        Method::Put,
        &format!("/{index}"),
        Some(json!({ "mappings": { "properties": mapping } })),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // 90 minutes from a whole hour: job a on minute boundaries (gap 30–40), job b 20 s after
    // them from minute 20 to 60 and on boundaries from 60 to 70, job c once, at minute 45.
    let start = now_ms() / (60 * MINUTE) * (60 * MINUTE) - 3 * 60 * MINUTE;
    let mut documents = Vec::new();
    for m in 0..90 {
        let at = start + m * MINUTE;
        if !(30..40).contains(&m) {
            documents.push((
                format!("a{m}"),
                document("a", at, 1_000.0 + (m * 137 % 9_000) as f64),
            ));
        }
        if (20..60).contains(&m) {
            documents.push((
                format!("b{m}"),
                document("b", at + 20_000, 500.0 + (m * 71 % 4_000) as f64),
            ));
        }
        if (60..70).contains(&m) {
            documents.push((format!("b{m}"), document("b", at, 3_000.0)));
        }
    }
    documents.push(("c".into(), document("c", start + 45 * MINUTE, 12_000.0)));
    for (id, doc) in &documents {
        let (status, body) = es_request(
            Method::Put,
            &format!("/{index}/_doc/{id}"),
            Some(doc.clone()),
        )
        .await;
        assert!(status == 201 || status == 200, "{body}");
    }
    es_request(Method::Post, &format!("/{index}/_refresh"), None).await;

    // Every minute from before the first document to after the last window left the range.
    let times: Vec<i64> = (-5..110).map(|m| start + m * MINUTE).collect();
    let no_terms = with_model(json!({
        "refId": "A", "query": "job:a",
        "metrics": [{"id": "1", "type": "max", "field": "p99"}],
        "bucketAggs": [{"id": "2", "type": "date_histogram", "field": "@timestamp",
                        "settings": {"interval": "1m", "min_doc_count": "0"}}],
        "timeField": "@timestamp"
    }));
    let auto = with_model(json!({
        "refId": "A", "query": "*",
        "metrics": [{"id": "1", "type": "avg", "field": "p99"}],
        "bucketAggs": [{"id": "3", "type": "terms", "field": "job", "settings": {"size": "10", "order": "desc", "orderBy": "_key"}},
                       {"id": "2", "type": "date_histogram", "field": "@timestamp",
                        "settings": {"interval": "auto", "min_doc_count": "0"}}],
        "timeField": "@timestamp", "intervalMs": 60000, "maxDataPoints": 43200
    }));
    let sparse = with_model(json!({
        "refId": "A", "query": "*",
        "metrics": [{"id": "1", "type": "sum", "field": "p99"}],
        "bucketAggs": [{"id": "2", "type": "date_histogram", "field": "@timestamp",
                        "settings": {"interval": "2m", "min_doc_count": "1"}}],
        "timeField": "@timestamp"
    }));
    let client = es_client(&es_url());
    for (name, rule) in [
        ("provisioned", provisioned()),
        ("no terms", no_terms),
        ("auto interval", auto),
        ("empty buckets dropped", sparse),
    ] {
        // The 2-minute histogram needs even minutes.
        let times: Vec<i64> = if name == "empty buckets dropped" {
            times
                .iter()
                .copied()
                .filter(|t| t % (2 * MINUTE) == 0)
                .collect()
        } else {
            times.clone()
        };
        let fast = rule
            .evaluate_aligned(&client, &index, &times)
            .await
            .unwrap_or_else(|| panic!("{name}: the aligned path did not apply"));
        let slow = rule.evaluate_many(&client, &index, &times).await;
        assert_eq!(fast.len(), times.len());
        let mut values = 0;
        for ((t, fast), slow) in times.iter().zip(&fast).zip(&slow) {
            assert_eq!(
                fast,
                slow,
                "{name}: evaluation at minute {}",
                (t - start) / MINUTE
            );
            values += fast
                .iter()
                .filter(|(_, e)| {
                    matches!(
                        e,
                        sla_monitor::alerting::evaluation::Evaluation::Value { .. }
                    )
                })
                .count();
        }
        assert!(
            values > times.len() / 2,
            "{name}: too few values to compare ({values})"
        );
        println!(
            "{name}: {} evaluations equal ({values} values)",
            times.len()
        );
    }

    // Times off the interval (30 s past the minute): not aligned, each searched alone.
    let off: Vec<i64> = times.iter().map(|t| t + 30_000).collect();
    assert!(provisioned()
        .evaluate_aligned(&client, &index, &off)
        .await
        .is_none());
    es_request(Method::Delete, &format!("/{index}"), None).await;
}
