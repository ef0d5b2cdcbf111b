//! The merge stage: shuffle consumer → [`MergeState`] → sink → written markers. It owns the
//! shuffle partitions the merge group (`<group>.merge`) gives this instance.
//!
//! One loop, in one of three phases:
//! - **merging**: shuffle records, clock ticks (merge what is complete, watch the assignment,
//!   readiness) and the sink's acknowledgements, each followed by the written marker and the
//!   tombstones of the window's parts;
//! - **reading to the end** (once the partition stage has stopped and published its last
//!   parts): the owned shuffle partitions are read up to their end as it is then, so a stop
//!   leaves no finished window for the next run;
//! - **flushing**: the windows now complete are written and their acknowledgements awaited,
//!   up to the drain timeout.

use super::merge_state::{MergeState, MergedWindows};
use super::metrics::MergeMetrics;
use super::{
    now_ms, outcome_of, MonitorConfig, MonitorError, Pending, KAFKA_UNREACHABLE_LIMIT,
    SINK_STALLED_LIMIT,
};
use crate::completeness::document::{CompletenessDocument, CompletenessIdentity};
use crate::completeness::ledger::{Accounted, Due, SourceAnswers, WindowAccount};
use crate::dimension::spec::OTHER_VALUE;
use crate::event_time::window_document::WindowDocument;
use crate::kafka::assignment_watchdog::{self, AssignmentWatchdog, Verdict};
use crate::kafka::group_consumer::{self, GroupConsumer};
use crate::kafka::rebalance_events::{RebalanceNotifier, Rebalanced};
use crate::kafka::retire::retire_when_unshared;
use crate::kafka::source_offsets::SourceOffsets;
use crate::kafka::JobContext;
use crate::runtime::http::Readiness;
use crate::runtime::rate_limited_log::RateLimitedLog;
use crate::runtime::shutdown::Shutdown;
use crate::shuffle::publisher::ShufflePublisher;
use crate::shuffle::COMPLETENESS_PARTITION;
use crate::sink::driver::{self, Acknowledgement, Batch};
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, Producer};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What the stage needs besides its configuration.
pub struct MergeStageParts {
    /// The shuffle consumer, subscribed to the merge group.
    pub consumer: GroupConsumer,
    /// Its context, for a fresh consumer when the watchdog rejoins.
    pub consumer_context: RebalanceNotifier,
    /// Its rebalances.
    pub events: mpsc::UnboundedReceiver<Rebalanced>,
    /// The job's Kafka health.
    pub context: JobContext,
    /// The job's producer (flushed before reading the shuffle to its end).
    pub producer: FutureProducer<JobContext>,
    /// Where written markers and tombstones go.
    pub publisher: ShufflePublisher,
    /// The sink task's input and acknowledgements.
    pub batches: mpsc::Sender<Batch>,
    /// The sink's acknowledgements.
    pub acks: mpsc::UnboundedReceiver<Acknowledgement>,
    /// The input topic's partitions.
    pub input_partitions: Vec<i32>,
    /// Input partitions the partition stage holds now.
    pub input_owned: Arc<AtomicUsize>,
    /// `/readyz`.
    pub readiness: Readiness,
    /// The source topic's offsets, with `--source-topic`.
    pub source_offsets: Option<Arc<SourceOffsets>>,
}

/// A batch of documents in the sink, and what to record once it is written.
struct SinkBatch {
    shuffle_partition: i32,
    /// Window documents in the batch.
    windows: u64,
    written: Written,
    sent: Instant,
}

/// What a written batch lets the merge stage record on the shuffle topic.
enum Written {
    /// Windows merged through `watermark` from these parts, (window start, input partition),
    /// and these pieces of their splits by value, (window start, input partition, piece).
    Windows {
        watermark: i64,
        parts: Vec<(i64, i32)>,
        value_pieces: Vec<(i64, i32, u32)>,
    },
    /// Completeness documents; with final ones, through which source window it is final.
    Completeness { accounted: Option<Accounted> },
}

/// Where the loop stands (see the module documentation).
enum Phase {
    Merging,
    ReadingToEnd {
        /// Per owned shuffle partition, the offset to read up to.
        ends: BTreeMap<i32, i64>,
        /// Per owned shuffle partition, the next offset to read.
        read: BTreeMap<i32, i64>,
        deadline: Instant,
    },
    Flushing {
        deadline: Instant,
    },
}

/// The merge stage's state (see the module documentation).
pub struct MergeStage {
    config: MonitorConfig,
    consumer: GroupConsumer,
    consumer_context: RebalanceNotifier,
    events: mpsc::UnboundedReceiver<Rebalanced>,
    context: JobContext,
    producer: FutureProducer<JobContext>,
    state: MergeState,
    publisher: ShufflePublisher,
    batches: mpsc::Sender<Batch>,
    acks: mpsc::UnboundedReceiver<Acknowledgement>,
    /// Window documents in the sink, by batch id.
    in_sink: BTreeMap<u64, SinkBatch>,
    next_batch: u64,
    input_owned: Arc<AtomicUsize>,
    watchdog: AssignmentWatchdog,
    readiness: Readiness,
    metrics: MergeMetrics,
    /// One log line per refusal reason every 10 s.
    refusal_log: RateLimitedLog<&'static str>,
    windows_written: u64,
    /// A look-up of the input topic's partitions under way (started by each assignment and
    /// every [`INPUT_REFRESH_INTERVAL`]: partitions may have been added to the input topic).
    refreshing_inputs: Option<Pending<Result<Vec<i32>, String>>>,
    /// When the last look-up started.
    inputs_refreshed: Instant,
    /// The source topic's offsets, with `--source-topic`.
    source_offsets: Option<Arc<SourceOffsets>>,
    /// A completeness accounting's look-ups under way.
    accounting: Option<Pending<(Due, Result<SourceAnswers, String>)>>,
}

/// How often the merge stage looks the input topic's partitions up again while it merges:
/// windows closing later wait for a partition added to the input topic (its owner's progress),
/// instead of being written without it.
pub const INPUT_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

impl MergeStage {
    /// A stage merging no shuffle partition yet.
    pub fn new(config: MonitorConfig, state: MergeState, parts: MergeStageParts) -> Self {
        let session_timeout = config
            .kafka
            .session_timeout(&super::merge_group_of(&config.group));
        let mut state = state;
        state.set_input_partitions(parts.input_partitions);
        MergeStage {
            metrics: MergeMetrics::new(&config.shuffle_topic, &config.window.quantiles),
            config,
            consumer: parts.consumer,
            consumer_context: parts.consumer_context,
            events: parts.events,
            context: parts.context,
            producer: parts.producer,
            state,
            publisher: parts.publisher,
            batches: parts.batches,
            acks: parts.acks,
            in_sink: BTreeMap::new(),
            next_batch: 0,
            input_owned: parts.input_owned,
            watchdog: AssignmentWatchdog::new(
                assignment_watchdog::default_limit(session_timeout),
                Instant::now(),
            ),
            readiness: parts.readiness,
            refusal_log: RateLimitedLog::new(Duration::from_secs(10)),
            windows_written: 0,
            refreshing_inputs: None,
            inputs_refreshed: Instant::now(),
            source_offsets: parts.source_offsets,
            accounting: None,
        }
    }

    /// Merges until `inputs_done` (the partition stage stopped), then reads its shuffle
    /// partitions to their end and writes what is complete; returns the window documents the
    /// sink acknowledged.
    pub async fn run(mut self, mut inputs_done: Shutdown) -> Result<u64, MonitorError> {
        let mut tick = tokio::time::interval(self.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut phase = Phase::Merging;
        loop {
            phase = match phase {
                Phase::ReadingToEnd {
                    ends,
                    read,
                    deadline,
                } if Instant::now() >= deadline || caught_up(&ends, &read) => {
                    self.write_ready();
                    Phase::Flushing { deadline }
                }
                other => other,
            };
            if let Phase::Flushing { deadline } = phase {
                if self.in_sink.is_empty() {
                    break;
                }
                if Instant::now() >= deadline {
                    tracing::warn!(
                        pending_batches = self.in_sink.len(),
                        "drain timeout: windows not acknowledged by the sink will be written by the next run"
                    );
                    break;
                }
            }
            let deadline = match &phase {
                Phase::Merging => None,
                Phase::ReadingToEnd { deadline, .. } | Phase::Flushing { deadline } => {
                    Some(*deadline)
                }
            };
            let reading = !matches!(phase, Phase::Flushing { .. });
            // Cloned each turn: the watchdog may replace it.
            let consumer = self.consumer.clone();
            tokio::select! {
                biased;
                _ = inputs_done.wait(), if matches!(phase, Phase::Merging) => {
                    phase = self.start_reading_to_end().await;
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {}
                Some(ack) = self.acks.recv() => self.on_sink_ack(ack).await?,
                _ = tick.tick(), if matches!(phase, Phase::Merging) => self.on_tick()?,
                (due, answers) = outcome_of(&mut self.accounting) => {
                    self.accounting = None;
                    self.on_source_answers(&due, answers);
                }
                inputs = outcome_of(&mut self.refreshing_inputs) => {
                    self.refreshing_inputs = None;
                    match inputs {
                        Ok(inputs) => {
                            let before = self.state.input_partition_count();
                            if before > 0 && inputs.len() != before {
                                tracing::info!(
                                    from = before,
                                    to = inputs.len(),
                                    "{} has a new number of partitions: windows closing from now on wait for all of them",
                                    self.config.input_topic
                                );
                            }
                            self.state.set_input_partitions(inputs);
                        }
                        Err(e) => tracing::warn!("{e} (merging with the partitions known before)"),
                    }
                }
                message = consumer.recv(), if reading => {
                    self.apply_rebalances();
                    let position = self.on_polled(message);
                    match (&mut phase, position) {
                        (Phase::ReadingToEnd { read, .. }, Some((m, next))) => {
                            read.insert(m, next);
                        }
                        // A window its last progress completed goes to the sink now, not at
                        // the next tick.
                        (Phase::Merging, _) => self.write_ready(),
                        _ => {}
                    }
                }
            }
        }
        Ok(self.windows_written)
    }

    /// Handles one poll of the shuffle consumer (a refused record is counted and logged, never
    /// fatal); returns the shuffle partition and the next offset to read when it says where
    /// the consumer stands.
    fn on_polled<M: Message>(&mut self, polled: Result<M, KafkaError>) -> Option<(i32, i64)> {
        match polled {
            Ok(message) => {
                self.context.mark_healthy();
                let (m, offset) = (message.partition(), message.offset());
                if let Err(refused) =
                    self.state
                        .on_record(m, message.key(), message.payload(), now_ms())
                {
                    self.metrics.refused(refused.reason);
                    if let Some(suppressed) =
                        self.refusal_log.should_log(refused.reason, Instant::now())
                    {
                        tracing::warn!(
                            reason = refused.reason,
                            shuffle_partition = m,
                            offset,
                            suppressed,
                            "skipping a record of {}: {}",
                            self.config.shuffle_topic,
                            refused.detail
                        );
                    }
                }
                Some((m, offset + 1))
            }
            Err(KafkaError::PartitionEOF(m)) => {
                self.context.mark_healthy();
                self.state.caught_up(m);
                Some((m, i64::MAX))
            }
            Err(e) => {
                tracing::warn!("consuming from {}: {e}", self.config.shuffle_topic);
                None
            }
        }
    }

    /// Takes the shuffle partitions the merge group assigned (read from their beginning) and
    /// drops those it took away.
    fn apply_rebalances(&mut self) {
        while let Ok(event) = self.events.try_recv() {
            match event {
                Rebalanced::Assigned(partitions) => {
                    self.state.assign(&partitions);
                    self.refresh_inputs();
                }
                Rebalanced::Revoked(partitions) => {
                    self.state.revoke(&partitions);
                    self.in_sink
                        .retain(|_, b| !partitions.contains(&b.shuffle_partition));
                }
            }
            self.metrics.assigned.set(self.state.owned().len() as f64);
        }
    }

    /// Starts looking the input topic's partitions up in the background.
    fn refresh_inputs(&mut self) {
        let (consumer, topic) = (self.consumer.clone(), self.config.input_topic.clone());
        self.refreshing_inputs = Some(Box::pin(async move {
            group_consumer::partition_ids(&consumer, &topic).await
        }));
        self.inputs_refreshed = Instant::now();
    }

    /// Writes what is complete, watches the assignment, updates readiness and gauges.
    fn on_tick(&mut self) -> Result<(), MonitorError> {
        // Rebalances that arrived without records after them (a partition taken away).
        self.apply_rebalances();
        if self.refreshing_inputs.is_none()
            && !self.state.owned().is_empty()
            && self.inputs_refreshed.elapsed() >= INPUT_REFRESH_INTERVAL
        {
            self.refresh_inputs();
        }
        self.write_ready();
        self.start_accounting();
        if let Some(watermark) = self.state.watermark() {
            self.metrics.merge_watermark.set(watermark as f64 / 1000.0);
        }
        self.metrics
            .pending_windows
            .set(self.state.pending_windows() as f64);
        self.metrics
            .waiting_for_partitions
            .set(self.state.holding_back().len() as f64);
        self.metrics
            .duplicate_parts
            .absolute(self.state.duplicate_parts);
        self.check_assignment()?;
        self.update_readiness();
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
    fn check_assignment(&mut self) -> Result<(), MonitorError> {
        let inputs = self.state.input_partition_count();
        let alone = inputs > 0 && self.input_owned.load(Ordering::Relaxed) == inputs;
        let held = if alone { self.state.owned().len() } else { 1 };
        let now = Instant::now();
        let Verdict::Stuck { for_how_long } = self.watchdog.observe(held, now) else {
            return Ok(());
        };
        self.watchdog.acted(now);
        tracing::error!(
            held_none_for = ?for_how_long,
            input_partitions = inputs,
            next_attempt_in = ?self.watchdog.limit(),
            "this instance holds every partition of {} but no partition of {}: the merge group's \
             rebalance did not complete for it; joining the merge group again with a fresh consumer",
            self.config.input_topic,
            self.config.shuffle_topic
        );
        self.metrics.rejoins.increment(1);
        let fresh = group_consumer::subscribe(
            self.config
                .kafka
                .consumer_config(&super::merge_group_of(&self.config.group)),
            self.consumer_context.clone(),
            &self.config.shuffle_topic,
        )
        .map_err(MonitorError::Setup)?;
        retire_when_unshared(std::mem::replace(&mut self.consumer, fresh));
        Ok(())
    }

    /// The partition stage has stopped: its last parts and progress are enqueued. Flushes
    /// them, then reads the owned shuffle partitions up to where they end now.
    async fn start_reading_to_end(&mut self) -> Phase {
        let deadline = Instant::now() + self.config.drain_timeout;
        let owned = self.state.owned();
        if owned.is_empty() {
            return Phase::Flushing { deadline };
        }
        let producer = self.producer.clone();
        let _ = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(5))).await;
        let ends = group_consumer::ends(&self.consumer, &self.config.shuffle_topic, owned).await;
        // Where the consumer stands (local, no request): what it already returned. Nothing
        // returned yet reads as offset 0 (an empty partition is read to its end).
        let read = self
            .consumer
            .position()
            .map(|list| group_consumer::offsets_of(&list, &self.config.shuffle_topic))
            .unwrap_or_default();
        tracing::debug!(
            ?ends,
            ?read,
            "reading the shuffle partitions this instance merges to their end"
        );
        Phase::ReadingToEnd {
            ends,
            read,
            deadline,
        }
    }

    /// Sends the windows the merge state can merge to the sink.
    fn write_ready(&mut self) {
        // At most SINK_QUEUE batches wait for the sink (an outage of Elasticsearch must not
        // grow a queue without bound); the rest stays merged-but-pending in the state and is
        // written as acknowledgements come back.
        if self.in_sink.len() >= driver::SINK_QUEUE {
            return;
        }
        for merged in self.state.ready() {
            self.write(merged);
        }
    }

    fn write(&mut self, merged: MergedWindows) {
        if merged.windows.is_empty() {
            return;
        }
        let documents: Vec<WindowDocument> = merged
            .windows
            .iter()
            .map(|r| WindowDocument::new(&self.config.job_name, self.config.window.sla_ms, r))
            .collect();
        let mut parts = Vec::new();
        let mut value_pieces = Vec::new();
        let mut value_documents = Vec::new();
        for result in &merged.windows {
            self.metrics.window_written(result);
            parts.extend(result.parts.keys().map(|&p| (result.start_ms, p)));
            if let (Some(values), Some(split)) = (&result.values, &self.config.split) {
                value_pieces.extend(
                    values
                        .pieces
                        .iter()
                        .map(|&(p, piece)| (result.start_ms, p, piece)),
                );
                if !values.complete {
                    self.metrics.values_incomplete.increment(1);
                    tracing::error!(
                        window_start = result.start_ms,
                        "the window's parts split by value did not all arrive whole, or do not \
                         add up to the window: its value documents are not written (the whole \
                         window's is)"
                    );
                }
                let names = split.names();
                value_documents.extend(values.windows.iter().map(|value| {
                    let sla_ms = match value.key.as_str() {
                        OTHER_VALUE => self.config.window.sla_ms,
                        key => split.sla_rules.sla_for(key, self.config.window.sla_ms),
                    };
                    WindowDocument::of_value(
                        &self.config.job_name,
                        sla_ms,
                        (result.start_ms, result.end_ms),
                        &names,
                        value,
                    )
                }));
            }
        }
        self.metrics
            .value_documents
            .increment(value_documents.len() as u64);
        self.metrics
            .windows_closed
            .increment(documents.len() as u64);
        let id = self.next_batch;
        self.next_batch += 1;
        self.in_sink.insert(
            id,
            SinkBatch {
                shuffle_partition: merged.shuffle_partition,
                windows: documents.len() as u64,
                written: Written::Windows {
                    watermark: merged.watermark,
                    parts,
                    value_pieces,
                },
                sent: Instant::now(),
            },
        );
        // Never full (write_ready keeps at most SINK_QUEUE batches in the sink); the sink task
        // only ends after a fatal error, which arrives as an ack and stops us.
        let batch = Batch {
            id,
            documents,
            values: value_documents,
            completeness: Vec::new(),
        };
        if let Err(e) = self.batches.try_send(batch) {
            tracing::error!("window documents not handed to the sink: {e}");
        }
    }

    /// Starts the look-ups of a completeness accounting, if one is due (the ledger's progress
    /// moved) and none is under way or in the sink.
    fn start_accounting(&mut self) {
        let Some(offsets) = &self.source_offsets else {
            return;
        };
        let in_sink = self
            .in_sink
            .values()
            .any(|b| matches!(b.written, Written::Completeness { .. }));
        if self.accounting.is_some() || in_sink || self.in_sink.len() >= driver::SINK_QUEUE {
            return;
        }
        let Some(due) = self.state.completeness_due() else {
            return;
        };
        let offsets = offsets.clone();
        self.accounting = Some(Box::pin(async move {
            let looked_up = due.clone();
            let answers = tokio::task::spawn_blocking(move || offsets.answer(&looked_up))
                .await
                .map_err(|e| e.to_string())
                .and_then(|answer| answer.map_err(|e| e.to_string()));
            (due, answers)
        }));
    }

    /// The source answered an accounting's look-ups: its documents go to the sink.
    fn on_source_answers(&mut self, due: &Due, answers: Result<SourceAnswers, String>) {
        let answers = match answers {
            Ok(answers) => answers,
            Err(e) => {
                let topic = self.source_offsets.as_ref().map_or("", |o| o.topic());
                tracing::warn!(
                    "accounting for {topic}'s records: {e} (completeness is accounted again at \
                     the next tick)"
                );
                return;
            }
        };
        let accounts = self.state.account(due, &answers);
        self.metrics
            .completeness_ledger_bytes(self.state.ledger_bytes());
        let Some(completeness) = &self.config.completeness else {
            return;
        };
        if accounts.is_empty() {
            return;
        }
        let identity = CompletenessIdentity {
            job: self.config.job_name.clone(),
            source_topic: completeness.source_topic.clone(),
            window_ms: self.config.window.size_ms,
            sla_ms: self.config.window.sla_ms,
            lost_after_ms: completeness.lost_after.as_millis() as i64,
        };
        let documents: Vec<CompletenessDocument> = accounts
            .iter()
            .map(|a| CompletenessDocument::new(&identity, due.as_of, a))
            .collect();
        self.metrics.completeness_accounted(&documents);
        self.measure_in_flight_age(&accounts, &answers, due.as_of);
        let accounted = accounts
            .iter()
            .filter(|a| a.is_final)
            .map(|a| a.window_start + self.config.window.size_ms)
            .max()
            .map(|final_through| Accounted {
                first_window: due.first_window,
                final_through,
            });
        let id = self.next_batch;
        self.next_batch += 1;
        self.in_sink.insert(
            id,
            SinkBatch {
                shuffle_partition: COMPLETENESS_PARTITION,
                windows: 0,
                written: Written::Completeness { accounted },
                sent: Instant::now(),
            },
        );
        let batch = Batch {
            id,
            documents: Vec::new(),
            values: Vec::new(),
            completeness: documents,
        };
        if let Err(e) = self.batches.try_send(batch) {
            tracing::error!("completeness documents not handed to the sink: {e}");
        }
    }

    /// Reads, off the merge loop, when the oldest record each source partition still owes
    /// entered it, and publishes its age (`sla_monitor_completeness_in_flight_age_seconds`).
    fn measure_in_flight_age(
        &self,
        accounts: &[WindowAccount],
        answers: &SourceAnswers,
        as_of: i64,
    ) {
        let Some(offsets) = self.source_offsets.clone() else {
            return;
        };
        let mut oldest: BTreeMap<i32, i64> = BTreeMap::new();
        for account in accounts {
            for (&partition, &offset) in &account.completeness.first_absent {
                let entry = oldest.entry(partition).or_insert(offset);
                *entry = (*entry).min(offset);
            }
        }
        let partitions: Vec<i32> = answers.log_starts.keys().copied().collect();
        tokio::spawn(async move {
            let read = tokio::task::spawn_blocking(move || offsets.timestamps_at(&oldest)).await;
            if let Ok(timestamps) = read {
                MergeMetrics::completeness_in_flight_age(&partitions, &timestamps, as_of);
            }
        });
    }

    /// The sink wrote a batch of merged windows: records on the shuffle partition that they
    /// are written, then deletes the parts they were merged from.
    async fn on_sink_ack(&mut self, ack: Acknowledgement) -> Result<(), MonitorError> {
        let id = ack.map_err(MonitorError::Sink)?;
        let Some(batch) = self.in_sink.remove(&id) else {
            return Ok(());
        };
        self.metrics.batches_acknowledged.increment(1);
        self.windows_written += batch.windows;
        if !self.state.owns(batch.shuffle_partition) {
            self.write_ready();
            return Ok(());
        }
        let delivery = |source| MonitorError::Delivery {
            topic: self.config.shuffle_topic.clone(),
            source,
        };
        match batch.written {
            Written::Windows {
                watermark,
                parts,
                value_pieces,
            } => {
                self.publisher
                    .mark_written(batch.shuffle_partition, watermark, &parts, &value_pieces)
                    .await
                    .map_err(delivery)?;
                self.state.written(batch.shuffle_partition, watermark);
            }
            Written::Completeness {
                accounted: Some(accounted),
            } => {
                let streams = self.state.accounted(accounted);
                self.publisher
                    .mark_accounted(accounted.first_window, accounted.final_through, &streams)
                    .await
                    .map_err(delivery)?;
            }
            Written::Completeness { accounted: None } => {}
        }
        self.write_ready();
        self.start_accounting();
        Ok(())
    }

    /// `/readyz`: not ready while every broker has been unreachable for [`KAFKA_UNREACHABLE_LIMIT`]
    /// or the sink has left a batch unacknowledged for [`SINK_STALLED_LIMIT`].
    fn update_readiness(&self) {
        let unreachable = self
            .context
            .unreachable_for()
            .filter(|d| *d >= KAFKA_UNREACHABLE_LIMIT);
        let stalled = self
            .in_sink
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

/// Whether every shuffle partition was read up to its end.
fn caught_up(ends: &BTreeMap<i32, i64>, read: &BTreeMap<i32, i64>) -> bool {
    ends.iter()
        .all(|(m, end)| read.get(m).copied().unwrap_or(0) >= *end)
}
