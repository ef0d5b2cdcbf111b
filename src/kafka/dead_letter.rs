//! Dead-letter records: a refused record is kept, unchanged, with why and where it came from.

use super::producer::{enqueue, OutgoingRecord};
use super::JobContext;
use crate::record::rejection::{RejectReason, Rejection};
use crate::runtime::rate_limited_log::RateLimitedLog;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer};
use std::time::Duration;
use tokio::time::Instant;

/// Header carrying the stable reject reason (see [`crate::record::rejection::RejectReason`]).
pub const REASON_HEADER: &str = "dlq.reason";
/// Header carrying the human-readable detail of the rejection.
pub const DETAIL_HEADER: &str = "dlq.detail";
/// Header carrying the topic the record was consumed from.
pub const SOURCE_TOPIC_HEADER: &str = "dlq.source.topic";
/// Header carrying the partition the record was consumed from.
pub const SOURCE_PARTITION_HEADER: &str = "dlq.source.partition";
/// Header carrying the offset the record was consumed from.
pub const SOURCE_OFFSET_HEADER: &str = "dlq.source.offset";
/// Header carrying the refused record's own timestamp (Unix ms), when it had one: when it
/// entered the topic it was consumed from.
pub const SOURCE_TIMESTAMP_HEADER: &str = "dlq.source.timestamp";
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
    /// The source record's timestamp (Unix ms), when known.
    pub timestamp_ms: Option<i64>,
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
    let timestamp = source.timestamp_ms.map(|t| t.to_string());
    [
        (REASON_HEADER, rejection.reason.as_str()),
        (DETAIL_HEADER, rejection.detail.as_str()),
        (SOURCE_TOPIC_HEADER, source.topic),
        (SOURCE_PARTITION_HEADER, partition.as_str()),
        (SOURCE_OFFSET_HEADER, offset.as_str()),
    ]
    .into_iter()
    .chain(timestamp.as_deref().map(|t| (SOURCE_TIMESTAMP_HEADER, t)))
    .fold(original.unwrap_or_default(), |headers, (key, value)| {
        headers.insert(Header {
            key,
            value: Some(value),
        })
    })
}

/// Header set to `true` when the dead letter keeps only the start of the record's key or value
/// (the whole record would exceed what the producer may send).
pub const TRUNCATED_HEADER: &str = "dlq.truncated";
/// Header carrying the refused record's original size in bytes (key plus value).
pub const ORIGINAL_SIZE_HEADER: &str = "dlq.original.size";
/// The longest `dlq.detail` header in bytes; longer details are cut (a detail may quote the
/// record's own content).
pub const MAX_DETAIL_BYTES: usize = 1024;
/// What a dead letter's headers and framing may take beyond its key and value.
const HEADERS_ALLOWANCE: usize = 4096;

/// A refused record to keep: its content and where it came from.
#[derive(Debug, Clone, Copy)]
pub struct Refused<'a, H> {
    /// Its key.
    pub key: Option<&'a [u8]>,
    /// Its value.
    pub value: Option<&'a [u8]>,
    /// Its headers, carried onto the dead letter.
    pub headers: Option<&'a H>,
    /// The partition it was consumed from.
    pub partition: i32,
    /// The offset it was consumed from.
    pub offset: i64,
    /// Its timestamp (Unix ms), when known.
    pub timestamp_ms: Option<i64>,
}

/// A dead letter ready to produce to [`DeadLetters::topic`].
#[derive(Debug)]
pub struct DeadLetter<'a> {
    /// The record's key (cut to fit if it had to be).
    pub key: Option<&'a [u8]>,
    /// The record's value (cut to fit if it had to be).
    pub value: Option<&'a [u8]>,
    /// Reason, detail, source and, when cut, the original size.
    pub headers: OwnedHeaders,
}

/// Turns refused records into dead letters: each is counted by reason
/// (`sla_records_rejected_total`), logged at most once per reason every 10 s, and kept
/// unchanged — or, when it would exceed `max_bytes`, its start, flagged with
/// [`TRUNCATED_HEADER`] and [`ORIGINAL_SIZE_HEADER`] — with why and where it came from in its
/// headers.
pub struct DeadLetters {
    source_topic: String,
    topic: String,
    max_bytes: usize,
    log: RateLimitedLog<RejectReason>,
}

impl DeadLetters {
    /// Dead letters of records consumed from `source_topic`, for `topic`, each at most
    /// `max_bytes` (the producer's `message.max.bytes`); the rejection counter of every reason
    /// is published (at 0) from now on.
    pub fn new(source_topic: &str, topic: &str, max_bytes: usize) -> Self {
        for reason in RejectReason::ALL {
            metrics::counter!("sla_records_rejected_total", "reason" => reason.as_str())
                .increment(0);
        }
        DeadLetters {
            source_topic: source_topic.to_string(),
            topic: topic.to_string(),
            max_bytes,
            log: RateLimitedLog::new(Duration::from_secs(10)),
        }
    }

    /// The dead-letter topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

impl Drop for DeadLetters {
    /// Says how many records of each reason were dead-lettered since its last log line, so a
    /// job that stops loses no count (error reports carry them as `records`).
    fn drop(&mut self) {
        for (reason, records) in self.log.take_held_back() {
            tracing::warn!(
                reason = %reason,
                records,
                "{records} more records of {} sent to {} ({reason}) since the last line",
                self.source_topic,
                self.topic
            );
        }
    }
}

impl DeadLetters {
    /// Counts and logs `refused` and returns its dead letter, with any `extra` headers.
    pub fn prepare<'a, H: Headers>(
        &mut self,
        refused: Refused<'a, H>,
        rejection: &Rejection,
        extra: &[(&str, &str)],
    ) -> DeadLetter<'a> {
        let (partition, offset) = (refused.partition, refused.offset);
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
                cut(&rejection.detail, MAX_DETAIL_BYTES)
            );
        }
        let source = SourcePosition {
            topic: &self.source_topic,
            partition,
            offset,
            timestamp_ms: refused.timestamp_ms,
        };
        let bounded = Rejection {
            reason: rejection.reason,
            detail: cut(&rejection.detail, MAX_DETAIL_BYTES).to_string(),
        };
        let original_headers = refused.headers.map(owned_headers);
        let headers_size = original_headers.as_ref().map_or(0, headers_size);
        let budget = self
            .max_bytes
            .saturating_sub(HEADERS_ALLOWANCE + headers_size);
        let (key, value) = (
            refused.key.unwrap_or_default(),
            refused.value.unwrap_or_default(),
        );
        let fits = key.len() + value.len() <= budget;
        let mut headers = extra.iter().fold(
            dead_letter_headers(original_headers, &bounded, source),
            |headers, (key, value)| {
                headers.insert(Header {
                    key,
                    value: Some(*value),
                })
            },
        );
        if fits {
            return DeadLetter {
                key: refused.key,
                value: refused.value,
                headers,
            };
        }
        let original_size = (key.len() + value.len()).to_string();
        headers = headers
            .insert(Header {
                key: TRUNCATED_HEADER,
                value: Some("true"),
            })
            .insert(Header {
                key: ORIGINAL_SIZE_HEADER,
                value: Some(original_size.as_str()),
            });
        let kept_key = key.len().min(budget);
        let kept_value = value.len().min(budget - kept_key);
        DeadLetter {
            key: refused.key.map(|k| &k[..kept_key]),
            value: refused.value.map(|v| &v[..kept_value]),
            headers,
        }
    }
}

/// Writes refused records to a dead-letter topic as [`DeadLetters`] describes.
pub struct DeadLetterQueue {
    producer: FutureProducer<JobContext>,
    letters: DeadLetters,
}

impl DeadLetterQueue {
    /// A queue writing records consumed from `source_topic` to `topic` with `producer`, each
    /// at most `max_bytes` (see [`DeadLetters::new`]).
    pub fn new(
        producer: FutureProducer<JobContext>,
        source_topic: &str,
        topic: &str,
        max_bytes: usize,
    ) -> Self {
        DeadLetterQueue {
            producer,
            letters: DeadLetters::new(source_topic, topic, max_bytes),
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
        let refused = Refused {
            key: message.key(),
            value: message.payload(),
            headers: message.headers(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp_ms: message.timestamp().to_millis(),
        };
        let letter = self.letters.prepare(refused, rejection, extra);
        let record = OutgoingRecord {
            partition: None,
            topic: &self.letters.topic,
            key: letter.key,
            value: letter.value,
        };
        enqueue(&self.producer, record, Some(letter.headers)).await
    }
}

/// librdkafka's default `message.max.bytes`.
pub const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// `text`, cut at a character boundary to at most `max` bytes.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn headers_size(headers: &OwnedHeaders) -> usize {
    headers
        .iter()
        .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len) + 8)
        .sum()
}

impl DeadLetterQueue {
    /// Enqueues a dead letter of input record `offset` of `partition` holding only headers
    /// (reason, detail, source): for a record whose full dead letter was refused for its size.
    pub async fn send_bare(
        &mut self,
        partition: i32,
        offset: i64,
        rejection: &Rejection,
    ) -> Result<DeliveryFuture, KafkaError> {
        let refused = Refused::<OwnedHeaders> {
            key: None,
            value: None,
            headers: None,
            partition,
            offset,
            // Sent again as headers alone, for a record the broker refused: its timestamp
            // is not kept with its position (the first dead letter attempt carried it).
            timestamp_ms: None,
        };
        let letter = self.letters.prepare(refused, rejection, &[]);
        let record = OutgoingRecord {
            partition: None,
            topic: &self.letters.topic,
            key: None,
            value: None,
        };
        enqueue(&self.producer, record, Some(letter.headers)).await
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
    use crate::record::rejection::RejectReason;
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
                timestamp_ms: Some(1_795_000_000_123),
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
        assert!(pairs.contains(&(SOURCE_TIMESTAMP_HEADER.into(), "1795000000123".into())));
    }

    fn header(headers: &OwnedHeaders, key: &str) -> Option<String> {
        headers
            .iter()
            .find(|h| h.key == key)
            .map(|h| String::from_utf8(h.value.unwrap().to_vec()).unwrap())
    }

    fn refused<'a>(key: &'a [u8], value: &'a [u8]) -> Refused<'a, OwnedHeaders> {
        Refused {
            key: Some(key),
            value: Some(value),
            headers: None,
            partition: 0,
            offset: 7,
            timestamp_ms: Some(1_795_000_000_123),
        }
    }

    #[test]
    fn a_record_that_fits_is_kept_whole() {
        let mut letters = DeadLetters::new("in", "dlq", 10_000);
        let rejection = Rejection::new(RejectReason::InvalidJson, "x");
        let letter = letters.prepare(refused(b"k", &[b'a'; 5_000]), &rejection, &[]);
        assert_eq!(letter.value.unwrap().len(), 5_000);
        assert_eq!(header(&letter.headers, TRUNCATED_HEADER), None);
    }

    #[test]
    fn a_record_too_large_keeps_its_start_flagged_with_its_size() {
        let mut letters = DeadLetters::new("in", "dlq", 10_000);
        let rejection = Rejection::new(RejectReason::TooLarge, "é".repeat(5_000));
        let value = vec![b'a'; 50_000];
        let letter = letters.prepare(refused(b"key", &value), &rejection, &[]);
        let kept = letter.key.unwrap().len() + letter.value.unwrap().len();
        assert!(kept > 0 && kept <= 10_000 - HEADERS_ALLOWANCE, "{kept}");
        assert_eq!(
            header(&letter.headers, TRUNCATED_HEADER).as_deref(),
            Some("true")
        );
        assert_eq!(
            header(&letter.headers, ORIGINAL_SIZE_HEADER).as_deref(),
            Some("50003")
        );
        let detail = header(&letter.headers, DETAIL_HEADER).unwrap();
        assert!(detail.len() <= MAX_DETAIL_BYTES && detail.starts_with('é'));
    }

    #[test]
    fn a_huge_key_is_cut_too() {
        let mut letters = DeadLetters::new("in", "dlq", 8_192);
        let rejection = Rejection::new(RejectReason::TooLarge, "big");
        let key = vec![b'k'; 100_000];
        let letter = letters.prepare(refused(&key, b"v"), &rejection, &[]);
        assert_eq!(letter.key.unwrap().len(), 8_192 - HEADERS_ALLOWANCE);
        assert_eq!(letter.value.unwrap().len(), 0);
    }
}
