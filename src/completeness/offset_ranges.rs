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

    /// Adds every offset of `other`, in one pass over both (linear however the two
    /// interleave).
    pub fn extend(&mut self, other: &OffsetRanges) {
        match (self.ranges.last(), other.ranges.first()) {
            (_, None) => return,
            (None, _) => {
                self.ranges.clone_from(&other.ranges);
                return;
            }
            (Some(&(_, end)), Some(&(start, _))) if start > end => {
                self.ranges.extend_from_slice(&other.ranges);
                return;
            }
            _ => {}
        }
        let mut merged: Vec<(i64, i64)> =
            Vec::with_capacity(self.ranges.len() + other.ranges.len());
        let (mut a, mut b) = (
            self.ranges.iter().peekable(),
            other.ranges.iter().peekable(),
        );
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(&&x), Some(&&y)) => {
                    if x.0 <= y.0 {
                        a.next();
                        x
                    } else {
                        b.next();
                        y
                    }
                }
                (Some(&&x), None) => {
                    a.next();
                    x
                }
                (None, Some(&&y)) => {
                    b.next();
                    y
                }
                (None, None) => break,
            };
            match merged.last_mut() {
                Some(last) if next.0 <= last.1 => last.1 = last.1.max(next.1),
                _ => merged.push(next),
            }
        }
        self.ranges = merged;
    }

    /// The offsets in both sets, in one pass over both.
    pub fn intersection(&self, other: &OffsetRanges) -> OffsetRanges {
        let mut both = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < self.ranges.len() && j < other.ranges.len() {
            let (a, b) = (self.ranges[i], other.ranges[j]);
            let (start, end) = (a.0.max(b.0), a.1.min(b.1));
            if start < end {
                both.push((start, end));
            }
            if a.1 <= b.1 {
                i += 1;
            } else {
                j += 1;
            }
        }
        OffsetRanges { ranges: both }
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

        /// Union and intersection of two sets agree with a set of every offset.
        #[test]
        fn union_and_intersection_agree_with_sets_of_offsets(
            left in proptest::collection::vec((0i64..200, 1i64..8), 0..40),
            right in proptest::collection::vec((0i64..200, 1i64..8), 0..40),
        ) {
            let build = |ops: &[(i64, i64)]| {
                let mut set = OffsetRanges::new();
                let mut model = BTreeSet::new();
                for &(start, len) in ops {
                    set.insert_range(start..start + len);
                    model.extend(start..start + len);
                }
                (set, model)
            };
            let ((a, a_model), (b, b_model)) = (build(&left), build(&right));
            let both = a.intersection(&b);
            prop_assert_eq!(both.ranges().flatten().collect::<BTreeSet<_>>(), &a_model & &b_model);
            let mut union = a.clone();
            union.extend(&b);
            prop_assert_eq!(union.ranges().flatten().collect::<BTreeSet<_>>(), &a_model | &b_model);
            let pairs: Vec<_> = union.ranges().chain(both.ranges()).collect();
            for w in union.ranges().collect::<Vec<_>>().windows(2) {
                prop_assert!(w[0].end < w[1].start, "{:?}", pairs);
            }
        }
    }
}
