//! Test data and its expected figures: visit and reduced records, windows of records with known
//! latencies, exact percentiles, and checks of a window document against them.

use super::*;

/// A valid visit record value.
pub fn visit_json(id: &str, event_time_ms: i64) -> Vec<u8> {
    let t = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(event_time_ms).unwrap();
    serde_json::json!({
        "visit_id": id,
        "event_time": t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "page": "/products/42",
        "user_id": "user-1"
    })
    .to_string()
    .into_bytes()
}

/// The window documents a monitor wrote to a JSON-lines file: the last line per id, and
/// the number of lines.
pub fn read_documents(path: &Path) -> (BTreeMap<String, serde_json::Value>, usize) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut docs = BTreeMap::new();
    let mut lines = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let doc: serde_json::Value = serde_json::from_str(line).unwrap();
        docs.insert(doc["id"].as_str().unwrap().to_string(), doc);
        lines += 1;
    }
    (docs, lines)
}

/// numpy's default (linear) percentile of unsorted values; `q` in 0..=1.
pub fn exact_percentile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let h = (v.len() - 1) as f64 * q;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    v[lo] + (h - lo as f64) * (v[hi] - v[lo])
}

/// Reduced-visit record value with the given processing start stamp.
pub fn reduced_json(id: &str, start_ms: i64) -> Vec<u8> {
    serde_json::json!({"visit": {"id": id, "event_time": start_ms / 1000}, "start_processing_time_ms": start_ms})
        .to_string()
        .into_bytes()
}

/// Window length used by the tests that craft their own records (ms).
pub const WINDOW: i64 = 2_000;

/// A record for partition `p` at event time `t` with latency `latency`.
pub fn record(p: i32, t: i64, latency: i64, id: &str) -> Outgoing {
    Outgoing {
        key: Some(id.into()),
        value: Some(reduced_json(id, t - latency)),
        partition: Some(p),
        timestamp_ms: Some(t),
        headers: Vec::new(),
    }
}

/// Records for `windows` windows from `base`, `per` per partition and window, in event-time
/// order within each partition; returns them with the latencies per window start.
pub fn windows_of_records(
    base: i64,
    windows: std::ops::Range<i64>,
    per: usize,
    seed: u64,
) -> (Vec<Outgoing>, BTreeMap<i64, Vec<f64>>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut records = Vec::new();
    let mut expected: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for w in windows {
        for p in 0..2 {
            for j in 0..per {
                let t = base + w * WINDOW + (j as i64 * WINDOW) / per as i64;
                let latency = if rng.random_bool(0.1) {
                    rng.random_range(1_000..5_000)
                } else {
                    rng.random_range(5..400)
                };
                records.push(record(p, t, latency, &format!("w{w}p{p}j{j}")));
                expected
                    .entry(base + w * WINDOW)
                    .or_default()
                    .push(latency as f64);
            }
        }
    }
    records.sort_by_key(|r| (r.partition, r.timestamp_ms));
    (records, expected)
}

pub fn assert_document(doc: &serde_json::Value, latencies: &[f64]) {
    assert_eq!(doc["count"], latencies.len() as u64, "{doc}");
    for (field, q) in [("p50", 0.5), ("p75", 0.75), ("p90", 0.9), ("p99", 0.99)] {
        let want = exact_percentile(latencies, q);
        let got = doc[field].as_f64().unwrap();
        assert!(
            (got - want).abs() < 1e-9,
            "{field}: monitor {got}, exact {want} in {doc}"
        );
    }
    let min = latencies.iter().copied().fold(f64::INFINITY, f64::min);
    let max = latencies.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mean = latencies.iter().sum::<f64>() / latencies.len() as f64;
    assert_eq!(doc["min"].as_f64().unwrap(), min);
    assert_eq!(doc["max"].as_f64().unwrap(), max);
    assert!((doc["mean"].as_f64().unwrap() - mean).abs() < 1e-6);
    let over = latencies.iter().filter(|&&l| l > 1_000.0).count() as u64;
    assert_eq!(doc["over_sla_count"], over);
    assert_eq!(doc["within_sla_count"], latencies.len() as u64 - over);
    assert_eq!(doc["exact"], true);
}

/// The "killed mid-window" scenario: six windows of records from `base` (two partitions, 30
/// per partition and window), split so that phase 1 ends half-way through window 3 — the
/// window open when a test kills the monitor — and phase 2 holds the rest. Returns (phase 1,
/// phase 2, latencies per window start).
pub fn mid_window_phases(
    base: i64,
    seed: u64,
) -> (Vec<Outgoing>, Vec<Outgoing>, BTreeMap<i64, Vec<f64>>) {
    let (all, expected) = windows_of_records(base, 0..6, 30, seed);
    let (phase1, phase2) = all
        .into_iter()
        .partition(|r| r.timestamp_ms.unwrap() < base + 3 * WINDOW + WINDOW / 2);
    (phase1, phase2, expected)
}

/// One record per partition at `at`: its partition's watermark passes every window before it,
/// so those windows close by their records, whatever the idle timeout (a test whose phases a
/// loaded machine may hold apart cannot rely on idleness).
pub fn terminators(partitions: i32, at: i64) -> Vec<Outgoing> {
    (0..partitions)
        .map(|p| record(p, at, 10, &format!("end-{p}")))
        .collect()
}
