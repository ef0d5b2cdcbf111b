//! One partition's share of one window, split by dimension value, in bounded memory: at most
//! `capacity` values keep a part of their own; when a new value arrives at a full table, the
//! value with the fewest records (the oldest of them on a tie) gives its part up to the
//! partition's **other** part and its place to the newcomer (the Space-Saving algorithm, with
//! latency parts instead of bare counters). Whatever the stream — a new value on every record
//! included — the table holds `capacity` parts and one other part.
//!
//! What that keeps exact, per value (the Space-Saving guarantees, property-tested below):
//! - every record is in exactly one part (its value's, or other), so the parts' counts add up
//!   to the partition's records;
//! - a value's **weight** (its part's records plus `inherited`, the weight of the value it
//!   replaced) is never below its true count, and the weights add up to the partition's
//!   records;
//! - a value not in the table has at most `untracked_at_most` records (in other);
//! - so a value holding more than `1 / capacity` of the partition's records is always in it.
//!
//! The order of evictions depends only on the partition's own sequence of records, so every
//! instance that replays a partition builds the same table.

use crate::distribution::digest::DigestConfig;
use crate::event_time::window::WindowPart;
use std::collections::{BTreeSet, HashMap};

/// The fewest values a table keeps: what lets a value of 1 % of a window's records be told
/// apart whatever the other values do (see [`crate::dimension::selection`]).
pub const MIN_CAPACITY: usize = 1_000;

/// One value's part in a table.
#[derive(Debug, Clone)]
pub struct ValueEntry {
    /// The value's records since it entered the table.
    pub part: WindowPart,
    /// Records it may have had before (in other): the weight of the value it replaced, 0 if
    /// it replaced none.
    pub inherited: u64,
    /// When it entered (the tie-break among equal weights: the oldest goes first).
    seq: u64,
}

impl ValueEntry {
    /// Its weight: records in its part plus those it may have had before.
    pub fn weight(&self) -> u64 {
        self.part.digest.count() + self.inherited
    }
}

/// One partition's window, by value (see the module documentation).
#[derive(Debug, Clone)]
pub struct ValueTable {
    capacity: usize,
    config: DigestConfig,
    entries: HashMap<Box<str>, ValueEntry, foldhash::fast::FixedState>,
    /// Once full: every entry as (weight, seq), to find the lightest.
    order: Option<BTreeSet<(u64, u64)>>,
    /// Per seq, its value (for the entry `order` names).
    keys: HashMap<u64, Box<str>, foldhash::fast::FixedState>,
    next_seq: u64,
    other: WindowPart,
    untracked_at_most: u64,
}

impl ValueTable {
    /// An empty table keeping at most `capacity` values (at least [`MIN_CAPACITY`]).
    pub fn new(capacity: usize, config: DigestConfig) -> Self {
        ValueTable {
            capacity: capacity.max(MIN_CAPACITY),
            config,
            entries: HashMap::default(),
            order: None,
            keys: HashMap::default(),
            next_seq: 0,
            other: WindowPart::new(config),
            untracked_at_most: 0,
        }
    }

    /// Adds one record of value `key` with latency `latency_ms`, judged against `sla_ms`.
    pub fn add(&mut self, key: &str, latency_ms: i64, sla_ms: i64) {
        if let Some(entry) = self.entries.get_mut(key) {
            let before = (entry.weight(), entry.seq);
            entry.part.add(latency_ms, sla_ms);
            if let Some(order) = &mut self.order {
                order.remove(&before);
                order.insert((entry.weight(), entry.seq));
            }
            return;
        }
        let mut inherited = 0;
        if self.entries.len() == self.capacity {
            let order = self.order.get_or_insert_with(|| {
                self.entries.values().map(|e| (e.weight(), e.seq)).collect()
            });
            let (weight, seq) = order.pop_first().expect("a full table has entries");
            let key = self.keys.remove(&seq).expect("every entry has its key");
            let evicted = self.entries.remove(&key).expect("every key has its entry");
            self.other.absorb(&evicted.part);
            self.untracked_at_most = self.untracked_at_most.max(weight);
            inherited = weight;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut part = WindowPart::new(self.config);
        part.add(latency_ms, sla_ms);
        let entry = ValueEntry {
            part,
            inherited,
            seq,
        };
        if let Some(order) = &mut self.order {
            order.insert((entry.weight(), seq));
        }
        self.keys.insert(seq, key.into());
        self.entries.insert(key.into(), entry);
    }

    /// The values kept, with their parts.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &ValueEntry)> {
        self.entries.iter().map(|(k, e)| (k.as_ref(), e))
    }

    /// The records of values given up.
    pub fn other(&self) -> &WindowPart {
        &self.other
    }

    /// The most records a value not in the table can have had (0 while nothing was given up).
    pub fn untracked_at_most(&self) -> u64 {
        self.untracked_at_most
    }

    /// Values kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no record was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const CONFIG: DigestConfig = DigestConfig {
        exact_threshold: 10_000,
        compression: 100,
    };

    #[test]
    fn a_hostile_stream_keeps_the_table_bounded_and_the_heavy_value() {
        let mut table = ValueTable::new(MIN_CAPACITY, CONFIG);
        for i in 0..100_000 {
            // Every 50th record is "heavy" (2 %); the rest are all distinct.
            let key = if i % 50 == 0 {
                "heavy".to_string()
            } else {
                format!("v{i}")
            };
            table.add(&key, i % 1_000, 500);
        }
        assert_eq!(table.len(), MIN_CAPACITY);
        let heavy = table.entries().find(|(k, _)| *k == "heavy").expect("kept");
        assert!(heavy.1.weight() >= 2_000);
        let kept: u64 = table.entries().map(|(_, e)| e.part.digest.count()).sum();
        assert_eq!(kept + table.other().digest.count(), 100_000);
        assert!(table.untracked_at_most() <= 100_000 / MIN_CAPACITY as u64);
    }

    proptest! {
        /// The Space-Saving guarantees, against a count per value: parts add up, weights bound
        /// true counts from above and add up, untracked values stay under their bound, and
        /// the same records give the same table.
        #[test]
        fn parts_add_up_and_weights_bound_true_counts(
            records in proptest::collection::vec((0u32..3_000, 0i64..2_000), 0..4_000),
        ) {
            let mut table = ValueTable::new(MIN_CAPACITY, CONFIG);
            let mut truth: BTreeMap<String, u64> = BTreeMap::new();
            for &(value, latency) in &records {
                let key = format!("v{}", value % 1_500);
                table.add(&key, latency, 1_000);
                *truth.entry(key).or_default() += 1;
            }
            let n = records.len() as u64;
            let kept: u64 = table.entries().map(|(_, e)| e.part.digest.count()).sum();
            prop_assert_eq!(kept + table.other().digest.count(), n);
            let weights: u64 = table.entries().map(|(_, e)| e.weight()).sum();
            prop_assert_eq!(weights, n);
            for (key, entry) in table.entries() {
                prop_assert!(entry.weight() >= truth[key]);
                prop_assert!(entry.part.digest.count() <= truth[key]);
            }
            let kept_keys: BTreeSet<&str> = table.entries().map(|(k, _)| k).collect();
            for (key, &count) in &truth {
                if !kept_keys.contains(key.as_str()) {
                    prop_assert!(count <= table.untracked_at_most());
                }
                if count * MIN_CAPACITY as u64 > n {
                    prop_assert!(kept_keys.contains(key.as_str()), "{key} with {count} of {n}");
                }
            }
            let mut again = ValueTable::new(MIN_CAPACITY, CONFIG);
            for &(value, latency) in &records {
                again.add(&format!("v{}", value % 1_500), latency, 1_000);
            }
            let summary = |t: &ValueTable| {
                let mut s: Vec<(String, u64, u64)> = t.entries()
                    .map(|(k, e)| (k.to_string(), e.part.digest.count(), e.inherited)).collect();
                s.sort();
                (s, t.other().digest.count(), t.untracked_at_most())
            };
            prop_assert_eq!(summary(&again), summary(&table));
        }
    }
}
