//! generator → synchronizer → monitor → Elasticsearch on the real broker and the real
//! Elasticsearch, with and without a 10 s delay: every window document equals what the test
//! computes itself from the records in `reduced_visits` (event time = record timestamp,
//! latency = timestamp − stamp), and the delay shows as an SLA miss.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;
use support::*;

async fn run_pipeline(
    name: &str,
    delay: &str,
) -> (BTreeMap<String, serde_json::Value>, BTreeMap<i64, Vec<f64>>) {
    let dir = tempfile::tempdir().unwrap();
    let Pipeline {
        monitor,
        synchronizer,
        mut generator,
        reduced,
        index,
    } = start_pipeline(
        name,
        dir.path(),
        delay,
        &[
            "--rate",
            "300",
            "--duration",
            "5s",
            "--invalid-json-pct",
            "3",
            "--seed",
            "5",
        ],
    );
    let valid = generator.generated_valid(Duration::from_secs(60)) as usize;
    let reduced = consume(
        &reduced,
        valid,
        Duration::from_secs(60),
        Duration::from_millis(500),
    );
    assert_eq!(reduced.len(), valid, "every valid visit reduced once");
    let mut expected: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for r in &reduced {
        let ts = r.timestamp_ms.unwrap();
        let stamp = r.json()["start_processing_time_ms"].as_i64().unwrap();
        expected
            .entry(ts.div_euclid(WINDOW) * WINDOW)
            .or_default()
            .push((ts - stamp) as f64);
    }
    let docs = wait_for_es_documents(&index, expected.len(), Duration::from_secs(90)).await;
    assert!(synchronizer.terminate(Duration::from_secs(30)).success());
    assert!(monitor.terminate(Duration::from_secs(30)).success());
    (docs, expected)
}

fn check(docs: &BTreeMap<String, serde_json::Value>, expected: &BTreeMap<i64, Vec<f64>>) {
    assert_eq!(docs.len(), expected.len(), "one document per window");
    for (start, latencies) in expected {
        let doc = &docs[&format!("visits-synchronizer-{start}")];
        assert_eq!(doc["count"], latencies.len() as u64, "window {start}");
        for (field, q) in [("p50", 0.5), ("p75", 0.75), ("p90", 0.9), ("p99", 0.99)] {
            let want = exact_percentile(latencies, q);
            assert!(
                (doc[field].as_f64().unwrap() - want).abs() < 1e-9,
                "{field} of window {start}: {doc} vs {want}"
            );
        }
        let over = latencies.iter().filter(|&&l| l > 5_000.0).count() as u64;
        assert_eq!(doc["over_sla_count"], over);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_delay_windows_match_and_meet_the_sla() {
    let (docs, expected) = run_pipeline("nodelay", "0s").await;
    check(&docs, &expected);
    for doc in docs.values() {
        assert!(
            doc["p99"].as_f64().unwrap() < 5_000.0,
            "no delay, yet {doc}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_delay_windows_match_and_miss_the_sla() {
    let (docs, expected) = run_pipeline("delay", "10s").await;
    check(&docs, &expected);
    for doc in docs.values() {
        assert!(
            doc["p99"].as_f64().unwrap() >= 10_000.0,
            "delay 10s, yet {doc}"
        );
        assert_eq!(doc["over_sla_count"], doc["count"]);
    }
}
