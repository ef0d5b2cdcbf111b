//! Producing with back-pressure: records are enqueued without waiting for their delivery,
//! and a full local queue makes the caller wait instead of failing.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use std::time::Duration;

use super::JobContext;

/// Producer settings for output that must never be lost or reordered: idempotent, acks from
/// all in-sync replicas, and no delivery timeout (a broker outage is waited out).
pub const RELIABLE_PRODUCER: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("linger.ms", "5"),
    ("message.timeout.ms", "0"),
];

/// One record to enqueue.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingRecord<'a> {
    /// Destination topic.
    pub topic: &'a str,
    /// Record key.
    pub key: Option<&'a [u8]>,
    /// Record value (`None`: a tombstone).
    pub value: Option<&'a [u8]>,
    /// Destination partition (`None`: the partitioner chooses by key).
    pub partition: Option<i32>,
}

/// Enqueues a record and returns the future of its delivery report. When librdkafka's local
/// queue is full, waits until there is room. The record's timestamp is left to the producer,
/// which stamps the time of the produce call.
pub async fn enqueue(
    producer: &FutureProducer<JobContext>,
    record: OutgoingRecord<'_>,
    headers: Option<OwnedHeaders>,
) -> Result<DeliveryFuture, KafkaError> {
    loop {
        let mut future_record = FutureRecord::<[u8], [u8]>::to(record.topic);
        if let Some(key) = record.key {
            future_record = future_record.key(key);
        }
        if let Some(value) = record.value {
            future_record = future_record.payload(value);
        }
        if let Some(partition) = record.partition {
            future_record = future_record.partition(partition);
        }
        if let Some(headers) = headers.clone() {
            future_record = future_record.headers(headers);
        }
        match producer.send_result(future_record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((error, _)) => return Err(error),
        }
    }
}

/// Waits for a delivery report and turns it into a plain result.
pub async fn delivered(delivery: DeliveryFuture) -> Result<(), KafkaError> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((error, _))) => Err(error),
        Err(_canceled) => Err(KafkaError::Canceled),
    }
}
