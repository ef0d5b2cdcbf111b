//! A consumer-group member as the monitor's stages use it: subscribed to one topic, reporting
//! rebalances ([`RebalanceNotifier`]), and the broker look-ups it needs (partitions of a topic,
//! the group's committed offsets), each run off the async workers since librdkafka blocks.

use super::rebalance_events::RebalanceNotifier;
use super::topic_partitions::topic_partitions;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A subscribed group member, shared with the tasks that commit for it.
pub type GroupConsumer = Arc<StreamConsumer<RebalanceNotifier>>;

/// How long a metadata or committed-offsets request may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A consumer of `topic` in the group `settings` name, subscribed, reporting rebalances;
/// partition EOF on (reaching a partition's end is the evidence idleness needs, and the merge
/// stage's signal that it has read its shuffle partition), cooperative rebalancing unless the
/// user chose an assignor.
pub fn subscribe(
    mut settings: ClientConfig,
    context: RebalanceNotifier,
    topic: &str,
) -> Result<GroupConsumer, String> {
    settings.set("enable.partition.eof", "true");
    if settings.get("partition.assignment.strategy").is_none() {
        settings.set("partition.assignment.strategy", "cooperative-sticky");
    }
    let consumer: StreamConsumer<RebalanceNotifier> = settings
        .create_with_context(context)
        .map_err(|e| format!("creating the consumer of {topic}: {e}"))?;
    consumer
        .subscribe(&[topic])
        .map_err(|e| format!("subscribing to {topic}: {e}"))?;
    Ok(Arc::new(consumer))
}

/// The partitions of `topic`, as the broker's metadata lists them.
pub async fn partition_ids(consumer: &GroupConsumer, topic: &str) -> Result<Vec<i32>, String> {
    let (reader, topic) = (consumer.clone(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let partitions = topic_partitions(reader.as_ref(), &topic, LOOKUP_TIMEOUT)
            .map_err(|e| format!("reading the partitions of {topic}: {e}"))?;
        if partitions.is_empty() {
            return Err(format!("topic {topic} has no partitions (does it exist?)"));
        }
        Ok(partitions)
    })
    .await
    .map_err(|e| format!("reading partitions: {e}"))?
}

/// Moves the consumer's fetch position in `topic` to `offsets` (partition, where to read next)
/// without waiting for it: librdkafka drops what it fetched from the old position. A partition
/// no longer assigned, or whose fetching has not started yet, is left alone (nothing is
/// reported for it).
pub fn seek_without_waiting(
    consumer: &GroupConsumer,
    topic: &str,
    offsets: &[(i32, Offset)],
) -> Result<(), KafkaError> {
    if offsets.is_empty() {
        return Ok(());
    }
    let mut list = TopicPartitionList::new();
    for &(partition, offset) in offsets {
        list.add_partition_offset(topic, partition, offset)?;
    }
    consumer.seek_partitions(list, Duration::ZERO).map(|_| ())
}

/// The offsets the consumer's group committed for `partitions` of `topic` (partitions without
/// one are left out).
pub async fn committed_offsets(
    consumer: &GroupConsumer,
    topic: &str,
    partitions: &[i32],
) -> Result<BTreeMap<i32, i64>, KafkaError> {
    let mut wanted = TopicPartitionList::new();
    for &p in partitions {
        wanted.add_partition(topic, p);
    }
    let reader = consumer.clone();
    let committed =
        tokio::task::spawn_blocking(move || reader.committed_offsets(wanted, LOOKUP_TIMEOUT))
            .await
            .map_err(|_| KafkaError::Canceled)??;
    Ok(offsets_of(&committed, topic))
}

/// The offsets of `topic`'s partitions in `list` (logical offsets such as "end" left out).
pub fn offsets_of(list: &TopicPartitionList, topic: &str) -> BTreeMap<i32, i64> {
    list.elements_for_topic(topic)
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// The end (high watermark) of each of `partitions` of `topic`, asked in one request per
/// broker; partitions the broker did not answer for are left out.
pub async fn ends(
    consumer: &GroupConsumer,
    topic: &str,
    partitions: Vec<i32>,
) -> BTreeMap<i32, i64> {
    if partitions.is_empty() {
        return BTreeMap::new();
    }
    let (reader, topic) = (consumer.clone(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let mut latest = TopicPartitionList::new();
        for &p in &partitions {
            // `End` in place of a timestamp asks for the latest offset: the high watermark.
            latest.add_partition_offset(&topic, p, Offset::End).ok()?;
        }
        let answered = reader
            .offsets_for_times(latest, Duration::from_secs(5))
            .ok()?;
        let ends = answered
            .elements_for_topic(&topic)
            .iter()
            .filter(|e| e.error().is_ok())
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect();
        Some(ends)
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_default()
}
