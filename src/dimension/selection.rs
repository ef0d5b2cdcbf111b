//! Which values of a window get documents of their own, from every partition's
//! [`ValueTable`](super::value_table::ValueTable): the same choice on every instance (it
//! depends only on the partitions' tables), counts that add up to the whole window's, and a
//! statement of how exact each value's figures are.
//!
//! The rule, with `N` the window's records and `U` the sum over partitions of the most records
//! a value a partition gave up can have had ([`ValueTable::untracked_at_most`]):
//! 1. a value's **weight** is the sum of its weights in the partitions that kept it; it is
//!    never below the value's records there, and the weights of all values add up to `N`;
//! 2. values are ranked by weight (then by value, so that ties are decided alike everywhere);
//! 3. the first `max_values` get documents, and so does every value whose weight is at least
//!    `N / 100 − U`: a value holding 1 % of the window's records always qualifies, since the
//!    records it has in partitions that gave it up are at most `U`. As each table keeps at
//!    least [`MIN_CAPACITY`](super::value_table::MIN_CAPACITY) values, `U ≤ N / 1000`, so at
//!    most 111 values qualify that way: the documents of a window are at most
//!    `max(max_values, 111)`;
//! 4. everything else — the partitions' other parts and the values not chosen — is the
//!    window's [`OTHER_VALUE`](super::spec::OTHER_VALUE).
//!
//! A chosen value's figures are exact (every one of its records) when `missing_at_most` is 0:
//! no partition gave up any of its records. Otherwise up to `missing_at_most` of its records
//! are counted under other; the whole window's figures are always exact.

use super::value_table::ValueTable;
use crate::event_time::window::WindowPart;
use std::collections::BTreeMap;

/// One partition's window split by value, as it is published: the values it kept (with the
/// records they may have had before they entered), its other part, and its bound on values it
/// gave up.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionSplit {
    /// Per value kept: its part and its inherited weight.
    pub values: BTreeMap<String, (WindowPart, u64)>,
    /// The records of values given up.
    pub other: WindowPart,
    /// The most records a value not kept can have had.
    pub untracked_at_most: u64,
}

impl PartitionSplit {
    /// The records it holds: its values' and other's.
    pub fn records(&self) -> u64 {
        self.other.digest.count()
            + self
                .values
                .values()
                .map(|(part, _)| part.digest.count())
                .sum::<u64>()
    }
}

impl From<ValueTable> for PartitionSplit {
    fn from(table: ValueTable) -> Self {
        PartitionSplit {
            values: table
                .entries()
                .map(|(key, entry)| (key.to_string(), (entry.part.clone(), entry.inherited)))
                .collect(),
            other: table.other().clone(),
            untracked_at_most: table.untracked_at_most(),
        }
    }
}

/// A value with a document of its own.
#[derive(Debug)]
pub struct ChosenValue<'a> {
    /// The value (its key: the values of every dimension).
    pub key: &'a str,
    /// Its parts, in partition order.
    pub parts: Vec<&'a WindowPart>,
    /// Its weight (see the module documentation).
    pub weight: u64,
    /// How many of its records may be counted under other instead (0: exact).
    pub missing_at_most: u64,
}

/// A window's values: those with documents, and everything else as other.
#[derive(Debug)]
pub struct Selection<'a> {
    /// The chosen values, by key.
    pub values: Vec<ChosenValue<'a>>,
    /// Other's parts, in partition order (in each: its other part, then the values not
    /// chosen, by key).
    pub other: Vec<&'a WindowPart>,
    /// Values seen in some partition's table but not chosen.
    pub values_folded: usize,
}

/// Chooses the values of one window (see the module documentation).
pub fn select(splits: &BTreeMap<i32, PartitionSplit>, max_values: usize) -> Selection<'_> {
    let records: u64 = splits
        .values()
        .map(|s| {
            s.other.digest.count()
                + s.values
                    .values()
                    .map(|(part, _)| part.digest.count())
                    .sum::<u64>()
        })
        .sum();
    let untracked: u64 = splits.values().map(|s| s.untracked_at_most).sum();
    let mut weights: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for split in splits.values() {
        for (key, (part, inherited)) in &split.values {
            let entry = weights.entry(key.as_str()).or_default();
            entry.0 += part.digest.count() + inherited;
            entry.1 += inherited;
        }
    }
    let mut ranked: Vec<(&str, u64)> = weights.iter().map(|(&k, &(w, _))| (k, w)).collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    // Weight ≥ N / 100 − U, in integers.
    let qualifies = |weight: u64| (weight + untracked) * 100 >= records;
    let chosen_count = ranked
        .iter()
        .enumerate()
        .take_while(|&(i, &(_, weight))| i < max_values || qualifies(weight))
        .count();
    let mut chosen: Vec<&str> = ranked[..chosen_count].iter().map(|&(k, _)| k).collect();
    chosen.sort_unstable();
    let values = chosen
        .iter()
        .map(|&key| {
            let mut parts = Vec::new();
            let mut missing_at_most = weights[key].1;
            for split in splits.values() {
                match split.values.get(key) {
                    Some((part, _)) => parts.push(part),
                    None => missing_at_most += split.untracked_at_most,
                }
            }
            ChosenValue {
                key,
                parts,
                weight: weights[key].0,
                missing_at_most,
            }
        })
        .collect();
    let mut other = Vec::new();
    for split in splits.values() {
        other.push(&split.other);
        other.extend(
            split
                .values
                .iter()
                .filter(|(key, _)| chosen.binary_search(&key.as_str()).is_err())
                .map(|(_, (part, _))| part),
        );
    }
    Selection {
        values,
        other,
        values_folded: ranked.len() - chosen_count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dimension::value_table::MIN_CAPACITY;
    use crate::distribution::digest::DigestConfig;
    use proptest::prelude::*;

    const CONFIG: DigestConfig = DigestConfig {
        exact_threshold: 10_000,
        compression: 100,
    };

    fn count(parts: &[&WindowPart]) -> u64 {
        parts.iter().map(|p| p.digest.count()).sum()
    }

    /// Records as (partition, value) spread over tables, and the true count per value.
    fn tables(records: &[(i32, String)]) -> (BTreeMap<i32, PartitionSplit>, BTreeMap<String, u64>) {
        let mut tables: BTreeMap<i32, ValueTable> = BTreeMap::new();
        let mut truth: BTreeMap<String, u64> = BTreeMap::new();
        for (i, (partition, key)) in records.iter().enumerate() {
            tables
                .entry(*partition)
                .or_insert_with(|| ValueTable::new(MIN_CAPACITY, CONFIG))
                .add(key, (i % 997) as i64, 500);
            *truth.entry(key.clone()).or_default() += 1;
        }
        let splits = tables
            .into_iter()
            .map(|(p, t)| (p, PartitionSplit::from(t)))
            .collect();
        (splits, truth)
    }

    #[test]
    fn few_values_are_each_exact_and_add_up() {
        let records: Vec<(i32, String)> = (0..3_000)
            .map(|i| (i % 3, format!("tenant-{}", i % 7)))
            .collect();
        let (splits, truth) = tables(&records);
        let selection = select(&splits, 10);
        assert_eq!(selection.values.len(), 7);
        for value in &selection.values {
            assert_eq!(value.missing_at_most, 0);
            assert_eq!(count(&value.parts), truth[value.key]);
        }
        assert_eq!(count(&selection.other), 0);
        assert_eq!(selection.values_folded, 0);
    }

    #[test]
    fn past_the_cap_the_lightest_values_are_other() {
        let records: Vec<(i32, String)> = (0..1_000)
            .map(|i| (0, format!("v{}", if i < 500 { i % 5 } else { i })))
            .collect();
        let (splits, _) = tables(&records);
        let selection = select(&splits, 5);
        let keys: Vec<&str> = selection.values.iter().map(|v| v.key).collect();
        assert_eq!(keys, ["v0", "v1", "v2", "v3", "v4"]);
        assert_eq!(count(&selection.other), 500);
        assert_eq!(selection.values_folded, 500);
    }

    #[test]
    fn a_value_of_one_percent_that_a_partition_gave_up_still_gets_its_document() {
        // Partition 0 sees x three times, then 3,000 distinct values that push it out;
        // partition 1 sees x 28 times and y 29 times. x holds 1 % of the window; its weight
        // alone (28) does not, and y outranks it for the one place max_values gives.
        let mut records = vec![(0, "x".to_string()); 3];
        records.extend((0..3_000).map(|i| (0, format!("d{i}"))));
        records.extend(std::iter::repeat_n((1, "x".to_string()), 28));
        records.extend(std::iter::repeat_n((1, "y".to_string()), 29));
        let (splits, truth) = tables(&records);
        assert!(
            !splits[&0].values.contains_key("x"),
            "partition 0 gave x up"
        );
        let n = records.len() as u64;
        assert!(truth["x"] * 100 >= n && truth["y"] * 100 < n && 28 * 100 < n);
        let selection = select(&splits, 1);
        let keys: Vec<&str> = selection.values.iter().map(|v| v.key).collect();
        assert_eq!(keys, ["x", "y"]);
        let x = &selection.values[0];
        assert_eq!(count(&x.parts), 28);
        assert!(x.missing_at_most >= 3, "{}", x.missing_at_most);
        assert_eq!(
            selection.values[1].missing_at_most,
            splits[&0].untracked_at_most
        );
    }

    proptest! {
        /// Against true counts: values and other add up to the window, a value of 1 % is always
        /// chosen, each chosen value's count is exact up to its stated bound, and there are at
        /// most max(max_values, 111) documents.
        #[test]
        fn counts_add_up_and_every_value_of_one_percent_has_its_document(
            heavy in proptest::collection::vec((0i32..3, 0u32..40), 0..1_500),
            scattered in proptest::collection::vec((0i32..3, 0u32..5_000), 0..4_000),
            max_values in 1usize..30,
        ) {
            let mut records: Vec<(i32, String)> = heavy
                .iter()
                .map(|&(p, v)| (p, format!("h{v}")))
                .chain(scattered.iter().map(|&(p, v)| (p, format!("s{v}"))))
                .collect();
            // Interleaved, so that heavy values arrive after the tables filled.
            records.sort_by_key(|(p, k)| (k.len() * 7919 + k.as_bytes()[1] as usize * 31) % 101 + *p as usize);
            let (splits, truth) = tables(&records);
            let n = records.len() as u64;
            let selection = select(&splits, max_values);
            let chosen: u64 = selection.values.iter().map(|v| count(&v.parts)).sum();
            prop_assert_eq!(chosen + count(&selection.other), n);
            prop_assert!(selection.values.len() <= max_values.max(111));
            for value in &selection.values {
                let got = count(&value.parts);
                let want = truth[value.key];
                prop_assert!(got <= want && want <= got + value.missing_at_most,
                    "{}: {} counted, {} true, {} missing at most", value.key, got, want, value.missing_at_most);
            }
            for (key, &c) in &truth {
                if c * 100 >= n {
                    prop_assert!(selection.values.iter().any(|v| v.key == key), "{} with {} of {}", key, c, n);
                }
            }
        }
    }
}
