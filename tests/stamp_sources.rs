//! Latency from any stamp, on the real broker, with records produced by librdkafka directly
//! (not by the synchronizer): the default source gives documents byte-identical to those of
//! the release before stamp sources existed (a golden file), and a user's own shapes — a nested
//! RFC 3339 field, a header in ms over a binary payload, a header as an 8-byte big-endian
//! integer — give windows equal to exact percentiles of the latencies the test chose.

mod support;

use sla_monitor::record::stamp::{EndSource, LatencyStamps, Stamp, TimeFormat};
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
/// stamp source: byte for byte what the monitor wrote before `--start-time` existed, but for
/// the percentiles' float noise, removed on 2026-12-06 (the file was rewritten then; only
/// p90/p99 digits changed, e.g. 2254.700000000002 → 2254.7).
/// `SLA_UPDATE_GOLDEN=1` rewrites the file (only ever on purpose, when the document changes).
#[tokio::test(flavor = "multi_thread")]
async fn default_source_writes_the_documents_it_always_wrote() {
    let s = monitor_topics("golden");
    create_topic(&s.reduced, 2).await;
    let (records, _) = windows_of_records(GOLDEN_BASE, 0..4, 40, 7);
    produce(&s.reduced, &records).await;

    let monitor =
        InProcessMonitor::start(test_config(&s, &unique("golden_g"), Duration::from_secs(1))).await;
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

/// A record as another team's producer writes it: any value, headers, a chosen timestamp.
struct Foreign {
    partition: i32,
    timestamp_ms: i64,
    value: Vec<u8>,
    headers: Vec<(&'static str, Vec<u8>)>,
}

/// Produces with librdkafka directly (not through this project's jobs or helpers).
async fn produce_foreign(topic: &str, records: &[Foreign]) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let mut deliveries = Vec::new();
    for r in records {
        let mut headers = OwnedHeaders::new();
        for (key, value) in &r.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_slice()),
            });
        }
        let record = FutureRecord::<(), [u8]>::to(topic)
            .payload(&r.value)
            .partition(r.partition)
            .timestamp(r.timestamp_ms)
            .headers(headers);
        deliveries.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
    }
    for d in deliveries {
        d.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
}

/// Records over 3 windows of 2 partitions (event times in order per partition), with the
/// latencies the test chose per window start; `make` builds each record from its partition,
/// event time and latency.
fn foreign_windows(
    base: i64,
    seed: u64,
    make: impl Fn(i32, i64, i64) -> Foreign,
) -> (Vec<Foreign>, BTreeMap<i64, Vec<f64>>) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut records, mut expected) = (Vec::new(), BTreeMap::<i64, Vec<f64>>::new());
    for p in 0..2 {
        for w in 0..3 {
            for j in 0..30 {
                let t = base + w * WINDOW + j * WINDOW / 30;
                let latency = if rng.random_bool(0.1) {
                    rng.random_range(1_000..4_000)
                } else {
                    rng.random_range(3..500)
                };
                records.push(make(p, t, latency));
                expected
                    .entry(base + w * WINDOW)
                    .or_default()
                    .push(latency as f64);
            }
        }
    }
    (records, expected)
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn stamp(source: &str, format: TimeFormat) -> Stamp {
    Stamp {
        source: source.parse().unwrap(),
        format,
    }
}

/// Runs the monitor in-process over `records` with `stamps` and checks every window against
/// exact percentiles of the chosen latencies, and that `bad` (appended after the windows, in
/// the last window) is dead-lettered with `reason` and a detail naming `source`.
async fn windows_are_exact(
    name: &str,
    stamps: LatencyStamps,
    records: Vec<Foreign>,
    expected: BTreeMap<i64, Vec<f64>>,
    bad: Foreign,
    reason: &str,
    source: &str,
) {
    let s = monitor_topics(name);
    create_topic(&s.reduced, 2).await;
    produce_foreign(&s.reduced, &records).await;
    produce_foreign(&s.reduced, &[bad]).await;
    monitor_writes_exact_windows(&s, name, stamps, &expected, reason, source).await;
}

/// Runs the monitor in-process over `s.reduced` with `stamps` and checks every window against
/// exact percentiles of `expected` per window start, and that the one bad record is
/// dead-lettered with `reason` and a detail naming `source`.
async fn monitor_writes_exact_windows(
    s: &MonitorTopics,
    name: &str,
    stamps: LatencyStamps,
    expected: &BTreeMap<i64, Vec<f64>>,
    reason: &str,
    source: &str,
) {
    let mut config = test_config(s, &unique(name), Duration::from_secs(1));
    config.stamps = stamps;
    let monitor = InProcessMonitor::start(config).await;
    let docs = monitor
        .documents(expected.len(), Duration::from_secs(30))
        .await;
    let dead = consume(
        &s.dlq,
        1,
        Duration::from_secs(20),
        Duration::from_millis(300),
    );
    let report = monitor.stop().await;

    assert_eq!(docs.len(), expected.len(), "{:?}", docs.keys());
    for (start, latencies) in expected {
        let doc = document_json(&docs[&format!("visits-synchronizer-{start}")]);
        assert_document(&doc, latencies);
    }
    assert_eq!(report.rejected, 1, "{report:?}");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].headers["dlq.reason"], reason);
    let detail = &dead[0].headers["dlq.detail"];
    assert!(detail.contains(source), "{detail}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nested_rfc3339_field_is_the_start() {
    let base = (now_ms() - 120_000) / WINDOW * WINDOW;
    let order = |p: i32, t: i64, processed_at: serde_json::Value| Foreign {
        partition: p,
        timestamp_ms: t,
        value: serde_json::json!({"order": {"id": format!("o-{p}-{t}"), "total": 12.5},
            "meta": {"processed_at": processed_at, "by": "checkout"}})
        .to_string()
        .into_bytes(),
        headers: Vec::new(),
    };
    let (records, expected) = foreign_windows(base, 11, |p, t, latency| {
        order(p, t, rfc3339(t - latency).into())
    });
    let bad = order(1, base + 2 * WINDOW + 1_999, "yesterday".into());
    let stamps = LatencyStamps {
        start: stamp("field:/meta/processed_at", TimeFormat::Rfc3339),
        end: EndSource::KafkaTimestamp,
    };
    let source = "start time field:/meta/processed_at";
    windows_are_exact(
        "nested",
        stamps,
        records,
        expected,
        bad,
        "invalid_stamp",
        source,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_header_in_ms_over_a_binary_payload_is_the_start() {
    let base = (now_ms() - 120_000) / WINDOW * WINDOW;
    // Not JSON, not UTF-8: what an Avro or Protobuf record looks like to the monitor.
    let binary = |t: i64| {
        [0x00, 0xff, 0xfe, 0x80]
            .iter()
            .copied()
            .chain(t.to_le_bytes())
            .collect()
    };
    let (records, expected) = foreign_windows(base, 12, |p, t, latency| Foreign {
        partition: p,
        timestamp_ms: t,
        value: binary(t),
        headers: vec![("processed_at", (t - latency).to_string().into_bytes())],
    });
    let bad = Foreign {
        partition: 0,
        timestamp_ms: base + 2 * WINDOW + 1_999,
        value: binary(0),
        headers: vec![("other", b"1".to_vec())],
    };
    let stamps = LatencyStamps {
        start: stamp("header:processed_at", TimeFormat::UnixMs),
        end: EndSource::KafkaTimestamp,
    };
    let source = "start time header:processed_at";
    windows_are_exact(
        "binary",
        stamps,
        records,
        expected,
        bad,
        "missing_header",
        source,
    )
    .await;
}

/// Both ends in headers as 8-byte big-endian integers (microseconds, as Java's
/// `Longs.toByteArray(micros)` writes them); the Kafka timestamp is off by half a second and
/// must not count.
#[tokio::test(flavor = "multi_thread")]
async fn big_endian_headers_are_both_ends() {
    let base = (now_ms() - 120_000) / WINDOW * WINDOW;
    let micros = |ms: i64| (ms * 1_000 + 999).to_be_bytes().to_vec();
    let (records, expected) = foreign_windows(base, 13, |p, t, latency| Foreign {
        partition: p,
        timestamp_ms: t + 500,
        value: b"opaque".to_vec(),
        headers: vec![("start_us", micros(t - latency)), ("end_us", micros(t))],
    });
    let bad = Foreign {
        partition: 1,
        timestamp_ms: base + 2 * WINDOW + 1_999,
        value: b"opaque".to_vec(),
        headers: vec![
            ("start_us", vec![1, 2, 3]),
            ("end_us", micros(base + 2 * WINDOW + 1_999)),
        ],
    };
    let stamps = LatencyStamps {
        start: stamp("header:start_us", TimeFormat::UnixUs),
        end: EndSource::Stamp(stamp("header:end_us", TimeFormat::UnixUs)),
    };
    let source = "start time header:start_us";
    windows_are_exact(
        "be64",
        stamps,
        records,
        expected,
        bad,
        "invalid_stamp",
        source,
    )
    .await;
}

/// `--start-time lineage`: the latency starts when the source record entered the pipeline,
/// read from the lineage header the synchronizer writes. Visits that waited 30 s in their
/// topic before the synchronizer took them (a stalled stage) are measured from when they
/// entered it, exactly: every window equals the exact percentiles of (output timestamp −
/// source timestamp). A record without lineage is dead-lettered naming the source.
#[tokio::test(flavor = "multi_thread")]
async fn the_lineage_is_the_start_so_waiting_before_processing_counts() {
    let dir = tempfile::tempdir().unwrap();
    let s = monitor_topics("lineage");
    let visits = unique("lineage_v");
    create_topic(&visits, 2).await;
    create_topic(&s.reduced, 2).await;
    let entered = now_ms() - 30_000;
    let n = 60;
    let records: Vec<Outgoing> = (0..n)
        .map(|i| Outgoing {
            key: Some(format!("v{i}")),
            value: Some(visit_json(&format!("v{i}"), entered)),
            partition: Some((i % 2) as i32),
            timestamp_ms: Some(entered + i * 10),
            headers: Vec::new(),
        })
        .collect();
    produce(&visits, &records).await;
    let synchronizer = Job::start(
        env!("CARGO_BIN_EXE_synchronizer"),
        &[
            "--visits-topic",
            &visits,
            "--reduced-topic",
            &s.reduced,
            "--dead-letter-topic",
            &unique("lineage_d"),
            "--group",
            &unique("lineage_s"),
        ],
        dir.path(),
    );
    let out = consume(
        &s.reduced,
        n as usize,
        Duration::from_secs(60),
        Duration::from_secs(1),
    );
    assert!(synchronizer.terminate(Duration::from_secs(30)).success());
    assert_eq!(out.len(), n as usize);
    let mut expected: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for r in &out {
        let i: i64 = r.key.as_deref().unwrap()[1..].parse().unwrap();
        let end = r.timestamp_ms.unwrap();
        let latency = end - (entered + i * 10);
        assert!(
            latency >= 29_000,
            "v{i} waited 30 s before processing: {latency}"
        );
        let stamp = r.json()["start_processing_time_ms"].as_i64().unwrap();
        assert!(
            end - stamp < 29_000,
            "the default start does not see the wait"
        );
        expected
            .entry(end.div_euclid(WINDOW) * WINDOW)
            .or_default()
            .push(latency as f64);
    }
    let last_end = out.iter().filter_map(|r| r.timestamp_ms).max().unwrap();
    let bad = Foreign {
        partition: 0,
        timestamp_ms: last_end,
        value: br#"{"visit":{"id":"x","event_time":1},"start_processing_time_ms":1}"#.to_vec(),
        headers: Vec::new(),
    };
    produce_foreign(&s.reduced, &[bad]).await;
    let stamps = LatencyStamps {
        start: stamp("lineage", TimeFormat::UnixMs),
        end: EndSource::KafkaTimestamp,
    };
    monitor_writes_exact_windows(
        &s,
        "lineage_g",
        stamps,
        &expected,
        "missing_header",
        "start time lineage",
    )
    .await;
}
