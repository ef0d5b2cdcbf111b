//! What the pipeline's stages declared about source records on their dead-letter topics: a
//! record refused (dead-lettered) or dropped by design (declared filtered). Such a record is
//! accounted for, not missing. Kept per source partition as offset ranges.
//!
//! A declaration counts when it was made within `lost_after` of the record entering the
//! source, the rule arrivals follow ([`CompletenessRules::judge`]): a record dead-lettered
//! later than that was missing for longer than `lost_after` and stays lost, so a final
//! document is the same whenever the dead-letter topic is read.

use super::offset_ranges::OffsetRanges;
use super::stream::CompletenessRules;
use std::collections::BTreeMap;

/// The `dlq.reason` of a record a stage dropped by design (a filter, a de-duplication).
pub const FILTERED_REASON: &str = "filtered";

/// One dead letter's claim about one source record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Declaration {
    /// The source record's partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// When it entered the source (Unix ms), when the dead letter says.
    pub source_timestamp_ms: Option<i64>,
    /// Dropped by design, rather than refused.
    pub filtered: bool,
}

/// What was declared of one source partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Declared {
    /// Offsets dead-lettered (refused) by a stage.
    pub dead_lettered: OffsetRanges,
    /// Offsets a stage declared filtered.
    pub filtered: OffsetRanges,
}

/// Every declaration read so far, per source partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Declarations {
    partitions: BTreeMap<i32, Declared>,
    /// Declarations made after `lost_after` (their records stay lost).
    too_late: u64,
}

impl Declarations {
    /// Records `declaration`, made at `declared_at_ms` (the dead letter's own timestamp, when
    /// known); returns whether it counts (see the module documentation).
    pub fn record(
        &mut self,
        rules: &CompletenessRules,
        declaration: &Declaration,
        declared_at_ms: Option<i64>,
    ) -> bool {
        if let (Some(source), Some(declared)) = (declaration.source_timestamp_ms, declared_at_ms) {
            if rules.judge(source, declared).is_none() {
                self.too_late += 1;
                return false;
            }
        }
        let declared = self.partitions.entry(declaration.partition).or_default();
        let ranges = if declaration.filtered {
            &mut declared.filtered
        } else {
            &mut declared.dead_lettered
        };
        ranges.insert(declaration.offset);
        true
    }

    /// What was declared of `partition`, if anything.
    pub fn of(&self, partition: i32) -> Option<&Declared> {
        self.partitions.get(&partition)
    }

    /// Every partition with a declaration, and what was declared of it.
    pub fn partitions(&self) -> &BTreeMap<i32, Declared> {
        &self.partitions
    }

    /// Declarations not counted because they came after `lost_after`.
    pub fn too_late(&self) -> u64 {
        self.too_late
    }

    /// Forgets, per partition, the offsets below `floors` (windows accounted for good).
    pub fn forget_below(&mut self, floors: &BTreeMap<i32, i64>) {
        for (partition, declared) in &mut self.partitions {
            if let Some(&floor) = floors.get(partition) {
                declared.dead_lettered.forget_below(floor);
                declared.filtered.forget_below(floor);
            }
        }
        self.partitions
            .retain(|_, d| !d.dead_lettered.is_empty() || !d.filtered.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: CompletenessRules = CompletenessRules {
        window_ms: 1_000,
        sla_ms: 100,
        lost_after_ms: 3_000,
    };

    fn declaration(
        partition: i32,
        offset: i64,
        source: Option<i64>,
        filtered: bool,
    ) -> Declaration {
        Declaration {
            partition,
            offset,
            source_timestamp_ms: source,
            filtered,
        }
    }

    #[test]
    fn refused_and_filtered_records_are_kept_apart_per_partition() {
        let mut declarations = Declarations::default();
        for offset in [3, 4, 5, 9] {
            assert!(declarations.record(
                &RULES,
                &declaration(0, offset, Some(10_000), false),
                Some(10_500)
            ));
        }
        assert!(declarations.record(&RULES, &declaration(0, 6, Some(10_000), true), Some(10_500)));
        assert!(declarations.record(&RULES, &declaration(2, 1, None, false), None));
        let zero = declarations.of(0).expect("partition 0");
        assert_eq!(zero.dead_lettered.len(), 4);
        assert_eq!(zero.dead_lettered.range_count(), 2, "3..6 and 9");
        assert!(zero.filtered.contains(6));
        assert!(declarations
            .of(2)
            .expect("partition 2")
            .dead_lettered
            .contains(1));
        assert_eq!(declarations.of(1), None);
    }

    #[test]
    fn a_declaration_after_lost_after_does_not_count() {
        let mut declarations = Declarations::default();
        assert!(declarations.record(
            &RULES,
            &declaration(0, 1, Some(10_000), false),
            Some(13_000)
        ));
        assert!(!declarations.record(
            &RULES,
            &declaration(0, 2, Some(10_000), false),
            Some(13_001)
        ));
        assert_eq!(declarations.too_late(), 1);
        assert!(!declarations
            .of(0)
            .expect("partition 0")
            .dead_lettered
            .contains(2));
        assert!(
            declarations.record(&RULES, &declaration(0, 3, None, true), Some(99_000)),
            "without the source's time it cannot be judged late"
        );
    }

    #[test]
    fn forgetting_drops_offsets_below_each_floor_and_empty_partitions() {
        let mut declarations = Declarations::default();
        for (partition, offset) in [(0, 1), (0, 8), (1, 2)] {
            declarations.record(&RULES, &declaration(partition, offset, None, false), None);
        }
        declarations.forget_below(&BTreeMap::from([(0, 5), (1, 5)]));
        assert_eq!(declarations.partitions().len(), 1);
        let zero = declarations.of(0).expect("partition 0");
        assert!(!zero.dead_lettered.contains(1) && zero.dead_lettered.contains(8));
    }
}
