//! `/readyz` tells a supervisor whether a job is doing its work: the monitor is not ready while
//! it waits for Elasticsearch at start (with the reason), and ready once it runs; the
//! synchronizer is ready once it holds partitions. `/healthz` only says the process answers.

mod support;

use std::time::{Duration, Instant};
use support::*;

async fn readyz(job: &Job) -> (u16, String) {
    let url = format!("http://{}/readyz", http_addr_of(job));
    let response = reqwest::get(&url).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn wait_for_readyz(job: &Job, status: u16, containing: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
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
    #[rustfmt::skip]
    let synchronizer = Job::start(
        env!("CARGO_BIN_EXE_synchronizer"),
        &["--visits-topic", &unique("ready_visits"), "--reduced-topic", &unique("ready_reduced"),
          "--dead-letter-topic", &unique("ready_dlq"), "--group", &unique("ready_sg")],
        dir.path(),
    );
    wait_for_readyz(&synchronizer, 200, "ready").await;
    assert!(synchronizer.log_text().contains("partitions assigned"));
    assert!(synchronizer.terminate(Duration::from_secs(30)).success());
}
