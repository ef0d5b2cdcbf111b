//! `/readyz` tells a supervisor whether a job is doing its work: the monitor is not ready while
//! it waits for Elasticsearch or its input topic at start (with the reason), or while every
//! record it reads is refused, and ready once it runs; the synchronizer is ready once it holds
//! partitions. `/healthz` only says the process answers.

mod support;

use std::time::{Duration, Instant};
use support::*;

async fn readyz(job: &Job) -> (u16, String) {
    let url = format!("http://{}/readyz", http_addr_of(job));
    let response = reqwest::get(&url).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn wait_for_readyz(job: &Job, status: u16, containing: &str) {
    wait_for_readyz_within(job, status, containing, Duration::from_secs(30)).await
}

async fn wait_for_readyz_within(job: &Job, status: u16, containing: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut last = (0, String::new());
    while Instant::now() < deadline {
        last = readyz(job).await;
        if last.0 == status && last.1.contains(containing) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "{}: /readyz still {last:?}, wanted {status} with {containing:?}; log:\n{}",
        job.name,
        job.log_text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_monitor_is_ready_only_once_its_sink_is_prepared() {
    let dir = tempfile::tempdir().unwrap();
    let es = Proxy::start(es_url().trim_start_matches("http://")).await;
    es.set_up(false);
    let topics = monitor_topics("ready");
    create_topic(&topics.reduced, 2).await;
    let monitor = MonitorArgs::bare(&topics, &unique("ready_g"))
        .set("--es-url", &format!("http://{}", es.addr))
        .set("--es-index", &test_index("ready"))
        .start(dir.path());
    wait_for_readyz(&monitor, 503, "preparing the Elasticsearch index").await;
    let health = reqwest::get(format!("http://{}/healthz", http_addr_of(&monitor)))
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200, "alive while not ready");
    es.set_up(true);
    wait_for_readyz(&monitor, 200, "ready").await;
    assert!(monitor.terminate(Duration::from_secs(30)).success());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_synchronizer_is_ready_once_it_holds_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let visits = unique("ready_visits");
    #[rustfmt::skip]
    let synchronizer = Job::start(
        env!("CARGO_BIN_EXE_synchronizer"),
        &["--visits-topic", &visits, "--reduced-topic", &unique("ready_reduced"),
          "--dead-letter-topic", &unique("ready_dlq"), "--group", &unique("ready_sg")],
        dir.path(),
    );
    // It never creates the topic it reads: until the visits' producer does, it says so.
    wait_for_readyz(&synchronizer, 503, "--visits-topic").await;
    create_topic(&visits, 2).await;
    wait_for_readyz(&synchronizer, 200, "ready").await;
    assert!(synchronizer.log_text().contains("partitions assigned"));
    assert!(synchronizer.terminate(Duration::from_secs(30)).success());
}

/// A misspelt input topic is not created: the monitor waits, not ready, naming the topic and
/// the flag, and becomes ready once the topic exists.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_input_topic_is_awaited_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let topics = monitor_topics("misspelt");
    let monitor = MonitorArgs::bare(&topics, &unique("misspelt_g"))
        .json_lines(&dir.path().join("out.jsonl"))
        .start(dir.path());
    wait_for_readyz(&monitor, 503, "--input-topic").await;
    let (_, text) = readyz(&monitor).await;
    assert!(text.contains(&topics.reduced), "{text}");
    create_topic(&topics.reduced, 2).await;
    wait_for_readyz(&monitor, 200, "ready").await;
    assert!(monitor.terminate(Duration::from_secs(30)).success());
}

/// When every record is refused (here: the start stamp read from a field the records do not
/// have), the monitor says so in one line naming the flag, `/readyz` says it, and
/// `sla_monitor_all_records_refused` is 1; records measured again clear all three.
#[tokio::test(flavor = "multi_thread")]
async fn a_monitor_refusing_every_record_says_so_and_is_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let topics = monitor_topics("refuse_all");
    create_topic(&topics.reduced, 1).await;
    let monitor = MonitorArgs::bare(&topics, &unique("refuse_all_g"))
        .json_lines(&dir.path().join("out.jsonl"))
        .set("--start-time", "field:/start_ms")
        .start(dir.path());
    wait_for_readyz(&monitor, 200, "ready").await;
    let records = |n: usize| -> Vec<Outgoing> {
        (0..n)
            .map(|i| Outgoing {
                key: Some(format!("r{i}")),
                value: Some(reduced_json(&format!("r{i}"), now_ms() - 100)),
                partition: Some(0),
                ..Default::default()
            })
            .collect()
    };
    produce(&topics.reduced, &records(20)).await;
    // Judged per 30 s interval: said within two.
    wait_for_readyz_within(&monitor, 503, "were refused", Duration::from_secs(90)).await;
    let (_, text) = readyz(&monitor).await;
    assert!(
        text.contains("missing_field") && text.contains("--start-time"),
        "{text}"
    );
    assert!(monitor.log_text().contains("were refused (missing_field"));
    assert_eq!(
        metric_sum(&monitor, "sla_monitor_all_records_refused", &[]),
        Some(1.0)
    );
    assert!(monitor.terminate(Duration::from_secs(30)).success());
}
