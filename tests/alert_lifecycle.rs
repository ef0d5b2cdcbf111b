//! The SLA alert's whole lifecycle on the real stack: generator → synchronizer → monitor →
//! Elasticsearch, the `alerts` evaluator running the provisioned Grafana rule (timings
//! shortened for a test: 2 s windows and histogram buckets, 1 s interval, `for: 6s`), the delay
//! switched on and off at runtime. The rule goes Normal → Pending → Alerting → Normal, within
//! bounds derived from the delay, window, out-of-orderness, evaluation interval and pending
//! period, and each change reaches the webhook.

mod support;

use serde_json::Value;
use std::time::{Duration, Instant};
use support::*;

const DELAY_S: f64 = 10.0;
const WINDOW_S: f64 = 2.0;
const OOO_S: f64 = 0.5;
const INTERVAL_S: f64 = 1.0;
const FOR_S: f64 = 6.0;
/// Index refresh (1 s), monitor tick, process scheduling.
const SLACK_S: f64 = 3.0;

async fn http(method: reqwest::Method, url: &str) -> Value {
    reqwest::Client::new()
        .request(method, url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The job name of the test pipeline's monitor (its default).
const JOB: &str = "visits-synchronizer";

async fn state(alerts: &str) -> Value {
    http(reqwest::Method::GET, &format!("http://{alerts}/state")).await[0].clone()
}

async fn wait_state(alerts: &str, wanted: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let s = state(alerts).await;
        // The pipeline's alert instance (label job).
        let instance = s["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["labels"]["job"] == JOB);
        if instance.is_some_and(|i| i["state"]["state"] == wanted) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "rule not {wanted} after {timeout:?}: {s}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sla_alert_goes_pending_firing_and_back_to_normal() {
    let dir = tempfile::tempdir().unwrap();
    let Pipeline {
        monitor,
        synchronizer,
        generator,
        index,
        ..
    } = start_pipeline(
        "life",
        dir.path(),
        "0s",
        &["--rate", "100", "--duration", "150s"],
    );
    let control = http_addr_of(&synchronizer);
    wait_for_es_documents(&index, 2, Duration::from_secs(60)).await;

    let rules = dir.path().join("rules.yaml");
    let run = unique("run");
    std::fs::write(&rules, test_rule_file(&run, "6s")).unwrap();
    // The local stack's HA pair: `alerts` sends to both replicas, the test reads the first.
    let alertmanagers = std::env::var("SLA_TEST_ALERTMANAGER_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:9093,http://127.0.0.1:9095".into());
    let alertmanager = alertmanagers.split(',').next().unwrap().to_string();
    let active_alerts = || {
        let url = format!("{alertmanager}/api/v2/alerts?active=true&silenced=false&inhibited=false&filter=test_run%3D%22{run}%22");
        async move {
            http(reqwest::Method::GET, &url)
                .await
                .as_array()
                .cloned()
                .unwrap_or_default()
        }
    };
    let (webhook, received) = json_receiver().await;
    let alerts_job = start_alerts(
        &rules,
        &index,
        &[
            "--webhook-url",
            &webhook,
            "--alertmanager-url",
            &alertmanagers,
        ],
        dir.path(),
    );
    let alerts = http_addr_of(&alerts_job);
    let started = wait_state(&alerts, "Normal", Duration::from_secs(30)).await;
    let first_evaluation_ms = started["last_evaluation_ms"].as_i64().unwrap();

    let on = Instant::now();
    let on_ms = now_ms();
    http(
        reqwest::Method::PUT,
        &format!("http://{control}/delay?delay=10s"),
    )
    .await;
    wait_state(&alerts, "Alerting", Duration::from_secs(90)).await;
    // Real Alertmanager has the firing alert, labelled as Grafana labels it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut firing = active_alerts().await;
    while firing.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
        firing = active_alerts().await;
    }
    assert_eq!(firing.len(), 1, "Alertmanager alerts: {firing:?}");
    assert_eq!(firing[0]["labels"]["alertname"], "SLA miss");
    assert_eq!(firing[0]["labels"]["severity"], "critical");
    // …and routed it by dashboards/alertmanager/alertmanager.yml: critical → e-mail and webhook.
    let receivers: Vec<&str> = firing[0]["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(
        receivers.contains(&"oncall-email") && receivers.contains(&"oncall-webhook"),
        "{receivers:?}"
    );
    assert_eq!(firing[0]["labels"]["job"], JOB);
    let summary = firing[0]["annotations"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("visits-synchronizer: ") && summary.ends_with("above its SLA"),
        "{summary}"
    );
    let off = Instant::now();
    let off_ms = now_ms();
    http(
        reqwest::Method::PUT,
        &format!("http://{control}/delay?delay=0s"),
    )
    .await;
    let done = wait_state(&alerts, "Normal", Duration::from_secs(90)).await;

    let transitions: Vec<&Value> = done["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["labels"]["job"] == JOB)
        .collect();
    let path: Vec<(&str, &str)> = transitions
        .iter()
        .map(|t| (t["from"].as_str().unwrap(), t["to"].as_str().unwrap()))
        .collect();
    assert_eq!(
        path,
        vec![
            ("Normal", "Pending"),
            ("Pending", "Alerting"),
            ("Alerting", "Normal")
        ],
        "{done}"
    );
    let at = |i: usize| transitions[i]["at_ms"].as_i64().unwrap();
    let since_on = |ms: i64| (ms - (now_ms() - on.elapsed().as_millis() as i64)) as f64 / 1000.0;
    let since_off = |ms: i64| (ms - (now_ms() - off.elapsed().as_millis() as i64)) as f64 / 1000.0;
    let pending = since_on(at(0));
    assert!(
        (DELAY_S - SLACK_S..=DELAY_S + WINDOW_S + OOO_S + INTERVAL_S + SLACK_S).contains(&pending),
        "Pending {pending:.1} s after the delay went on"
    );
    // Evaluations are stamped with their scheduled times, multiples of the interval (as
    // Grafana's and the backtest's), so Pending lasts exactly `for`: before, wake-up times a
    // few ms apart made it `for` plus an interval about half the time.
    let interval_ms = (INTERVAL_S * 1000.0) as i64;
    for i in 0..3 {
        assert_eq!(
            at(i) % interval_ms,
            0,
            "transition {i} off the schedule: {done}"
        );
    }
    assert_eq!(
        at(1) - at(0),
        (FOR_S * 1000.0) as i64,
        "Pending lasted {} ms: {done}",
        at(1) - at(0)
    );
    // B is p99 minus the pipeline's SLA (the test pipeline's --sla 5s): a 10 s delay is 5 s over.
    assert!(
        transitions[1]["value"].as_f64().unwrap() >= 10_000.0 - 5_000.0,
        "{done}"
    );
    // Switching the delay off releases the records waiting for it at once, so Normal needs
    // no more than the window holding them to be followed by a window of fast records: two
    // windows, the out-of-orderness, Elasticsearch's 1 s refresh, an evaluation interval.
    let normal = since_off(at(2));
    assert!(
        (0.0..=2.0 * WINDOW_S + OOO_S + 1.0 + INTERVAL_S + SLACK_S).contains(&normal),
        "Normal {normal:.1} s after the delay went off"
    );
    assert!(transitions[2]["value"].as_f64().unwrap() < 5_000.0);

    println!("Pending {pending:.1} s after delay on; Pending lasted {} ms; Normal {normal:.1} s after delay off", at(1) - at(0));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !active_alerts().await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "Alertmanager still has the alert active after Normal"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let hooks: Vec<String> = received
        .lock()
        .unwrap()
        .iter()
        .map(|b| b["to"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(hooks, vec!["Pending", "Alerting", "Normal"]);
    let log = alerts_job.log_text();
    assert_eq!(
        log.matches(" -> ").count(),
        3,
        "state changes only, never one line per evaluation:\n{log}"
    );
    drop((generator, monitor));

    // `alerts backtest` over the same range, on the windows the monitor stored, replays what
    // the live evaluator did. It sees every window already written, while the live evaluator
    // saw each window only once the monitor had closed and written it, so the backtest may
    // change state earlier: by up to a window (documents carry the window's start), the
    // out-of-orderness, the monitor's tick, the index refresh and the evaluation phase (the
    // slack counted twice: once for the live run, once for the write).
    let to_ms = now_ms();
    let timelines = backtest(&rules, &index, first_evaluation_ms, to_ms);
    let replayed: Vec<&Value> = timelines[0]["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["labels"]["job"] == JOB)
        .collect();
    let replayed_path: Vec<(&str, &str)> = replayed
        .iter()
        .map(|t| (t["from"].as_str().unwrap(), t["to"].as_str().unwrap()))
        .collect();
    assert_eq!(replayed_path, path, "backtest: {}", timelines[0]);
    let replayed_pending =
        replayed[1]["at_ms"].as_i64().unwrap() - replayed[0]["at_ms"].as_i64().unwrap();
    assert_eq!(
        replayed_pending,
        at(1) - at(0),
        "live and backtest Pending → Alerting differ: {}",
        timelines[0]
    );
    for (live, replay) in transitions.iter().zip(&replayed) {
        let early_s =
            (live["at_ms"].as_i64().unwrap() - replay["at_ms"].as_i64().unwrap()) as f64 / 1000.0;
        assert!(
            (-INTERVAL_S - 0.5..=WINDOW_S + OOO_S + INTERVAL_S + 2.0 * SLACK_S).contains(&early_s),
            "backtest {replay} vs live {live}: {early_s:.1} s earlier"
        );
    }
    let sent = timelines[0]["alerts"].as_array().unwrap();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["alertname"], "SLA miss");
    assert_eq!(sent[0]["ending"], "Resolved");
    println!(
        "backtest of {} evaluations: same path, {:?} s earlier than live",
        timelines[0]["evaluations"],
        transitions
            .iter()
            .zip(&replayed)
            .map(
                |(l, r)| (l["at_ms"].as_i64().unwrap() - r["at_ms"].as_i64().unwrap()) as f64
                    / 1000.0
            )
            .collect::<Vec<_>>()
    );
    assert!(alerts_job.terminate(Duration::from_secs(10)).success());
    assert!(synchronizer.terminate(Duration::from_secs(30)).success());

    score_against_the_incident(
        dir.path(),
        &rules,
        &index,
        (first_evaluation_ms, to_ms),
        (on_ms, off_ms),
    );
}

/// The same backtest scored against the incident the test caused: the delay was on from
/// `on_ms` to `off_ms`, and the windows holding delayed records close up to two windows
/// later (the incident's end). The provisioned rule passes a CI gate on it; a `for=5m`
/// variant, replayed beside it, misses it; a stricter gate fails naming what failed; and the
/// HTML report renders in a real browser.
fn score_against_the_incident(
    dir: &std::path::Path,
    rules: &std::path::Path,
    index: &str,
    (from_ms, to_ms): (i64, i64),
    (on_ms, off_ms): (i64, i64),
) {
    let incidents = dir.join("incidents.yaml");
    let end_ms = off_ms + (1000.0 * (2.0 * WINDOW_S + OOO_S)) as i64;
    std::fs::write(
        &incidents,
        format!(
            "- name: delay switched on\n  start: {}\n  end: {}\n  job: {JOB}\n",
            iso_ms(on_ms),
            iso_ms(end_ms)
        ),
    )
    .unwrap();
    let report = dir.join("report.html");
    let out = backtest_with(
        rules,
        index,
        from_ms,
        to_ms,
        &[
            "--incidents",
            incidents.to_str().unwrap(),
            "--require",
            "recall>=1,precision>=1,detection<=40s",
            "--set",
            "for=5m",
            "--report",
            report.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "gate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs.len(), 2, "the rule as provisioned and one variant");
    let (provisioned, slow) = (&runs[0]["score"], &runs[1]["score"]);
    assert_eq!(runs[0]["variant"], "as provisioned");
    assert_eq!(
        (
            provisioned["recall"].as_f64(),
            provisioned["precision"].as_f64()
        ),
        (Some(1.0), Some(1.0)),
        "{provisioned}"
    );
    let incident = &provisioned["incidents"][0];
    assert_eq!(incident["detected"], true);
    assert_eq!(incident["notified_by"][0], format!("{{job={JOB:?}}}"));
    let detection_s = incident["detection_ms"].as_f64().unwrap() / 1000.0;
    // At least the pending period after the first breaching window; at most the live bounds.
    assert!(
        (FOR_S..=40.0).contains(&detection_s),
        "detected {detection_s:.1} s after the delay went on"
    );
    assert_eq!(runs[1]["variant"], "for=5m");
    assert_eq!(slow["recall"].as_f64(), Some(0.0), "{slow}");
    assert_eq!(slow["notifications"].as_u64(), Some(0));

    // A gate the rule does not meet: exit 1, naming the measure, its value and the bound.
    let failed = backtest_with(
        rules,
        index,
        from_ms,
        to_ms,
        &[
            "--incidents",
            incidents.to_str().unwrap(),
            "--require",
            "recall>=1,detection<=1s",
        ],
    );
    assert_eq!(failed.status.code(), Some(1));
    let said = String::from_utf8_lossy(&failed.stderr);
    assert!(
        said.contains("rule \"SLA miss\": detection") && said.contains("required <=1s"),
        "{said}"
    );
    assert!(!said.contains("recall"), "recall was met: {said}");

    // The report, in a real browser (SLA_KEEP_REPORT=path keeps a copy to look at).
    if let Ok(keep) = std::env::var("SLA_KEEP_REPORT") {
        std::fs::copy(&report, keep).unwrap();
    }
    let page = std::fs::read_to_string(&report).unwrap();
    assert!(!page.contains("<script") && !page.contains("src=") && !page.contains("href="));
    let Some(chromium) = chromium() else { return };
    let rendered = render_in_browser(&chromium, &report);
    for needle in [
        "id=\"legend\"",
        "Alerting",
        "precision",
        "recall",
        "delay switched on",
        "for=5m",
        "class=\"scores\"",
    ] {
        assert!(
            rendered.dom.contains(needle),
            "{needle} not in the rendered page"
        );
    }
    assert!(
        rendered.console.is_empty(),
        "console messages: {:?}",
        rendered.console
    );
    let (width, height) = rendered.size;
    assert_eq!((width, height), (1400, 1000));
    let drawn = rendered
        .pixels
        .chunks(4)
        .filter(|p| p[0] < 200 || p[1] < 200 || p[2] < 200)
        .count();
    let colours: std::collections::BTreeSet<&[u8]> = rendered.pixels.chunks(4).collect();
    assert!(
        drawn > 1_400 * 1_000 / 100 && colours.len() > 20,
        "the page looks blank: {drawn} drawn pixels, {} colours",
        colours.len()
    );
    println!(
        "report rendered by {}: {drawn} drawn pixels, {} colours",
        chromium.display(),
        colours.len()
    );
}
