//! Per-dimension SLAs on the real broker (and Elasticsearch): windows split by a field or
//! header of the records, one document per chosen value and one for the rest, exact against
//! the test's own computation, adding up to the whole window in every window, each value
//! judged against its own SLA, the same whatever the number of instances and kills, and
//! bounded under a stream of a new value on every record.

mod support;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sla_monitor::dimension::sla_rule::{SlaFor, SlaRules};
use sla_monitor::dimension::split_config::SplitConfig;
use std::collections::BTreeMap;
use std::time::Duration;
use support::in_process::{document_json, test_config, InProcessMonitor};
use support::*;

/// A reduced record with a `tenant` member (none when `tenant` is `None`), for partition `p` at
/// event time `t` with latency `latency`.
fn tenant_record(p: i32, t: i64, latency: i64, id: &str, tenant: Option<&str>) -> Outgoing {
    let mut value = serde_json::json!({
        "visit": {"id": id, "event_time": (t - latency) / 1000},
        "start_processing_time_ms": t - latency,
    });
    if let Some(tenant) = tenant {
        value["tenant"] = tenant.into();
    }
    Outgoing {
        key: Some(id.into()),
        value: Some(value.to_string().into_bytes()),
        partition: Some(p),
        timestamp_ms: Some(t),
        headers: Vec::new(),
    }
}

/// Per partition and window: `big` 75 records, `mid` 30 (a tenth over the 1 s SLA), `slow` 15
/// (600–900 ms: within the job's SLA, over its own 500 ms), 10 without a tenant, and 30 of a
/// tenant of their own each (under 1 % of the window). Returns the records, in event-time
/// order per partition, and the latencies per (window start, tenant); the one-record tenants
/// are under `__other__`.
fn tenant_windows(base: i64, windows: i64, seed: u64) -> (Vec<Outgoing>, Expected) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut records = Vec::new();
    let mut expected: Expected = BTreeMap::new();
    for w in 0..windows {
        for p in 0..2 {
            let mut mix: Vec<(Option<String>, i64)> = Vec::new();
            mix.extend((0..75).map(|_| (Some("big".into()), rng.random_range(5..400))));
            mix.extend((0..30).map(|_| {
                let latency = if rng.random_bool(0.1) {
                    rng.random_range(1_001..3_000)
                } else {
                    rng.random_range(5..900)
                };
                (Some("mid".into()), latency)
            }));
            mix.extend((0..15).map(|_| (Some("slow".into()), rng.random_range(600..900))));
            mix.extend((0..10).map(|_| (None, rng.random_range(5..400))));
            mix.extend(
                (0..30).map(|j| (Some(format!("once-{w}-{p}-{j}")), rng.random_range(5..400))),
            );
            // Shuffled, so values interleave as they would in a real stream.
            for i in (1..mix.len()).rev() {
                mix.swap(i, rng.random_range(0..=i));
            }
            let per = mix.len() as i64;
            for (j, (tenant, latency)) in mix.into_iter().enumerate() {
                let t = base + w * WINDOW + (j as i64 * WINDOW) / per;
                let id = format!("w{w}p{p}j{j}");
                records.push(tenant_record(p, t, latency, &id, tenant.as_deref()));
                let value = match tenant.as_deref() {
                    None => "__missing__".to_string(),
                    Some(t) if t.starts_with("once-") => "__other__".to_string(),
                    Some(t) => t.to_string(),
                };
                expected
                    .entry((base + w * WINDOW, value))
                    .or_default()
                    .push(latency as f64);
            }
        }
    }
    (records, expected)
}

/// Latencies per (window start, value).
type Expected = BTreeMap<(i64, String), Vec<f64>>;

/// The value documents of `whole`'s window, after checking that their counts add up to its
/// count.
fn values_adding_up<'v>(
    values: impl IntoIterator<Item = &'v serde_json::Value>,
    whole: &serde_json::Value,
) -> Vec<&'v serde_json::Value> {
    let start = &whole["window_start_ms"];
    let of_window: Vec<&serde_json::Value> = values
        .into_iter()
        .filter(|d| d["window_start_ms"] == *start)
        .collect();
    let sum: u64 = of_window.iter().map(|d| d["count"].as_u64().unwrap()).sum();
    assert_eq!(
        sum,
        whole["count"].as_u64().unwrap(),
        "the values of window {start} add up"
    );
    of_window
}

/// The tenant of a value document.
fn tenant_of(doc: &serde_json::Value) -> String {
    doc["dimensions"]["tenant"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_value_is_exact_judged_against_its_own_sla_and_the_values_add_up_to_the_window() {
    let s = monitor_topics("dims_exact");
    create_topic(&s.reduced, 2).await;
    let base = (now_ms() - 600_000) / WINDOW * WINDOW;
    let (mut records, expected) = tenant_windows(base, 3, 36);
    records.extend(terminators(2, base + 10 * WINDOW));
    produce(&s.reduced, &records).await;

    let mut config = test_config(&s, &unique("dims_exact_g"), Duration::from_secs(600));
    let dimensions = vec!["tenant=field:/tenant".parse().unwrap()];
    let rules: Vec<SlaFor> = vec!["tenant=slow:500ms".parse().unwrap()];
    config.split = Some(SplitConfig {
        sla_rules: SlaRules::new(&dimensions, &rules).unwrap(),
        dimensions,
        max_values: 3,
    });
    let monitor = InProcessMonitor::start(config).await;
    let whole = monitor.documents(3, Duration::from_secs(60)).await;
    // big, mid and slow (the 3 heaviest), __missing__ (over 1 %) and __other__, per window.
    let values = tokio::time::timeout(
        Duration::from_secs(60),
        monitor.sink.wait_for_values(|d| d.len() >= 15),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "value documents: {:?}",
            monitor.sink.value_documents().keys()
        )
    });
    monitor.stop().await;

    assert_eq!(values.len(), 15, "{:?}", values.keys());
    for w in 0..3 {
        let start = base + w * WINDOW;
        let window = document_json(&whole[&format!("visits-synchronizer-{start}")]);
        assert!(
            window.get("dimensions").is_none(),
            "whole-window documents are unchanged: {window}"
        );
        let as_json: Vec<serde_json::Value> = values.values().map(document_json).collect();
        let of_window = values_adding_up(&as_json, &window);
        let tenants: Vec<String> = of_window.iter().map(|d| tenant_of(d)).collect();
        assert_eq!(
            tenants
                .iter()
                .map(String::as_str)
                .collect::<std::collections::BTreeSet<_>>(),
            ["__missing__", "__other__", "big", "mid", "slow"].into(),
            "window {w}"
        );
        for &doc in &of_window {
            let tenant = tenant_of(doc);
            let latencies = &expected[&(start, tenant.clone())];
            let sla = if tenant == "slow" { 500.0 } else { 1_000.0 };
            assert_eq!(doc["sla_ms"].as_f64().unwrap(), sla, "{doc}");
            if tenant == "__other__" {
                assert_eq!(doc["count"], 60);
                assert!(doc.get("records_elsewhere_at_most").is_none(), "{doc}");
                // The one-record tenants' latencies, exactly.
                assert_eq!(doc["over_sla_count"], 0);
            } else {
                assert_eq!(doc["records_elsewhere_at_most"], 0, "{doc}");
            }
            let mut judged = doc.clone();
            if tenant == "slow" {
                // Every one of slow's records is over its own SLA, none over the job's.
                assert_eq!(doc["over_sla_count"], latencies.len() as u64, "{doc}");
                judged["over_sla_count"] = 0.into();
                judged["within_sla_count"] = (latencies.len() as u64).into();
            }
            assert_document(&judged, latencies);
        }
    }
}

/// Ids and documents of an index, without the volatile fields (none are: documents are
/// functions of the records).
async fn values_index(index: &str, count: usize) -> BTreeMap<String, serde_json::Value> {
    wait_for_es_documents(
        &format!("{index}-dimensions"),
        count,
        Duration::from_secs(90),
    )
    .await
}

/// Per partition and window, tenants by header: `t0` 40 %, `t1` 25 %, `t2` 15 %, and the rest
/// spread over 40 tenants (`t3`…), with latencies of every size.
fn header_records(
    base: i64,
    windows: std::ops::Range<i64>,
    partitions: i32,
    seed: u64,
) -> Vec<Outgoing> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    for w in windows {
        for p in 0..partitions {
            let per = 40;
            for j in 0..per {
                let t = base + w * WINDOW + (j * WINDOW) / per;
                let latency = if rng.random_bool(0.1) {
                    rng.random_range(1_000..5_000)
                } else {
                    rng.random_range(5..400)
                };
                let roll = rng.random_range(0..100);
                let tenant = match roll {
                    0..40 => "t0".to_string(),
                    40..65 => "t1".to_string(),
                    65..80 => "t2".to_string(),
                    _ => format!("t{}", 3 + rng.random_range(0..40)),
                };
                let mut r = record(p, t, latency, &format!("w{w}p{p}j{j}"));
                r.headers.push(("tenant".into(), tenant));
                out.push(r);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn three_instances_one_killed_write_the_value_documents_one_instance_writes() {
    const PARTITIONS: i32 = 4;
    const WINDOWS: i64 = 8;
    let dir = tempfile::tempdir().unwrap();
    let topics = monitor_topics("dims_scale");
    create_topic(&topics.reduced, PARTITIONS).await;
    let base = (now_ms() - 600_000) / WINDOW * WINDOW;
    let all = header_records(base, 0..WINDOWS, PARTITIONS, 37);
    let (phase1, phase2): (Vec<Outgoing>, Vec<Outgoing>) = all
        .into_iter()
        .partition(|r| r.timestamp_ms.unwrap() < base + 3 * WINDOW + WINDOW / 2);
    let args = |topics: &MonitorTopics, group: &str, index: &str| {
        MonitorArgs::new(topics, group)
            .set("--es-url", &es_url())
            .set("--es-index", index)
            .set("--idle-timeout", "10m")
            .set("--exact-threshold", "100")
            .set("--commit-interval", "200ms")
            .set("--dimension", "tenant=header:tenant")
            .set("--max-dimension-values", "2")
            .set("--sla-for", "tenant=t1:300ms")
            .short_session()
    };
    produce(&topics.reduced, &phase1).await;
    let (group, index) = (unique("dims_scale_g"), test_index("dims_scale"));
    let live_args = args(&topics, &group, &index);
    let mut instances: Vec<Job> = (0..3).map(|_| live_args.start(dir.path())).collect();
    wait_until_spread(&instances, &topics, PARTITIONS, true);
    wait_for_es_documents(&index, 3, Duration::from_secs(60)).await;
    // The instance that merges dies with window 3 half-done.
    let merger = instances
        .iter()
        .position(|j| assigned(j, &topics.shuffle) > 0.0)
        .expect("one instance merges");
    instances.remove(merger).kill();
    produce(&topics.reduced, &phase2[..phase2.len() / 2]).await;
    wait_out_killed_session();
    instances.push(live_args.start(dir.path()));
    wait_until_spread(&instances, &topics, PARTITIONS, true);
    produce(&topics.reduced, &phase2[phase2.len() / 2..]).await;
    produce(
        &topics.reduced,
        &terminators(PARTITIONS, base + 60 * WINDOW),
    )
    .await;
    let whole = wait_for_es_documents(&index, WINDOWS as usize, Duration::from_secs(90)).await;
    // Per window at least t0 and t1 (the 2 heaviest), t2 and the spread tenants of 1 % or
    // more, and __other__: count what one instance writes, then compare.
    let reference_topics = MonitorTopics {
        reduced: topics.reduced.clone(),
        dlq: unique("dims_ref_d"),
        checkpoints: unique("dims_ref_c"),
        shuffle: unique("dims_ref_s"),
    };
    let reference_index = test_index("dims_ref");
    let reference =
        args(&reference_topics, &unique("dims_ref_g"), &reference_index).start(dir.path());
    let expected_whole =
        wait_for_es_documents(&reference_index, WINDOWS as usize, Duration::from_secs(90)).await;
    let expected_values = values_of_windows(&reference_index, WINDOWS as usize).await;
    assert!(reference.terminate(Duration::from_secs(30)).success());
    let live_values = values_index(&index, expected_values.len()).await;
    for job in instances {
        assert!(job.terminate(Duration::from_secs(30)).success());
    }
    assert_eq!(strip_ids(&whole), strip_ids(&expected_whole));
    let differing: Vec<&String> = expected_values
        .keys()
        .filter(|id| live_values.get(*id) != expected_values.get(*id))
        .collect();
    assert!(
        differing.is_empty() && live_values.len() == expected_values.len(),
        "{} of {} value documents differ (instances wrote {}): {differing:?}",
        differing.len(),
        expected_values.len(),
        live_values.len()
    );
    // In every window the values add up to the whole window, t1 is judged against 300 ms,
    // and both exact (small) and t-digest windows were compared.
    for doc in expected_whole.values() {
        let of_window = values_adding_up(expected_values.values(), doc);
        assert!(of_window.iter().any(|d| tenant_of(d) == "__other__"));
        for d in &of_window {
            let sla = if tenant_of(d) == "t1" { 300 } else { 1_000 };
            assert_eq!(d["sla_ms"], sla, "{d}");
        }
    }
}

/// Waits until the value documents of `index` cover `windows` windows and returns them. Each
/// batch's value documents are written right after its windows, in one bulk: once every window
/// has value documents, all of them are there (a window whose splits did not add up would have
/// none, and fail this wait).
async fn values_of_windows(index: &str, windows: usize) -> BTreeMap<String, serde_json::Value> {
    let index = format!("{index}-dimensions");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let values = es_documents(&index).await;
        let covered: std::collections::BTreeSet<i64> = values
            .values()
            .map(|d| d["window_start_ms"].as_i64().unwrap())
            .collect();
        if covered.len() == windows {
            return values;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "value documents of {} windows in {index}, not {windows}",
            covered.len()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Documents by window start (ids differ only by index name, not by content).
fn strip_ids(docs: &BTreeMap<String, serde_json::Value>) -> BTreeMap<i64, serde_json::Value> {
    docs.values()
        .map(|d| {
            let mut d = d.clone();
            d.as_object_mut().unwrap().remove("id");
            (d["window_start_ms"].as_i64().unwrap(), d)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_value_on_every_record_keeps_the_tables_bounded_and_the_rest_under_other() {
    const RECORDS: i64 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let topics = monitor_topics("dims_hostile");
    create_topic(&topics.reduced, 2).await;
    let base = (now_ms() - 600_000) / WINDOW * WINDOW;
    // Two windows of 50,000 records, each with a tenant of its own, over 2 partitions.
    let mut records: Vec<Outgoing> = (0..RECORDS)
        .map(|i| {
            let p = (i % 2) as i32;
            let t = base + (i * 2 * WINDOW) / RECORDS;
            tenant_record(
                p,
                t,
                5 + i % 300,
                &format!("r{i}"),
                Some(&format!("tenant-{i}")),
            )
        })
        .collect();
    records.sort_by_key(|r| (r.partition, r.timestamp_ms));
    // In chunks: the producer's queue holds 100,000 records.
    for chunk in records.chunks(20_000) {
        produce(&topics.reduced, chunk).await;
    }
    let index = test_index("dims_hostile");
    let job = MonitorArgs::new(&topics, &unique("dims_hostile_g"))
        .set("--es-url", &es_url())
        .set("--es-index", &index)
        .set("--idle-timeout", "10m")
        .set("--dimension", "tenant=field:/tenant")
        .set("--max-dimension-values", "50")
        .start(dir.path());
    // Once every record is consumed, window 0 has closed (window 1's records passed its end)
    // and window 1 is open on both partitions, each with 25,000 tenants: its tables are full,
    // at their capacity of 1,000 values each, and no larger.
    wait_for(
        "every record consumed, window 1's tables full",
        Duration::from_secs(120),
        || {
            let consumed = metric_sum(&job, "sla_records_consumed_total", &[]).unwrap_or(0.0);
            let held = metric_sum(&job, "sla_monitor_dimension_values_held", &[]);
            consumed >= RECORDS as f64 && held == Some(2_000.0)
        },
    );
    produce(&topics.reduced, &terminators(2, base + 10 * WINDOW)).await;
    let whole = wait_for_es_documents(&index, 2, Duration::from_secs(120)).await;
    let values = values_index(&index, 2 * 51).await;
    assert!(job.terminate(Duration::from_secs(30)).success());
    for doc in whole.values() {
        let of_window = values_adding_up(values.values(), doc);
        assert_eq!(of_window.len(), 51, "50 values and __other__: {doc}");
        let other = of_window
            .iter()
            .find(|d| tenant_of(d) == "__other__")
            .unwrap();
        assert!(other["count"].as_u64().unwrap() >= 50_000 - 50, "{other}");
        for d in of_window.iter().filter(|d| tenant_of(d) != "__other__") {
            // Each tenant had one record: a value document holds at most it, and says how many
            // of its records may be under __other__.
            assert!(d["count"].as_u64().unwrap() <= 1, "{d}");
            assert!(d["records_elsewhere_at_most"].as_u64().is_some(), "{d}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_per_value_rule_fires_for_the_one_tenant_over_its_sla_while_the_window_is_green() {
    let dir = tempfile::tempdir().unwrap();
    let index = test_index("dims_rule");
    let topics = monitor_topics("dims_rule");
    create_topic(&topics.reduced, 2).await;
    let base = (now_ms() - 30_000) / WINDOW * WINDOW;
    // 4 windows; per partition and window 2 gold records of 600–900 ms (over gold's 500 ms,
    // under the job's 1 s) and 8 of silver and bronze at 50–300 ms.
    let records: Vec<Outgoing> = (0..2)
        .flat_map(|p| {
            (0..40).map(move |j| {
                let t = base + j * WINDOW / 10;
                let (tenant, latency) = match j % 5 {
                    0 => ("gold", 600 + (j * 37) % 300),
                    k if k % 2 == 0 => ("silver", 50 + (j * 31) % 250),
                    _ => ("bronze", 50 + (j * 29) % 250),
                };
                tenant_record(p, t, latency, &format!("rule-{p}-{j}"), Some(tenant))
            })
        })
        .collect();
    produce(&topics.reduced, &records).await;
    let job = MonitorArgs::new(&topics, &unique("dims_rule_g"))
        .elasticsearch(&index)
        .set("--idle-timeout", "1s")
        .set("--commit-interval", "200ms")
        .set("--dimension", "tenant=field:/tenant")
        .set("--sla-for", "tenant=gold:500ms")
        .start(dir.path());
    let whole = wait_for_es_documents(&index, 4, Duration::from_secs(60)).await;
    let values = values_of_windows(&index, 4).await;
    assert!(job.terminate(Duration::from_secs(30)).success());
    assert!(
        whole.values().all(|d| d["over_sla_count"] == 0),
        "the windows are green"
    );
    assert!(values
        .values()
        .filter(|d| tenant_of(d) == "gold")
        .all(|d| d["sla_ms"] == 500 && d["over_sla_count"] == d["count"]));

    let rules = |file: &str| {
        let path = dir.path().join(file);
        let text = test_rules_of(file, &unique("dims"), "2s").replace("from: 30", "from: 600");
        std::fs::write(&path, text).unwrap();
        path
    };
    let per_value = backtest(&rules("dimension-alert-rules.yaml"), &index, base, now_ms());
    let timeline = &per_value[0];
    let firing: std::collections::BTreeSet<(String, String)> = timeline["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["to"] == "Alerting")
        .map(|t| {
            (
                t["labels"]["job"].as_str().unwrap_or("").to_string(),
                t["labels"]["dimensions.tenant"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        firing,
        [("visits-synchronizer".to_string(), "gold".to_string())].into(),
        "{timeline}"
    );
    // `alerts report --by tenant`: compliance and true percentiles per value over the range.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_alerts"))
        .args([
            "report",
            "--es-url",
            &es_url(),
            "--es-index",
            &index,
            "--by",
            "tenant",
        ])
        .args(["--from", &iso_ms(base), "--to", &iso_ms(now_ms()), "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_value: BTreeMap<String, &serde_json::Value> = report["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["value"].as_str().unwrap().to_string(), &j["total"]))
        .collect();
    assert_eq!(
        by_value.keys().map(String::as_str).collect::<Vec<_>>(),
        ["bronze", "gold", "silver"],
        "{report}"
    );
    let latencies_of = |tenant: &str| -> Vec<f64> {
        records
            .iter()
            .filter(|r| {
                String::from_utf8_lossy(r.value.as_ref().unwrap())
                    .contains(&format!("\"{tenant}\""))
            })
            .map(|r| {
                let v: serde_json::Value =
                    serde_json::from_slice(r.value.as_ref().unwrap()).unwrap();
                (r.timestamp_ms.unwrap() - v["start_processing_time_ms"].as_i64().unwrap()) as f64
            })
            .collect()
    };
    for (tenant, total) in &by_value {
        let latencies = latencies_of(tenant);
        assert_eq!(total["records"], latencies.len() as u64, "{tenant}");
        let compliance = total["compliance"].as_f64().unwrap();
        assert_eq!(
            compliance,
            if tenant == "gold" { 0.0 } else { 1.0 },
            "{tenant}"
        );
        assert_eq!(total["records_elsewhere_at_most"], 0);
        let p50 = total["percentiles"][0][1].as_f64().unwrap();
        let exact = exact_percentile(&latencies, 0.5);
        assert!(
            (p50 - exact).abs() <= exact * 0.02,
            "{tenant}: p50 {p50} against {exact}"
        );
    }
    // A per-value SLO of the gold tier (its documents' sla_ms is 500): burn-rate rules per
    // value, the minimum-traffic guard applied to each value's own records (gold has 8 in
    // its short window, the whole window 40).
    let slo_rules = |minimum: u64| {
        let slo = dir.path().join(format!("gold-{minimum}.slo.yaml"));
        std::fs::write(
            &slo,
            format!(
                "apiVersion: openslo/v1\nkind: SLO\nmetadata:\n  name: gold-latency\nspec:\n  \
                 service: visits\n  indicator:\n    job: visits-synchronizer\n    threshold: 500ms\n    \
                 dimension: tenant\n  timeWindow:\n    - duration: 1h\n  budgetingMethod: Occurrences\n  \
                 objectives:\n    - target: 0.9\n  alerting:\n    minimumRecords: {minimum}\n    \
                 resolution: 2s\n    interval: 1s\n    windows:\n      - {{severity: page, long: 8s, short: 4s, burnRate: 2}}\n"
            ),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_alerts"))
            .args(["slo", "generate", slo.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = dir.path().join(format!("gold-{minimum}.rules.yaml"));
        std::fs::write(&path, &out.stdout).unwrap();
        path
    };
    let fired_values = |timelines: &serde_json::Value| -> Vec<String> {
        timelines[0]["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["to"] == "Alerting")
            .map(|t| {
                t["labels"]["dimensions.tenant"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    let burning = backtest(&slo_rules(5), &index, base, now_ms());
    assert_eq!(fired_values(&burning), ["gold"], "{}", burning[0]);
    let guarded = backtest(&slo_rules(10), &index, base, now_ms());
    assert!(fired_values(&guarded).is_empty(), "{}", guarded[0]);
    let whole_rule = backtest(&rules("sla-alert-rules.yaml"), &index, base, now_ms());
    assert!(
        whole_rule[0]["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["to"] != "Alerting"),
        "the whole window stays green: {}",
        whole_rule[0]
    );
}
