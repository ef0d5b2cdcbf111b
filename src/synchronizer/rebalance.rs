//! The synchronizer's commit policy on rebalance: before partitions are taken away, commit what
//! is safe for them (offsets whose output the broker acknowledged), so their next owner
//! reprocesses as little as possible, and forget their pending offsets.

use crate::kafka::JobContext;
use crate::offset_tracker::OffsetTracker;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::sync::{Arc, Mutex};

/// The consumer context of the synchronizer: the job's context (logs, errors, statistics)
/// plus the offsets pending acknowledgement, shared with the job's loop.
#[derive(Clone)]
pub struct SynchronizerContext {
    job: JobContext,
    topic: String,
    tracker: Arc<Mutex<OffsetTracker>>,
}

impl SynchronizerContext {
    /// The context of a consumer of `topic` whose pending offsets are in `tracker`.
    pub fn new(job: JobContext, topic: &str, tracker: Arc<Mutex<OffsetTracker>>) -> Self {
        SynchronizerContext {
            job,
            topic: topic.to_string(),
            tracker,
        }
    }
}

impl ClientContext for SynchronizerContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.job.log(level, facility, message);
    }

    fn stats(&self, statistics: Statistics) {
        self.job.stats(statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.job.error(error, reason);
    }
}

impl ConsumerContext for SynchronizerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            let partitions: Vec<i32> = revoked
                .elements()
                .iter()
                .filter(|e| e.topic() == self.topic)
                .map(|e| e.partition())
                .collect();
            let mut tracker = self.tracker.lock().expect("offset tracker poisoned");
            let safe: Vec<(i32, i64)> = tracker
                .committable()
                .into_iter()
                .filter(|(p, _)| partitions.contains(p))
                .collect();
            if !safe.is_empty() {
                let mut list = TopicPartitionList::new();
                for &(partition, offset) in &safe {
                    list.add_partition_offset(&self.topic, partition, Offset::Offset(offset))
                        .expect("valid offset");
                }
                match consumer.commit(&list, CommitMode::Sync) {
                    Ok(()) => tracing::info!(?safe, "committed offsets of revoked partitions"),
                    Err(e) => tracing::warn!(
                        ?safe,
                        "could not commit offsets of revoked partitions ({e}); their new owner will reprocess some records"
                    ),
                }
            }
            for partition in partitions {
                tracker.remove(partition);
            }
            tracing::info!(revoked = ?revoked.elements().iter().map(|e| e.partition()).collect::<Vec<_>>(), "partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(assigned) = rebalance {
            tracing::info!(assigned = ?assigned.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect::<Vec<_>>(), "partitions assigned");
        }
    }
}
