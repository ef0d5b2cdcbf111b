//! Everything that talks to Kafka: client settings, topic administration, the client context
//! (logging, rebalances, commit outcomes), offset commits, dead-letter records, offsets by time
//! ([`source_offsets`]), dead letters read as evidence ([`dead_letter_evidence`]), a topic's
//! partitions ([`topic_partitions`]); and the two
//! pure pieces of consumer bookkeeping, which offsets are safe to commit ([`offset_tracker`])
//! and when a group member has held no partition for too long ([`assignment_watchdog`]).

pub mod admin;
pub mod assignment_watchdog;
pub mod commit;
pub mod config;
pub mod context;
pub mod dead_letter;
pub mod dead_letter_evidence;
pub mod group_consumer;
pub mod offset_tracker;
pub mod producer;
pub mod properties;
pub mod rebalance_events;
pub mod reporting_producer;
pub mod retire;
pub mod security_failure;
pub mod source_offsets;
pub mod stamp_headers;
pub mod topic_partitions;
pub mod transient;

pub use admin::{ensure_topics, ensure_topics_when_reachable, TopicSpec};
pub use config::{Compression, KafkaArgs};
pub use context::JobContext;

/// After a job's loop has received a record, it takes up to this many more that are already
/// fetched before going back through its `select!` (timers, acknowledgements, shutdown): the
/// per-record cost of polling every branch is paid once per batch instead.
pub const READY_BATCH: usize = 256;
