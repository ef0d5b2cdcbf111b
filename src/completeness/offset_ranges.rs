//! A set of Kafka offsets kept as sorted, disjoint, half-open ranges: what completeness keeps
//! per source partition instead of one entry per record. A stage that keeps each partition's
//! order produces one range per partition and stream (each insert extends the last range, in
//! constant time); reordering costs one range per gap.

use serde::{Deserialize, Serialize};
use std::ops::Range;

/// Offsets as sorted, disjoint, non-adjacent `[start, end)` ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetRanges {
    ranges: Vec<(i64, i64)>,
}

impl OffsetRanges {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `offset`; returns whether it was new.
    pub fn insert(&mut self, offset: i64) -> bool {
        self.insert_range(offset..offset.saturating_add(1)) == 1
    }

    /// Adds every offset of `range`; returns how many were new.
    pub fn insert_range(&mut self, range: Range<i64>) -> u64 {
        let (start, end) = (range.start, range.end);
        if start >= end {
            return 0;
        }
        // In order: extend the last range or append (the common case, constant time).
        match self.ranges.last_mut() {
            None => {
                self.ranges.push((start, end));
                return width(start, end);
            }
            Some(last) if start == last.1 => {
                last.1 = end;
                return width(start, end);
            }
            Some(last) if start > last.1 => {
                self.ranges.push((start, end));
                return width(start, end);
            }
            _ => {}
        }
        // The ranges that touch or overlap [start, end) are replaced by their union.
        let first = self.ranges.partition_point(|&(_, e)| e < start);
        let after = self.ranges.partition_point(|&(s, _)| s <= end);
        let present: u64 = self.ranges[first..after]
            .iter()
            .map(|&(s, e)| width(s.max(start), e.min(end)))
            .sum();
        let (merged_start, merged_end) = if after > first {
            (
                self.ranges[first].0.min(start),
                self.ranges[after - 1].1.max(end),
            )
        } else {
            (start, end)
        };
        self.ranges
            .splice(first..after, [(merged_start, merged_end)]);
        width(start, end) - present
    }

    /// Adds every offset of `other`.
    pub fn extend(&mut self, other: &OffsetRanges) {
        for &(s, e) in &other.ranges {
            self.insert_range(s..e);
        }
    }

    /// Whether `offset` is in the set (at once for an offset past the highest: in order).
    pub fn contains(&self, offset: i64) -> bool {
        if self.end().is_none_or(|end| offset >= end) {
            return false;
        }
        let i = self.ranges.partition_point(|&(_, e)| e <= offset);
        self.ranges.get(i).is_some_and(|&(s, _)| s <= offset)
    }

    /// How many offsets of `range` are in the set.
    pub fn count_in(&self, range: Range<i64>) -> u64 {
        let first = self.ranges.partition_point(|&(_, e)| e <= range.start);
        self.ranges[first..]
            .iter()
            .take_while(|&&(s, _)| s < range.end)
            .map(|&(s, e)| width(s.max(range.start), e.min(range.end)))
            .sum()
    }

    /// The offsets of `range` not in the set, as ranges in order.
    pub fn gaps_in(&self, range: Range<i64>) -> Vec<Range<i64>> {
        let mut gaps = Vec::new();
        let mut cursor = range.start;
        let first = self.ranges.partition_point(|&(_, e)| e <= range.start);
        for &(s, e) in self.ranges[first..]
            .iter()
            .take_while(|&&(s, _)| s < range.end)
        {
            if s > cursor {
                gaps.push(cursor..s);
            }
            cursor = cursor.max(e);
        }
        if cursor < range.end {
            gaps.push(cursor..range.end);
        }
        gaps
    }

    /// The offset after the highest in the set, if any.
    pub fn end(&self) -> Option<i64> {
        self.ranges.last().map(|&(_, e)| e)
    }

    /// How many offsets the set holds.
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|&(s, e)| width(s, e)).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// How many ranges it takes (its memory is proportional to this).
    pub fn range_count(&self) -> usize {
        self.ranges.len()
    }

    /// The ranges, in order.
    pub fn ranges(&self) -> impl Iterator<Item = Range<i64>> + '_ {
        self.ranges.iter().map(|&(s, e)| s..e)
    }

    /// Forgets every offset below `offset` (what no open window needs any more).
    pub fn forget_below(&mut self, offset: i64) {
        let first = self.ranges.partition_point(|&(_, e)| e <= offset);
        self.ranges.drain(..first);
        if let Some(range) = self.ranges.first_mut() {
            range.0 = range.0.max(offset);
        }
    }
}

fn width(start: i64, end: i64) -> u64 {
    if end > start {
        (end - start) as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn in_order_offsets_are_one_range() {
        let mut set = OffsetRanges::new();
        for offset in 0..10_000 {
            assert!(set.insert(offset));
        }
        assert!(!set.insert(5), "present");
        assert_eq!(set.range_count(), 1);
        assert_eq!(set.len(), 10_000);
        assert_eq!(set.count_in(-5..3), 3);
        assert_eq!(set.gaps_in(9_998..10_002), vec![10_000..10_002]);
    }

    #[test]
    fn gaps_fill_and_ranges_merge() {
        let mut set = OffsetRanges::new();
        set.insert_range(10..20);
        set.insert_range(30..40);
        assert_eq!(set.gaps_in(0..50), vec![0..10, 20..30, 40..50]);
        assert_eq!(set.insert_range(15..35), 10, "20..30 new");
        assert_eq!(set.ranges().collect::<Vec<_>>(), vec![10..40]);
        set.insert(9);
        set.insert(40);
        assert_eq!(set.ranges().collect::<Vec<_>>(), vec![9..41]);
        set.forget_below(20);
        assert_eq!(set.ranges().collect::<Vec<_>>(), vec![20..41]);
        assert!(set.contains(20) && !set.contains(19) && !set.contains(41));
    }

    proptest! {
        /// Against a set of every offset: the same members, counts, gaps and new-ness, with
        /// ranges always sorted, disjoint and not adjacent.
        #[test]
        fn agrees_with_a_set_of_offsets(
            ops in proptest::collection::vec((0i64..200, 1i64..8), 0..80),
            query in (0i64..220, 0i64..220),
        ) {
            let mut set = OffsetRanges::new();
            let mut model = BTreeSet::new();
            for (start, len) in ops {
                let new = (start..start + len).filter(|o| model.insert(*o)).count() as u64;
                prop_assert_eq!(set.insert_range(start..start + len), new);
            }
            let pairs: Vec<_> = set.ranges().collect();
            for w in pairs.windows(2) {
                prop_assert!(w[0].end < w[1].start, "{:?}", pairs);
            }
            prop_assert_eq!(set.len(), model.len() as u64);
            let (a, b) = (query.0.min(query.1), query.0.max(query.1));
            prop_assert_eq!(set.count_in(a..b), model.range(a..b).count() as u64);
            let gaps: u64 = set.gaps_in(a..b).iter().map(|r| (r.end - r.start) as u64).sum();
            prop_assert_eq!(gaps, (b - a) as u64 - model.range(a..b).count() as u64);
            for o in 0..210 {
                prop_assert_eq!(set.contains(o), model.contains(&o));
            }
        }
    }
}
