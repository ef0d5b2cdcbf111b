//! The monitor against the real broker, on records whose timestamps (event times) and
//! processing stamps the test chooses: per-window counts and percentiles equal exact values;
//! late, malformed and future records are kept on the dead-letter topic with reasons; the
//! last window is emitted although no newer record ever arrives; SIGTERM exits 0 without
//! writing incomplete windows.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;
use support::in_process::{document_json, partition_ends, test_config, InProcessMonitor};
use support::*;

fn monitor_args(s: &MonitorTopics, group: &str, output: &str, idle: &str) -> MonitorArgs {
    MonitorArgs::new(s, group)
        .json_lines(std::path::Path::new(output))
        .set("--idle-timeout", idle)
        .short_session()
        .set("--commit-interval", "200ms")
}

#[tokio::test(flavor = "multi_thread")]
async fn windows_match_exact_percentiles_and_bad_records_are_kept() {
    let s = monitor_topics("exact");
    create_topic(&s.reduced, 2).await;
    let base = (now_ms() - 120_000) / WINDOW * WINDOW;
    let (mut records, expected) = windows_of_records(base, 0..4, 40, 1);
    // Partition 0, after window 3: a record of window 0 (late), garbage, a future timestamp.
    records.push(record(0, base + 10, 50, "late-one"));
    records.push(Outgoing {
        key: Some("garbage".into()),
        value: Some(b"{oops".to_vec()),
        partition: Some(0),
        timestamp_ms: Some(base + 3 * WINDOW + 1_999),
        headers: Vec::new(),
    });
    records.push(record(1, now_ms() + 3_600_000, 10, "future"));
    // A broken stamp (1 ms after the epoch) inside window 3: kept aside, not in its p99/max.
    records.push(Outgoing {
        key: Some("implausible".into()),
        value: Some(reduced_json("implausible", 1)),
        partition: Some(0),
        timestamp_ms: Some(base + 3 * WINDOW + 1_500),
        headers: Vec::new(),
    });
    produce(&s.reduced, &records).await;

    let group = unique("exact_g");
    let monitor = InProcessMonitor::start(test_config(&s, &group, Duration::from_secs(1))).await;
    // No newer record ever arrives: the idle partitions let the last window close anyway.
    let docs = monitor.documents(4, Duration::from_secs(30)).await;
    let dead = consume(
        &s.dlq,
        4,
        Duration::from_secs(20),
        Duration::from_millis(300),
    );
    let written = monitor.sink.written();
    let committed_group = monitor.config.group.clone();
    let report = monitor.stop().await;
    let committed = support::in_process::committed_offsets(&committed_group, &s.reduced, 2);

    assert_eq!(docs.len(), 4);
    assert_eq!(written, 4, "each window written once");
    assert_eq!(report.windows_written, 4);
    assert_eq!(report.rejected + report.late, 4, "{report:?}");
    for (start, latencies) in &expected {
        let doc = document_json(&docs[&format!("visits-synchronizer-{start}")]);
        assert_eq!(doc["window_start_ms"], *start);
        assert_document(&doc, latencies);
    }
    // Everything consumed is accounted for (written or dead-lettered): the group has
    // committed through the end of both partitions.
    let ends = partition_ends(&s.reduced, 2);
    assert_eq!(committed, ends, "committed offsets vs the partitions' ends");
    let reasons: BTreeMap<String, &Consumed> = dead
        .iter()
        .map(|d| (d.headers["dlq.reason"].clone(), d))
        .collect();
    assert_eq!(dead.len(), 4, "{dead:?}");
    assert_eq!(
        reasons["implausible_latency"].key.as_deref(),
        Some("implausible")
    );
    assert_eq!(reasons["late"].key.as_deref(), Some("late-one"));
    assert_eq!(
        reasons["late"].headers["dlq.window.start"],
        base.to_string()
    );
    assert_eq!(
        reasons["invalid_json"].value.as_deref(),
        Some(&b"{oops"[..])
    );
    assert_eq!(
        reasons["timestamp_in_future"].key.as_deref(),
        Some("future")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_mid_window_the_restarted_monitor_writes_what_an_uninterrupted_run_writes() {
    let dir = tempfile::tempdir().unwrap();
    let s = monitor_topics("restart");
    create_topic(&s.reduced, 2).await;
    let base = (now_ms() - 300_000) / WINDOW * WINDOW;
    // Phase 1: windows 0-2, the first half of window 3, and a late record after them.
    let (mut phase1, phase2, expected) = mid_window_phases(base, 2);
    phase1.push(record(0, base + WINDOW + 5, 70, "late-one"));
    produce(&s.reduced, &phase1).await;

    let interrupted = dir.path().join("interrupted.jsonl");
    let interrupted_arg = interrupted.to_str().unwrap().to_string();
    let group = unique("restart_g");
    // A long idle timeout keeps window 3 open: it is killed mid-window.
    let first = monitor_args(&s, &group, &interrupted_arg, "60s").start(dir.path());
    wait_for("windows 0-2", Duration::from_secs(30), || {
        read_documents(&interrupted).0.len() >= 3
    });
    // Killed once window 3's first half (and the late record) is in its memory and a
    // checkpoint past windows 0-2 is committed.
    wait_until_checkpointed(&first, &s, phase1.len());
    first.kill();
    assert_eq!(
        read_documents(&interrupted).0.len(),
        3,
        "window 3 must still be open when killed"
    );

    produce(&s.reduced, &phase2).await;
    // The restarted instance joins once the killed one's session expired.
    wait_out_killed_session();
    let second = monitor_args(&s, &group, &interrupted_arg, "1s").start(dir.path());
    wait_for(
        "all 6 windows after restart",
        Duration::from_secs(60),
        || read_documents(&interrupted).0.len() >= 6,
    );
    assert!(
        metric_sum(
            &second,
            "sla_monitor_partitions_restored_total",
            &["from=\"checkpoint\""]
        ) >= Some(1.0),
        "restart did not use its checkpoint:\n{}",
        second.log_text()
    );

    let reference = dir.path().join("reference.jsonl");
    let reference_arg = reference.to_str().unwrap().to_string();
    let reference_group = unique("reference_g");
    let third = monitor_args(&s, &reference_group, &reference_arg, "1s").start(dir.path());
    wait_for("reference windows", Duration::from_secs(30), || {
        read_documents(&reference).0.len() >= 6
    });
    // Stopped, they write nothing more: any extra (duplicate) line is in the files now.
    assert!(second.terminate(Duration::from_secs(30)).success());
    assert!(third.terminate(Duration::from_secs(30)).success());

    let (after_restart, _) = read_documents(&interrupted);
    let (uninterrupted, reference_lines) = read_documents(&reference);
    assert_eq!(reference_lines, 6);
    assert_eq!(after_restart, uninterrupted, "restart changed the results");
    for (start, latencies) in &expected {
        assert_document(
            &uninterrupted[&format!("visits-synchronizer-{start}")],
            latencies,
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_exits_cleanly_without_writing_incomplete_windows() {
    let dir = tempfile::tempdir().unwrap();
    let s = monitor_topics("term");
    create_topic(&s.reduced, 2).await;
    let now = now_ms();
    let base = now / WINDOW * WINDOW - 4 * WINDOW;
    let (records, _) = windows_of_records(base, 0..2, 10, 3);
    produce(&s.reduced, &records).await;
    let output = dir.path().join("w.jsonl");
    let output_arg = output.to_str().unwrap().to_string();
    let group = unique("term_g");
    // Windows 0 and 1 only close by idleness (after 60 s): SIGTERM comes first.
    let job = monitor_args(&s, &group, &output_arg, "60s").start(dir.path());
    let produced = records.len() as f64;
    wait_for("every record consumed", Duration::from_secs(30), || {
        metric_sum(&job, "sla_records_consumed_total", &[]) == Some(produced)
    });
    // Window 0 is written at shutdown by the instance that merges it: this one, once it owns
    // the shuffle partition (it may consume every record before its merge group assigns it;
    // stopped before, it leaves the window to the next run).
    wait_until_settled(&job, &s, 2);
    let log = job.log.clone();
    let status = job.terminate(Duration::from_secs(30));
    assert!(status.success(), "exit status {status:?}");
    let log = std::fs::read_to_string(log).unwrap_or_default();
    let (docs, _) = read_documents(&output);
    assert_eq!(
        docs.len(),
        1,
        "only window 0 (closed by window 1's watermark) may be written: {docs:?}\n{log}"
    );
}

/// Records under this monitor's keys on the shuffle topic that it could not have written —
/// bytes of no known encoding, a part whose counts do not add up, a written marker at the end
/// of time — are skipped: the monitor neither stops nor lets them stop its merging, and writes
/// the windows of its real records.
#[tokio::test(flavor = "multi_thread")]
async fn records_on_the_shuffle_topic_it_could_not_have_written_are_skipped() {
    use sla_monitor::distribution::digest::{DigestConfig, LatencyDigest};
    use sla_monitor::event_time::window::WindowPart;
    use sla_monitor::shuffle::authentication::RecordAuthentication;
    use sla_monitor::shuffle::{part_record, JobIdentity, Shuffle, ShuffleRecord};

    let s = monitor_topics("poison");
    create_topic(&s.reduced, 2).await;
    create_topic(&s.shuffle, 1).await;
    let group = unique("poison_g");
    let base = (now_ms() - 120_000) / WINDOW * WINDOW;
    let shuffle = Shuffle::new(
        JobIdentity::new(&group, &s.reduced, "visits-synchronizer", WINDOW),
        RecordAuthentication::none(),
    );
    let mut digest = LatencyDigest::new(DigestConfig::default());
    digest.add(5.0);
    let mut inconsistent = part_record(
        base,
        0,
        &WindowPart {
            digest,
            over_sla: 0,
            histogram: None,
        },
    );
    if let ShuffleRecord::Part { digest, .. } = &mut inconsistent {
        digest.values.clear(); // one record counted, none there
    }
    let end_of_time = ShuffleRecord::Merged {
        written_through: i64::MAX,
    };
    let on_shuffle = |key: String, value: Vec<u8>| Outgoing {
        key: Some(key),
        value: Some(value),
        partition: Some(0),
        ..Default::default()
    };
    produce(
        &s.shuffle,
        &[
            on_shuffle(shuffle.part_key(base, 1), vec![0xff, 0x00, 0xff]),
            on_shuffle(shuffle.key(&inconsistent), shuffle.encode(&inconsistent)),
            on_shuffle(shuffle.key(&end_of_time), shuffle.encode(&end_of_time)),
        ],
    )
    .await;
    three_windows_of_records_are_written_exactly(&s, &group, base).await;
}

/// Checkpoints under this monitor's group and topic that it could not have saved — an offset
/// at the end of time (which would mark every record as already counted), offsets beyond the
/// partition's end, an impossible event time — are not used: every record is counted.
#[tokio::test(flavor = "multi_thread")]
async fn checkpoints_it_could_not_have_saved_are_not_used() {
    use sla_monitor::monitor::checkpoint::{Checkpoint, CheckpointRecord};
    use sla_monitor::shuffle::authentication::RecordAuthentication;

    let s = monitor_topics("forged");
    create_topic(&s.reduced, 2).await;
    create_topic(&s.checkpoints, 1).await;
    let group = unique("forged_g");
    let forged = |partition: i32, checkpoint: Checkpoint| {
        let record = CheckpointRecord {
            group: group.clone(),
            topic: s.reduced.clone(),
            partition,
            job: "visits-synchronizer".into(),
            window_ms: WINDOW,
            checkpoint,
        };
        Outgoing {
            key: Some(record.key()),
            value: Some(record.encode(&RecordAuthentication::none()).into_bytes()),
            ..Default::default()
        }
    };
    produce(
        &s.checkpoints,
        &[
            forged(
                0,
                Checkpoint {
                    offset: i64::MAX,
                    max_event_time_before: None,
                    durable_through: Some(i64::MAX),
                    replay_end: i64::MAX,
                },
            ),
            forged(
                1,
                Checkpoint {
                    offset: 1_000_000,
                    max_event_time_before: None,
                    durable_through: None,
                    replay_end: 1_000_000,
                },
            ),
        ],
    )
    .await;
    let base = (now_ms() - 120_000) / WINDOW * WINDOW;
    three_windows_of_records_are_written_exactly(&s, &group, base).await;
}

/// With a key, what someone who can write to the internal topics but does not hold it writes
/// changes nothing, however plausible: a `merged` marker saying the windows are written (the
/// merger would drop them), progress closing every window before its parts arrive, a part of
/// a partition the input topic does not have, a part with other latencies, and a checkpoint
/// whose `durable_through` lies a day ahead (every record would be late). Each is in the
/// monitor's own format but without its key; the windows of the real records come out exact.
#[tokio::test(flavor = "multi_thread")]
async fn with_a_key_forged_internal_records_change_nothing() {
    use sla_monitor::distribution::digest::{DigestConfig, LatencyDigest};
    use sla_monitor::event_time::window::WindowPart;
    use sla_monitor::monitor::checkpoint::{Checkpoint, CheckpointRecord};
    use sla_monitor::shuffle::authentication::RecordAuthentication;
    use sla_monitor::shuffle::{part_record, JobIdentity, Shuffle, ShuffleRecord};

    let s = monitor_topics("keyed");
    create_topic(&s.reduced, 2).await;
    create_topic(&s.shuffle, 1).await;
    create_topic(&s.checkpoints, 1).await;
    let group = unique("keyed_g");
    let base = (now_ms() - 120_000) / WINDOW * WINDOW;
    let last_end = base + 3 * WINDOW - 1;
    let forger = Shuffle::new(
        JobIdentity::new(&group, &s.reduced, "visits-synchronizer", WINDOW),
        RecordAuthentication::none(),
    );
    let mut digest = LatencyDigest::new(DigestConfig::default());
    digest.add(999_999.0);
    let fake_part = WindowPart {
        digest,
        over_sla: 1,
        histogram: None,
    };
    let on_shuffle = |record: ShuffleRecord| Outgoing {
        key: Some(forger.key(&record)),
        value: Some(forger.encode(&record)),
        partition: Some(0),
        ..Default::default()
    };
    let mut forged = vec![
        on_shuffle(ShuffleRecord::Merged {
            written_through: last_end,
        }),
        on_shuffle(part_record(base, 0, &fake_part)),
        on_shuffle(part_record(base, 7, &fake_part)),
    ];
    for partition in 0..2 {
        forged.push(on_shuffle(ShuffleRecord::Progress {
            partition,
            closed_through: last_end,
        }));
    }
    produce(&s.shuffle, &forged).await;
    let checkpoints: Vec<Outgoing> = (0..2)
        .map(|partition| {
            let record = CheckpointRecord {
                group: group.clone(),
                topic: s.reduced.clone(),
                partition,
                job: "visits-synchronizer".into(),
                window_ms: WINDOW,
                checkpoint: Checkpoint {
                    offset: 0,
                    max_event_time_before: None,
                    durable_through: Some(now_ms() + 86_400_000),
                    replay_end: 0,
                },
            };
            Outgoing {
                key: Some(record.key()),
                value: Some(record.encode(&RecordAuthentication::none()).into_bytes()),
                ..Default::default()
            }
        })
        .collect();
    produce(&s.checkpoints, &checkpoints).await;

    let mut config = test_config(&s, &group, Duration::from_secs(1));
    config.authentication =
        RecordAuthentication::with_keys(b"0123456789abcdef0123456789abcdef", None, false).unwrap();
    three_windows_are_written_exactly_by(config, &s, base).await;
}

/// Produces three windows of records from `base` on both input partitions, runs the monitor
/// in-process until it has written them, and checks each document against exact percentiles.
async fn three_windows_of_records_are_written_exactly(s: &MonitorTopics, group: &str, base: i64) {
    let config = test_config(s, group, Duration::from_secs(1));
    three_windows_are_written_exactly_by(config, s, base).await;
}

/// [`three_windows_of_records_are_written_exactly`] by a monitor of `config`.
async fn three_windows_are_written_exactly_by(
    config: sla_monitor::monitor::MonitorConfig,
    s: &MonitorTopics,
    base: i64,
) {
    let (records, expected) = windows_of_records(base, 0..3, 20, 7);
    produce(&s.reduced, &records).await;
    let monitor = InProcessMonitor::start(config).await;
    let docs = monitor.documents(3, Duration::from_secs(30)).await;
    let report = monitor.stop().await;
    assert_eq!(report.windows_written, 3);
    for (start, latencies) in &expected {
        assert_document(
            &document_json(&docs[&format!("visits-synchronizer-{start}")]),
            latencies,
        );
    }
}

/// On a CreateTime topic (Kafka's default; every topic of the local broker) a record a slow
/// producer held keeps its early stamp and may land on a partition that has gone idle, whose
/// watermark follows the clock: with the idle timeout alone (`--max-producer-hold 0s`) the
/// window has closed and the record — the slowest, an SLA miss — is dead-lettered as late.
/// With the hold bound, the idle partition trails the clock by the hold and the record is
/// counted in its window. Each run waits on the monitor's own watermark, not on time.
#[tokio::test(flavor = "multi_thread")]
async fn a_record_a_producer_held_is_measured_not_late() {
    for (hold, counted_late) in [("20s", false), ("0s", true)] {
        let dir = tempfile::tempdir().unwrap();
        let s = monitor_topics("held");
        create_topic(&s.reduced, 2).await;
        let output = dir.path().join("windows.jsonl");
        let monitor = MonitorArgs::new(&s, &unique("held_g"))
            .json_lines(&output)
            .set("--idle-timeout", "1s")
            .set("--max-producer-hold", hold)
            .start(dir.path());
        wait_for("both partitions assigned", Duration::from_secs(60), || {
            metric_sum(&monitor, "sla_assigned_partitions", &["role=\"input\""]) == Some(2.0)
        });
        // A window a few seconds old, on partition 0 only; partition 1 has nothing (idle).
        let start = (now_ms() - 4_000).div_euclid(WINDOW) * WINDOW;
        let on_time: Vec<Outgoing> = (0..10)
            .map(|i| record(0, start + 100 + i * 10, 50, &format!("p0-{i}")))
            .collect();
        produce(&s.reduced, &on_time).await;
        // Both partitions have a watermark once partition 1 is idle; with the idle timeout
        // alone it passes the window's end, with the hold it stays before its start.
        let watermark = || metric_sum(&monitor, "sla_monitor_watermark_seconds", &[]);
        wait_for(
            "the monitor to read the records and go idle",
            Duration::from_secs(60),
            || {
                metric_sum(&monitor, "sla_records_consumed_total", &[]) == Some(10.0)
                    && watermark()
                        .is_some_and(|w| !counted_late || w * 1000.0 >= (start + WINDOW) as f64)
            },
        );
        if !counted_late {
            let w = (watermark().unwrap() * 1000.0) as i64;
            assert!(
                w < start,
                "the hold did not hold the idle partition back: {w} vs {start}"
            );
        }
        // The slow producer's record: stamped inside the window, delivered now, to the idle
        // partition, its latency the largest.
        produce(&s.reduced, &[record(1, start + 500, 1_500, "held")]).await;
        let id = format!("visits-synchronizer-{start}");
        if counted_late {
            wait_for(
                "the held record counted late",
                Duration::from_secs(60),
                || metric_sum(&monitor, "sla_monitor_late_records_total", &[]) == Some(1.0),
            );
        }
        wait_for("the window's document", Duration::from_secs(90), || {
            read_documents(&output).0.contains_key(&id)
        });
        let docs = read_documents(&output).0;
        let expected = if counted_late { 10 } else { 11 };
        assert_eq!(docs[&id]["count"], expected, "hold {hold}: {}", docs[&id]);
        if !counted_late {
            assert_eq!(
                docs[&id]["max"], 1_500.0,
                "the held record's latency is measured"
            );
            let late = metric_sum(&monitor, "sla_monitor_late_records_total", &[]);
            assert_eq!(late.unwrap_or(0.0), 0.0);
        }
        assert!(monitor.terminate(Duration::from_secs(30)).success());
    }
}
