//! The partitions of a topic, as the broker's metadata lists them: what every reader that
//! assigns partitions itself asks first.

use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

/// The partitions of `topic`, waiting at most `timeout` for the broker: empty when the topic
/// does not exist (the caller decides whether that is an error).
pub fn topic_partitions<C, T>(
    consumer: &T,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, KafkaError>
where
    C: ConsumerContext,
    T: Consumer<C>,
{
    let metadata = match consumer.fetch_metadata(Some(topic), timeout) {
        Ok(metadata) => metadata,
        Err(KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition)) => {
            return Ok(Vec::new())
        }
        Err(e) => return Err(e),
    };
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}
