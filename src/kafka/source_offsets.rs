//! Where a time lies in each partition of a source topic, without reading its records:
//! Kafka's offsets-for-times (ListOffsets by timestamp) gives, per partition, the first offset
//! whose record's timestamp is at or after the time. Completeness uses it for a source-time
//! window's offset range (its start's and its end's answers) and for the offsets below which
//! records entered before `now − SLA` (overdue when missing) or `now − lost_after` (lost).
//!
//! Brokers answer "no record at or after the time" differently: Apache Kafka with offset −1,
//! tansu 0.6 with offset 0 (checked against the local broker in `tests/source_offsets.rs`).
//! [`boundary`] turns either into the partition's end, given a floor: an offset the answer
//! cannot precede (the answer for an earlier time, or a record known to be older than the
//! time). The answers hold for timestamps that do not go back within a partition
//! (LogAppendTime, or one producer's CreateTime); docs/completeness.md says what differs
//! otherwise.

use super::dead_letter_evidence::{DeadLetterEvidence, EvidenceError};
use super::topic_partitions::topic_partitions;
use crate::completeness::ledger::{Due, SourceAnswers};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Reads offsets of one source topic by time (and, when given, the pipeline's dead-letter
/// topics).
pub struct SourceOffsets {
    consumer: BaseConsumer,
    topic: String,
    timeout: Duration,
    /// Per partition, its first record, as last read.
    first_records: Mutex<BTreeMap<i32, FirstRecord>>,
    /// Per partition, the last record whose timestamp was asked for: (offset, timestamp).
    timestamps: Mutex<BTreeMap<i32, (i64, i64)>>,
    /// Held while the consumer is assigned to read records (one reader at a time).
    reading: Mutex<()>,
    dead_letters: Option<DeadLetterEvidence>,
}

/// A partition's first record still in the log, as read.
#[derive(Debug, Clone, Copy)]
struct FirstRecord {
    /// The log start the broker reported when it was read.
    reported_start: i64,
    /// Its offset: above the reported start when records below were deleted and the broker
    /// does not say so (tansu 0.6 keeps its reported log start after retention deletes).
    offset: i64,
    /// Its timestamp (Unix ms).
    timestamp_ms: i64,
    /// When it was read.
    read_at: std::time::Instant,
}

/// How long a partition's first record is trusted before it is read again: retention may
/// have deleted it without the reported log start moving.
const FIRST_RECORD_REFRESH: Duration = Duration::from_secs(15);
/// The longest wait for a partition's first record (a log emptied by retention has none).
const FIRST_RECORD_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the source could not answer an accounting's look-ups.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// Offsets by time or log bounds.
    #[error("looking up the source's offsets: {0}")]
    Offsets(#[from] KafkaError),
    /// The dead-letter topics.
    #[error(transparent)]
    DeadLetters(#[from] EvidenceError),
}

/// A partition's log: its first offset still kept and the offset after its last record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogBounds {
    /// The first offset still in the log (retention deleted those below).
    pub start: i64,
    /// The offset the next record will get (the high watermark).
    pub end: i64,
}

impl SourceOffsets {
    /// A reader of `topic` with the client settings `config` (it joins no group and commits
    /// nothing), waiting at most `timeout` for each answer.
    pub fn new(config: &ClientConfig, topic: &str, timeout: Duration) -> Result<Self, KafkaError> {
        // librdkafka assigns partitions only to a consumer with a group id; this one never
        // joins it (it assigns, never subscribes) and never commits.
        // It reads one record per log start: fetching no more than a little keeps librdkafka
        // from prefetching the source topic into its queue (64 MB by default, measured as
        // 180 MB of RSS and twice the monitor's CPU over a 5M-record source).
        let mut config = config.clone();
        // Reading below a log start retention moved lands on the first record kept.
        config
            .set("group.id", "sla-monitor.source-offsets")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("queued.min.messages", "1")
            .set("queued.max.messages.kbytes", "64")
            .set("max.partition.fetch.bytes", "65536")
            .set("fetch.max.bytes", "1048576");
        Ok(SourceOffsets {
            consumer: config.create()?,
            topic: topic.to_string(),
            timeout,
            first_records: Mutex::new(BTreeMap::new()),
            timestamps: Mutex::new(BTreeMap::new()),
            reading: Mutex::new(()),
            dead_letters: None,
        })
    }

    /// Also reads the pipeline's dead-letter topics, so that each answer carries what they
    /// declare of the source's records.
    pub fn with_dead_letters(mut self, dead_letters: DeadLetterEvidence) -> Self {
        self.dead_letters = Some(dead_letters);
        self
    }

    /// The source topic's partitions.
    pub fn partitions(&self) -> Result<Vec<i32>, KafkaError> {
        let partitions = topic_partitions(&self.consumer, &self.topic, self.timeout)?;
        if partitions.is_empty() {
            return Err(KafkaError::MetadataFetch(
                rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
            ));
        }
        Ok(partitions)
    }

    /// The first record of `partition` at or after its reported log start `start` (read once
    /// per log start and then every [`FIRST_RECORD_REFRESH`]), or `None` when none can be read
    /// in time.
    fn first_record(&self, partition: i32, start: i64) -> Option<FirstRecord> {
        let mut known = self.first_records.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&first) = known.get(&partition) {
            if first.reported_start == start && first.read_at.elapsed() < FIRST_RECORD_REFRESH {
                return Some(first);
            }
        }
        let (offset, timestamp_ms) = self
            .records_at(&BTreeMap::from([(partition, start)]))
            .remove(&partition)?;
        let first = FirstRecord {
            reported_start: start,
            offset,
            timestamp_ms,
            read_at: std::time::Instant::now(),
        };
        known.insert(partition, first);
        Some(first)
    }

    /// The timestamps (Unix ms) of the records at `offsets` (per partition), as far as they
    /// can be read within a short wait; each partition's last answer is remembered.
    pub fn timestamps_at(&self, offsets: &BTreeMap<i32, i64>) -> BTreeMap<i32, i64> {
        let mut known = self.timestamps.lock().unwrap_or_else(|e| e.into_inner());
        let wanted: BTreeMap<i32, i64> = offsets
            .iter()
            .filter(|&(p, o)| known.get(p).is_none_or(|&(at, _)| at != *o))
            .map(|(&p, &o)| (p, o))
            .collect();
        for (partition, (at, t)) in self.records_at(&wanted) {
            if wanted.get(&partition) == Some(&at) {
                known.insert(partition, (at, t));
            }
        }
        offsets
            .iter()
            .filter_map(|(p, o)| match known.get(p) {
                Some(&(at, t)) if at == *o => Some((*p, t)),
                _ => None,
            })
            .collect()
    }

    /// Per partition, the offset and timestamp (Unix ms) of the first record at or after the
    /// offset given for it, for the partitions that answer within a short wait: the consumer
    /// is assigned there, polled, then unassigned (one reader at a time).
    fn records_at(&self, offsets: &BTreeMap<i32, i64>) -> BTreeMap<i32, (i64, i64)> {
        let mut found = BTreeMap::new();
        if offsets.is_empty() {
            return found;
        }
        let _reading = self.reading.lock().unwrap_or_else(|e| e.into_inner());
        let mut assignment = TopicPartitionList::new();
        for (&partition, &offset) in offsets {
            let _ = assignment.add_partition_offset(&self.topic, partition, Offset::Offset(offset));
        }
        if self.consumer.assign(&assignment).is_err() {
            return found;
        }
        let mut wanted = offsets.clone();
        let deadline = std::time::Instant::now() + self.timeout.min(FIRST_RECORD_TIMEOUT);
        while !wanted.is_empty() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let Some(Ok(message)) = self.consumer.poll(left.min(Duration::from_millis(200))) else {
                continue;
            };
            let partition = message.partition();
            if wanted
                .get(&partition)
                .is_some_and(|&offset| message.offset() >= offset)
            {
                wanted.remove(&partition);
                if let Some(t) = message.timestamp().to_millis() {
                    found.insert(partition, (message.offset(), t));
                }
            }
        }
        let _ = self.consumer.unassign();
        found
    }

    /// The topic read.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Answers the look-ups a completeness accounting needs (see
    /// [`crate::completeness::ledger::Due`]): every partition's log start, and per time, in
    /// ascending order, the first offset at or after it. Each answer's floor is the higher of
    /// the ledger's (an offset known to be older) and the answer for the previous time (offsets
    /// do not go back as time goes on), which tells tansu's "0" for "none" from offset 0.
    /// With dead-letter topics, also what they declare of records from the first window on.
    pub fn answer(&self, due: &Due) -> Result<SourceAnswers, LookupError> {
        // Each partition's log, starting at its first record still kept: a record below it
        // was deleted by retention (the broker's reported start may lag, as tansu's does).
        let mut logs = BTreeMap::new();
        let mut first_timestamps: BTreeMap<i32, i64> = BTreeMap::new();
        for partition in self.partitions()? {
            let mut bounds = self.log_bounds(partition)?;
            if bounds.end > bounds.start {
                if let Some(first) = self.first_record(partition, bounds.start) {
                    bounds.start = first.offset.clamp(bounds.start, bounds.end);
                    first_timestamps.insert(partition, first.timestamp_ms);
                }
            }
            logs.insert(partition, bounds);
        }
        let mut answers = SourceAnswers {
            log_starts: logs.iter().map(|(&p, b)| (p, b.start)).collect(),
            ..SourceAnswers::default()
        };
        // A partition's first record, where it is older than a queried time, is a floor too:
        // a broker answering 0 for "none" is then told from one whose first record is at 0.
        let mut previous: BTreeMap<i32, i64> = BTreeMap::new();
        for query in &due.queries {
            let request = logs
                .iter()
                .map(|(&p, &bounds)| {
                    let first_is_older = first_timestamps
                        .get(&p)
                        .is_some_and(|&t| t < query.time_ms)
                        .then_some(bounds.start + 1);
                    let floor = [
                        query.floors.get(&p),
                        previous.get(&p),
                        first_is_older.as_ref(),
                    ]
                    .into_iter()
                    .flatten()
                    .copied()
                    .max();
                    (p, (bounds, floor))
                })
                .collect();
            let offsets = self.at_or_after(query.time_ms, &request)?;
            previous.clone_from(&offsets);
            answers.offsets.insert(query.time_ms, offsets);
        }
        if let (Some(dead_letters), Some(&first)) = (&self.dead_letters, due.windows.first()) {
            let floors = answers.offsets.get(&first).cloned().unwrap_or_default();
            answers.declarations = dead_letters.declarations(first, &floors)?;
        }
        Ok(answers)
    }

    /// The bounds of `partition`'s log now.
    pub fn log_bounds(&self, partition: i32) -> Result<LogBounds, KafkaError> {
        let (start, end) = self
            .consumer
            .fetch_watermarks(&self.topic, partition, self.timeout)?;
        Ok(LogBounds { start, end })
    }

    /// For each of `partitions` (with its log bounds and floor), the first offset whose record's
    /// timestamp is at or after `time_ms`, or the log's end when every record is older.
    pub fn at_or_after(
        &self,
        time_ms: i64,
        partitions: &BTreeMap<i32, (LogBounds, Option<i64>)>,
    ) -> Result<BTreeMap<i32, i64>, KafkaError> {
        let mut request = TopicPartitionList::new();
        for &partition in partitions.keys() {
            request.add_partition_offset(&self.topic, partition, Offset::Offset(time_ms))?;
        }
        let answer = self.consumer.offsets_for_times(request, self.timeout)?;
        let mut offsets = BTreeMap::new();
        for element in answer.elements() {
            if let Some(error) = element.error().err() {
                return Err(error);
            }
            let Some(&(bounds, floor)) = partitions.get(&element.partition()) else {
                continue;
            };
            offsets.insert(
                element.partition(),
                boundary(element.offset(), bounds, floor),
            );
        }
        Ok(offsets)
    }
}

/// A broker's offsets-for-times answer as an offset within `bounds`: "none" (−1, `End`, or an
/// answer below `floor`, which only a broker answering 0 for "none" gives) is the log's end.
pub fn boundary(answer: Offset, bounds: LogBounds, floor: Option<i64>) -> i64 {
    let offset = match answer {
        Offset::Offset(offset) if offset >= 0 => offset,
        _ => return bounds.end,
    };
    if floor.is_some_and(|floor| offset < floor) {
        return bounds.end;
    }
    offset.clamp(bounds.start, bounds.end)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: LogBounds = LogBounds { start: 5, end: 100 };

    #[test]
    fn none_is_the_end_whichever_way_the_broker_says_it() {
        assert_eq!(boundary(Offset::End, BOUNDS, None), 100, "Apache Kafka: -1");
        assert_eq!(boundary(Offset::Offset(-1), BOUNDS, None), 100);
        assert_eq!(boundary(Offset::Invalid, BOUNDS, None), 100);
        assert_eq!(
            boundary(Offset::Offset(0), BOUNDS, Some(40)),
            100,
            "tansu: 0, below what an earlier time answered"
        );
        assert_eq!(boundary(Offset::Offset(40), BOUNDS, Some(40)), 40);
        assert_eq!(
            boundary(Offset::Offset(0), BOUNDS, None),
            5,
            "within the log"
        );
        assert_eq!(boundary(Offset::Offset(500), BOUNDS, None), 100);
    }
}
