//! The arrivals of one source partition across many streams, merged: which offsets arrived
//! within the SLA in any stream, and how many times each offset arrived in all of them. What
//! the ledger keeps per output window instead of every stream apart: a stage that re-keys
//! records scatters each output partition's stream to about one range per record, but the
//! streams of one output window together cover a nearly contiguous band of source offsets, so
//! their union is a few ranges again however scattered each stream is.
//!
//! Arrival counts are kept as nested layers of offset sets: layer `k` holds the offsets that
//! arrived more than `k` times. Adding a stream raises each of its offsets by one layer; a
//! contiguous replay (a stage that restarted and produced a stretch again) is one range in the
//! next layer, not one entry per record.

use super::arrivals::SourceArrivals;
use super::offset_ranges::OffsetRanges;
use super::offset_set::OffsetSet;
use std::ops::Range;

/// Most arrivals of one offset told apart (layers); arrivals past it are only counted
/// (`untracked_repeats`) and attributed to no window, like a stream's own untracked repeats.
pub const MAX_ARRIVAL_LAYERS: usize = 64;

/// Arrivals of one source partition, merged over streams.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArrivalUnion {
    /// Offsets that arrived within the SLA in some stream.
    within_sla: OffsetSet,
    /// Layer `k`: offsets that arrived more than `k` times (layer 0: every offset arrived).
    layers: Vec<OffsetSet>,
    /// Arrivals past [`MAX_ARRIVAL_LAYERS`] of one offset, and the streams' untracked repeats.
    untracked_repeats: u64,
}

impl ArrivalUnion {
    /// The union of no stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// The union of one stream.
    pub fn of(stream: &SourceArrivals) -> Self {
        let mut union = Self::new();
        union.add(stream);
        union
    }

    /// Adds one stream's arrivals: its first arrivals (timely or late) and its repeats.
    pub fn add(&mut self, stream: &SourceArrivals) {
        self.within_sla.extend(&stream.within_sla);
        let mut first = stream.within_sla.clone();
        first.extend(&stream.late);
        self.count_once(first);
        // Round k: the offsets that arrived again more than k times.
        let rounds = stream.repeats.values().copied().max().unwrap_or(0);
        for round in 0..rounds {
            let mut again = OffsetRanges::new();
            for (&offset, _) in stream.repeats.iter().filter(|(_, &n)| n > round) {
                again.insert(offset);
            }
            self.count_once(again);
        }
        self.untracked_repeats += stream.untracked_repeats;
    }

    /// Adds another union (what adding each of its streams would have given): how the tests
    /// check that any grouping of streams counts the same.
    #[cfg(test)]
    pub fn merge(&mut self, other: &ArrivalUnion) {
        self.within_sla.extend(&other.within_sla.to_ranges());
        for layer in &other.layers {
            self.count_once(layer.to_ranges());
        }
        self.untracked_repeats += other.untracked_repeats;
    }

    /// Counts one more arrival of every offset in `offsets`: each goes up one layer (what a
    /// layer lacks stops there; what it has goes on to the next).
    fn count_once(&mut self, mut offsets: OffsetRanges) {
        for depth in 0..MAX_ARRIVAL_LAYERS {
            if offsets.is_empty() {
                return;
            }
            if depth == self.layers.len() {
                self.layers.push(OffsetSet::default());
            }
            let layer = &mut self.layers[depth];
            let higher = layer.intersection(&offsets);
            layer.extend(&offsets);
            offsets = higher;
        }
        self.untracked_repeats += offsets.len();
    }

    /// The offsets of `range` that arrived within the SLA in some stream.
    pub fn within_sla_in(&self, range: Range<i64>) -> OffsetRanges {
        self.within_sla.ranges_in(range)
    }

    /// The offsets of `range` that arrived at all.
    pub fn arrived_in(&self, range: Range<i64>) -> OffsetRanges {
        self.layers
            .first()
            .map_or_else(OffsetRanges::new, |l| l.ranges_in(range))
    }

    /// Arrivals, repeats included, of the offsets in `range`.
    pub fn arrivals_in(&self, range: Range<i64>) -> u64 {
        self.layers.iter().map(|l| l.count_in(range.clone())).sum()
    }

    /// Arrivals counted but attributed to no window.
    pub fn untracked_repeats(&self) -> u64 {
        self.untracked_repeats
    }

    /// What it holds, in bytes (ranges or bitmaps, whichever is smaller for each set).
    pub fn bytes(&self) -> usize {
        self.within_sla.bytes() + self.layers.iter().map(OffsetSet::bytes).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn scattered_streams_that_cover_a_band_are_one_range_together() {
        // A re-keying stage: each of 4 output partitions gets every 4th offset.
        let streams: Vec<SourceArrivals> = (0..4)
            .map(|p| {
                let mut s = SourceArrivals::default();
                (0..10_000).filter(|o| o % 4 == p).for_each(|o| {
                    s.record(o, true);
                });
                s
            })
            .collect();
        assert!(streams.iter().all(|s| s.within_sla.range_count() == 2_500));
        let mut union = ArrivalUnion::new();
        streams.iter().for_each(|s| union.add(s));
        assert_eq!(union.bytes(), 32, "within and arrived: one range each");
        assert_eq!(union.arrivals_in(0..10_000), 10_000);
    }

    #[test]
    fn a_replayed_stretch_is_one_range_one_layer_up() {
        let mut first = SourceArrivals::default();
        let mut replay = SourceArrivals::default();
        (0..1_000).for_each(|o| {
            first.record(o, true);
        });
        (500..1_000).for_each(|o| {
            replay.record(o, false);
        });
        let mut union = ArrivalUnion::of(&first);
        union.add(&replay);
        assert_eq!(union.bytes(), 3 * 16);
        assert_eq!(union.arrivals_in(0..1_000), 1_500);
        assert_eq!(union.arrived_in(0..2_000).len(), 1_000);
    }

    #[test]
    fn arrivals_past_the_layers_are_counted_apart() {
        let mut stream = SourceArrivals::default();
        stream.record(7, true);
        let mut union = ArrivalUnion::new();
        (0..MAX_ARRIVAL_LAYERS + 3).for_each(|_| union.add(&stream));
        assert_eq!(union.arrivals_in(0..10), MAX_ARRIVAL_LAYERS as u64);
        assert_eq!(union.untracked_repeats(), 3);
    }

    fn span(range: Range<i64>) -> OffsetRanges {
        let mut set = OffsetRanges::new();
        set.insert_range(range);
        set
    }

    proptest! {
        /// Against a count per offset: the same arrivals in any range and the same offsets
        /// within the SLA, however the streams are grouped before they are merged.
        #[test]
        fn counts_every_arrival_of_every_stream(
            records in proptest::collection::vec((0usize..4, 0i64..100, any::<bool>()), 0..300),
            split in 0usize..5,
            query in (0i64..110, 0i64..110),
        ) {
            let mut streams = vec![SourceArrivals::default(); 4];
            let mut counts: BTreeMap<i64, u64> = BTreeMap::new();
            for &(s, offset, timely) in &records {
                streams[s].record(offset, timely);
                *counts.entry(offset).or_default() += 1;
            }
            let mut one = ArrivalUnion::new();
            streams.iter().for_each(|s| one.add(s));
            let (left, right) = streams.split_at(split.min(4));
            let mut grouped = ArrivalUnion::new();
            left.iter().for_each(|s| grouped.add(s));
            let mut rest = ArrivalUnion::new();
            right.iter().for_each(|s| rest.add(s));
            grouped.merge(&rest);
            let (a, b) = (query.0.min(query.1), query.0.max(query.1));
            let want: u64 = counts.range(a..b).map(|(_, &n)| n).sum();
            prop_assert_eq!(one.arrivals_in(a..b), want);
            prop_assert_eq!(grouped.arrivals_in(a..b), want);
            prop_assert_eq!(one.arrived_in(a..b).len(), counts.range(a..b).count() as u64);
            let mut within = OffsetRanges::new();
            streams.iter().for_each(|s| within.extend(&s.within_sla));
            prop_assert_eq!(one.within_sla_in(a..b), within.intersection(&span(a..b)));
            prop_assert_eq!(grouped.within_sla_in(a..b), within.intersection(&span(a..b)));
        }
    }
}
