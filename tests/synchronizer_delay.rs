//! The artificial delay: pipelined, every record is late by the delay (record timestamp minus
//! start_processing_time_ms); blocking, records are processed one at a time.

mod support;

use std::time::Duration;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_synchronizer");

/// Runs the synchronizer over `n` visits with `args` and returns (timestamp - stamp, stamp)
/// per output record.
async fn run(name: &str, n: usize, args: &[&str]) -> Vec<(i64, i64)> {
    let dir = tempfile::tempdir().unwrap();
    let (visits, reduced, dlq, group) = (
        unique(&format!("{name}_v")),
        unique(&format!("{name}_r")),
        unique(&format!("{name}_d")),
        unique(name),
    );
    create_topic(&visits, 2).await;
    let records: Vec<Outgoing> = (0..n)
        .map(|i| Outgoing {
            key: Some(format!("v{i}")),
            value: Some(visit_json(&format!("v{i}"), now_ms())),
            ..Default::default()
        })
        .collect();
    produce(&visits, &records).await;
    let mut all = vec![
        "--visits-topic",
        &visits,
        "--reduced-topic",
        &reduced,
        "--dead-letter-topic",
        &dlq,
        "--group",
        &group,
    ];
    all.extend_from_slice(args);
    let job = Job::start(BIN, &all, dir.path());
    let out = consume(
        &reduced,
        n,
        Duration::from_secs(90),
        Duration::from_millis(300),
    );
    assert!(job.terminate(Duration::from_secs(30)).success());
    assert_eq!(out.len(), n);
    out.iter()
        .map(|r| {
            let stamp = r.json()["start_processing_time_ms"].as_i64().unwrap();
            (r.timestamp_ms.unwrap() - stamp, stamp)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn without_delay_records_are_produced_promptly() {
    let lat = run("nodelay", 200, &[]).await;
    let max = lat.iter().map(|(l, _)| *l).max().unwrap();
    assert!(
        lat.iter().all(|(l, _)| *l >= 0),
        "negative latency: {lat:?}"
    );
    // Bounds that a loaded machine cannot break: no delay means the records meet the demo's
    // 5 s SLA, far below the smallest delay the other tests apply.
    assert!(max < 5_000, "max latency {max} ms without delay");
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_delay_makes_every_record_late_by_the_delay() {
    let lat = run(
        "pipelined",
        300,
        &["--delay", "1500ms", "--delay-jitter", "200ms"],
    )
    .await;
    // The delay applies once to each record: at least the delay, and less than twice it.
    for (l, _) in &lat {
        assert!(
            *l >= 1_500 && *l < 2 * 1_500,
            "latency {l} ms not within delay + jitter"
        );
    }
    // Pipelined: the 300 records were stamped within a few delays, where one at a time they
    // would span 300 delays (450 s).
    let stamps: Vec<i64> = lat.iter().map(|(_, s)| *s).collect();
    let span = stamps.iter().max().unwrap() - stamps.iter().min().unwrap();
    assert!(
        span < 10 * 1_500,
        "stamps spread over {span} ms: records were not pipelined"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn blocking_delay_processes_one_record_at_a_time() {
    let lat = run(
        "blocking",
        6,
        &["--delay", "400ms", "--delay-mode", "blocking"],
    )
    .await;
    let mut stamps: Vec<i64> = lat.iter().map(|(_, s)| *s).collect();
    stamps.sort();
    for pair in stamps.windows(2) {
        assert!(
            pair[1] - pair[0] >= 400,
            "records stamped {} ms apart in blocking mode",
            pair[1] - pair[0]
        );
    }
    assert!(lat.iter().all(|(l, _)| *l >= 400));
}
