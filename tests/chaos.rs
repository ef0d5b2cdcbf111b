//! One chaos run on real servers, bounded in time (about 3 minutes): while generator →
//! synchronizer → monitor → Elasticsearch run, the monitor is SIGKILLed at five random moments
//! (restarted 7 s later each time), the broker is killed for 30 s and Elasticsearch cut off for
//! 60 s. At the end the synchronizer has lost no visit (duplicates are counted and reported)
//! and every window document equals what an uninterrupted monitor computes from the same
//! records.
//!
//! The broker is a private tansu (same binary as the local stack) and Elasticsearch is reached
//! through a proxy the test cuts, so the shared servers keep serving other tests. The kill
//! moments come from a seed printed at the start; `SLA_CHAOS_SEED=<seed>` replays a run.

mod support;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::time::Duration;
use support::private_broker::{free_port, start_tansu};
use support::*;
use tokio::time::{sleep_until, Instant};

/// How long the generator produces.
const RUN: Duration = Duration::from_secs(90);
const MONITOR_KILLS: usize = 5;
const BROKER_DOWN: (Duration, Duration) = (Duration::from_secs(15), Duration::from_secs(30));
const ELASTICSEARCH_DOWN: (Duration, Duration) = (Duration::from_secs(50), Duration::from_secs(60));

/// A disruption at a moment of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    KillMonitor,
    StopBroker,
    StartBroker,
    CutElasticsearch,
    RestoreElasticsearch,
}

/// The run's disruptions in time order: the outages at fixed moments, the monitor kills at
/// random moments at least 12 s apart (room for the restart delay below).
fn schedule(seed: u64) -> Vec<(Duration, Event)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut kills: Vec<u64> = Vec::new();
    while kills.len() < MONITOR_KILLS {
        let at = rng.random_range(4_000..RUN.as_millis() as u64 - 4_000);
        if kills.iter().all(|k| k.abs_diff(at) >= 12_000) {
            kills.push(at);
        }
    }
    let mut events: Vec<(Duration, Event)> = kills
        .into_iter()
        .map(|ms| (Duration::from_millis(ms), Event::KillMonitor))
        .collect();
    events.extend([
        (BROKER_DOWN.0, Event::StopBroker),
        (BROKER_DOWN.0 + BROKER_DOWN.1, Event::StartBroker),
        (ELASTICSEARCH_DOWN.0, Event::CutElasticsearch),
        (
            ELASTICSEARCH_DOWN.0 + ELASTICSEARCH_DOWN.1,
            Event::RestoreElasticsearch,
        ),
    ]);
    events.sort();
    events
}

/// A monitor of the chaos run: the tests' settings, a short session (a killed member's
/// partitions move once it expires) and the eager assignor, as tansu 0.6 does not finish
/// cooperative rebalances after a member's session expired (Apache Kafka does;
/// tests/scale_out.rs covers both).
fn monitor_args(topics: &MonitorTopics, group: &str) -> MonitorArgs {
    MonitorArgs::new(topics, group)
        .set("--sla", "5s")
        .short_session()
        .property("partition.assignment.strategy=roundrobin")
}

fn start(binary: &str, args: &[String], dir: &std::path::Path) -> Job {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Job::start(binary, &args, dir)
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

fn visit_ids(
    records: &[Consumed],
    field: impl Fn(&serde_json::Value) -> &serde_json::Value,
) -> Vec<String> {
    records
        .iter()
        .map(|r| field(&r.json()).as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chaos_run_loses_nothing_and_writes_the_uninterrupted_windows() {
    let seed = std::env::var("SLA_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_ms() as u64);
    eprintln!("[chaos] seed {seed} (SLA_CHAOS_SEED={seed} replays this run)");
    let events = schedule(seed);
    eprintln!("[chaos] schedule {events:?}");

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let advertised = format!("127.0.0.1:{port}");
    let mut broker = Some(start_tansu(dir.path(), port, &advertised, false));
    // Every helper and job of this test process talks to the private broker.
    std::env::set_var("SLA_TEST_BROKERS", &advertised);
    let es_upstream = es_url().trim_start_matches("http://").to_string();
    let es_proxy = Proxy::start(&es_upstream).await;
    let index = test_index("chaos");

    let (visits, reduced_topic) = (unique("chaos_visits"), unique("chaos_reduced"));
    create_topic(&visits, 3).await;
    let topics = MonitorTopics {
        reduced: reduced_topic.clone(),
        dlq: unique("chaos_rdlq"),
        checkpoints: unique("chaos_ckpt"),
        shuffle: unique("chaos_shuffle"),
    };
    create_topic(&topics.reduced, 3).await;
    let es = format!("http://{}", es_proxy.addr);
    let live_args = monitor_args(&topics, &unique("chaos_mg"))
        .set("--es-url", &es)
        .set("--es-index", &index);
    let mut monitor = live_args.start(dir.path());
    #[rustfmt::skip]
    let synchronizer = start(env!("CARGO_BIN_EXE_synchronizer"), &strings(&[
        "--visits-topic", &visits, "--reduced-topic", &topics.reduced,
        "--dead-letter-topic", &unique("chaos_vdlq"), "--group", &unique("chaos_sg"),
    ]), dir.path());
    let run_seconds = format!("{}s", RUN.as_secs());
    let seed_arg = (seed % 1_000_000).to_string();
    #[rustfmt::skip]
    let mut generator = start(env!("CARGO_BIN_EXE_generator"), &strings(&[
        "--visits-topic", &visits, "--rate", "200", "--duration", &run_seconds, "--seed", &seed_arg,
    ]), dir.path());

    let began = Instant::now();
    let mut kills = 0;
    for (at, event) in events {
        sleep_until(began + at).await;
        match event {
            Event::KillMonitor => {
                assert!(
                    monitor.is_running(),
                    "the monitor exited by itself:\n{}",
                    monitor.log_text()
                );
                // Not while it is still joining its groups (tansu 0.6 never expires such a
                // member; Apache Kafka does): once it has joined (it starts consuming after
                // preparing Elasticsearch) and while the broker is up, wait until it owns its
                // partitions.
                if broker.is_some() && monitor.log_text().contains("monitor started") {
                    wait_until_settled(&monitor, &topics, 3);
                }
                monitor.kill();
                kills += 1;
                // Restarted once the killed member's sessions have expired (`SESSION_EXPIRY`).
                // What the run needs next is waited on: before the next kill, the restarted
                // instance holds its partitions (`wait_until_settled` above).
                wait_out_killed_session();
                monitor = live_args.start(dir.path());
            }
            Event::StopBroker => {
                let mut b = broker.take().unwrap();
                b.kill().unwrap();
                b.wait().unwrap();
            }
            Event::StartBroker => {
                broker = Some(start_tansu(dir.path(), port, &advertised, false));
            }
            Event::CutElasticsearch => es_proxy.set_up(false),
            Event::RestoreElasticsearch => es_proxy.set_up(true),
        }
        eprintln!("[chaos] {:>5.1} s {event:?}", began.elapsed().as_secs_f64());
    }

    // The synchronizer lost nothing: every visit is in reduced_visits, once or more.
    let valid = generator.generated_valid(Duration::from_secs(120));
    let visit_records = consume_to_end(&visits);
    assert_eq!(visit_records.len() as u64, valid, "the generator's count");
    let visits_end = visit_records.len() as f64;
    let visits_label = format!("topic=\"{visits}\"");
    wait_for(
        "the synchronizer to commit every visit",
        Duration::from_secs(120),
        || metric_sum(&synchronizer, "sla_committed_offset", &[&visits_label]) == Some(visits_end),
    );
    let reduced = consume_to_end(&topics.reduced);
    let reduced_ids = visit_ids(&reduced, |v| &v["visit"]["id"]);
    let distinct: BTreeSet<&String> = reduced_ids.iter().collect();
    let lost: Vec<String> = visit_ids(&visit_records, |v| &v["visit_id"])
        .into_iter()
        .filter(|id| !distinct.contains(id))
        .collect();
    assert!(
        lost.is_empty(),
        "the synchronizer lost {} visits: {lost:?}",
        lost.len()
    );
    let duplicates = reduced_ids.len() - distinct.len();

    // The reference: one monitor, never disturbed, over the same records.
    let windows: BTreeSet<i64> = reduced
        .iter()
        .map(|r| r.timestamp_ms.unwrap().div_euclid(WINDOW) * WINDOW)
        .collect();
    let output = dir.path().join("reference.jsonl");
    let reference_topics = MonitorTopics {
        reduced: topics.reduced.clone(),
        dlq: unique("chaos_ref_rdlq"),
        checkpoints: unique("chaos_ref_ckpt"),
        shuffle: unique("chaos_ref_shuffle"),
    };
    let reference = monitor_args(&reference_topics, &unique("chaos_ref_mg"))
        .json_lines(&output)
        .start(dir.path());
    wait_for("the reference windows", Duration::from_secs(60), || {
        read_documents(&output).0.len() >= windows.len()
    });
    let live = wait_for_es_documents(&index, windows.len(), Duration::from_secs(120)).await;
    assert!(reference.terminate(Duration::from_secs(30)).success());
    assert!(monitor.terminate(Duration::from_secs(30)).success());
    assert!(synchronizer.terminate(Duration::from_secs(30)).success());
    let (mut expected, lines) = read_documents(&output);
    // A JSON line carries its document id, which Elasticsearch keeps as `_id`.
    for doc in expected.values_mut() {
        doc.as_object_mut().unwrap().remove("id");
    }
    assert_eq!(lines, windows.len(), "the reference wrote each window once");

    let counted: u64 = live.values().map(|d| d["count"].as_u64().unwrap()).sum();
    assert_eq!(
        counted as usize,
        reduced.len(),
        "every reduced record counted once"
    );
    let differing: Vec<&String> = expected
        .keys()
        .filter(|id| live.get(*id) != expected.get(*id))
        .collect();
    assert!(
        differing.is_empty() && live.len() == expected.len(),
        "{} of {} windows differ from the uninterrupted run (live has {}): {differing:?}; first: \
         live {:?} vs uninterrupted {:?}",
        differing.len(),
        expected.len(),
        live.len(),
        differing.first().map(|id| live.get(*id)),
        differing.first().map(|id| &expected[*id]),
    );
    let exact = live.values().filter(|d| d["exact"] == true).count();
    eprintln!(
        "[chaos] seed {seed}: {valid} visits, {} reduced records ({duplicates} duplicates), \
         {} windows ({exact} exact) identical to the uninterrupted run after {kills} monitor \
         kills, a {} s broker outage and a {} s Elasticsearch outage; {:.0} s in all",
        reduced.len(),
        live.len(),
        BROKER_DOWN.1.as_secs(),
        ELASTICSEARCH_DOWN.1.as_secs(),
        began.elapsed().as_secs_f64()
    );
    if let Some(mut b) = broker {
        let _ = b.kill();
        let _ = b.wait();
    }
}
