//! The accounting of one source-time window: every source record the pipeline should have
//! handled in it is counted exactly once — arrived within the SLA, arrived late, dead-lettered,
//! filtered, still in flight, overdue, lost, or unknown — and repeated arrivals are counted
//! apart, as duplicates. Pure: the evidence and the bounds are passed in.
//!
//! Which record is where is decided per offset, in this order: arrived within the SLA (in any
//! stream) › arrived late › dead-lettered › filtered › missing. A missing offset is classified
//! by when its record entered the source, given as offset bounds per source partition (Kafka's
//! offsets-for-times at `as_of − SLA` and `as_of − lost_after`): below `lost_below` it is lost,
//! below `overdue_below` overdue, else in flight; below the partition's log start (deleted by
//! retention before anything could check it) it is unknown, never lost.

use super::arrival_union::ArrivalUnion;
use super::offset_ranges::OffsetRanges;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Range;

/// What is known of one source partition for one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionBounds {
    /// The window's offsets in this partition (offsets-for-times of its start and end).
    pub expected: Range<i64>,
    /// Records below this offset entered the source before `as_of − lost_after`.
    pub lost_below: i64,
    /// Records below this offset entered the source before `as_of − SLA`.
    pub overdue_below: i64,
    /// The partition's first offset still in the log: a missing record below it was deleted
    /// by retention and cannot be told lost.
    pub log_start: i64,
}

/// Everything seen of one source partition: arrivals per stream, and the dead letters and
/// declared filtered records naming it.
#[derive(Debug, Clone, Copy)]
pub struct PartitionEvidence<'a> {
    /// Arrivals, merged by group of streams (each output window's, in the ledger); any
    /// grouping counts the same.
    pub streams: &'a [&'a ArrivalUnion],
    /// Offsets dead-lettered by a stage.
    pub dead_lettered: &'a OffsetRanges,
    /// Offsets a stage declared filtered by design.
    pub filtered: &'a OffsetRanges,
}

/// The counts of one window; `expected` is the sum of the eight classes, always.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completeness {
    /// Source records in the window.
    pub expected: u64,
    /// Arrived within the SLA.
    pub arrived_within_sla: u64,
    /// Arrived, after the SLA.
    pub arrived_late: u64,
    /// Dead-lettered by a stage.
    pub dead_lettered: u64,
    /// Declared filtered by a stage.
    pub filtered: u64,
    /// Missing, but entered the source less than the SLA ago.
    pub in_flight: u64,
    /// Missing past the SLA: a miss now.
    pub overdue: u64,
    /// Missing past `lost_after`.
    pub lost: u64,
    /// Missing and deleted from the source by retention: cannot be told.
    pub unknown: u64,
    /// Arrivals beyond the first of a record (not part of `expected`).
    pub duplicates: u64,
    /// Per source partition, the first offset still missing (overdue or lost), if any.
    pub first_missing: BTreeMap<i32, i64>,
    /// Per source partition, the first offset not arrived (in flight, overdue or lost), if
    /// any: the oldest record the pipeline still owes.
    pub first_absent: BTreeMap<i32, i64>,
}

impl Completeness {
    /// The sum of the classes (equals `expected`).
    pub fn accounted(&self) -> u64 {
        self.arrived_within_sla
            + self.arrived_late
            + self.dead_lettered
            + self.filtered
            + self.in_flight
            + self.overdue
            + self.lost
            + self.unknown
    }

    /// Records that count against the SLA: arrived late, overdue or lost.
    pub fn misses(&self) -> u64 {
        self.arrived_late + self.overdue + self.lost
    }
}

/// Accounts for the window whose bounds per source partition are `bounds`, given the evidence
/// per source partition (a partition without evidence has had nothing arrive).
pub fn account(
    bounds: &BTreeMap<i32, PartitionBounds>,
    evidence: &BTreeMap<i32, PartitionEvidence<'_>>,
) -> Completeness {
    let mut result = Completeness::default();
    let empty = OffsetRanges::new();
    for (&partition, bound) in bounds {
        let range = bound.expected.clone();
        if range.start >= range.end {
            continue;
        }
        result.expected += (range.end - range.start) as u64;
        let seen = evidence.get(&partition);
        let streams = seen.map_or(&[][..], |e| e.streams);
        let mut within = OffsetRanges::new();
        let mut arrived = OffsetRanges::new();
        let mut arrivals = 0;
        for stream in streams {
            within.extend(&stream.within_sla_in(range.clone()));
            arrived.extend(&stream.arrived_in(range.clone()));
            arrivals += stream.arrivals_in(range.clone());
        }
        let within_count = within.count_in(range.clone());
        let arrived_count = arrived.count_in(range.clone());
        result.arrived_within_sla += within_count;
        result.arrived_late += arrived_count - within_count;
        result.duplicates += arrivals - arrived_count;
        let mut accounted = arrived;
        accounted.extend(seen.map_or(&empty, |e| e.dead_lettered));
        let dead_count = accounted.count_in(range.clone());
        result.dead_lettered += dead_count - arrived_count;
        accounted.extend(seen.map_or(&empty, |e| e.filtered));
        result.filtered += accounted.count_in(range.clone()) - dead_count;
        for gap in accounted.gaps_in(range) {
            let classes = [
                (bound.log_start, &mut result.unknown),
                (bound.lost_below, &mut result.lost),
                (bound.overdue_below, &mut result.overdue),
                (i64::MAX, &mut result.in_flight),
            ];
            let mut cursor = gap.start;
            for (below, count) in classes {
                let end = below.clamp(cursor, gap.end);
                *count += (end - cursor) as u64;
                cursor = end;
            }
            let first_counted = gap.start.max(bound.log_start);
            if first_counted < gap.end {
                result
                    .first_absent
                    .entry(partition)
                    .or_insert(first_counted);
            }
            if first_counted < gap.end.min(bound.overdue_below.max(bound.lost_below)) {
                result
                    .first_missing
                    .entry(partition)
                    .or_insert(first_counted);
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::completeness::arrivals::SourceArrivals;
    use proptest::prelude::*;

    fn bounds(expected: Range<i64>, lost: i64, overdue: i64, start: i64) -> PartitionBounds {
        PartitionBounds {
            expected,
            lost_below: lost,
            overdue_below: overdue,
            log_start: start,
        }
    }

    #[test]
    fn every_record_is_counted_once_and_repeats_apart() {
        // Partition 0, window offsets 0..20: 0..10 arrived in time in stream A, 10..12 late
        // in stream B, 5 again in B; 12 dead-lettered, 13 filtered; 14..20 missing: 14..16
        // entered before as_of − lost_after, 16..18 before as_of − SLA, 18..20 after.
        let mut a = SourceArrivals::default();
        (0..10).for_each(|o| {
            a.record(o, true);
        });
        let mut b = SourceArrivals::default();
        b.record(10, false);
        b.record(11, false);
        b.record(5, false);
        let mut dead = OffsetRanges::new();
        dead.insert(12);
        dead.insert(5);
        let mut filtered = OffsetRanges::new();
        filtered.insert(13);
        let (a, b) = (ArrivalUnion::of(&a), ArrivalUnion::of(&b));
        let streams = [&a, &b];
        let evidence = BTreeMap::from([(
            0,
            PartitionEvidence {
                streams: &streams,
                dead_lettered: &dead,
                filtered: &filtered,
            },
        )]);
        let bounds = BTreeMap::from([(0, bounds(0..20, 16, 18, 0)), (1, bounds(7..10, 9, 10, 8))]);
        let c = account(&bounds, &evidence);
        assert_eq!(c.expected, 23);
        assert_eq!(c.arrived_within_sla, 10);
        assert_eq!(c.arrived_late, 2);
        assert_eq!(
            c.dead_lettered, 1,
            "5 arrived: its dead letter does not count"
        );
        assert_eq!(c.filtered, 1);
        assert_eq!((c.lost, c.overdue, c.in_flight), (2 + 1, 2 + 1, 2));
        assert_eq!(
            c.unknown, 1,
            "partition 1's offset 7 was deleted before it was read"
        );
        assert_eq!(c.duplicates, 1);
        assert_eq!(c.first_missing, BTreeMap::from([(0, 14), (1, 8)]));
        assert_eq!(c.first_absent, BTreeMap::from([(0, 14), (1, 8)]));
        assert_eq!(c.accounted(), c.expected);
        assert_eq!(c.misses(), 2 + 3 + 3);
    }

    /// One offset's fate in the model: arrivals per stream (timely or not), dead-lettered,
    /// filtered.
    #[derive(Debug, Clone)]
    struct Fate {
        arrivals: Vec<(usize, bool)>,
        dead: bool,
        filtered: bool,
    }

    fn fate() -> impl Strategy<Value = Fate> {
        (
            proptest::collection::vec((0usize..3, any::<bool>()), 0..3),
            proptest::bool::weighted(0.1),
            proptest::bool::weighted(0.1),
        )
            .prop_map(|(arrivals, dead, filtered)| Fate {
                arrivals,
                dead,
                filtered,
            })
    }

    proptest! {
        /// Against a per-offset model: every class and the duplicates agree, the classes add
        /// up to `expected`, and merging the streams (in another order) into one union changes nothing.
        #[test]
        fn agrees_with_a_per_offset_model(
            fates in proptest::collection::vec(fate(), 1..120),
            window in (0i64..60, 0i64..60),
            marks in (0i64..130, 0i64..130, 0i64..130),
        ) {
            let (lo, hi) = (window.0.min(window.1), window.0.max(window.1) + 1);
            let mut m = [marks.0, marks.1, marks.2];
            m.sort();
            let [log_start, lost_below, overdue_below] = m;
            let mut streams = vec![SourceArrivals::default(); 3];
            let (mut dead, mut filtered) = (OffsetRanges::new(), OffsetRanges::new());
            let mut want = Completeness::default();
            for (offset, fate) in fates.iter().enumerate() {
                let offset = offset as i64;
                for &(stream, timely) in &fate.arrivals {
                    streams[stream].record(offset, timely);
                }
                if fate.dead { dead.insert(offset); }
                if fate.filtered { filtered.insert(offset); }
                if !(lo..hi).contains(&offset) { continue; }
                want.expected += 1;
                // Each stream keeps an offset's first arrival in it; timely in any stream wins.
                let timely = (0..3).any(|s| fate.arrivals.iter().find(|a| a.0 == s).is_some_and(|a| a.1));
                if timely {
                    want.arrived_within_sla += 1;
                } else if !fate.arrivals.is_empty() {
                    want.arrived_late += 1;
                } else if fate.dead {
                    want.dead_lettered += 1;
                } else if fate.filtered {
                    want.filtered += 1;
                } else if offset < log_start {
                    want.unknown += 1;
                } else {
                    want.first_absent.entry(3).or_insert(offset);
                    if offset < lost_below {
                        want.lost += 1;
                    } else if offset < overdue_below {
                        want.overdue += 1;
                    } else {
                        want.in_flight += 1;
                    }
                }
                want.duplicates += fate.arrivals.len().saturating_sub(1) as u64;
            }
            // Offsets beyond the fates were never seen.
            for offset in (fates.len() as i64).max(lo)..hi {
                want.expected += 1;
                if offset >= log_start { want.first_absent.entry(3).or_insert(offset); }
                if offset < log_start { want.unknown += 1 }
                else if offset < lost_below { want.lost += 1 }
                else if offset < overdue_below { want.overdue += 1 }
                else { want.in_flight += 1 }
            }
            let bounds = BTreeMap::from([(3, bounds(lo..hi, lost_below, overdue_below, log_start))]);
            let unions: Vec<ArrivalUnion> = streams.iter().map(ArrivalUnion::of).collect();
            let refs: Vec<&ArrivalUnion> = unions.iter().collect();
            let got = account(&bounds, &BTreeMap::from([(3, PartitionEvidence {
                streams: &refs, dead_lettered: &dead, filtered: &filtered,
            })]));
            prop_assert_eq!(got.accounted(), got.expected);
            let mut got_classes = got.clone();
            got_classes.first_missing.clear();
            prop_assert_eq!(&got_classes, &want);
            let mut merged = ArrivalUnion::new();
            streams.iter().rev().for_each(|s| merged.add(s));
            let reversed = [&merged];
            let again = account(&bounds, &BTreeMap::from([(3, PartitionEvidence {
                streams: &reversed, dead_lettered: &dead, filtered: &filtered,
            })]));
            prop_assert_eq!(again, got);
        }
    }
}
