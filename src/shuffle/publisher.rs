//! Writes the shuffle protocol to the shuffle topic: window parts to the shuffle partition that
//! merges their window, progress to every shuffle partition, and, once a window is written,
//! the merged marker and the tombstones of its parts. One idempotent producer carries all of
//! them, so on each shuffle partition they arrive in the order they were enqueued.

use super::{
    merging_partition, part_record, values_records, EncodedPart, Shuffle, ShuffleRecord,
    COMPLETENESS_PARTITION,
};
use crate::completeness::stream::StreamArrivals;
use crate::dimension::selection::PartitionSplit;
use crate::dimension::split_pieces::into_pieces;
use crate::event_time::window::WindowPart;
use crate::kafka::dead_letter::DEFAULT_MESSAGE_MAX_BYTES;
use crate::kafka::producer::{enqueue, OutgoingRecord};
use crate::kafka::JobContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer};

/// The bytes `part` takes in a record (postcard is deterministic: the same part, the same
/// size).
fn encoded_size(part: &EncodedPart) -> usize {
    postcard::to_allocvec(part).map_or(0, |bytes| bytes.len())
}

/// The writing side of one monitor's shuffle.
#[derive(Clone)]
pub struct ShufflePublisher {
    producer: FutureProducer<JobContext>,
    topic: String,
    shuffle: Shuffle,
    shuffle_partitions: i32,
    window_size_ms: i64,
    traffic: [Traffic; 7],
    /// The largest record the producer sends (`message.max.bytes`).
    max_record_bytes: usize,
}

/// What a record takes beyond its arrivals: key, envelope, identity and signature.
const ARRIVALS_HEADROOM: usize = 4096;
/// The index of arrivals records in [`Traffic::KINDS`].
const ARRIVALS: usize = 4;

/// What the shuffle costs, by kind of record (`part`, `progress`, `merged`, `tombstone`,
/// `arrivals`, `accounted` or `values`):
/// the counters of [`crate::monitor::metrics::shuffle_published`].
#[derive(Clone)]
struct Traffic {
    records: metrics::Counter,
    bytes: metrics::Counter,
}

impl Traffic {
    const KINDS: [&'static str; 7] = [
        "part",
        "progress",
        "merged",
        "tombstone",
        "arrivals",
        "accounted",
        "values",
    ];

    fn all() -> [Traffic; 7] {
        Self::KINDS.map(|kind| {
            let (records, bytes) = crate::monitor::metrics::shuffle_published(kind);
            Traffic { records, bytes }
        })
    }

    fn index(record: Option<&ShuffleRecord>) -> usize {
        match record {
            Some(ShuffleRecord::Part { .. }) => 0,
            Some(ShuffleRecord::Progress { .. }) => 1,
            Some(ShuffleRecord::Merged { .. }) => 2,
            None => 3,
            Some(ShuffleRecord::Arrivals { .. } | ShuffleRecord::ArrivalsPiece { .. }) => 4,
            Some(ShuffleRecord::Accounted { .. }) => 5,
            Some(ShuffleRecord::Values { .. }) => 6,
        }
    }
}

impl ShufflePublisher {
    /// Publishes `shuffle`'s records to `topic`, which has `shuffle_partitions` partitions,
    /// for windows of `window_size_ms`.
    pub fn new(
        producer: FutureProducer<JobContext>,
        topic: &str,
        shuffle: Shuffle,
        shuffle_partitions: i32,
        window_size_ms: i64,
    ) -> Self {
        ShufflePublisher {
            producer,
            topic: topic.to_string(),
            shuffle,
            shuffle_partitions,
            window_size_ms,
            traffic: Traffic::all(),
            max_record_bytes: DEFAULT_MESSAGE_MAX_BYTES,
        }
    }

    /// Keeps each record within `bytes` (the producer's `message.max.bytes`).
    pub fn with_max_record_bytes(mut self, bytes: usize) -> Self {
        self.max_record_bytes = bytes;
        self
    }

    /// The shuffle topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Enqueues window parts, `(window start, input partition, part)`, each to the shuffle
    /// partition that merges its window; returns their deliveries (a part's records may be
    /// committed only once it is delivered).
    pub async fn publish_parts(
        &self,
        parts: &[(i64, i32, WindowPart)],
    ) -> Result<Vec<DeliveryFuture>, KafkaError> {
        let mut deliveries = Vec::with_capacity(parts.len());
        for (window_start, partition, part) in parts {
            let record = part_record(*window_start, *partition, part);
            let m = merging_partition(*window_start, self.window_size_ms, self.shuffle_partitions);
            deliveries.push(
                self.send(m, &self.shuffle.key(&record), Some(&record))
                    .await?,
            );
        }
        Ok(deliveries)
    }

    /// Enqueues input partitions' parts split by dimension value, `(window start, input
    /// partition, split)`, each to the shuffle partition that merges its window, after the
    /// partition's whole part, in as many pieces as keep each record within
    /// `message.max.bytes`; returns their deliveries (awaited like the parts').
    pub async fn publish_splits(
        &self,
        splits: Vec<(i64, i32, PartitionSplit)>,
    ) -> Result<Vec<DeliveryFuture>, KafkaError> {
        let budget = self
            .max_record_bytes
            .saturating_sub(ARRIVALS_HEADROOM)
            .max(1);
        let mut deliveries = Vec::new();
        for (window_start, partition, split) in splits {
            let pieces = into_pieces(split, budget, |key, part| {
                key.len() + encoded_size(&EncodedPart::of(part))
            });
            let m = merging_partition(window_start, self.window_size_ms, self.shuffle_partitions);
            for record in values_records(window_start, partition, pieces) {
                deliveries.push(
                    self.send(m, &self.shuffle.key(&record), Some(&record))
                        .await?,
                );
            }
        }
        Ok(deliveries)
    }

    /// Enqueues input partitions' arrivals, `(window start, input partition, arrivals)`, to
    /// the [`COMPLETENESS_PARTITION`]; returns their deliveries (like parts, the records they
    /// come from may be committed only once they are delivered). Arrivals too large for one
    /// record (`message.max.bytes`) go in pieces.
    pub async fn publish_arrivals(
        &self,
        arrivals: Vec<(i64, i32, StreamArrivals)>,
    ) -> Result<Vec<DeliveryFuture>, KafkaError> {
        let mut deliveries = Vec::with_capacity(arrivals.len());
        for (window_start, partition, arrivals) in arrivals {
            for (key, value) in self.arrivals_records(window_start, partition, arrivals) {
                deliveries.push(
                    self.send_encoded(COMPLETENESS_PARTITION, &key, ARRIVALS, Some(value))
                        .await?,
                );
            }
        }
        Ok(deliveries)
    }

    /// Enqueues the arrival of the late record at input `offset` of `partition`, late for the
    /// window starting at `window_start`, on its own (see [`super::late_arrival_piece`]);
    /// returns its delivery (the record may be committed only once it is delivered).
    pub async fn publish_late_arrival(
        &self,
        window_start: i64,
        partition: i32,
        offset: i64,
        arrivals: StreamArrivals,
    ) -> Result<DeliveryFuture, KafkaError> {
        let record = ShuffleRecord::ArrivalsPiece {
            window_start,
            partition,
            piece: super::late_arrival_piece(offset),
            arrivals,
        };
        let key = self.shuffle.key(&record);
        self.send(COMPLETENESS_PARTITION, &key, Some(&record)).await
    }

    /// The records of one stream's arrivals, keyed and encoded (once each): one, or as many
    /// pieces as keep each within [`Self::max_record_bytes`] (the same pieces for the same
    /// arrivals, so a replay repeats them).
    fn arrivals_records(
        &self,
        window_start: i64,
        partition: i32,
        arrivals: StreamArrivals,
    ) -> Vec<(String, Vec<u8>)> {
        let budget = self
            .max_record_bytes
            .saturating_sub(ARRIVALS_HEADROOM)
            .max(1);
        let whole = ShuffleRecord::Arrivals {
            window_start,
            partition,
            arrivals,
        };
        let value = self.shuffle.encode(&whole);
        let ShuffleRecord::Arrivals { arrivals, .. } = whole else {
            unreachable!("built as arrivals above");
        };
        if value.len() <= budget {
            return vec![(self.shuffle.arrivals_key(window_start, partition, 0), value)];
        }
        // Units encode in about the same number of bytes each: cut to the budget's share, with
        // a margin for units larger than the average.
        let units = arrivals.units().max(1);
        let max_units = (units as u128 * budget as u128 / value.len() as u128 * 3 / 4) as usize;
        arrivals
            .split(max_units.max(1))
            .into_iter()
            .enumerate()
            .map(|(piece, arrivals)| {
                let record = match piece {
                    0 => ShuffleRecord::Arrivals {
                        window_start,
                        partition,
                        arrivals,
                    },
                    piece => ShuffleRecord::ArrivalsPiece {
                        window_start,
                        partition,
                        piece: piece as u32,
                        arrivals,
                    },
                };
                (self.shuffle.key(&record), self.shuffle.encode(&record))
            })
            .collect()
    }

    /// Records that the completeness accounting is final through `accounted`'s window, then
    /// deletes the arrivals it no longer needs, `(window start, input partition)`. Not
    /// awaited: a lost marker makes the next owner write the same final documents again.
    pub async fn mark_accounted(
        &self,
        first_window: i64,
        final_through: i64,
        streams: &[(i64, i32, u32)],
    ) -> Result<(), KafkaError> {
        let marker = ShuffleRecord::Accounted {
            first_window,
            final_through,
        };
        self.send(
            COMPLETENESS_PARTITION,
            &self.shuffle.key(&marker),
            Some(&marker),
        )
        .await?;
        for &(window_start, partition, piece) in streams {
            let key = self.shuffle.arrivals_key(window_start, partition, piece);
            self.send(COMPLETENESS_PARTITION, &key, None).await?;
        }
        Ok(())
    }

    /// Enqueues the progress of input partitions, `(partition, closed through)`, to every
    /// shuffle partition. Its delivery is not awaited: progress is published again with the
    /// partition's next window, and a lost one only delays merging.
    pub async fn publish_progress(&self, progress: &[(i32, i64)]) -> Result<(), KafkaError> {
        for &(partition, closed_through) in progress {
            let record = ShuffleRecord::Progress {
                partition,
                closed_through,
            };
            let key = self.shuffle.key(&record);
            for m in 0..self.shuffle_partitions {
                self.send(m, &key, Some(&record)).await?;
            }
        }
        Ok(())
    }

    /// Records on shuffle partition `m` that its windows closing through `written_through` are
    /// written, then deletes the parts they were merged from, `(window start, partition)`, and
    /// the pieces of their splits by value, `(window start, partition, piece)`.
    /// Their delivery is not awaited: a lost marker makes the next owner write the same
    /// windows again under the same document ids.
    pub async fn mark_written(
        &self,
        m: i32,
        written_through: i64,
        parts: &[(i64, i32)],
        value_pieces: &[(i64, i32, u32)],
    ) -> Result<(), KafkaError> {
        let marker = ShuffleRecord::Merged { written_through };
        self.send(m, &self.shuffle.key(&marker), Some(&marker))
            .await?;
        for &(window_start, partition) in parts {
            self.send(m, &self.shuffle.part_key(window_start, partition), None)
                .await?;
        }
        for &(window_start, partition, piece) in value_pieces {
            let key = self.shuffle.values_key(window_start, partition, piece);
            self.send(m, &key, None).await?;
        }
        Ok(())
    }

    /// Enqueues one record on shuffle partition `m` (a tombstone without `record`).
    async fn send(
        &self,
        m: i32,
        key: &str,
        record: Option<&ShuffleRecord>,
    ) -> Result<DeliveryFuture, KafkaError> {
        let value = record.map(|r| self.shuffle.encode(r));
        self.send_encoded(m, key, Traffic::index(record), value)
            .await
    }

    /// Enqueues an encoded record (`value`, `None` for a tombstone) of the kind
    /// `Traffic::KINDS[kind]`.
    async fn send_encoded(
        &self,
        m: i32,
        key: &str,
        kind: usize,
        value: Option<Vec<u8>>,
    ) -> Result<DeliveryFuture, KafkaError> {
        let traffic = &self.traffic[kind];
        traffic.records.increment(1);
        traffic
            .bytes
            .increment((key.len() + value.as_ref().map_or(0, Vec::len)) as u64);
        enqueue(
            &self.producer,
            OutgoingRecord {
                topic: &self.topic,
                key: Some(key.as_bytes()),
                value: value.as_deref(),
                partition: Some(m),
            },
            None,
        )
        .await
    }
}
