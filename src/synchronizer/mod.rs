//! The synchronizer job: consumes visits, stamps each with the moment its processing starts,
//! reduces it, optionally delays it, and produces it to the output topic; undecodable
//! records go to the dead-letter topic. Offsets are committed only once the records produced
//! from them are acknowledged.
//!
//! Every decision (what waits for the [`delay`] and until when, what is due, whether to consume
//! more, what a delay change does, what may be committed) is made by [`self::core`], with time
//! passed in; the loop here only moves records between Kafka and it, and [`rebalance`] asks it
//! what is safe to commit when partitions are revoked.

pub mod control;
pub mod core;
pub mod delay;
pub mod loss;
pub mod rebalance;

use self::core::{Budgets, Reduced, Released, SynchronizerCore};
use crate::kafka::assignment_watchdog::{self, AssignmentWatchdog, Verdict};
use crate::kafka::commit::commit_async;
use crate::kafka::dead_letter::{DeadLetters, Refused};
use crate::kafka::producer::{OutgoingRecord, RELIABLE_PRODUCER};
use crate::kafka::reporting_producer::{
    refused_for_itself, DeliveryReport, RefusedContent, ReportingProducer, SendError,
};
use crate::kafka::retire::retire_when_unshared;
use crate::kafka::{ensure_topics_when_reachable, JobContext, KafkaArgs, TopicSpec, READY_BATCH};
use crate::record::lineage::{Lineage, LINEAGE_HEADER};
use crate::record::reduced_visit::ReducedVisit;
use crate::record::rejection::{RejectReason, Rejection};
use crate::record::visit::Visit;
use crate::runtime::http::Readiness;
use crate::runtime::shutdown::Shutdown;
use crate::synchronizer::delay::DelayPolicy;
use crate::synchronizer::loss::LossPolicy;
use futures::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::{Offset, TopicPartitionList};
use rebalance::SynchronizerContext;
use slab::Slab;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};

/// How often the assignment is checked (and `sla_assigned_partitions` published).
const WATCHDOG_INTERVAL: Duration = Duration::from_secs(1);

/// What the synchronizer needs to run.
#[derive(Debug, Clone)]
pub struct SynchronizerConfig {
    /// Brokers, client properties and topic shape.
    pub kafka: KafkaArgs,
    /// Topic of input visits.
    pub input_topic: String,
    /// Topic of reduced visits (created with LogAppendTime when missing).
    pub output_topic: String,
    /// Topic that keeps undecodable input records.
    pub dead_letter_topic: String,
    /// Consumer group id.
    pub group: String,
    /// How often safe offsets are committed.
    pub commit_interval: Duration,
    /// Most records consumed but not yet acknowledged at once (bounds memory).
    pub max_in_flight: usize,
    /// Most bytes of reduced records (key plus value) waiting for their due time at once.
    pub max_waiting_bytes: usize,
    /// How long a shutdown waits for delayed and in-flight records before giving up on them
    /// (their offsets are then not committed; they are reprocessed after a restart).
    pub drain_timeout: Duration,
    /// How long the job may hold no partition before it rejoins the group (`None`: twice the
    /// session timeout, at least 30 s).
    pub assignment_timeout: Option<Duration>,
    /// What `/readyz` reports.
    pub readiness: Readiness,
}

/// Counts of what a run did, returned when it stops.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SynchronizerReport {
    /// Input records consumed.
    pub consumed: u64,
    /// Reduced records acknowledged by the broker.
    pub produced: u64,
    /// Undecodable records acknowledged on the dead-letter topic.
    pub dead_lettered: u64,
}

/// Why the synchronizer stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum SynchronizerError {
    /// Setting up a Kafka client or topic failed.
    #[error("{context}: {source}")]
    Setup {
        /// What was being set up.
        context: String,
        /// The cause.
        #[source]
        source: anyhow::Error,
    },
    /// A record could not be delivered (a non-retriable broker error). Its offset was not
    /// committed, so it is processed again after a restart.
    #[error("delivering to {topic}: {source}")]
    Delivery {
        /// Destination topic.
        topic: String,
        /// The broker's error.
        #[source]
        source: KafkaError,
    },
}

fn setup_error(context: impl Into<String>) -> impl FnOnce(KafkaError) -> SynchronizerError {
    let context = context.into();
    move |source| SynchronizerError::Setup {
        context,
        source: source.into(),
    }
}

/// A produced record waiting for its delivery report (its token is its key in the slab).
struct PendingOutput {
    partition: i32,
    offset: i64,
    kind: OutputKind,
    /// When it was due (its acknowledgement latency counts from here).
    started: Instant,
}

/// Most kilobytes of records waiting in the producer's queue (`queue.buffering.max.kbytes`).
const PRODUCER_QUEUE_KBYTES: &str = "8192";

/// Most delivery reports taken at once.
const REPORT_BATCH: usize = 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
enum OutputKind {
    Reduced,
    DeadLetter,
}

/// Waits for the input topic (never created by the synchronizer, which reads it: the visits'
/// producer creates it; `config.readiness` says what is awaited) and creates the topics it
/// writes when they are missing: the output topic with `message.timestamp.type=LogAppendTime`
/// so that its timestamps are the broker's append time.
pub async fn ensure_synchronizer_topics(
    config: &SynchronizerConfig,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let k = &config.kafka;
    crate::kafka::admin::wait_for_input_topic(
        &k.client_config(&[]),
        &config.input_topic,
        "--visits-topic",
        &config.readiness,
        shutdown.clone(),
    )
    .await?;
    config
        .readiness
        .set_not_ready("starting: preparing the topics and joining the group");
    let specs = [
        TopicSpec::new(&config.output_topic, k.partitions, k.replication_factor)
            .with_config("message.timestamp.type", "LogAppendTime"),
        TopicSpec::new(
            &config.dead_letter_topic,
            k.partitions,
            k.replication_factor,
        ),
    ];
    ensure_topics_when_reachable(&k.client_config(&[]), &specs, shutdown).await?;
    Ok(())
}

/// A consumer of the input topic, subscribed (a member of the group).
fn subscribed_consumer(
    config: &SynchronizerConfig,
    context: SynchronizerContext,
) -> Result<Arc<StreamConsumer<SynchronizerContext>>, SynchronizerError> {
    let consumer: StreamConsumer<SynchronizerContext> = config
        .kafka
        .consumer_config(&config.group)
        .create_with_context(context)
        .map_err(setup_error("creating the Kafka consumer"))?;
    consumer
        .subscribe(&[&config.input_topic])
        .map_err(setup_error(format!(
            "subscribing to {}",
            config.input_topic
        )))?;
    Ok(Arc::new(consumer))
}

/// Runs the synchronizer until `shutdown`, then drains in-flight records, commits and returns.
/// The delay policy is read from `delay`, and the loss switch from `loss`, for every batch of
/// records, so both can change while running.
pub async fn run(
    config: SynchronizerConfig,
    delay: watch::Receiver<DelayPolicy>,
    loss: watch::Receiver<LossPolicy>,
    shutdown: Shutdown,
) -> Result<SynchronizerReport, SynchronizerError> {
    let budgets = Budgets {
        max_in_flight: config.max_in_flight,
        max_waiting_bytes: config.max_waiting_bytes,
    };
    let initial_policy = *delay.borrow();
    let core = Arc::new(Mutex::new(SynchronizerCore::new(
        budgets,
        initial_policy,
        rand_seed(),
    )));
    let context = JobContext::new(config.kafka.bootstrap_servers());
    let consumer_context =
        SynchronizerContext::new(context.clone(), &config.input_topic, core.clone());
    let consumer = subscribed_consumer(&config, consumer_context.clone())?;
    let queue_limit = (config.max_in_flight * 2).max(1000).to_string();
    let mut producer_settings = RELIABLE_PRODUCER.to_vec();
    producer_settings.push(("queue.buffering.max.messages", &queue_limit));
    // What waits in librdkafka's queue is bounded in bytes too (its default, 1 GB, would let a
    // slow broker take most of the job's memory); a full queue makes the job wait.
    producer_settings.push(("queue.buffering.max.kbytes", PRODUCER_QUEUE_KBYTES));
    let (producer, reports) = ReportingProducer::new(
        &config.kafka.producer_config(&producer_settings),
        context.clone(),
    )
    .map_err(setup_error("creating the Kafka producer"))?;
    tracing::info!(
        input = %config.input_topic,
        output = %config.output_topic,
        dead_letter = %config.dead_letter_topic,
        group = %config.group,
        delay = %*delay.borrow(),
        loss = %*loss.borrow(),
        "synchronizer started"
    );
    let max_record_bytes = config.kafka.message_max_bytes();
    let dead_letters = DeadLetters::new(
        &config.input_topic,
        &config.dead_letter_topic,
        max_record_bytes,
    );
    let meters = Meters::new(&config);
    let session_timeout = config.kafka.session_timeout(&config.group);
    let limit = config
        .assignment_timeout
        .unwrap_or_else(|| assignment_watchdog::default_limit(session_timeout));
    let mut job = Synchronizer {
        watchdog: AssignmentWatchdog::new(limit, Instant::now()),
        config,
        consumer,
        consumer_context,
        producer,
        reports,
        outputs: Slab::new(),
        max_record_bytes,
        context,
        core,
        delay,
        loss,
        dead_letters,
        report: SynchronizerReport::default(),
        meters,
        lineage: Vec::with_capacity(64),
    };
    job.run(shutdown).await
}

/// Enqueues `record`, produced for `pending`'s input record, under a new token. A record the
/// producer refuses for its size is handed back (with the refusal) to be dead-lettered.
async fn enqueue_output(
    producer: &ReportingProducer,
    outputs: &mut Slab<PendingOutput>,
    record: OutgoingRecord<'_>,
    headers: Option<OwnedHeaders>,
    pending: PendingOutput,
) -> Result<Option<(RefusedContent, KafkaError)>, SynchronizerError> {
    let token = outputs.insert(pending);
    match producer.send(record, headers, token).await {
        Ok(()) => Ok(None),
        Err(SendError::TooLarge(e)) => {
            outputs.remove(token);
            let content = RefusedContent {
                key: record.key.map(<[u8]>::to_vec),
                value: record.value.map(<[u8]>::to_vec),
            };
            Ok(Some((content, e)))
        }
        Err(SendError::Kafka(source)) => {
            outputs.remove(token);
            Err(SynchronizerError::Delivery {
                topic: record.topic.to_string(),
                source,
            })
        }
    }
}

fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

struct Synchronizer {
    config: SynchronizerConfig,
    consumer: Arc<StreamConsumer<SynchronizerContext>>,
    consumer_context: SynchronizerContext,
    watchdog: AssignmentWatchdog,
    producer: ReportingProducer,
    reports: mpsc::UnboundedReceiver<DeliveryReport>,
    /// Produced records not yet reported, by token.
    outputs: Slab<PendingOutput>,
    /// The largest record the producer may send (`message.max.bytes`).
    max_record_bytes: usize,
    context: JobContext,
    /// Every decision: what waits, what is due, what may be consumed and committed. Shared
    /// with the consumer's rebalance callback (revoked partitions); never locked across I/O.
    core: Arc<Mutex<SynchronizerCore>>,
    delay: watch::Receiver<DelayPolicy>,
    loss: watch::Receiver<LossPolicy>,
    dead_letters: DeadLetters,
    report: SynchronizerReport,
    meters: Meters,
    /// The lineage header's value, written into one buffer for every record.
    lineage: Vec<u8>,
}

/// The synchronizer's per-record metrics, resolved once (not per record).
struct Meters {
    consumed: metrics::Counter,
    produced_reduced: metrics::Counter,
    produced_dead_letter: metrics::Counter,
    produce_ack: metrics::Histogram,
    dropped: metrics::Counter,
    in_flight: metrics::Gauge,
    waiting: metrics::Gauge,
    assigned: metrics::Gauge,
    rejoins: metrics::Counter,
}

impl Meters {
    fn new(config: &SynchronizerConfig) -> Self {
        let produced = |topic: &str| metrics::counter!("sla_records_produced_total", "topic" => topic.to_string());
        Meters {
            consumed: metrics::counter!("sla_records_consumed_total", "topic" => config.input_topic.clone()),
            produced_reduced: produced(&config.output_topic),
            produced_dead_letter: produced(&config.dead_letter_topic),
            produce_ack: metrics::histogram!("sla_produce_ack_seconds"),
            dropped: metrics::counter!("sla_synchronizer_records_dropped_total"),
            in_flight: metrics::gauge!("sla_records_in_flight"),
            waiting: metrics::gauge!("sla_records_waiting"),
            assigned: metrics::gauge!("sla_assigned_partitions", "topic" => config.input_topic.clone(), "role" => "input"),
            rejoins: metrics::counter!("sla_consumer_group_rejoins_total", "topic" => config.input_topic.clone()),
        }
    }
}

impl Synchronizer {
    async fn run(
        &mut self,
        mut shutdown: Shutdown,
    ) -> Result<SynchronizerReport, SynchronizerError> {
        let mut commit_tick = tokio::time::interval(self.config.commit_interval);
        let mut watchdog_tick = tokio::time::interval(WATCHDOG_INTERVAL);
        let mut drain_deadline: Option<Instant> = None;
        let mut reports = Vec::with_capacity(REPORT_BATCH);
        metrics::gauge!("sla_synchronizer_delay_seconds")
            .set(self.core().policy().delay.as_secs_f64());
        metrics::gauge!("sla_synchronizer_loss_ratio").set(self.core().loss().ratio());
        loop {
            self.produce_due().await?;
            let policy = *self.delay.borrow();
            let previous = self.core().policy();
            if self.core().set_policy(policy) {
                tracing::info!(from = %previous, to = %policy, "delay changed");
                metrics::gauge!("sla_synchronizer_delay_seconds").set(policy.delay.as_secs_f64());
                continue;
            }
            let loss = *self.loss.borrow();
            if self.core().set_loss(loss) {
                if loss == LossPolicy::NONE {
                    tracing::info!("loss switch off");
                } else {
                    tracing::warn!(%loss, "loss switch on: dropping records on purpose");
                }
                metrics::gauge!("sla_synchronizer_loss_ratio").set(loss.ratio());
            }
            let (in_flight, waiting, may_consume, next_due) = {
                let core = self.core();
                (
                    core.in_flight(),
                    core.waiting(),
                    core.may_consume(),
                    core.next_due(),
                )
            };
            self.meters.in_flight.set(in_flight as f64);
            self.meters.waiting.set(waiting as f64);
            if drain_deadline.is_some() && waiting == 0 && self.outputs.is_empty() {
                break;
            }
            let can_consume = drain_deadline.is_none() && may_consume;
            let consumer = self.consumer.clone();
            tokio::select! {
                biased;
                _ = shutdown.wait(), if drain_deadline.is_none() => {
                    tracing::info!(
                        waiting,
                        in_flight,
                        "stopped consuming; draining delayed and in-flight records"
                    );
                    drain_deadline = Some(Instant::now() + self.config.drain_timeout);
                }
                taken = self.reports.recv_many(&mut reports, REPORT_BATCH) => {
                    if taken > 0 {
                        self.on_reports(&mut reports).await?;
                    }
                }
                _ = sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {}
                // A change of the delay or the loss switch applies before the next record.
                Ok(()) = self.delay.changed() => {}
                Ok(()) = self.loss.changed() => {}
                _ = commit_tick.tick() => self.commit(CommitMode::Async).await,
                _ = watchdog_tick.tick(), if drain_deadline.is_none() => self.check_assignment().await?,
                _ = sleep_until(drain_deadline.unwrap_or_else(Instant::now)), if drain_deadline.is_some() => {
                    tracing::warn!(
                        waiting,
                        undelivered = self.outputs.len(),
                        "drain timeout reached; unacknowledged records will be reprocessed after a restart"
                    );
                    break;
                }
                message = consumer.recv(), if can_consume => {
                    // The records of one batch are stamped with the moment the batch's
                    // processing started (a clock read per record cost a tenth of the job).
                    let started = (chrono::Utc::now().timestamp_millis(), Instant::now());
                    let mut next = Some(message);
                    let mut taken = 0;
                    while let Some(message) = next.take() {
                        match message {
                            Ok(message) => self.on_message(&message, started).await?,
                            Err(e) => tracing::warn!("consuming from {}: {e}", self.config.input_topic),
                        }
                        taken += 1;
                        if taken < READY_BATCH && self.core().has_room() {
                            next = consumer.recv().now_or_never();
                        }
                    }
                    self.meters.consumed.increment(taken as u64);
                }
            }
        }
        self.commit(CommitMode::Sync).await;
        tracing::info!(?self.report, "synchronizer stopped");
        Ok(self.report)
    }

    async fn on_message(
        &mut self,
        message: &BorrowedMessage<'_>,
        (start_ms, started): (i64, Instant),
    ) -> Result<(), SynchronizerError> {
        let (partition, offset) = (message.partition(), message.offset());
        self.context.mark_healthy();
        self.core().consumed(partition, offset);
        self.report.consumed += 1;
        let visit = match Visit::decode(message.payload()) {
            Ok(visit) => visit,
            Err(rejection) => return self.dead_letter(message, &rejection).await,
        };
        if self.core().drops(partition, offset) {
            self.meters.dropped.increment(1);
            return Ok(());
        }
        let value = ReducedVisit::from_visit(&visit, start_ms).to_json();
        let size = visit.id.len() + value.len();
        if size > self.max_record_bytes {
            let rejection = Rejection::new(
                RejectReason::TooLarge,
                format!(
                    "its reduced record would be {size} bytes; the producer sends at most {} \
                     (message.max.bytes)",
                    self.max_record_bytes
                ),
            );
            return self.dead_letter(message, &rejection).await;
        }
        let reduced = Reduced {
            partition,
            offset,
            source_timestamp_ms: message.timestamp().to_millis(),
            started,
            key: visit.id,
            value,
        };
        let admitted = self.core().admit(reduced);
        match admitted {
            Some(now) => self.produce_reduced(now).await,
            None => Ok(()),
        }
    }

    /// The core, locked for one decision (never across I/O).
    fn core(&self) -> std::sync::MutexGuard<'_, SynchronizerCore> {
        self.core.lock().expect("synchronizer core poisoned")
    }

    /// Sends a consumed record to the dead-letter topic; its offset is committed once that is
    /// acknowledged.
    async fn dead_letter(
        &mut self,
        message: &BorrowedMessage<'_>,
        rejection: &Rejection,
    ) -> Result<(), SynchronizerError> {
        let (partition, offset) = (message.partition(), message.offset());
        let refused = Refused {
            key: message.key(),
            value: message.payload(),
            headers: message.headers(),
            partition,
            offset,
            timestamp_ms: message.timestamp().to_millis(),
        };
        match self.enqueue_dead_letter(refused, rejection).await? {
            None => Ok(()),
            Some((content, e)) => {
                self.dead_letter_refused(partition, offset, content, &e)
                    .await
            }
        }
    }

    /// Enqueues the dead letter of `refused`; a dead letter the producer refuses for its size
    /// is handed back with the refusal.
    async fn enqueue_dead_letter<H: rdkafka::message::Headers>(
        &mut self,
        refused: Refused<'_, H>,
        rejection: &Rejection,
    ) -> Result<Option<(RefusedContent, KafkaError)>, SynchronizerError> {
        let (partition, offset) = (refused.partition, refused.offset);
        let letter = self.dead_letters.prepare(refused, rejection, &[]);
        let record = OutgoingRecord {
            partition: None,
            topic: self.dead_letters.topic(),
            key: letter.key,
            value: letter.value,
        };
        let pending = PendingOutput {
            partition,
            offset,
            kind: OutputKind::DeadLetter,
            started: Instant::now(),
        };
        enqueue_output(
            &self.producer,
            &mut self.outputs,
            record,
            Some(letter.headers),
            pending,
        )
        .await
    }

    /// Dead-letters a record the producer or the broker refused for itself (its size): what
    /// was refused is kept, cut to fit, with the input record's position; a refused dead
    /// letter is kept as its headers alone (reason, source, original size).
    async fn dead_letter_refused(
        &mut self,
        partition: i32,
        offset: i64,
        content: RefusedContent,
        error: &KafkaError,
    ) -> Result<(), SynchronizerError> {
        let size =
            content.key.as_ref().map_or(0, Vec::len) + content.value.as_ref().map_or(0, Vec::len);
        let rejection = Rejection::new(
            RejectReason::TooLarge,
            format!("its reduced record ({size} bytes) was refused: {error}"),
        );
        let refused = Refused::<OwnedHeaders> {
            key: content.key.as_deref(),
            value: content.value.as_deref(),
            headers: None,
            partition,
            offset,
            // Its timestamp is not kept with its position (the first attempt carried it).
            timestamp_ms: None,
        };
        match self.enqueue_dead_letter(refused, &rejection).await? {
            None => Ok(()),
            Some((_, e)) if size > 0 => {
                let bare = RefusedContent::default();
                Box::pin(self.dead_letter_refused(partition, offset, bare, &e)).await
            }
            Some((_, source)) => Err(SynchronizerError::Delivery {
                topic: self.config.dead_letter_topic.clone(),
                source,
            }),
        }
    }

    /// Produces every waiting record whose due time has come, in due order.
    async fn produce_due(&mut self) -> Result<(), SynchronizerError> {
        let now = Instant::now();
        loop {
            let due = self.core().pop_due(now);
            match due {
                Some(released) => self.produce_reduced(released).await?,
                None => return Ok(()),
            }
        }
    }

    /// Produces the reduced record of input `offset` of `partition`, due at `due`.
    async fn produce_reduced(&mut self, released: Released) -> Result<(), SynchronizerError> {
        let Released { record, due } = released;
        let (partition, offset) = (record.partition, record.offset);
        Lineage {
            topic: &self.config.input_topic,
            partition,
            offset,
            timestamp_ms: record.source_timestamp_ms,
        }
        .encode_into(&mut self.lineage);
        let lineage = OwnedHeaders::new_with_capacity(1).insert(Header {
            key: LINEAGE_HEADER,
            value: Some(&self.lineage[..]),
        });
        let record = OutgoingRecord {
            partition: None,
            topic: &self.config.output_topic,
            key: Some(record.key.as_bytes()),
            value: Some(record.value.as_bytes()),
        };
        let pending = PendingOutput {
            partition,
            offset,
            kind: OutputKind::Reduced,
            started: due,
        };
        let refusal = enqueue_output(
            &self.producer,
            &mut self.outputs,
            record,
            Some(lineage),
            pending,
        )
        .await?;
        match refusal {
            None => Ok(()),
            Some((content, e)) => {
                self.dead_letter_refused(partition, offset, content, &e)
                    .await
            }
        }
    }

    /// Takes a batch of delivery reports: acknowledged records let their offsets be committed;
    /// a record refused for its size is dead-lettered; any other failure stops the job (its
    /// offset is not committed, so it is processed again after a restart).
    async fn on_reports(
        &mut self,
        reports: &mut Vec<DeliveryReport>,
    ) -> Result<(), SynchronizerError> {
        let now = Instant::now();
        let (mut reduced, mut dead_lettered) = (0u64, 0u64);
        let mut refused = Vec::new();
        {
            let mut core = self.core.lock().expect("synchronizer core poisoned");
            for report in reports.drain(..) {
                let Some(output) = self.outputs.try_remove(report.token) else {
                    continue;
                };
                match report.result {
                    Ok(()) => {
                        core.acknowledged(output.partition, output.offset);
                        self.meters
                            .produce_ack
                            .record(now.saturating_duration_since(output.started).as_secs_f64());
                        match output.kind {
                            OutputKind::Reduced => reduced += 1,
                            OutputKind::DeadLetter => dead_lettered += 1,
                        }
                    }
                    Err(e) if refused_for_itself(&e) => refused.push((output, e, report.refused)),
                    Err(source) => {
                        let topic = match output.kind {
                            OutputKind::Reduced => &self.config.output_topic,
                            OutputKind::DeadLetter => &self.config.dead_letter_topic,
                        };
                        return Err(SynchronizerError::Delivery {
                            topic: topic.clone(),
                            source,
                        });
                    }
                }
            }
        }
        if reduced + dead_lettered > 0 {
            self.context.mark_healthy();
        }
        self.meters.produced_reduced.increment(reduced);
        self.meters.produced_dead_letter.increment(dead_lettered);
        self.report.produced += reduced;
        self.report.dead_lettered += dead_lettered;
        for (output, error, content) in refused {
            // A refused dead letter is kept as its headers alone (reason, source, size).
            let content = match output.kind {
                OutputKind::Reduced => content.unwrap_or_default(),
                OutputKind::DeadLetter => RefusedContent::default(),
            };
            self.dead_letter_refused(output.partition, output.offset, content, &error)
                .await?;
        }
        Ok(())
    }

    /// Publishes how many partitions this member holds and, when it has held none for too
    /// long while the input has partitions and the broker answers, rejoins the group with a
    /// fresh consumer (the old one leaves the group as it closes).
    async fn check_assignment(&mut self) -> Result<(), SynchronizerError> {
        let assigned = self.consumer.assignment().map_or(0, |a| a.count());
        self.meters.assigned.set(assigned as f64);
        let now = Instant::now();
        let for_how_long = match self.watchdog.observe(assigned, now) {
            Verdict::Assigned => {
                self.config.readiness.set_ready();
                return Ok(());
            }
            Verdict::Waiting => return Ok(()),
            Verdict::Stuck { for_how_long } => for_how_long,
        };
        self.watchdog.acted(now);
        let (consumer, topic) = (self.consumer.clone(), self.config.input_topic.clone());
        let partitions = tokio::task::spawn_blocking(move || {
            consumer
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
                .map(|m| {
                    m.topics()
                        .iter()
                        .map(|t| t.partitions().len())
                        .sum::<usize>()
                })
        })
        .await
        .unwrap_or(Err(KafkaError::Canceled));
        // Holding nothing is not this member's fault when the topic has no partitions or the
        // broker does not answer: said, and waited out until the watchdog's next attempt.
        let why_not = match partitions {
            Ok(0) => format!("topic {} has no partitions", self.config.input_topic),
            Err(e) => format!("the broker does not answer ({e})"),
            Ok(partitions) => return self.rejoin(partitions, for_how_long),
        };
        tracing::warn!(
            held_none_for = ?for_how_long,
            "this member holds no partition of {}, but {why_not}: waiting",
            self.config.input_topic
        );
        Ok(())
    }

    /// Leaves the group and joins it again with a fresh consumer.
    fn rejoin(
        &mut self,
        partitions: usize,
        for_how_long: Duration,
    ) -> Result<(), SynchronizerError> {
        tracing::error!(
            held_none_for = ?for_how_long,
            partitions,
            group = %self.config.group,
            next_attempt_in = ?self.watchdog.limit(),
            "this member holds no partition of {} although it has {partitions} and the broker answers: \
             leaving the group and rejoining with a fresh consumer",
            self.config.input_topic
        );
        self.config.readiness.set_not_ready(format!(
            "no partition of {} held for {:.0?}; rejoining the group",
            self.config.input_topic, for_how_long
        ));
        self.meters.rejoins.increment(1);
        let fresh = subscribed_consumer(&self.config, self.consumer_context.clone())?;
        retire_when_unshared(std::mem::replace(&mut self.consumer, fresh));
        Ok(())
    }

    /// Commits, per partition, the offsets below the first record whose output is not yet
    /// acknowledged: asynchronously while running (only what advanced past what the
    /// coordinator acknowledged), synchronously and completely at shutdown. What counts as
    /// committed is decided by the coordinator's answer (`SynchronizerContext::commit_callback`).
    async fn commit(&mut self, mode: CommitMode) {
        let offsets = {
            let core = self.core();
            match mode {
                CommitMode::Sync => core.safe_positions(),
                CommitMode::Async => core.committable(),
            }
        };
        if offsets.is_empty() {
            return;
        }
        let mut list = TopicPartitionList::new();
        for &(partition, offset) in &offsets {
            list.add_partition_offset(&self.config.input_topic, partition, Offset::Offset(offset))
                .expect("valid offset");
        }
        let result = match mode {
            CommitMode::Async => commit_async(&*self.consumer, &list),
            // A synchronous commit waits for the coordinator: off the runtime's workers. Its
            // answer is the call's result (librdkafka sends it to no callback).
            CommitMode::Sync => {
                let consumer = self.consumer.clone();
                let (result, list) =
                    tokio::task::spawn_blocking(move || (consumer.commit(&list, mode), list))
                        .await
                        .expect("commit task panicked");
                self.consumer
                    .context()
                    .commit_callback(result.clone(), &list);
                result
            }
        };
        if let Err(e) = result {
            tracing::warn!("committing offsets {offsets:?}: {e}; will retry");
        }
    }
}
