//! Everything that talks to Kafka: client settings, topic administration, the client context
//! (logging, rebalances) and dead-letter records.

pub mod admin;
pub mod config;
pub mod context;
pub mod dead_letter;
pub mod producer;
pub mod properties;
pub mod security_failure;

pub use admin::{ensure_topics, ensure_topics_when_reachable, TopicSpec};
pub use config::{Compression, KafkaArgs};
pub use context::JobContext;
