//! Artificial processing delay: how long each record waits between its processing stamp and
//! its produce, and the per-partition schedule that keeps output in input order.

use rand::Rng;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// The longest delay, and the longest jitter, the synchronizer accepts (from flags or the
/// control endpoint): an hour shows any SLA miss, and bounds how long a record may be held.
pub const MAX_DELAY: Duration = Duration::from_secs(3600);

/// Reads a delay or jitter like `10s` or `250ms`, refusing anything above [`MAX_DELAY`].
pub fn parse_delay(raw: &str) -> Result<Duration, String> {
    let delay = humantime::parse_duration(raw)
        .map_err(|e| format!("{raw:?} is not a duration like 10s or 250ms: {e}"))?;
    if delay > MAX_DELAY {
        return Err(format!(
            "{raw:?} is longer than the maximum of {}",
            humantime::format_duration(MAX_DELAY)
        ));
    }
    Ok(delay)
}

/// How delayed records are processed.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum DelayMode {
    /// Many records wait at once: throughput stays, every record is late by the delay.
    #[default]
    Pipelined,
    /// One record at a time, like a `sleep()` in the processing function: throughput
    /// collapses to about one record per delay and consumer lag grows (the "slow job" case).
    Blocking,
}

/// The artificial delay added to each record's processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct DelayPolicy {
    /// Fixed part of the delay.
    #[serde(with = "humantime_serde_ms")]
    pub delay: Duration,
    /// Upper bound of a uniformly random extra delay added to each record.
    #[serde(with = "humantime_serde_ms")]
    pub jitter: Duration,
    /// Whether records are delayed concurrently or one at a time.
    pub mode: DelayMode,
    /// Only records of this input partition are delayed (a held partition); `None`: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
}

impl DelayPolicy {
    /// The delay for one record of `partition`: `delay` plus a uniform sample in
    /// `[0, jitter]`, or none when the policy holds another partition only.
    pub fn sample(&self, partition: i32, rng: &mut impl Rng) -> Duration {
        if self.partition.is_some_and(|held| held != partition) {
            return Duration::ZERO;
        }
        if self.jitter.is_zero() {
            return self.delay;
        }
        let extra = rng.random_range(0..=self.jitter.as_micros() as u64);
        self.delay.saturating_add(Duration::from_micros(extra))
    }

    /// How many records may wait in the schedule at once under this policy.
    pub fn max_waiting(&self, pipelined_limit: usize) -> usize {
        match self.mode {
            DelayMode::Pipelined => pipelined_limit,
            DelayMode::Blocking => 1,
        }
    }
}

impl std::fmt::Display for DelayPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (jitter {}, {:?})",
            humantime::format_duration(self.delay),
            humantime::format_duration(self.jitter),
            self.mode
        )?;
        match self.partition {
            Some(partition) => write!(f, " on partition {partition} only"),
            None => Ok(()),
        }
    }
}

/// Serialises a [`Duration`] as whole milliseconds, the unit the control API speaks.
mod humantime_serde_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Assigns each record the instant it may be produced, never earlier than a previous record
/// of the same partition, so that jitter can never reorder a partition's output.
#[derive(Debug, Default)]
pub struct PartitionOrderedSchedule {
    last_due: HashMap<i32, Instant>,
}

impl PartitionOrderedSchedule {
    /// The due instant of a record of `partition` whose processing started at `start` and
    /// that must wait `delay`.
    pub fn due_at(&mut self, partition: i32, start: Instant, delay: Duration) -> Instant {
        // Delay and jitter are each at most MAX_DELAY (checked where they are set); the bound
        // keeps the instant representable whatever is passed.
        let wanted = start + delay.min(2 * MAX_DELAY);
        let due = match self.last_due.get(&partition) {
            Some(&last) if last > wanted => last,
            _ => wanted,
        };
        self.last_due.insert(partition, due);
        due
    }

    /// Forgets every partition's last due instant (before the waiting records are scheduled
    /// again under a new policy).
    pub fn reset(&mut self) {
        self.last_due.clear();
    }

    /// Forgets a partition (after it was revoked from this consumer).
    pub fn forget(&mut self, partition: i32) {
        self.last_due.remove(&partition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    #[test]
    fn sample_without_jitter_is_the_delay() {
        let p = DelayPolicy {
            delay: Duration::from_secs(10),
            ..Default::default()
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(p.sample(0, &mut rng), Duration::from_secs(10));
        let held = DelayPolicy {
            partition: Some(2),
            ..p
        };
        assert_eq!(held.sample(2, &mut rng), Duration::from_secs(10));
        assert_eq!(
            held.sample(0, &mut rng),
            Duration::ZERO,
            "another partition flows"
        );
    }

    #[test]
    fn blocking_mode_lets_one_record_wait() {
        let p = DelayPolicy {
            mode: DelayMode::Blocking,
            ..Default::default()
        };
        assert_eq!(p.max_waiting(1000), 1);
        assert_eq!(DelayPolicy::default().max_waiting(1000), 1000);
    }

    #[test]
    fn serialises_durations_as_milliseconds() {
        let p = DelayPolicy {
            delay: Duration::from_millis(2500),
            jitter: Duration::ZERO,
            mode: DelayMode::Blocking,
            partition: None,
        };
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, r#"{"delay":2500,"jitter":0,"mode":"blocking"}"#);
        assert_eq!(serde_json::from_str::<DelayPolicy>(&json).unwrap(), p);
        let held = DelayPolicy {
            partition: Some(1),
            ..p
        };
        let json = serde_json::to_string(&held).unwrap();
        assert_eq!(
            json,
            r#"{"delay":2500,"jitter":0,"mode":"blocking","partition":1}"#
        );
        assert_eq!(serde_json::from_str::<DelayPolicy>(&json).unwrap(), held);
    }

    proptest! {
        #[test]
        fn sample_stays_within_delay_plus_jitter(delay_ms in 0u64..100_000, jitter_ms in 0u64..10_000, seed in any::<u64>()) {
            let p = DelayPolicy { delay: Duration::from_millis(delay_ms), jitter: Duration::from_millis(jitter_ms), mode: DelayMode::Pipelined, partition: None };
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let d = p.sample(0, &mut rng);
            prop_assert!(d >= p.delay && d <= p.delay + p.jitter);
        }

        #[test]
        fn due_times_never_go_backwards_within_a_partition(
            steps in proptest::collection::vec((0i32..3, 0u64..50, 0u64..5_000), 1..200)
        ) {
            let base = Instant::now();
            let mut schedule = PartitionOrderedSchedule::default();
            let mut last: HashMap<i32, Instant> = HashMap::new();
            let mut clock = 0u64;
            for (partition, advance, delay) in steps {
                clock += advance;
                let start = base + Duration::from_millis(clock);
                let due = schedule.due_at(partition, start, Duration::from_millis(delay));
                prop_assert!(due >= start + Duration::from_millis(delay));
                if let Some(prev) = last.insert(partition, due) {
                    prop_assert!(due >= prev);
                }
            }
        }
    }
}
