//! A set of offsets that holds itself in whichever of two forms is smaller: ranges (16 bytes
//! each: a few for offsets that arrive in order, or nearly) or a bitmap (1 bit per offset it
//! spans: for offsets so scattered that ranges would cost more). What bounds the ledger's
//! memory in bytes whatever a stage does to the order of records: a set never costs more
//! than about one bit per offset between its lowest and highest.

use super::offset_ranges::OffsetRanges;
use std::ops::Range;

/// Bytes one range costs.
const RANGE_BYTES: usize = 16;

/// Offsets, as ranges or as a bitmap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetSet {
    /// Sorted, disjoint ranges.
    Ranges(OffsetRanges),
    /// One bit per offset from `base` (a multiple of 64).
    Bits {
        /// The offset of the first word's lowest bit.
        base: i64,
        /// The bits, 64 offsets per word.
        words: Vec<u64>,
    },
}

impl Default for OffsetSet {
    fn default() -> Self {
        OffsetSet::Ranges(OffsetRanges::new())
    }
}

impl OffsetSet {
    /// Adds every offset of `offsets`, then takes the smaller form.
    pub fn extend(&mut self, offsets: &OffsetRanges) {
        match self {
            OffsetSet::Ranges(ranges) => {
                ranges.extend(offsets);
                if let Some(bits) = Self::bits_if_smaller(ranges) {
                    *self = bits;
                }
            }
            OffsetSet::Bits { base, words } => {
                for range in offsets.ranges() {
                    set_bits(base, words, range);
                }
                // Scattered offsets filled in (the usual end of a re-keying stage's streams):
                // back to ranges once they cost less than half the bitmap.
                if runs(words) * RANGE_BYTES * 2 < words.len() * 8 {
                    *self = OffsetSet::Ranges(self.to_ranges());
                }
            }
        }
    }

    /// The bitmap form of `ranges`, if it costs less than the ranges do.
    fn bits_if_smaller(ranges: &OffsetRanges) -> Option<OffsetSet> {
        let (first, end) = (ranges.ranges().next()?.start, ranges.end()?);
        let span_words = ((end - first.div_euclid(64) * 64) as u128).div_ceil(64);
        if span_words * 8 >= (ranges.range_count() * RANGE_BYTES) as u128 {
            return None;
        }
        let mut base = first.div_euclid(64) * 64;
        let mut words = Vec::with_capacity(span_words as usize);
        for range in ranges.ranges() {
            set_bits(&mut base, &mut words, range);
        }
        Some(OffsetSet::Bits { base, words })
    }

    /// The offsets of `range` in the set, as ranges.
    pub fn ranges_in(&self, range: Range<i64>) -> OffsetRanges {
        match self {
            OffsetSet::Ranges(ranges) => {
                let mut within = OffsetRanges::new();
                within.insert_range(range);
                ranges.intersection(&within)
            }
            OffsetSet::Bits { base, words } => {
                let mut found = OffsetRanges::new();
                let start = range.start.max(*base);
                let end = range.end.min(*base + words.len() as i64 * 64);
                let mut run: Option<i64> = None;
                // A run of set offsets starts or ends at `offset`.
                let mut at = |offset: i64, set: bool| match (set, run) {
                    (true, None) => run = Some(offset),
                    (false, Some(s)) => {
                        found.insert_range(s..offset);
                        run = None;
                    }
                    _ => {}
                };
                let mut offset = start;
                while offset < end {
                    let i = (offset - base) as usize;
                    let word = words[i / 64];
                    // Whole words alike are passed at once.
                    if i % 64 == 0 && offset + 64 <= end && (word == 0 || word == u64::MAX) {
                        at(offset, word == u64::MAX);
                        offset += 64;
                    } else {
                        at(offset, word >> (i % 64) & 1 == 1);
                        offset += 1;
                    }
                }
                if let Some(s) = run {
                    found.insert_range(s..end);
                }
                found
            }
        }
    }

    /// Every offset in the set, as ranges.
    pub fn to_ranges(&self) -> OffsetRanges {
        match self {
            OffsetSet::Ranges(ranges) => ranges.clone(),
            OffsetSet::Bits { base, words } => {
                self.ranges_in(*base..*base + words.len() as i64 * 64)
            }
        }
    }

    /// The offsets in both this set and `other`.
    pub fn intersection(&self, other: &OffsetRanges) -> OffsetRanges {
        match self {
            OffsetSet::Ranges(ranges) => ranges.intersection(other),
            OffsetSet::Bits { .. } => {
                let mut both = OffsetRanges::new();
                for range in other.ranges() {
                    both.extend(&self.ranges_in(range));
                }
                both
            }
        }
    }

    /// How many offsets of `range` are in the set.
    pub fn count_in(&self, range: Range<i64>) -> u64 {
        match self {
            OffsetSet::Ranges(ranges) => ranges.count_in(range),
            OffsetSet::Bits { base, words } => {
                let start = range.start.max(*base);
                let end = range.end.min(*base + words.len() as i64 * 64);
                if start >= end {
                    return 0;
                }
                masks((start - base) as usize, (end - base) as usize)
                    .map(|(w, mask)| u64::from((words[w] & mask).count_ones()))
                    .sum()
            }
        }
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        match self {
            OffsetSet::Ranges(ranges) => ranges.is_empty(),
            OffsetSet::Bits { words, .. } => words.iter().all(|&w| w == 0),
        }
    }

    /// What the set costs, in bytes (its ranges or its bitmap).
    pub fn bytes(&self) -> usize {
        match self {
            OffsetSet::Ranges(ranges) => ranges.range_count() * RANGE_BYTES,
            OffsetSet::Bits { words, .. } => words.len() * 8,
        }
    }
}

/// How many runs of set bits the bitmap holds (as ranges, it would take as many).
fn runs(words: &[u64]) -> usize {
    let mut carry = 0u64;
    let mut runs = 0;
    for &word in words {
        runs += (word & !(word << 1 | carry)).count_ones() as usize;
        carry = word >> 63;
    }
    runs
}

/// Sets the bits of `range`, growing the bitmap (and moving `base` down) as needed.
fn set_bits(base: &mut i64, words: &mut Vec<u64>, range: Range<i64>) {
    if range.start >= range.end {
        return;
    }
    let low = range.start.div_euclid(64) * 64;
    if words.is_empty() {
        *base = low;
    } else if low < *base {
        let more = ((*base - low) / 64) as usize;
        words.splice(0..0, std::iter::repeat_n(0, more));
        *base = low;
    }
    let needed = ((range.end - *base) as u64).div_ceil(64) as usize;
    if words.len() < needed {
        words.resize(needed, 0);
    }
    for (w, mask) in masks((range.start - *base) as usize, (range.end - *base) as usize) {
        words[w] |= mask;
    }
}

/// The bits `first..last` (`first < last`) word by word: each word's index and mask.
fn masks(first: usize, last: usize) -> impl Iterator<Item = (usize, u64)> {
    (first / 64..=(last - 1) / 64).map(move |w| {
        let mut mask = u64::MAX;
        if w == first / 64 {
            mask &= u64::MAX << (first % 64);
        }
        if w == (last - 1) / 64 && last % 64 != 0 {
            mask &= u64::MAX >> (64 - last % 64);
        }
        (w, mask)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn offsets_in_order_stay_ranges_scattered_ones_become_bits() {
        let mut in_order = OffsetSet::default();
        let mut all = OffsetRanges::new();
        all.insert_range(0..1_000_000);
        in_order.extend(&all);
        assert!(matches!(in_order, OffsetSet::Ranges(_)));
        assert_eq!(in_order.bytes(), 16);

        let mut scattered = OffsetSet::default();
        let mut every_other = OffsetRanges::new();
        (0..1_000_000).step_by(2).for_each(|o| {
            every_other.insert(o);
        });
        scattered.extend(&every_other);
        assert!(matches!(scattered, OffsetSet::Bits { .. }));
        assert!(
            scattered.bytes() <= 1_000_000 / 8 + 8,
            "{}",
            scattered.bytes()
        );
        assert_eq!(scattered.count_in(0..1_000_000), 500_000);
        assert_eq!(scattered.count_in(3..8), 2);
    }

    proptest! {
        /// Against a set of every offset, in either form: the same counts, ranges and
        /// intersections, and never more bytes than the smaller form's (plus a word).
        #[test]
        fn agrees_with_a_set_of_offsets(
            batches in proptest::collection::vec(proptest::collection::vec((0i64..400, 1i64..4), 0..60), 1..4),
            query in (0i64..420, 0i64..420),
        ) {
            let mut set = OffsetSet::default();
            let mut model = BTreeSet::new();
            for batch in &batches {
                let mut ranges = OffsetRanges::new();
                for &(start, len) in batch {
                    ranges.insert_range(start..start + len);
                    model.extend(start..start + len);
                }
                set.extend(&ranges);
            }
            let (a, b) = (query.0.min(query.1), query.0.max(query.1));
            prop_assert_eq!(set.count_in(a..b), model.range(a..b).count() as u64);
            let found: BTreeSet<i64> = set.ranges_in(a..b).ranges().flatten().collect();
            prop_assert_eq!(found, model.range(a..b).copied().collect::<BTreeSet<_>>());
            let mut probe = OffsetRanges::new();
            probe.insert_range(a..b);
            probe.insert_range(b + 5..b + 9);
            let both: BTreeSet<i64> = set.intersection(&probe).ranges().flatten().collect();
            let want: BTreeSet<i64> = model.iter().copied().filter(|o| (a..b).contains(o) || (b + 5..b + 9).contains(o)).collect();
            prop_assert_eq!(both, want);
            prop_assert_eq!(set.is_empty(), model.is_empty());
            if let (Some(&lo), Some(&hi)) = (model.first(), model.last()) {
                let span_bytes = ((hi - lo.div_euclid(64) * 64 + 1) as usize).div_ceil(64) * 8;
                prop_assert!(set.bytes() <= span_bytes.max(16) + 8 || matches!(set, OffsetSet::Ranges(_)),
                    "{} bytes for a span of {}", set.bytes(), hi - lo);
            }
        }
    }
}
