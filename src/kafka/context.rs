//! The Kafka client context of every job: turns librdkafka's logs and errors into readable,
//! rate-limited log lines and metrics, notices recovery, and logs rebalances. (What a job
//! commits when partitions are taken away is the job's own policy: see
//! `synchronizer::rebalance`.)

use super::security_failure::{classify, transport_hint};
use crate::rate_limited_log::RateLimitedLog;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Client context shared by the producers and consumers of a job (clones share state, so a
/// recovery seen by one client is reported once).
#[derive(Clone)]
pub struct JobContext {
    inner: Arc<Inner>,
}

struct Inner {
    brokers: String,
    limiter: Mutex<RateLimitedLog<String>>,
    /// Reference point of `unreachable_since_ms`.
    created: Instant,
    /// Since when every broker is unreachable, in ms after `created` (at least 1); 0 while
    /// reachable. One atomic, so the healthy path (every record) takes no lock.
    unreachable_since_ms: AtomicU64,
}

impl JobContext {
    /// A context for clients connected to `brokers`. Jobs create it after their connection
    /// check succeeded, so `sla_kafka_reachable` starts at 1 (it exists from the start, and
    /// alerts on its absence or on 0 work).
    pub fn new(brokers: &str) -> Self {
        metrics::gauge!("sla_kafka_reachable").set(1.0);
        JobContext {
            inner: Arc::new(Inner {
                brokers: brokers.to_string(),
                limiter: Mutex::new(RateLimitedLog::new(LOG_INTERVAL)),
                created: Instant::now(),
                unreachable_since_ms: AtomicU64::new(0),
            }),
        }
    }

    /// Called by a job after a successful consume or delivery: logs once that Kafka is
    /// reachable again after errors.
    pub fn mark_healthy(&self) {
        if self.inner.unreachable_since_ms.swap(0, Ordering::Relaxed) != 0 {
            tracing::info!(brokers = %self.inner.brokers, "Kafka is reachable again; resuming");
            metrics::gauge!("sla_kafka_reachable").set(1.0);
        }
    }

    /// How long every broker has been unreachable, if it is now.
    pub fn unreachable_for(&self) -> Option<Duration> {
        match self.inner.unreachable_since_ms.load(Ordering::Relaxed) {
            0 => None,
            since => Some(
                self.inner
                    .created
                    .elapsed()
                    .saturating_sub(Duration::from_millis(since)),
            ),
        }
    }

    /// Records that every broker is unreachable, keeping the earliest moment.
    fn mark_unreachable(&self) {
        let now = (self.inner.created.elapsed().as_millis() as u64).max(1);
        let _ = self.inner.unreachable_since_ms.compare_exchange(
            0,
            now,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
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
            self.mark_unreachable();
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
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            tracing::info!(revoked = ?revoked.elements().iter().map(|e| e.partition()).collect::<Vec<_>>(), "partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(assigned) = rebalance {
            tracing::info!(assigned = ?assigned.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect::<Vec<_>>(), "partitions assigned");
        }
    }
}
