//! Offsets by time on the real broker: a source-time window's offset range per partition
//! without reading its records, and what the broker answers for a time after every record
//! (tansu 0.6: offset 0; Apache Kafka: −1), which `boundary` turns into the log's end.

mod support;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use sla_monitor::completeness::ledger::{Due, TimeQuery};
use sla_monitor::kafka::source_offsets::{LogBounds, SourceOffsets};
use std::collections::BTreeMap;
use std::time::Duration;
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_windows_offset_range_comes_from_its_bounds_times() {
    let topic = unique("by_time");
    create_topic(&topic, 2).await;
    let base = (now_ms() - 600_000) / 1_000 * 1_000;
    // Partition p: ten records a second apart from base + p·100 ms.
    let records: Vec<Outgoing> = (0..20)
        .map(|i| Outgoing {
            key: Some(format!("k{i}")),
            value: Some(b"x".to_vec()),
            partition: Some((i % 2) as i32),
            timestamp_ms: Some(base + (i / 2) * 1_000 + (i % 2) * 100),
            headers: Vec::new(),
        })
        .collect();
    produce(&topic, &records).await;
    let config = Cluster::local().config();
    let offsets = SourceOffsets::new(&config, &topic, Duration::from_secs(10)).unwrap();
    let bounds: BTreeMap<i32, LogBounds> = (0..2)
        .map(|p| (p, offsets.log_bounds(p).unwrap()))
        .collect();
    assert_eq!(bounds[&0], LogBounds { start: 0, end: 10 });
    let unfloored: BTreeMap<i32, (LogBounds, Option<i64>)> =
        bounds.iter().map(|(&p, &b)| (p, (b, None))).collect();
    // The window [base + 2 s, base + 5 s) holds offsets 2..5 of both partitions.
    let start = offsets.at_or_after(base + 2_000, &unfloored).unwrap();
    assert_eq!(start, BTreeMap::from([(0, 2), (1, 2)]));
    let floored: BTreeMap<i32, (LogBounds, Option<i64>)> = bounds
        .iter()
        .map(|(&p, &b)| (p, (b, Some(start[&p]))))
        .collect();
    let end = offsets.at_or_after(base + 5_000, &floored).unwrap();
    assert_eq!(end, BTreeMap::from([(0, 5), (1, 5)]));
    // Between partitions' stamps: partition 1's record at base + 5.1 s is at or after 5.05 s.
    let between = offsets.at_or_after(base + 5_050, &floored).unwrap();
    assert_eq!(between, BTreeMap::from([(0, 6), (1, 5)]));
    // After every record: the log's end, given a floor.
    let after = offsets.at_or_after(base + 60_000, &floored).unwrap();
    assert_eq!(after, BTreeMap::from([(0, 10), (1, 10)]));

    // What the broker itself answers after every record.
    let consumer: BaseConsumer = config.create().unwrap();
    let mut request = TopicPartitionList::new();
    request
        .add_partition_offset(&topic, 0, Offset::Offset(base + 60_000))
        .unwrap();
    let raw = consumer
        .offsets_for_times(request, Duration::from_secs(10))
        .unwrap();
    let answer = raw.elements()[0].offset();
    assert!(
        matches!(answer, Offset::End | Offset::Offset(0) | Offset::Offset(-1)),
        "a broker answers -1 (Kafka) or 0 (tansu 0.6) for none: {answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_answers_of_an_accounting_hold_without_a_floor_from_arrivals() {
    let topic = unique("by_time_due");
    create_topic(&topic, 1).await;
    let base = (now_ms() - 600_000) / 1_000 * 1_000;
    // Ten records a second apart from base + 500 ms: nothing has arrived from them, so only the
    // log's own first record tells a broker's "0" for none from offset 0.
    let records: Vec<Outgoing> = (0..10)
        .map(|i| Outgoing {
            key: Some(format!("k{i}")),
            value: Some(b"x".to_vec()),
            partition: Some(0),
            timestamp_ms: Some(base + 500 + i * 1_000),
            headers: Vec::new(),
        })
        .collect();
    produce(&topic, &records).await;
    let offsets =
        SourceOffsets::new(&Cluster::local().config(), &topic, Duration::from_secs(10)).unwrap();
    let query = |time_ms| TimeQuery {
        time_ms,
        floors: BTreeMap::new(),
    };
    let due = Due {
        as_of: base + 60_000,
        first_window: base,
        windows: vec![base],
        finals: 0,
        queries: vec![query(base), query(base + 3_000), query(base + 60_000)],
    };
    let answers = offsets.answer(&due).unwrap();
    assert_eq!(answers.log_starts, BTreeMap::from([(0, 0)]));
    let at = |t: i64| answers.offsets[&t][&0];
    assert_eq!(at(base), 0, "the first record is after the time");
    assert_eq!(at(base + 3_000), 3);
    assert_eq!(at(base + 60_000), 10, "after every record: the end");
    // The first query alone after every record: its answer is the end too.
    let late = Due {
        queries: vec![query(base + 60_000)],
        ..due
    };
    assert_eq!(
        offsets.answer(&late).unwrap().offsets[&(base + 60_000)][&0],
        10
    );
}
