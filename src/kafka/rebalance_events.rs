//! A consumer context that tells the job's loop which partitions the consumer group gave it
//! and took away. librdkafka calls rebalance callbacks while the consumer is polled, i.e.
//! inside the loop's own `recv()`, before any record of a newly assigned partition is
//! returned: so the loop, draining these events before it handles each record, always knows
//! a partition's state before its records (and never handles a record of a partition it no
//! longer owns).

use super::JobContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, TopicPartitionList};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// A change of the partitions a consumer owns (of the topic it watches).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebalanced {
    /// These partitions were assigned (with the cooperative protocol: added).
    Assigned(Vec<i32>),
    /// These partitions were taken away.
    Revoked(Vec<i32>),
}

/// The job's context plus a channel of [`Rebalanced`] events for one topic.
#[derive(Clone)]
pub struct RebalanceNotifier {
    job: JobContext,
    topic: String,
    events: mpsc::UnboundedSender<Rebalanced>,
    leaders_up: Arc<AtomicBool>,
}

impl RebalanceNotifier {
    /// A context for a consumer of `topic`, and the receiving end of its events.
    pub fn new(job: JobContext, topic: &str) -> (Self, mpsc::UnboundedReceiver<Rebalanced>) {
        let (events, receiver) = mpsc::unbounded_channel();
        (
            RebalanceNotifier {
                job,
                topic: topic.to_string(),
                events,
                leaders_up: Arc::new(AtomicBool::new(true)),
            },
            receiver,
        )
    }

    /// Whether, by this consumer's latest statistics, the brokers leading the partitions it
    /// fetches (any broker, before it fetches any) are connected. Unlike the job-wide
    /// reachability, which any client of the job restores, this is the consumer's own: after
    /// an outage it may reconnect later than the job's producer (reconnect back-off), and
    /// until it does, nobody knows what waits in its partitions.
    pub fn leaders_up(&self) -> Arc<AtomicBool> {
        self.leaders_up.clone()
    }

    fn partitions(&self, list: &TopicPartitionList) -> Vec<i32> {
        list.elements()
            .iter()
            .filter(|e| e.topic() == self.topic)
            .map(|e| e.partition())
            .collect()
    }
}

impl ClientContext for RebalanceNotifier {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.job.log(level, facility, message);
    }

    fn stats(&self, statistics: Statistics) {
        let up = |nodeid: i32| {
            statistics
                .brokers
                .values()
                .any(|b| b.nodeid == nodeid && b.state == "UP")
        };
        let leaders: Vec<i32> = statistics
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .filter(|p| p.partition >= 0 && p.fetch_state != "none")
            .map(|p| p.leader)
            .collect();
        let connected = if leaders.is_empty() {
            statistics.brokers.values().any(|b| b.state == "UP")
        } else {
            leaders.iter().all(|&leader| up(leader))
        };
        self.leaders_up.store(connected, Ordering::Relaxed);
        self.job.stats(statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.job.error(error, reason);
    }
}

impl ConsumerContext for RebalanceNotifier {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            let partitions = self.partitions(revoked);
            tracing::info!(topic = %self.topic, ?partitions, "partitions revoked");
            // The loop owns the receiver for the job's lifetime; a send can only fail while
            // it shuts down, when assignments no longer matter.
            let _ = self.events.send(Rebalanced::Revoked(partitions));
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(assigned) => {
                let partitions = self.partitions(assigned);
                tracing::info!(topic = %self.topic, ?partitions, "partitions assigned");
                let _ = self.events.send(Rebalanced::Assigned(partitions));
            }
            Rebalance::Error(e) => {
                tracing::error!(topic = %self.topic, "rebalance failed: {e}");
            }
            Rebalance::Revoke(_) => {}
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        self.job.on_commit(&result, offsets);
    }
}
