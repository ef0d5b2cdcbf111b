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
//! Each stage is pure state plus one small loop of its own, in its own task, so that one
//! stage's waiting (a rebalance's restore, a slow sink) never holds the other up:
//! - partition stage: [`partition_stage`] (the loop) around [`decisions`] (every decision, no
//!   I/O, with [`known_totals`]: which windows cannot be exact, so their parts travel small), with [`restore`] (checkpoints → where each partition resumes) and [`committer`]
//!   (checkpoint writes and offset commits);
//! - merge stage: [`merge_stage`] (the loop) around [`merge_state`] (no I/O);
//! - shared: the producer, the shuffle protocol ([`crate::shuffle`], written by
//!   [`crate::shuffle::publisher`]) and every metric ([`metrics`]).
//!
//! This module wires them: clients, topics, the sink task, and the order of shutdown (the
//! partition stage publishes its last parts before the merge stage reads the shuffle to its
//! end). [`settings`] turns the job's flags into a checked [`MonitorConfig`]; [`launch`] runs
//! the job from its flags (HTTP endpoint, topics, sink, stages), all the binary calls.

pub mod checkpoint;
pub mod checkpoint_store;
pub mod committer;
pub mod decisions;
pub mod known_totals;
pub mod launch;
pub mod measurement;
pub mod merge_stage;
pub mod merge_state;
pub mod metrics;
pub mod partition_stage;
pub mod refusal_watch;
pub mod restore;
pub mod settings;
pub mod unacknowledged;

use crate::completeness::stream::CompletenessRules;
use crate::event_time::watermark::WatermarkConfig;
use crate::event_time::window::WindowConfig;
use crate::kafka::dead_letter::DeadLetterQueue;
use crate::kafka::dead_letter_evidence::DeadLetterEvidence;
use crate::kafka::group_consumer::{self, GroupConsumer};
use crate::kafka::producer::RELIABLE_PRODUCER;
use crate::kafka::rebalance_events::RebalanceNotifier;
use crate::kafka::source_offsets::SourceOffsets;
use crate::kafka::{admin, ensure_topics_when_reachable, JobContext, KafkaArgs, TopicSpec};
use crate::record::stamp::EndSource;
use crate::runtime::http::Readiness;
use crate::runtime::shutdown::Shutdown;
use crate::shuffle::authentication::RecordAuthentication;
use crate::shuffle::publisher::ShufflePublisher;
use crate::shuffle::{JobIdentity, Shuffle};
use crate::sink::driver;
use crate::sink::{SinkError, WindowSink};
use committer::Committer;
use decisions::{CoreConfig, MonitorCore};
use merge_stage::{MergeStage, MergeStageParts};
use merge_state::MergeState;
use partition_stage::{PartitionStage, PartitionStageParts};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

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
    /// Where each record's latency starts and ends (`--start-time`, `--end-time`).
    pub stamps: crate::record::stamp::LatencyStamps,
    /// How often safe offsets are committed.
    pub commit_interval: Duration,
    /// How often the watermark is advanced by the clock and windows are closed.
    pub tick: Duration,
    /// On shutdown, how long to wait for the sink and dead-letter deliveries.
    pub drain_timeout: Duration,
    /// How the internal records (shuffle, checkpoints) are authenticated.
    pub authentication: RecordAuthentication,
    /// Reconciliation with the pipeline's source topic (`--source-topic`), if asked for.
    pub completeness: Option<CompletenessConfig>,
    /// Windows split by dimension value (`--dimension`), if asked for.
    pub split: Option<crate::dimension::split_config::SplitConfig>,
}

/// What reconciliation with the pipeline's source needs (`--source-topic`, `--lost-after`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletenessConfig {
    /// The topic the pipeline reads: every record of it is accounted for.
    pub source_topic: String,
    /// A record not arrived this long after it entered the source is lost.
    pub lost_after: Duration,
    /// The pipeline's dead-letter topics: a source record a dead letter names is accounted
    /// for as dead-lettered (or filtered), not missing.
    pub dead_letter_topics: Vec<String>,
}

impl MonitorConfig {
    /// How arrivals are judged, with `--source-topic`.
    pub fn completeness_rules(&self) -> Option<CompletenessRules> {
        let completeness = self.completeness.as_ref()?;
        Some(CompletenessRules {
            window_ms: self.window.size_ms,
            sla_ms: self.window.sla_ms,
            lost_after_ms: completeness.lost_after.as_millis() as i64,
        })
    }
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
    /// With `--source-topic`: records without a lineage naming a timestamped record of the
    /// source topic (their source records cannot be told arrived).
    pub without_lineage: u64,
    /// With `--source-topic`: late records whose partition had no open window to carry their
    /// arrival (published on its own instead).
    pub late_arrivals_alone: u64,
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
}

/// Brokers unreachable this long make the monitor report not ready.
pub const KAFKA_UNREACHABLE_LIMIT: Duration = Duration::from_secs(30);

/// A window batch the sink has not acknowledged for this long makes the monitor not ready.
pub const SINK_STALLED_LIMIT: Duration = Duration::from_secs(60);

/// The partition counts of the monitor's topics that preparing them made known (each one
/// unknown is looked up when the monitor starts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicLayout {
    /// Partitions of the input topic.
    pub input_partitions: Option<i32>,
    /// Partitions of the shuffle topic.
    pub shuffle_partitions: Option<i32>,
    /// The input topic is configured with `message.timestamp.type=LogAppendTime`.
    pub input_log_append_time: bool,
}

/// Waits for the input topic (never created here: the pipeline that writes it does, and a
/// misspelt name must not become an empty topic the monitor reads forever; `readiness` says
/// what is awaited), creates the dead-letter, checkpoint and shuffle topics when missing, and
/// warns when the input topic does not use LogAppendTime. Returns the partition counts it
/// learned on the way, so that [`run`] need not ask again.
pub async fn prepare_topics(
    config: &MonitorConfig,
    readiness: &Readiness,
    shutdown: Shutdown,
) -> anyhow::Result<TopicLayout> {
    let k = &config.kafka;
    let client = k.client_config(&[]);
    let input_partitions = admin::wait_for_input_topic(
        &client,
        &config.input_topic,
        "--input-topic",
        readiness,
        shutdown.clone(),
    )
    .await?;
    readiness.set_not_ready("starting: preparing the Kafka topics");
    let specs = [
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
    let counts = ensure_topics_when_reachable(&client, &specs, shutdown).await?;
    let mut layout = TopicLayout {
        input_partitions: Some(input_partitions),
        shuffle_partitions: counts.get(&config.shuffle_topic).copied(),
        input_log_append_time: false,
    };
    match admin::timestamp_type(&client, &config.input_topic).await {
        Ok(Some(t)) if t == "LogAppendTime" => layout.input_log_append_time = true,
        Ok(other) => tracing::warn!(
            topic = %config.input_topic,
            configured = ?other,
            "topic is not configured with message.timestamp.type=LogAppendTime: event times are the \
             producer's CreateTime, which is only right if the producer stamps the produce time, \
             and an idle partition's windows close --max-producer-hold ({:?}) after their end so \
             that a record a producer held is not late \
             (fix: kafka-configs --alter --entity-type topics --entity-name {} --add-config message.timestamp.type=LogAppendTime)",
            config.watermark.producer_hold_ms,
            config.input_topic
        ),
        Err(e) => tracing::warn!(
            "could not read the timestamp type of {}: {e}",
            config.input_topic
        ),
    }
    Ok(layout)
}

/// Runs the monitor until shutdown; windows still open at shutdown are not written (they are
/// rebuilt from Kafka by whichever instance owns their partitions next).
pub async fn run(
    config: MonitorConfig,
    layout: TopicLayout,
    sink: impl WindowSink,
    readiness: Readiness,
    mut shutdown: Shutdown,
) -> Result<MonitorReport, MonitorError> {
    let context = JobContext::new(config.kafka.bootstrap_servers());
    let (input_context, input_events) =
        RebalanceNotifier::new(context.clone(), &config.input_topic);
    let leaders_up = input_context.leaders_up();
    let consumer = group_consumer::subscribe(
        config.kafka.consumer_config(&config.group),
        input_context,
        &config.input_topic,
    )
    .map_err(MonitorError::Setup)?;
    let (merge_context, merge_events) =
        RebalanceNotifier::new(context.clone(), &config.shuffle_topic);
    // The merge consumer never commits: each assignment re-reads its shuffle partition.
    let merge_consumer = group_consumer::subscribe(
        config.kafka.consumer_config(&merge_group_of(&config.group)),
        merge_context.clone(),
        &config.shuffle_topic,
    )
    .map_err(MonitorError::Setup)?;
    let producer: FutureProducer<JobContext> = config
        .kafka
        .producer_config(RELIABLE_PRODUCER)
        .create_with_context(context.clone())
        .map_err(|e| MonitorError::Setup(format!("creating the Kafka producer: {e}")))?;
    // Partition counts preparing the topics did not learn are asked for (both at once).
    let (shuffle_partitions, input_partitions) = tokio::try_join!(
        async {
            match layout.shuffle_partitions {
                Some(count) => Ok(count),
                None => partition_count(&merge_consumer, &config.shuffle_topic).await,
            }
        },
        async {
            match layout.input_partitions {
                Some(count) => Ok((0..count).collect::<Vec<i32>>()),
                None => group_consumer::partition_ids(&merge_consumer, &config.input_topic)
                    .await
                    .map_err(MonitorError::Setup),
            }
        },
    )?;
    let sink_name = sink.describe();
    let shuffle = Shuffle::new(
        JobIdentity {
            group: config.group.clone(),
            input_topic: config.input_topic.clone(),
            job: config.job_name.clone(),
            window_ms: config.window.size_ms,
        },
        config.authentication.clone(),
    );
    let publisher = ShufflePublisher::new(
        producer.clone(),
        &config.shuffle_topic,
        shuffle.clone(),
        shuffle_partitions,
        config.window.size_ms,
    )
    .with_max_record_bytes(config.kafka.message_max_bytes());
    // Connects while the instance joins its groups, ready for the first assignment.
    let checkpoints = checkpoint_store::CheckpointReader::new(
        &config.kafka,
        &config.checkpoint_topic,
        &config.group,
    )
    .map_err(|e| MonitorError::Setup(format!("creating the checkpoint reader: {e}")))?;
    let source_offsets = match (&config.completeness, config.completeness_rules()) {
        (Some(completeness), Some(rules)) => {
            let client = config.kafka.client_config(&[]);
            let source = &completeness.source_topic;
            let setup = |what: &str, e: rdkafka::error::KafkaError| {
                MonitorError::Setup(format!("creating the reader of {source}'s {what}: {e}"))
            };
            let mut offsets = SourceOffsets::new(&client, source, SOURCE_LOOKUP_TIMEOUT)
                .map_err(|e| setup("offsets", e))?;
            if !completeness.dead_letter_topics.is_empty() {
                let dead_letters = DeadLetterEvidence::new(
                    &client,
                    &completeness.dead_letter_topics,
                    source,
                    rules,
                    SOURCE_LOOKUP_TIMEOUT,
                )
                .map_err(|e| setup("dead letters", e))?;
                offsets = offsets.with_dead_letters(dead_letters);
            }
            Some(Arc::new(offsets))
        }
        _ => None,
    };
    let (batches, acks) = driver::spawn(sink, metrics::sink_retries());
    let input_owned = Arc::new(AtomicUsize::new(0));
    let partitions = PartitionStage::new(
        config.clone(),
        MonitorCore::new(CoreConfig {
            input_topic: config.input_topic.clone(),
            group: config.group.clone(),
            job_name: config.job_name.clone(),
            window: config.window.clone(),
            // Before a partition's first record, the topic's configuration says whose stamps
            // its event times are.
            watermark: WatermarkConfig {
                assume_broker_stamped: layout.input_log_append_time
                    && matches!(config.stamps.end, EndSource::KafkaTimestamp),
                ..config.watermark
            },
            plausibility: config.plausibility,
            stamps: config.stamps.clone(),
            completeness: config
                .completeness_rules()
                .zip(config.completeness.as_ref().map(|c| c.source_topic.clone()))
                .map(|(rules, topic)| (topic, rules)),
            split: config.split.clone(),
        }),
        PartitionStageParts {
            committer: Committer::new(
                consumer.clone(),
                producer.clone(),
                &config.checkpoint_topic,
                &config.input_topic,
                config.authentication.clone(),
            ),
            dead_letters: DeadLetterQueue::new(
                producer.clone(),
                &config.input_topic,
                &config.dead_letter_topic,
                config.kafka.message_max_bytes(),
            ),
            consumer,
            events: input_events,
            leaders_up,
            context: context.clone(),
            publisher: publisher.clone(),
            checkpoints,
            owned_count: input_owned.clone(),
            readiness: readiness.clone(),
        },
    );
    let merging = MergeStage::new(
        config.clone(),
        {
            let state = MergeState::new(
                config.window.clone(),
                shuffle,
                config.plausibility.max_future_ms,
            );
            let state = match config.completeness_rules() {
                Some(rules) => state.with_completeness(rules),
                None => state,
            };
            match &config.split {
                Some(split) => state.with_values(split.max_values),
                None => state,
            }
        },
        MergeStageParts {
            consumer: merge_consumer,
            consumer_context: merge_context,
            events: merge_events,
            context,
            producer: producer.clone(),
            publisher,
            batches,
            acks,
            input_partitions,
            input_owned,
            readiness: readiness.clone(),
            source_offsets,
        },
    );
    readiness.set_ready();
    tracing::info!(
        topic = %config.input_topic,
        job = %config.job_name,
        group = %config.group,
        shuffle = %config.shuffle_topic,
        window_ms = config.window.size_ms,
        sink = %sink_name,
        internal_records = %config.authentication.describe(),
        "monitor started"
    );
    // The partition stage stops on shutdown or when the merge stage failed; the merge stage
    // once the partition stage has published its last parts.
    let (stop_partitions, partitions_stop) = Shutdown::new();
    let (partitions_done, merge_stop) = Shutdown::new();
    let mut partition_task = tokio::spawn(partitions.run(partitions_stop));
    let mut merge_task = tokio::spawn(merging.run(merge_stop));
    let mut partition_result = None;
    let mut merge_result = None;
    tokio::select! {
        _ = shutdown.wait() => {}
        result = &mut partition_task => partition_result = Some(result),
        result = &mut merge_task => merge_result = Some(result),
    }
    stop_partitions.trigger();
    let partition_result = match partition_result {
        Some(result) => result,
        None => partition_task.await,
    };
    partitions_done.trigger();
    let merge_result = match merge_result {
        Some(result) => result,
        None => merge_task.await,
    };
    // Written markers and tombstones are not awaited by the stages: give them a moment.
    let _ = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(5))).await;
    let report = partition_result.map_err(stage_panicked)??;
    let windows_written = merge_result.map_err(stage_panicked)??;
    let report = MonitorReport {
        windows_written,
        ..report
    };
    tracing::info!(
        ?report,
        "monitor stopped; open windows will be rebuilt by the partitions' next owner"
    );
    Ok(report)
}

/// How long one offsets-for-times or metadata answer of the source topic may take.
const SOURCE_LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Work a stage runs in the background and polls in its loop.
type Pending<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// The outcome of a stage's background work under way (never completes when there is none).
async fn outcome_of<T>(pending: &mut Option<Pending<T>>) -> T {
    match pending {
        Some(work) => work.await,
        None => std::future::pending().await,
    }
}

/// Processing time now (ms since the epoch), as both stages pass it to their state.
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The consumer group of the merge stage: the input group's name + `.merge`.
fn merge_group_of(group: &str) -> String {
    format!("{group}.merge")
}

/// How many partitions `topic` has.
async fn partition_count(consumer: &GroupConsumer, topic: &str) -> Result<i32, MonitorError> {
    let ids = group_consumer::partition_ids(consumer, topic)
        .await
        .map_err(MonitorError::Setup)?;
    Ok(ids.len() as i32)
}

fn stage_panicked(e: tokio::task::JoinError) -> MonitorError {
    MonitorError::Setup(format!("a monitor stage stopped unexpectedly: {e}"))
}
