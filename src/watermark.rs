//! Event-time watermarks over the partitions of a topic.
//!
//! Each partition's watermark is the highest event time it has delivered minus the allowed
//! out-of-orderness, minus 1 ms — Flink's bounded out-of-orderness: a watermark W says no
//! record at or before W is still to come, so a record exactly `max_out_of_orderness` behind
//! the highest one (or at the same time as it) is on time. The job's watermark is the minimum over the partitions that are active;
//! an idle partition stops holding it back and rejoins with its next record. When every
//! partition is idle, the watermark follows the clock (`now - idle_timeout`), so the last
//! windows close even if no newer record ever arrives. The job's watermark never goes
//! backwards.
//!
//! Idleness needs evidence, not silence alone: a partition is idle when it is *caught up*
//! (the consumer reached the end of its log — Kafka's partition EOF — and nothing arrived
//! since) and has delivered nothing for `idle_timeout` of processing time. A partition with
//! records waiting (a slow consumer, a fetch that failed) is never idle, and while the broker
//! is unreachable nobody knows what waits, so the monitor holds every partition's silence
//! clock (`hold_idleness`): an outage closes no window early.
//!
//! Times are Unix milliseconds; processing time is passed in, never read here.

use std::collections::BTreeMap;

/// Watermark parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatermarkConfig {
    /// How far behind the highest event time seen a partition's watermark trails (ms).
    pub max_out_of_orderness_ms: i64,
    /// Processing time without records after which a partition is idle (ms).
    pub idle_timeout_ms: i64,
}

#[derive(Debug, Clone)]
struct PartitionClock {
    max_event_time: Option<i64>,
    /// Processing time of the last record (or of the assignment, or of the last moment the
    /// broker could not be asked): silence is measured from here.
    last_activity_ms: i64,
    /// The consumer reached the end of the partition's log after its last record.
    caught_up: bool,
}

/// Per-partition event-time progress and the job-wide watermark derived from it.
#[derive(Debug, Clone)]
pub struct Watermarks {
    config: WatermarkConfig,
    partitions: BTreeMap<i32, PartitionClock>,
    current: Option<i64>,
}

impl Watermarks {
    /// No partitions yet and no watermark.
    pub fn new(config: WatermarkConfig) -> Self {
        Watermarks {
            config,
            partitions: BTreeMap::new(),
            current: None,
        }
    }

    /// Starts tracking a partition at processing time `now_ms`, optionally restoring the
    /// highest event time it had delivered before the position it resumes from. A newly
    /// assigned partition holds the watermark back until it delivers or goes idle.
    pub fn assign(&mut self, partition: i32, restored_max_event_time: Option<i64>, now_ms: i64) {
        self.partitions.insert(
            partition,
            PartitionClock {
                max_event_time: restored_max_event_time,
                last_activity_ms: now_ms,
                caught_up: false,
            },
        );
    }

    /// Restores the job watermark reached before a restart (it only moves forward).
    pub fn restore(&mut self, watermark: i64) {
        self.current = Some(self.current.map_or(watermark, |c| c.max(watermark)));
    }

    /// The partition's own watermark, before any record not yet observed.
    pub fn partition_watermark(&self, partition: i32) -> Option<i64> {
        self.partitions
            .get(&partition)
            .and_then(|p| p.max_event_time)
            .map(|t| {
                t.saturating_sub(self.config.max_out_of_orderness_ms)
                    .saturating_sub(1)
            })
    }

    /// The highest event time the partition has delivered.
    pub fn max_event_time(&self, partition: i32) -> Option<i64> {
        self.partitions
            .get(&partition)
            .and_then(|p| p.max_event_time)
    }

    /// Records that `partition` delivered a record with `event_time` at processing time
    /// `now_ms`. Unassigned partitions are assigned on first sight.
    pub fn observe(&mut self, partition: i32, event_time: i64, now_ms: i64) {
        let clock = self.partitions.entry(partition).or_insert(PartitionClock {
            max_event_time: None,
            last_activity_ms: now_ms,
            caught_up: false,
        });
        clock.max_event_time = Some(
            clock
                .max_event_time
                .map_or(event_time, |m| m.max(event_time)),
        );
        clock.last_activity_ms = now_ms;
        clock.caught_up = false;
    }

    /// Records that the consumer reached the end of `partition`'s log (no record waits):
    /// from now on its silence counts towards idleness. Unknown partitions are ignored.
    pub fn caught_up(&mut self, partition: i32) {
        if let Some(clock) = self.partitions.get_mut(&partition) {
            clock.caught_up = true;
        }
    }

    /// Silence proves nothing at processing time `now_ms` (the broker is unreachable): every
    /// partition's silence clock restarts, so none becomes idle until the broker answers again
    /// and the idle timeout has passed since.
    pub fn hold_idleness(&mut self, now_ms: i64) {
        for clock in self.partitions.values_mut() {
            clock.last_activity_ms = clock.last_activity_ms.max(now_ms);
        }
    }

    /// Whether the partition is caught up and has been silent for at least the idle timeout.
    pub fn is_idle(&self, partition: i32, now_ms: i64) -> bool {
        self.partitions.get(&partition).is_some_and(|p| {
            p.caught_up && now_ms - p.last_activity_ms >= self.config.idle_timeout_ms
        })
    }

    /// Recomputes the job watermark at processing time `now_ms` and returns it.
    pub fn advance(&mut self, now_ms: i64) -> Option<i64> {
        let active: Vec<i32> = self
            .partitions
            .keys()
            .copied()
            .filter(|&p| !self.is_idle(p, now_ms))
            .collect();
        let candidate = if self.partitions.is_empty() {
            None
        } else if active.is_empty() {
            Some(now_ms - self.config.idle_timeout_ms)
        } else {
            active
                .iter()
                .map(|&p| self.partition_watermark(p))
                .collect::<Option<Vec<i64>>>()
                .and_then(|w| w.into_iter().min())
        };
        if let Some(c) = candidate {
            self.current = Some(self.current.map_or(c, |cur| cur.max(c)));
        }
        self.current
    }

    /// The job watermark as last computed.
    pub fn current(&self) -> Option<i64> {
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn config() -> WatermarkConfig {
        WatermarkConfig {
            max_out_of_orderness_ms: 1_000,
            idle_timeout_ms: 10_000,
        }
    }

    #[test]
    fn minimum_over_partitions_minus_out_of_orderness() {
        // Each partition: highest event time − 1 000 ms − 1 ms.
        let mut w = Watermarks::new(config());
        w.assign(0, None, 0);
        w.assign(1, None, 0);
        w.observe(0, 50_000, 1);
        assert_eq!(w.advance(1), None, "partition 1 has not delivered yet");
        w.observe(1, 30_000, 2);
        assert_eq!(w.advance(2), Some(28_999));
        w.observe(1, 60_000, 3);
        assert_eq!(w.advance(3), Some(48_999));
    }

    #[test]
    fn idle_partition_stops_holding_back_and_rejoins() {
        let mut w = Watermarks::new(config());
        w.observe(0, 100_000, 0);
        w.observe(1, 10_000, 0);
        assert_eq!(w.advance(0), Some(8_999));
        // Partition 0 keeps delivering; partition 1 reaches its end and falls silent.
        w.caught_up(1);
        w.observe(0, 120_000, 10_000);
        assert_eq!(w.advance(10_000), Some(118_999));
        // Partition 1 rejoins with an old record: the watermark does not go back.
        w.observe(1, 20_000, 10_500);
        assert_eq!(w.advance(10_500), Some(118_999));
        assert_eq!(w.partition_watermark(1), Some(18_999));
    }

    #[test]
    fn all_idle_follows_the_clock() {
        let mut w = Watermarks::new(config());
        w.observe(0, 1_000_000, 1_000_000);
        w.caught_up(0);
        assert_eq!(w.advance(1_000_000), Some(998_999));
        assert_eq!(w.advance(1_009_999), Some(998_999));
        assert_eq!(w.advance(1_030_000), Some(1_020_000));
    }

    #[test]
    fn assigned_silent_partition_holds_back_until_idle() {
        let mut w = Watermarks::new(config());
        w.assign(0, None, 0);
        w.assign(1, None, 0);
        w.observe(0, 500_000, 100);
        w.caught_up(1);
        assert_eq!(w.advance(100), None);
        w.observe(0, 500_001, 10_000);
        assert_eq!(w.advance(10_000), Some(499_000));
    }

    #[test]
    fn a_silent_partition_with_records_waiting_is_never_idle() {
        let mut w = Watermarks::new(config());
        w.observe(0, 10_000, 0);
        w.observe(1, 10_000, 0);
        // Partition 1 is silent for long but never reached its end (its records wait: a
        // slow fetch, a partition whose owner died): it keeps holding the watermark back.
        w.caught_up(0);
        w.observe(0, 500_000, 100_000);
        assert_eq!(w.advance(100_000), Some(8_999));
        assert!(!w.is_idle(1, 100_000));
        // Once it reaches its end and stays silent for the idle timeout, it is idle.
        w.caught_up(1);
        assert!(w.is_idle(1, 100_000));
        assert_eq!(w.advance(100_000), Some(498_999));
    }

    #[test]
    fn a_record_after_the_end_makes_a_partition_active_again() {
        let mut w = Watermarks::new(config());
        w.observe(0, 10_000, 0);
        w.caught_up(0);
        assert!(w.is_idle(0, 10_000));
        w.observe(0, 11_000, 10_000);
        assert!(!w.is_idle(0, 30_000), "not caught up since its last record");
    }

    #[test]
    fn while_the_broker_is_unreachable_silence_makes_nothing_idle() {
        let mut w = Watermarks::new(config());
        w.observe(0, 100_000, 0);
        w.observe(1, 10_000, 0);
        w.caught_up(0);
        w.caught_up(1);
        assert_eq!(w.advance(5_000), Some(8_999));
        // The broker goes away at 5 s for 30 s: the monitor holds idleness every tick.
        for now in (5_000..35_000).step_by(1_000) {
            w.hold_idleness(now);
            assert_eq!(w.advance(now), Some(8_999), "at {now}");
        }
        // Last held at 34 s (back at 35 s): idle only once the timeout has passed since.
        assert_eq!(w.advance(43_999), Some(8_999));
        assert_eq!(w.advance(44_000), Some(34_000));
    }

    #[test]
    fn restored_state_is_used() {
        let mut w = Watermarks::new(config());
        w.assign(0, Some(70_000), 0);
        w.restore(65_000);
        assert_eq!(w.partition_watermark(0), Some(68_999));
        assert_eq!(w.advance(0), Some(68_999));
        w.restore(10);
        assert_eq!(w.current(), Some(68_999));
    }

    proptest! {
        /// The watermark never decreases and, while no partition is idle, never passes any
        /// partition's own watermark.
        #[test]
        fn monotonic_and_bounded_by_active_partitions(
            events in proptest::collection::vec((0i32..3, 0i64..1_000_000, 0i64..3_000), 1..300)
        ) {
            let mut w = Watermarks::new(config());
            let mut now = 0i64;
            let mut last: Option<i64> = None;
            for (p, t, dt) in events {
                now += dt;
                w.observe(p, t, now);
                w.caught_up(p);
                let previous = last;
                let current = w.advance(now);
                prop_assert!(current >= previous);
                last = current;
                let all_active = (0..3).all(|q| !w.is_idle(q, now));
                if let (Some(c), true) = (current, all_active) {
                    let min_partition = (0..3).filter_map(|q| w.partition_watermark(q)).min().unwrap();
                    prop_assert!(c <= min_partition.max(previous.unwrap_or(i64::MIN)));
                }
            }
        }
    }
}
