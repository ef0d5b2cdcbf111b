//! The monitor job: reduced visits → one latency summary per event-time window, written to a
//! sink, with offsets committed only up to what the sink has acknowledged.
//!
//! The consumer is assigned every partition of the topic (a window spans all partitions, so
//! one monitor instance per job identity). Before each offset commit a
//! [`checkpoint::Checkpoint`] per partition is written to the checkpoint topic, so a restart
//! resumes from the first record of the oldest unwritten window, restores each partition's
//! watermark, and rebuilds exactly the windows it had not written.

pub mod checkpoint;
pub mod checkpoint_store;
pub mod measurement;
pub mod unacknowledged;
pub mod window_document;

use crate::kafka::dead_letter::{DeadLetterQueue, WINDOW_START_HEADER};
use crate::kafka::producer::{delivered, RELIABLE_PRODUCER};
use crate::kafka::{
    admin, ensure_topics_when_reachable, JobContext, KafkaArgs, TopicSpec, READY_BATCH,
};
use crate::rejection::{RejectReason, Rejection};
use crate::shutdown::Shutdown;
use crate::sink::driver::{self, Acknowledgement, Batch};
use crate::sink::{SinkError, WindowSink};
use crate::watermark::{WatermarkConfig, Watermarks};
use crate::window::{
    earliest, Observation, Placement, ResumePoint, WindowConfig, WindowResult, Windows,
};
use checkpoint::{Checkpoint, CheckpointRecord};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use measurement::{measure, TimestampKind};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message, Timestamp};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use unacknowledged::Unacknowledged;
use window_document::WindowDocument;

/// What the monitor needs to run.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// Brokers, client properties and topic shape.
    pub kafka: KafkaArgs,
    /// Topic of reduced visits.
    pub input_topic: String,
    /// Topic keeping refused and late records.
    pub dead_letter_topic: String,
    /// Compacted topic holding the monitor's checkpoints.
    pub checkpoint_topic: String,
    /// Consumer group id (used for committed offsets only; partitions are assigned).
    pub group: String,
    /// Identity of the monitored pipeline, part of every document id.
    pub job_name: String,
    /// Windows and percentiles.
    pub window: WindowConfig,
    /// Watermarks.
    pub watermark: WatermarkConfig,
    /// Timestamps further ahead of this host's clock are refused (ms).
    pub max_future_ms: i64,
    /// How often safe offsets are committed.
    pub commit_interval: Duration,
    /// How often the watermark is advanced by the clock and windows are closed.
    pub tick: Duration,
    /// On shutdown, how long to wait for the sink and dead-letter deliveries.
    pub drain_timeout: Duration,
}

/// Counts of what a run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MonitorReport {
    /// Records consumed.
    pub consumed: u64,
    /// Window documents acknowledged by the sink.
    pub windows_written: u64,
    /// Records late for their window (kept on the dead-letter topic).
    pub late: u64,
    /// Records refused as malformed (kept on the dead-letter topic).
    pub rejected: u64,
}

/// Why the monitor stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// Setting up Kafka failed.
    #[error("{0}")]
    Setup(String),
    /// A dead-letter record could not be delivered (its offset is not committed).
    #[error("delivering to {topic}: {source}")]
    Delivery {
        /// The dead-letter topic.
        topic: String,
        /// The broker's error.
        #[source]
        source: KafkaError,
    },
    /// The sink refused documents in a way retrying cannot fix.
    #[error("window sink: {0}")]
    Sink(SinkError),
}

/// How long a checkpoint write may wait for the broker before the commit is skipped.
const CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(10);

type PendingDelivery = Pin<Box<dyn Future<Output = (i32, i64, Result<(), KafkaError>)> + Send>>;

type PendingCheckpoint =
    Pin<Box<dyn Future<Output = (Vec<CheckpointRecord>, Result<(), String>)> + Send>>;

/// Creates the input topic (with LogAppendTime) and the dead-letter topic when missing, and
/// warns when the input topic does not use LogAppendTime.
pub async fn prepare_topics(config: &MonitorConfig, shutdown: Shutdown) -> anyhow::Result<()> {
    let k = &config.kafka;
    let client = k.client_config(&[]);
    let specs = [
        TopicSpec::new(&config.input_topic, k.partitions, k.replication_factor)
            .with_config("message.timestamp.type", "LogAppendTime"),
        TopicSpec::new(
            &config.dead_letter_topic,
            k.partitions,
            k.replication_factor,
        ),
        TopicSpec::new(&config.checkpoint_topic, 1, k.replication_factor)
            .with_config("cleanup.policy", "compact"),
    ];
    ensure_topics_when_reachable(&client, &specs, shutdown).await?;
    match admin::timestamp_type(&client, &config.input_topic).await {
        Ok(Some(t)) if t == "LogAppendTime" => {}
        Ok(other) => tracing::warn!(
            topic = %config.input_topic,
            configured = ?other,
            "topic is not configured with message.timestamp.type=LogAppendTime: event times are the \
             producer's CreateTime, which is only right if the producer stamps the produce time \
             (fix: kafka-configs --alter --entity-type topics --entity-name {} --add-config message.timestamp.type=LogAppendTime)",
            config.input_topic
        ),
        Err(e) => tracing::warn!(
            "could not read the timestamp type of {}: {e}",
            config.input_topic
        ),
    }
    Ok(())
}

/// Runs the monitor until shutdown; windows still open at shutdown are not written (they are
/// rebuilt from Kafka on the next start).
pub async fn run(
    config: MonitorConfig,
    sink: impl WindowSink,
    shutdown: Shutdown,
) -> Result<MonitorReport, MonitorError> {
    let context = JobContext::new(config.kafka.bootstrap_servers(), None);
    let consumer: StreamConsumer<JobContext> = config
        .kafka
        .consumer_config(&config.group)
        .create_with_context(context.clone())
        .map_err(|e| MonitorError::Setup(format!("creating the Kafka consumer: {e}")))?;
    let producer: FutureProducer<JobContext> = config
        .kafka
        .producer_config(RELIABLE_PRODUCER)
        .create_with_context(context.clone())
        .map_err(|e| MonitorError::Setup(format!("creating the Kafka producer: {e}")))?;
    let sink_name = sink.describe();
    let dead_letters = DeadLetterQueue::new(
        producer.clone(),
        &config.input_topic,
        &config.dead_letter_topic,
    );
    let (batches, acks) = driver::spawn(sink);
    let consumed =
        metrics::counter!("sla_records_consumed_total", "topic" => config.input_topic.clone());
    let mut monitor = Monitor {
        watermarks: Watermarks::new(config.watermark),
        windows: Windows::new(config.window.clone()),
        config,
        consumer: Arc::new(consumer),
        producer,
        context,
        batches,
        acks,
        next_batch: 0,
        unacknowledged: Unacknowledged::default(),
        deliveries: FuturesUnordered::new(),
        checkpointing: FuturesUnordered::new(),
        positions: BTreeMap::new(),
        replay_horizon: BTreeMap::new(),
        last_commit: BTreeMap::new(),
        dead_letters,
        timestamp_kinds_seen: HashSet::new(),
        report: MonitorReport::default(),
        consumed,
        by_timestamp_kind: [TimestampKind::LogAppendTime, TimestampKind::CreateTime].map(|kind| {
            metrics::counter!("sla_monitor_records_by_timestamp_type_total", "type" => kind.as_str())
        }),
    };
    monitor.assign_all_partitions().await?;
    tracing::info!(
        topic = %monitor.config.input_topic,
        job = %monitor.config.job_name,
        window_ms = monitor.config.window.size_ms,
        sink = %sink_name,
        "monitor started"
    );
    monitor.run(shutdown).await
}

struct Monitor {
    config: MonitorConfig,
    consumer: Arc<StreamConsumer<JobContext>>,
    producer: FutureProducer<JobContext>,
    context: JobContext,
    watermarks: Watermarks,
    windows: Windows,
    batches: mpsc::UnboundedSender<Batch>,
    acks: mpsc::UnboundedReceiver<Acknowledgement>,
    next_batch: u64,
    /// Window batches and dead letters not yet acknowledged.
    unacknowledged: Unacknowledged,
    deliveries: FuturesUnordered<PendingDelivery>,
    /// The checkpoint write under way, if any (at most one).
    checkpointing: FuturesUnordered<PendingCheckpoint>,
    /// Per partition: the next offset to consume and the highest event time consumed.
    positions: BTreeMap<i32, ResumePoint>,
    replay_horizon: BTreeMap<i32, i64>,
    last_commit: BTreeMap<i32, Checkpoint>,
    dead_letters: DeadLetterQueue,
    timestamp_kinds_seen: HashSet<TimestampKind>,
    report: MonitorReport,
    /// `sla_records_consumed_total` of the input topic, resolved once (not per record).
    consumed: metrics::Counter,
    /// `sla_monitor_records_by_timestamp_type_total` for LogAppendTime and CreateTime.
    by_timestamp_kind: [metrics::Counter; 2],
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Monitor {
    /// Assigns every partition of the topic, resuming from committed offsets and restoring
    /// the state saved with them.
    async fn assign_all_partitions(&mut self) -> Result<(), MonitorError> {
        let topic = self.config.input_topic.clone();
        let metadata = self
            .consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(30))
            .map_err(|e| MonitorError::Setup(format!("reading the partitions of {topic}: {e}")))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(MonitorError::Setup(format!(
                "topic {topic} has no partitions (does it exist?)"
            )));
        }
        let mut wanted = TopicPartitionList::new();
        for &p in &partitions {
            wanted.add_partition(&topic, p);
        }
        let committed = self
            .consumer
            .committed_offsets(wanted, Duration::from_secs(30))
            .map_err(|e| {
                MonitorError::Setup(format!(
                    "reading committed offsets of group {}: {e}",
                    self.config.group
                ))
            })?;
        let checkpoints = checkpoint_store::load(
            &self.config.kafka,
            &self.config.checkpoint_topic,
            &self.config.group,
            &topic,
        )
        .await
        .map_err(|e| {
            MonitorError::Setup(format!(
                "reading checkpoints from {}: {e}",
                self.config.checkpoint_topic
            ))
        })?;
        let now = now_ms();
        let mut assignment = TopicPartitionList::new();
        for element in committed.elements_for_topic(&topic) {
            let partition = element.partition();
            let checkpoint = checkpoints.get(&partition).copied();
            // The checkpoint is written before each commit, so it is never behind the group offset.
            let offset = match (checkpoint, element.offset()) {
                (Some(c), _) => Offset::Offset(c.offset),
                (None, Offset::Offset(o)) => Offset::Offset(o),
                (None, _) => Offset::Beginning,
            };
            if let Offset::Offset(o) = offset {
                self.positions.insert(
                    partition,
                    ResumePoint {
                        offset: o,
                        max_event_time_before: checkpoint.and_then(|c| c.max_event_time_before),
                    },
                );
            }
            assignment
                .add_partition_offset(&topic, partition, offset)
                .map_err(|e| MonitorError::Setup(format!("assigning {topic}/{partition}: {e}")))?;
            self.watermarks.assign(
                partition,
                checkpoint.and_then(|c| c.max_event_time_before),
                now,
            );
            if let Some(c) = checkpoint {
                self.replay_horizon.insert(partition, c.consumed_end);
                if let Some(durable) = c.durable_through {
                    self.windows.restore_closed_through(durable);
                    self.watermarks.restore(durable);
                }
            }
            tracing::info!(partition, ?offset, restored = ?checkpoint, "resuming partition");
        }
        self.consumer
            .assign(&assignment)
            .map_err(|e| MonitorError::Setup(format!("assigning partitions of {topic}: {e}")))
    }

    async fn run(&mut self, mut shutdown: Shutdown) -> Result<MonitorReport, MonitorError> {
        let mut tick = tokio::time::interval(self.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_commit = Instant::now();
        let consumer = self.consumer.clone();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.wait() => break,
                Some(ack) = self.acks.recv() => self.on_ack(ack)?,
                Some((partition, offset, result)) = self.deliveries.next() => {
                    result.map_err(|source| MonitorError::Delivery { topic: self.config.dead_letter_topic.clone(), source })?;
                    self.unacknowledged.ack_dead_letter(partition, offset);
                }
                Some((records, result)) = self.checkpointing.next() => {
                    self.finish_checkpoint(records, result, CommitMode::Async);
                }
                _ = tick.tick() => {
                    self.close_windows();
                    if last_commit.elapsed() >= self.config.commit_interval {
                        self.start_checkpoint();
                        last_commit = Instant::now();
                    }
                }
                message = consumer.recv() => {
                    let mut next = Some(message);
                    let mut taken = 0;
                    while let Some(message) = next.take() {
                        match message {
                            Ok(message) => self.on_message(&message).await?,
                            Err(e) => tracing::warn!("consuming from {}: {e}", self.config.input_topic),
                        }
                        taken += 1;
                        if taken < READY_BATCH {
                            next = consumer.recv().now_or_never();
                        }
                    }
                }
            }
        }
        self.drain().await?;
        self.final_checkpoint().await;
        tracing::info!(?self.report, open_windows = self.windows.open_count(), "monitor stopped; open windows will be rebuilt on restart");
        Ok(self.report)
    }

    /// After shutdown: no new records, no incomplete windows; wait for the sink and the
    /// dead-letter deliveries already under way, up to the drain timeout.
    async fn drain(&mut self) -> Result<(), MonitorError> {
        let deadline = Instant::now() + self.config.drain_timeout;
        while self.unacknowledged.batches() > 0 || !self.deliveries.is_empty() {
            tokio::select! {
                Some(ack) = self.acks.recv() => self.on_ack(ack)?,
                Some((partition, offset, result)) = self.deliveries.next() => {
                    if result.is_ok() {
                        self.unacknowledged.ack_dead_letter(partition, offset);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(
                        pending_batches = self.unacknowledged.batches(),
                        pending_dead_letters = self.deliveries.len(),
                        "drain timeout: unacknowledged output will be redone after a restart"
                    );
                    break;
                }
            }
        }
        Ok(())
    }

    fn on_ack(&mut self, ack: Acknowledgement) -> Result<(), MonitorError> {
        let id = ack.map_err(MonitorError::Sink)?;
        if self.unacknowledged.ack_batch(id) {
            metrics::counter!("sla_monitor_window_batches_acknowledged_total").increment(1);
        }
        Ok(())
    }

    async fn on_message(&mut self, message: &BorrowedMessage<'_>) -> Result<(), MonitorError> {
        self.context.mark_healthy();
        let (partition, offset) = (message.partition(), message.offset());
        let now = now_ms();
        self.report.consumed += 1;
        self.consumed.increment(1);
        let max_before = self.watermarks.max_event_time(partition);
        let timestamp = match message.timestamp() {
            Timestamp::LogAppendTime(t) => Some((TimestampKind::LogAppendTime, t)),
            Timestamp::CreateTime(t) => Some((TimestampKind::CreateTime, t)),
            Timestamp::NotAvailable => None,
        };
        let outcome = measure(message.payload(), timestamp, now, self.config.max_future_ms);
        let position = self.positions.entry(partition).or_insert(ResumePoint {
            offset,
            max_event_time_before: max_before,
        });
        position.offset = offset + 1;
        let measurement = match outcome {
            Ok(m) => m,
            Err(rejection) => {
                self.report.rejected += 1;
                return self.dead_letter(message, rejection, None, max_before).await;
            }
        };
        position.max_event_time_before = Some(
            position
                .max_event_time_before
                .map_or(measurement.event_time, |m| m.max(measurement.event_time)),
        );
        self.count_timestamp_kind(measurement.timestamp_kind);
        let placement = self.windows.place(Observation {
            partition,
            offset,
            event_time: measurement.event_time,
            latency_ms: measurement.latency_ms,
            partition_max_before: max_before,
            partition_watermark: self.watermarks.partition_watermark(partition),
            replayed: self
                .replay_horizon
                .get(&partition)
                .is_some_and(|&h| offset < h),
        });
        self.watermarks
            .observe(partition, measurement.event_time, now);
        match placement {
            Placement::Accepted { .. } => {}
            Placement::AlreadyCounted { .. } => {
                metrics::counter!("sla_monitor_replayed_already_written_total").increment(1);
            }
            Placement::Late { window_start } => {
                self.report.late += 1;
                metrics::counter!("sla_monitor_late_records_total").increment(1);
                let detail = format!(
                    "window starting {} had closed (watermark {:?}) when the record arrived",
                    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(window_start)
                        .unwrap_or_default()
                        .to_rfc3339(),
                    self.watermarks.current()
                );
                self.dead_letter(
                    message,
                    Rejection::new(RejectReason::Late, detail),
                    Some(window_start),
                    max_before,
                )
                .await?;
            }
        }
        Ok(())
    }

    fn count_timestamp_kind(&mut self, kind: TimestampKind) {
        match kind {
            TimestampKind::LogAppendTime => self.by_timestamp_kind[0].increment(1),
            TimestampKind::CreateTime => self.by_timestamp_kind[1].increment(1),
        }
        if self.timestamp_kinds_seen.insert(kind) {
            match kind {
                TimestampKind::LogAppendTime => tracing::info!("records carry LogAppendTime: event time is the broker's append time"),
                TimestampKind::CreateTime => tracing::warn!(
                    "records carry CreateTime, not LogAppendTime: event time is the producer's timestamp \
                     (right only if the producer stamps the time of the produce call, as the synchronizer does)"
                ),
            }
        }
    }

    async fn dead_letter(
        &mut self,
        message: &BorrowedMessage<'_>,
        rejection: Rejection,
        late_for_window: Option<i64>,
        max_before: Option<i64>,
    ) -> Result<(), MonitorError> {
        let (partition, offset) = (message.partition(), message.offset());
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
        self.unacknowledged
            .add_dead_letter(partition, offset, max_before);
        self.deliveries.push(Box::pin(async move {
            (partition, offset, delivered(delivery).await)
        }));
        Ok(())
    }

    /// Advances the watermark with the clock and sends every window it closes to the sink.
    fn close_windows(&mut self) {
        let Some(watermark) = self.watermarks.advance(now_ms()) else {
            return;
        };
        metrics::gauge!("sla_monitor_watermark_seconds").set(watermark as f64 / 1000.0);
        metrics::gauge!("sla_monitor_open_windows").set(self.windows.open_count() as f64);
        let closed = self.windows.close(watermark);
        if closed.is_empty() {
            return;
        }
        let close_at = closed
            .iter()
            .map(|r| self.config.window.close_at(r.start_ms))
            .min()
            .expect("non-empty");
        let mut resume_points = BTreeMap::new();
        for result in &closed {
            for (&p, &point) in &result.resume_points {
                earliest(&mut resume_points, p, point);
            }
            log_window(result);
            export_window(result);
        }
        let documents: Vec<WindowDocument> = closed
            .iter()
            .map(|r| WindowDocument::new(&self.config.job_name, self.config.window.sla_ms, r))
            .collect();
        self.report.windows_written += documents.len() as u64;
        metrics::counter!("sla_monitor_windows_closed_total").increment(documents.len() as u64);
        let id = self.next_batch;
        self.next_batch += 1;
        self.unacknowledged.add_batch(id, close_at, resume_points);
        // The sink task only ends after a fatal error, which arrives as an ack and stops us.
        let _ = self.batches.send(Batch { id, documents });
    }

    /// The checkpoint of every partition whose resume point or state changed since the last
    /// commit: per partition, the first offset still needed (by an open window, a window not
    /// yet acknowledged by the sink, or a dead-letter record not yet acknowledged).
    fn plan_checkpoints(&self) -> Vec<CheckpointRecord> {
        self.unacknowledged
            .plan(
                &self.positions,
                self.windows.resume_points(),
                self.windows.closed_through(),
            )
            .into_iter()
            .filter(|(partition, checkpoint)| self.last_commit.get(partition) != Some(checkpoint))
            .map(|(partition, checkpoint)| CheckpointRecord {
                group: self.config.group.clone(),
                topic: self.config.input_topic.clone(),
                partition,
                checkpoint,
            })
            .collect()
    }

    /// Starts writing the checkpoints in the background (one write at a time); offsets are
    /// committed when the broker has acknowledged them (see [`Self::finish_checkpoint`]), so a
    /// slow or unreachable broker never stalls the closing of windows.
    fn start_checkpoint(&mut self) {
        if !self.checkpointing.is_empty() {
            return;
        }
        let records = self.plan_checkpoints();
        if records.is_empty() {
            return;
        }
        let (producer, topic) = (self.producer.clone(), self.config.checkpoint_topic.clone());
        self.checkpointing.push(Box::pin(async move {
            let saved = tokio::time::timeout(
                CHECKPOINT_TIMEOUT,
                checkpoint_store::save(&producer, &topic, &records),
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

    /// After the checkpoints are acknowledged, commits the consumer group's offsets (kept for
    /// lag tooling; the checkpoint is what a restart resumes from).
    fn finish_checkpoint(
        &mut self,
        records: Vec<CheckpointRecord>,
        result: Result<(), String>,
        mode: CommitMode,
    ) {
        if let Err(e) = result {
            tracing::warn!(
                "writing checkpoints to {}: {e}; will retry",
                self.config.checkpoint_topic
            );
            return;
        }
        let mut list = TopicPartitionList::new();
        for record in &records {
            list.add_partition_offset(
                &self.config.input_topic,
                record.partition,
                Offset::Offset(record.checkpoint.offset),
            )
            .expect("valid offset");
        }
        for record in records {
            metrics::gauge!("sla_committed_offset", "topic" => self.config.input_topic.clone(), "partition" => record.partition.to_string())
                .set(record.checkpoint.offset as f64);
            self.last_commit.insert(record.partition, record.checkpoint);
        }
        if let Err(e) = self.consumer.commit(&list, mode) {
            tracing::warn!(
                "committing offsets of {}: {e}; will retry",
                self.config.input_topic
            );
        }
    }

    /// At shutdown: waits for a checkpoint under way, then writes and commits a final one.
    async fn final_checkpoint(&mut self) {
        while let Some((records, result)) = self.checkpointing.next().await {
            self.finish_checkpoint(records, result, CommitMode::Sync);
        }
        self.start_checkpoint();
        while let Some((records, result)) = self.checkpointing.next().await {
            self.finish_checkpoint(records, result, CommitMode::Sync);
        }
    }
}

/// The latest closed window as gauges: the per-window aggregate Prometheus sees (a histogram
/// fed per record would hold every sample until scraped and repeat what the window computes).
fn export_window(result: &WindowResult) {
    for (q, value) in &result.stats.quantiles {
        metrics::gauge!("sla_monitor_window_latency_seconds", "quantile" => q.to_string())
            .set(value / 1000.0);
    }
    metrics::gauge!("sla_monitor_window_records").set(result.stats.count as f64);
    metrics::gauge!("sla_monitor_window_over_sla_records").set(result.over_sla as f64);
    metrics::gauge!("sla_monitor_window_start_seconds").set(result.start_ms as f64 / 1000.0);
}

fn log_window(result: &WindowResult) {
    let q: Vec<String> = result
        .stats
        .quantiles
        .iter()
        .map(|(q, v)| format!("{}={v:.0}", window_document::percentile_field(*q)))
        .collect();
    tracing::info!(
        start = %chrono::DateTime::<chrono::Utc>::from_timestamp_millis(result.start_ms).unwrap_or_default().to_rfc3339(),
        count = result.stats.count,
        over_sla = result.over_sla,
        "window closed: {} ms",
        q.join(" ")
    );
}
