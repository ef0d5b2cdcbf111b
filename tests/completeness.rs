//! Reconciliation on the real broker (`monitor --source-topic`): every record of the source
//! topic is accounted for in the completeness document of its source-time window — exactly
//! the records the synchronizer's seeded loss switch drops are lost, in their windows, and
//! nowhere else, while those it dead-letters, or a later stage declares filtered, are not; a
//! record produced twice is one record and one duplicate; a held source
//! partition is overdue while it is held and late, not lost, once it arrives; three instances,
//! one killed and one added, write the final documents one undisturbed instance writes; a
//! source record retention deletes before it arrives is unknown, never lost.

mod support;

use sla_monitor::completeness::document::CompletenessDocument;
use sla_monitor::monitor::CompletenessConfig;
use sla_monitor::synchronizer::loss::LossPolicy;
use std::collections::BTreeMap;
use std::time::Duration;
use support::in_process::{kafka_args, test_config, InProcessMonitor};
use support::private_broker::{free_port, start_tansu, start_tansu_maintained};
use support::*;

/// A source record: (partition, offset, timestamp ms).
type Position = (i32, i64, i64);

/// Every record of `topic`, by position.
fn positions(topic: &str) -> Vec<Position> {
    consume_to_end(topic)
        .into_iter()
        .map(|r| (r.partition, r.offset, r.timestamp_ms.expect("timestamped")))
        .collect()
}

fn window_of(t: i64) -> i64 {
    t - t.rem_euclid(WINDOW)
}

/// Produces `n` source records round-robin over four partitions, stamped by the producer, and
/// returns their positions as the broker stored them.
async fn produce_source(n: i32, source: &str) -> Vec<Position> {
    let records: Vec<Outgoing> = (0..n)
        .map(|i| Outgoing {
            key: Some(format!("s{i}")),
            value: Some(b"{}".to_vec()),
            partition: Some(i % 4),
            ..Default::default()
        })
        .collect();
    produce(source, &records).await;
    positions(source)
}

/// A monitor of `topics` reconciling with `source` (and the pipeline's `dead_letters`
/// topics), with an SLA of `sla`, records lost `lost_after` after entering.
async fn reconciling_monitor(
    topics: &MonitorTopics,
    source: &str,
    dead_letters: &[&str],
    sla: Duration,
    lost_after: Duration,
) -> InProcessMonitor {
    let mut config = test_config(topics, &unique("compl_g"), Duration::from_millis(1_000));
    config.window.sla_ms = sla.as_millis() as i64;
    config.completeness = Some(CompletenessConfig {
        source_topic: source.to_string(),
        lost_after,
        dead_letter_topics: dead_letters.iter().map(|t| t.to_string()).collect(),
    });
    InProcessMonitor::start(config).await
}

/// Waits until every window from `first` to `last` (starts) has a final document.
async fn final_documents(
    monitor: &InProcessMonitor,
    first: i64,
    last: i64,
    timeout: Duration,
) -> BTreeMap<i64, CompletenessDocument> {
    let job = monitor.config.job_name.clone();
    let all_final = |documents: &BTreeMap<String, CompletenessDocument>| {
        (first..=last).step_by(WINDOW as usize).all(|w| {
            documents
                .get(&format!("{job}-completeness-{w}"))
                .is_some_and(|d| d.is_final)
        })
    };
    let documents = tokio::time::timeout(timeout, monitor.sink.wait_for_completeness(all_final))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no final completeness documents for every window {first}..={last} within \
                 {timeout:?}: {:#?}",
                monitor.sink.completeness_documents()
            )
        });
    documents
        .into_values()
        .map(|d| (d.window_start_ms, d))
        .collect()
}

/// Waits until every source window the records at `positions` entered in has a final
/// document, checks that each adds up, and returns them.
async fn final_documents_of(
    monitor: &InProcessMonitor,
    positions: &[Position],
) -> BTreeMap<i64, CompletenessDocument> {
    let windows = positions.iter().map(|&(_, _, t)| window_of(t));
    let (first, last) = (windows.clone().min().unwrap(), windows.max().unwrap());
    let documents = final_documents(monitor, first, last, Duration::from_secs(120)).await;
    documents.values().for_each(assert_adds_up);
    documents
}

/// The sum of one count over `documents`.
fn total(
    documents: &BTreeMap<i64, CompletenessDocument>,
    count: fn(&CompletenessDocument) -> u64,
) -> u64 {
    documents.values().map(count).sum()
}

/// The classes add up to `expected`.
fn assert_adds_up(d: &CompletenessDocument) {
    let sum = d.arrived_within_sla
        + d.arrived_late
        + d.dead_lettered
        + d.filtered
        + d.in_flight
        + d.overdue
        + d.lost
        + d.unknown;
    assert_eq!(sum, d.expected, "{d:#?}");
}

/// Whether the test makes source record `i` of a burst undecodable (the synchronizer
/// dead-letters it).
fn undecodable(i: i32) -> bool {
    i % 13 == 5
}

#[tokio::test(flavor = "multi_thread")]
async fn exactly_the_records_the_synchronizer_drops_are_lost_and_its_dead_letters_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let topics = monitor_topics("compl");
    let visits = unique("compl_v");
    let dead_letters = unique("compl_sd");
    create_topic(&visits, 2).await;
    create_topic(&topics.reduced, 2).await;
    create_topic(&dead_letters, 1).await;
    let synchronizer = Job::start(
        env!("CARGO_BIN_EXE_synchronizer"),
        &[
            "--visits-topic",
            &visits,
            "--reduced-topic",
            &topics.reduced,
            "--dead-letter-topic",
            &dead_letters,
            "--group",
            &unique("compl_sg"),
            "--loss",
            "10%",
            "--loss-seed",
            "42",
        ],
        dir.path(),
    );
    let monitor = reconciling_monitor(
        &topics,
        &visits,
        &[&dead_letters],
        Duration::from_secs(1),
        Duration::from_secs(20),
    )
    .await;
    // Four bursts of 60 visits, one every 1.5 s: records in three or four source windows.
    // Every thirteenth is not JSON: the synchronizer dead-letters it.
    for burst in 0..4 {
        let records: Vec<Outgoing> = (0..60)
            .map(|i| {
                let id = format!("v{burst}_{i}");
                let value = if undecodable(i) {
                    b"not a visit".to_vec()
                } else {
                    visit_json(&id, now_ms())
                };
                Outgoing {
                    key: Some(id.clone()),
                    value: Some(value),
                    partition: Some(i % 2),
                    ..Default::default()
                }
            })
            .collect();
        produce(&visits, &records).await;
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    }
    let source = positions(&visits);
    assert_eq!(source.len(), 240);
    let keys: BTreeMap<(i32, i64), String> = consume_to_end(&visits)
        .into_iter()
        .map(|r| ((r.partition, r.offset), r.key.expect("keyed")))
        .collect();
    let policy = LossPolicy {
        rate_ppm: 100_000,
        seed: 42,
    };
    let is_undecodable = |p: i32, o: i64| {
        let key = &keys[&(p, o)];
        let i: i32 = key.rsplit('_').next().unwrap().parse().unwrap();
        undecodable(i)
    };
    // Two records the loss switch drops are declared filtered by a later stage, in its own
    // dead letter (the lineage of the record it dropped): they count filtered, not lost.
    let declared: Vec<Position> = source
        .iter()
        .filter(|&&(p, o, _)| !is_undecodable(p, o) && policy.drops(p, o))
        .take(2)
        .copied()
        .collect();
    let declarations: Vec<Outgoing> = declared
        .iter()
        .map(|&(p, o, t)| Outgoing {
            value: Some(b"{}".to_vec()),
            headers: vec![
                ("lineage".into(), format!("{visits}:{p}:{o}:{t}")),
                ("dlq.reason".into(), "filtered".into()),
                ("dlq.source.topic".into(), "stage_two_input".into()),
                ("dlq.source.partition".into(), "0".into()),
                ("dlq.source.offset".into(), o.to_string()),
            ],
            ..Default::default()
        })
        .collect();
    produce(&dead_letters, &declarations).await;
    // Per window: records, dead-lettered, filtered, lost.
    let mut expected: BTreeMap<i64, [u64; 4]> = BTreeMap::new();
    for &(p, o, t) in &source {
        let entry = expected.entry(window_of(t)).or_default();
        entry[0] += 1;
        if is_undecodable(p, o) {
            entry[1] += 1;
        } else if declared.contains(&(p, o, t)) {
            entry[2] += 1;
        } else if policy.drops(p, o) {
            entry[3] += 1;
        }
    }
    let [dead, filtered, dropped] = [1, 2, 3].map(|i| expected.values().map(|e| e[i]).sum::<u64>());
    assert!((8..50).contains(&dropped), "about a tenth: {dropped}");
    assert_eq!((dead, filtered), (4 * 5, 2));
    let (first, last) = (
        *expected.keys().next().unwrap(),
        *expected.keys().last().unwrap(),
    );
    let documents = final_documents(&monitor, first, last, Duration::from_secs(120)).await;
    for (&window, &[records, dead, filtered, lost]) in &expected {
        let d = &documents[&window];
        assert_adds_up(d);
        assert_eq!(d.expected, records, "window {window}: {d:#?}");
        assert_eq!(d.dead_lettered, dead, "window {window}: {d:#?}");
        assert_eq!(d.filtered, filtered, "window {window}: {d:#?}");
        assert_eq!(d.lost, lost, "window {window}: {d:#?}");
        assert_eq!(
            d.arrived_within_sla + d.arrived_late,
            records - dead - filtered - lost,
            "window {window}: every kept record arrived: {d:#?}"
        );
        assert_eq!((d.overdue, d.in_flight, d.unknown), (0, 0, 0), "{d:#?}");
        assert_eq!(d.duplicates, 0, "{d:#?}");
        assert_eq!(d.first_missing.is_empty(), lost == 0, "{d:#?}");
    }
    // No false loss in any other window either.
    for d in documents.values() {
        assert_adds_up(d);
        if !expected.contains_key(&d.window_start_ms) {
            assert_eq!((d.expected, d.lost), (0, 0), "{d:#?}");
        }
    }
    let report = monitor.stop().await;
    assert_eq!(report.without_lineage, 0, "{report:?}");
    assert!(synchronizer.terminate(Duration::from_secs(30)).success());
}

fn output_of(source: &str, (p, o, t): Position, at: i64) -> Outgoing {
    let id = format!("{p}-{o}");
    Outgoing {
        key: Some(id.clone()),
        value: Some(reduced_json(&id, at - 10)),
        partition: Some(p % 2),
        timestamp_ms: Some(at),
        headers: vec![("lineage".into(), format!("{source}:{p}:{o}:{t}"))],
    }
}

/// Produces, on `cluster`, a source record stamped now into partition 0 of `source` (its
/// `offset`, the offsets being handed out in order) and, at once, its output: one record of a
/// pipeline that flows within the SLA.
async fn flowing_record(cluster: &Cluster, source: &str, reduced: &str, offset: i64) {
    let t = now_ms();
    let record = Outgoing {
        key: Some(format!("k{offset}")),
        value: Some(b"{}".to_vec()),
        partition: Some(0),
        timestamp_ms: Some(t),
        ..Default::default()
    };
    cluster.produce(source, &[record]).await;
    cluster
        .produce(reduced, &[output_of(source, (0, offset, t), now_ms())])
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_record_retention_deletes_before_it_arrives_is_unknown_never_lost() {
    // A broker of the test's own: its retention runs only once it is restarted with a 1 s
    // maintenance interval, after the monitor has seen the records' window, so the order of
    // events does not depend on timing.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut broker = start_tansu(dir.path(), port, &format!("127.0.0.1:{port}"), false);
    let cluster = Cluster {
        brokers: format!("127.0.0.1:{port}"),
        properties: Vec::new(),
    };
    let topics = monitor_topics("retained");
    let source = unique("retained_v");
    let retention = [("cleanup.policy", "delete"), ("retention.ms", "3000")];
    cluster.create_topic_with(&source, 1, &retention).await;
    cluster.create_topic(&topics.reduced, 1).await;
    let mut config = test_config(&topics, &unique("retained_g"), Duration::from_millis(1_000));
    config.kafka.brokers = cluster.brokers.clone();
    // The first produce to a fresh broker may take a second or more.
    config.window.sla_ms = 5_000;
    config.completeness = Some(CompletenessConfig {
        source_topic: source.clone(),
        lost_after: Duration::from_secs(40),
        dead_letter_topics: Vec::new(),
    });
    let monitor = InProcessMonitor::start(config).await;
    // Twenty source records at offsets 0..20; only 0..10 ever arrive.
    let t = now_ms();
    let batch: Vec<Outgoing> = (0..20)
        .map(|i| Outgoing {
            key: Some(format!("b{i}")),
            value: Some(b"{}".to_vec()),
            partition: Some(0),
            timestamp_ms: Some(t),
            ..Default::default()
        })
        .collect();
    cluster.produce(&source, &batch).await;
    let outputs: Vec<Outgoing> = (0..10)
        .map(|o| output_of(&source, (0, o, t), now_ms()))
        .collect();
    cluster.produce(&topics.reduced, &outputs).await;
    // From the next window on, the pipeline keeps flowing: a record every 300 ms (offsets 20,
    // 21, …), each arriving at once, so the monitor's progress moves and the source always
    // keeps a recent record.
    let next_window = window_of(t) + WINDOW;
    tokio::time::sleep(Duration::from_millis((next_window - now_ms()).max(0) as u64)).await;
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flow = {
        let (cluster, source, reduced) = (cluster.clone(), source.clone(), topics.reduced.clone());
        let running = running.clone();
        tokio::spawn(async move {
            let mut offset = 20;
            while running.load(std::sync::atomic::Ordering::Relaxed) {
                flowing_record(&cluster, &source, &reduced, offset).await;
                offset += 1;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let job = monitor.config.job_name.clone();
    let window = window_of(t);
    let id = format!("{job}-completeness-{window}");
    let seen = tokio::time::timeout(
        Duration::from_secs(90),
        monitor
            .sink
            .wait_for_completeness(|documents| documents.get(&id).is_some_and(|d| d.overdue == 10)),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the ten records never showed overdue: {:#?}",
            monitor.sink.completeness_documents()
        )
    });
    assert_eq!(seen[&id].expected, 20, "{:#?}", seen[&id]);
    // Now retention runs: every record older than 3 s is deleted, the batch among them,
    // while its window is far from final (40 s).
    broker.kill().unwrap();
    broker.wait().unwrap();
    let mut broker = start_tansu_maintained(dir.path(), port, "1s");
    let documents = final_documents(&monitor, window, window, Duration::from_secs(120)).await;
    // The records were deleted: the source's first record is past the batch.
    let kept = cluster.consume(&source, 1, Duration::from_secs(10), Duration::ZERO);
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    flow.await.unwrap();
    assert!(kept.first().is_some_and(|r| r.offset > 20), "{kept:?}");
    let d = &documents[&window];
    assert_adds_up(d);
    assert_eq!(d.expected, 20, "{d:#?}");
    assert_eq!(d.arrived_within_sla, 10, "{d:#?}");
    assert_eq!((d.unknown, d.lost, d.overdue), (10, 0, 0), "{d:#?}");
    assert!(d.first_missing.is_empty(), "{d:#?}");
    monitor.stop().await;
    broker.kill().unwrap();
    broker.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn scattered_arrivals_too_large_for_one_record_travel_in_pieces_and_count_exactly() {
    // A stage that re-keys records: each source partition's even offsets come out in output
    // partition 0, its odd ones in partition 1, so each output partition's arrivals are one
    // range per record. With records of at most 5,000 bytes, a window's arrivals do not fit
    // one shuffle record.
    let topics = monitor_topics("pieces");
    let source = unique("pieces_v");
    create_topic(&source, 4).await;
    create_topic(&topics.reduced, 2).await;
    let mut config = test_config(&topics, &unique("pieces_g"), Duration::from_millis(1_000));
    config.kafka = kafka_args(&["-X", "message.max.bytes=5000"]);
    // Window parts as a few centroids, so that they fit such records too.
    config.window.digest.exact_threshold = 50;
    config.window.digest.compression = 50;
    config.window.sla_ms = 5_000;
    config.completeness = Some(CompletenessConfig {
        source_topic: source.clone(),
        lost_after: Duration::from_secs(10),
        dead_letter_topics: Vec::new(),
    });
    let monitor = InProcessMonitor::start(config).await;
    let positions = produce_source(3_000, &source).await;
    let now = now_ms();
    let outputs: Vec<Outgoing> = positions
        .iter()
        .map(|&(p, o, t)| Outgoing {
            partition: Some((o % 2) as i32),
            ..output_of(&source, (p, o, t), now)
        })
        .collect();
    produce(&topics.reduced, &outputs).await;
    let documents = final_documents_of(&monitor, &positions).await;
    assert_eq!(total(&documents, |d| d.expected), 3_000);
    assert_eq!(total(&documents, |d| d.arrived_within_sla), 3_000);
    assert_eq!(total(&documents, |d| d.duplicates + d.lost + d.overdue), 0);
    // The arrivals did travel in pieces.
    let pieces = consume_to_end(&topics.shuffle)
        .into_iter()
        .filter_map(|r| r.key)
        .filter(|k| k.contains("|arrivals|") && k.split('|').count() > 4)
        .count();
    assert!(pieces > 0, "no arrivals record was cut into pieces");
    monitor.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_late_record_after_idleness_closed_every_window_still_counts_as_arrived() {
    let topics = monitor_topics("late_alone");
    let source = unique("late_alone_v");
    create_topic(&source, 1).await;
    create_topic(&topics.reduced, 1).await;
    let mut config = test_config(
        &topics,
        &unique("late_alone_g"),
        Duration::from_millis(1_000),
    );
    config.window.sla_ms = 5_000;
    config.completeness = Some(CompletenessConfig {
        source_topic: source.clone(),
        lost_after: Duration::from_secs(20),
        dead_letter_topics: Vec::new(),
    });
    let monitor = InProcessMonitor::start(config).await;
    let records: Vec<Outgoing> = (0..3)
        .map(|i| Outgoing {
            key: Some(format!("s{i}")),
            value: Some(b"{}".to_vec()),
            partition: Some(0),
            ..Default::default()
        })
        .collect();
    produce(&source, &records).await;
    let positions = positions(&source);
    // Two of the three arrive now; the output partition then falls silent and its window is
    // closed by idleness. (Stamped when produced, not when the source records were: on a
    // loaded machine reading the source back can take longer than the idle timeout, and the
    // outputs would be late themselves.)
    let at = now_ms();
    let outputs: Vec<Outgoing> = positions[..2]
        .iter()
        .map(|&r| output_of(&source, r, at))
        .collect();
    produce(&topics.reduced, &outputs).await;
    let window = window_of(at);
    tokio::time::timeout(
        Duration::from_secs(60),
        monitor
            .sink
            .wait_until(|documents| documents.values().any(|d| d.window_start_ms == window)),
    )
    .await
    .expect("the window closed by idleness");
    // The third arrives stamped in that closed window: late, with no window open to carry
    // its arrival.
    produce(&topics.reduced, &[output_of(&source, positions[2], at)]).await;
    let documents = final_documents_of(&monitor, &positions).await;
    assert_eq!(total(&documents, |d| d.expected), 3, "{documents:#?}");
    let arrived = total(&documents, |d| d.arrived_within_sla + d.arrived_late);
    assert_eq!(arrived, 3, "{documents:#?}");
    assert_eq!(
        total(&documents, |d| d.lost + d.overdue),
        0,
        "{documents:#?}"
    );
    let report = monitor.stop().await;
    assert_eq!(report.late, 1, "{report:?}");
    assert_eq!(report.late_arrivals_alone, 1, "{report:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicates_count_apart_and_a_held_partition_is_overdue_then_late_never_lost() {
    let topics = monitor_topics("held");
    let source = unique("held_v");
    create_topic(&source, 4).await;
    create_topic(&topics.reduced, 2).await;
    // An SLA of 10 s: the test's stage takes a moment to read the source's positions back.
    let monitor = reconciling_monitor(
        &topics,
        &source,
        &[],
        Duration::from_secs(10),
        Duration::from_secs(30),
    )
    .await;
    let positions = produce_source(160, &source).await;
    assert_eq!(positions.len(), 160);
    let (held, flowing): (Vec<Position>, Vec<Position>) =
        positions.iter().partition(|&&(p, _, _)| p == 3);
    // Partitions 0 to 2 flow, out now (within the SLA), five records of partition 0 twice.
    let now = now_ms();
    let flow = |&r: &Position| output_of(&source, r, now);
    let mut outputs: Vec<Outgoing> = flowing.iter().map(flow).collect();
    outputs.extend(
        flowing
            .iter()
            .filter(|&&(p, o, _)| p == 0 && o < 5)
            .map(flow),
    );
    produce(&topics.reduced, &outputs).await;
    // Partition 3 is held until the monitor says its 40 records are overdue.
    let job = monitor.config.job_name.clone();
    let overdue = |documents: &BTreeMap<String, CompletenessDocument>| {
        documents
            .values()
            .filter(|d| d.job == job)
            .map(|d| d.overdue)
            .sum::<u64>()
            == 40
    };
    let seen = tokio::time::timeout(
        Duration::from_secs(90),
        monitor.sink.wait_for_completeness(overdue),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the held records never showed overdue: {:#?}",
            monitor.sink.completeness_documents()
        )
    });
    for d in seen.values() {
        assert_adds_up(d);
        assert_eq!(d.lost, 0, "not lost yet: {d:#?}");
        if d.overdue > 0 {
            assert!(
                d.first_missing.iter().all(|m| m.starts_with("3:")),
                "{d:#?}"
            );
            assert!(d.oldest_missing_age_ms.is_some_and(|age| age >= 10_000));
        }
    }
    let now = now_ms();
    let held_outputs: Vec<Outgoing> = held.iter().map(|&r| output_of(&source, r, now)).collect();
    produce(&topics.reduced, &held_outputs).await;
    let documents = final_documents_of(&monitor, &positions).await;
    let total = |count: fn(&CompletenessDocument) -> u64| total(&documents, count);
    assert_eq!(total(|d| d.expected), 160);
    assert_eq!(total(|d| d.lost), 0, "{documents:#?}");
    assert_eq!(total(|d| d.overdue + d.in_flight + d.unknown), 0);
    assert_eq!(total(|d| d.duplicates), 5, "{documents:#?}");
    assert_eq!(
        total(|d| d.arrived_late),
        40,
        "the held partition: {documents:#?}"
    );
    assert_eq!(total(|d| d.arrived_within_sla), 120, "{documents:#?}");
    monitor.stop().await;
}

/// Per source window: (expected, lost, duplicates).
type Truth = BTreeMap<i64, (u64, u64, u64)>;

/// Source partitions and output partitions of the multi-instance test.
const SOURCE_PARTITIONS: i32 = 4;
const OUTPUT_PARTITIONS: i32 = 4;

/// The records of a stage over `windows` windows from `base`: per source partition, 6 records a
/// window (offsets in order); the stage drops every record whose offset is 5 mod 17 in source
/// partition 1 and sends those at 3 mod 11 in partition 2 twice; each output 300 ms after its
/// source record. Returns (source records, output records, (window → (expected, lost,
/// duplicates))).
fn staged(source: &str, base: i64, windows: i64) -> (Vec<Outgoing>, Vec<Outgoing>, Truth) {
    let (mut inputs, mut outputs) = (Vec::new(), Vec::new());
    let mut truth = Truth::new();
    for p in 0..SOURCE_PARTITIONS {
        for o in 0..windows * 6 {
            let t = base + o * WINDOW / 6 + i64::from(p) * 10;
            inputs.push(Outgoing {
                key: Some(format!("s{p}-{o}")),
                value: Some(b"{}".to_vec()),
                partition: Some(p),
                timestamp_ms: Some(t),
                headers: Vec::new(),
            });
            let entry = truth.entry(window_of(t)).or_default();
            entry.0 += 1;
            if p == 1 && o % 17 == 5 {
                entry.1 += 1;
                continue;
            }
            let copies = if p == 2 && o % 11 == 3 { 2 } else { 1 };
            entry.2 += copies - 1;
            for _ in 0..copies {
                let mut out = output_of(source, (p, o, t), t + 300);
                out.partition = Some(p % OUTPUT_PARTITIONS);
                outputs.push(out);
            }
        }
    }
    outputs.sort_by_key(|r| r.timestamp_ms);
    (inputs, outputs, truth)
}

/// The final completeness documents in `index`, by window start, once every window of
/// `windows` has one.
async fn final_in_es(
    index: &str,
    windows: &[i64],
    timeout: Duration,
) -> BTreeMap<i64, serde_json::Value> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let documents: BTreeMap<i64, serde_json::Value> = es_documents(index)
            .await
            .into_values()
            .filter(|d| d["final"] == true)
            .map(|d| (d["window_start_ms"].as_i64().unwrap(), d))
            .collect();
        if windows.iter().all(|w| documents.contains_key(w)) {
            return documents;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "final completeness documents of {windows:?} not all in {index} within {timeout:?}: {:?}",
            documents.keys()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A document's counts (what must not depend on instances, kills or replays).
fn counts(d: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
    [
        "expected",
        "arrived_within_sla",
        "arrived_late",
        "dead_lettered",
        "filtered",
        "in_flight",
        "overdue",
        "lost",
        "unknown",
        "duplicates",
        "first_missing",
    ]
    .iter()
    .map(|f| (f.to_string(), d[*f].clone()))
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_instances_one_killed_one_added_write_the_final_documents_of_one() {
    let dir = tempfile::tempdir().unwrap();
    let topics = monitor_topics("compl_scale");
    let source = unique("compl_scale_v");
    create_topic(&source, SOURCE_PARTITIONS).await;
    create_topic(&topics.reduced, OUTPUT_PARTITIONS).await;
    let base = (now_ms() - 600_000) / WINDOW * WINDOW;
    let windows = 10;
    let (inputs, outputs, truth) = staged(&source, base, windows);
    produce(&source, &inputs).await;
    // Phase 1 ends half-way through window 4: its arrivals are open when an instance dies.
    let (phase1, phase2): (Vec<Outgoing>, Vec<Outgoing>) = outputs
        .into_iter()
        .partition(|r| r.timestamp_ms.unwrap() < base + 4 * WINDOW + WINDOW / 2);
    produce(&topics.reduced, &phase1).await;
    let args = |topics: &MonitorTopics, group: &str, index: &str| {
        MonitorArgs::new(topics, group)
            .elasticsearch(index)
            .set("--source-topic", &source)
            .set("--lost-after", "6s")
            .set("--idle-timeout", "10m")
            .set("--commit-interval", "200ms")
            .short_session()
    };
    let index = test_index("compl_scale");
    let group = unique("compl_scale_g");
    let live = args(&topics, &group, &index);
    let mut instances: Vec<Job> = (0..3).map(|_| live.start(dir.path())).collect();
    wait_until_spread(&instances, &topics, OUTPUT_PARTITIONS, true);
    let completeness_index = format!("{index}-completeness");
    // Early windows are final before the kill (the ledger has something to lose).
    final_in_es(&completeness_index, &[base], Duration::from_secs(90)).await;
    let merger = instances
        .iter()
        .position(|j| assigned(j, &topics.shuffle) > 0.0)
        .expect("one instance merges (and keeps the ledger)");
    instances.remove(merger).kill();
    produce(&topics.reduced, &phase2[..phase2.len() / 2]).await;
    wait_out_killed_session();
    instances.push(live.start(dir.path()));
    wait_until_spread(&instances, &topics, OUTPUT_PARTITIONS, true);
    produce(&topics.reduced, &phase2[phase2.len() / 2..]).await;
    // Far past the data, so every data window becomes final (no lineage: not accounted).
    produce(
        &topics.reduced,
        &terminators(OUTPUT_PARTITIONS, base + 60 * WINDOW),
    )
    .await;
    let data_windows: Vec<i64> = truth.keys().copied().collect();
    let written = final_in_es(&completeness_index, &data_windows, Duration::from_secs(120)).await;
    for job in instances {
        assert!(job.terminate(Duration::from_secs(30)).success());
    }
    for (window, &(expected, lost, duplicates)) in &truth {
        let d = &written[window];
        assert_eq!(d["expected"], expected, "window {window}: {d}");
        assert_eq!(d["lost"], lost, "window {window}: {d}");
        assert_eq!(d["duplicates"], duplicates, "window {window}: {d}");
        assert_eq!(
            d["arrived_within_sla"],
            expected - lost,
            "window {window}: {d}"
        );
    }
    // `alerts report` counts the lost records as misses of the pipeline.
    let lost: u64 = truth.values().map(|t| t.1).sum();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_alerts"))
        .args([
            "report",
            "--es-url",
            &es_url(),
            "--es-index",
            &index,
            "--json",
        ])
        .args(["--from", &iso_ms(base), "--to", &iso_ms(base + 60 * WINDOW)])
        .args(["--job", "visits-synchronizer"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let total = &report["jobs"][0]["total"];
    assert_eq!(total["missing"], lost, "{report}");
    let judged = total["judged"].as_u64().unwrap();
    assert_eq!(
        judged,
        total["records"].as_u64().unwrap() + lost,
        "{report}"
    );
    assert!(total["bad"].as_u64().unwrap() >= lost, "{report}");
    // One undisturbed instance over the same records writes the same final documents.
    let own = MonitorTopics {
        reduced: topics.reduced.clone(),
        dlq: unique("compl_scale_ref_d"),
        checkpoints: unique("compl_scale_ref_c"),
        shuffle: unique("compl_scale_ref_s"),
    };
    let reference_index = test_index("compl_scale_ref");
    let reference = args(&own, &unique("compl_scale_ref_g"), &reference_index).start(dir.path());
    let alone = final_in_es(
        &format!("{reference_index}-completeness"),
        &data_windows,
        Duration::from_secs(120),
    )
    .await;
    assert!(reference.terminate(Duration::from_secs(30)).success());
    for window in &data_windows {
        assert_eq!(
            counts(&written[window]),
            counts(&alone[window]),
            "window {window}"
        );
    }
}

/// The provisioned "Records missing" rule with test timings — evaluated every second over 2 s
/// histogram buckets and a 60 s range, pending for 3 s — and a `test_run` label.
fn completeness_rule_file(run: &str) -> String {
    let original = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dashboards/grafana/provisioning/alerting/completeness-alert-rules.yaml"
    ))
    .unwrap();
    let changed = original
        .replace("    interval: 1m\n", "    interval: 1s\n")
        .replace("interval: 1m", "interval: 2s")
        .replace("from: 1800", "from: 60")
        .replace("for: 1m", "for: 3s")
        .replace(
            "severity: critical",
            &format!("severity: critical\n          test_run: {run}"),
        );
    assert_ne!(changed, original);
    changed
}

/// Per source partition, the age of the oldest record the pipeline still owes.
const IN_FLIGHT_AGE: &str = "sla_monitor_completeness_in_flight_age_seconds";

/// The state of the "Records missing" instance of `job` in the evaluator at `alerts`.
async fn instance_state(alerts: &str, job: &str) -> Option<String> {
    let states: serde_json::Value = reqwest::get(format!("http://{alerts}/state"))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    states[0]["instances"]
        .as_array()?
        .iter()
        .find(|i| i["labels"]["job"] == job)
        .and_then(|i| i["state"]["state"].as_str().map(String::from))
}

async fn wait_instance(alerts: &str, job: &str, wanted: &str, seen: &mut Vec<String>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let state = instance_state(alerts, job).await;
        if let Some(s) = &state {
            if seen.last() != Some(s) {
                seen.push(s.clone());
            }
        }
        if state.as_deref() == Some(wanted) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the Records missing instance of {job} is not {wanted} within 90 s; states seen: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_records_missing_rule_fires_while_a_partition_is_held_and_clears_once_it_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let topics = monitor_topics("compl_alert");
    let source = unique("compl_alert_v");
    create_topic(&source, 4).await;
    create_topic(&topics.reduced, 2).await;
    let index = test_index("compl_alert");
    let job = unique("held-pipeline");
    let monitor = MonitorArgs::new(&topics, &unique("compl_alert_g"))
        .elasticsearch(&index)
        .set("--job-name", &job)
        .set("--sla", "10s")
        .set("--source-topic", &source)
        .set("--lost-after", "60s")
        .start(dir.path());
    let run = unique("run");
    let rules = dir.path().join("completeness-rule.yaml");
    std::fs::write(&rules, completeness_rule_file(&run)).unwrap();
    let positions = produce_source(80, &source).await;
    let (held, flowing): (Vec<Position>, Vec<Position>) =
        positions.iter().partition(|&&(p, _, _)| p == 3);
    let now = now_ms();
    let outputs: Vec<Outgoing> = flowing
        .iter()
        .map(|&r| output_of(&source, r, now))
        .collect();
    produce(&topics.reduced, &outputs).await;
    let alerts = start_alerts(&rules, &index, &[], dir.path());
    let address = http_addr_of(&alerts);
    // Held: the instance of this pipeline goes Pending, then Alerting (for: 3 s).
    let mut seen = Vec::new();
    wait_instance(&address, &job, "Alerting", &mut seen).await;
    assert!(
        seen.iter().any(|s| s == "Pending"),
        "Pending before Alerting: {seen:?}"
    );
    // The held partition's oldest owed record is past the SLA; the others owe nothing.
    let age = |partition: &str| {
        let label = format!("source_partition=\"{partition}\"");
        metric_sum(&monitor, IN_FLIGHT_AGE, &[&label])
    };
    wait_for(
        "the held partition's in-flight age past the SLA",
        Duration::from_secs(30),
        || age("3").is_some_and(|a| a >= 10.0),
    );
    for flowing in ["0", "1", "2"] {
        assert_eq!(age(flowing), Some(0.0), "partition {flowing}");
    }
    let now = now_ms();
    let released: Vec<Outgoing> = held.iter().map(|&r| output_of(&source, r, now)).collect();
    produce(&topics.reduced, &released).await;
    wait_instance(&address, &job, "Normal", &mut seen).await;
    wait_for(
        "the released partition's in-flight age back to 0",
        Duration::from_secs(30),
        || age("3") == Some(0.0),
    );
    let completeness = es_documents(&format!("{index}-completeness")).await;
    let late: u64 = completeness
        .values()
        .map(|d| d["arrived_late"].as_u64().unwrap())
        .sum();
    let missing: u64 = completeness
        .values()
        .map(|d| d["missing"].as_u64().unwrap())
        .sum();
    assert_eq!((late, missing), (20, 0), "{completeness:?}");
    assert!(alerts.terminate(Duration::from_secs(30)).success());
    assert!(monitor.terminate(Duration::from_secs(30)).success());
}
