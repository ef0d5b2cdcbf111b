//! Every job reads and writes topics compressed with each codec Kafka has: generator →
//! synchronizer → monitor with `--compression` gzip, lz4 and zstd on the real broker, every
//! valid visit reduced once and counted in a window; snappy as far as tansu allows (produce). A topic written by a producer of
//! another program with zstd (the case users met: "Decompression (codec 0x4) … Not
//! implemented") is read by the monitor too.

mod support;

use std::time::Duration;
use support::*;

fn pipeline_with(codec: &str) {
    let dir = tempfile::tempdir().unwrap();
    let brokers = brokers();
    let run = run_json_lines_pipeline(
        codec,
        dir.path(),
        &["--brokers", &brokers, "--compression", codec],
        &["--rate", "400", "--count", "800", "--seed", "3"],
    );
    assert_eq!(run.valid, 800);
    let reduced = consume(
        &run.reduced,
        800,
        Duration::from_secs(30),
        Duration::from_millis(300),
    );
    assert_eq!(reduced.len(), 800);
}

#[test]
fn gzip() {
    pipeline_with("gzip");
}

/// tansu 0.6 accepts snappy batches but cannot serve them (its fetch fails with
/// `UnexpectedType("Snappy")`), and no other broker runs here, so only the jobs' snappy
/// producer is checked against a real broker: every batch acknowledged. (That librdkafka
/// decodes snappy is its built-in codec; see the unit test of the built-in features.)
#[test]
fn snappy_batches_are_produced() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("snappy_visits");
    let mut generator = Job::start(
        env!("CARGO_BIN_EXE_generator"),
        &[
            "--visits-topic",
            &topic,
            "--compression",
            "snappy",
            "--count",
            "300",
            "--rate",
            "1000",
        ],
        dir.path(),
    );
    assert_eq!(
        generator.generated_valid(Duration::from_secs(60)),
        300,
        "the broker acknowledged every snappy batch"
    );
}

#[test]
fn lz4() {
    pipeline_with("lz4");
}

#[test]
fn zstd() {
    pipeline_with("zstd");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_monitor_reads_a_topic_another_producer_compressed_with_zstd() {
    let dir = tempfile::tempdir().unwrap();
    let topics = monitor_topics("zstd_in");
    create_topic(&topics.reduced, 2).await;
    let base = (now_ms() - 120_000) / WINDOW * WINDOW;
    let (records, expected) = windows_of_records(base, 0..3, 40, 9);
    let zstd = Cluster {
        brokers: brokers(),
        properties: vec![("compression.type".into(), "zstd".into())],
    };
    zstd.produce(&topics.reduced, &records).await;
    monitor_reads(&brokers(), &topics, &expected, dir.path());
}

/// Runs the monitor on `topics` at `brokers` until it has written the windows of `expected`,
/// and checks each against the exact percentiles.
fn monitor_reads(
    brokers: &str,
    topics: &MonitorTopics,
    expected: &std::collections::BTreeMap<i64, Vec<f64>>,
    dir: &std::path::Path,
) {
    let output = dir.join("windows.jsonl");
    // The records were all produced before the monitor starts: a short idleness is safe.
    let monitor = MonitorArgs::new(topics, &unique("compressed_in_g"))
        .json_lines(&output)
        .set("--idle-timeout", "1s")
        .start_on(brokers, dir);
    wait_for("every window written", Duration::from_secs(60), || {
        read_documents(&output).0.len() >= expected.len()
    });
    assert!(monitor.terminate(Duration::from_secs(30)).success());
    let (documents, _) = read_documents(&output);
    for (start, latencies) in expected {
        assert_document(
            &documents[&format!("visits-synchronizer-{start}")],
            latencies,
        );
    }
}
