//! What one output partition's records of one output window showed of the source: per source
//! partition, which offsets arrived (within the SLA, late, again) and the newest offset seen
//! per source-time window. One partition stage builds it while the window is open and
//! publishes it with the window's part; the completeness ledger keeps it until every source
//! window it can touch is final.

use super::arrivals::SourceArrivals;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How arrivals are judged: latency from the source timestamp to the output record's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletenessRules {
    /// Source-time windows (ms): the same length as the latency windows.
    pub window_ms: i64,
    /// An arrival within this latency (ms) is within the SLA.
    pub sla_ms: i64,
    /// A record not arrived within this (ms) of its source time is lost; a later arrival does
    /// not change that (it is counted apart, as arrived after being declared lost).
    pub lost_after_ms: i64,
}

impl CompletenessRules {
    /// The start of the source-time window holding `time_ms`.
    pub fn window_start(&self, time_ms: i64) -> i64 {
        time_ms - time_ms.rem_euclid(self.window_ms)
    }

    /// How a record that entered the source at `source_ms` and arrived at `arrival_ms` counts:
    /// `Some(true)` within the SLA, `Some(false)` late, `None` after `lost_after` (lost).
    pub fn judge(&self, source_ms: i64, arrival_ms: i64) -> Option<bool> {
        let latency = arrival_ms.saturating_sub(source_ms);
        if latency > self.lost_after_ms {
            None
        } else {
            Some(latency <= self.sla_ms)
        }
    }
}

/// What one stream showed of one source partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStream {
    /// Offsets that arrived, by class, and repeats.
    pub arrivals: SourceArrivals,
    /// Per source-time window (its start), the highest offset that arrived from it: a record
    /// known to be older than the window's end, which bounds a broker's offsets-for-times
    /// answer (see [`crate::kafka::source_offsets::boundary`]).
    pub newest_by_window: BTreeMap<i64, i64>,
}

/// One output partition's arrivals in one output window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamArrivals {
    /// Per source partition.
    pub sources: BTreeMap<i32, SourceStream>,
    /// The earliest source time among the arrivals (ms).
    pub earliest_source_ms: Option<i64>,
    /// Records that arrived more than `lost_after` after entering the source: they stay
    /// lost, and are counted here.
    pub after_lost: u64,
}

impl StreamArrivals {
    /// The record at `offset` of source partition `source_partition`, which entered the source
    /// at `source_ms`, arrived at `arrival_ms`.
    pub fn record(
        &mut self,
        rules: &CompletenessRules,
        source_partition: i32,
        offset: i64,
        source_ms: i64,
        arrival_ms: i64,
    ) {
        let Some(within_sla) = rules.judge(source_ms, arrival_ms) else {
            self.after_lost += 1;
            return;
        };
        self.earliest_source_ms = Some(
            self.earliest_source_ms
                .map_or(source_ms, |e| e.min(source_ms)),
        );
        let source = self.sources.entry(source_partition).or_default();
        source.arrivals.record(offset, within_sla);
        let newest = source
            .newest_by_window
            .entry(rules.window_start(source_ms))
            .or_insert(offset);
        *newest = (*newest).max(offset);
    }

    /// Whether nothing arrived (not even after `lost_after`).
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty() && self.after_lost == 0
    }

    /// The size of what the stream keeps, in units: offset ranges, repeated offsets and
    /// source windows' newest offsets (a few bytes each, encoded). In-order arrivals are a
    /// few units per source partition; scattered ones (a stage that re-keys records, or
    /// reorders them) about one per record.
    pub fn units(&self) -> usize {
        self.sources
            .values()
            .map(|s| {
                s.arrivals.within_sla.range_count()
                    + s.arrivals.late.range_count()
                    + s.arrivals.repeats.len()
                    + s.newest_by_window.len()
            })
            .sum()
    }

    /// Splits the stream into streams of at most `max_units` units each (see
    /// [`Self::units`]) that, accounted together as streams, count exactly as this one:
    /// every range, repeated offset and newest offset goes to exactly one of them; each
    /// carries the earliest source time; `after_lost` and the untracked repeats stay with the
    /// first. What a shuffle record too large for the producer is cut into.
    pub fn split(self, max_units: usize) -> Vec<StreamArrivals> {
        if self.units() <= max_units {
            return vec![self];
        }
        let mut chunks = Chunks {
            max_units: max_units.max(1),
            used: 0,
            earliest_source_ms: self.earliest_source_ms,
            chunks: vec![StreamArrivals {
                earliest_source_ms: self.earliest_source_ms,
                after_lost: self.after_lost,
                ..StreamArrivals::default()
            }],
        };
        for (partition, source) in self.sources {
            let arrivals = source.arrivals;
            for range in arrivals.within_sla.ranges() {
                chunks
                    .next(partition)
                    .arrivals
                    .within_sla
                    .insert_range(range);
            }
            for range in arrivals.late.ranges() {
                chunks.next(partition).arrivals.late.insert_range(range);
            }
            for (offset, count) in arrivals.repeats {
                chunks
                    .next(partition)
                    .arrivals
                    .repeats
                    .insert(offset, count);
            }
            for (window, offset) in source.newest_by_window {
                chunks
                    .next(partition)
                    .newest_by_window
                    .insert(window, offset);
            }
            if arrivals.untracked_repeats > 0 {
                chunks.chunks[0]
                    .sources
                    .entry(partition)
                    .or_default()
                    .arrivals
                    .untracked_repeats += arrivals.untracked_repeats;
            }
        }
        chunks.chunks
    }

    /// Whether what the stream says is self-consistent: offsets and times not negative.
    pub fn check(&self) -> Result<(), String> {
        for (&partition, source) in &self.sources {
            if partition < 0 {
                return Err(format!("source partition {partition}"));
            }
            let lowest = [&source.arrivals.within_sla, &source.arrivals.late]
                .iter()
                .filter_map(|r| r.ranges().next())
                .map(|r| r.start)
                .min();
            if lowest.is_some_and(|o| o < 0) || source.newest_by_window.values().any(|&o| o < 0) {
                return Err(format!("a negative offset of source partition {partition}"));
            }
        }
        Ok(())
    }
}

/// The streams a split fills, one unit at a time.
struct Chunks {
    max_units: usize,
    used: usize,
    earliest_source_ms: Option<i64>,
    chunks: Vec<StreamArrivals>,
}

impl Chunks {
    /// The stream the next unit of source partition `partition` goes to.
    fn next(&mut self, partition: i32) -> &mut SourceStream {
        if self.used == self.max_units {
            self.chunks.push(StreamArrivals {
                earliest_source_ms: self.earliest_source_ms,
                ..StreamArrivals::default()
            });
            self.used = 0;
        }
        self.used += 1;
        let chunk = self.chunks.last_mut().expect("one chunk at least");
        chunk.sources.entry(partition).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: CompletenessRules = CompletenessRules {
        window_ms: 1_000,
        sla_ms: 100,
        lost_after_ms: 5_000,
    };

    #[test]
    fn arrivals_are_judged_by_the_time_since_they_entered_the_source() {
        assert_eq!(RULES.judge(1_000, 1_100), Some(true));
        assert_eq!(RULES.judge(1_000, 1_101), Some(false));
        assert_eq!(RULES.judge(1_000, 6_000), Some(false));
        assert_eq!(RULES.judge(1_000, 6_001), None);
        assert_eq!(RULES.judge(1_000, 900), Some(true), "clock skew");
    }

    #[test]
    fn a_stream_keeps_offsets_by_class_and_the_newest_per_source_window() {
        let mut stream = StreamArrivals::default();
        stream.record(&RULES, 3, 10, 1_500, 1_550);
        stream.record(&RULES, 3, 11, 1_900, 2_100);
        stream.record(&RULES, 3, 12, 2_100, 2_150);
        stream.record(&RULES, 3, 12, 2_100, 2_160);
        stream.record(&RULES, 1, 7, 500, 9_000);
        let source = &stream.sources[&3];
        assert_eq!(source.arrivals.within_sla.len(), 2);
        assert_eq!(source.arrivals.late.len(), 1);
        assert_eq!(source.arrivals.repeats, BTreeMap::from([(12, 1)]));
        assert_eq!(
            source.newest_by_window,
            BTreeMap::from([(1_000, 11), (2_000, 12)])
        );
        assert_eq!(stream.earliest_source_ms, Some(1_500));
        assert_eq!(stream.after_lost, 1);
        assert!(!stream.sources.contains_key(&1), "lost stays lost");
        assert!(stream.check().is_ok());
    }

    /// Accounts offsets 0..200 of source partitions 0 and 1 with `streams` as the evidence.
    fn accounted(streams: &[StreamArrivals]) -> crate::completeness::accounting::Completeness {
        use crate::completeness::accounting::{account, PartitionBounds, PartitionEvidence};
        use crate::completeness::arrival_union::ArrivalUnion;
        use crate::completeness::offset_ranges::OffsetRanges;
        let none = OffsetRanges::new();
        let unions: Vec<Vec<ArrivalUnion>> = (0..2)
            .map(|p| {
                streams
                    .iter()
                    .filter_map(|s| s.sources.get(&p).map(|s| ArrivalUnion::of(&s.arrivals)))
                    .collect()
            })
            .collect();
        let per_partition: Vec<Vec<&ArrivalUnion>> =
            unions.iter().map(|u| u.iter().collect()).collect();
        let evidence = (0..2)
            .map(|p| {
                (
                    p,
                    PartitionEvidence {
                        streams: &per_partition[p as usize],
                        dead_lettered: &none,
                        filtered: &none,
                    },
                )
            })
            .collect();
        let bounds = (0..2)
            .map(|p| {
                (
                    p,
                    PartitionBounds {
                        expected: 0..200,
                        lost_below: 50,
                        overdue_below: 100,
                        log_start: 0,
                    },
                )
            })
            .collect();
        account(&bounds, &evidence)
    }

    proptest::proptest! {
        /// However a stream is cut, its pieces stay within the size asked for and, taken as
        /// streams, account exactly as the whole.
        #[test]
        fn a_split_stream_accounts_as_the_whole(
            records in proptest::collection::vec((0i32..2, 0i64..200, 0i64..300), 0..400),
            max_units in 1usize..40,
        ) {
            let mut stream = StreamArrivals::default();
            for &(partition, offset, delay) in &records {
                stream.record(&RULES, partition, offset, 1_000, 1_000 + delay);
            }
            let whole = accounted(std::slice::from_ref(&stream));
            let units = stream.units();
            let pieces = stream.clone().split(max_units);
            proptest::prop_assert!(pieces.iter().all(|p| p.units() <= max_units));
            proptest::prop_assert_eq!(pieces.iter().map(StreamArrivals::units).sum::<usize>(), units);
            proptest::prop_assert_eq!(pieces.iter().map(|p| p.after_lost).sum::<u64>(), stream.after_lost);
            proptest::prop_assert!(pieces.iter().all(|p| p.earliest_source_ms == stream.earliest_source_ms));
            proptest::prop_assert_eq!(accounted(&pieces), whole);
        }
    }
}
