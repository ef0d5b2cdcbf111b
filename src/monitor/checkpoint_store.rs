//! Reading and writing checkpoints on the checkpoint topic.

use super::checkpoint::{Checkpoint, CheckpointRecord};
use super::now_ms;
use crate::kafka::producer::{delivered, enqueue, OutgoingRecord};
use crate::kafka::retire::retire;
use crate::kafka::transient::is_transient;
use crate::kafka::{JobContext, KafkaArgs};
use crate::shuffle::authentication::RecordAuthentication;
use crate::shuffle::latest_plausible;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the checkpoint reader's first request may wait for the brokers.
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(2);

/// Whose checkpoints to read: the monitor's group, input topic, job name and window length.
#[derive(Debug, Clone)]
pub struct Owner {
    /// Consumer group.
    pub group: String,
    /// Input topic.
    pub topic: String,
    /// Job name.
    pub job: String,
    /// Window length (ms).
    pub window_ms: i64,
    /// How its checkpoints are authenticated.
    pub authentication: RecordAuthentication,
    /// How far ahead of the clock event times are accepted (`--max-future`).
    pub max_future_ms: i64,
}

/// The consumer that reads the checkpoint topic when partitions are assigned. It is created
/// (and connected) when the monitor starts, while the instance joins its group, and kept: a
/// new client's first request waits ~50 ms for its connection, which every restore paid.
#[derive(Clone)]
pub struct CheckpointReader {
    consumer: Arc<Mutex<ReaderClient>>,
    topic: String,
}

/// The reader's consumer, closed off the async workers when the last reader is dropped.
struct ReaderClient(Option<BaseConsumer>);

impl ReaderClient {
    fn consumer(&self) -> &BaseConsumer {
        self.0.as_ref().expect("taken only on drop")
    }
}

impl Drop for ReaderClient {
    fn drop(&mut self) {
        if let Some(consumer) = self.0.take() {
            retire(consumer);
        }
    }
}

impl CheckpointReader {
    /// A reader of `checkpoint_topic` for `group`, connecting in the background.
    pub fn new(kafka: &KafkaArgs, checkpoint_topic: &str, group: &str) -> Result<Self, KafkaError> {
        let consumer: BaseConsumer = kafka
            .client_config(&[
                ("group.id", &format!("{group}-checkpoint-reader")),
                ("enable.auto.commit", "false"),
                ("enable.partition.eof", "false"),
            ])
            .create()?;
        let reader = CheckpointReader {
            consumer: Arc::new(Mutex::new(ReaderClient(Some(consumer)))),
            topic: checkpoint_topic.to_string(),
        };
        // Connects now (a first load waits for this). Failures are the load's to report, and
        // the wait is short: a job stopping while the brokers are unreachable waits for it.
        let warming = reader.clone();
        tokio::task::spawn_blocking(move || {
            let client = warming.consumer.lock().expect("checkpoint reader poisoned");
            let _ = client
                .consumer()
                .fetch_metadata(Some(&warming.topic), WARM_UP_TIMEOUT);
        });
        Ok(reader)
    }

    /// The checkpoint topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Reads the latest usable checkpoint of every partition of `owner`'s topic saved by its
    /// group: a checkpoint of another job or window length, of an unknown format, failing its
    /// checksum or implausible is not used (the one before it is, if any) and is counted.
    /// Gives up after 30 s per checkpoint partition (the caller retries transient failures).
    pub async fn load(&self, owner: &Owner) -> Result<BTreeMap<i32, Checkpoint>, KafkaError> {
        let (reader, owner) = (self.clone(), owner.clone());
        tokio::task::spawn_blocking(move || {
            let client = reader.consumer.lock().expect("checkpoint reader poisoned");
            let consumer = client.consumer();
            let found = read_checkpoints(consumer, &reader.topic, &owner);
            // Assigned, it would go on fetching until the next load.
            let unassigned = consumer.unassign();
            found.and_then(|found| unassigned.map(|()| found))
        })
        .await
        .map_err(|_| KafkaError::Canceled)?
    }
}

/// Reads `checkpoint_topic` to its end with `consumer` (see [`CheckpointReader::load`]).
fn read_checkpoints(
    consumer: &BaseConsumer,
    checkpoint_topic: &str,
    owner: &Owner,
) -> Result<BTreeMap<i32, Checkpoint>, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(checkpoint_topic), READ_TIMEOUT)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut found = BTreeMap::new();
    let mut first_refusal = None;
    for partition in partitions {
        let (low, high) = consumer.fetch_watermarks(checkpoint_topic, partition, READ_TIMEOUT)?;
        if high <= low {
            continue;
        }
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(checkpoint_topic, partition, Offset::Beginning)?;
        consumer.assign(&assignment)?;
        let deadline = std::time::Instant::now() + READ_TIMEOUT;
        let mut next = low;
        while next < high {
            if std::time::Instant::now() > deadline {
                return Err(KafkaError::MessageConsumption(
                    rdkafka::types::RDKafkaErrorCode::RequestTimedOut,
                ));
            }
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(message)) => {
                    next = message.offset() + 1;
                    let decoded = message
                        .payload()
                        .and_then(|value| CheckpointRecord::decode(value, &owner.authentication));
                    if let Some((record, format)) = decoded {
                        if record.group == owner.group && record.topic == owner.topic {
                            // A checkpoint not used leaves the one before it (if any) or
                            // the committed offset to decide.
                            let usable = record
                                .usable_by(
                                    format,
                                    &owner.job,
                                    owner.window_ms,
                                    &owner.authentication,
                                )
                                .and_then(|()| {
                                    let latest = latest_plausible(now_ms(), owner.max_future_ms);
                                    record
                                        .checkpoint
                                        .check(latest)
                                        .map_err(|why| ("implausible", why))
                                });
                            match usable {
                                Ok(()) => {
                                    found.insert(record.partition, record.checkpoint);
                                }
                                Err((reason, why)) => {
                                    refused(reason);
                                    first_refusal.get_or_insert((
                                        record.partition,
                                        message.offset(),
                                        why,
                                    ));
                                }
                            }
                        }
                    }
                }
                // The client reconnects by itself; the deadline bounds the wait.
                Some(Err(e)) if is_transient(&e) => std::thread::sleep(Duration::from_millis(100)),
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
    }
    if let Some((partition, offset, why)) = first_refusal {
        tracing::warn!(
            partition,
            checkpoint_offset = offset,
            "checkpoints of {checkpoint_topic} not used (sla_monitor_checkpoints_refused_total), \
             the first: {why}; those partitions resume from an earlier checkpoint or their \
             committed offset"
        );
    }
    Ok(found)
}

/// Counts a checkpoint not used (`sla_monitor_checkpoints_refused_total{reason}`).
pub fn refused(reason: &'static str) {
    super::metrics::checkpoints_refused(reason).increment(1);
}

/// Writes checkpoints and waits until the broker acknowledged all of them.
pub async fn save(
    producer: &FutureProducer<JobContext>,
    checkpoint_topic: &str,
    records: &[CheckpointRecord],
    authentication: &RecordAuthentication,
) -> Result<(), KafkaError> {
    let mut deliveries = Vec::with_capacity(records.len());
    for record in records {
        let (key, value) = (record.key(), record.encode(authentication));
        deliveries.push(
            enqueue(
                producer,
                OutgoingRecord {
                    partition: None,
                    topic: checkpoint_topic,
                    key: Some(key.as_bytes()),
                    value: Some(value.as_bytes()),
                },
                None,
            )
            .await?,
        );
    }
    for delivery in deliveries {
        delivered(delivery).await?;
    }
    Ok(())
}
