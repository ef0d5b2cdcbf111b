//! Every gauge and labelled counter operators alert on exists from a job's start, with its
//! healthy value: an alert on `sla_kafka_reachable == 0` or on the rate of rejections must not
//! depend on an error having happened first, and dashboards must not show empty panels.

mod support;

use std::time::Duration;
use support::*;

fn has_series(metrics: &str, name: &str, labels: &[&str], value: &str) -> bool {
    metrics.lines().any(|line| {
        line.starts_with(name)
            && labels.iter().all(|l| line.contains(l))
            && line.split_whitespace().last() == Some(value)
    })
}

/// Waits (at most 15 s from the job's start-up) until the job's /metrics shows `name` with
/// `labels` at `value`.
async fn assert_series(job: &Job, name: &str, labels: &[&str], value: &str) {
    let url = format!("http://{}/metrics", http_addr_of(job));
    let mut last = String::new();
    for _ in 0..75 {
        if let Ok(response) = reqwest::get(&url).await {
            last = response.text().await.unwrap_or_default();
            if has_series(&last, name, labels, value) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "{}: no {name} {labels:?} = {value} in /metrics:\n{last}\nlog:\n{}",
        job.name,
        job.log_text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn synchronizer_and_monitor_publish_what_alerts_read_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let (visits, reduced) = (unique("start_visits"), unique("start_reduced"));
    // The topics the jobs read exist (no job creates the topic it reads).
    create_topic(&visits, 2).await;
    #[rustfmt::skip]
    let synchronizer = Job::start(
        env!("CARGO_BIN_EXE_synchronizer"),
        &["--visits-topic", &visits, "--reduced-topic", &reduced,
          "--dead-letter-topic", &unique("start_vdlq"), "--group", &unique("start_sg")],
        dir.path(),
    );
    let topics = monitor_topics("start");
    create_topic(&topics.reduced, 2).await;
    let monitor = MonitorArgs::bare(&topics, &unique("start_mg"))
        .set("--sink", "json-lines")
        .start(dir.path());

    let s = &synchronizer;
    assert_series(s, "sla_kafka_reachable", &[], "1").await;
    assert_series(
        s,
        "sla_records_rejected_total",
        &["reason=\"invalid_json\""],
        "0",
    )
    .await;
    assert_series(
        s,
        "sla_records_rejected_total",
        &["reason=\"missing_field\""],
        "0",
    )
    .await;
    assert_series(s, "sla_assigned_partitions", &["topic="], "2").await;

    let m = &monitor;
    assert_series(m, "sla_kafka_reachable", &[], "1").await;
    assert_series(m, "sla_records_rejected_total", &["reason=\"late\""], "0").await;
    assert_series(
        m,
        "sla_records_rejected_total",
        &["reason=\"timestamp_in_future\""],
        "0",
    )
    .await;

    assert!(synchronizer.terminate(Duration::from_secs(30)).success());
    assert!(monitor.terminate(Duration::from_secs(30)).success());
}
