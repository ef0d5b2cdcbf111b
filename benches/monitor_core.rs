//! Throughput and memory of the monitor's core (watermarks + windows + digests), without I/O.
//!
//! `cargo bench --bench monitor_core` prints, for one window holding N records over two
//! partitions, the ingest rate and the bytes the open window holds (measured by a counting
//! allocator). Memory must stay flat as N grows past the exact threshold: state is
//! O(open windows), not O(records).

use sla_monitor::completeness::arrival_union::ArrivalUnion;
use sla_monitor::completeness::arrivals::SourceArrivals;
use sla_monitor::dimension::selection::PartitionSplit;
use sla_monitor::dimension::value_table::MIN_CAPACITY;
use sla_monitor::distribution::digest::DigestConfig;
use sla_monitor::event_time::merge::merge_splits;
use sla_monitor::event_time::watermark::WatermarkConfig;
use sla_monitor::event_time::window::{ValueKey, WindowConfig};
use sla_monitor::event_time::EventTimeOperator;
use sla_monitor::record::json_pointer::{find_each, JsonPointer, Scalar};
use sla_monitor::record::lineage::Lineage;
use sla_monitor::record::reduced_visit::ReducedVisit;
use sla_monitor::record::stamp::{NoHeaders, Stamp, TimeFormat};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A cheap deterministic pseudo-random latency (xorshift), log-normal-ish in shape.
fn latency(state: &mut u64) -> i64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    let u = (*state >> 11) as f64 / (1u64 << 53) as f64;
    (200.0 * (1.5 * (u * 6.0 - 3.0)).exp()) as i64
}

/// Payloads read per second by `read`, five times over (the sum of what it returns keeps the
/// work from being optimised away).
fn rate_over(payloads: &[Vec<u8>], read: &dyn Fn(&[u8]) -> i64) -> f64 {
    let start = Instant::now();
    let mut sum = 0i64;
    for _ in 0..5 {
        for p in payloads {
            sum = sum.wrapping_add(read(p));
        }
    }
    assert_ne!(sum, 0);
    (5 * payloads.len()) as f64 / start.elapsed().as_secs_f64()
}

/// Decoding a reduced visit as the monitor did (a full JSON tree, the id copied) and as it
/// does (the stamp only, in one pass), on the same payloads.
fn decoding() {
    let payloads: Vec<Vec<u8>> = (0..200_000u64)
        .map(|i| {
            format!(
                r#"{{"visit":{{"id":"v-{i}","event_time":{}}},"start_processing_time_ms":{}}}"#,
                1_795_000_000 + i,
                1_795_000_000_000 + i * 7
            )
            .into_bytes()
        })
        .collect();
    let rate = |decode: &dyn Fn(&[u8]) -> i64| rate_over(&payloads, decode);
    let full = rate(&|p| {
        ReducedVisit::decode(Some(p))
            .unwrap()
            .start_processing_time_ms
    });
    let demo = Stamp::demo_start();
    let stamp = rate(&|p| demo.read_ms("start", Some(p), &NoHeaders).unwrap());
    // Another pipeline's shape: the stamp nested, read by the general JSON-pointer reader.
    let nested: Vec<Vec<u8>> = payloads
        .iter()
        .map(|p| {
            let v: serde_json::Value = serde_json::from_slice(p).unwrap();
            serde_json::json!({"order": {"id": v["visit"]["id"], "lines": [1, 2, 3]},
                "meta": {"processed_at": v["start_processing_time_ms"]}})
            .to_string()
            .into_bytes()
        })
        .collect();
    let field = Stamp {
        source: "field:/meta/processed_at".parse().unwrap(),
        format: TimeFormat::UnixMs,
    };
    let pointer = rate_over(&nested, &|p| {
        field.read_ms("start", Some(p), &NoHeaders).unwrap()
    });
    // The demo's records with a tenant member: the stamp and the dimension in one pass (the
    // plain scan), and the same pass through serde's whole-tree parse for comparison.
    let tenants: Vec<Vec<u8>> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut p = p.clone();
            p.pop();
            p.extend_from_slice(format!(r#","tenant":"t{}"}}"#, i % 10).as_bytes());
            p
        })
        .collect();
    let pointers: Vec<JsonPointer> = ["/tenant", "/start_processing_time_ms"]
        .iter()
        .map(|p| JsonPointer::parse(p).unwrap())
        .collect();
    let one_pass = |p: &[u8]| {
        let mut found = [None, None];
        find_each(&pointers, p, &mut found).unwrap();
        match (&found[0], &found[1]) {
            (Some(Scalar::Text(t)), Some(Scalar::Integer(ms))) => ms + t.len() as i64,
            other => panic!("{other:?}"),
        }
    };
    let tree = |p: &[u8]| {
        let v: serde_json::Value = serde_json::from_slice(p).unwrap();
        v["start_processing_time_ms"].as_i64().unwrap() + v["tenant"].as_str().unwrap().len() as i64
    };
    let (one_pass, tree) = (rate_over(&tenants, &one_pass), rate_over(&tenants, &tree));
    println!(
        "decoding reduced visits: full tree {full:.0}/s, stamp only {stamp:.0}/s ({:.1}×); \
         a nested field of another shape (field:/meta/processed_at) {pointer:.0}/s; \
         the stamp and a tenant member in one pass {one_pass:.0}/s (a whole tree: {tree:.0}/s)\n",
        stamp / full
    );
}

/// Completeness bookkeeping per record — read the lineage header, record the arrival — for
/// `n` records of 8 source partitions: in order (what a stage that keeps each partition's
/// order produces) or reordered within blocks of 64 (a permutation of each block); a tenth of them late, in episodes (a
/// delay affects every record for a while) or scattered; with the bytes the arrivals hold.
fn completeness() {
    let n: i64 = 5_000_000;
    let headers: Vec<Vec<u8>> = (0..100_000i64)
        .map(|i| format!("visits:{}:{}:{}", i % 8, i / 8, 1_795_000_000_000 + i).into_bytes())
        .collect();
    let rate = |reorder: bool, scattered: bool| {
        let before = LIVE.load(Ordering::Relaxed);
        let mut arrivals: Vec<SourceArrivals> = vec![SourceArrivals::default(); 8];
        let start = Instant::now();
        for i in 0..n {
            // The header's bytes stand for the record's (parsed fresh each time).
            let header = &headers[(i % 100_000) as usize];
            let lineage = Lineage::parse(header).unwrap();
            let position = if reorder {
                (i & !63) | ((i * 37) & 63)
            } else {
                i
            };
            let offset = position / 8;
            let timely = if scattered {
                lineage.timestamp_ms.unwrap() % 10 != 0
            } else {
                (i / 100_000) % 10 != 0
            };
            arrivals[lineage.partition as usize].record(offset, timely);
        }
        let elapsed = start.elapsed().as_secs_f64();
        let held = LIVE.load(Ordering::Relaxed) - before;
        let ranges: usize = arrivals
            .iter()
            .map(|a| a.within_sla.range_count() + a.late.range_count())
            .sum();
        (n as f64 / elapsed, held, ranges)
    };
    for (name, reorder, scattered) in [
        ("in order, late in episodes", false, false),
        ("reordered in blocks of 64, late in episodes", true, false),
        ("in order, late scattered", false, true),
    ] {
        let (per_second, held, ranges) = rate(reorder, scattered);
        println!(
            "completeness bookkeeping, {n} records of 8 source partitions, {name}: \
             {per_second:.0} records/s ({:.0} ns each), {ranges} ranges, {held} bytes held",
            1e9 / per_second
        );
    }
    println!();
}

/// What the completeness ledger holds for one output window's arrivals from a stage that
/// re-keys records (each of 1M source records of 8 source partitions goes to one of 16
/// output partitions by hash): the 16 streams apart, against their union as the ledger keeps
/// it; with every record arrived, with 1 % lost and a tenth late (scattered), and with every
/// other record lost (the worst case for ranges).
fn ledger_union() {
    let n: i64 = 1_000_000;
    for (name, lost, late) in [
        ("every record arrived", 0u64, 0u64),
        ("1 % lost, a tenth late, scattered", 100, 10),
        ("every other record lost", 2, 0),
    ] {
        let mut streams: Vec<Vec<SourceArrivals>> = vec![vec![SourceArrivals::default(); 8]; 16];
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        for i in 0..n {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let dropped = match lost {
                0 => false,
                2 => (i / 8) % 2 == 1,
                per => rng % per == 0,
            };
            if dropped {
                continue;
            }
            let timely = late == 0 || (rng >> 20) % late != 0;
            let output = ((rng >> 40) % 16) as usize;
            streams[output][(i % 8) as usize].record(i / 8, timely);
        }
        let apart: usize = streams
            .iter()
            .flatten()
            .map(|s| (s.within_sla.range_count() + s.late.range_count()) * 16)
            .sum();
        let before = LIVE.load(Ordering::Relaxed);
        let start = Instant::now();
        let unions: Vec<ArrivalUnion> = (0..8)
            .map(|p| {
                let mut union = ArrivalUnion::new();
                streams.iter().for_each(|s| union.add(&s[p]));
                union
            })
            .collect();
        let elapsed = start.elapsed().as_secs_f64();
        let held = LIVE.load(Ordering::Relaxed) - before;
        let bytes: usize = unions.iter().map(ArrivalUnion::bytes).sum();
        println!(
            "ledger, one output window of a re-keying stage, {n} records, {name}: \
             streams apart {apart} bytes of ranges; merged {bytes} bytes ({held} allocated), \
             merged in {:.0} ms",
            elapsed * 1e3
        );
        drop(unions);
    }
    println!();
}

/// Windows split by dimension value, through the event-time operator (1M records of 2
/// partitions in one window, then closed and merged): not split, split among 10 values, and
/// split with a new value on every record (a hostile stream); records/s, the bytes the open
/// window holds (counting allocator) and the values with figures of their own.
fn dimension_split() {
    let n: u64 = 1_000_000;
    let keys: Vec<String> = (0..n).map(|i| format!("tenant-{i}")).collect();
    let config = WindowConfig {
        size_ms: 60_000,
        allowed_lateness_ms: 0,
        sla_ms: 5_000,
        quantiles: vec![0.5, 0.75, 0.9, 0.99],
        digest: DigestConfig::default(),
    };
    for (name, distinct) in [
        ("not split", 0u64),
        ("10 values", 10),
        ("a new value on every record", n),
    ] {
        let before = LIVE.load(Ordering::Relaxed);
        let mut operator = EventTimeOperator::new(
            config.clone(),
            WatermarkConfig {
                max_out_of_orderness_ms: 5_000,
                idle_timeout_ms: 30_000,
                producer_hold_ms: 0,
                assume_broker_stamped: false,
            },
        );
        if distinct > 0 {
            operator = operator.split_by_value(MIN_CAPACITY);
        }
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let start = Instant::now();
        for i in 0..n {
            let key = (distinct > 0).then(|| ValueKey {
                key: keys[(i % distinct) as usize].as_str(),
                sla_ms: 5_000,
            });
            let event_time = (i * 59_999 / n) as i64;
            operator.on_keyed_record(
                (i % 2) as i32,
                (i / 2) as i64,
                event_time,
                latency(&mut rng),
                key,
                0,
            );
        }
        let ingest = start.elapsed().as_secs_f64();
        let held = LIVE.load(Ordering::Relaxed) - before;
        let closed = operator.close_all();
        let splits: BTreeMap<i32, PartitionSplit> = closed
            .iter()
            .filter_map(|(p, c)| c.split.clone().map(|s| (*p, s)))
            .collect();
        let merge = Instant::now();
        let values = merge_splits(&config, &splits, 100);
        let merged_in = merge.elapsed().as_secs_f64();
        println!(
            "window split by value, {n} records, {name}: {:.0} records/s ({:.0} ns each), \
             {held} bytes held open, {} value documents, merged in {:.0} ms",
            n as f64 / ingest,
            ingest * 1e9 / n as f64,
            values.len(),
            merged_in * 1e3
        );
    }
    println!();
}

fn main() {
    decoding();
    completeness();
    ledger_union();
    dimension_split();
    let window_ms = 60_000;
    println!(
        "{:>10} {:>14} {:>16} {:>12}",
        "records", "records/s", "window bytes", "p99 (ms)"
    );
    for n in [1_000u64, 10_000, 100_000, 1_000_000, 5_000_000] {
        let config = WindowConfig {
            size_ms: window_ms,
            allowed_lateness_ms: 0,
            sla_ms: 5_000,
            quantiles: vec![0.5, 0.75, 0.9, 0.99],
            digest: DigestConfig::default(),
        };
        let before = LIVE.load(Ordering::Relaxed);
        let mut operator = EventTimeOperator::new(
            config,
            WatermarkConfig {
                max_out_of_orderness_ms: 5_000,
                idle_timeout_ms: 30_000,
                producer_hold_ms: 0,
                assume_broker_stamped: false,
            },
        );
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let start = Instant::now();
        for i in 0..n {
            let partition = (i % 2) as i32;
            let event_time = (i * (window_ms as u64 - 1) / n) as i64;
            operator.on_record(partition, (i / 2) as i64, event_time, latency(&mut rng), 0);
        }
        let held = LIVE.load(Ordering::Relaxed) - before;
        let results = operator.flush();
        let elapsed = start.elapsed().as_secs_f64();
        let p99 = results[0].stats.quantiles[3].1;
        assert_eq!(results[0].stats.count, n);
        println!(
            "{n:>10} {:>14.0} {held:>16} {p99:>12.1}",
            n as f64 / elapsed
        );
    }
}
