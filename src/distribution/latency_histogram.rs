//! A window's whole latency distribution as value/count pairs — what Elasticsearch's
//! `histogram` field type stores and aggregates (`percentiles`, `percentile_ranks`, `range`),
//! so that percentiles and SLA compliance over any range and for any threshold are computed
//! from every record, not by averaging per-window percentiles.
//!
//! # How the buckets are built
//!
//! Latencies are whole milliseconds. While a partition's part of a window is open it counts
//! every distinct latency exactly. When the part closes ([`LatencyHistogram::seal`]) and holds
//! more records than the exact threshold, it is **coarsened**: walking its values in order,
//! neighbouring values share a bucket while the bucket holds at most 1/400 (0.25 %) of the
//! part's records *and* spans at most 0.4 % of its smallest value (values of different signs
//! never share one); a bucket is stored as its count and the mean of its values. A value whose
//! own count is larger is a bucket of its own, exact. A window's histogram
//! ([`merge_histograms`]) is the sum of its parts' buckets (equal values add up); it is exact
//! when every part is exact and the window holds at most the exact threshold of records,
//! otherwise the sum is coarsened once more by the same rule over the window's records.
//!
//! # The bound (property-tested below)
//!
//! - **Counts above any threshold** `t` are off by at most **0.5 % of the window's records**:
//!   a record lands on the wrong side of `t` only in a bucket whose values straddle `t` — at
//!   most one per coarsened part (≤ 0.25 % of that part's records) and one in the window's
//!   coarsening (≤ 0.25 % of the window's records). Single-value buckets are exact.
//! - **Any percentile** (linear interpolation between closest ranks, as numpy and
//!   [`crate::distribution::digest::exact_quantile`]) is within **1 %** of the exact one for latencies of
//!   one sign: bucket means keep the order of the records, and each record is represented by a
//!   value at most 0.4 % away, twice (part, then window): ≤ 0.8 %. Latencies under 250 ms are
//!   always exact (0.4 % of them is less than a millisecond).
//! - The sum of `values × counts` is the sum of the latencies (up to floating-point rounding),
//!   so Elasticsearch's `avg` over the field is the true mean.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A bucket holds at most `1 / COUNT_SHARE_DIVISOR` of the records it is coarsened over.
pub const COUNT_SHARE_DIVISOR: u64 = 400;
/// A bucket spans at most this fraction of its smallest value.
pub const RELATIVE_WIDTH: f64 = 0.004;

type ExactCounts = HashMap<i64, u64, foldhash::fast::FixedState>;

/// One partition's latencies in one window: exact counts per distinct latency while open and
/// for small parts, coarsened buckets (see the module docs) for large ones once sealed.
#[derive(Debug, Clone, Default)]
pub struct LatencyHistogram {
    counts: Counts,
    count: u64,
}

/// How a histogram holds its counts.
#[derive(Debug, Clone)]
enum Counts {
    /// Open: a count per distinct latency, added to record by record.
    Open(ExactCounts),
    /// Sealed and exact: (latency, count), ascending — about half the memory of the open
    /// form, which matters to a merge holding the parts of many partitions.
    Exact(Vec<(i64, u64)>),
    /// Sealed and coarsened: (value, count), ascending.
    Coarse(Vec<(f64, u64)>),
}

impl Default for Counts {
    fn default() -> Self {
        Counts::Open(ExactCounts::default())
    }
}

impl PartialEq for LatencyHistogram {
    fn eq(&self, other: &Self) -> bool {
        self.to_parts() == other.to_parts()
    }
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one latency (ms). Only an open (unsealed) part is added to.
    pub fn add(&mut self, latency_ms: i64) {
        self.count += 1;
        match &mut self.counts {
            Counts::Open(exact) => *exact.entry(latency_ms).or_insert(0) += 1,
            Counts::Exact(sorted) => {
                let mut exact: ExactCounts = sorted.iter().copied().collect();
                *exact.entry(latency_ms).or_insert(0) += 1;
                self.counts = Counts::Open(exact);
            }
            Counts::Coarse(buckets) => {
                debug_assert!(false, "adding to a coarsened histogram");
                // A bucket of its own (or added to an equal one), keeping the order.
                let value = latency_ms as f64;
                match buckets.binary_search_by(|(v, _)| v.total_cmp(&value)) {
                    Ok(i) => buckets[i].1 += 1,
                    Err(i) => buckets.insert(i, (value, 1)),
                }
            }
        }
    }

    /// Adds every count of `other`, an open or exact part (what adding its latencies one by one
    /// would give). A coarsened part's buckets are added by value.
    pub fn absorb(&mut self, other: &LatencyHistogram) {
        if other.count == 0 {
            return;
        }
        if let Counts::Exact(sorted) = &self.counts {
            self.counts = Counts::Open(sorted.iter().copied().collect());
        }
        match (&mut self.counts, &other.counts) {
            (Counts::Open(exact), Counts::Open(theirs)) => {
                for (&v, &c) in theirs {
                    *exact.entry(v).or_insert(0) += c;
                }
            }
            (Counts::Open(exact), Counts::Exact(theirs)) => {
                for &(v, c) in theirs {
                    *exact.entry(v).or_insert(0) += c;
                }
            }
            (counts, _) => {
                // Either side coarsened: buckets added by value, in order.
                let mine = match counts {
                    Counts::Coarse(buckets) => std::mem::take(buckets),
                    _ => Vec::new(),
                };
                let mut all: Vec<(f64, u64)> = mine;
                all.extend(other.sorted_buckets());
                if let Counts::Open(exact) = counts {
                    all.extend(exact.iter().map(|(&v, &c)| (v as f64, c)));
                }
                all.sort_by(|a, b| a.0.total_cmp(&b.0));
                let mut merged: Vec<(f64, u64)> = Vec::with_capacity(all.len());
                for (v, c) in all {
                    match merged.last_mut() {
                        Some(last) if last.0 == v => last.1 += c,
                        _ => merged.push((v, c)),
                    }
                }
                *counts = Counts::Coarse(merged);
            }
        }
        self.count += other.count;
    }

    /// Number of latencies counted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether every distinct latency is still counted exactly.
    pub fn is_exact(&self) -> bool {
        !matches!(self.counts, Counts::Coarse(_))
    }

    /// Closes the part: coarsens it when it holds more than `exact_threshold` records (such a
    /// part's window cannot be exact). Depends only on the part's own records, so every
    /// instance seals a partition's part alike.
    pub fn seal(&mut self, exact_threshold: usize) {
        if !self.is_exact() {
            return;
        }
        let sorted = self.sorted_exact();
        self.counts = if self.count > exact_threshold as u64 {
            let values: Vec<(f64, u64)> = sorted.into_iter().map(|(v, c)| (v as f64, c)).collect();
            Counts::Coarse(coarsen(&values, self.count))
        } else {
            Counts::Exact(sorted)
        };
    }

    /// The (value, count) pairs, ascending.
    pub fn sorted_buckets(&self) -> Vec<(f64, u64)> {
        match &self.counts {
            Counts::Coarse(buckets) => buckets.clone(),
            _ => self
                .sorted_exact()
                .into_iter()
                .map(|(v, c)| (v as f64, c))
                .collect(),
        }
    }

    /// The (value, count) pairs, ascending, borrowed once sealed.
    fn sorted_view(&self) -> SortedView<'_> {
        match &self.counts {
            Counts::Open(_) => SortedView::Exact(std::borrow::Cow::Owned(self.sorted_exact())),
            Counts::Exact(sorted) => SortedView::Exact(std::borrow::Cow::Borrowed(sorted)),
            Counts::Coarse(buckets) => SortedView::Coarse(buckets),
        }
    }

    /// The exact counts, by ascending latency (none once coarsened).
    fn sorted_exact(&self) -> Vec<(i64, u64)> {
        match &self.counts {
            Counts::Open(exact) => {
                let mut sorted: Vec<(i64, u64)> = exact.iter().map(|(&v, &c)| (v, c)).collect();
                sorted.sort_unstable_by_key(|&(v, _)| v);
                sorted
            }
            Counts::Exact(sorted) => sorted.clone(),
            Counts::Coarse(_) => Vec::new(),
        }
    }

    /// This histogram as plain data, to travel between monitor instances.
    pub fn to_parts(&self) -> HistogramParts {
        match &self.counts {
            Counts::Coarse(buckets) => HistogramParts::Buckets {
                values: buckets.iter().map(|&(v, _)| v).collect(),
                counts: buckets.iter().map(|&(_, c)| c).collect(),
            },
            _ => {
                let exact = self.sorted_exact();
                let mut previous = 0i64;
                let deltas = exact
                    .iter()
                    .map(|&(v, _)| {
                        let delta = v.wrapping_sub(previous);
                        previous = v;
                        delta
                    })
                    .collect();
                HistogramParts::Exact {
                    deltas,
                    counts: exact.iter().map(|&(_, c)| c).collect(),
                }
            }
        }
    }

    /// The histogram `parts` describe, when they are consistent (see [`HistogramParts::check`]).
    pub fn from_parts(parts: HistogramParts) -> Result<Self, String> {
        parts.check()?;
        let count = parts.count();
        let counts = match parts {
            HistogramParts::Exact { deltas, counts } => {
                let mut value = 0i64;
                Counts::Exact(
                    deltas
                        .into_iter()
                        .zip(counts)
                        .map(|(delta, c)| {
                            value = value.wrapping_add(delta);
                            (value, c)
                        })
                        .collect(),
                )
            }
            HistogramParts::Buckets { values, counts } => {
                Counts::Coarse(values.into_iter().zip(counts).collect())
            }
        };
        Ok(LatencyHistogram { counts, count })
    }
}

/// A part's histogram as plain data: exact latencies delta-encoded (a few bytes each), or
/// coarsened buckets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum HistogramParts {
    /// Every distinct latency: the first value, then differences to the previous one.
    Exact {
        /// Ascending latencies as differences (the first from 0).
        deltas: Vec<i64>,
        /// How many records had each.
        counts: Vec<u64>,
    },
    /// Coarsened buckets.
    Buckets {
        /// Bucket values (means), strictly ascending.
        values: Vec<f64>,
        /// Records per bucket.
        counts: Vec<u64>,
    },
}

impl HistogramParts {
    /// Records counted.
    pub fn count(&self) -> u64 {
        let counts = match self {
            HistogramParts::Exact { counts, .. } | HistogramParts::Buckets { counts, .. } => counts,
        };
        counts.iter().fold(0u64, |sum, &c| sum.saturating_add(c))
    }

    /// Whether the parts describe a histogram a monitor could have built: as many counts as
    /// values, every count positive, values strictly ascending (and finite), no overflow.
    pub fn check(&self) -> Result<(), String> {
        let (len, counts) = match self {
            HistogramParts::Exact { deltas, counts } => {
                if deltas.iter().skip(1).any(|&d| d <= 0) {
                    return Err("histogram latencies are not strictly ascending".into());
                }
                let mut value: i64 = 0;
                for &d in deltas {
                    value = value.checked_add(d).ok_or("histogram latencies overflow")?;
                }
                (deltas.len(), counts)
            }
            HistogramParts::Buckets { values, counts } => {
                if values.iter().any(|v| !v.is_finite()) || values.windows(2).any(|w| w[0] >= w[1])
                {
                    return Err("histogram values are not finite and strictly ascending".into());
                }
                (values.len(), counts)
            }
        };
        if len != counts.len() {
            return Err(format!(
                "{len} histogram values but {} counts",
                counts.len()
            ));
        }
        if counts.contains(&0) {
            return Err("a histogram bucket without records".into());
        }
        counts
            .iter()
            .try_fold(0u64, |sum, &c| sum.checked_add(c))
            .ok_or("histogram counts overflow")?;
        Ok(())
    }
}

/// A whole window's latency distribution: Elasticsearch's `histogram` field
/// (`latency_histogram` in the window document).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowHistogram {
    /// Latencies (ms), strictly ascending: exact values, or bucket means.
    pub values: Vec<f64>,
    /// Records per value.
    pub counts: Vec<u64>,
}

impl WindowHistogram {
    /// Records counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Records above `threshold` (ms), as a `range` aggregation counts them.
    pub fn count_above(&self, threshold: f64) -> u64 {
        self.values
            .iter()
            .zip(&self.counts)
            .filter(|(&v, _)| v > threshold)
            .map(|(_, &c)| c)
            .sum()
    }

    /// Quantile `q` (0–1) with linear interpolation between closest ranks, over every record
    /// the histogram stands for; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let h = (n - 1) as f64 * q.clamp(0.0, 1.0);
        let lower = h.floor() as u64;
        let upper = h.ceil() as u64;
        let at = |rank: u64| {
            let mut seen = 0;
            for (&v, &c) in self.values.iter().zip(&self.counts) {
                seen += c;
                if rank < seen {
                    return v;
                }
            }
            *self.values.last().expect("not empty")
        };
        let (a, b) = (at(lower), at(upper));
        Some(a + (h - lower as f64) * (b - a))
    }
}

/// The histogram of a window from its parts (in any order): exact when every part is exact and
/// there are at most `exact_threshold` records, coarsened over the window otherwise. Equal
/// values of different parts add up; the parts' ascending buckets are merged, not gathered
/// and sorted (over 96 partitions that gathering held every part's buckets at once).
pub fn merge_histograms(parts: &[&LatencyHistogram], exact_threshold: usize) -> WindowHistogram {
    let sorted: Vec<SortedView<'_>> = parts.iter().map(|p| p.sorted_view()).collect();
    let summed = sum_sorted(&sorted);
    let total: u64 = summed.iter().map(|&(_, c)| c).sum();
    let exact = parts.iter().all(|p| p.is_exact()) && total <= exact_threshold as u64;
    let buckets = if exact {
        summed
    } else {
        coarsen(&summed, total)
    };
    WindowHistogram {
        values: buckets.iter().map(|&(v, _)| v).collect(),
        counts: buckets.iter().map(|&(_, c)| c).collect(),
    }
}

/// A histogram's (value, count) pairs in ascending order, borrowed when sealed.
enum SortedView<'a> {
    Exact(std::borrow::Cow<'a, [(i64, u64)]>),
    Coarse(&'a [(f64, u64)]),
}

impl SortedView<'_> {
    /// The `i`-th pair.
    fn get(&self, i: usize) -> Option<(f64, u64)> {
        match self {
            SortedView::Exact(pairs) => pairs.get(i).map(|&(v, c)| (v as f64, c)),
            SortedView::Coarse(pairs) => pairs.get(i).copied(),
        }
    }
}

/// Merges ascending (value, count) lists into one ascending list, adding the counts of equal
/// values.
fn sum_sorted(lists: &[SortedView<'_>]) -> Vec<(f64, u64)> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    /// A list's next value, ordered by value (then list, so equal values pop in list order).
    #[derive(PartialEq)]
    struct Next(f64, usize);
    impl Eq for Next {}
    impl PartialOrd for Next {
        fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
            Some(self.cmp(other))
        }
    }
    impl Ord for Next {
        fn cmp(&self, other: &Self) -> std::cmp::Ordering {
            self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
        }
    }
    let mut positions = vec![0usize; lists.len()];
    let mut heap: BinaryHeap<Reverse<Next>> = lists
        .iter()
        .enumerate()
        .filter_map(|(i, list)| list.get(0).map(|(v, _)| Reverse(Next(v, i))))
        .collect();
    let mut summed: Vec<(f64, u64)> = Vec::new();
    while let Some(Reverse(Next(v, i))) = heap.pop() {
        let (_, c) = lists[i]
            .get(positions[i])
            .expect("the heap holds a list's next pair");
        positions[i] += 1;
        if let Some((next, _)) = lists[i].get(positions[i]) {
            heap.push(Reverse(Next(next, i)));
        }
        match summed.last_mut() {
            Some(last) if last.0 == v => last.1 += c,
            _ => summed.push((v, c)),
        }
    }
    summed
}

/// Whether `lo..=hi` (same sign, ascending) is narrow enough to be one bucket.
fn narrow(lo: f64, hi: f64) -> bool {
    let same_sign = lo > 0.0 || hi < 0.0 || lo == hi;
    same_sign && hi - lo <= RELATIVE_WIDTH * lo.abs().min(hi.abs())
}

/// Coarsens ascending (value, count) pairs standing for `total` records (see the module docs).
fn coarsen(sorted: &[(f64, u64)], total: u64) -> Vec<(f64, u64)> {
    let max_count = total / COUNT_SHARE_DIVISOR;
    let mut out = Vec::new();
    // The bucket being built: lowest value, highest value, weighted sum, count.
    let mut current: Option<(f64, f64, f64, u64)> = None;
    let finish = |(lo, hi, sum, count): (f64, f64, f64, u64)| {
        let value = if lo == hi {
            lo
        } else {
            (sum / count as f64).clamp(lo, hi)
        };
        (value, count)
    };
    for &(v, c) in sorted {
        current = match current {
            Some((lo, _, sum, count)) if count + c <= max_count && narrow(lo, v) => {
                Some((lo, v, sum + v * c as f64, count + c))
            }
            Some(bucket) => {
                out.push(finish(bucket));
                Some((v, v, v * c as f64, c))
            }
            None => Some((v, v, v * c as f64, c)),
        };
    }
    // Bucket ranges are disjoint and ascending and each mean is clamped into its range, so
    // the values come out strictly ascending.
    out.extend(current.map(finish));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distribution::digest::exact_quantile;
    use proptest::prelude::*;

    fn histogram(values: &[i64]) -> LatencyHistogram {
        let mut h = LatencyHistogram::new();
        values.iter().for_each(|&v| h.add(v));
        h
    }

    #[test]
    fn small_windows_are_exact_counts_of_each_latency() {
        let mut a = histogram(&[5, 1, 5, 900]);
        let mut b = histogram(&[5, 7]);
        a.seal(10);
        b.seal(10);
        let w = merge_histograms(&[&a, &b], 10);
        assert_eq!(w.values, vec![1.0, 5.0, 7.0, 900.0]);
        assert_eq!(w.counts, vec![1, 3, 1, 1]);
        assert_eq!(w.count_above(5.0), 2);
        assert_eq!(w.quantile(0.5), Some(5.0));
    }

    #[test]
    fn large_windows_are_coarsened_within_the_width_and_share() {
        let values: Vec<i64> = (0..100_000).map(|i| 1_000 + (i % 9_000)).collect();
        let mut h = histogram(&values);
        h.seal(10_000);
        assert!(!h.is_exact());
        let w = merge_histograms(&[&h], 10_000);
        assert_eq!(w.count(), 100_000);
        assert!(w.counts.iter().all(|&c| c <= 100_000 / COUNT_SHARE_DIVISOR));
        assert!(w.values.len() < 1_500, "{} buckets", w.values.len());
        assert!(w.values.windows(2).all(|p| p[0] < p[1]));
    }

    #[test]
    fn parts_round_trip_and_broken_parts_are_refused() {
        for sealed_at in [usize::MAX, 10] {
            let mut h = histogram(&[-3, 0, 2, 2, 70, 5_000, 5_001, 5_001, 123_456]);
            h.seal(sealed_at);
            let bytes = postcard::to_stdvec(&h.to_parts()).unwrap();
            let back = LatencyHistogram::from_parts(postcard::from_bytes(&bytes).unwrap()).unwrap();
            assert_eq!(back, h);
            assert_eq!(back.count(), 9);
            assert_eq!(back.sorted_buckets(), h.sorted_buckets());
        }
        let broken = [
            HistogramParts::Exact {
                deltas: vec![5, 0],
                counts: vec![1, 1],
            },
            HistogramParts::Exact {
                deltas: vec![5],
                counts: vec![0],
            },
            HistogramParts::Exact {
                deltas: vec![i64::MAX, 1],
                counts: vec![1, 1],
            },
            HistogramParts::Buckets {
                values: vec![1.0, f64::NAN],
                counts: vec![1, 1],
            },
            HistogramParts::Buckets {
                values: vec![2.0, 1.0],
                counts: vec![1, 1],
            },
            HistogramParts::Buckets {
                values: vec![1.0],
                counts: vec![1, 2],
            },
            HistogramParts::Buckets {
                values: vec![1.0, 2.0],
                counts: vec![u64::MAX, 1],
            },
        ];
        for parts in broken {
            assert!(
                LatencyHistogram::from_parts(parts.clone()).is_err(),
                "{parts:?}"
            );
        }
    }

    /// Latencies drawn as real pipelines show them: a body, a tail, spikes at one value, and
    /// every record at nearly the same latency (the hardest case for buckets).
    fn latencies() -> impl Strategy<Value = Vec<i64>> {
        prop_oneof![
            proptest::collection::vec(0i64..200_000, 1..3_000),
            proptest::collection::vec(4_990i64..5_020, 1..3_000),
            proptest::collection::vec((0.0f64..12.0).prop_map(|e| e.exp() as i64), 1..3_000),
            (0i64..100_000, 1usize..3_000).prop_map(|(v, n)| vec![v; n]),
        ]
    }

    /// The parts' summed buckets as they were computed before parts were merged in order:
    /// every part's buckets gathered, sorted, equal values summed.
    fn gathered_and_sorted(parts: &[&LatencyHistogram]) -> Vec<(f64, u64)> {
        let mut all: Vec<(f64, u64)> = parts.iter().flat_map(|p| p.sorted_buckets()).collect();
        all.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        let mut summed: Vec<(f64, u64)> = Vec::new();
        for (v, c) in all {
            match summed.last_mut() {
                Some(last) if last.0 == v => last.1 += c,
                _ => summed.push((v, c)),
            }
        }
        summed
    }

    #[test]
    fn an_absorbed_part_counts_as_its_latencies_added_one_by_one() {
        let (mut left, mut right, mut both) = (
            LatencyHistogram::new(),
            LatencyHistogram::new(),
            LatencyHistogram::new(),
        );
        for v in [5, 7, 7, 900] {
            left.add(v);
            both.add(v);
        }
        for v in [7, 8, 900, 1_000] {
            right.add(v);
            both.add(v);
        }
        let mut sealed = right.clone();
        sealed.seal(1_000);
        let mut from_sealed = left.clone();
        from_sealed.absorb(&sealed);
        left.absorb(&right);
        assert_eq!(left, both);
        assert_eq!(from_sealed, both);
        let mut coarse: LatencyHistogram = LatencyHistogram::new();
        (0..2_000).for_each(|v| coarse.add(v));
        coarse.seal(100);
        let mut with_coarse = both.clone();
        with_coarse.absorb(&coarse);
        assert_eq!(with_coarse.count(), 8 + 2_000);
        assert_eq!(
            with_coarse
                .sorted_buckets()
                .iter()
                .map(|&(_, c)| c)
                .sum::<u64>(),
            8 + 2_000
        );
    }

    proptest! {
        /// Merging the parts' ascending buckets sums them as gathering and sorting them did (so
        /// documents do not change), for open, exact and coarsened parts alike.
        #[test]
        fn merging_in_order_equals_gathering_and_sorting(
            parts in proptest::collection::vec(latencies(), 1..6),
            exact_threshold in prop_oneof![Just(0usize), 1usize..2_000, Just(1_000_000)],
            sealed in proptest::collection::vec(any::<bool>(), 6),
        ) {
            let histograms: Vec<LatencyHistogram> = parts
                .iter()
                .zip(&sealed)
                .map(|(values, &seal)| {
                    let mut h = histogram(values);
                    if seal {
                        h.seal(exact_threshold);
                        h = LatencyHistogram::from_parts(h.to_parts()).unwrap();
                    }
                    h
                })
                .collect();
            let refs: Vec<&LatencyHistogram> = histograms.iter().collect();
            let views: Vec<SortedView<'_>> = refs.iter().map(|p| p.sorted_view()).collect();
            prop_assert_eq!(sum_sorted(&views), gathered_and_sorted(&refs));
        }

        /// The bound the module docs state, for windows split over several partitions and
        /// exact thresholds that leave some parts exact and coarsen others.
        #[test]
        fn counts_above_any_threshold_and_percentiles_stay_within_the_bound(
            parts in proptest::collection::vec(latencies(), 1..5),
            exact_threshold in prop_oneof![Just(0usize), 1usize..2_000, Just(1_000_000)],
            thresholds in proptest::collection::vec(0.0f64..200_000.0, 8),
            q in proptest::collection::vec(0.0f64..=1.0, 8),
        ) {
            let sealed: Vec<LatencyHistogram> = parts
                .iter()
                .map(|values| {
                    let mut h = histogram(values);
                    h.seal(exact_threshold);
                    // It travels through the shuffle as plain data.
                    LatencyHistogram::from_parts(h.to_parts()).unwrap()
                })
                .collect();
            let window = merge_histograms(&sealed.iter().collect::<Vec<_>>(), exact_threshold);
            let mut all: Vec<f64> = parts.iter().flatten().map(|&v| v as f64).collect();
            all.sort_unstable_by(f64::total_cmp);
            let n = all.len() as u64;
            prop_assert_eq!(window.count(), n);
            prop_assert!(window.values.windows(2).all(|p| p[0] < p[1]));
            let mut probes = thresholds.clone();
            probes.extend(all.iter().step_by(97).flat_map(|&v| [v - 0.5, v, v + 0.5]));
            for t in probes {
                let exact_above = all.iter().filter(|&&v| v > t).count() as u64;
                let error = window.count_above(t).abs_diff(exact_above);
                prop_assert!(
                    error as f64 <= 0.005 * n as f64,
                    "threshold {}: {} above, exact {} of {}", t, window.count_above(t), exact_above, n
                );
            }
            for &q in &q {
                let exact = exact_quantile(&all, q);
                let got = window.quantile(q).unwrap();
                prop_assert!((got - exact).abs() <= 0.01 * exact.abs(), "q {}: {} vs exact {}", q, got, exact);
            }
            let sum: f64 = window.values.iter().zip(&window.counts).map(|(v, &c)| v * c as f64).sum();
            let exact_sum: f64 = all.iter().sum();
            prop_assert!((sum - exact_sum).abs() <= 1e-9 * exact_sum.abs().max(1.0));
            if n <= exact_threshold as u64 {
                let mut distinct = all.clone();
                distinct.dedup();
                prop_assert_eq!(window.values, distinct);
            }
        }
    }
}
