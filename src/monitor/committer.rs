//! The committer: writes the checkpoints the core says are due to the checkpoint topic in the
//! background (one write at a time, so a slow broker never stalls the closing of windows), and
//! commits the consumer group's offsets once the broker has acknowledged them (kept for lag
//! tooling; a restart resumes from the checkpoints).

use super::checkpoint::CheckpointRecord;
use super::checkpoint_store;
use super::decisions::MonitorCore;
use crate::kafka::commit::commit_async;
use crate::kafka::rebalance_events::RebalanceNotifier;
use crate::kafka::JobContext;
use crate::shuffle::authentication::RecordAuthentication;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// How long a checkpoint write may wait for the broker before the commit is skipped.
const CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(10);

/// A checkpoint write under way: the records and how the write ended.
pub type CheckpointWrite = (Vec<CheckpointRecord>, Result<(), String>);

/// Checkpoint writes and offset commits of one monitor.
pub struct Committer {
    consumer: Arc<StreamConsumer<RebalanceNotifier>>,
    producer: FutureProducer<JobContext>,
    checkpoint_topic: String,
    input_topic: String,
    authentication: RecordAuthentication,
    writing: FuturesUnordered<Pin<Box<dyn Future<Output = CheckpointWrite> + Send>>>,
    /// A write was asked for while another was under way: it starts when that one ends.
    requested: bool,
}

impl Committer {
    /// Commits for `consumer` of `input_topic`, writing checkpoints to `checkpoint_topic`
    /// authenticated as `authentication` says.
    pub fn new(
        consumer: Arc<StreamConsumer<RebalanceNotifier>>,
        producer: FutureProducer<JobContext>,
        checkpoint_topic: &str,
        input_topic: &str,
        authentication: RecordAuthentication,
    ) -> Self {
        Committer {
            consumer,
            producer,
            checkpoint_topic: checkpoint_topic.to_string(),
            input_topic: input_topic.to_string(),
            authentication,
            writing: FuturesUnordered::new(),
            requested: false,
        }
    }

    /// Starts writing the checkpoints `core` says are due, unless a write is under way.
    pub fn start(&mut self, core: &MonitorCore) {
        if !self.writing.is_empty() {
            return;
        }
        let records = core.checkpoints_due();
        if records.is_empty() {
            return;
        }
        let (producer, topic) = (self.producer.clone(), self.checkpoint_topic.clone());
        let authentication = self.authentication.clone();
        self.writing.push(Box::pin(async move {
            let saved = tokio::time::timeout(
                CHECKPOINT_TIMEOUT,
                checkpoint_store::save(&producer, &topic, &records, &authentication),
            )
            .await;
            let result = match saved {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no acknowledgement within {CHECKPOINT_TIMEOUT:?}")),
            };
            (records, result)
        }));
    }

    /// Writes the checkpoints `core` says are due now, or as soon as the write under way ended
    /// (window parts were acknowledged: what they held back can be committed).
    pub fn request(&mut self, core: &MonitorCore) {
        if self.writing.is_empty() {
            self.start(core);
        } else {
            self.requested = true;
        }
    }

    /// The next checkpoint write to end (pending forever when none is under way).
    pub async fn next_written(&mut self) -> CheckpointWrite {
        match self.writing.next().await {
            Some(written) => written,
            None => std::future::pending().await,
        }
    }

    /// After a checkpoint write ended: when the broker acknowledged it, tells `core` and
    /// commits the group's offsets asynchronously (the coordinator's answer is published by
    /// `JobContext::on_commit`); otherwise the next tick tries again. Then starts the write
    /// [`Self::request`] asked for meanwhile, if any.
    pub fn finish(&mut self, core: &mut MonitorCore, written: CheckpointWrite) {
        if let Some(list) = self.saved(core, written) {
            if let Err(e) = commit_async(&*self.consumer, &list) {
                tracing::warn!(
                    "committing offsets of {}: {e}; will retry",
                    self.input_topic
                );
            }
        }
        if std::mem::take(&mut self.requested) {
            self.start(core);
        }
    }

    /// The offsets to commit once `written` was acknowledged (then `core` is told), or `None`.
    fn saved(
        &self,
        core: &mut MonitorCore,
        written: CheckpointWrite,
    ) -> Option<TopicPartitionList> {
        let (records, result) = written;
        if let Err(e) = result {
            tracing::warn!(
                "writing checkpoints to {}: {e}; will retry",
                self.checkpoint_topic
            );
            return None;
        }
        // A partition taken away while its checkpoint was being written is its new owner's
        // to commit now: committing here could move the group's offset back.
        let owned = core.partitions();
        let records: Vec<CheckpointRecord> = records
            .into_iter()
            .filter(|r| owned.contains(&r.partition))
            .collect();
        core.checkpoints_saved(&records);
        let mut list = TopicPartitionList::new();
        for record in &records {
            list.add_partition_offset(
                &self.input_topic,
                record.partition,
                Offset::Offset(record.checkpoint.offset),
            )
            .expect("valid offset");
        }
        (list.count() > 0).then_some(list)
    }

    /// At shutdown: waits for a write under way, then writes a final checkpoint and commits
    /// synchronously (off the runtime's workers: the call waits for the coordinator).
    pub async fn finish_all(&mut self, core: &mut MonitorCore) {
        let mut lists = Vec::new();
        while let Some(written) = self.writing.next().await {
            lists.extend(self.saved(core, written));
        }
        self.start(core);
        while let Some(written) = self.writing.next().await {
            lists.extend(self.saved(core, written));
        }
        let consumer = self.consumer.clone();
        let committed = tokio::task::spawn_blocking(move || {
            lists.iter().try_for_each(|list| {
                let result = consumer.commit(list, CommitMode::Sync);
                // librdkafka answers a synchronous commit to the caller only.
                consumer.context().commit_callback(result.clone(), list);
                result
            })
        })
        .await
        .expect("commit task panicked");
        if let Err(e) = committed {
            tracing::warn!(
                "committing offsets of {} at shutdown: {e}; the checkpoints hold them",
                self.input_topic
            );
        }
    }
}
