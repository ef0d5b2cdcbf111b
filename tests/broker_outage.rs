//! The synchronizer survives its broker going away: it logs that Kafka is unreachable, keeps
//! retrying, and resumes by itself when the broker returns, losing nothing. Runs a private
//! tansu broker (same binary as the local stack) so other tests are not disturbed.

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
    // The outage lasts a few seconds more while the job keeps trying.
    tokio::time::sleep(Duration::from_secs(3)).await;

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
