//! The jobs survive their broker going away. The synchronizer logs that Kafka is unreachable,
//! keeps retrying, and resumes by itself when the broker returns, losing nothing; the monitor
//! closes no window by idleness while the broker is gone. Each test runs a private tansu
//! broker (same binary as the local stack) so other tests are not disturbed.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;
use support::private_broker::{free_port, start_tansu};
use support::*;

fn start_broker(dir: &std::path::Path, port: u16) -> std::process::Child {
    start_tansu(dir, port, &format!("127.0.0.1:{port}"), false)
}

#[tokio::test(flavor = "multi_thread")]
async fn synchronizer_waits_out_a_broker_outage_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut broker = start_broker(dir.path(), port);
    let brokers = format!("127.0.0.1:{port}");
    std::env::set_var("SLA_TEST_BROKERS", &brokers);
    let (visits, reduced) = ("outage_visits", "outage_reduced");
    create_topic(visits, 2).await;
    let batch = |from: usize| -> Vec<Outgoing> {
        (from..from + 100)
            .map(|i| Outgoing {
                key: Some(format!("id-{i}")),
                value: Some(visit_json(&format!("id-{i}"), now_ms())),
                ..Default::default()
            })
            .collect()
    };
    produce(visits, &batch(0)).await;
    let job = Job::start(
        env!("CARGO_BIN_EXE_synchronizer"),
        &[
            "--visits-topic",
            visits,
            "--reduced-topic",
            reduced,
            "--dead-letter-topic",
            "outage_dlq",
            "--group",
            "outage_g",
        ],
        dir.path(),
    );
    assert_eq!(
        consume(
            reduced,
            100,
            Duration::from_secs(60),
            Duration::from_millis(200)
        )
        .len(),
        100
    );

    broker.kill().unwrap();
    broker.wait().unwrap();
    wait_for("the outage to be logged", Duration::from_secs(60), || {
        job.log_text().contains("unreachable")
    });
    // The outage lasts while the job keeps trying: its clients report further failures.
    let errors = || metric_sum(&job, "sla_kafka_client_errors_total", &[]).unwrap_or(0.0);
    let at_outage = errors();
    wait_for("the job to retry", Duration::from_secs(60), || {
        errors() >= at_outage + 2.0
    });

    let mut broker = start_broker(dir.path(), port);
    produce(visits, &batch(100)).await;
    let out = consume(
        reduced,
        200,
        Duration::from_secs(90),
        Duration::from_millis(500),
    );
    wait_for("recovery to be logged", Duration::from_secs(30), || {
        job.log_text().contains("reachable again")
    });
    assert!(job.terminate(Duration::from_secs(30)).success());
    broker.kill().unwrap();
    broker.wait().unwrap();
    let ids: BTreeSet<String> = out.iter().map(|r| r.key.clone().unwrap()).collect();
    assert_eq!(
        ids,
        (0..200).map(|i| format!("id-{i}")).collect(),
        "nothing lost across the outage"
    );
}

/// Silence while the broker is down is not idleness: a window the outage interrupted stays open
/// until the broker is back and the partitions have been caught up and silent for the idle
/// timeout, so a record appended right after the outage (produced before it, say) still counts.
#[tokio::test(flavor = "multi_thread")]
async fn a_broker_outage_closes_no_window_of_the_monitor_by_idleness() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut broker = start_broker(dir.path(), port);
    let cluster = Cluster {
        brokers: format!("127.0.0.1:{port}"),
        properties: Vec::new(),
    };
    let topics = monitor_topics("idle_outage");
    cluster.create_topic(&topics.reduced, 2).await;
    // Two records early in a window, one per partition, stamped now.
    let t = now_ms();
    let window_start = t.div_euclid(WINDOW) * WINDOW;
    let t = window_start + 100;
    cluster
        .produce(
            &topics.reduced,
            &[record(0, t, 40, "a"), record(1, t, 60, "b")],
        )
        .await;
    let output = dir.path().join("windows.jsonl");
    let monitor = MonitorArgs::new(&topics, &unique("idle_outage_g"))
        .json_lines(&output)
        .set("--idle-timeout", "6s")
        .start_on(&cluster.brokers, dir.path());
    wait_for("both records consumed", Duration::from_secs(30), || {
        metric_sum(&monitor, "sla_records_consumed_total", &[]) == Some(2.0)
    });
    // The broker goes away before the partitions could become idle, for longer than it
    // would take the clock-following watermark to pass the window's end.
    broker.kill().unwrap();
    broker.wait().unwrap();
    wait_for("the outage to be noticed", Duration::from_secs(10), || {
        metric_sum(&monitor, "sla_kafka_reachable", &[]) == Some(0.0)
    });
    // Longer than the idle timeout (6 s) past the window's end: idleness would have closed it.
    holds_throughout(
        "no window closed by idleness during the outage",
        Duration::from_secs(10),
        || read_documents(&output).0.is_empty(),
    );
    let mut broker = start_broker(dir.path(), port);
    cluster
        .produce(&topics.reduced, &[record(1, t + 50, 70, "c")])
        .await;
    wait_for("the window", Duration::from_secs(30), || {
        !read_documents(&output).0.is_empty()
    });
    assert!(monitor.terminate(Duration::from_secs(30)).success());
    broker.kill().unwrap();
    broker.wait().unwrap();
    let (documents, _) = read_documents(&output);
    let document = &documents[&format!("visits-synchronizer-{window_start}")];
    assert_eq!(
        document["count"], 3,
        "the record appended after the outage belongs to the window: {document}"
    );
}

/// A generator stopped while its broker is gone does not wait for the producer's message
/// timeout (5 minutes) — the new user's second SIGINT: it waits a bounded time for the
/// deliveries under way, says how many the broker never confirmed, and exits.
#[tokio::test(flavor = "multi_thread")]
async fn a_generator_stopped_during_an_outage_exits_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut broker = start_broker(dir.path(), port);
    let brokers = format!("127.0.0.1:{port}");
    let generator = Job::start_without_brokers(
        env!("CARGO_BIN_EXE_generator"),
        &[
            "--brokers",
            &brokers,
            "--visits-topic",
            "outage_generated",
            "--rate",
            "200",
        ],
        dir.path(),
    );
    wait_for("visits produced", Duration::from_secs(60), || {
        metric_sum(&generator, "sla_generator_records_total", &[]).unwrap_or(0.0) >= 50.0
    });
    broker.kill().unwrap();
    broker.wait().unwrap();
    // Once the generator's client has noticed, it has been enqueueing for a while: deliveries
    // the broker cannot confirm are under way.
    wait_for("the outage noticed", Duration::from_secs(60), || {
        let log = generator.log_text();
        [
            "unreachable",
            "Kafka connection failed",
            "Kafka client error",
        ]
        .iter()
        .any(|said| log.contains(said))
    });
    // …and a delivery the broker cannot confirm is under way (a loaded machine may not have
    // run the generator's loop since the broker died).
    wait_for("a delivery under way", Duration::from_secs(60), || {
        metric_sum(&generator, "sla_generator_unconfirmed_deliveries", &[]).unwrap_or(0.0) >= 1.0
    });
    let log = generator.log.clone();
    let status = generator.terminate(Duration::from_secs(60));
    let text = std::fs::read_to_string(log).unwrap();
    assert!(status.success(), "{text}");
    assert!(
        text.contains("not confirmed") && text.contains("generator finished"),
        "{text}"
    );
}
