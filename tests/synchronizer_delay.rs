//! The artificial delay: pipelined, every record is late by the delay (record timestamp minus
//! start_processing_time_ms); blocking, records are processed one at a time. The control
//! endpoint: bounds, unknown parameters, the token, and releasing waiting records.

mod support;

use std::time::Duration;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_synchronizer");

/// One test's topics and consumer group, named after it.
struct Topics {
    visits: String,
    reduced: String,
    dlq: String,
    group: String,
}

impl Topics {
    /// Fresh names; the visits topic is created with 2 partitions and holds `n` visits keyed
    /// `v00`, `v01`, … alternately on partitions 0 and 1.
    async fn with_visits(name: &str, n: usize) -> Topics {
        let topics = Topics {
            visits: unique(&format!("{name}_v")),
            reduced: unique(&format!("{name}_r")),
            dlq: unique(&format!("{name}_d")),
            group: unique(name),
        };
        create_topic(&topics.visits, 2).await;
        let records: Vec<Outgoing> = (0..n)
            .map(|i| Outgoing {
                key: Some(format!("v{i:02}")),
                value: Some(visit_json(&format!("v{i:02}"), now_ms())),
                partition: Some((i % 2) as i32),
                ..Default::default()
            })
            .collect();
        produce(&topics.visits, &records).await;
        topics
    }

    /// Starts the synchronizer on these topics with `args`.
    fn start(&self, args: &[&str], dir: &std::path::Path) -> Job {
        let mut all = vec![
            "--visits-topic",
            &self.visits,
            "--reduced-topic",
            &self.reduced,
            "--dead-letter-topic",
            &self.dlq,
            "--group",
            &self.group,
        ];
        all.extend_from_slice(args);
        Job::start(BIN, &all, dir)
    }
}

/// Runs the synchronizer over `n` visits with `args` and returns (timestamp - stamp, stamp)
/// per output record.
async fn run(name: &str, n: usize, args: &[&str]) -> Vec<(i64, i64)> {
    let dir = tempfile::tempdir().unwrap();
    let topics = Topics::with_visits(name, n).await;
    let job = topics.start(args, dir.path());
    let reduced = &topics.reduced;
    let out = consume(
        reduced,
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

/// The control endpoint refuses what it cannot apply, and switching a long delay off releases
/// the records waiting for it at once, each partition still in input order.
#[tokio::test(flavor = "multi_thread")]
async fn switching_a_long_delay_off_releases_waiting_records_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let n = 40;
    let topics = Topics::with_visits("release", n).await;
    let token = "5f1c0d9e2b7a4c3d8e6f";
    let token_file = dir.path().join("control_token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let job = topics.start(
        &[
            "--delay",
            "1h",
            "--control-token-file",
            token_file.to_str().unwrap(),
        ],
        dir.path(),
    );
    wait_for(
        "every visit waiting for the delay",
        Duration::from_secs(60),
        || metric_sum(&job, "sla_records_waiting", &[]) == Some(n as f64),
    );
    let control = format!("http://{}/delay", http_addr_of(&job));
    let client = reqwest::Client::new();
    let put = |query: &str| put_authorized(format!("{control}?{query}"), token);
    let anonymous = client
        .put(format!("{control}?delay=0s"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let body = anonymous.text().await.unwrap();
    assert!(
        body.contains("--control-token-file") && !body.contains(token),
        "{body}"
    );
    let wrong = client
        .put(format!("{control}?delay=0s"))
        .bearer_auth("not-the-token-at-all")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let (status, body) = put("dealy=0s").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("dealy"),
        "the unknown parameter is named: {body}"
    );
    let (status, body) = put("delay=300000000000y").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("maximum"), "{body}");
    let current: serde_json::Value = client
        .get(&control)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        current["delay"], 3_600_000,
        "refused updates change nothing"
    );

    let (status, body) = put("delay=0s").await;
    assert_eq!(status, 200, "{body}");
    let out = consume(
        &topics.reduced,
        n,
        Duration::from_secs(60),
        Duration::from_millis(300),
    );
    assert_eq!(out.len(), n, "every waiting record released");
    // Within each output partition, the records of one input partition (even keys came from
    // partition 0, odd ones from 1) keep their input order.
    for output in 0..2 {
        for input in 0..2 {
            let keys: Vec<usize> = out
                .iter()
                .filter(|r| r.partition == output)
                .map(|r| r.key.as_deref().unwrap()[1..].parse().unwrap())
                .filter(|i: &usize| i % 2 == input)
                .collect();
            let mut sorted = keys.clone();
            sorted.sort();
            assert_eq!(
                keys, sorted,
                "input partition {input} in output partition {output}"
            );
        }
    }
    assert!(job.terminate(Duration::from_secs(30)).success());
}

/// Bound beyond loopback without a control token, the synchronizer refuses to start, saying
/// what to set: otherwise anyone on the network could change the delay.
#[test]
fn beyond_loopback_the_control_endpoint_needs_a_token() {
    let output = std::process::Command::new(BIN)
        .args(["--http-addr", "0.0.0.0:0", "--brokers", &brokers()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--control-token-file") && stderr.contains("127.0.0.1"),
        "{stderr}"
    );
}

/// Under a delay, what waits is bounded in bytes: consuming pauses once the waiting records'
/// keys and values reach --max-waiting-bytes.
#[tokio::test(flavor = "multi_thread")]
async fn records_waiting_for_the_delay_are_bounded_in_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let n = 40;
    let topics = Topics::with_visits("bytes", n).await;
    let job = topics.start(
        &[
            "--delay",
            "1h",
            "--max-waiting-bytes",
            "1KiB",
            "--drain-timeout",
            "1s",
        ],
        dir.path(),
    );
    // Each waiting record: a 3-byte key and its reduced value (10-digit event time, 13-digit stamp).
    let value = format!(
        r#"{{"visit":{{"id":"v00","event_time":{}}},"start_processing_time_ms":{}}}"#,
        1_795_000_000i64, 1_795_000_000_000i64
    );
    let per_record = 3 + value.len();
    let admitted = 1024usize.div_ceil(per_record);
    assert!(admitted < n);
    wait_for("the byte bound reached", Duration::from_secs(60), || {
        metric_sum(&job, "sla_records_waiting", &[]) == Some(admitted as f64)
    });
    // Consuming stays paused: nothing more is taken while they wait.
    holds_throughout(
        "the byte bound keeping consumption paused",
        Duration::from_secs(2),
        || {
            metric_sum(&job, "sla_records_waiting", &[]) == Some(admitted as f64)
                && metric_sum(&job, "sla_records_consumed_total", &[]) == Some(admitted as f64)
        },
    );
    assert!(job.terminate(Duration::from_secs(60)).success());
}
