//! The synchronizer against the real broker: reduced records have the documented shape and
//! values, keep per-partition order, carry a produce-time timestamp (never the input's), and
//! undecodable input lands unchanged in the dead-letter topic with the reason in headers.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_synchronizer");

struct Topics {
    visits: String,
    reduced: String,
    dlq: String,
    group: String,
}

fn topics(name: &str) -> Topics {
    Topics {
        visits: unique(&format!("{name}_visits")),
        reduced: unique(&format!("{name}_reduced")),
        dlq: unique(&format!("{name}_dlq")),
        group: unique(&format!("{name}_group")),
    }
}

fn start(t: &Topics, extra: &[&str], dir: &std::path::Path) -> Job {
    let mut args = vec![
        "--visits-topic",
        &t.visits,
        "--reduced-topic",
        &t.reduced,
        "--dead-letter-topic",
        &t.dlq,
        "--group",
        &t.group,
    ];
    args.extend_from_slice(extra);
    Job::start(BIN, &args, dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn reduces_visits_in_order_with_produce_time_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let t = topics("reduce");
    create_topic(&t.visits, 2).await;
    // Input records carry an old CreateTime: copying it to the output would be a bug.
    let old = now_ms() - 3_600_000;
    let records: Vec<Outgoing> = (0..300)
        .map(|i| Outgoing {
            key: Some(format!("visit-{i}")),
            value: Some(visit_json(
                &format!("visit-{i}"),
                1_795_000_000_000 + i * 1_000 + 250,
            )),
            partition: Some((i % 2) as i32),
            timestamp_ms: Some(old),
            headers: Vec::new(),
        })
        .collect();
    produce(&t.visits, &records).await;
    let before = now_ms();
    let job = start(&t, &[], dir.path());
    let out = consume(
        &t.reduced,
        300,
        Duration::from_secs(60),
        Duration::from_secs(1),
    );
    let after = now_ms();
    assert!(job.terminate(Duration::from_secs(30)).success());
    assert_eq!(out.len(), 300, "every visit reduced exactly once");
    for r in &out {
        let json = r.json();
        let id = json["visit"]["id"].as_str().unwrap().to_string();
        let i: i64 = id.strip_prefix("visit-").unwrap().parse().unwrap();
        assert_eq!(r.key.as_deref(), Some(id.as_str()), "keyed by visit id");
        assert_eq!(
            json["visit"]["event_time"],
            1_795_000_000 + i,
            "event_time in whole seconds"
        );
        let start = json["start_processing_time_ms"].as_i64().unwrap();
        assert!(
            start >= before && start <= after,
            "stamp {start} outside the run [{before}, {after}]"
        );
        let ts = r.timestamp_ms.unwrap();
        assert!(
            ts >= start,
            "output timestamp {ts} precedes the processing stamp {start}: copied from input?"
        );
        assert_eq!(
            json.as_object().unwrap().len(),
            2,
            "only visit and start_processing_time_ms: {json}"
        );
        // Lineage: where it came from, with the source record's own timestamp.
        assert_eq!(
            r.headers["lineage"],
            format!("{}:{}:{}:{old}", t.visits, i % 2, i / 2),
            "lineage of visit-{i}"
        );
        assert_eq!(
            r.headers.len(),
            1,
            "only the lineage header: {:?}",
            r.headers
        );
    }
    // The same key lands in the same partition of both topics; within it, input order is kept.
    let by_key: HashMap<String, i32> = out
        .iter()
        .map(|r| (r.key.clone().unwrap(), r.partition))
        .collect();
    assert_eq!(by_key.len(), 300);
    let mut per_output_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for r in &out {
        let i: i64 = r
            .key
            .as_ref()
            .unwrap()
            .strip_prefix("visit-")
            .unwrap()
            .parse()
            .unwrap();
        per_output_partition.entry(r.partition).or_default().push(i);
    }
    for (partition, ids) in per_output_partition {
        for source in [0, 1] {
            let from_source: Vec<i64> = ids.iter().copied().filter(|i| i % 2 == source).collect();
            let mut sorted = from_source.clone();
            sorted.sort();
            assert_eq!(
                from_source, sorted,
                "output partition {partition} reordered input partition {source}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn undecodable_visits_go_to_the_dead_letter_topic_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let t = topics("dlq");
    create_topic(&t.visits, 1).await;
    let bad: Vec<(&str, &[u8])> = vec![
        ("invalid_json", b"{\"visit_id\": \"x\", "),
        ("not_an_object", b"[1,2,3]"),
        ("missing_field", b"{\"visit_id\":\"a\"}"),
        (
            "wrong_type",
            b"{\"visit_id\":{\"x\":1},\"event_time\":\"2026-11-21T10:00:00Z\"}",
        ),
        (
            "invalid_event_time",
            b"{\"visit_id\":\"a\",\"event_time\":\"tomorrow\"}",
        ),
    ];
    let mut records = vec![Outgoing {
        key: Some("good-0".into()),
        value: Some(visit_json("good-0", now_ms())),
        ..Default::default()
    }];
    for (_, value) in &bad {
        records.push(Outgoing {
            key: Some("bad".into()),
            value: Some(value.to_vec()),
            ..Default::default()
        });
    }
    records.push(Outgoing {
        key: Some("tombstone".into()),
        value: None,
        ..Default::default()
    });
    records.push(Outgoing {
        key: Some("good-1".into()),
        value: Some(visit_json("good-1", now_ms())),
        ..Default::default()
    });
    let produced_at = now_ms();
    produce(&t.visits, &records).await;
    let job = start(&t, &[], dir.path());
    let dead = consume(
        &t.dlq,
        bad.len() + 1,
        Duration::from_secs(60),
        Duration::from_millis(500),
    );
    let good = consume(
        &t.reduced,
        2,
        Duration::from_secs(30),
        Duration::from_millis(500),
    );
    assert!(job.terminate(Duration::from_secs(30)).success());
    assert_eq!(good.len(), 2, "valid records around bad ones still flow");
    assert_eq!(dead.len(), bad.len() + 1);
    for (i, (reason, value)) in bad.iter().enumerate() {
        let d = &dead[i];
        assert_eq!(d.headers["dlq.reason"], *reason);
        assert_eq!(d.value.as_deref(), Some(*value), "kept unchanged");
        assert_eq!(d.headers["dlq.source.topic"], t.visits);
        assert_eq!(d.headers["dlq.source.partition"], "0");
        assert_eq!(d.headers["dlq.source.offset"], (i + 1).to_string());
        // When it entered the visits topic (its producer's timestamp).
        let entered: i64 = d.headers["dlq.source.timestamp"].parse().unwrap();
        assert!(
            (produced_at - 1_000..=now_ms()).contains(&entered),
            "{entered}"
        );
        assert!(!d.headers["dlq.detail"].is_empty());
    }
    assert_eq!(dead[bad.len()].headers["dlq.reason"], "empty_payload");
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_records_are_dead_lettered_cut_to_fit_and_the_job_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let t = topics("large");
    create_topic(&t.visits, 1).await;
    const MAX: usize = 20_000;
    // Its reduced record (the id as key and inside the value) is over the producer's limit.
    let huge_id = "v".repeat(12_000);
    // Undecodable and, with the dead-letter headers, over the limit too: the detail quotes
    // the bad value.
    let bad_time = "9".repeat(25_000);
    let too_big_to_keep = format!("{{\"visit_id\":\"x\",\"event_time\":\"{bad_time}\"}}");
    let records = vec![
        Outgoing {
            key: Some("good-0".into()),
            value: Some(visit_json("good-0", now_ms())),
            ..Default::default()
        },
        Outgoing {
            key: Some("huge".into()),
            value: Some(visit_json(&huge_id, now_ms())),
            ..Default::default()
        },
        Outgoing {
            key: Some("bad".into()),
            value: Some(too_big_to_keep.clone().into_bytes()),
            ..Default::default()
        },
        Outgoing {
            key: Some("good-1".into()),
            value: Some(visit_json("good-1", now_ms())),
            ..Default::default()
        },
    ];
    produce(&t.visits, &records).await;
    let max = MAX.to_string();
    let property = format!("message.max.bytes={max}");
    let job = start(&t, &["-X", &property], dir.path());
    let mut dead = consume(
        &t.dlq,
        2,
        Duration::from_secs(60),
        Duration::from_millis(500),
    );
    // (The dead-letter topic's partitions are read one after the other.)
    dead.sort_by_key(|d| d.headers["dlq.source.offset"].clone());
    let good = consume(
        &t.reduced,
        2,
        Duration::from_secs(30),
        Duration::from_millis(500),
    );
    assert!(
        job.terminate(Duration::from_secs(30)).success(),
        "the job survived both records and stops cleanly"
    );
    let mut keys: Vec<_> = good.iter().map(|r| r.key.clone().unwrap()).collect();
    keys.sort();
    assert_eq!(keys, ["good-0", "good-1"]);
    assert_eq!(dead.len(), 2);

    let huge = &dead[0];
    assert_eq!(huge.headers["dlq.reason"], "too_large");
    assert_eq!(huge.headers["dlq.source.offset"], "1");
    assert_eq!(
        huge.value.as_deref(),
        records[1].value.as_deref(),
        "kept unchanged: it fits"
    );
    assert!(!huge.headers.contains_key("dlq.truncated"));

    let cut = &dead[1];
    assert_eq!(cut.headers["dlq.reason"], "invalid_event_time");
    assert_eq!(cut.headers["dlq.source.offset"], "2");
    assert_eq!(cut.headers["dlq.truncated"], "true");
    assert_eq!(
        cut.headers["dlq.original.size"],
        (too_big_to_keep.len() + "bad".len()).to_string()
    );
    let kept = cut.value.as_deref().unwrap();
    assert!(!kept.is_empty() && kept.len() < MAX);
    assert!(too_big_to_keep.as_bytes().starts_with(kept), "its start");
    assert!(cut.headers["dlq.detail"].len() <= 1024, "detail bounded");
}
