//! The Kafka client context of every job: turns librdkafka's logs and errors into readable,
//! rate-limited log lines and metrics, notices recovery, and commits safe offsets of
//! partitions taken away by a rebalance.

use super::security_failure::{classify, transport_hint};
use crate::offset_tracker::OffsetTracker;
use crate::rate_limited_log::RateLimitedLog;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Offsets of one consumed topic shared between a job's loop and its rebalance callback.
#[derive(Debug, Clone)]
pub struct SharedOffsets {
    /// The consumed topic.
    pub topic: String,
    /// The offsets pending acknowledgement.
    pub tracker: Arc<Mutex<OffsetTracker>>,
}

/// Client context shared by the producers and consumers of a job (clones share state, so a
/// recovery seen by one client is reported once).
#[derive(Clone)]
pub struct JobContext {
    inner: Arc<Inner>,
}

struct Inner {
    brokers: String,
    limiter: Mutex<RateLimitedLog<String>>,
    unhealthy: AtomicBool,
    offsets: Option<SharedOffsets>,
}

impl JobContext {
    /// A context for clients connected to `brokers`; `offsets` is set for consumers whose
    /// revoked partitions must have their safe offsets committed.
    pub fn new(brokers: &str, offsets: Option<SharedOffsets>) -> Self {
        JobContext {
            inner: Arc::new(Inner {
                brokers: brokers.to_string(),
                limiter: Mutex::new(RateLimitedLog::new(LOG_INTERVAL)),
                unhealthy: AtomicBool::new(false),
                offsets,
            }),
        }
    }

    /// Called by a job after a successful consume or delivery: logs once that Kafka is
    /// reachable again after errors.
    pub fn mark_healthy(&self) {
        if self.inner.unhealthy.swap(false, Ordering::Relaxed) {
            tracing::info!(brokers = %self.inner.brokers, "Kafka is reachable again; resuming");
            metrics::gauge!("sla_kafka_reachable").set(1.0);
        }
    }

    fn should_log(&self, key: String) -> Option<u64> {
        self.inner
            .limiter
            .lock()
            .expect("log limiter poisoned")
            .should_log(key, Instant::now())
    }
}

impl ClientContext for JobContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let severe = matches!(
            level,
            RDKafkaLogLevel::Emerg
                | RDKafkaLogLevel::Alert
                | RDKafkaLogLevel::Critical
                | RDKafkaLogLevel::Error
                | RDKafkaLogLevel::Warning
        );
        if !severe {
            tracing::debug!(target: "librdkafka", facility, "{message}");
        } else if let Some(suppressed) = self.should_log(format!("log:{facility}")) {
            tracing::warn!(target: "librdkafka", facility, suppressed, "{message}");
        }
    }

    /// librdkafka statistics (enabled with `statistics.interval.ms` on consumers): exports
    /// each assigned partition's lag behind the partition's end, by committed offset.
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    metrics::gauge!("sla_consumer_lag", "topic" => topic.clone(), "partition" => partition.to_string())
                        .set(p.consumer_lag as f64);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        let label = code.map_or_else(|| "other".to_string(), |c| format!("{c:?}"));
        metrics::counter!("sla_kafka_client_errors_total", "code" => label.clone()).increment(1);
        let unreachable = matches!(
            code,
            Some(
                RDKafkaErrorCode::AllBrokersDown
                    | RDKafkaErrorCode::BrokerTransportFailure
                    | RDKafkaErrorCode::Resolve
            )
        );
        if unreachable {
            self.inner.unhealthy.store(true, Ordering::Relaxed);
            metrics::gauge!("sla_kafka_reachable").set(0.0);
        }
        if let Some(suppressed) = self.should_log(format!("error:{label}")) {
            if let Some(failure) = classify(code, reason) {
                tracing::error!(brokers = %self.inner.brokers, suppressed, "{failure}");
            } else if let Some(hint) = transport_hint(reason) {
                tracing::error!(brokers = %self.inner.brokers, suppressed, "Kafka connection failed ({reason}); {hint}");
            } else if unreachable {
                tracing::error!(
                    brokers = %self.inner.brokers,
                    suppressed,
                    "Kafka broker unreachable ({reason}); retrying until it returns"
                );
            } else {
                tracing::error!(brokers = %self.inner.brokers, suppressed, "Kafka client error: {error}: {reason}");
            }
        }
    }
}

impl ConsumerContext for JobContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let (Rebalance::Revoke(revoked), Some(shared)) = (rebalance, &self.inner.offsets) else {
            return;
        };
        let mut tracker = shared.tracker.lock().expect("offset tracker poisoned");
        let partitions: Vec<i32> = revoked
            .elements()
            .iter()
            .filter(|e| e.topic() == shared.topic)
            .map(|e| e.partition())
            .collect();
        let safe: Vec<(i32, i64)> = tracker
            .committable()
            .into_iter()
            .filter(|(p, _)| partitions.contains(p))
            .collect();
        if !safe.is_empty() {
            let mut list = TopicPartitionList::new();
            for &(partition, offset) in &safe {
                list.add_partition_offset(&shared.topic, partition, Offset::Offset(offset))
                    .expect("valid offset");
            }
            match consumer.commit(&list, CommitMode::Sync) {
                Ok(()) => tracing::info!(?safe, "committed offsets of revoked partitions"),
                Err(e) => tracing::warn!(
                    ?safe,
                    "could not commit offsets of revoked partitions ({e}); their new owner will reprocess some records"
                ),
            }
        }
        for partition in partitions {
            tracker.remove(partition);
        }
        tracing::info!(revoked = ?revoked.elements().iter().map(|e| e.partition()).collect::<Vec<_>>(), "partitions revoked");
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(assigned) = rebalance {
            tracing::info!(assigned = ?assigned.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect::<Vec<_>>(), "partitions assigned");
        }
    }
}
