//! The pipeline's dead-letter topics read as evidence for completeness: each dead letter that
//! names a record of the source topic declares it refused (or, with `dlq.reason=filtered`,
//! dropped by design), so that record is accounted for, not missing.
//!
//! A dead letter names its source record by its `lineage` header (where the refused record
//! entered the pipeline: a stage downstream of the first carries it over from the record it
//! refused), or else by `dlq.source.topic`, `dlq.source.partition`, `dlq.source.offset` and
//! `dlq.source.timestamp` (the first stage's own dead letters, whose refused record is the
//! source's). The topics are read with assigned partitions (no group is joined, nothing is
//! committed) from a little before the first window still to account, and to their end at
//! each accounting: a final document counts every dead letter appended before it was written.

use super::dead_letter::{
    REASON_HEADER, SOURCE_OFFSET_HEADER, SOURCE_PARTITION_HEADER, SOURCE_TIMESTAMP_HEADER,
    SOURCE_TOPIC_HEADER,
};
use super::topic_partitions::topic_partitions;
use crate::completeness::declarations::{Declaration, Declarations, FILTERED_REASON};
use crate::completeness::stream::CompletenessRules;
use crate::record::lineage::{Lineage, LINEAGE_HEADER};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why the dead-letter topics could not be read to their end.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// The broker refused or did not answer.
    #[error("reading the dead-letter topic {topic}: {source}")]
    Kafka {
        /// The topic.
        topic: String,
        /// What the client said.
        source: KafkaError,
    },
    /// Not read to the end in time; what was read is kept and reading goes on next time.
    #[error(
        "the dead-letter topics were not read to their end within {0:?} ({1} records still to \
         read; reading goes on at the next accounting)"
    )]
    Behind(Duration, i64),
}

/// What one dead letter declares of a record of `source_topic`, from its headers (in order;
/// a stage's own `dlq.*` headers follow those of the record it refused, so the last of each
/// counts). `None` when it names another topic, or no position can be read.
pub fn declaration_of<'a>(
    headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    source_topic: &str,
) -> Option<Declaration> {
    let (mut lineage, mut topic, mut partition, mut offset, mut timestamp, mut reason) =
        (None, None, None, None, None, None);
    for (key, value) in headers {
        let Some(value) = value else { continue };
        match key {
            LINEAGE_HEADER => lineage = lineage.or(Lineage::parse(value).ok()),
            SOURCE_TOPIC_HEADER => topic = Some(value),
            SOURCE_PARTITION_HEADER => partition = Some(value),
            SOURCE_OFFSET_HEADER => offset = Some(value),
            SOURCE_TIMESTAMP_HEADER => timestamp = Some(value),
            REASON_HEADER => reason = Some(value),
            _ => {}
        }
    }
    let filtered = reason == Some(FILTERED_REASON.as_bytes());
    if let Some(lineage) = lineage.filter(|l| l.topic == source_topic) {
        return Some(Declaration {
            partition: lineage.partition,
            offset: lineage.offset,
            source_timestamp_ms: lineage.timestamp_ms,
            filtered,
        });
    }
    fn number<T: std::str::FromStr>(value: Option<&[u8]>) -> Option<T> {
        std::str::from_utf8(value?).ok()?.parse().ok()
    }
    if topic? != source_topic.as_bytes() {
        return None;
    }
    Some(Declaration {
        partition: number::<i32>(partition).filter(|&p| p >= 0)?,
        offset: number::<i64>(offset).filter(|&o| o >= 0)?,
        source_timestamp_ms: number(timestamp),
        filtered,
    })
}

/// Reads the dead-letter topics of a pipeline (see the module documentation).
pub struct DeadLetterEvidence {
    consumer: BaseConsumer,
    topics: Vec<String>,
    source_topic: String,
    rules: CompletenessRules,
    timeout: Duration,
    state: Mutex<ReadState>,
}

/// What has been read.
#[derive(Default)]
struct ReadState {
    /// Per dead-letter topic and partition, the next offset to read.
    positions: BTreeMap<(String, i32), i64>,
    declarations: Declarations,
    /// Dead letters naming the source topic without a readable position.
    unreadable: u64,
}

impl DeadLetterEvidence {
    /// A reader of `topics`, the dead-letter topics of the pipeline reading `source_topic`,
    /// with the client settings `config`, waiting at most `timeout` for each reading.
    pub fn new(
        config: &ClientConfig,
        topics: &[String],
        source_topic: &str,
        rules: CompletenessRules,
        timeout: Duration,
    ) -> Result<Self, KafkaError> {
        // librdkafka assigns partitions only to a consumer with a group id; this one never
        // joins it and never commits.
        let mut config = config.clone();
        config
            .set("group.id", "sla-monitor.dead-letter-evidence")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "earliest")
            .set("queued.max.messages.kbytes", "4096");
        Ok(DeadLetterEvidence {
            consumer: config.create()?,
            topics: topics.to_vec(),
            source_topic: source_topic.to_string(),
            rules,
            timeout,
            state: Mutex::new(ReadState::default()),
        })
    }

    /// The topics read.
    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    /// Reads every dead letter appended so far (starting, the first time, a little before
    /// `since_ms`, the first source window still to account) and returns what they declare of
    /// source offsets at or above `floors`; what lies below is forgotten (accounted for good).
    pub fn declarations(
        &self,
        since_ms: i64,
        floors: &BTreeMap<i32, i64>,
    ) -> Result<Declarations, EvidenceError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.read_to_end(&mut state, since_ms)?;
        state.declarations.forget_below(floors);
        Ok(state.declarations.clone())
    }

    fn read_to_end(&self, state: &mut ReadState, since_ms: i64) -> Result<(), EvidenceError> {
        let deadline = Instant::now() + self.timeout;
        let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for topic in &self.topics {
            let kafka = |source| EvidenceError::Kafka {
                topic: topic.clone(),
                source,
            };
            for partition in self.partitions(topic).map_err(kafka)? {
                let (_, end) = self
                    .consumer
                    .fetch_watermarks(topic, partition, self.timeout)
                    .map_err(kafka)?;
                let key = (topic.clone(), partition);
                let position = match state.positions.get(&key) {
                    Some(&position) => position,
                    None => {
                        // Dead letters are written after their record entered the source;
                        // `lost_after` earlier covers clocks that disagree.
                        let from = since_ms - self.rules.lost_after_ms;
                        self.first_at_or_after(topic, partition, from, end)
                            .map_err(kafka)?
                    }
                };
                state.positions.insert(key.clone(), position);
                if position < end {
                    ends.insert(key, end);
                }
            }
        }
        if ends.is_empty() {
            return Ok(());
        }
        let mut assignment = TopicPartitionList::new();
        for (topic, partition) in ends.keys() {
            let position = state.positions[&(topic.clone(), *partition)];
            assignment
                .add_partition_offset(topic, *partition, Offset::Offset(position))
                .map_err(|source| EvidenceError::Kafka {
                    topic: topic.clone(),
                    source,
                })?;
        }
        self.consumer
            .assign(&assignment)
            .map_err(|source| EvidenceError::Kafka {
                topic: self.topics.join(","),
                source,
            })?;
        let outcome = self.read_until(state, &mut ends, deadline);
        let _ = self.consumer.unassign();
        outcome
    }

    /// Polls until every partition of `ends` has reached its end, or `deadline`.
    fn read_until(
        &self,
        state: &mut ReadState,
        ends: &mut BTreeMap<(String, i32), i64>,
        deadline: Instant,
    ) -> Result<(), EvidenceError> {
        let unreadable_before = state.unreadable;
        while !ends.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let behind = ends
                    .iter()
                    .map(|(key, end)| end - state.positions.get(key).copied().unwrap_or(0))
                    .sum();
                return Err(EvidenceError::Behind(self.timeout, behind));
            }
            if let Some(Ok(message)) = self.consumer.poll(left.min(Duration::from_millis(200))) {
                let headers = message.headers().into_iter().flat_map(|h| h.iter());
                let pairs = headers.map(|h| (h.key, h.value));
                match declaration_of(pairs, &self.source_topic) {
                    Some(declaration) => {
                        let at = message.timestamp().to_millis();
                        state.declarations.record(&self.rules, &declaration, at);
                    }
                    None if names_topic(&message, &self.source_topic) => state.unreadable += 1,
                    None => {}
                }
                let key = (message.topic().to_string(), message.partition());
                state.positions.insert(key, message.offset() + 1);
            }
            // Positions also move past what is never delivered (transaction markers).
            if let Ok(positions) = self.consumer.position() {
                for element in positions.elements() {
                    if let Offset::Offset(position) = element.offset() {
                        let key = (element.topic().to_string(), element.partition());
                        let known = state.positions.entry(key).or_insert(position);
                        *known = (*known).max(position);
                    }
                }
            }
            ends.retain(|key, end| state.positions.get(key).is_some_and(|p| p < end));
        }
        if state.unreadable > unreadable_before {
            tracing::warn!(
                records = state.unreadable - unreadable_before,
                "dead letters name {} without a readable partition and offset \
                 (dlq.source.partition, dlq.source.offset or a lineage header): their records \
                 cannot be accounted for and will read as missing",
                self.source_topic
            );
        }
        Ok(())
    }

    /// The partitions of `topic`; none while it does not exist (nothing was dead-lettered).
    fn partitions(&self, topic: &str) -> Result<Vec<i32>, KafkaError> {
        topic_partitions(&self.consumer, topic, self.timeout)
    }

    /// The first offset of `partition` whose record is at or after `time_ms`, or `end`. (A
    /// broker answering 0 for "none" only makes this read more.)
    fn first_at_or_after(
        &self,
        topic: &str,
        partition: i32,
        time_ms: i64,
        end: i64,
    ) -> Result<i64, KafkaError> {
        let mut request = TopicPartitionList::new();
        request.add_partition_offset(topic, partition, Offset::Offset(time_ms.max(0)))?;
        let answer = self.consumer.offsets_for_times(request, self.timeout)?;
        let offset = answer
            .elements()
            .first()
            .map_or(Offset::End, |element| element.offset());
        Ok(match offset {
            Offset::Offset(offset) if offset >= 0 => offset.min(end),
            _ => end,
        })
    }
}

/// Whether a dead letter's `dlq.source.topic` is `topic`.
fn names_topic<M: Message>(message: &M, topic: &str) -> bool {
    message.headers().is_some_and(|headers| {
        headers
            .iter()
            .any(|h| h.key == SOURCE_TOPIC_HEADER && h.value == Some(topic.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(pairs: &'a [(&'a str, &'a str)]) -> Vec<(&'a str, Option<&'a [u8]>)> {
        pairs
            .iter()
            .map(|&(k, v)| (k, Some(v.as_bytes())))
            .collect()
    }

    #[test]
    fn a_first_stage_dead_letter_names_its_source_record() {
        let first_stage = headers(&[
            ("dlq.reason", "invalid_json"),
            ("dlq.source.topic", "visits"),
            ("dlq.source.partition", "3"),
            ("dlq.source.offset", "48213"),
            ("dlq.source.timestamp", "1795000000123"),
        ]);
        assert_eq!(
            declaration_of(first_stage.clone(), "visits"),
            Some(Declaration {
                partition: 3,
                offset: 48213,
                source_timestamp_ms: Some(1_795_000_000_123),
                filtered: false,
            })
        );
        assert_eq!(declaration_of(first_stage, "orders"), None);
    }

    #[test]
    fn a_later_stage_dead_letter_names_the_record_where_it_entered() {
        // The refused record's own lineage comes first; the stage's dlq.* name its own input.
        let later = headers(&[
            ("lineage", "visits:1:7:1795000000000"),
            ("dlq.reason", "filtered"),
            ("dlq.source.topic", "reduced_visits"),
            ("dlq.source.partition", "0"),
            ("dlq.source.offset", "99"),
        ]);
        let declaration = declaration_of(later.clone(), "visits").expect("declared");
        assert_eq!((declaration.partition, declaration.offset), (1, 7));
        assert!(declaration.filtered);
        assert_eq!(declaration.source_timestamp_ms, Some(1_795_000_000_000));
        let own = declaration_of(later, "reduced_visits").expect("its own input");
        assert_eq!((own.partition, own.offset), (0, 99));
    }

    #[test]
    fn a_dead_letter_of_a_dead_letter_counts_its_last_stage() {
        let twice = headers(&[
            ("dlq.reason", "invalid_json"),
            ("dlq.source.topic", "visits"),
            ("dlq.source.offset", "1"),
            ("dlq.source.partition", "0"),
            ("dlq.reason", "filtered"),
            ("dlq.source.topic", "visits"),
            ("dlq.source.partition", "2"),
            ("dlq.source.offset", "5"),
        ]);
        let declaration = declaration_of(twice, "visits").expect("declared");
        assert_eq!((declaration.partition, declaration.offset), (2, 5));
        assert!(declaration.filtered);
    }

    #[test]
    fn an_unreadable_position_declares_nothing() {
        for broken in [
            headers(&[("dlq.source.topic", "visits"), ("dlq.source.offset", "5")]),
            headers(&[
                ("dlq.source.topic", "visits"),
                ("dlq.source.partition", "-1"),
                ("dlq.source.offset", "5"),
            ]),
            headers(&[
                ("dlq.source.topic", "visits"),
                ("dlq.source.partition", "0"),
                ("dlq.source.offset", "five"),
            ]),
            headers(&[("lineage", "visits:0"), ("dlq.source.topic", "other")]),
        ] {
            assert_eq!(declaration_of(broken.clone(), "visits"), None, "{broken:?}");
        }
    }
}
