//! The partition stage: input consumer → [`MonitorCore`] decisions → window parts and progress
//! published to the shuffle topic → checkpoints and offset commits. It owns the input
//! partitions the consumer group gives this instance and nothing else.
//!
//! One loop, in one of two phases:
//! - **consuming**: records, clock ticks, acknowledgements of parts and dead letters, and
//!   checkpoint writes. A newly assigned partition is restored (committed offsets and a read
//!   of the checkpoint topic, which can take seconds) in the background: meanwhile no record
//!   is taken from the consumer, but ticks, acknowledgements and commits go on;
//! - **draining** (after shutdown): one last tick publishes the parts the watermarks closed,
//!   then only outstanding deliveries are awaited (up to the drain timeout) before the final
//!   checkpoints and commit.

use super::checkpoint_store;
use super::committer::Committer;
use super::decisions::{MonitorCore, Publication, RecordDecision};
use super::measurement::{InputRecord, TimestampKind};
use super::metrics::PartitionMetrics;
use super::refusal_watch::{AllRefused, RefusalWatch};
use super::restore::{self, PartitionResume};
use super::{now_ms, outcome_of, MonitorConfig, MonitorError, MonitorReport, Pending};
use crate::kafka::dead_letter::{DeadLetterQueue, WINDOW_START_HEADER};
use crate::kafka::group_consumer::{self, GroupConsumer};
use crate::kafka::producer::delivered;
use crate::kafka::rebalance_events::Rebalanced;
use crate::kafka::reporting_producer::refused_for_itself;
use crate::kafka::stamp_headers::StampHeaders;
use crate::kafka::transient::is_transient;
use crate::kafka::{JobContext, READY_BATCH};
use crate::record::lineage::LINEAGE_HEADER;
use crate::record::rejection::{RejectReason, Rejection};
use crate::runtime::backoff::retry_policy;
use crate::runtime::http::{Readiness, ReadinessHold};
use crate::runtime::shutdown::Shutdown;
use crate::shuffle::publisher::ShufflePublisher;
use backon::Retryable;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage, Timestamp};
use rdkafka::Offset;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Output under way to the broker: what it was, and whether it was delivered.
type Delivery<K> = Pending<(K, Result<(), KafkaError>)>;

/// What the stage needs besides its configuration.
pub struct PartitionStageParts {
    /// The input consumer, subscribed.
    pub consumer: GroupConsumer,
    /// Its rebalances.
    pub events: mpsc::UnboundedReceiver<Rebalanced>,
    /// Whether the input consumer is connected to its partitions' leaders.
    pub leaders_up: Arc<AtomicBool>,
    /// The job's Kafka health.
    pub context: JobContext,
    /// Checkpoint writes and offset commits.
    pub committer: Committer,
    /// Refused and late records.
    pub dead_letters: DeadLetterQueue,
    /// Where window parts and progress go.
    pub publisher: ShufflePublisher,
    /// Reads the checkpoints of newly assigned partitions.
    pub checkpoints: checkpoint_store::CheckpointReader,
    /// Input partitions held now, for the merge stage's watchdog.
    pub owned_count: Arc<AtomicUsize>,
    /// The job's readiness (not ready while every record is refused).
    pub readiness: Readiness,
}

/// The partition stage's state (see the module documentation).
pub struct PartitionStage {
    config: MonitorConfig,
    consumer: GroupConsumer,
    events: mpsc::UnboundedReceiver<Rebalanced>,
    leaders_up: Arc<AtomicBool>,
    context: JobContext,
    core: MonitorCore,
    committer: Committer,
    dead_letters: DeadLetterQueue,
    publisher: ShufflePublisher,
    checkpoints: checkpoint_store::CheckpointReader,
    metrics: PartitionMetrics,
    owned_count: Arc<AtomicUsize>,
    /// Dead letters under way, by (partition, offset).
    dead_letter_deliveries: FuturesUnordered<Delivery<(i32, i64)>>,
    /// Records whose dead letter the broker refused for its size, sent again as headers alone.
    bare_dead_letters: HashSet<(i32, i64)>,
    /// Window parts under way, by publication id.
    part_deliveries: FuturesUnordered<Delivery<u64>>,
    /// The restore of newly assigned partitions, while it runs.
    restoring: Option<Pending<Result<Vec<PartitionResume>, String>>>,
    /// A record received in the poll that assigned its partition, held until it is restored.
    held_back: Option<Result<OwnedMessage, KafkaError>>,
    /// Records consumed since `sla_records_consumed_total` was last advanced (once per batch).
    consumed_unreported: u64,
    /// Which timestamp kinds were seen (indexed by the kind), to say so once each.
    timestamp_kinds_seen: [bool; 3],
    /// Records measured per timestamp kind since their counters were last advanced (once per
    /// batch, with `consumed_unreported`).
    timestamp_kinds_unreported: [u64; 3],
    /// The headers the stamps read (none for the default), found once, not per record.
    stamp_headers: Vec<String>,
    /// Where a partition without a committed offset starts (`auto.offset.reset`).
    offset_reset: Option<Offset>,
    /// Whether every record is refused, judged per interval.
    refusals: RefusalWatch,
    /// Keeps the job not ready while every record is refused.
    refusal_hold: Option<ReadinessHold>,
    readiness: Readiness,
}

impl PartitionStage {
    /// A stage owning no partition yet.
    pub fn new(config: MonitorConfig, core: MonitorCore, parts: PartitionStageParts) -> Self {
        let mut stamp_headers: Vec<String> =
            config.stamps.header_names().map(String::from).collect();
        if config.completeness.is_some() && !stamp_headers.iter().any(|h| h == LINEAGE_HEADER) {
            stamp_headers.push(LINEAGE_HEADER.to_string());
        }
        for header in config.split.iter().flat_map(|s| s.header_names()) {
            if !stamp_headers.iter().any(|h| h == header) {
                stamp_headers.push(header.to_string());
            }
        }
        let offset_reset = config.kafka.offset_reset(&config.group);
        PartitionStage {
            metrics: PartitionMetrics::new(&config.input_topic),
            config,
            consumer: parts.consumer,
            events: parts.events,
            leaders_up: parts.leaders_up,
            context: parts.context,
            core,
            committer: parts.committer,
            dead_letters: parts.dead_letters,
            publisher: parts.publisher,
            checkpoints: parts.checkpoints,
            owned_count: parts.owned_count,
            dead_letter_deliveries: FuturesUnordered::new(),
            bare_dead_letters: HashSet::new(),
            part_deliveries: FuturesUnordered::new(),
            restoring: None,
            held_back: None,
            consumed_unreported: 0,
            timestamp_kinds_seen: [false; 3],
            timestamp_kinds_unreported: [0; 3],
            stamp_headers,
            offset_reset,
            refusals: RefusalWatch::default(),
            refusal_hold: None,
            readiness: parts.readiness,
        }
    }

    /// Runs until `shutdown`, then drains; returns what it did.
    pub async fn run(mut self, mut shutdown: Shutdown) -> Result<MonitorReport, MonitorError> {
        let mut tick = tokio::time::interval(self.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_commit = Instant::now();
        let consumer = self.consumer.clone();
        let mut draining: Option<Instant> = None;
        loop {
            if let Some(deadline) = draining {
                if self.dead_letter_deliveries.is_empty() && self.part_deliveries.is_empty() {
                    break;
                }
                if Instant::now() >= deadline {
                    tracing::warn!(
                        pending_dead_letters = self.dead_letter_deliveries.len(),
                        pending_publications = self.part_deliveries.len(),
                        "drain timeout: unacknowledged output will be redone after a restart"
                    );
                    break;
                }
            }
            let consuming = draining.is_none();
            let deadline = draining.unwrap_or_else(Instant::now);
            tokio::select! {
                biased;
                _ = shutdown.wait(), if consuming => {
                    // Parts the watermarks already closed are published before stopping (the
                    // windows still open are incomplete).
                    self.on_tick().await?;
                    draining = Some(Instant::now() + self.config.drain_timeout);
                }
                _ = tokio::time::sleep_until(deadline), if !consuming => {}
                Some(((partition, offset), result)) = self.dead_letter_deliveries.next() => match result {
                    Ok(()) => {
                        self.bare_dead_letters.remove(&(partition, offset));
                        self.core.on_dead_letter_ack(partition, offset);
                    }
                    Err(e) if consuming && refused_for_itself(&e) && !self.bare_dead_letters.contains(&(partition, offset)) => {
                        // The broker refused the dead letter for its size (a topic limit below
                        // the producer's): kept as its headers alone, reason and source.
                        self.bare_dead_letters.insert((partition, offset));
                        self.send_bare_dead_letter(partition, offset, &e).await?;
                    }
                    Err(source) if consuming => return Err(MonitorError::Delivery { topic: self.config.dead_letter_topic.clone(), source }),
                    Err(e) => tracing::warn!("dead letter of partition {partition} offset {offset} not delivered at shutdown: {e}"),
                },
                Some((parts_id, result)) = self.part_deliveries.next() => match result {
                    Ok(()) => {
                        self.core.on_parts_ack(parts_id);
                        // What the parts held back is committed now, not at the next commit
                        // interval: a partition moving to another instance resumes from here.
                        self.committer.request(&self.core);
                    }
                    Err(source) if consuming => return Err(MonitorError::Delivery { topic: self.publisher.topic().to_string(), source }),
                    Err(e) => tracing::warn!("window parts not delivered at shutdown: {e}"),
                },
                written = self.committer.next_written() => self.committer.finish(&mut self.core, written),
                restored = outcome_of(&mut self.restoring), if consuming => {
                    self.restoring = None;
                    self.take_partitions(restored.map_err(MonitorError::Setup)?);
                    if let Some(message) = self.held_back.take() {
                        self.on_polled(message, now_ms()).await?;
                        self.report_consumed();
                    }
                    self.apply_rebalances();
                }
                // An assignment starts its restore at once, while the consumer fetches.
                Some(event) = self.events.recv(), if consuming && self.restoring.is_none() => {
                    self.on_rebalance(event);
                    self.apply_rebalances();
                }
                _ = tick.tick(), if consuming => {
                    self.apply_rebalances();
                    self.on_tick().await?;
                    if last_commit.elapsed() >= self.config.commit_interval {
                        self.committer.start(&self.core);
                        last_commit = Instant::now();
                    }
                }
                message = consumer.recv(), if consuming && self.restoring.is_none() => {
                    // One clock read per batch of ready records (a read per record was a few
                    // per cent of the stage).
                    let now = now_ms();
                    let mut next = Some(message);
                    let mut taken = 0;
                    while let Some(message) = next.take() {
                        self.apply_rebalances();
                        if self.restoring.is_some() {
                            // Its partition may be one being restored: handled once it is.
                            self.held_back = Some(message.map(|m| m.detach()));
                            break;
                        }
                        self.on_polled(message, now).await?;
                        taken += 1;
                        if taken < READY_BATCH {
                            next = consumer.recv().now_or_never();
                        }
                    }
                    self.report_consumed();
                    // A window the batch's records closed is published now, not at the next
                    // tick (up to a tick sooner in the sink).
                    if self.core.closing_due() {
                        self.on_tick().await?;
                    }
                }
            }
        }
        self.committer.finish_all(&mut self.core).await;
        Ok(self.core.report())
    }

    /// Applies the rebalances the consumer reported, in order, up to the first assignment:
    /// revoked partitions are dropped at once; an assignment starts restoring its partitions
    /// in the background (further events wait until it is done).
    fn apply_rebalances(&mut self) {
        while self.restoring.is_none() {
            let Ok(event) = self.events.try_recv() else {
                break;
            };
            self.on_rebalance(event);
        }
    }

    /// Applies one rebalance (see [`Self::apply_rebalances`]).
    fn on_rebalance(&mut self, event: Rebalanced) {
        match event {
            Rebalanced::Assigned(partitions) if !partitions.is_empty() => {
                let owner = checkpoint_store::Owner {
                    group: self.config.group.clone(),
                    topic: self.config.input_topic.clone(),
                    job: self.config.job_name.clone(),
                    window_ms: self.config.window.size_ms,
                    authentication: self.config.authentication.clone(),
                    max_future_ms: self.config.plausibility.max_future_ms,
                };
                self.restoring = Some(Box::pin(restore_partitions(
                    self.consumer.clone(),
                    self.checkpoints.clone(),
                    owner,
                    partitions,
                )));
            }
            Rebalanced::Assigned(_) => {}
            Rebalanced::Revoked(partitions) => {
                for p in partitions {
                    self.core.revoke(p);
                }
                self.partitions_changed();
            }
        }
    }

    /// Takes restored partitions as their resume plan says.
    fn take_partitions(&mut self, plan: Vec<PartitionResume>) {
        let now = now_ms();
        // Where the consumer is moved: to a checkpoint its group's commit is behind (the
        // records in between were published, and the core would skip them), and, without any
        // commit or checkpoint, to where librdkafka would reset it — at once, instead of after
        // the 100 ms it waits before resetting a partition without a committed offset.
        let moved: Vec<(i32, Offset)> = plan
            .iter()
            .filter_map(|r| match r.offset {
                Some(offset) if r.move_consumer => Some((r.partition, Offset::Offset(offset))),
                None => self.offset_reset.map(|reset| (r.partition, reset)),
                Some(_) => None,
            })
            .collect();
        if let Err(e) =
            group_consumer::seek_without_waiting(&self.consumer, &self.config.input_topic, &moved)
        {
            tracing::warn!(partitions = ?moved, "moving the consumer to where the partitions resume: {e}; it reads from its own position (records before a checkpoint are skipped)");
        }
        for resume in plan {
            self.core.assign(&resume, now);
            self.metrics.restored(&resume);
            tracing::info!(partition = resume.partition, offset = ?resume.offset, restored = ?resume.restored, "resuming partition");
        }
        self.partitions_changed();
    }

    fn partitions_changed(&self) {
        let owned = self.core.partitions().len();
        self.owned_count.store(owned, Ordering::Relaxed);
        self.metrics.assigned.set(owned as f64);
    }

    /// Handles what one poll of the consumer returned.
    async fn on_polled<M: Message>(
        &mut self,
        polled: Result<M, KafkaError>,
        now: i64,
    ) -> Result<(), MonitorError> {
        match polled {
            Ok(message) => self.on_message(&message, now).await,
            Err(KafkaError::PartitionEOF(partition)) => {
                self.context.mark_healthy();
                self.core.on_caught_up(partition);
                Ok(())
            }
            Err(e) => {
                tracing::warn!("consuming from {}: {e}", self.config.input_topic);
                Ok(())
            }
        }
    }

    async fn on_message(&mut self, message: &impl Message, now: i64) -> Result<(), MonitorError> {
        self.context.mark_healthy();
        if !self.core.owns(message.partition()) {
            // Fetched before the partition was taken away: its new owner handles it.
            return Ok(());
        }
        self.consumed_unreported += 1;
        let timestamp = match message.timestamp() {
            Timestamp::LogAppendTime(t) => Some((TimestampKind::LogAppendTime, t)),
            Timestamp::CreateTime(t) => Some((TimestampKind::CreateTime, t)),
            Timestamp::NotAvailable => None,
        };
        let headers = StampHeaders::of(message, &self.stamp_headers);
        let record = InputRecord {
            timestamp,
            payload: message.payload(),
            headers: &headers,
        };
        let decision = self
            .core
            .on_record(message.partition(), message.offset(), &record, now);
        match &decision {
            RecordDecision::DeadLetter {
                rejection,
                late_for_window: None,
                ..
            } => self.refusals.refused(rejection.reason, now),
            _ => self.refusals.measured(now),
        }
        match decision {
            RecordDecision::Accepted {
                timestamp_kind,
                negative_latency,
            } => {
                self.count_timestamp_kind(timestamp_kind);
                if negative_latency {
                    self.metrics.negative_latencies.increment(1);
                }
            }
            RecordDecision::AlreadyCounted => self.metrics.already_counted.increment(1),
            RecordDecision::DeadLetter {
                rejection,
                late_for_window,
                arrival,
            } => {
                if late_for_window.is_some() {
                    self.metrics.late.increment(1);
                }
                let window_start = late_for_window.map(|start| start.to_string());
                let extra: Vec<(&str, &str)> = window_start
                    .iter()
                    .map(|start| (WINDOW_START_HEADER, start.as_str()))
                    .collect();
                let delivery = self
                    .dead_letters
                    .send(message, &rejection, &extra)
                    .await
                    .map_err(|source| MonitorError::Delivery {
                        topic: self.config.dead_letter_topic.clone(),
                        source,
                    })?;
                // A late record's arrival that no open window carries goes alone; the record
                // is acknowledged once both are delivered.
                let arrival_delivery = match arrival {
                    Some(late) => Some(
                        self.publisher
                            .publish_late_arrival(
                                late.window_start,
                                late.partition,
                                late.offset,
                                late.arrivals,
                            )
                            .await
                            .map_err(|source| MonitorError::Delivery {
                                topic: self.publisher.topic().to_string(),
                                source,
                            })?,
                    ),
                    None => None,
                };
                let (partition, offset) = (message.partition(), message.offset());
                self.dead_letter_deliveries.push(Box::pin(async move {
                    let outcome = delivered(delivery).await;
                    let outcome = match (outcome, arrival_delivery) {
                        (Ok(()), Some(arrival)) => delivered(arrival).await,
                        (outcome, _) => outcome,
                    };
                    ((partition, offset), outcome)
                }));
            }
        }
        Ok(())
    }

    /// Dead-letters input record `offset` of `partition` as its headers alone: its dead letter
    /// (`refusal`) was refused by the broker for its size.
    async fn send_bare_dead_letter(
        &mut self,
        partition: i32,
        offset: i64,
        refusal: &KafkaError,
    ) -> Result<(), MonitorError> {
        let rejection = Rejection::new(
            RejectReason::TooLarge,
            format!("its dead letter was refused by the broker: {refusal}"),
        );
        let delivery = self
            .dead_letters
            .send_bare(partition, offset, &rejection)
            .await
            .map_err(|source| MonitorError::Delivery {
                topic: self.config.dead_letter_topic.clone(),
                source,
            })?;
        self.dead_letter_deliveries.push(Box::pin(async move {
            ((partition, offset), delivered(delivery).await)
        }));
        Ok(())
    }

    /// Advances the per-record counters by what the batch counted.
    fn report_consumed(&mut self) {
        self.metrics
            .consumed
            .increment(std::mem::take(&mut self.consumed_unreported));
        for kind in [
            TimestampKind::LogAppendTime,
            TimestampKind::CreateTime,
            TimestampKind::Stamp,
        ] {
            let count = std::mem::take(&mut self.timestamp_kinds_unreported[kind as usize]);
            if count > 0 {
                self.metrics.timestamp_kind(kind).increment(count);
            }
        }
    }

    fn count_timestamp_kind(&mut self, kind: TimestampKind) {
        self.timestamp_kinds_unreported[kind as usize] += 1;
        let seen = &mut self.timestamp_kinds_seen[kind as usize];
        if !std::mem::replace(seen, true) {
            match kind {
                TimestampKind::LogAppendTime => tracing::info!("records carry LogAppendTime: event time is the broker's append time"),
                TimestampKind::CreateTime => tracing::warn!(
                    "records carry CreateTime, not LogAppendTime: event time is the producer's timestamp \
                     (right only if the producer stamps the time of the produce call, as the synchronizer does)"
                ),
                TimestampKind::Stamp => tracing::info!(
                    "latency measured {}; event time is the end stamp",
                    self.config.stamps
                ),
            }
        }
    }

    /// Advances the owned partitions' watermarks with the clock and publishes what they closed.
    async fn on_tick(&mut self) -> Result<(), MonitorError> {
        let now = now_ms();
        // Silence is evidence only while the input consumer itself can fetch: after an outage
        // the job's other clients may reconnect first.
        if self.context.unreachable_for().is_some() || !self.leaders_up.load(Ordering::Relaxed) {
            self.core.on_broker_unreachable(now);
        }
        if let Some(publication) = self.core.on_tick(now) {
            self.publish(publication).await?;
        }
        if let Some(watermark) = self.core.watermark() {
            self.metrics.watermark.set(watermark as f64 / 1000.0);
        }
        self.metrics
            .open_windows
            .set(self.core.open_windows() as f64);
        if self.config.split.is_some() {
            self.metrics.values_held.set(self.core.values_held() as f64);
        }
        if let Some(verdict) = self.refusals.tick(now) {
            self.on_refusal_verdict(verdict);
        }
        Ok(())
    }

    /// Says in one line (and on `/readyz` and `sla_monitor_all_records_refused`) that every
    /// record of the last interval was refused, and which flag to check; or that records are
    /// measured again.
    fn on_refusal_verdict(&mut self, verdict: Option<AllRefused>) {
        match verdict {
            Some(all) => {
                let line = all.describe(&format!("now measuring {}", self.config.stamps));
                tracing::error!(topic = %self.config.input_topic, "{line}");
                self.metrics.all_records_refused.set(1.0);
                self.refusal_hold = Some(self.readiness.hold(line));
            }
            None => {
                tracing::info!(
                    topic = %self.config.input_topic,
                    "records are measured again (no longer every one refused)"
                );
                self.metrics.all_records_refused.set(0.0);
                self.refusal_hold = None;
            }
        }
    }

    /// Publishes window parts, then the partitions' progress. One idempotent producer keeps
    /// them in order, so progress never overtakes a part; the parts' delivery is awaited
    /// before their records are committed.
    async fn publish(&mut self, publication: Publication) -> Result<(), MonitorError> {
        let Publication {
            parts_id,
            parts,
            progress,
            arrivals,
            splits,
        } = publication;
        let delivery_failed = |source| MonitorError::Delivery {
            topic: self.publisher.topic().to_string(),
            source,
        };
        let deliveries = self
            .publisher
            .publish_parts(&parts)
            .await
            .map_err(delivery_failed)?;
        self.metrics.parts_published.increment(parts.len() as u64);
        // Each partition's split by value follows its part on the same shuffle partition, so
        // it has arrived by the time the partition's progress lets the window merge.
        let deliveries = if splits.is_empty() {
            deliveries
        } else {
            let mut deliveries = deliveries;
            deliveries.extend(
                self.publisher
                    .publish_splits(splits)
                    .await
                    .map_err(delivery_failed)?,
            );
            deliveries
        };
        // Arrivals go with the parts they were closed with: acknowledged before the records
        // are committed.
        let deliveries = if arrivals.is_empty() {
            deliveries
        } else {
            let mut deliveries = deliveries;
            deliveries.extend(
                self.publisher
                    .publish_arrivals(arrivals)
                    .await
                    .map_err(delivery_failed)?,
            );
            deliveries
        };
        if let Some(parts_id) = parts_id {
            self.part_deliveries.push(Box::pin(async move {
                for delivery in deliveries {
                    if let Err(e) = delivered(delivery).await {
                        return (parts_id, Err(e));
                    }
                }
                (parts_id, Ok(()))
            }));
        }
        self.publisher
            .publish_progress(&progress)
            .await
            .map_err(delivery_failed)
    }
}

/// Where newly assigned `partitions` resume: their checkpoints, else the group's committed
/// offsets (see [`restore::resume_plan`]). An unreachable or busy broker is waited for
/// (retried with backoff, without limit, while the stage goes on acknowledging and committing;
/// shutdown drops this future); only a failure no retry fixes (permissions, credentials) is
/// returned.
async fn restore_partitions(
    consumer: GroupConsumer,
    reader: checkpoint_store::CheckpointReader,
    owner: checkpoint_store::Owner,
    partitions: Vec<i32>,
) -> Result<Vec<PartitionResume>, String> {
    let (group, topic) = (&owner.group, &owner.topic);
    let attempt = || async {
        // Both at once: each is a round trip or more to the brokers.
        let (committed, checkpoints) = tokio::try_join!(
            async {
                group_consumer::committed_offsets(&consumer, topic, &partitions)
                    .await
                    .map_err(|e| {
                        (
                            format!("reading the committed offsets of {topic} (group {group})"),
                            e,
                        )
                    })
            },
            async {
                reader
                    .load(&owner)
                    .await
                    .map_err(|e| (format!("reading checkpoints from {}", reader.topic()), e))
            },
        )?;
        // Only a checkpoint is judged against its partition's end.
        let judged = partitions
            .iter()
            .copied()
            .filter(|p| checkpoints.contains_key(p))
            .collect();
        let ends = group_consumer::ends(&consumer, topic, judged).await;
        let (checkpoints, beyond) = restore::fitting_checkpoints(checkpoints, &ends);
        for partition in beyond {
            checkpoint_store::refused("beyond_partition_end");
            tracing::warn!(
                partition,
                "the checkpoint of {topic} partition {partition} names offsets beyond the \
                 partition's end (forged, or left from a deleted topic of the same name): not \
                 used; the partition resumes from its committed offset"
            );
        }
        Ok(restore::resume_plan(&partitions, &committed, &checkpoints))
    };
    attempt
        .retry(retry_policy(Duration::from_millis(500)))
        .when(|(_, e): &(String, KafkaError)| is_transient(e))
        .notify(|(action, e), wait| {
            tracing::warn!(partitions = ?partitions, "{action}: {e}; retrying in {wait:.1?}")
        })
        .await
        .map_err(|(action, e)| format!("{action}: {e}"))
}
