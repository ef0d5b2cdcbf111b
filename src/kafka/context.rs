//! The Kafka client context of every job: turns librdkafka's logs and errors into readable,
//! rate-limited log lines and metrics, notices recovery, publishes what offset commits the
//! group coordinator acknowledged (and counts those it refused), and logs rebalances. (What a job
//! commits when partitions are taken away is the job's own policy: see
//! `synchronizer::rebalance`.)

use super::security_failure::{classify, transport_hint};
use crate::runtime::rate_limited_log::RateLimitedLog;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
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

    /// librdkafka statistics (enabled with `statistics.interval.ms` on consumers): notices a
    /// broker connection that is up again, and exports each assigned partition's lag behind
    /// the partition's end, by committed offset.
    fn stats(&self, statistics: Statistics) {
        // A broker connection is up: Kafka is reachable again even if no record flows (an
        // idle topic would otherwise leave the job marked unreachable until its next record).
        if statistics.brokers.values().any(|b| b.state == "UP") {
            self.mark_healthy();
        }
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
        if code == Some(RDKafkaErrorCode::PartitionEOF) {
            // Reaching a partition's end is news, not an error (consumers that ask for it
            // handle it as the end of what waits).
            return;
        }
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
            // `kafka_error` (the librdkafka code) becomes a tag of the error report.
            let kafka_error = label.as_str();
            if let Some(failure) = classify(code, reason) {
                tracing::error!(brokers = %self.inner.brokers, kafka_error, suppressed, "{failure}");
            } else if let Some(hint) = transport_hint(reason) {
                tracing::error!(brokers = %self.inner.brokers, kafka_error, suppressed, "Kafka connection failed ({reason}); {hint}");
            } else if unreachable {
                tracing::error!(
                    brokers = %self.inner.brokers,
                    kafka_error,
                    suppressed,
                    "Kafka broker unreachable ({reason}); retrying until it returns"
                );
            } else {
                tracing::error!(brokers = %self.inner.brokers, kafka_error, suppressed, "Kafka client error: {error}: {reason}");
            }
        }
    }
}

impl JobContext {
    /// The outcome of one offset commit (asynchronous or synchronous: librdkafka reports both
    /// here once the coordinator answered): `sla_committed_offset` moves only for partitions
    /// the coordinator acknowledged; refusals are counted by error code in
    /// `sla_offset_commit_failures_total` and logged (rate-limited). Returns the acknowledged
    /// offsets (topic, partition, offset).
    pub fn on_commit(
        &self,
        result: &KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) -> Vec<(String, i32, i64)> {
        let mut acknowledged = Vec::new();
        let mut failed = Vec::new();
        for element in offsets.elements() {
            let outcome = result.clone().and(element.error());
            match (outcome, element.offset()) {
                (Ok(()), Offset::Offset(offset)) => {
                    metrics::gauge!("sla_committed_offset", "topic" => element.topic().to_string(), "partition" => element.partition().to_string())
                        .set(offset as f64);
                    acknowledged.push((element.topic().to_string(), element.partition(), offset));
                }
                (Ok(()), _) => {}
                // Nothing to commit is not a failure.
                (Err(e), _) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::NoOffset) => {}
                (Err(e), _) => failed.push((element.partition(), e)),
            }
        }
        if let (Err(e), true) = (result, offsets.count() == 0) {
            if e.rdkafka_error_code() != Some(RDKafkaErrorCode::NoOffset) {
                failed.push((-1, e.clone()));
            }
        }
        for (_, error) in &failed {
            let code = error
                .rdkafka_error_code()
                .map_or_else(|| "other".to_string(), |c| format!("{c:?}"));
            metrics::counter!("sla_offset_commit_failures_total", "code" => code).increment(1);
        }
        if let Some((_, first)) = failed.first() {
            if let Some(suppressed) = self.should_log("commit".to_string()) {
                let partitions: Vec<i32> = failed.iter().map(|(p, _)| *p).collect();
                tracing::warn!(
                    brokers = %self.inner.brokers,
                    ?partitions,
                    suppressed,
                    "offset commit refused ({first}); the offsets stay uncommitted and are committed again with the next commit (a restart before that reprocesses those records)"
                );
            }
        }
        acknowledged
    }
}

impl ConsumerContext for JobContext {
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        self.on_commit(&result, offsets);
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use rdkafka::error::KafkaError;

    /// Runs `f` with a recorder of its own and returns every metric it set, by name and labels.
    fn recorded(f: impl FnOnce()) -> Vec<(String, Vec<String>, DebugValue)> {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, f);
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let key = key.key();
                let labels = key
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                (key.name().to_string(), labels, value)
            })
            .collect()
    }

    fn offsets(list: &[(i32, i64)]) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for &(partition, offset) in list {
            tpl.add_partition_offset("t", partition, Offset::Offset(offset))
                .unwrap();
        }
        tpl
    }

    #[test]
    fn an_acknowledged_commit_publishes_the_committed_offsets() {
        let mut acknowledged = Vec::new();
        let metrics = recorded(|| {
            let context = JobContext::new("b");
            acknowledged = context.on_commit(&Ok(()), &offsets(&[(0, 10), (1, 7)]));
        });
        assert_eq!(acknowledged, vec![("t".into(), 0, 10), ("t".into(), 1, 7)]);
        let committed: Vec<_> = metrics
            .iter()
            .filter(|(name, _, _)| name == "sla_committed_offset")
            .map(|(_, labels, value)| (labels.clone(), value))
            .collect();
        assert_eq!(committed.len(), 2);
        assert!(committed.contains(&(
            vec!["topic=t".into(), "partition=0".into()],
            &DebugValue::Gauge(10.0.into())
        )));
        assert!(metrics
            .iter()
            .all(|(name, _, _)| name != "sla_offset_commit_failures_total"));
    }

    #[test]
    fn a_refused_commit_is_counted_and_publishes_nothing_as_committed() {
        let mut acknowledged = Vec::new();
        let metrics = recorded(|| {
            let context = JobContext::new("b");
            let refused = Err(KafkaError::ConsumerCommit(
                RDKafkaErrorCode::UnknownMemberId,
            ));
            acknowledged = context.on_commit(&refused, &offsets(&[(0, 10), (1, 7)]));
        });
        assert!(acknowledged.is_empty());
        assert!(metrics
            .iter()
            .all(|(name, _, _)| name != "sla_committed_offset"));
        let failures: Vec<_> = metrics
            .iter()
            .filter(|(name, _, _)| name == "sla_offset_commit_failures_total")
            .collect();
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].1, vec!["code=UnknownMemberId".to_string()]);
        assert_eq!(failures[0].2, DebugValue::Counter(2));
    }

    #[test]
    fn a_partition_refused_within_an_accepted_commit_is_counted_alone() {
        let list = offsets(&[(0, 10), (1, 7)]);
        // As librdkafka reports a partition the coordinator refused (rdkafka has no setter).
        unsafe {
            (*(*list.ptr()).elems.add(1)).err =
                rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE;
        }
        let mut acknowledged = Vec::new();
        let metrics = recorded(|| {
            acknowledged = JobContext::new("b").on_commit(&Ok(()), &list);
        });
        assert_eq!(acknowledged, vec![("t".into(), 0, 10)]);
        assert!(metrics.iter().any(
            |(name, labels, _)| name == "sla_offset_commit_failures_total"
                && labels == &vec!["code=OffsetMetadataTooLarge".to_string()]
        ));
    }

    #[test]
    fn nothing_to_commit_is_not_a_failure() {
        let metrics = recorded(|| {
            let nothing = Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset));
            JobContext::new("b").on_commit(&nothing, &TopicPartitionList::new());
        });
        assert!(metrics
            .iter()
            .all(|(name, _, _)| name != "sla_offset_commit_failures_total"));
    }
}
