//! Event-time watermark of one partition.
//!
//! A partition's own watermark is the highest event time it has delivered minus the allowed
//! out-of-orderness, minus 1 ms — Flink's bounded out-of-orderness: a watermark W says no record
//! at or before W is still to come, so a record exactly `max_out_of_orderness` behind the
//! highest one (or at the same time as it) is on time. While the partition is idle its
//! watermark follows the clock (`now - idle_timeout`), so its last windows close even if no
//! newer record ever arrives; it never goes backwards. Windows span every partition: the
//! merge takes the minimum over partitions (see `merge`), each partition closes its own part.
//!
//! Idleness needs evidence, not silence alone: a partition is idle when it is *caught up*
//! (the consumer reached the end of its log — Kafka's partition EOF — and nothing arrived
//! since) and has delivered nothing for `idle_timeout` of processing time. A partition with
//! records waiting (a slow consumer, a fetch that failed) is never idle, and while the broker
//! is unreachable nobody knows what waits, so the monitor holds the silence clock
//! (`hold_idleness`): an outage closes no window early.
//!
//! Idleness knows nothing of records still inside a producer: when event times are stamped by
//! the producer (Kafka's default CreateTime, or a stamp in the record), a record can reach the
//! broker long after its stamp — as late as the producer's `delivery.timeout.ms` (2 minutes
//! by default) — and an idle watermark at `now - idle_timeout` would have passed it: the
//! slowest records of a slow producer, exactly the SLA misses, would be dead-lettered as late.
//! So an idle partition whose event times are the producer's follows the clock at
//! `now - max(idle_timeout, producer_hold)`; one whose event times are the broker's append time
//! (LogAppendTime) at `now - idle_timeout`, since nothing lands with a stamp older than that.
//!
//! Times are Unix milliseconds; processing time is passed in, never read here.

/// Watermark parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatermarkConfig {
    /// How far behind the highest event time seen a partition's watermark trails (ms).
    pub max_out_of_orderness_ms: i64,
    /// Processing time without records after which a partition is idle (ms).
    pub idle_timeout_ms: i64,
    /// How long a producer may hold a record between stamping and delivering it (ms): an idle
    /// partition whose event times are the producer's trails the clock by at least this.
    pub producer_hold_ms: i64,
    /// Whether a partition's event times are taken to be the broker's append time before its
    /// first record says (the input topic is configured with LogAppendTime).
    pub assume_broker_stamped: bool,
}

/// One partition's event-time progress and idleness.
#[derive(Debug, Clone)]
pub struct PartitionWatermark {
    config: WatermarkConfig,
    max_event_time: Option<i64>,
    /// Processing time of the last record (or of the assignment, or of the last moment the
    /// broker could not be asked): silence is measured from here.
    last_activity_ms: i64,
    /// The consumer reached the end of the partition's log after its last record.
    caught_up: bool,
    /// The watermark as last advanced (never decreases).
    current: Option<i64>,
    /// Whether its event times are the broker's append time (its last record's kind).
    broker_stamped: bool,
}

impl PartitionWatermark {
    /// A partition assigned at processing time `now_ms`, optionally restoring the highest
    /// event time it had delivered before the position it resumes from. It has no watermark
    /// until it delivers a record or goes idle.
    pub fn new(config: WatermarkConfig, restored_max_event_time: Option<i64>, now_ms: i64) -> Self {
        PartitionWatermark {
            config,
            max_event_time: restored_max_event_time,
            last_activity_ms: now_ms,
            caught_up: false,
            current: None,
            broker_stamped: config.assume_broker_stamped,
        }
    }

    /// Whether the partition's event times are the broker's append time (LogAppendTime) or
    /// the producer's (CreateTime, a stamp in the record), as its latest record says.
    pub fn stamped_by_broker(&mut self, broker_stamped: bool) {
        self.broker_stamped = broker_stamped;
    }

    /// How far an idle partition's watermark trails the clock (see the module documentation).
    fn idle_lag_ms(&self) -> i64 {
        if self.broker_stamped {
            self.config.idle_timeout_ms
        } else {
            self.config
                .idle_timeout_ms
                .max(self.config.producer_hold_ms)
        }
    }

    /// Restores the watermark reached before a restart (it only moves forward).
    pub fn restore(&mut self, watermark: i64) {
        self.current = Some(self.current.map_or(watermark, |c| c.max(watermark)));
    }

    /// The watermark its records alone give (bounded out-of-orderness), before any record not
    /// yet observed; `None` before its first record.
    pub fn of_records(&self) -> Option<i64> {
        self.max_event_time.map(|t| {
            t.saturating_sub(self.config.max_out_of_orderness_ms)
                .saturating_sub(1)
        })
    }

    /// The highest event time the partition has delivered.
    pub fn max_event_time(&self) -> Option<i64> {
        self.max_event_time
    }

    /// The partition delivered a record with `event_time` at processing time `now_ms`.
    pub fn observe(&mut self, event_time: i64, now_ms: i64) {
        self.max_event_time = Some(
            self.max_event_time
                .map_or(event_time, |m| m.max(event_time)),
        );
        self.last_activity_ms = now_ms;
        self.caught_up = false;
    }

    /// The consumer reached the end of the partition's log (no record waits): from now on its
    /// silence counts towards idleness.
    pub fn caught_up(&mut self) {
        self.caught_up = true;
    }

    /// Silence proves nothing at processing time `now_ms` (the broker is unreachable): the
    /// silence clock restarts, so the partition does not become idle until the broker answers
    /// again and the idle timeout has passed since.
    pub fn hold_idleness(&mut self, now_ms: i64) {
        self.last_activity_ms = self.last_activity_ms.max(now_ms);
    }

    /// Whether the partition is caught up and has been silent for at least the idle timeout.
    pub fn is_idle(&self, now_ms: i64) -> bool {
        self.caught_up
            && now_ms.saturating_sub(self.last_activity_ms) >= self.config.idle_timeout_ms
    }

    /// Recomputes the watermark at processing time `now_ms` and returns it: the clock minus
    /// the idle timeout (or the producer hold, see the module documentation) while idle, else
    /// what its records give; never lower than before.
    pub fn advance(&mut self, now_ms: i64) -> Option<i64> {
        let candidate = if self.is_idle(now_ms) {
            // Never behind what its records give (a hold longer than the records' lag).
            let by_clock = now_ms.saturating_sub(self.idle_lag_ms());
            Some(self.of_records().map_or(by_clock, |r| r.max(by_clock)))
        } else {
            self.of_records()
        };
        if let Some(c) = candidate {
            self.current = Some(self.current.map_or(c, |cur| cur.max(c)));
        }
        self.current
    }

    /// The watermark as last advanced.
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
            producer_hold_ms: 0,
            assume_broker_stamped: false,
        }
    }

    /// A record a producer held for 20 s lands on an idle partition: with the hold bound (30 s)
    /// its window is still open; with the idle timeout alone (10 s) it would be late.
    #[test]
    fn an_idle_partition_of_producer_stamps_waits_for_the_producer_hold() {
        let held = WatermarkConfig {
            producer_hold_ms: 30_000,
            ..config()
        };
        let mut w = PartitionWatermark::new(held, None, 0);
        w.observe(100_000, 100_000);
        w.caught_up();
        // Idle from 110 000; the producer stamped a record at 105 000 that lands at 125 000.
        assert_eq!(w.advance(125_000), Some(98_999), "not past 95 000 yet");
        assert!(w.current().unwrap() < 105_000);
        let mut alone = PartitionWatermark::new(config(), None, 0);
        alone.observe(100_000, 100_000);
        alone.caught_up();
        assert_eq!(
            alone.advance(125_000),
            Some(115_000),
            "would have passed it"
        );
        // Stamped by the broker, the hold does not apply.
        w.stamped_by_broker(true);
        assert_eq!(w.advance(125_000), Some(115_000));
        // Before any record, the topic's configuration decides.
        let mut empty = PartitionWatermark::new(
            WatermarkConfig {
                assume_broker_stamped: true,
                ..held
            },
            None,
            0,
        );
        empty.caught_up();
        assert_eq!(empty.advance(40_000), Some(30_000));
        let mut empty = PartitionWatermark::new(held, None, 0);
        empty.caught_up();
        assert_eq!(empty.advance(40_000), Some(10_000));
    }

    fn fresh() -> PartitionWatermark {
        PartitionWatermark::new(config(), None, 0)
    }

    #[test]
    fn highest_event_time_minus_out_of_orderness_minus_one() {
        let mut w = fresh();
        assert_eq!(w.advance(1), None, "nothing delivered yet");
        w.observe(30_000, 2);
        assert_eq!(w.advance(2), Some(28_999));
        w.observe(60_000, 3);
        w.observe(50_000, 4);
        assert_eq!(
            w.advance(4),
            Some(58_999),
            "an older record does not move it"
        );
    }

    #[test]
    fn idle_follows_the_clock_and_a_later_record_does_not_move_it_back() {
        let mut w = fresh();
        w.observe(1_000_000, 1_000_000);
        w.caught_up();
        assert_eq!(w.advance(1_000_000), Some(998_999));
        assert_eq!(w.advance(1_009_999), Some(998_999));
        assert_eq!(w.advance(1_030_000), Some(1_020_000));
        // It delivers again, an old record: active again, the watermark does not go back.
        w.observe(20_000, 1_030_500);
        assert_eq!(w.advance(1_030_500), Some(1_020_000));
        assert_eq!(w.of_records(), Some(998_999));
    }

    #[test]
    fn a_silent_assigned_partition_has_no_watermark_until_idle() {
        let mut w = fresh();
        w.caught_up();
        assert_eq!(w.advance(9_999), None);
        assert_eq!(w.advance(10_000), Some(0));
    }

    #[test]
    fn a_silent_partition_with_records_waiting_is_never_idle() {
        let mut w = fresh();
        w.observe(10_000, 0);
        // Silent for long but never at its end (its records wait: a slow fetch).
        assert_eq!(w.advance(100_000), Some(8_999));
        assert!(!w.is_idle(100_000));
        // Once it reaches its end and stays silent for the idle timeout, it is idle.
        w.caught_up();
        assert!(w.is_idle(100_000));
        assert_eq!(w.advance(100_000), Some(90_000));
    }

    #[test]
    fn a_record_after_the_end_makes_a_partition_active_again() {
        let mut w = fresh();
        w.observe(10_000, 0);
        w.caught_up();
        assert!(w.is_idle(10_000));
        w.observe(11_000, 10_000);
        assert!(!w.is_idle(30_000), "not caught up since its last record");
    }

    #[test]
    fn while_the_broker_is_unreachable_silence_makes_nothing_idle() {
        let mut w = fresh();
        w.observe(10_000, 0);
        w.caught_up();
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
        let mut w = PartitionWatermark::new(config(), Some(70_000), 0);
        w.restore(65_000);
        assert_eq!(w.of_records(), Some(68_999));
        assert_eq!(w.advance(0), Some(68_999));
        w.restore(10);
        assert_eq!(w.current(), Some(68_999));
    }

    proptest! {
        /// The watermark never decreases and, while the partition is not idle, never passes
        /// what its records give (or where it already was).
        #[test]
        fn monotonic_and_bounded_by_the_records(
            events in proptest::collection::vec((0i64..1_000_000, 0i64..3_000, any::<bool>()), 1..300)
        ) {
            let mut w = fresh();
            let mut now = 0i64;
            let mut last: Option<i64> = None;
            for (t, dt, at_end) in events {
                now += dt;
                w.observe(t, now);
                if at_end {
                    w.caught_up();
                }
                let previous = last;
                let current = w.advance(now);
                prop_assert!(current >= previous);
                last = current;
                if let (Some(c), false) = (current, w.is_idle(now)) {
                    prop_assert!(c <= w.of_records().unwrap().max(previous.unwrap_or(i64::MIN)));
                }
            }
        }
    }
}
