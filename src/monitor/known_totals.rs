//! What one instance knows of a window's size: the records of it that its own partitions hold
//! or published. A lower bound on the window's total over all partitions — enough to tell,
//! often, that a window cannot be exact, so that its parts travel as t-digest centroids
//! instead of raw values (see [`crate::distribution::digest::LatencyDigest::fold_values`]).
//!
//! Only parts of partitions the instance owns now count: a revoked partition's parts are
//! forgotten (its next owner republishes them), so no record is counted twice and the bound
//! never exceeds the true total. No I/O.

use std::collections::BTreeMap;

/// Per window start, per owned partition, the records of its published part.
#[derive(Debug, Default, Clone)]
pub struct KnownTotals {
    published: BTreeMap<i64, BTreeMap<i32, u64>>,
}

impl KnownTotals {
    /// Records of the window starting at `start` in parts already published (by partitions
    /// not in `except`, whose counts the caller adds itself).
    pub fn published(&self, start: i64, except: &[i32]) -> u64 {
        self.published.get(&start).map_or(0, |parts| {
            parts
                .iter()
                .filter(|(p, _)| !except.contains(p))
                .map(|(_, count)| count)
                .sum()
        })
    }

    /// `partition` published its part of the window starting at `start` with `count` records.
    pub fn on_published(&mut self, start: i64, partition: i32, count: u64) {
        self.published
            .entry(start)
            .or_default()
            .insert(partition, count);
    }

    /// `partition` is no longer owned (revoked, or assigned afresh): its parts are forgotten.
    pub fn forget_partition(&mut self, partition: i32) {
        self.published.retain(|_, parts| {
            parts.remove(&partition);
            !parts.is_empty()
        });
    }

    /// Keeps only the windows (by start) for which `open` holds: the others get no more
    /// parts from this instance.
    pub fn retain_windows(&mut self, mut open: impl FnMut(i64) -> bool) {
        self.published.retain(|&start, _| open(start));
    }

    /// Number of windows remembered (bounded by the open windows; for tests).
    pub fn windows(&self) -> usize {
        self.published.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_owned_partition_once_and_forgets_revoked_ones() {
        let mut known = KnownTotals::default();
        known.on_published(0, 1, 10);
        known.on_published(0, 2, 5);
        known.on_published(0, 2, 7); // republished after a replay: replaces
        known.on_published(60, 1, 3);
        assert_eq!(known.published(0, &[]), 17);
        assert_eq!(known.published(0, &[2]), 10);
        known.forget_partition(1);
        assert_eq!(known.published(0, &[]), 7);
        assert_eq!(known.published(60, &[]), 0);
        assert_eq!(known.windows(), 1);
        known.retain_windows(|start| start >= 60);
        assert_eq!(known.windows(), 0);
    }
}
