//! The visits generator job: produces visit records at a steady rate, with chosen shares of
//! malformed, duplicate and late records, so every path downstream can be exercised.

pub mod visits;

use crate::kafka::producer::{delivered, enqueue, OutgoingRecord, RELIABLE_PRODUCER};
use crate::kafka::{ensure_topics_when_reachable, JobContext, KafkaArgs, TopicSpec};
use crate::runtime::shutdown::Shutdown;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use rdkafka::producer::FutureProducer;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;
pub use visits::{GeneratedRecord, RecordKind, RecordMix, VisitGenerator};

/// What the generator needs to run.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    /// Brokers, client properties and topic shape.
    pub kafka: KafkaArgs,
    /// Destination topic.
    pub topic: String,
    /// Records per second.
    pub rate: f64,
    /// Stop after this many records (None: no limit).
    pub count: Option<u64>,
    /// Stop after this long (None: no limit).
    pub duration: Option<Duration>,
    /// Shares of unusual records.
    pub mix: RecordMix,
    /// Seed of the record contents.
    pub seed: u64,
}

/// Records acknowledged by the broker, by kind.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GeneratorReport {
    /// Total acknowledged records.
    pub produced: u64,
    /// Acknowledged records per kind (see [`RecordKind::as_str`]).
    pub by_kind: BTreeMap<&'static str, u64>,
}

/// How long a stopping generator waits for the deliveries still under way.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Pacing tick: records are sent in small bursts this often to follow the rate.
const TICK: Duration = Duration::from_millis(10);

/// Produces records until the count or duration is reached or shutdown is requested, then
/// waits for every delivery and returns what was acknowledged.
pub async fn run(
    config: GeneratorConfig,
    mut shutdown: Shutdown,
) -> anyhow::Result<GeneratorReport> {
    anyhow::ensure!(
        config.rate > 0.0 && config.rate.is_finite(),
        "--rate must be a positive number of records per second, got {}",
        config.rate
    );
    config.mix.validate()?;
    let k = &config.kafka;
    ensure_topics_when_reachable(
        &k.client_config(&[]),
        &[TopicSpec::new(
            &config.topic,
            k.partitions,
            k.replication_factor,
        )],
        shutdown.clone(),
    )
    .await?;
    let context = JobContext::new(k.bootstrap_servers());
    let producer: FutureProducer<JobContext> = k
        .producer_config(RELIABLE_PRODUCER)
        .create_with_context(context.clone())
        .map_err(|e| anyhow::anyhow!("creating the Kafka producer: {e}"))?;
    let mut generator = VisitGenerator::new(config.seed, config.mix);
    let mut deliveries = FuturesUnordered::new();
    let mut report = GeneratorReport::default();
    let started = Instant::now();
    let mut sent: u64 = 0;
    let mut tick = tokio::time::interval(TICK);
    // Deliveries the broker has not confirmed yet (what a stop during an outage leaves).
    let unconfirmed = metrics::gauge!("sla_generator_unconfirmed_deliveries");
    tracing::info!(topic = %config.topic, rate = config.rate, count = ?config.count, duration = ?config.duration, "generator started");
    loop {
        let elapsed = started.elapsed();
        let finished = config.count.is_some_and(|c| sent >= c)
            || config.duration.is_some_and(|d| elapsed >= d)
            || shutdown.is_triggered();
        if finished {
            break;
        }
        let due = ((elapsed.as_secs_f64() * config.rate) as u64 + 1)
            .min(config.count.unwrap_or(u64::MAX));
        while sent < due {
            let record = generator.next_record(chrono::Utc::now());
            let delivery = enqueue(
                &producer,
                OutgoingRecord {
                    partition: None,
                    topic: &config.topic,
                    key: record.key.as_deref().map(str::as_bytes),
                    value: Some(&record.value),
                },
                None,
            )
            .await?;
            let kind = record.kind;
            deliveries.push(async move { (kind, delivered(delivery).await) });
            sent += 1;
        }
        unconfirmed.set(deliveries.len() as f64);
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait() => {}
            Some((kind, result)) = deliveries.next() => count(&mut report, kind, result, &context)?,
        }
    }
    // Deliveries still under way are awaited, but not for ever: a broker that answers slowly
    // (or not at all) would otherwise keep a stopped generator alive for the producer's
    // message timeout (5 minutes), and make an operator send a second signal.
    let draining = async {
        while let Some((kind, result)) = deliveries.next().await {
            count(&mut report, kind, result, &context)?;
        }
        anyhow::Ok(())
    };
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, draining).await;
    match drained {
        Ok(drained) => drained?,
        Err(_) => tracing::warn!(
            unconfirmed = deliveries.len(),
            "stopping with deliveries the broker has not confirmed after {DRAIN_TIMEOUT:?} \
             (they may or may not be written)"
        ),
    }
    tracing::info!(produced = report.produced, by_kind = ?report.by_kind, "generator finished");
    Ok(report)
}

fn count(
    report: &mut GeneratorReport,
    kind: RecordKind,
    result: Result<(), rdkafka::error::KafkaError>,
    context: &JobContext,
) -> anyhow::Result<()> {
    result.map_err(|e| anyhow::anyhow!("delivering a generated visit: {e}"))?;
    context.mark_healthy();
    report.produced += 1;
    *report.by_kind.entry(kind.as_str()).or_default() += 1;
    metrics::counter!("sla_generator_records_total", "kind" => kind.as_str()).increment(1);
    Ok(())
}
