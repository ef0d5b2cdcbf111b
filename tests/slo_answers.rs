//! SLO answers on real monitor output in the real Elasticsearch: `alerts report` against exact
//! figures computed from the raw latencies the test produced (including windows whose
//! histograms are coarsened, and an older document without one), and the burn-rate rules
//! `alerts slo generate` writes, replayed by `alerts backtest`: a known burst of slow records
//! pages, the ticket alert stays quiet, and at low traffic the minimum-records guard keeps the
//! page quiet (without the guard the same records page).

mod support;

use elasticsearch::http::Method;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

const ALERTS: &str = env!("CARGO_BIN_EXE_alerts");
const PER_SECOND: i64 = 10; // records per second and partition

/// Records of partition `p` every 100 ms over `[from, to)` with latencies from `latency`.
fn stretch(
    from: i64,
    to: i64,
    partitions: i32,
    step_ms: i64,
    mut latency: impl FnMut(i64) -> i64,
    prefix: &str,
) -> (Vec<Outgoing>, Vec<(i64, i64)>) {
    let mut records = Vec::new();
    let mut raw = Vec::new();
    for p in 0..partitions {
        let mut t = from;
        while t < to {
            let l = latency(t);
            records.push(record(p, t, l, &format!("{prefix}{p}-{t}")));
            raw.push((t, l));
            t += step_ms;
        }
    }
    records.sort_by_key(|r| (r.partition, r.timestamp_ms));
    (records, raw)
}

fn monitor(topics: &MonitorTopics, job: &str, index: &str, dir: &Path) -> Job {
    MonitorArgs::new(topics, &unique(&format!("slo_{job}_g")))
        .elasticsearch(index)
        .set("--job-name", job)
        .set("--exact-threshold", "15")
        .set("--commit-interval", "200ms")
        .start(dir)
}

fn alerts(args: &[&str]) -> std::process::Output {
    Command::new(ALERTS).args(args).output().unwrap()
}

fn report(index: &str, job: &str, from: i64, to: i64, extra: &[&str]) -> Value {
    let es = es_url();
    let (from, to) = (iso_ms(from), iso_ms(to));
    #[rustfmt::skip]
    let mut args = vec![
        "report", "--es-url", &es, "--es-index", index, "--job", job,
        "--from", &from, "--to", &to, "--objective", "99", "--json",
    ];
    args.extend(extra);
    let out = alerts(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn exact_share(latencies: &[f64], within: impl Fn(f64) -> bool) -> f64 {
    latencies.iter().filter(|&&l| within(l)).count() as f64 / latencies.len() as f64
}

/// Every figure of one period of the report against the raw latencies it covers.
fn assert_period(period: &Value, latencies: &[f64], old_records: u64, what: &str) {
    let n = latencies.len() as u64;
    assert_eq!(period["records_in_histograms"], n, "{what}: {period}");
    assert_eq!(period["records"], n + old_records, "{what}: {period}");
    for (i, q) in [0.5, 0.75, 0.9, 0.99].into_iter().enumerate() {
        let exact = exact_percentile(latencies, q);
        let got = period["percentiles"][i][1].as_f64().unwrap();
        assert!(
            (got - exact).abs() <= 0.01 * exact,
            "{what}: p{} {got}, exact {exact}",
            q * 100.0
        );
    }
}

/// An SLO over 1 h for `job` (1 s threshold, 99 %), with a page at 14.4x over 20 s and 6 s
/// and a ticket at 1x over 600 s and 60 s, on the tests' 2 s windows.
fn slo_file(name: &str, job: &str, minimum: u64) -> String {
    format!(
        "apiVersion: openslo/v1\nkind: SLO\nmetadata:\n  name: {name}\nspec:\n  service: visits\n  \
         indicator:\n    job: {job}\n    threshold: 1s\n  timeWindow:\n    - duration: 1h\n  \
         objectives:\n    - target: 0.99\n  alerting:\n    minimumRecords: {minimum}\n    \
         resolution: 2s\n    interval: 2s\n    windows:\n      \
         - {{severity: page, long: 20s, short: 6s, burnRate: 14.4}}\n      \
         - {{severity: ticket, long: 600s, short: 60s, burnRate: 1}}\n"
    )
}

/// Writes the SLO file, validates it and generates its rules with `alerts slo`; the rules'
/// path.
fn generate_rules(dir: &Path, name: &str, job: &str, minimum: u64) -> std::path::PathBuf {
    let file = dir.join(format!("{name}.slo.yaml"));
    std::fs::write(&file, slo_file(name, job, minimum)).unwrap();
    let validated = alerts(&["slo", "validate", file.to_str().unwrap()]);
    assert!(validated.status.success(), "{validated:?}");
    let generated = alerts(&["slo", "generate", file.to_str().unwrap()]);
    assert!(generated.status.success(), "{generated:?}");
    let rules = dir.join(format!("{name}.rules.yaml"));
    std::fs::write(&rules, &generated.stdout).unwrap();
    rules
}

/// The search Grafana's Elasticsearch data source sends for a panel target with a `terms`
/// bucket aggregation only (no date histogram): metrics inside the terms buckets, settings
/// passed on as written, pipeline variables as buckets paths.
fn grafana_terms_request(target: &Value, job: &str, from: i64, to: i64) -> Value {
    let mut aggs = serde_json::Map::new();
    for metric in target["metrics"].as_array().unwrap() {
        let id = metric["id"].as_str().unwrap().to_string();
        let kind = metric["type"].as_str().unwrap();
        let mut settings = metric["settings"].as_object().cloned().unwrap_or_default();
        if kind == "bucket_script" {
            let paths: serde_json::Map<String, Value> = metric["pipelineVariables"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| {
                    (
                        v["name"].as_str().unwrap().to_string(),
                        v["pipelineAgg"].clone(),
                    )
                })
                .collect();
            settings.insert("buckets_path".into(), Value::Object(paths));
        } else {
            settings.insert("field".into(), metric["field"].clone());
        }
        aggs.insert(id, json!({ kind: settings }));
    }
    let terms = &target["bucketAggs"][0];
    assert_eq!(terms["type"], "terms");
    let settings = &terms["settings"];
    json!({
        "size": 0,
        "query": { "bool": { "filter": [
            { "range": { "@timestamp": { "gte": from, "lte": to, "format": "epoch_millis" } } },
            { "query_string": { "analyze_wildcard": true,
                                "query": target["query"].as_str().unwrap().replace("$job", job) } }
        ] } },
        "aggs": { terms["id"].as_str().unwrap(): {
            "terms": {
                "field": terms["field"],
                "size": settings["size"].as_str().unwrap().parse::<u64>().unwrap(),
                "order": { settings["orderBy"].as_str().unwrap(): settings["order"] },
                "min_doc_count": settings["min_doc_count"].as_str().unwrap().parse::<u64>().unwrap()
            },
            "aggs": aggs
        } }
    })
}

/// When each alert a backtest timeline sent for Alerting started (Unix ms).
fn fired(timeline: &Value) -> Vec<i64> {
    timeline["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "Alerting")
        .map(|a| a["starts_at_ms"].as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_and_burn_rate_alerts_match_the_raw_latencies() {
    let dir = tempfile::tempdir().unwrap();
    let index = test_index("slo");
    // An index as an older release made it (no latency_histogram), with one document: the
    // monitor adds the field, and the report counts the old records without a histogram.
    let base = (now_ms() - 900_000) / 2_000 * 2_000;
    let old_properties: Value = json!({
        "@timestamp": {"type": "date"}, "window_end": {"type": "date"},
        "window_start_ms": {"type": "long"}, "job": {"type": "keyword"}, "count": {"type": "long"},
        "min": {"type": "float"}, "max": {"type": "float"}, "mean": {"type": "float"},
        "p50": {"type": "float"}, "p75": {"type": "float"}, "p90": {"type": "float"}, "p99": {"type": "float"},
        "sla_ms": {"type": "long"}, "over_sla_count": {"type": "long"},
        "within_sla_count": {"type": "long"}, "exact": {"type": "boolean"}
    });
    let (status, _) = es_request(
        Method::Put,
        &format!("/{index}"),
        Some(json!({"mappings": {"dynamic": "strict", "properties": old_properties}})),
    )
    .await;
    assert_eq!(status, 200);
    let old_start = base - 10_000;
    let (status, _) = es_request(
        Method::Put,
        &format!("/{index}/_doc/visits-synchronizer-{old_start}?refresh=true"),
        Some(json!({
            "@timestamp": iso_ms(old_start), "window_end": iso_ms(old_start + 2_000),
            "window_start_ms": old_start, "job": "visits-synchronizer", "count": 50,
            "min": 10.0, "max": 3000.0, "mean": 400.0, "p50": 200.0, "p75": 300.0, "p90": 900.0,
            "p99": 2900.0, "sla_ms": 1000, "over_sla_count": 10, "within_sla_count": 40, "exact": true
        })),
    )
    .await;
    assert_eq!(status, 201);

    // The pipeline: 760 s of 20 records a second, latencies 20–900 ms, except a 4 s burst of
    // 1.5–4 s at 700 s (over the 1 s SLA).
    let burst = (base + 700_000, base + 704_000);
    let mut rng = StdRng::seed_from_u64(23);
    let (records, raw) = stretch(
        base,
        base + 760_000,
        2,
        1_000 / PER_SECOND,
        |t| {
            if (burst.0..burst.1).contains(&t) {
                rng.random_range(1_500..4_000)
            } else {
                (rng.random_range(3.0f64..6.8)).exp() as i64
            }
        },
        "v",
    );
    // 8 s of 500 records a second more: windows of 2000 records, whose histograms are
    // coarsened (in parts and whole) — the bound the report's figures rest on.
    let dense = (base + 100_000, base + 108_000);
    let (dense_records, dense_raw) = stretch(
        dense.0,
        dense.1,
        2,
        2,
        |_| (rng.random_range(3.0f64..6.8)).exp() as i64,
        "d",
    );
    let mut records = records;
    records.extend(dense_records);
    records.sort_by_key(|r| (r.partition, r.timestamp_ms));
    let raw: Vec<(i64, i64)> = raw.into_iter().chain(dense_raw).collect();
    // A quiet job: one record a second, every one slow for 20 s.
    let quiet_burst = (base + 700_000, base + 720_000);
    let (quiet_records, _) = stretch(
        base + 600_000,
        base + 760_000,
        1,
        1_000,
        |t| {
            if (quiet_burst.0..quiet_burst.1).contains(&t) {
                3_000
            } else {
                100
            }
        },
        "q",
    );
    let busy = monitor_topics("slo_busy");
    let quiet = monitor_topics("slo_quiet");
    create_topic(&busy.reduced, 2).await;
    create_topic(&quiet.reduced, 2).await;
    produce(&busy.reduced, &records).await;
    produce(&quiet.reduced, &quiet_records).await;
    let busy_monitor = monitor(&busy, "visits-synchronizer", &index, dir.path());
    let quiet_monitor = monitor(&quiet, "quiet", &index, dir.path());
    let busy_windows = 380;
    let quiet_windows = 80;
    wait_for_es_documents(
        &index,
        1 + busy_windows + quiet_windows,
        Duration::from_secs(120),
    )
    .await;
    assert!(busy_monitor.terminate(Duration::from_secs(30)).success());
    assert!(quiet_monitor.terminate(Duration::from_secs(30)).success());
    let docs = es_documents(&index).await;
    let dense_window = &docs[&format!("visits-synchronizer-{}", dense.0 + 4_000)];
    let values = dense_window["latency_histogram"]["values"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(dense_window["count"], 2 * 2 * (500 + PER_SECOND));
    assert_eq!(dense_window["exact"], false);
    assert!(values < 1_500, "coarsened to {values} buckets");
    let (_, mapping) = es_request(Method::Get, &format!("/{index}/_mapping"), None).await;
    assert_eq!(
        mapping[&index]["mappings"]["properties"]["latency_histogram"]["type"], "histogram",
        "the monitor adds the field to an existing index"
    );

    // The report, per UTC day and in total, against the raw latencies.
    let (from, to) = (old_start, base + 760_000);
    let stored = report(&index, "visits-synchronizer", from, to, &[]);
    let job = &stored["jobs"][0];
    assert_eq!(stored["jobs"].as_array().unwrap().len(), 1, "{stored}");
    let all: Vec<f64> = raw.iter().map(|&(_, l)| l as f64).collect();
    assert_period(&job["total"], &all, 50, "total");
    let day_of = |t: i64| t.div_euclid(86_400_000) * 86_400_000;
    for day in job["days"].as_array().unwrap() {
        let start = day["start_ms"].as_i64().unwrap();
        let latencies: Vec<f64> = raw
            .iter()
            .filter(|&&(t, _)| day_of(t) == start)
            .map(|&(_, l)| l as f64)
            .collect();
        let old = if day_of(old_start) == start { 50 } else { 0 };
        assert_period(day, &latencies, old, "a day");
    }
    // Compliance with the stored SLA comes from the documents' counts: exact.
    let within = all.iter().filter(|&&l| l <= 1_000.0).count() as u64 + 40;
    assert_eq!(job["total"]["within_sla"], within);
    let bad = all.len() as u64 + 50 - within;
    let budget = bad as f64 / (0.01 * (all.len() + 50) as f64);
    assert!((job["total"]["budget_consumed"].as_f64().unwrap() - budget).abs() < 1e-9);
    // Another threshold: from the histograms, within 0.1 percentage points.
    for threshold in ["300ms", "500ms", "2s"] {
        let ms = humantime::parse_duration(threshold).unwrap().as_millis() as f64;
        let other = report(
            &index,
            "visits-synchronizer",
            from,
            to,
            &["--sla", threshold],
        );
        let got = other["jobs"][0]["total"]["compliance"].as_f64().unwrap();
        let exact = exact_share(&all, |l| l <= ms);
        assert!(
            (got - exact).abs() <= 0.001,
            "--sla {threshold}: compliance {got}, exact {exact}"
        );
    }

    // The dashboard's range panels, searched as Grafana's data source builds a terms-only
    // query, answer what the report answers.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/dashboards/grafana/dashboards/sla-monitor.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let panel = |title: &str| {
        let panel = dashboard["panels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["title"].as_str().unwrap().starts_with(title))
            .unwrap();
        let request =
            grafana_terms_request(&panel["targets"][0], "visits-synchronizer", from, to - 1);
        let path = format!("/{index}/_search");
        async move {
            let (status, answer) = es_request(Method::Post, &path, Some(request)).await;
            assert_eq!(status, 200, "{answer}");
            let buckets = &answer["aggregations"]["9"]["buckets"];
            assert_eq!(buckets.as_array().map(Vec::len), Some(1), "{answer}");
            buckets[0].clone()
        }
    };
    let percentiles = panel("True latency percentiles over the range").await;
    let p99 = percentiles["1"]["values"]["99.0"].as_f64().unwrap();
    let exact_p99 = exact_percentile(&all, 0.99);
    assert!(
        (p99 - exact_p99).abs() <= 0.01 * exact_p99,
        "panel p99 {p99}, exact {exact_p99}"
    );
    let compliance = panel("SLA compliance over the range").await["3"]["value"]
        .as_f64()
        .unwrap();
    let stored_compliance = job["total"]["compliance"].as_f64().unwrap();
    assert!(
        (compliance - stored_compliance).abs() < 1e-9,
        "{compliance} vs {stored_compliance}"
    );
    let left = panel("Error budget left over the range").await["3"]["value"]
        .as_f64()
        .unwrap();
    let expected_left = 1.0 - bad as f64 / (0.005 * (all.len() + 50) as f64);
    assert!(
        (left - expected_left).abs() < 1e-9,
        "budget left {left}, expected {expected_left}"
    );

    // Burn-rate alerts from an SLO file, replayed over the stored windows.
    let backtest_slo = |name: &str, job: &str, minimum: u64| -> Vec<Value> {
        let rules = generate_rules(dir.path(), name, job, minimum);
        let out = backtest_with(
            &rules,
            &index,
            base + 620_000,
            base + 760_000,
            &["--interval", "2s"],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
    };
    let busy_timelines = backtest_slo("busy", "visits-synchronizer", 20);
    assert_eq!(busy_timelines.len(), 2);
    assert_eq!(busy_timelines[0]["errors"], 0, "{}", busy_timelines[0]);
    let page = fired(&busy_timelines[0]);
    assert_eq!(page.len(), 1, "the burst pages once: {}", busy_timelines[0]);
    // It fires once the burst's windows are written (within a few windows of its start).
    assert!(
        page[0] >= burst.0 && page[0] <= burst.1 + 12_000,
        "paged at {} for a burst at {}",
        page[0] - base,
        burst.0 - base
    );
    assert!(
        fired(&busy_timelines[1]).is_empty(),
        "4 s of slow records in 600 s burn 0.7 % of records < 1x: no ticket: {}",
        busy_timelines[1]
    );
    let guarded = backtest_slo("quiet", "quiet", 20);
    assert!(
        fired(&guarded[0]).is_empty(),
        "6 records in the short window: the guard keeps the page quiet: {}",
        guarded[0]
    );
    let unguarded = backtest_slo("quiet-unguarded", "quiet", 1);
    assert!(
        !fired(&unguarded[0]).is_empty(),
        "without the guard the same records page: {}",
        unguarded[0]
    );
}

/// The state of the rule `uid` in the `alerts` evaluator's /state (its one instance).
async fn rule_state(alerts: &str, uid: &str) -> String {
    rule_state_since(alerts, uid).await.0
}

/// A rule's first instance's state and when it began by the evaluator's clock (its scheduled
/// evaluation), not when a test saw it.
async fn rule_state_since(alerts: &str, uid: &str) -> (String, Option<i64>) {
    let states: Value = reqwest::get(format!("http://{alerts}/state"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Empty until the evaluator has loaded its rules.
    let Some(rule) = states.as_array().unwrap().iter().find(|r| r["uid"] == uid) else {
        return ("not loaded yet".to_string(), None);
    };
    let state = &rule["instances"][0]["state"];
    (
        state["state"].as_str().unwrap_or("none yet").to_string(),
        state["starts_at_ms"].as_i64(),
    )
}

/// The generated rules evaluated live: ten minutes of history at 20 records a second, then
/// records produced as they happen, 4 s of them slow. The page goes Alerting and back to
/// Normal; the ticket never leaves Normal; a backtest of the same minutes agrees.
#[tokio::test(flavor = "multi_thread")]
async fn burn_rate_alerts_fire_live_as_in_the_backtest() {
    let dir = tempfile::tempdir().unwrap();
    let index = test_index("slo_live");
    let topics = monitor_topics("slo_live");
    create_topic(&topics.reduced, 2).await;
    let start = now_ms() / 2_000 * 2_000;
    let mut rng = StdRng::seed_from_u64(7);
    let (history, _) = stretch(
        start - 640_000,
        start,
        2,
        1_000 / PER_SECOND,
        |_| (rng.random_range(3.0f64..6.5)).exp() as i64,
        "h",
    );
    produce(&topics.reduced, &history).await;
    // Then records as they happen, 10 a second per partition, each stamped with its scheduled
    // time by one long-lived producer; 4 s of them slow once the page is seen Normal, then fast
    // again until the page is Normal again.
    let burst: Arc<Mutex<Option<(i64, i64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (burst, stop, topic) = (burst.clone(), stop.clone(), topics.reduced.clone());
        let producer: FutureProducer = Cluster::local()
            .config()
            .set("linger.ms", "5")
            .create()
            .unwrap();
        tokio::spawn(async move {
            // From now on: the history took a while to produce, and records stamped before
            // the monitor's windows closed (it idles between the two) would be late.
            let mut next = now_ms();
            while !stop.load(Ordering::Relaxed) {
                let mut deliveries = Vec::new();
                while next <= now_ms() {
                    let slow = burst
                        .lock()
                        .unwrap()
                        .is_some_and(|(from, to)| (from..to).contains(&next));
                    for p in 0..2 {
                        let latency = if slow { 2_500 } else { 150 };
                        let key = format!("live{p}-{next}");
                        let value = reduced_json(&key, next - latency);
                        let record = FutureRecord::to(&topic)
                            .key(&key)
                            .payload(&value)
                            .partition(p)
                            .timestamp(next);
                        deliveries.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
                    }
                    next += 1_000 / PER_SECOND;
                }
                for delivery in deliveries {
                    delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let live_from = now_ms();
    let monitor = monitor(&topics, "live", &index, dir.path());
    wait_for_es_documents(&index, 300, Duration::from_secs(120)).await;
    let rules = generate_rules(dir.path(), "live", "live", 20);
    let evaluator = start_alerts(&rules, &index, &["--interval", "2s"], dir.path());
    let alerts_addr = http_addr_of(&evaluator);
    let (page, ticket) = ("slo-live-1", "slo-live-2");

    let mut phase = "before";
    let mut fired_at = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    loop {
        let current = *burst.lock().unwrap();
        assert!(
            std::time::Instant::now() < deadline,
            "page did not go Alerting and back to Normal (phase {phase}, burst {current:?})"
        );
        let now = now_ms();
        let ((page_state, page_since), ticket_state) = (
            rule_state_since(&alerts_addr, page).await,
            rule_state(&alerts_addr, ticket).await,
        );
        assert_ne!(
            ticket_state, "Alerting",
            "4 s slow in 600 s must not open a ticket"
        );
        match phase {
            // The page's 20 s window holds live records only.
            "before" if page_state == "Normal" && now > live_from + 25_000 => {
                *burst.lock().unwrap() = Some((now + 2_000, now + 6_000));
                phase = "burst";
            }
            "burst" if page_state == "Alerting" => {
                // When the evaluator went Alerting, not when this loop saw it: on a loaded
                // machine the two differ by seconds.
                fired_at = Some(page_since.expect("an Alerting state has a start"));
                phase = "firing";
            }
            "firing" if page_state == "Normal" => break,
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    producer.await.unwrap();
    let burst = *burst.lock().unwrap();
    let (from, to) = burst.unwrap();
    let fired_at = fired_at.unwrap();
    assert!(
        fired_at > from,
        "paged at {fired_at} before the burst at {from}"
    );
    assert!(
        fired_at < to + 20_000,
        "paged {} ms after the burst ended",
        fired_at - to
    );
    evaluator.terminate(Duration::from_secs(10));
    assert!(monitor.terminate(Duration::from_secs(30)).success());

    // The backtest of the same minutes sends the same page, and no ticket.
    let out = backtest_with(
        &rules,
        &index,
        from - 60_000,
        now_ms(),
        &["--interval", "2s"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let timelines: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let paged = fired(&timelines[0]);
    assert_eq!(paged.len(), 1, "{}", timelines[0]);
    assert!(
        (paged[0] - fired_at).abs() <= 6_000,
        "backtest paged at {}, live at {fired_at}",
        paged[0]
    );
    assert!(fired(&timelines[1]).is_empty(), "{}", timelines[1]);
}
