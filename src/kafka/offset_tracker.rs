//! Which consumed offsets are safe to commit: only those whose output has been acknowledged.
//!
//! Records are processed out of order (deliveries finish in any order, dead-lettered records
//! skip the delay), so a partition's committable offset is the lowest offset still in flight,
//! or one past the highest offset seen when nothing is in flight.

use std::collections::{BTreeMap, VecDeque};

#[derive(Debug, Default)]
struct PartitionState {
    /// Consumed offsets from the oldest unacknowledged one on, in consumption (ascending)
    /// order, each with whether its output was acknowledged: acknowledging is a binary
    /// search, and the committable offset is the front.
    pending: VecDeque<(i64, bool)>,
    /// How many of `pending` are not acknowledged.
    unacknowledged: usize,
    /// One past the highest offset tracked so far.
    end: i64,
    /// The offset last committed (the next offset to consume after a restart).
    committed: Option<i64>,
}

impl PartitionState {
    fn committable(&self) -> i64 {
        self.pending.front().map_or(self.end, |&(offset, _)| offset)
    }

    fn track(&mut self, offset: i64) {
        if self.pending.back().is_some_and(|&(last, _)| last >= offset) {
            // Consumed again from an earlier position (a seek): what was pending is redone.
            self.pending.retain(|&(o, _)| o < offset);
            self.unacknowledged = self.pending.iter().filter(|(_, acked)| !acked).count();
        }
        self.pending.push_back((offset, false));
        self.unacknowledged += 1;
        self.end = self.end.max(offset + 1);
    }

    fn ack(&mut self, offset: i64) {
        let Ok(index) = self.pending.binary_search_by_key(&offset, |&(o, _)| o) else {
            return;
        };
        let entry = &mut self.pending[index].1;
        if !*entry {
            *entry = true;
            self.unacknowledged -= 1;
        }
        while self.pending.front().is_some_and(|&(_, acked)| acked) {
            self.pending.pop_front();
        }
    }
}

/// Per-partition bookkeeping of consumed offsets whose output is not yet acknowledged.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: BTreeMap<i32, PartitionState>,
}

impl OffsetTracker {
    /// Records that `offset` of `partition` was consumed and its output is pending.
    pub fn track(&mut self, partition: i32, offset: i64) {
        self.partitions.entry(partition).or_default().track(offset);
    }

    /// Records that the output produced from `offset` was acknowledged (or that the offset
    /// needs no output). Unknown partitions (revoked meanwhile) are ignored.
    pub fn ack(&mut self, partition: i32, offset: i64) {
        if let Some(state) = self.partitions.get_mut(&partition) {
            state.ack(offset);
        }
    }

    /// Number of consumed records whose output is still pending.
    pub fn in_flight(&self) -> usize {
        self.partitions.values().map(|s| s.unacknowledged).sum()
    }

    /// The offsets (next offset to consume, per partition) that are safe to commit and
    /// advance past what was last committed.
    pub fn committable(&self) -> Vec<(i32, i64)> {
        self.partitions
            .iter()
            .filter(|(_, s)| s.committed.is_none_or(|c| s.committable() > c))
            .map(|(&p, s)| (p, s.committable()))
            .collect()
    }

    /// The safe offset of every tracked partition, advanced or not: for a final, synchronous
    /// commit that must not depend on earlier asynchronous commits having succeeded.
    pub fn safe_positions(&self) -> Vec<(i32, i64)> {
        self.partitions
            .iter()
            .map(|(&p, s)| (p, s.committable()))
            .collect()
    }

    /// Records that these offsets were committed, so they are not committed again.
    pub fn mark_committed(&mut self, offsets: &[(i32, i64)]) {
        for &(partition, offset) in offsets {
            if let Some(state) = self.partitions.get_mut(&partition) {
                state.committed = Some(state.committed.map_or(offset, |c| c.max(offset)));
            }
        }
    }

    /// Stops tracking a partition (revoked by a rebalance): its pending acks are ignored.
    pub fn remove(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn commits_only_below_the_first_unacknowledged_offset() {
        let mut t = OffsetTracker::default();
        for o in 10..15 {
            t.track(0, o);
        }
        assert_eq!(t.committable(), vec![(0, 10)]);
        t.ack(0, 11);
        t.ack(0, 12);
        assert_eq!(t.committable(), vec![(0, 10)]);
        t.ack(0, 10);
        assert_eq!(t.committable(), vec![(0, 13)]);
        t.mark_committed(&[(0, 13)]);
        assert!(t.committable().is_empty());
        assert_eq!(t.safe_positions(), vec![(0, 13)]);
        t.ack(0, 13);
        t.ack(0, 14);
        assert_eq!(t.committable(), vec![(0, 15)]);
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn partitions_are_independent_and_removal_forgets() {
        let mut t = OffsetTracker::default();
        t.track(0, 0);
        t.track(1, 5);
        t.ack(1, 5);
        assert_eq!(t.committable(), vec![(0, 0), (1, 6)]);
        t.remove(0);
        t.ack(0, 0);
        assert_eq!(t.committable(), vec![(1, 6)]);
    }

    proptest! {
        /// Whatever the order of acknowledgements, a committed offset never passes a record
        /// whose output was not acknowledged, and once all are acknowledged everything commits.
        #[test]
        fn never_commits_past_an_unacknowledged_record(
            n in 1usize..100,
            order in proptest::collection::vec(any::<prop::sample::Index>(), 0..100),
        ) {
            let mut t = OffsetTracker::default();
            for o in 0..n as i64 { t.track(0, o); }
            let mut pending: Vec<i64> = (0..n as i64).collect();
            for idx in order {
                if pending.is_empty() { break; }
                let o = pending.remove(idx.index(pending.len()));
                t.ack(0, o);
                let min_pending = pending.iter().copied().min().unwrap_or(n as i64);
                for (_, c) in t.committable() {
                    prop_assert!(c <= min_pending);
                }
                let c = t.committable();
                t.mark_committed(&c);
            }
            for o in pending { t.ack(0, o); }
            let last = t.committable();
            prop_assert!(last.is_empty() || last == vec![(0, n as i64)]);
        }
    }
}
