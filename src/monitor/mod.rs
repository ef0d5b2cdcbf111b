//! The monitor job: reduced visits → one latency summary per event-time window, written to a
//! sink, with offsets committed only up to output the broker has acknowledged.
//!
//! Several instances of one monitor (same `--group`, same `--job-name`) share the work
//! through Kafka's consumer-group protocol, in two stages:
//! - **partitions**: the input consumer group spreads the input partitions over the instances
//!   (cooperative rebalancing). For each partition it owns, an instance closes windows by the
//!   partition's own watermark and publishes their parts, then the partition's progress, to the
//!   compacted shuffle topic (see `shuffle`); offsets are committed once those parts are
//!   acknowledged, after a [`checkpoint::Checkpoint`] per partition, so whichever instance
//!   owns the partition next resumes from the first record of its oldest unpublished window;
//! - **merge**: a second group (`<group>.merge`) spreads the shuffle partitions; the owner of
//!   one merges each of its windows once every input partition has passed its end (see
//!   `merge`), writes it to the sink, and marks it written.
//!
//! One instance does both for everything; killing an instance moves its partitions (and its
//! merging) to the others, who resume from the checkpoints and the shuffle topic.
//!
//! Files by role: [`restore`] (checkpoints → where each partition resumes), [`decisions`] (every
//! decision of the partition stage, no I/O), [`merging`] (the merge stage, no I/O),
//! [`committer`] (checkpoint writes and offset commits), and this module's loop, which only
//! moves records, ticks and acknowledgements between Kafka, the stages and the sink.

pub mod checkpoint;
pub mod checkpoint_store;
pub mod committer;
pub mod decisions;
pub mod measurement;
pub mod merging;
pub mod restore;
pub mod unacknowledged;

use crate::assignment_watchdog::{self, AssignmentWatchdog, Verdict};
use crate::http::Readiness;
use crate::kafka::dead_letter::{DeadLetterQueue, WINDOW_START_HEADER};
use crate::kafka::producer::{delivered, enqueue, OutgoingRecord, RELIABLE_PRODUCER};
use crate::kafka::rebalance_events::{RebalanceNotifier, Rebalanced};
use crate::kafka::retire::retire_when_unshared;
use crate::kafka::{
    admin, ensure_topics_when_reachable, JobContext, KafkaArgs, TopicSpec, READY_BATCH,
};
use crate::shuffle::{merging_partition, part_record, Shuffle, ShuffleRecord};
use crate::shutdown::Shutdown;
use crate::sink::driver::{self, Acknowledgement, Batch};
use crate::sink::{SinkError, WindowSink};
use crate::watermark::WatermarkConfig;
use crate::window::{WindowConfig, WindowResult};
use crate::window_document::{percentile_field, WindowDocument};
use committer::Committer;
use decisions::{CoreConfig, MonitorCore, Publication, RecordDecision};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use measurement::TimestampKind;
use merging::MergeStage;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message, Timestamp};
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

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
    /// Compacted topic where instances publish window parts and progress and merge windows.
    pub shuffle_topic: String,
    /// Partitions of the shuffle topic when the monitor creates it (how many instances can
    /// merge windows at once; one is plenty: a record per window and partition).
    pub shuffle_partitions: i32,
    /// Consumer group of the instances sharing the input partitions (`<group>.merge` shares
    /// the shuffle partitions).
    pub group: String,
    /// Identity of the monitored pipeline, part of every document id.
    pub job_name: String,
    /// Windows and percentiles.
    pub window: WindowConfig,
    /// Watermarks.
    pub watermark: WatermarkConfig,
    /// Plausibility bounds of timestamps and latencies.
    pub plausibility: measurement::Plausibility,
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
    /// Window documents acknowledged by the sink (windows this instance merged).
    pub windows_written: u64,
    /// Window parts published for the partitions this instance owned.
    pub parts_published: u64,
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
    /// A dead-letter record or a window part could not be delivered (its offset is not
    /// committed).
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
    /// A record of this monitor on the shuffle topic does not decode (another version?).
    #[error("{0}")]
    Shuffle(#[from] crate::shuffle::ShuffleError),
}

type PendingDelivery = Pin<Box<dyn Future<Output = (i32, i64, Result<(), KafkaError>)> + Send>>;
type PendingParts = Pin<Box<dyn Future<Output = (u64, Result<(), KafkaError>)> + Send>>;

/// Brokers unreachable this long make the monitor report not ready.
pub const KAFKA_UNREACHABLE_LIMIT: Duration = Duration::from_secs(30);

/// A window batch the sink has not acknowledged for this long makes the monitor not ready.
pub const SINK_STALLED_LIMIT: Duration = Duration::from_secs(60);

/// Creates the input topic (with LogAppendTime), the dead-letter, checkpoint and shuffle topics
/// when missing, and warns when the input topic does not use LogAppendTime.
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
        TopicSpec::new(
            &config.shuffle_topic,
            config.shuffle_partitions,
            k.replication_factor,
        )
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
/// rebuilt from Kafka by whichever instance owns their partitions next).
pub async fn run(
    config: MonitorConfig,
    sink: impl WindowSink,
    readiness: Readiness,
    shutdown: Shutdown,
) -> Result<MonitorReport, MonitorError> {
    let context = JobContext::new(config.kafka.bootstrap_servers());
    let (input_context, input_events) =
        RebalanceNotifier::new(context.clone(), &config.input_topic);
    let input_leaders_up = input_context.leaders_up();
    let consumer = subscribed(
        config.kafka.consumer_config(&config.group),
        input_context,
        &config.input_topic,
    )?;
    let merge_group = merge_group_of(&config.group);
    let (merge_context, merge_events) =
        RebalanceNotifier::new(context.clone(), &config.shuffle_topic);
    // The merge consumer never commits: each assignment re-reads its shuffle partition.
    let merge_consumer = subscribed(
        config.kafka.consumer_config(&merge_group),
        merge_context.clone(),
        &config.shuffle_topic,
    )?;
    let session_timeout = config.kafka.session_timeout(&merge_group);
    let producer: FutureProducer<JobContext> = config
        .kafka
        .producer_config(RELIABLE_PRODUCER)
        .create_with_context(context.clone())
        .map_err(|e| MonitorError::Setup(format!("creating the Kafka producer: {e}")))?;
    let shuffle_partitions = partition_ids(&merge_consumer, &config.shuffle_topic)
        .await?
        .len() as i32;
    let sink_name = sink.describe();
    let core = MonitorCore::new(CoreConfig {
        input_topic: config.input_topic.clone(),
        group: config.group.clone(),
        job_name: config.job_name.clone(),
        window: config.window.clone(),
        watermark: config.watermark,
        plausibility: config.plausibility,
    });
    let shuffle = Shuffle::new(&config.group, &config.input_topic);
    // The input partitions are read when shuffle partitions are assigned (they may grow).
    let merge = MergeStage::new(config.window.clone(), shuffle.clone());
    let (batches, acks) = driver::spawn(sink);
    readiness.set_ready();
    for topic in [&config.input_topic, &config.shuffle_topic] {
        metrics::gauge!("sla_assigned_partitions", "topic" => topic.clone()).set(0.0);
    }
    let shuffle_topic = config.shuffle_topic.clone();
    let mut monitor = Monitor {
        committer: Committer::new(
            consumer.clone(),
            producer.clone(),
            &config.checkpoint_topic,
            &config.input_topic,
        ),
        dead_letters: DeadLetterQueue::new(
            producer.clone(),
            &config.input_topic,
            &config.dead_letter_topic,
        ),
        consumed: metrics::counter!("sla_records_consumed_total", "topic" => config.input_topic.clone()),
        by_timestamp_kind: [TimestampKind::LogAppendTime, TimestampKind::CreateTime].map(|kind| {
            metrics::counter!("sla_monitor_records_by_timestamp_type_total", "type" => kind.as_str())
        }),
        negative_latencies: {
            let counter = metrics::counter!("sla_monitor_negative_latency_records_total");
            counter.increment(0);
            counter
        },
        readiness,
        pending_batches: BTreeMap::new(),
        config,
        consumer,
        merge_consumer,
        merge_context,
        input_leaders_up,
        merge_watchdog: AssignmentWatchdog::new(
            assignment_watchdog::default_limit(session_timeout),
            Instant::now(),
        ),
        merge_rejoins: metrics::counter!("sla_consumer_group_rejoins_total", "topic" => shuffle_topic),
        input_events,
        merge_events,
        producer,
        shuffle,
        shuffle_partitions,
        owned: BTreeSet::new(),
        context,
        core,
        merge,
        batches,
        acks,
        next_batch: 0,
        deliveries: FuturesUnordered::new(),
        part_deliveries: FuturesUnordered::new(),
        timestamp_kinds_seen: HashSet::new(),
        windows_written: 0,
    };
    tracing::info!(
        topic = %monitor.config.input_topic,
        job = %monitor.config.job_name,
        group = %monitor.config.group,
        shuffle = %monitor.config.shuffle_topic,
        window_ms = monitor.config.window.size_ms,
        sink = %sink_name,
        "monitor started"
    );
    monitor.run(shutdown).await
}

/// The consumer group of the merge stage: the input group's name + `.merge`.
fn merge_group_of(group: &str) -> String {
    format!("{group}.merge")
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A consumer of `topic` in the group `settings` name, subscribed, reporting rebalances;
/// partition EOF on (reaching a partition's end is the evidence idleness needs, and the
/// merge stage's signal that it has read its shuffle partition), cooperative rebalancing
/// unless the user chose an assignor.
fn subscribed(
    mut settings: ClientConfig,
    context: RebalanceNotifier,
    topic: &str,
) -> Result<Arc<StreamConsumer<RebalanceNotifier>>, MonitorError> {
    settings.set("enable.partition.eof", "true");
    if settings.get("partition.assignment.strategy").is_none() {
        settings.set("partition.assignment.strategy", "cooperative-sticky");
    }
    let consumer: StreamConsumer<RebalanceNotifier> = settings
        .create_with_context(context)
        .map_err(|e| MonitorError::Setup(format!("creating the consumer of {topic}: {e}")))?;
    consumer
        .subscribe(&[topic])
        .map_err(|e| MonitorError::Setup(format!("subscribing to {topic}: {e}")))?;
    Ok(Arc::new(consumer))
}

/// The partitions of `topic` (off the async workers: the call waits for the broker).
async fn partition_ids(
    consumer: &Arc<StreamConsumer<RebalanceNotifier>>,
    topic: &str,
) -> Result<Vec<i32>, MonitorError> {
    let (reader, topic) = (consumer.clone(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let metadata = reader
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
        Ok(partitions)
    })
    .await
    .map_err(|e| MonitorError::Setup(format!("reading partitions: {e}")))?
}

/// A batch of window documents in the sink, and what to record once it is written.
struct SinkBatch {
    shuffle_partition: i32,
    /// Window documents in the batch.
    windows: u64,
    watermark: i64,
    /// Keys of the parts the written windows were merged from (deleted afterwards).
    parts: Vec<String>,
    sent: Instant,
}

/// The monitor's I/O: Kafka in, shuffle and dead letters out, sink for merged windows; the
/// partition stage ([`MonitorCore`]) and the merge stage ([`MergeStage`]) decide.
struct Monitor {
    config: MonitorConfig,
    readiness: Readiness,
    /// Window documents in the sink, by batch id.
    pending_batches: BTreeMap<u64, SinkBatch>,
    consumer: Arc<StreamConsumer<RebalanceNotifier>>,
    merge_consumer: Arc<StreamConsumer<RebalanceNotifier>>,
    /// The merge consumer's context, for a fresh consumer when it rejoins.
    merge_context: RebalanceNotifier,
    /// The input consumer's own connection to its partitions' leaders (its statistics).
    input_leaders_up: Arc<std::sync::atomic::AtomicBool>,
    /// Notices a merge group left stranded (see `check_merge_assignment`).
    merge_watchdog: AssignmentWatchdog,
    /// `sla_consumer_group_rejoins_total` of the shuffle topic.
    merge_rejoins: metrics::Counter,
    input_events: mpsc::UnboundedReceiver<Rebalanced>,
    merge_events: mpsc::UnboundedReceiver<Rebalanced>,
    producer: FutureProducer<JobContext>,
    shuffle: Shuffle,
    shuffle_partitions: i32,
    /// Input partitions this instance owns now.
    owned: BTreeSet<i32>,
    context: JobContext,
    core: MonitorCore,
    merge: MergeStage,
    committer: Committer,
    dead_letters: DeadLetterQueue,
    batches: mpsc::UnboundedSender<Batch>,
    acks: mpsc::UnboundedReceiver<Acknowledgement>,
    next_batch: u64,
    deliveries: FuturesUnordered<PendingDelivery>,
    part_deliveries: FuturesUnordered<PendingParts>,
    timestamp_kinds_seen: HashSet<TimestampKind>,
    /// Window documents the sink acknowledged (the rest of the report is the core's).
    windows_written: u64,
    /// `sla_records_consumed_total` of the input topic, resolved once (not per record).
    consumed: metrics::Counter,
    /// `sla_monitor_records_by_timestamp_type_total` for LogAppendTime and CreateTime.
    by_timestamp_kind: [metrics::Counter; 2],
    /// `sla_monitor_negative_latency_records_total`: accepted records whose stamp lies after
    /// their timestamp (clock skew within tolerance).
    negative_latencies: metrics::Counter,
}

impl Monitor {
    async fn run(&mut self, mut shutdown: Shutdown) -> Result<MonitorReport, MonitorError> {
        let mut tick = tokio::time::interval(self.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_commit = Instant::now();
        let consumer = self.consumer.clone();
        loop {
            // Cloned each turn: `check_merge_assignment` may replace it.
            let merge_consumer = self.merge_consumer.clone();
            tokio::select! {
                biased;
                _ = shutdown.wait() => break,
                Some(ack) = self.acks.recv() => self.on_sink_ack(ack).await?,
                Some((partition, offset, result)) = self.deliveries.next() => {
                    result.map_err(|source| MonitorError::Delivery { topic: self.config.dead_letter_topic.clone(), source })?;
                    self.core.on_dead_letter_ack(partition, offset);
                }
                Some((batch, result)) = self.part_deliveries.next() => {
                    result.map_err(|source| MonitorError::Delivery { topic: self.config.shuffle_topic.clone(), source })?;
                    self.core.on_batch_ack(batch);
                }
                written = self.committer.next_written() => {
                    self.committer.finish(&mut self.core, written);
                }
                _ = tick.tick() => {
                    self.on_tick().await?;
                    self.check_merge_assignment()?;
                    self.update_readiness();
                    if last_commit.elapsed() >= self.config.commit_interval {
                        self.committer.start(&self.core);
                        last_commit = Instant::now();
                    }
                }
                message = merge_consumer.recv() => {
                    self.apply_merge_rebalances().await?;
                    match message {
                        Ok(message) => {
                            self.context.mark_healthy();
                            self.merge.on_record(message.partition(), message.key(), message.payload())?;
                        }
                        Err(KafkaError::PartitionEOF(m)) => {
                            self.context.mark_healthy();
                            self.merge.caught_up(m);
                        }
                        Err(e) => tracing::warn!("consuming from {}: {e}", self.config.shuffle_topic),
                    }
                }
                message = consumer.recv() => {
                    let mut next = Some(message);
                    let mut taken = 0;
                    while let Some(message) = next.take() {
                        self.apply_input_rebalances().await?;
                        match message {
                            Ok(message) => self.on_message(&message).await?,
                            Err(KafkaError::PartitionEOF(partition)) => {
                                self.context.mark_healthy();
                                self.core.on_caught_up(partition);
                            }
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
        // A last tick: window parts the watermarks already closed are published, and merged
        // windows written, before stopping (the windows still open are incomplete).
        self.on_tick().await?;
        let deadline = Instant::now() + self.config.drain_timeout;
        self.drain(deadline).await?;
        self.merge_what_was_published(deadline).await?;
        self.drain(deadline).await?;
        self.committer.finish_all(&mut self.core).await;
        let report = MonitorReport {
            windows_written: self.windows_written,
            ..self.core.report()
        };
        tracing::info!(
            ?report,
            open_windows = self.core.open_windows(),
            "monitor stopped; open windows will be rebuilt by the partitions' next owner"
        );
        Ok(report)
    }

    /// Takes the input partitions the group assigned (restoring each from its checkpoint) and
    /// drops those it took away, before any record of theirs is handled.
    async fn apply_input_rebalances(&mut self) -> Result<(), MonitorError> {
        while let Ok(event) = self.input_events.try_recv() {
            match event {
                Rebalanced::Assigned(partitions) => self.take_partitions(&partitions).await?,
                Rebalanced::Revoked(partitions) => {
                    for p in partitions {
                        self.owned.remove(&p);
                        self.core.revoke(p);
                    }
                }
            }
            metrics::gauge!("sla_assigned_partitions", "topic" => self.config.input_topic.clone())
                .set(self.owned.len() as f64);
        }
        Ok(())
    }

    /// Restores newly assigned input partitions from their checkpoints (or the group's
    /// committed offsets). The blocking librdkafka call runs off the async workers.
    async fn take_partitions(&mut self, partitions: &[i32]) -> Result<(), MonitorError> {
        if partitions.is_empty() {
            return Ok(());
        }
        let topic = self.config.input_topic.clone();
        let mut wanted = TopicPartitionList::new();
        for &p in partitions {
            wanted.add_partition(&topic, p);
        }
        let (reader, group) = (self.consumer.clone(), self.config.group.clone());
        let committed = tokio::task::spawn_blocking(move || {
            reader.committed_offsets(wanted, Duration::from_secs(30))
        })
        .await
        .map_err(|e| MonitorError::Setup(format!("reading committed offsets: {e}")))?
        .map_err(|e| {
            MonitorError::Setup(format!("reading committed offsets of group {group}: {e}"))
        })?;
        let committed: BTreeMap<i32, i64> = committed
            .elements_for_topic(&topic)
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect();
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
        for resume in restore::resume_plan(partitions, &committed, &checkpoints) {
            self.core.assign(&resume, now);
            self.owned.insert(resume.partition);
            tracing::info!(partition = resume.partition, offset = ?resume.offset, restored = ?resume.restored, "resuming partition");
        }
        Ok(())
    }

    /// Takes the shuffle partitions the merge group assigned (read from their beginning) and
    /// drops those it took away.
    async fn apply_merge_rebalances(&mut self) -> Result<(), MonitorError> {
        while let Ok(event) = self.merge_events.try_recv() {
            match event {
                Rebalanced::Assigned(partitions) => {
                    // Partitions may have been added to the input topic meanwhile.
                    let inputs =
                        partition_ids(&self.merge_consumer, &self.config.input_topic).await?;
                    self.merge.set_input_partitions(inputs);
                    self.merge.assign(&partitions);
                }
                Rebalanced::Revoked(partitions) => {
                    self.merge.revoke(&partitions);
                    self.pending_batches
                        .retain(|_, b| !partitions.contains(&b.shuffle_partition));
                }
            }
            metrics::gauge!("sla_assigned_partitions", "topic" => self.config.shuffle_topic.clone())
                .set(self.merge.owned().len() as f64);
        }
        Ok(())
    }

    /// Every instance is a member of both groups, so an instance that holds **every** input
    /// partition is alone in the input group and should hold every shuffle partition too. When
    /// it holds none of them for the watchdog's limit (twice the session timeout, at least
    /// 30 s), the merge group's rebalance did not complete for it — seen on tansu 0.6, where a
    /// dead member can keep its shuffle partition after its session expired — and nobody merges
    /// the windows. It then joins the merge group again with a fresh consumer (each further
    /// attempt waits twice as long). Apache Kafka removes a dead member from both groups alike,
    /// so there this never lasts.
    fn check_merge_assignment(&mut self) -> Result<(), MonitorError> {
        let inputs = self.merge.input_partition_count();
        let alone = inputs > 0 && self.owned.len() == inputs;
        let held = if alone { self.merge.owned().len() } else { 1 };
        let now = Instant::now();
        let Verdict::Stuck { for_how_long } = self.merge_watchdog.observe(held, now) else {
            return Ok(());
        };
        self.merge_watchdog.acted(now);
        tracing::error!(
            held_none_for = ?for_how_long,
            input_partitions = inputs,
            next_attempt_in = ?self.merge_watchdog.limit(),
            "this instance holds every partition of {} but no partition of {}: the merge group's \
             rebalance did not complete for it; joining the merge group again with a fresh consumer",
            self.config.input_topic,
            self.config.shuffle_topic
        );
        self.merge_rejoins.increment(1);
        let fresh = subscribed(
            self.config
                .kafka
                .consumer_config(&merge_group_of(&self.config.group)),
            self.merge_context.clone(),
            &self.config.shuffle_topic,
        )?;
        retire_when_unshared(std::mem::replace(&mut self.merge_consumer, fresh));
        Ok(())
    }

    /// After shutdown: no new records, no incomplete windows; wait for the sink, the window
    /// parts and the dead letters already under way, up to the drain timeout.
    async fn drain(&mut self, deadline: Instant) -> Result<(), MonitorError> {
        while !self.pending_batches.is_empty()
            || !self.deliveries.is_empty()
            || !self.part_deliveries.is_empty()
        {
            tokio::select! {
                Some(ack) = self.acks.recv() => self.on_sink_ack(ack).await?,
                Some((partition, offset, result)) = self.deliveries.next() => {
                    if result.is_ok() {
                        self.core.on_dead_letter_ack(partition, offset);
                    }
                }
                Some((batch, result)) = self.part_deliveries.next() => {
                    if result.is_ok() {
                        self.core.on_batch_ack(batch);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(
                        pending_batches = self.pending_batches.len(),
                        pending_dead_letters = self.deliveries.len(),
                        pending_parts = self.part_deliveries.len(),
                        "drain timeout: unacknowledged output will be redone after a restart"
                    );
                    break;
                }
            }
        }
        Ok(())
    }

    /// At shutdown, for the shuffle partitions this instance merges: reads them up to their
    /// end (this instance's last parts and progress included) and writes the windows that are
    /// complete, so a stop leaves no finished window for the next run.
    async fn merge_what_was_published(&mut self, deadline: Instant) -> Result<(), MonitorError> {
        let owned = self.merge.owned();
        if owned.is_empty() {
            return Ok(());
        }
        let (producer, consumer, topic) = (
            self.producer.clone(),
            self.merge_consumer.clone(),
            self.config.shuffle_topic.clone(),
        );
        let ends = tokio::task::spawn_blocking(move || {
            let _ = producer.flush(Duration::from_secs(5));
            owned
                .into_iter()
                .filter_map(|m| {
                    let (_, high) = consumer
                        .fetch_watermarks(&topic, m, Duration::from_secs(5))
                        .ok()?;
                    Some((m, high))
                })
                .collect::<BTreeMap<i32, i64>>()
        })
        .await
        .map_err(|e| MonitorError::Setup(format!("reading the shuffle's end: {e}")))?;
        // Where the consumer stands (local, no request): what it already returned.
        let mut read: BTreeMap<i32, i64> = self
            .merge_consumer
            .position()
            .map(|list| {
                list.elements_for_topic(&self.config.shuffle_topic)
                    .iter()
                    .filter_map(|e| match e.offset() {
                        Offset::Offset(o) => Some((e.partition(), o)),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let merge_consumer = self.merge_consumer.clone();
        // Nothing returned yet reads as offset 0 (an empty partition is read to its end).
        while ends
            .iter()
            .any(|(m, end)| read.get(m).copied().unwrap_or(0) < *end)
        {
            tokio::select! {
                message = merge_consumer.recv() => match message {
                    Ok(message) => {
                        self.merge.on_record(message.partition(), message.key(), message.payload())?;
                        read.insert(message.partition(), message.offset() + 1);
                    }
                    Err(KafkaError::PartitionEOF(m)) => {
                        self.merge.caught_up(m);
                        read.insert(m, ends.get(&m).copied().unwrap_or(0));
                    }
                    Err(e) => tracing::warn!("consuming from {}: {e}", self.config.shuffle_topic),
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        for merged in self.merge.ready() {
            self.write(merged);
        }
        Ok(())
    }

    /// The sink wrote a batch of merged windows: records on the shuffle partition that they
    /// are written, then deletes the parts they were merged from.
    async fn on_sink_ack(&mut self, ack: Acknowledgement) -> Result<(), MonitorError> {
        let id = ack.map_err(MonitorError::Sink)?;
        let Some(batch) = self.pending_batches.remove(&id) else {
            return Ok(());
        };
        metrics::counter!("sla_monitor_window_batches_acknowledged_total").increment(1);
        self.windows_written += batch.windows;
        if !self.merge.owns(batch.shuffle_partition) {
            return Ok(());
        }
        let marker = ShuffleRecord::Merged {
            written_through: batch.watermark,
        };
        self.send_shuffle(
            batch.shuffle_partition,
            &self.shuffle.key(&marker),
            Some(&Shuffle::encode(&marker)),
        )
        .await?;
        for key in &batch.parts {
            self.send_shuffle(batch.shuffle_partition, key, None)
                .await?;
        }
        self.merge.written(batch.shuffle_partition, batch.watermark);
        Ok(())
    }

    /// Enqueues one record on shuffle partition `m` (a tombstone without `value`); its
    /// delivery is not awaited (see the callers for why that is safe).
    async fn send_shuffle(
        &self,
        m: i32,
        key: &str,
        value: Option<&[u8]>,
    ) -> Result<rdkafka::producer::DeliveryFuture, MonitorError> {
        enqueue(
            &self.producer,
            OutgoingRecord {
                topic: &self.config.shuffle_topic,
                key: Some(key.as_bytes()),
                value,
                partition: Some(m),
            },
            None,
        )
        .await
        .map_err(|source| MonitorError::Delivery {
            topic: self.config.shuffle_topic.clone(),
            source,
        })
    }

    async fn on_message(&mut self, message: &BorrowedMessage<'_>) -> Result<(), MonitorError> {
        self.context.mark_healthy();
        if !self.owned.contains(&message.partition()) {
            // Fetched before the partition was taken away: its new owner handles it.
            return Ok(());
        }
        self.consumed.increment(1);
        let timestamp = match message.timestamp() {
            Timestamp::LogAppendTime(t) => Some((TimestampKind::LogAppendTime, t)),
            Timestamp::CreateTime(t) => Some((TimestampKind::CreateTime, t)),
            Timestamp::NotAvailable => None,
        };
        let decision = self.core.on_record(
            message.partition(),
            message.offset(),
            timestamp,
            message.payload(),
            now_ms(),
        );
        match decision {
            RecordDecision::Accepted {
                timestamp_kind,
                negative_latency,
            } => {
                self.count_timestamp_kind(timestamp_kind);
                if negative_latency {
                    self.negative_latencies.increment(1);
                }
            }
            RecordDecision::AlreadyCounted => {
                metrics::counter!("sla_monitor_replayed_already_written_total").increment(1);
            }
            RecordDecision::DeadLetter {
                rejection,
                late_for_window,
            } => {
                if late_for_window.is_some() {
                    metrics::counter!("sla_monitor_late_records_total").increment(1);
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
                let (partition, offset) = (message.partition(), message.offset());
                self.deliveries.push(Box::pin(async move {
                    (partition, offset, delivered(delivery).await)
                }));
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

    /// Advances the owned partitions' watermarks with the clock and publishes what they
    /// closed; then writes the windows the merge stage can merge.
    async fn on_tick(&mut self) -> Result<(), MonitorError> {
        // Rebalances that arrived without records after them (a partition taken away).
        self.apply_input_rebalances().await?;
        self.apply_merge_rebalances().await?;
        let now = now_ms();
        // Silence is evidence only while the input consumer itself can fetch: after an outage
        // the job's other clients may reconnect first.
        if self.context.unreachable_for().is_some()
            || !self
                .input_leaders_up
                .load(std::sync::atomic::Ordering::Relaxed)
        {
            self.core.on_broker_unreachable(now);
        }
        if let Some(publication) = self.core.on_tick(now) {
            self.publish(publication).await?;
        }
        if let Some(watermark) = self.core.watermark() {
            metrics::gauge!("sla_monitor_watermark_seconds").set(watermark as f64 / 1000.0);
        }
        metrics::gauge!("sla_monitor_open_windows").set(self.core.open_windows() as f64);
        for merged in self.merge.ready() {
            self.write(merged);
        }
        if let Some(watermark) = self.merge.watermark() {
            metrics::gauge!("sla_monitor_merge_watermark_seconds").set(watermark as f64 / 1000.0);
        }
        metrics::gauge!("sla_monitor_merge_pending_windows")
            .set(self.merge.pending_windows() as f64);
        metrics::gauge!("sla_monitor_merge_waiting_for_partitions")
            .set(self.merge.holding_back().len() as f64);
        metrics::counter!("sla_monitor_duplicate_parts_total").absolute(self.merge.duplicate_parts);
        Ok(())
    }

    /// Publishes window parts to the shuffle partitions that merge their windows, then the
    /// partitions' progress to every shuffle partition. One idempotent producer keeps them in
    /// order, so progress never overtakes a part; the parts' delivery is awaited before their
    /// records are committed, progress is published again with the next window.
    async fn publish(&mut self, publication: Publication) -> Result<(), MonitorError> {
        let Publication {
            batch,
            parts,
            progress,
        } = publication;
        let mut deliveries = Vec::with_capacity(parts.len());
        for (window_start, partition, part) in &parts {
            let record = part_record(*window_start, *partition, part);
            let m = merging_partition(
                *window_start,
                self.config.window.size_ms,
                self.shuffle_partitions,
            );
            let delivery = self
                .send_shuffle(
                    m,
                    &self.shuffle.key(&record),
                    Some(&Shuffle::encode(&record)),
                )
                .await?;
            deliveries.push(delivery);
        }
        metrics::counter!("sla_monitor_parts_published_total").increment(parts.len() as u64);
        if let Some(batch) = batch {
            self.part_deliveries.push(Box::pin(async move {
                for delivery in deliveries {
                    if let Err(e) = delivered(delivery).await {
                        return (batch, Err(e));
                    }
                }
                (batch, Ok(()))
            }));
        }
        for (partition, closed_through) in progress {
            let record = ShuffleRecord::Progress {
                partition,
                closed_through,
            };
            let value = Shuffle::encode(&record);
            for m in 0..self.shuffle_partitions {
                self.send_shuffle(m, &self.shuffle.key(&record), Some(&value))
                    .await?;
            }
        }
        Ok(())
    }

    /// Sends merged windows to the sink.
    fn write(&mut self, merged: merging::MergedWindows) {
        if merged.windows.is_empty() {
            return;
        }
        let documents: Vec<WindowDocument> = merged
            .windows
            .iter()
            .map(|r| WindowDocument::new(&self.config.job_name, self.config.window.sla_ms, r))
            .collect();
        let mut parts = Vec::new();
        for result in &merged.windows {
            log_window(result);
            export_window(result);
            parts.extend(
                result
                    .parts
                    .keys()
                    .map(|&p| self.shuffle.part_key(result.start_ms, p)),
            );
        }
        metrics::counter!("sla_monitor_windows_closed_total").increment(documents.len() as u64);
        let id = self.next_batch;
        self.next_batch += 1;
        self.pending_batches.insert(
            id,
            SinkBatch {
                shuffle_partition: merged.shuffle_partition,
                windows: documents.len() as u64,
                watermark: merged.watermark,
                parts,
                sent: Instant::now(),
            },
        );
        // The sink task only ends after a fatal error, which arrives as an ack and stops us.
        let _ = self.batches.send(Batch { id, documents });
    }

    /// `/readyz`: not ready while every broker has been unreachable for [`KAFKA_UNREACHABLE_LIMIT`]
    /// or the sink has left a batch unacknowledged for [`SINK_STALLED_LIMIT`].
    fn update_readiness(&self) {
        let unreachable = self
            .context
            .unreachable_for()
            .filter(|d| *d >= KAFKA_UNREACHABLE_LIMIT);
        let stalled = self
            .pending_batches
            .values()
            .map(|b| b.sent)
            .min()
            .map(|sent| sent.elapsed())
            .filter(|d| *d >= SINK_STALLED_LIMIT);
        match (unreachable, stalled) {
            (Some(d), _) => self
                .readiness
                .set_not_ready(format!("Kafka unreachable for {:.0?}", d)),
            (None, Some(d)) => self.readiness.set_not_ready(format!(
                "the sink has not acknowledged window documents for {:.0?}",
                d
            )),
            (None, None) => self.readiness.set_ready(),
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
        .map(|(q, v)| format!("{}={v:.0}", percentile_field(*q)))
        .collect();
    tracing::info!(
        start = %chrono::DateTime::<chrono::Utc>::from_timestamp_millis(result.start_ms).unwrap_or_default().to_rfc3339(),
        count = result.stats.count,
        over_sla = result.over_sla,
        "window closed: {} ms",
        q.join(" ")
    );
}
