//! Dead-letter records: a refused record is kept, unchanged, with why and where it came from.

use super::producer::{enqueue, OutgoingRecord};
use super::JobContext;
use crate::rate_limited_log::RateLimitedLog;
use crate::rejection::{RejectReason, Rejection};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer};
use std::time::Duration;
use tokio::time::Instant;

/// Header carrying the stable reject reason (see [`crate::rejection::RejectReason`]).
pub const REASON_HEADER: &str = "dlq.reason";
/// Header carrying the human-readable detail of the rejection.
pub const DETAIL_HEADER: &str = "dlq.detail";
/// Header carrying the topic the record was consumed from.
pub const SOURCE_TOPIC_HEADER: &str = "dlq.source.topic";
/// Header carrying the partition the record was consumed from.
pub const SOURCE_PARTITION_HEADER: &str = "dlq.source.partition";
/// Header carrying the offset the record was consumed from.
pub const SOURCE_OFFSET_HEADER: &str = "dlq.source.offset";
/// Header carrying, for a late record, the start (Unix ms) of the window it was late for.
pub const WINDOW_START_HEADER: &str = "dlq.window.start";

/// Where a refused record came from.
#[derive(Debug, Clone, Copy)]
pub struct SourcePosition<'a> {
    /// Source topic.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
}

/// The headers of a dead-letter record: the original headers followed by the reason, the
/// detail and the source position.
pub fn dead_letter_headers(
    original: Option<OwnedHeaders>,
    rejection: &Rejection,
    source: SourcePosition<'_>,
) -> OwnedHeaders {
    let partition = source.partition.to_string();
    let offset = source.offset.to_string();
    [
        (REASON_HEADER, rejection.reason.as_str()),
        (DETAIL_HEADER, rejection.detail.as_str()),
        (SOURCE_TOPIC_HEADER, source.topic),
        (SOURCE_PARTITION_HEADER, partition.as_str()),
        (SOURCE_OFFSET_HEADER, offset.as_str()),
    ]
    .into_iter()
    .fold(original.unwrap_or_default(), |headers, (key, value)| {
        headers.insert(Header {
            key,
            value: Some(value),
        })
    })
}

/// Writes refused records to a dead-letter topic: each is counted by reason
/// (`sla_records_rejected_total`), logged at most once per reason every 10 s, and kept
/// unchanged with why and where it came from in its headers.
pub struct DeadLetterQueue {
    producer: FutureProducer<JobContext>,
    source_topic: String,
    topic: String,
    log: RateLimitedLog<RejectReason>,
}

impl DeadLetterQueue {
    /// A queue writing records consumed from `source_topic` to `topic` with `producer`; the
    /// rejection counter of every reason is published (at 0) from now on.
    pub fn new(producer: FutureProducer<JobContext>, source_topic: &str, topic: &str) -> Self {
        for reason in RejectReason::ALL {
            metrics::counter!("sla_records_rejected_total", "reason" => reason.as_str())
                .increment(0);
        }
        DeadLetterQueue {
            producer,
            source_topic: source_topic.to_string(),
            topic: topic.to_string(),
            log: RateLimitedLog::new(Duration::from_secs(10)),
        }
    }

    /// Enqueues `message` with the reason it was refused and any `extra` headers; returns the
    /// future of its delivery (the caller commits its offset only once that succeeded).
    pub async fn send(
        &mut self,
        message: &impl Message,
        rejection: &Rejection,
        extra: &[(&str, &str)],
    ) -> Result<DeliveryFuture, KafkaError> {
        let (partition, offset) = (message.partition(), message.offset());
        metrics::counter!("sla_records_rejected_total", "reason" => rejection.reason.as_str())
            .increment(1);
        if let Some(suppressed) = self.log.should_log(rejection.reason, Instant::now()) {
            tracing::warn!(
                reason = %rejection.reason,
                partition,
                offset,
                suppressed,
                "record of {} sent to {}: {}",
                self.source_topic,
                self.topic,
                rejection.detail
            );
        }
        let source = SourcePosition {
            topic: &self.source_topic,
            partition,
            offset,
        };
        let headers = extra.iter().fold(
            dead_letter_headers(message.headers().map(owned_headers), rejection, source),
            |headers, (key, value)| {
                headers.insert(Header {
                    key,
                    value: Some(*value),
                })
            },
        );
        let record = OutgoingRecord {
            partition: None,
            topic: &self.topic,
            key: message.key(),
            value: message.payload(),
        };
        enqueue(&self.producer, record, Some(headers)).await
    }
}

/// A copy of a record's headers, to carry them onto its dead letter.
fn owned_headers(headers: &impl Headers) -> OwnedHeaders {
    headers.iter().fold(
        OwnedHeaders::new_with_capacity(headers.count()),
        |copy, h| {
            copy.insert(Header {
                key: h.key,
                value: h.value,
            })
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rejection::RejectReason;
    use rdkafka::message::Headers;

    #[test]
    fn headers_carry_reason_and_source() {
        let original = OwnedHeaders::new().insert(Header {
            key: "trace",
            value: Some("abc"),
        });
        let headers = dead_letter_headers(
            Some(original),
            &Rejection::new(RejectReason::MissingField, "visit_id is missing"),
            SourcePosition {
                topic: "visits",
                partition: 1,
                offset: 42,
            },
        );
        let pairs: Vec<(String, String)> = headers
            .iter()
            .map(|h| {
                (
                    h.key.to_string(),
                    String::from_utf8(h.value.unwrap().to_vec()).unwrap(),
                )
            })
            .collect();
        assert_eq!(pairs[0], ("trace".into(), "abc".into()));
        assert!(pairs.contains(&(REASON_HEADER.into(), "missing_field".into())));
        assert!(pairs.contains(&(SOURCE_PARTITION_HEADER.into(), "1".into())));
        assert!(pairs.contains(&(SOURCE_OFFSET_HEADER.into(), "42".into())));
        assert!(pairs.contains(&(SOURCE_TOPIC_HEADER.into(), "visits".into())));
    }
}
