//! Event time: one partition's watermark ([`watermark`]) and tumbling windows ([`window`]),
//! whole windows merged from the partitions' parts ([`merge`]), the document written per window
//! ([`window_document`]), and here the event-time operator: per partition, its watermark and
//! its open windows, and the only
//! place that decides what a record is — accepted into its window, late, or already counted in
//! a window a previous run published. The monitor, the property tests and the benchmark all
//! drive windows through it, so the order of those decisions is written once.
//!
//! Every partition is closed by its **own** watermark (its highest event time minus the
//! allowed out-of-orderness; once it is idle by the rule of `watermark`, the clock minus the
//! idle timeout): a window's part for a partition is complete when that partition has passed
//! the window's end. Nothing here depends on which other partitions the same instance owns, so
//! partitions move between monitor instances with their checkpoints, and the windows do not
//! depend on how partitions interleave. Whole windows are the merge of every partition's part
//! once all have passed the end (see `merge`).

pub mod merge;
pub mod watermark;
pub mod window;
pub mod window_document;

use crate::event_time::merge::merge_parts;
use crate::event_time::watermark::{PartitionWatermark, WatermarkConfig};
use crate::event_time::window::{
    ClosedPart, Observation, PartitionWindows, Placement, ResumePoint, ValueKey, WindowConfig,
    WindowPart, WindowResult,
};
use std::collections::BTreeMap;

/// What a checkpoint restores for a partition when it is assigned again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RestoredPartition {
    /// The partition's highest event time among the records before the resume offset.
    pub max_event_time_before: Option<i64>,
    /// The partition's watermark through which every window part was published and
    /// acknowledged before the restart.
    pub durable_through: Option<i64>,
    /// The first offset the previous run had not consumed: records below it are replayed.
    pub replay_end: i64,
}

/// One partition's event time and windows.
#[derive(Debug, Clone)]
struct PartitionOperator {
    watermark: PartitionWatermark,
    windows: PartitionWindows,
    replay_end: i64,
}

/// Watermarks and windows of the partitions one instance owns (see the module documentation).
#[derive(Debug, Clone)]
pub struct EventTimeOperator {
    window: WindowConfig,
    watermark: WatermarkConfig,
    partitions: BTreeMap<i32, PartitionOperator>,
    /// When windows are split by dimension value: how many values each keeps.
    split_capacity: Option<usize>,
}

/// What a tick did to one partition.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionAdvance {
    /// The partition.
    pub partition: i32,
    /// Its watermark after the tick: its windows closing at or before it are closed.
    pub closed_through: i64,
    /// Its parts of the windows it closed, in start order.
    pub closed: Vec<ClosedPart>,
}

impl EventTimeOperator {
    /// No partitions, no open windows.
    pub fn new(window: WindowConfig, watermark: WatermarkConfig) -> Self {
        EventTimeOperator {
            window,
            watermark,
            partitions: BTreeMap::new(),
            split_capacity: None,
        }
    }

    /// Also splits every window by dimension value (records offered with
    /// [`Self::on_keyed_record`]), each partition's window keeping at most `capacity` values
    /// (see [`crate::dimension::value_table`]).
    pub fn split_by_value(mut self, capacity: usize) -> Self {
        self.split_capacity = Some(capacity);
        self
    }

    fn partition_operator(
        &self,
        max_event_time_before: Option<i64>,
        now_ms: i64,
    ) -> PartitionOperator {
        let windows = PartitionWindows::new(self.window.clone());
        PartitionOperator {
            watermark: PartitionWatermark::new(self.watermark, max_event_time_before, now_ms),
            windows: match self.split_capacity {
                Some(capacity) => windows.split_by_value(capacity),
                None => windows,
            },
            replay_end: 0,
        }
    }

    /// A partition assigned at processing time `now_ms`, with what its checkpoint restored
    /// (replacing any state it had).
    pub fn assign(&mut self, partition: i32, restored: Option<RestoredPartition>, now_ms: i64) {
        let restored = restored.unwrap_or_default();
        let mut op = self.partition_operator(restored.max_event_time_before, now_ms);
        op.replay_end = restored.replay_end;
        if let Some(durable) = restored.durable_through {
            op.windows.restore_closed_through(durable);
            op.watermark.restore(durable);
        }
        self.partitions.insert(partition, op);
    }

    /// A partition taken away (to another instance): its state is dropped; its new owner
    /// rebuilds it from the partition's checkpoint.
    pub fn revoke(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }

    /// The partitions owned.
    pub fn partitions(&self) -> Vec<i32> {
        self.partitions.keys().copied().collect()
    }

    /// Whether `partition` is owned.
    pub fn owns(&self, partition: i32) -> bool {
        self.partitions.contains_key(&partition)
    }

    /// The partition's highest event time so far (what a resume point before the next record
    /// of this partition must restore).
    pub fn max_event_time(&self, partition: i32) -> Option<i64> {
        self.partitions
            .get(&partition)
            .and_then(|op| op.watermark.max_event_time())
    }

    /// Whether `partition`'s latest record carried the broker's append time (LogAppendTime)
    /// rather than a producer's stamp: decides how long the partition, idle, trails the clock
    /// (see `watermark`).
    pub fn stamped_by_broker(&mut self, partition: i32, broker_stamped: bool) {
        if let Some(op) = self.partitions.get_mut(&partition) {
            op.watermark.stamped_by_broker(broker_stamped);
        }
    }

    /// Offers a record: decides where it goes, then advances its partition's event time.
    /// A partition never assigned is assigned on first sight.
    pub fn on_record(
        &mut self,
        partition: i32,
        offset: i64,
        event_time: i64,
        latency_ms: i64,
        now_ms: i64,
    ) -> Placement {
        self.on_keyed_record(partition, offset, event_time, latency_ms, None, now_ms)
    }

    /// Offers a record whose dimension values are `key` (see [`Self::on_record`]).
    pub fn on_keyed_record(
        &mut self,
        partition: i32,
        offset: i64,
        event_time: i64,
        latency_ms: i64,
        key: Option<ValueKey<'_>>,
        now_ms: i64,
    ) -> Placement {
        if !self.partitions.contains_key(&partition) {
            let op = self.partition_operator(None, now_ms);
            self.partitions.insert(partition, op);
        }
        let op = self.partitions.get_mut(&partition).expect("just ensured");
        let placement = op.windows.place_keyed(
            Observation {
                offset,
                event_time,
                latency_ms,
                partition_max_before: op.watermark.max_event_time(),
                partition_watermark: op.watermark.of_records(),
                replayed: offset < op.replay_end,
            },
            key,
        );
        op.watermark.observe(event_time, now_ms);
        placement
    }

    /// Whether every owned partition's watermark has reached the close of the earliest open
    /// window: a tick now closes that window in all of them at once. Lets the caller publish
    /// a window as soon as its records closed it rather than at its next tick, with all its
    /// parts together (knowing how large the window is, which decides how its parts travel);
    /// a partition behind or without records leaves it to the tick, as before.
    pub fn closing_due(&self) -> bool {
        let Some(first_close) = self
            .partitions
            .values()
            .filter_map(|op| op.windows.first_close_at())
            .min()
        else {
            return false;
        };
        self.partitions.values().all(|op| {
            op.watermark
                .of_records()
                .max(op.watermark.current())
                .is_some_and(|watermark| watermark >= first_close)
        })
    }

    /// The consumer reached the end of `partition`'s log: its silence now counts towards
    /// idleness (see `watermark`).
    pub fn caught_up(&mut self, partition: i32) {
        if let Some(op) = self.partitions.get_mut(&partition) {
            op.watermark.caught_up();
        }
    }

    /// The broker cannot be asked at `now_ms`: no partition's silence counts towards idleness.
    pub fn hold_idleness(&mut self, now_ms: i64) {
        for op in self.partitions.values_mut() {
            op.watermark.hold_idleness(now_ms);
        }
    }

    /// Advances every partition's watermark at processing time `now_ms` and closes the windows
    /// each passed; returns the partitions that have a watermark, with what they closed.
    pub fn on_tick(&mut self, now_ms: i64) -> Vec<PartitionAdvance> {
        self.partitions
            .iter_mut()
            .filter_map(|(&partition, op)| {
                let watermark = op.watermark.advance(now_ms)?;
                Some(PartitionAdvance {
                    partition,
                    closed_through: watermark,
                    closed: op.windows.close(watermark),
                })
            })
            .collect()
    }

    /// Closes every open window of every partition (the end of a finite input, in tests and
    /// benchmarks) and returns their parts.
    pub fn close_all(&mut self) -> Vec<(i32, ClosedPart)> {
        self.partitions
            .iter_mut()
            .flat_map(|(&p, op)| {
                op.windows
                    .close(i64::MAX / 2)
                    .into_iter()
                    .map(move |c| (p, c))
            })
            .collect()
    }

    /// Closes every open window of every partition and returns the whole windows.
    pub fn flush(&mut self) -> Vec<WindowResult> {
        let parts = self.close_all();
        whole_windows(&self.window, parts)
    }

    /// Per partition, the earliest resume point among its open windows.
    pub fn resume_points(&self) -> BTreeMap<i32, ResumePoint> {
        self.partitions
            .iter()
            .filter_map(|(&p, op)| Some((p, op.windows.resume_point()?)))
            .collect()
    }

    /// Per partition, the watermark through which its windows are closed.
    pub fn closed_through(&self) -> BTreeMap<i32, i64> {
        self.partitions
            .iter()
            .filter_map(|(&p, op)| Some((p, op.windows.closed_through()?)))
            .collect()
    }

    /// The lowest watermark among the owned partitions (all must have one).
    pub fn watermark(&self) -> Option<i64> {
        self.partitions
            .values()
            .map(|op| op.watermark.current().or(op.watermark.of_records()))
            .collect::<Option<Vec<i64>>>()
            .and_then(|w| w.into_iter().min())
    }

    /// The start of `partition`'s earliest open window, if any.
    pub fn first_open_window(&self, partition: i32) -> Option<i64> {
        self.partitions
            .get(&partition)?
            .windows
            .open_starts()
            .next()
    }

    /// Records in the open parts of the window starting at `start`, over every partition.
    pub fn open_records_in(&self, start: i64) -> u64 {
        self.partitions
            .values()
            .map(|op| op.windows.count_in(start))
            .sum()
    }

    /// Dimension values the owned partitions' open windows keep parts for (each partition's
    /// window at most its table's capacity; 0 when not split).
    pub fn values_held(&self) -> usize {
        self.partitions
            .values()
            .map(|op| op.windows.values_held())
            .sum()
    }

    /// Number of windows open in at least one partition (the union of their open windows).
    pub fn open_windows(&self) -> usize {
        let starts: std::collections::BTreeSet<i64> = self
            .partitions
            .values()
            .flat_map(|op| op.windows.open_starts())
            .collect();
        starts.len()
    }
}

/// Merges partitions' parts of the same windows (as closed by [`EventTimeOperator::on_tick`])
/// into whole windows, in start order — what the merge stage does with parts received from
/// every owner.
pub fn whole_windows(config: &WindowConfig, closed: Vec<(i32, ClosedPart)>) -> Vec<WindowResult> {
    let mut by_window: BTreeMap<i64, BTreeMap<i32, WindowPart>> = BTreeMap::new();
    for (partition, c) in closed {
        by_window
            .entry(c.start_ms)
            .or_default()
            .insert(partition, c.part);
    }
    by_window
        .into_iter()
        .filter_map(|(start, parts)| merge_parts(config, start, parts))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distribution::digest::{exact_quantile, DigestConfig};
    use proptest::prelude::*;

    fn operator(idle_timeout_ms: i64) -> EventTimeOperator {
        EventTimeOperator::new(
            WindowConfig {
                size_ms: 60_000,
                allowed_lateness_ms: 0,
                sla_ms: 5_000,
                quantiles: vec![0.5, 0.75, 0.9, 0.99],
                digest: DigestConfig {
                    exact_threshold: 10_000,
                    compression: 100,
                },
            },
            WatermarkConfig {
                max_out_of_orderness_ms: 2_000,
                idle_timeout_ms,
                producer_hold_ms: 0,
                assume_broker_stamped: false,
            },
        )
    }

    fn closed(advances: &[PartitionAdvance], partition: i32) -> Vec<ClosedPart> {
        advances
            .iter()
            .filter(|a| a.partition == partition)
            .flat_map(|a| a.closed.clone())
            .collect()
    }

    #[test]
    fn each_partition_closes_its_part_by_its_own_watermark() {
        let mut op = operator(i64::MAX / 4);
        op.assign(0, None, 0);
        op.assign(1, None, 0);
        assert!(matches!(
            op.on_record(0, 0, 1_000, 10, 0),
            Placement::Accepted { window_start: 0 }
        ));
        op.on_record(1, 0, 2_000, 20, 0);
        op.on_record(0, 1, 70_000, 10, 0);
        let advances = op.on_tick(0);
        let part = closed(&advances, 0);
        assert_eq!(part.len(), 1, "partition 0 passed window 0");
        assert_eq!(part[0].part.digest.count(), 1);
        assert!(closed(&advances, 1).is_empty(), "partition 1 has not");
        assert_eq!(
            advances
                .iter()
                .find(|a| a.partition == 0)
                .unwrap()
                .closed_through,
            67_999,
            "70 000 − 2 000 out-of-orderness − 1"
        );
        op.on_record(1, 1, 70_000, 10, 0);
        assert_eq!(closed(&op.on_tick(0), 1)[0].part.digest.count(), 1);
    }

    #[test]
    fn closing_is_due_once_every_partition_passed_the_earliest_window() {
        let mut op = operator(i64::MAX / 4);
        op.assign(0, None, 0);
        op.assign(1, None, 0);
        assert!(!op.closing_due(), "no window is open");
        op.on_record(0, 0, 1_000, 10, 0);
        op.on_record(1, 0, 1_000, 10, 0);
        // Window 0 closes at watermark 59 999 = event time − 2 000 out-of-orderness − 1.
        op.on_record(0, 1, 62_000, 10, 0);
        assert!(!op.closing_due(), "partition 1 has not passed it");
        op.on_record(1, 1, 61_999, 10, 0);
        assert!(!op.closing_due(), "partition 1's watermark is 59 998");
        assert_eq!(
            closed(&op.on_tick(0), 0).len(),
            1,
            "a tick closes partition 0's part"
        );
        op.on_record(0, 2, 130_000, 10, 0);
        assert!(
            !op.closing_due(),
            "partition 1's part of window 0 is still open"
        );
        op.on_record(1, 2, 62_000, 10, 0);
        assert!(op.closing_due(), "both watermarks reached 59 999");
        let advances = op.on_tick(0);
        assert_eq!(closed(&advances, 1).len(), 1);
        assert!(!op.closing_due(), "the tick closed it");
    }

    #[test]
    fn after_a_restart_replayed_records_of_published_windows_are_already_counted() {
        let mut op = operator(i64::MAX / 4);
        // The partition had published window 0 before the restart.
        let restored = RestoredPartition {
            max_event_time_before: Some(40_000),
            durable_through: Some(61_000),
            replay_end: 10,
        };
        op.assign(0, Some(restored), 0);
        assert!(matches!(
            op.on_record(0, 5, 30_000, 1, 0),
            Placement::AlreadyCounted { window_start: 0 }
        ));
        // Not replayed (at or past the previous run's end): late, to be kept and counted.
        assert!(matches!(
            op.on_record(0, 10, 30_000, 1, 0),
            Placement::Late { window_start: 0 }
        ));
        assert!(matches!(
            op.on_record(0, 11, 63_000, 1, 0),
            Placement::Accepted {
                window_start: 60_000
            }
        ));
    }

    #[test]
    fn a_partition_restored_on_another_instance_keeps_its_own_progress() {
        // This instance is far ahead on partition 0 when partition 1 arrives with a
        // checkpoint through window 0 only: partition 1's window 60 000 is still its to fill.
        let mut op = operator(i64::MAX / 4);
        op.assign(0, None, 0);
        op.on_record(0, 0, 500_000, 1, 0);
        op.on_tick(0);
        op.assign(
            1,
            Some(RestoredPartition {
                max_event_time_before: Some(61_000),
                durable_through: Some(59_999),
                replay_end: 3,
            }),
            0,
        );
        assert!(matches!(
            op.on_record(1, 3, 62_000, 1, 0),
            Placement::Accepted {
                window_start: 60_000
            }
        ));
    }

    #[test]
    fn open_windows_counts_the_union_of_the_partitions_windows() {
        let mut op = operator(i64::MAX / 4);
        op.assign(0, None, 0);
        op.assign(1, None, 0);
        op.on_record(0, 0, 1_000, 10, 0);
        op.on_record(1, 0, 2_000, 10, 0);
        assert_eq!(op.open_windows(), 1, "both partitions in window 0");
        op.on_record(0, 1, 61_000, 10, 0);
        op.on_record(1, 1, 121_000, 10, 0);
        assert_eq!(
            op.open_windows(),
            3,
            "windows 0, 1 and 2, two in each partition"
        );
    }

    #[test]
    fn an_idle_partition_follows_the_clock() {
        let mut op = operator(30_000);
        op.assign(0, None, 0);
        op.on_record(0, 0, 1_000, 1, 0);
        assert!(
            closed(&op.on_tick(60_000), 0).is_empty(),
            "not known to be caught up"
        );
        op.caught_up(0);
        assert!(closed(&op.on_tick(89_998), 0).is_empty());
        let advances = op.on_tick(89_999);
        assert_eq!(
            closed(&advances, 0).len(),
            1,
            "idle: now - idle timeout passed 59 999"
        );
        assert_eq!(advances[0].closed_through, 59_999);
    }

    #[test]
    fn a_revoked_partition_is_forgotten() {
        let mut op = operator(i64::MAX / 4);
        op.assign(0, None, 0);
        op.assign(1, None, 0);
        op.on_record(1, 0, 1_000, 1, 0);
        op.revoke(1);
        assert_eq!(op.partitions(), vec![0]);
        assert!(op.resume_points().is_empty());
        assert!(op.flush().is_empty());
    }

    /// Feeds per-partition sequences in a given interleaving; returns every closed window.
    fn run(partitions: &[Vec<(i64, i64)>], interleaving: &[usize]) -> Vec<WindowResult> {
        let mut op = operator(i64::MAX / 4);
        for p in 0..partitions.len() {
            op.assign(p as i32, None, 0);
        }
        let mut cursors = vec![0usize; partitions.len()];
        let mut out = Vec::new();
        let mut order: Vec<usize> = interleaving.iter().map(|i| i % partitions.len()).collect();
        for (p, records) in partitions.iter().enumerate() {
            order.extend(std::iter::repeat_n(p, records.len()));
        }
        for p in order {
            let Some(&(t, latency)) = partitions[p].get(cursors[p]) else {
                continue;
            };
            let placement = op.on_record(p as i32, cursors[p] as i64, t, latency, 0);
            assert!(!matches!(placement, Placement::AlreadyCounted { .. }));
            cursors[p] += 1;
            out.extend(
                op.on_tick(0)
                    .into_iter()
                    .flat_map(|a| a.closed.into_iter().map(move |c| (a.partition, c))),
            );
        }
        out.extend(op.close_all());
        whole_windows(&op.window, out)
    }

    proptest! {
        /// The same per-partition sequences give the same windows whatever the interleaving.
        #[test]
        fn results_do_not_depend_on_interleaving(
            partitions in proptest::collection::vec(
                proptest::collection::vec((0i64..400_000, 0i64..20_000), 0..60), 1..4),
            a in proptest::collection::vec(0usize..8, 0..200),
            b in proptest::collection::vec(0usize..8, 0..200),
        ) {
            prop_assert_eq!(run(&partitions, &a), run(&partitions, &b));
        }

        /// Every accepted record is counted once and window percentiles equal exact ones.
        #[test]
        fn counts_and_percentiles_are_exact(
            records in proptest::collection::vec((0i64..300_000, -100i64..20_000), 1..200),
        ) {
            // One partition, in event-time order: nothing is late.
            let mut sorted = records.clone();
            sorted.sort();
            let results = run(&[sorted.clone()], &[]);
            let total: u64 = results.iter().map(|r| r.stats.count).sum();
            prop_assert_eq!(total as usize, sorted.len());
            for r in results {
                let mut lat: Vec<f64> = sorted.iter()
                    .filter(|(t, _)| *t >= r.start_ms && *t < r.end_ms)
                    .map(|&(_, l)| l as f64).collect();
                lat.sort_unstable_by(f64::total_cmp);
                for &(q, v) in &r.stats.quantiles {
                    prop_assert_eq!(v, exact_quantile(&lat, q));
                }
                prop_assert_eq!(r.over_sla as usize, lat.iter().filter(|&&l| l > 5_000.0).count());
            }
        }
    }
}
