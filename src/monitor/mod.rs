//! The monitor job: reduced visits → one latency summary per event-time window, written to a
//! sink, with offsets committed only up to what the sink has acknowledged.
//!
//! The consumer is assigned every partition of the topic (a window spans all partitions, so
//! one monitor instance per job identity). Before each offset commit a
//! [`checkpoint::Checkpoint`] per partition is written to the checkpoint topic, so a restart
//! resumes from the first record of the oldest unwritten window, restores each partition's
//! watermark, and rebuilds exactly the windows it had not written.
//!
//! Files by role: [`restore`] (checkpoints → where each partition resumes), [`decisions`] (every
//! decision, no I/O), [`committer`] (checkpoint writes and offset commits), and this module's
//! loop, which only moves records, ticks and acknowledgements between Kafka, the core and
//! the sink.

pub mod checkpoint;
pub mod checkpoint_store;
pub mod committer;
pub mod decisions;
pub mod measurement;
pub mod restore;
pub mod unacknowledged;

use crate::http::Readiness;
use crate::kafka::dead_letter::{DeadLetterQueue, WINDOW_START_HEADER};
use crate::kafka::producer::{delivered, RELIABLE_PRODUCER};
use crate::kafka::{
    admin, ensure_topics_when_reachable, JobContext, KafkaArgs, TopicSpec, READY_BATCH,
};
use crate::shutdown::Shutdown;
use crate::sink::driver::{self, Acknowledgement, Batch};
use crate::sink::{SinkError, WindowSink};
use crate::watermark::WatermarkConfig;
use crate::window::{WindowConfig, WindowResult};
use crate::window_document::percentile_field;
use committer::Committer;
use decisions::{ClosedBatch, CoreConfig, MonitorCore, RecordDecision};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use measurement::TimestampKind;
use rdkafka::consumer::{Consumer, StreamConsumer};
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

type PendingDelivery = Pin<Box<dyn Future<Output = (i32, i64, Result<(), KafkaError>)> + Send>>;

/// Brokers unreachable this long make the monitor report not ready.
pub const KAFKA_UNREACHABLE_LIMIT: Duration = Duration::from_secs(30);

/// A window batch the sink has not acknowledged for this long makes the monitor not ready.
pub const SINK_STALLED_LIMIT: Duration = Duration::from_secs(60);

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
    readiness: Readiness,
    shutdown: Shutdown,
) -> Result<MonitorReport, MonitorError> {
    let context = JobContext::new(config.kafka.bootstrap_servers());
    let consumer: Arc<StreamConsumer<JobContext>> = Arc::new(
        config
            .kafka
            .consumer_config(&config.group)
            // Reaching a partition's end is the evidence idleness needs (see `watermark`).
            .set("enable.partition.eof", "true")
            .create_with_context(context.clone())
            .map_err(|e| MonitorError::Setup(format!("creating the Kafka consumer: {e}")))?,
    );
    let producer: FutureProducer<JobContext> = config
        .kafka
        .producer_config(RELIABLE_PRODUCER)
        .create_with_context(context.clone())
        .map_err(|e| MonitorError::Setup(format!("creating the Kafka producer: {e}")))?;
    let sink_name = sink.describe();
    let mut core = MonitorCore::new(CoreConfig {
        input_topic: config.input_topic.clone(),
        group: config.group.clone(),
        job_name: config.job_name.clone(),
        window: config.window.clone(),
        watermark: config.watermark,
        plausibility: config.plausibility,
    });
    assign_all_partitions(&config, &consumer, &mut core).await?;
    let (batches, acks) = driver::spawn(sink);
    readiness.set_ready();
    let mut monitor = Monitor {
        committer: Committer::new(
            consumer.clone(),
            producer.clone(),
            &config.checkpoint_topic,
            &config.input_topic,
        ),
        dead_letters: DeadLetterQueue::new(
            producer,
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
        context,
        core,
        batches,
        acks,
        deliveries: FuturesUnordered::new(),
        timestamp_kinds_seen: HashSet::new(),
    };
    tracing::info!(
        topic = %monitor.config.input_topic,
        job = %monitor.config.job_name,
        window_ms = monitor.config.window.size_ms,
        sink = %sink_name,
        "monitor started"
    );
    monitor.run(shutdown).await
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Assigns every partition of the topic, resuming where the checkpoints (or the committed
/// offsets) say. The blocking librdkafka calls run off the async workers.
async fn assign_all_partitions(
    config: &MonitorConfig,
    consumer: &Arc<StreamConsumer<JobContext>>,
    core: &mut MonitorCore,
) -> Result<(), MonitorError> {
    let topic = config.input_topic.clone();
    let (reader, group) = (consumer.clone(), config.group.clone());
    let (partitions, committed) = tokio::task::spawn_blocking(move || {
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
        let mut wanted = TopicPartitionList::new();
        for &p in &partitions {
            wanted.add_partition(&topic, p);
        }
        let committed = reader
            .committed_offsets(wanted, Duration::from_secs(30))
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
        Ok((partitions, committed))
    })
    .await
    .map_err(|e| MonitorError::Setup(format!("reading partitions: {e}")))??;
    let topic = &config.input_topic;
    let checkpoints = checkpoint_store::load(
        &config.kafka,
        &config.checkpoint_topic,
        &config.group,
        topic,
    )
    .await
    .map_err(|e| {
        MonitorError::Setup(format!(
            "reading checkpoints from {}: {e}",
            config.checkpoint_topic
        ))
    })?;
    let now = now_ms();
    let mut assignment = TopicPartitionList::new();
    for resume in restore::resume_plan(&partitions, &committed, &checkpoints) {
        let offset = resume.offset.map_or(Offset::Beginning, Offset::Offset);
        assignment
            .add_partition_offset(topic, resume.partition, offset)
            .map_err(|e| {
                MonitorError::Setup(format!("assigning {topic}/{}: {e}", resume.partition))
            })?;
        core.assign(&resume, now);
        tracing::info!(partition = resume.partition, ?offset, restored = ?resume.restored, "resuming partition");
    }
    consumer
        .assign(&assignment)
        .map_err(|e| MonitorError::Setup(format!("assigning partitions of {topic}: {e}")))
}

/// The monitor's I/O: Kafka in, sink and dead letters out, the core deciding.
struct Monitor {
    config: MonitorConfig,
    readiness: Readiness,
    /// When each batch not yet acknowledged was sent to the sink.
    pending_batches: BTreeMap<u64, Instant>,
    consumer: Arc<StreamConsumer<JobContext>>,
    context: JobContext,
    core: MonitorCore,
    committer: Committer,
    dead_letters: DeadLetterQueue,
    batches: mpsc::UnboundedSender<Batch>,
    acks: mpsc::UnboundedReceiver<Acknowledgement>,
    deliveries: FuturesUnordered<PendingDelivery>,
    timestamp_kinds_seen: HashSet<TimestampKind>,
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
            tokio::select! {
                biased;
                _ = shutdown.wait() => break,
                Some(ack) = self.acks.recv() => self.on_ack(ack)?,
                Some((partition, offset, result)) = self.deliveries.next() => {
                    result.map_err(|source| MonitorError::Delivery { topic: self.config.dead_letter_topic.clone(), source })?;
                    self.core.on_dead_letter_ack(partition, offset);
                }
                written = self.committer.next_written() => {
                    self.committer.finish(&mut self.core, written);
                }
                _ = tick.tick() => {
                    self.on_tick();
                    self.update_readiness();
                    if last_commit.elapsed() >= self.config.commit_interval {
                        self.committer.start(&self.core);
                        last_commit = Instant::now();
                    }
                }
                message = consumer.recv() => {
                    let mut next = Some(message);
                    let mut taken = 0;
                    while let Some(message) = next.take() {
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
        // A last tick: windows the watermark already closed are written before stopping, not
        // held back for the next run (the windows it keeps open are still incomplete).
        self.on_tick();
        self.drain().await?;
        self.committer.finish_all(&mut self.core).await;
        let report = self.core.report();
        tracing::info!(
            ?report,
            open_windows = self.core.open_windows(),
            "monitor stopped; open windows will be rebuilt on restart"
        );
        Ok(report)
    }

    /// After shutdown: no new records, no incomplete windows; wait for the sink and the
    /// dead-letter deliveries already under way, up to the drain timeout.
    async fn drain(&mut self) -> Result<(), MonitorError> {
        let deadline = Instant::now() + self.config.drain_timeout;
        while self.core.unacknowledged_batches() > 0 || !self.deliveries.is_empty() {
            tokio::select! {
                Some(ack) = self.acks.recv() => self.on_ack(ack)?,
                Some((partition, offset, result)) = self.deliveries.next() => {
                    if result.is_ok() {
                        self.core.on_dead_letter_ack(partition, offset);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(
                        pending_batches = self.core.unacknowledged_batches(),
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
        self.pending_batches.remove(&id);
        if self.core.on_batch_ack(id) {
            metrics::counter!("sla_monitor_window_batches_acknowledged_total").increment(1);
        }
        Ok(())
    }

    async fn on_message(&mut self, message: &BorrowedMessage<'_>) -> Result<(), MonitorError> {
        self.context.mark_healthy();
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

    /// Advances the watermark with the clock and sends every window it closes to the sink.
    fn on_tick(&mut self) {
        let now = now_ms();
        if self.context.unreachable_for().is_some() {
            self.core.on_broker_unreachable(now);
        }
        let closed = self.core.on_tick(now);
        if let Some(watermark) = self.core.watermark() {
            metrics::gauge!("sla_monitor_watermark_seconds").set(watermark as f64 / 1000.0);
        }
        metrics::gauge!("sla_monitor_open_windows").set(self.core.open_windows() as f64);
        let Some(ClosedBatch {
            id,
            documents,
            results,
        }) = closed
        else {
            return;
        };
        for result in &results {
            log_window(result);
            export_window(result);
        }
        metrics::counter!("sla_monitor_windows_closed_total").increment(documents.len() as u64);
        // The sink task only ends after a fatal error, which arrives as an ack and stops us.
        self.pending_batches.insert(id, Instant::now());
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

#[cfg(test)]
mod tests {
    use super::checkpoint::CheckpointRecord;
    use super::decisions::{CoreConfig, MonitorCore};
    use super::measurement::TimestampKind;
    use super::restore::PartitionResume;
    use crate::digest::DigestConfig;
    use crate::sink::driver::{spawn, Batch};
    use crate::sink::{SinkError, WindowSink};
    use crate::watermark::WatermarkConfig;
    use crate::window::WindowConfig;
    use crate::window_document::WindowDocument;
    use std::sync::{Arc, Mutex};

    /// A sink that fails transiently a given number of times, then writes into memory.
    struct FakeSink {
        failures_left: usize,
        written: Arc<Mutex<Vec<String>>>,
    }

    impl WindowSink for FakeSink {
        async fn write(&mut self, documents: &[WindowDocument]) -> Result<(), SinkError> {
            if self.failures_left > 0 {
                self.failures_left -= 1;
                return Err(SinkError::Transient("unreachable".into()));
            }
            let mut written = self.written.lock().unwrap();
            written.extend(documents.iter().map(|d| d.id.clone()));
            Ok(())
        }

        fn describe(&self) -> String {
            "fake sink".into()
        }
    }

    fn core() -> MonitorCore {
        let mut core = MonitorCore::new(CoreConfig {
            input_topic: "in".into(),
            group: "g".into(),
            job_name: "job".into(),
            window: WindowConfig {
                size_ms: 1_000,
                allowed_lateness_ms: 0,
                sla_ms: 100,
                quantiles: vec![0.5],
                digest: DigestConfig::default(),
            },
            watermark: WatermarkConfig {
                max_out_of_orderness_ms: 0,
                idle_timeout_ms: 60_000,
            },
            plausibility: super::measurement::Plausibility {
                max_future_ms: i64::MAX / 4,
                max_latency_ms: i64::MAX / 4,
                max_clock_skew_ms: 0,
            },
        });
        core.assign(
            &PartitionResume {
                partition: 0,
                offset: None,
                restored: None,
            },
            0,
        );
        core
    }

    fn resume_offset(due: &[CheckpointRecord]) -> Option<i64> {
        due.first().map(|r| r.checkpoint.offset)
    }

    /// Through the real driver: a window's records are committable only after the sink wrote
    /// it, however many transient failures come first (time is paused, so retries are
    /// instant and deterministic).
    #[tokio::test(start_paused = true)]
    async fn offsets_pass_a_window_only_after_the_sink_acknowledged_it() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let (batches, mut acks) = spawn(FakeSink {
            failures_left: 3,
            written: written.clone(),
        });
        let mut core = core();
        let stamp = |t: i64| {
            format!(
                r#"{{"visit":{{"id":"v","event_time":0}},"start_processing_time_ms":{}}}"#,
                t - 5
            )
        };
        for (offset, t) in [(0, 100), (1, 200), (2, 1_500)] {
            core.on_record(
                0,
                offset,
                Some((TimestampKind::CreateTime, t)),
                Some(stamp(t).as_bytes()),
                t,
            );
        }
        let batch = core.on_tick(1_500).expect("window 0 closes");
        batches
            .send(Batch {
                id: batch.id,
                documents: batch.documents,
            })
            .unwrap();
        assert_eq!(resume_offset(&core.checkpoints_due()), Some(0));
        let ack = acks.recv().await.expect("an acknowledgement");
        assert_eq!(written.lock().unwrap().as_slice(), ["job-0"]);
        assert_eq!(
            resume_offset(&core.checkpoints_due()),
            Some(0),
            "not before the ack is handled"
        );
        assert!(core.on_batch_ack(ack.unwrap()));
        assert_eq!(resume_offset(&core.checkpoints_due()), Some(2));
    }
}
