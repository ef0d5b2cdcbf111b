//! How long a long backtest takes: `cargo bench --bench backtest` (needs Elasticsearch:
//! `scripts/stack.sh up elasticsearch`). It stores 30 days of 1-minute window documents of one
//! pipeline (43,200, with a few SLA misses) in a fresh index, then times the release `alerts
//! backtest --from 30d` of the provisioned rule (1-minute interval: 43,200 evaluations), scored
//! against an incidents file, with a what-if variant and the HTML report — as a user runs it.
//! Options: `--days N`, `--es-url URL`.

use serde_json::json;
use std::io::Write;
use std::process::Command;
use std::time::Instant;

const MINUTE: i64 = 60_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        println!(
            "backtest: run with `cargo bench --bench backtest`; nothing measured under cargo test"
        );
        return;
    }
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let days: i64 = option("--days").map_or(30, |d| d.parse().expect("--days N"));
    let es = option("--es-url").unwrap_or_else(|| "http://127.0.0.1:9200".into());
    let index = format!("sla_bench_backtest_{}", std::process::id());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();

    let quantiles = [0.5, 0.75, 0.9, 0.99];
    let mapping = sla_monitor::sink::elasticsearch::mapping::properties(&quantiles);
    let created = runtime
        .block_on(
            client
                .put(format!("{es}/{index}"))
                .json(&json!({ "mappings": { "properties": mapping } }))
                .send(),
        )
        .expect("Elasticsearch reachable (scripts/stack.sh up elasticsearch)");
    assert!(
        created.status().is_success(),
        "{}",
        runtime.block_on(created.text()).unwrap()
    );

    // One document per minute up to the last whole minute; an SLA miss of 20 minutes every
    // 3 days (the incidents), and a 3-minute blip every day (noise the rule must not page on).
    let end = chrono::Utc::now().timestamp_millis() / MINUTE * MINUTE;
    let start = end - days * 24 * 60 * MINUTE;
    let windows = (end - start) / MINUTE;
    let mut incidents = String::new();
    let mut body = Vec::new();
    let started = Instant::now();
    for i in 0..windows {
        let at = start + i * MINUTE;
        let minute_of_day = i % (24 * 60);
        let day = i / (24 * 60);
        let incident = day % 3 == 1 && (600..620).contains(&minute_of_day);
        let blip = (900..903).contains(&minute_of_day);
        let p99 = if incident {
            9_000.0
        } else if blip {
            6_000.0
        } else {
            1_200.0 + (i % 17) as f64 * 10.0
        };
        if incident && minute_of_day == 600 {
            let iso = |ms: i64| {
                chrono::DateTime::from_timestamp_millis(ms)
                    .unwrap()
                    .to_rfc3339()
            };
            incidents.push_str(&format!(
                "- {{name: 'incident on day {day}', start: '{}', end: '{}'}}\n",
                iso(at),
                iso(at + 20 * MINUTE)
            ));
        }
        let iso = |ms: i64| {
            chrono::DateTime::from_timestamp_millis(ms)
                .unwrap()
                .to_rfc3339()
        };
        writeln!(
            body,
            "{}",
            json!({"index": {"_index": index, "_id": format!("w{i}")}})
        )
        .unwrap();
        writeln!(
            body,
            "{}",
            json!({
                "@timestamp": iso(at), "window_start_ms": at, "window_end": iso(at + MINUTE),
                "job": "visits-synchronizer", "count": 6000, "exact": false, "sla_ms": 5000,
                "min": 3.0, "max": p99 + 500.0, "mean": p99 / 3.0,
                "p50": p99 / 4.0, "p75": p99 / 3.0, "p90": p99 / 2.0, "p99": p99,
                "over_sla_count": if p99 > 5000.0 { 600 } else { 0 },
                "within_sla_count": if p99 > 5000.0 { 5400 } else { 6000 },
            })
        )
        .unwrap();
        if body.len() > 4 << 20 || i + 1 == windows {
            let response = runtime
                .block_on(
                    client
                        .post(format!("{es}/_bulk"))
                        .header("content-type", "application/x-ndjson")
                        .body(std::mem::take(&mut body))
                        .send(),
                )
                .unwrap();
            assert!(response.status().is_success());
        }
    }
    runtime
        .block_on(client.post(format!("{es}/{index}/_refresh")).send())
        .unwrap();
    println!(
        "stored {windows} window documents in {index} in {:.1?}",
        started.elapsed()
    );

    let dir = tempfile::tempdir().unwrap();
    let incidents_file = dir.path().join("incidents.yaml");
    std::fs::write(&incidents_file, &incidents).unwrap();
    let report = dir.path().join("report.html");
    let root = env!("CARGO_MANIFEST_DIR");
    let timed = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_alerts"))
        .current_dir(root)
        .env("RUST_LOG", "info")
        .args([
            "backtest",
            "--from",
            &format!("{days}d"),
            "--es-url",
            &es,
            "--es-index",
            &index,
        ])
        .args([
            "--incidents",
            incidents_file.to_str().unwrap(),
            "--set",
            "for=5m",
        ])
        .args(["--report", report.to_str().unwrap()])
        .output()
        .unwrap();
    let elapsed = timed.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in text.lines().filter(|l| {
        l.contains("evaluations (") || l.starts_with("Score") || l.contains("\"SLA miss\" ")
    }) {
        println!("{line}");
    }
    for line in String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains("queried"))
    {
        println!("{line}");
    }
    println!(
        "backtest of {days} days ({} evaluations per variant, 2 variants, scored, report {} KB): {:.2} s",
        windows,
        std::fs::metadata(&report).unwrap().len() / 1024,
        elapsed.as_secs_f64()
    );
    let _ = runtime.block_on(client.delete(format!("{es}/{index}")).send());
}
