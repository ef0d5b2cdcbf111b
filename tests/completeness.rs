//! Reconciliation on the real broker (`monitor --source-topic`): every record of the source
//! topic is accounted for in the completeness document of its source-time window — exactly
//! the records the synchronizer's seeded loss switch drops are lost, in their windows, and
//! nowhere else; a record produced twice is one record and one duplicate; a held source
//! partition is overdue while it is held and late, not lost, once it arrives.

mod support;

use sla_monitor::completeness::document::CompletenessDocument;
use sla_monitor::monitor::CompletenessConfig;
use sla_monitor::synchronizer::loss::LossPolicy;
use std::collections::BTreeMap;
use std::time::Duration;
use support::in_process::{test_config, InProcessMonitor};
use support::*;

/// The test monitor's windows (2 s, SLA 1 s; see `test_config`).
const WINDOW: i64 = 2_000;

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

/// A monitor of `topics` reconciling with `source`, with an SLA of `sla`, records lost
/// `lost_after` after entering.
async fn reconciling_monitor(
    topics: &MonitorTopics,
    source: &str,
    sla: Duration,
    lost_after: Duration,
) -> InProcessMonitor {
    let mut config = test_config(topics, &unique("compl_g"), Duration::from_millis(1_000));
    config.window.sla_ms = sla.as_millis() as i64;
    config.completeness = Some(CompletenessConfig {
        source_topic: source.to_string(),
        lost_after,
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
                .get(&format!("{job}-{w}"))
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

#[tokio::test(flavor = "multi_thread")]
async fn exactly_the_records_the_synchronizer_drops_are_lost_in_their_windows() {
    let dir = tempfile::tempdir().unwrap();
    let topics = monitor_topics("compl");
    let visits = unique("compl_v");
    create_topic(&visits, 2).await;
    create_topic(&topics.reduced, 2).await;
    let synchronizer = Job::start(
        env!("CARGO_BIN_EXE_synchronizer"),
        &[
            "--visits-topic",
            &visits,
            "--reduced-topic",
            &topics.reduced,
            "--dead-letter-topic",
            &unique("compl_sd"),
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
        Duration::from_secs(1),
        Duration::from_secs(20),
    )
    .await;
    // Four bursts of 60 visits, one every 1.5 s: records in three or four source windows.
    for burst in 0..4 {
        let records: Vec<Outgoing> = (0..60)
            .map(|i| {
                let id = format!("v{burst}_{i}");
                Outgoing {
                    key: Some(id.clone()),
                    value: Some(visit_json(&id, now_ms())),
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
    let policy = LossPolicy {
        rate_ppm: 100_000,
        seed: 42,
    };
    let mut expected: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
    for &(p, o, t) in &source {
        let entry = expected.entry(window_of(t)).or_default();
        entry.0 += 1;
        entry.1 += u64::from(policy.drops(p, o));
    }
    let dropped: u64 = expected.values().map(|e| e.1).sum();
    assert!((8..50).contains(&dropped), "about a tenth: {dropped}");
    let (first, last) = (
        *expected.keys().next().unwrap(),
        *expected.keys().last().unwrap(),
    );
    let documents = final_documents(&monitor, first, last, Duration::from_secs(120)).await;
    for (&window, &(records, lost)) in &expected {
        let d = &documents[&window];
        assert_adds_up(d);
        assert_eq!(d.expected, records, "window {window}: {d:#?}");
        assert_eq!(d.lost, lost, "window {window}: {d:#?}");
        assert_eq!(
            d.arrived_within_sla + d.arrived_late,
            records - lost,
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

/// An output record of a hand-written stage: the reduced visit of source record `position`,
/// with its lineage, stamped `at` (ms).
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
        Duration::from_secs(10),
        Duration::from_secs(30),
    )
    .await;
    let records: Vec<Outgoing> = (0..160)
        .map(|i| Outgoing {
            key: Some(format!("s{i}")),
            value: Some(b"{}".to_vec()),
            partition: Some(i % 4),
            ..Default::default()
        })
        .collect();
    produce(&source, &records).await;
    let positions = positions(&source);
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
    let windows: Vec<i64> = positions.iter().map(|&(_, _, t)| window_of(t)).collect();
    let (first, last) = (
        *windows.iter().min().unwrap(),
        *windows.iter().max().unwrap(),
    );
    let documents = final_documents(&monitor, first, last, Duration::from_secs(120)).await;
    let total = |f: fn(&CompletenessDocument) -> u64| documents.values().map(f).sum::<u64>();
    for d in documents.values() {
        assert_adds_up(d);
    }
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
