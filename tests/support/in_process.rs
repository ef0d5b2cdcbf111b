//! The monitor run inside the test, against the real broker: its two stages as the binary runs
//! them, with an in-memory sink and a shutdown the test triggers. Tests wait on acknowledged
//! documents and on the group's committed offsets, not on files, signals or log lines.

use super::{brokers, MonitorTopics};
use clap::Parser;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, TopicPartitionList};
use sla_monitor::distribution::digest::DigestConfig;
use sla_monitor::event_time::watermark::WatermarkConfig;
use sla_monitor::event_time::window::WindowConfig;
use sla_monitor::event_time::window_document::WindowDocument;
use sla_monitor::kafka::group_consumer::offsets_of;
use sla_monitor::kafka::KafkaArgs;
use sla_monitor::monitor::measurement::Plausibility;
use sla_monitor::monitor::{self, MonitorConfig, MonitorError, MonitorReport};
use sla_monitor::runtime::http::Readiness;
use sla_monitor::runtime::shutdown::{Shutdown, ShutdownTrigger};
use sla_monitor::sink::memory::MemorySink;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The Kafka flags as a job reads them.
#[derive(Parser)]
struct KafkaFlags {
    #[command(flatten)]
    kafka: KafkaArgs,
}

/// The Kafka settings of the test monitor (the test broker, a 6 s session timeout), with
/// `extra` flags (e.g. `["-X", "message.max.bytes=8000"]`).
pub fn kafka_args(extra: &[&str]) -> KafkaArgs {
    let brokers = brokers();
    let flags = [
        "monitor",
        "--brokers",
        &brokers,
        "-X",
        "session.timeout.ms=6000",
    ];
    KafkaFlags::parse_from(flags.iter().chain(extra)).kafka
}

/// The test monitor's settings: 2 s windows, 500 ms out-of-orderness, SLA 1 s, commits every
/// 200 ms, a 6 s session timeout; `idle` is the idle timeout.
pub fn test_config(topics: &MonitorTopics, group: &str, idle: Duration) -> MonitorConfig {
    let kafka = kafka_args(&[]);
    MonitorConfig {
        kafka,
        input_topic: topics.reduced.clone(),
        dead_letter_topic: topics.dlq.clone(),
        checkpoint_topic: topics.checkpoints.clone(),
        shuffle_topic: topics.shuffle.clone(),
        shuffle_partitions: 1,
        group: group.to_string(),
        job_name: "visits-synchronizer".to_string(),
        window: WindowConfig {
            size_ms: 2_000,
            allowed_lateness_ms: 0,
            sla_ms: 1_000,
            quantiles: vec![0.5, 0.75, 0.9, 0.99],
            digest: DigestConfig::default(),
        },
        watermark: WatermarkConfig {
            max_out_of_orderness_ms: 500,
            idle_timeout_ms: idle.as_millis() as i64,
            producer_hold_ms: 0,
            assume_broker_stamped: false,
        },
        plausibility: Plausibility {
            max_future_ms: 300_000,
            max_latency_ms: 3_600_000,
            max_clock_skew_ms: 5_000,
        },
        stamps: sla_monitor::record::stamp::LatencyStamps::default(),
        commit_interval: Duration::from_millis(200),
        tick: Duration::from_millis(200),
        drain_timeout: Duration::from_secs(30),
        authentication: sla_monitor::shuffle::authentication::RecordAuthentication::none(),
        completeness: None,
        split: None,
    }
}

/// A monitor running in this process.
pub struct InProcessMonitor {
    /// What it wrote.
    pub sink: MemorySink,
    /// Its settings.
    pub config: MonitorConfig,
    stop: ShutdownTrigger,
    task: JoinHandle<Result<MonitorReport, MonitorError>>,
}

impl InProcessMonitor {
    /// Prepares the topics and starts the monitor with `config`.
    pub async fn start(config: MonitorConfig) -> InProcessMonitor {
        let (stop, shutdown) = Shutdown::new();
        let readiness = sla_monitor::runtime::http::Readiness::default();
        let layout = monitor::prepare_topics(&config, &readiness, shutdown.clone())
            .await
            .expect("preparing the monitor's topics");
        let sink = MemorySink::new();
        let task = tokio::spawn(monitor::run(
            config.clone(),
            layout,
            sink.clone(),
            Readiness::default(),
            shutdown,
        ));
        InProcessMonitor {
            sink,
            config,
            stop,
            task,
        }
    }

    /// Waits (at most `timeout`) until at least `count` documents are written.
    pub async fn documents(
        &self,
        count: usize,
        timeout: Duration,
    ) -> BTreeMap<String, WindowDocument> {
        tokio::time::timeout(timeout, self.sink.wait_until(|d| d.len() >= count))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{count} window documents not written within {timeout:?}: {:?}",
                    self.sink.documents().keys()
                )
            })
    }

    /// Asks it to stop (as SIGTERM does) and returns its report.
    pub async fn stop(self) -> MonitorReport {
        self.stop.trigger();
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the monitor did not stop within 60 s")
            .expect("the monitor task panicked")
            .expect("the monitor failed")
    }
}

/// The offsets `group` has committed on `partitions` partitions of `topic`.
pub fn committed_offsets(group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", group)
        .create()
        .expect("a consumer to read committed offsets");
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    let committed = super::blocking(|| consumer.committed_offsets(list, Duration::from_secs(10)))
        .expect("reading committed offsets");
    offsets_of(&committed, topic)
}

/// A window document as the JSON a sink stores (with its `id`), for the shared assertions.
pub fn document_json(document: &WindowDocument) -> serde_json::Value {
    serde_json::from_str(&sla_monitor::sink::json_lines::to_line(document)).expect("a JSON line")
}

/// The end (next offset) of each of `partitions` partitions of `topic`.
pub fn partition_ends(topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("a consumer to read partition ends");
    (0..partitions)
        .map(|p| {
            let (_, high) =
                super::blocking(|| consumer.fetch_watermarks(topic, p, Duration::from_secs(10)))
                    .expect("reading a partition's end");
            (p, high)
        })
        .collect()
}
