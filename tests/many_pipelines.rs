//! Two pipelines monitored into one index, each by its own monitor (`--job-name`, `--sla`,
//! topic, group): the same latencies (1.5–3 s) breach the 1 s SLA of one and meet the 5 s SLA
//! of the other. The provisioned rule — one alert instance per job, each judged against its
//! own documents' `sla_ms` — fires for exactly the breaching one, replayed (`alerts backtest`)
//! and live (`alerts`, read through `/state`).

mod support;

use serde_json::Value;
use std::time::{Duration, Instant};
use support::*;

fn monitor(
    topics: &MonitorTopics,
    job: &str,
    sla: &str,
    index: &str,
    dir: &std::path::Path,
) -> Job {
    MonitorArgs::new(topics, &unique(&format!("{job}_g")))
        .elasticsearch(index)
        .set("--job-name", job)
        .set("--sla", sla)
        .set("--idle-timeout", "1s")
        .set("--commit-interval", "200ms")
        .start(dir)
}

/// The provisioned rule with test timings, over a 10-minute range so the windows stay in it.
fn rule_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("rules.yaml");
    let rules = test_rule_file(&unique("many"), "2s").replace("from: 30", "from: 600");
    std::fs::write(&path, rules).unwrap();
    path
}

async fn get(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

fn job_of(v: &Value) -> &str {
    v["labels"]["job"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rule_fires_for_exactly_the_pipeline_that_breaches_its_own_sla() {
    let dir = tempfile::tempdir().unwrap();
    let index = test_index("many");
    let base = (now_ms() - 30_000) / WINDOW * WINDOW;
    let mut jobs = Vec::new();
    for (job, sla) in [("checkout", "1s"), ("payments", "5s")] {
        let topics = monitor_topics(job);
        create_topic(&topics.reduced, 2).await;
        let records: Vec<Outgoing> = (0..2)
            .flat_map(|p| {
                (0..40).map(move |j| {
                    let t = base + j * WINDOW / 10;
                    record(p, t, 1_500 + (j * 37) % 1_500, &format!("{job}-{p}-{j}"))
                })
            })
            .collect();
        produce(&topics.reduced, &records).await;
        jobs.push(monitor(&topics, job, sla, &index, dir.path()));
    }
    // 4 windows of each pipeline.
    let docs = tokio::time::timeout(
        Duration::from_secs(60),
        wait_for_es_documents(&index, 8, Duration::from_secs(120)),
    )
    .await
    .unwrap_or_else(|_| {
        let logs: Vec<String> = jobs.iter().map(Job::log_text).collect();
        panic!("8 window documents not written: {logs:#?}")
    });
    for job in jobs {
        assert!(job.terminate(Duration::from_secs(30)).success());
    }
    let sla_of = |job: &str| {
        docs.values()
            .filter(|d| d["job"] == job)
            .map(|d| d["sla_ms"].as_i64().unwrap())
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(sla_of("checkout"), [1_000].into());
    assert_eq!(sla_of("payments"), [5_000].into());

    let rules = rule_file(dir.path());
    // Replayed over the windows.
    let timelines = backtest(&rules, &index, base, now_ms());
    let timeline = &timelines[0];
    let alerts = timeline["alerts"].as_array().unwrap();
    assert!(!alerts.is_empty(), "{timeline}");
    assert!(
        alerts
            .iter()
            .all(|a| job_of(a) == "checkout" && a["alertname"] == "SLA miss"),
        "only checkout's instance fires: {alerts:?}"
    );
    let fired: Vec<&str> = timeline["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["to"] == "Alerting")
        .map(job_of)
        .collect();
    assert_eq!(fired, ["checkout"], "{timeline}");
    assert_eq!(
        timeline["time_in_state_ms"][r#"{job="payments"}"#]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["Normal"],
        "{timeline}"
    );

    // Live: two instances, checkout Alerting and payments Normal.
    let alerts_job = start_alerts(&rules, &index, &[], dir.path());
    let state_url = format!("http://{}/state", http_addr_of(&alerts_job));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = get(&state_url).await;
        let states: Vec<(String, String)> = status[0]["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| {
                (
                    job_of(i).to_string(),
                    i["state"]["state"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let want = [
            ("checkout".to_string(), "Alerting".to_string()),
            ("payments".to_string(), "Normal".to_string()),
        ];
        if states == want {
            break;
        }
        assert!(Instant::now() < deadline, "instances: {states:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(alerts_job.terminate(Duration::from_secs(10)).success());
}
