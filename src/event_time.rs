//! The event-time operator: per-partition watermarks and the open windows of one job, and the
//! only place that decides what a record is — accepted into its window, late, or already
//! counted in a window a previous run wrote. The monitor, the property tests and the
//! benchmark all drive windows through it, so the order of those decisions is written once.

use crate::watermark::{WatermarkConfig, Watermarks};
use crate::window::{Observation, Placement, ResumePoint, WindowConfig, WindowResult, Windows};
use std::collections::BTreeMap;

/// What a checkpoint restores for a partition when it is assigned again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RestoredPartition {
    /// The partition's highest event time among the records before the resume offset.
    pub max_event_time_before: Option<i64>,
    /// Watermark through which every window was written and acknowledged before the restart.
    pub durable_through: Option<i64>,
    /// The first offset the previous run had not consumed: records below it are replayed.
    pub replay_end: i64,
}

/// Watermarks and windows of one job (see the module documentation).
#[derive(Debug, Clone)]
pub struct EventTimeOperator {
    watermarks: Watermarks,
    windows: Windows,
    replay_ends: BTreeMap<i32, i64>,
}

/// Windows closed by a watermark advance.
#[derive(Debug, Clone, PartialEq)]
pub struct Advance {
    /// The job watermark after the advance (ms).
    pub watermark: i64,
    /// The windows it closed, in start order.
    pub closed: Vec<WindowResult>,
}

impl EventTimeOperator {
    /// No partitions, no open windows.
    pub fn new(window: WindowConfig, watermark: WatermarkConfig) -> Self {
        EventTimeOperator {
            watermarks: Watermarks::new(watermark),
            windows: Windows::new(window),
            replay_ends: BTreeMap::new(),
        }
    }

    /// A partition assigned at processing time `now_ms`, with what its checkpoint restored.
    pub fn assign(&mut self, partition: i32, restored: Option<RestoredPartition>, now_ms: i64) {
        let restored = restored.unwrap_or_default();
        self.watermarks
            .assign(partition, restored.max_event_time_before, now_ms);
        if restored.replay_end > 0 {
            self.replay_ends.insert(partition, restored.replay_end);
        }
        if let Some(durable) = restored.durable_through {
            self.windows.restore_closed_through(durable);
            self.watermarks.restore(durable);
        }
    }

    /// The partition's highest event time so far (what a resume point before the next record
    /// of this partition must restore).
    pub fn max_event_time(&self, partition: i32) -> Option<i64> {
        self.watermarks.max_event_time(partition)
    }

    /// Offers a record: decides where it goes, then advances its partition's event time.
    pub fn on_record(
        &mut self,
        partition: i32,
        offset: i64,
        event_time: i64,
        latency_ms: i64,
        now_ms: i64,
    ) -> Placement {
        let placement = self.windows.place(Observation {
            partition,
            offset,
            event_time,
            latency_ms,
            partition_max_before: self.watermarks.max_event_time(partition),
            partition_watermark: self.watermarks.partition_watermark(partition),
            replayed: self
                .replay_ends
                .get(&partition)
                .is_some_and(|&end| offset < end),
        });
        self.watermarks.observe(partition, event_time, now_ms);
        placement
    }

    /// The consumer reached the end of `partition`'s log: its silence now counts towards
    /// idleness (see `watermark`).
    pub fn caught_up(&mut self, partition: i32) {
        self.watermarks.caught_up(partition);
    }

    /// The broker cannot be asked at `now_ms`: no partition's silence counts towards idleness.
    pub fn hold_idleness(&mut self, now_ms: i64) {
        self.watermarks.hold_idleness(now_ms);
    }

    /// Advances the job watermark at processing time `now_ms` (idle partitions stop holding
    /// it back) and closes the windows it passed; `None` when it did not move.
    pub fn on_tick(&mut self, now_ms: i64) -> Option<Advance> {
        let watermark = self.watermarks.advance(now_ms)?;
        Some(Advance {
            watermark,
            closed: self.windows.close(watermark),
        })
    }

    /// Closes every open window (the end of a finite input, in tests and benchmarks).
    pub fn flush(&mut self) -> Vec<WindowResult> {
        self.windows.close(i64::MAX / 2)
    }

    /// Per partition, the earliest resume point among open windows.
    pub fn resume_points(&self) -> BTreeMap<i32, ResumePoint> {
        self.windows.resume_points()
    }

    /// The watermark through which windows are closed.
    pub fn closed_through(&self) -> Option<i64> {
        self.windows.closed_through()
    }

    /// The job watermark.
    pub fn watermark(&self) -> Option<i64> {
        self.watermarks.current()
    }

    /// Number of open windows.
    pub fn open_windows(&self) -> usize {
        self.windows.open_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{exact_quantile, DigestConfig};
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
            },
        )
    }

    #[test]
    fn a_window_closes_when_every_partition_passed_its_end() {
        let mut op = operator(i64::MAX / 4);
        op.assign(0, None, 0);
        op.assign(1, None, 0);
        assert!(matches!(
            op.on_record(0, 0, 1_000, 10, 0),
            Placement::Accepted { window_start: 0 }
        ));
        op.on_record(0, 1, 70_000, 10, 0);
        assert!(op.on_tick(0).is_none_or(|a| a.closed.is_empty()));
        op.on_record(1, 0, 70_000, 10, 0);
        let advance = op.on_tick(0).unwrap();
        assert_eq!(advance.watermark, 68_000);
        assert_eq!(advance.closed.len(), 1);
        assert_eq!(advance.closed[0].stats.count, 1);
    }

    #[test]
    fn after_a_restart_replayed_records_of_written_windows_are_already_counted() {
        let mut op = operator(i64::MAX / 4);
        // Another partition had taken the job past window 0, which was written.
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
    fn a_replayed_record_of_a_window_this_run_closed_is_late_not_skipped() {
        // Restored: window 0 durable; partition 1 replays from offset 0 up to offset 10.
        let mut op = operator(30_000);
        op.assign(0, None, 0);
        op.assign(
            1,
            Some(RestoredPartition {
                max_event_time_before: Some(60_500),
                durable_through: Some(59_999),
                replay_end: 10,
            }),
            0,
        );
        op.on_record(0, 0, 125_000, 1, 39_000);
        op.caught_up(1);
        // Partition 1 is caught up and silent past the idle timeout: the job closes window
        // 60 000 without it.
        let advance = op.on_tick(40_000).unwrap();
        assert!(advance.watermark >= 119_999);
        // Its replay then brings a record of that window: this run's window never counted it.
        assert!(matches!(
            op.on_record(1, 3, 61_000, 1, 40_000),
            Placement::Late {
                window_start: 60_000
            }
        ));
        // A record of window 0, written before the restart, is already counted.
        assert!(matches!(
            op.on_record(1, 4, 59_000, 1, 40_000),
            Placement::AlreadyCounted { window_start: 0 }
        ));
    }

    #[test]
    fn an_idle_partition_stops_holding_the_watermark_back() {
        let mut op = operator(30_000);
        op.assign(0, None, 0);
        op.assign(1, None, 0);
        op.on_record(0, 0, 1_000, 1, 0);
        assert!(op.on_tick(1_000).is_none_or(|a| a.closed.is_empty()));
        op.on_record(0, 1, 70_000, 1, 30_000);
        assert!(
            op.on_tick(31_000).is_none_or(|a| a.closed.is_empty()),
            "silent, but not known to be caught up: records may wait"
        );
        op.caught_up(1);
        let advance = op.on_tick(31_000).unwrap();
        assert_eq!(advance.closed.len(), 1, "partition 1 went idle");
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
            if let Some(advance) = op.on_tick(0) {
                out.extend(advance.closed);
            }
        }
        out.extend(op.flush());
        out
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
