//! The monitor writing to the real Elasticsearch: an explicit mapping; a conflicting mapping
//! stops the job with a message saying what to fix; a monitor killed mid-window and restarted
//! leaves exactly the documents of an uninterrupted run; an Elasticsearch outage during a run
//! loses nothing.

mod support;

use elasticsearch::http::Method;
use std::time::Duration;
use support::*;

fn args(s: &MonitorTopics, group: &str, es: &str, index: &str, idle: &str) -> MonitorArgs {
    MonitorArgs::new(s, group)
        .set("--es-url", es)
        .set("--es-index", index)
        .set("--idle-timeout", idle)
        .short_session()
        .set("--commit-interval", "200ms")
}

#[tokio::test(flavor = "multi_thread")]
async fn documents_follow_an_explicit_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let s = monitor_topics("mapping");
    create_topic(&s.reduced, 2).await;
    let base = (now_ms() - 60_000) / WINDOW * WINDOW;
    let (records, expected) = windows_of_records(base, 0..2, 20, 4);
    produce(&s.reduced, &records).await;
    let index = test_index("mapping");
    let job = args(&s, &unique("mapping_g"), &es_url(), &index, "1s").start(dir.path());
    let docs = wait_for_es_documents(&index, 2, Duration::from_secs(30)).await;
    assert!(job.terminate(Duration::from_secs(30)).success());
    for (start, latencies) in &expected {
        let doc = &docs[&format!("visits-synchronizer-{start}")];
        assert_document(doc, latencies);
    }
    let (status, mapping) = es_request(Method::Get, &format!("/{index}/_mapping"), None).await;
    assert_eq!(status, 200);
    let properties = &mapping[&index]["mappings"]["properties"];
    assert_eq!(mapping[&index]["mappings"]["dynamic"], "strict");
    for (field, kind) in [
        ("@timestamp", "date"),
        ("window_end", "date"),
        ("count", "long"),
        ("p50", "float"),
        ("p99", "float"),
        ("min", "float"),
        ("over_sla_count", "long"),
        ("within_sla_count", "long"),
        ("job", "keyword"),
    ] {
        assert_eq!(properties[field]["type"], kind, "{field} in {mapping}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_conflicting_mapping_stops_the_job_with_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let s = monitor_topics("conflict");
    create_topic(&s.reduced, 2).await;
    let index = test_index("conflict");
    let (status, body) = es_request(
        Method::Put,
        &format!("/{index}"),
        Some(serde_json::json!({"mappings": {"properties": {"count": {"type": "keyword"}}}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mut job = args(&s, &unique("conflict_g"), &es_url(), &index, "1s").start(dir.path());
    let status = job.wait(Duration::from_secs(60));
    assert!(
        !status.success(),
        "the monitor must stop on a mapping conflict"
    );
    let log = job.log_text();
    assert!(
        log.contains(&index) && log.contains("conflicting mapping"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_mid_window_the_restarted_monitor_leaves_the_documents_of_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let s = monitor_topics("esrestart");
    create_topic(&s.reduced, 2).await;
    let base = (now_ms() - 300_000) / WINDOW * WINDOW;
    // Phase 1: windows 0-2, the first half of window 3, and a late record after them.
    let (mut phase1, phase2, expected) = mid_window_phases(base, 5);
    phase1.push(record(1, base + WINDOW + 9, 70, "late-one"));
    produce(&s.reduced, &phase1).await;

    let interrupted = test_index("interrupted");
    let group = unique("esrestart_g");
    let first = args(&s, &group, &es_url(), &interrupted, "60s").start(dir.path());
    wait_for_es_documents(&interrupted, 3, Duration::from_secs(30)).await;
    // Killed once window 3's first half is in its memory and a checkpoint past windows 0-2
    // is committed.
    wait_until_checkpointed(&first, &s, phase1.len());
    first.kill();
    assert_eq!(
        es_documents(&interrupted).await.len(),
        3,
        "window 3 must still be open when killed"
    );

    produce(&s.reduced, &phase2).await;
    // The restarted instance joins once the killed one's session expired (a run under load
    // joined before and tansu gave it nothing).
    wait_out_killed_session();
    let second = args(&s, &group, &es_url(), &interrupted, "1s").start(dir.path());
    let after_restart = wait_for_es_documents(&interrupted, 6, Duration::from_secs(60)).await;

    let reference = test_index("reference");
    let third = args(&s, &unique("reference_g"), &es_url(), &reference, "1s").start(dir.path());
    let uninterrupted = wait_for_es_documents(&reference, 6, Duration::from_secs(60)).await;
    assert!(second.terminate(Duration::from_secs(30)).success());
    assert!(third.terminate(Duration::from_secs(30)).success());
    assert_eq!(es_documents(&interrupted).await, after_restart);
    assert_eq!(
        after_restart, uninterrupted,
        "none missing, none duplicated, none different"
    );
    for (start, latencies) in &expected {
        assert_document(
            &uninterrupted[&format!("visits-synchronizer-{start}")],
            latencies,
        );
    }
}

// Multi-threaded: the proxy's tasks must keep running while the test thread waits.
#[tokio::test(flavor = "multi_thread")]
async fn an_elasticsearch_outage_loses_no_window() {
    let dir = tempfile::tempdir().unwrap();
    let s = monitor_topics("outage");
    create_topic(&s.reduced, 2).await;
    let base = (now_ms() - 200_000) / WINDOW * WINDOW;
    let (all, expected) = windows_of_records(base, 0..6, 25, 6);
    let (phase1, phase2): (Vec<Outgoing>, Vec<Outgoing>) = all
        .into_iter()
        .partition(|r| r.timestamp_ms.unwrap() < base + 2 * WINDOW + WINDOW / 2);
    let upstream = es_url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let proxy = Proxy::start(&upstream).await;
    let via_proxy = format!("http://{}", proxy.addr);
    let index = test_index("outage");
    produce(&s.reduced, &phase1).await;
    // Windows close by their records, never by idleness: the machine may take any time
    // between the phases (with a 2 s idle timeout, a loaded run closed window 2 by idleness
    // and phase 2 went to the dead letters as late).
    let job = args(&s, &unique("outage_g"), &via_proxy, &index, "10m")
        .set("--es-timeout", "5s")
        .start(dir.path());
    wait_for_es_documents(&index, 2, Duration::from_secs(30)).await;

    proxy.set_up(false);
    produce(&s.reduced, &phase2).await;
    produce(&s.reduced, &terminators(2, base + 60 * WINDOW)).await;
    // The sink has tried (and failed) to write the later windows more than once.
    wait_for(
        "the sink to retry during the outage",
        Duration::from_secs(60),
        || metric_sum(&job, "sla_monitor_sink_retries_total", &[]).unwrap_or(0.0) >= 2.0,
    );
    assert_eq!(
        es_documents(&index).await.len(),
        2,
        "only the windows written before the outage are there"
    );
    proxy.set_up(true);

    let docs = wait_for_es_documents(&index, 6, Duration::from_secs(60)).await;
    assert!(job.terminate(Duration::from_secs(30)).success());
    assert_eq!(docs.len(), 6);
    for (start, latencies) in &expected {
        assert_document(&docs[&format!("visits-synchronizer-{start}")], latencies);
    }
}
