//! What one stream of output records (the records of one output partition over a stretch of
//! time, as one partition stage reads them) showed of one source partition: which source
//! offsets arrived within the SLA, which arrived late, and which arrived again.

use super::offset_ranges::OffsetRanges;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most distinct offsets whose repeated arrivals one stream keeps apart; past it, repeats are
/// only counted (`untracked_repeats`) and attributed to no window.
pub const MAX_TRACKED_REPEATS: usize = 10_000;

/// Arrivals of one source partition's records in one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceArrivals {
    /// Offsets that arrived within the SLA (their first arrival in this stream).
    pub within_sla: OffsetRanges,
    /// Offsets whose first arrival in this stream was after the SLA.
    pub late: OffsetRanges,
    /// Offsets that arrived again in this stream, with how many more times.
    pub repeats: BTreeMap<i64, u32>,
    /// Repeated arrivals past [`MAX_TRACKED_REPEATS`] offsets.
    pub untracked_repeats: u64,
}

/// What one arrival was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The first in this stream.
    First,
    /// A repeat: the offset had arrived in this stream before.
    Repeat,
}

impl SourceArrivals {
    /// The record at `offset` arrived, within the SLA or not.
    pub fn record(&mut self, offset: i64, within_sla: bool) -> Arrival {
        let (this, other) = if within_sla {
            (&mut self.within_sla, &self.late)
        } else {
            (&mut self.late, &self.within_sla)
        };
        if !other.contains(offset) && this.insert(offset) {
            return Arrival::First;
        }
        if let Some(count) = self.repeats.get_mut(&offset) {
            *count += 1;
        } else if self.repeats.len() < MAX_TRACKED_REPEATS {
            self.repeats.insert(offset, 1);
        } else {
            self.untracked_repeats += 1;
        }
        Arrival::Repeat
    }

    /// Arrivals in this stream, repeats included, of the offsets in `range`.
    pub fn arrivals_in(&self, range: std::ops::Range<i64>) -> u64 {
        self.within_sla.count_in(range.clone())
            + self.late.count_in(range.clone())
            + self
                .repeats
                .range(range)
                .map(|(_, &n)| u64::from(n))
                .sum::<u64>()
    }

    /// Whether nothing arrived.
    pub fn is_empty(&self) -> bool {
        self.within_sla.is_empty() && self.late.is_empty() && self.untracked_repeats == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_arrivals_and_repeats_are_told_apart() {
        let mut arrivals = SourceArrivals::default();
        assert_eq!(arrivals.record(0, true), Arrival::First);
        assert_eq!(arrivals.record(1, false), Arrival::First);
        assert_eq!(
            arrivals.record(0, false),
            Arrival::Repeat,
            "late repeat of a timely one"
        );
        assert_eq!(arrivals.record(1, true), Arrival::Repeat);
        assert_eq!(arrivals.record(1, true), Arrival::Repeat);
        assert_eq!(arrivals.within_sla.len(), 1);
        assert_eq!(arrivals.late.len(), 1);
        assert_eq!(arrivals.repeats, BTreeMap::from([(0, 1), (1, 2)]));
        assert_eq!(arrivals.arrivals_in(0..2), 5);
        assert_eq!(arrivals.arrivals_in(1..2), 3);
    }

    #[test]
    fn repeats_are_bounded() {
        let mut arrivals = SourceArrivals::default();
        let n = MAX_TRACKED_REPEATS as i64 + 5;
        for offset in 0..n {
            arrivals.record(offset, true);
            arrivals.record(offset, true);
        }
        assert_eq!(arrivals.repeats.len(), MAX_TRACKED_REPEATS);
        assert_eq!(arrivals.untracked_repeats, 5);
    }
}
