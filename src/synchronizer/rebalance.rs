//! The synchronizer's commit policy on rebalance: before partitions are taken away, commit what
//! is safe for them (offsets whose output the broker acknowledged), so their next owner
//! reprocesses as little as possible, and forget their pending offsets and waiting records. Also where the
//! coordinator's answer to every commit lands: only acknowledged offsets count as committed.
//!
//! The revoke commit is asynchronous, yet it reaches the coordinator before the group moves
//! on: librdkafka does not finish an assignment change (and so does not rejoin) while offset
//! commits are outstanding (`wait_commit_cnt` in `rd_kafka_assignment_serve`). So the callback,
//! which runs on the thread polling the consumer (a runtime worker), never blocks on the network.

use super::core::SynchronizerCore;
use crate::kafka::commit::commit_async;
use crate::kafka::JobContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::sync::{Arc, Mutex};

/// The consumer context of the synchronizer: the job's context (logs, errors, statistics)
/// plus the synchronizer's core (pending offsets, waiting records), shared with the job's loop.
#[derive(Clone)]
pub struct SynchronizerContext {
    job: JobContext,
    topic: String,
    core: Arc<Mutex<SynchronizerCore>>,
}

impl SynchronizerContext {
    /// The context of a consumer of `topic` whose pending offsets and waiting records are in `core`.
    pub fn new(job: JobContext, topic: &str, core: Arc<Mutex<SynchronizerCore>>) -> Self {
        SynchronizerContext {
            job,
            topic: topic.to_string(),
            core,
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
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        let acknowledged: Vec<(i32, i64)> = self
            .job
            .on_commit(&result, offsets)
            .into_iter()
            .filter(|(topic, _, _)| *topic == self.topic)
            .map(|(_, partition, offset)| (partition, offset))
            .collect();
        self.core
            .lock()
            .expect("synchronizer core poisoned")
            .committed(&acknowledged);
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            let partitions: Vec<i32> = revoked
                .elements()
                .iter()
                .filter(|e| e.topic() == self.topic)
                .map(|e| e.partition())
                .collect();
            let safe = self
                .core
                .lock()
                .expect("synchronizer core poisoned")
                .revoke(&partitions);
            if !safe.is_empty() {
                let mut list = TopicPartitionList::new();
                for &(partition, offset) in &safe {
                    list.add_partition_offset(&self.topic, partition, Offset::Offset(offset))
                        .expect("valid offset");
                }
                match commit_async(consumer, &list) {
                    Ok(()) => tracing::info!(?safe, "committing offsets of revoked partitions"),
                    Err(e) => tracing::warn!(
                        ?safe,
                        "could not commit offsets of revoked partitions ({e}); their new owner will reprocess some records"
                    ),
                }
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
