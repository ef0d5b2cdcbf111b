//! The synchronizer's decisions, with no I/O and time passed in: which consumed records wait
//! for the artificial delay and until when, which are due, whether another record may be
//! consumed (the count, byte and in-flight budgets), what a change of the delay does to the
//! records waiting, and which offsets may be committed.
//!
//! The job's loop ([`super::run`]) only moves records between Kafka and this core: it tells
//! the core what it consumed ([`SynchronizerCore::consumed`], [`SynchronizerCore::admit`]),
//! produces what the core releases ([`SynchronizerCore::pop_due`]), reports acknowledgements
//! ([`SynchronizerCore::acknowledged`]) and commits what the core says is safe.
//!
//! Guarantees (property-tested below): each partition's records are released in the order
//! they were consumed, whatever the jitter and however often the delay changes; nothing is
//! released before its delay (counted from when its processing started) under the delay in
//! force; a lowered delay releases what it no longer holds at once; the waiting records never
//! exceed the budgets by more than the one record admitted while there was room; a committed
//! offset never passes a record whose output was not acknowledged.

use crate::kafka::offset_tracker::OffsetTracker;
use crate::synchronizer::delay::{DelayPolicy, PartitionOrderedSchedule};
use crate::synchronizer::loss::LossPolicy;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use tokio::time::Instant;

/// The budgets that bound what the synchronizer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    /// Most records consumed but not yet acknowledged at once.
    pub max_in_flight: usize,
    /// Most bytes of reduced records (key plus value) waiting for their due time at once.
    pub max_waiting_bytes: usize,
}

/// A reduced record of one input record, ready to be produced once due.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reduced {
    /// Input partition it came from.
    pub partition: i32,
    /// Input offset it came from (committed once its output is acknowledged).
    pub offset: i64,
    /// The input record's Kafka timestamp (Unix ms), for its lineage.
    pub source_timestamp_ms: Option<i64>,
    /// When its processing started (its delay counts from here).
    pub started: Instant,
    /// Output key.
    pub key: String,
    /// Output value.
    pub value: String,
}

impl Reduced {
    /// Bytes it holds while waiting (key plus value), the unit of the byte budget.
    pub fn bytes(&self) -> usize {
        self.key.len() + self.value.len()
    }
}

/// A record the core releases: produce it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// The record.
    pub record: Reduced,
    /// When it was due (its acknowledgement latency counts from here).
    pub due: Instant,
}

/// A record waiting for its due time, ordered by due time, then consumption order.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Waiting {
    due: Instant,
    sequence: u64,
    record: Reduced,
}

/// The synchronizer's state between Kafka and Kafka: the delay policy in force, the records
/// waiting for it, and the consumed offsets whose output is not yet acknowledged.
#[derive(Debug)]
pub struct SynchronizerCore {
    budgets: Budgets,
    policy: DelayPolicy,
    rng: StdRng,
    schedule: PartitionOrderedSchedule,
    waiting: BinaryHeap<Reverse<Waiting>>,
    /// Bytes of keys and values in `waiting`.
    waiting_bytes: usize,
    /// Consumption order of admitted records (ties of due time keep it).
    sequence: u64,
    offsets: OffsetTracker,
    loss: LossPolicy,
}

impl SynchronizerCore {
    /// A core holding nothing, under `policy`; `seed` drives the jitter, so a test can replay
    /// exactly the same due times.
    pub fn new(budgets: Budgets, policy: DelayPolicy, seed: u64) -> Self {
        SynchronizerCore {
            budgets,
            policy,
            rng: StdRng::seed_from_u64(seed),
            schedule: PartitionOrderedSchedule::default(),
            waiting: BinaryHeap::new(),
            waiting_bytes: 0,
            sequence: 0,
            offsets: OffsetTracker::default(),
            loss: LossPolicy::NONE,
        }
    }

    /// The delay policy in force.
    pub fn policy(&self) -> DelayPolicy {
        self.policy
    }

    /// An input record was consumed: its offset is in flight until [`Self::acknowledged`]
    /// (whatever becomes of it: reduced, dead-lettered).
    pub fn consumed(&mut self, partition: i32, offset: i64) {
        self.offsets.track(partition, offset);
    }

    /// The loss switch in force.
    pub fn loss(&self) -> LossPolicy {
        self.loss
    }

    /// Puts the loss switch `policy` in force; returns whether it changed.
    pub fn set_loss(&mut self, policy: LossPolicy) -> bool {
        std::mem::replace(&mut self.loss, policy) != policy
    }

    /// Whether the loss switch drops the consumed record at `offset` of `partition`. A dropped
    /// record needs no output: its offset may be committed at once, as a faulty stage would.
    pub fn drops(&mut self, partition: i32, offset: i64) -> bool {
        let dropped = self.loss.drops(partition, offset);
        if dropped {
            self.offsets.ack(partition, offset);
        }
        dropped
    }

    /// A consumed record was reduced: it waits for its delay, or, when it is due already and
    /// nothing waits before it, comes back to be produced at once.
    pub fn admit(&mut self, record: Reduced) -> Option<Released> {
        let wait = self.policy.sample(record.partition, &mut self.rng);
        let due = self.schedule.due_at(record.partition, record.started, wait);
        if self.waiting.is_empty() && due <= record.started {
            return Some(Released { record, due });
        }
        self.hold(record, due);
        None
    }

    fn hold(&mut self, record: Reduced, due: Instant) {
        self.sequence += 1;
        self.waiting_bytes += record.bytes();
        self.waiting.push(Reverse(Waiting {
            due,
            sequence: self.sequence,
            record,
        }));
    }

    /// The next waiting record if it is due at `now` (records come out in due order, which
    /// keeps each partition's consumption order).
    pub fn pop_due(&mut self, now: Instant) -> Option<Released> {
        if self.waiting.peek().is_none_or(|Reverse(w)| w.due > now) {
            return None;
        }
        let Reverse(w) = self.waiting.pop().expect("peeked");
        self.waiting_bytes -= w.record.bytes();
        Some(Released {
            record: w.record,
            due: w.due,
        })
    }

    /// When the earliest waiting record is due, if any waits.
    pub fn next_due(&self) -> Option<Instant> {
        self.waiting.peek().map(|Reverse(w)| w.due)
    }

    /// Puts `policy` in force. When it differs from the current one, every waiting record is
    /// due again under it, counted from when its processing started (switching a long delay
    /// off releases what waits for it), in consumption order so each partition keeps its
    /// order. Returns whether the policy changed.
    pub fn set_policy(&mut self, policy: DelayPolicy) -> bool {
        if policy == self.policy {
            return false;
        }
        self.policy = policy;
        let mut records: Vec<Waiting> = self.waiting.drain().map(|Reverse(w)| w).collect();
        records.sort_unstable_by_key(|w| w.sequence);
        self.schedule.reset();
        for mut waiting in records {
            let wait = policy.sample(waiting.record.partition, &mut self.rng);
            waiting.due =
                self.schedule
                    .due_at(waiting.record.partition, waiting.record.started, wait);
            self.waiting.push(Reverse(waiting));
        }
        true
    }

    /// Whether another record may wait: under the policy's count limit (one in blocking
    /// mode) and under the byte budget.
    pub fn has_room(&self) -> bool {
        self.waiting.len() < self.policy.max_waiting(self.budgets.max_in_flight)
            && self.waiting_bytes < self.budgets.max_waiting_bytes
    }

    /// Whether the loop may consume more: room to wait, and fewer records in flight than
    /// the in-flight budget.
    pub fn may_consume(&self) -> bool {
        self.has_room() && self.offsets.in_flight() < self.budgets.max_in_flight
    }

    /// The output of input `offset` of `partition` was acknowledged (or it needs none).
    pub fn acknowledged(&mut self, partition: i32, offset: i64) {
        self.offsets.ack(partition, offset);
    }

    /// Consumed records whose output is not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.offsets.in_flight()
    }

    /// Records waiting for their due time.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Bytes of the records waiting for their due time.
    pub fn waiting_bytes(&self) -> usize {
        self.waiting_bytes
    }

    /// Offsets (next to consume, per partition) safe to commit that advance past what the
    /// coordinator acknowledged.
    pub fn committable(&self) -> Vec<(i32, i64)> {
        self.offsets.committable()
    }

    /// Every tracked partition's safe offset, advanced or not (the final commit).
    pub fn safe_positions(&self) -> Vec<(i32, i64)> {
        self.offsets.safe_positions()
    }

    /// The coordinator acknowledged these commits.
    pub fn committed(&mut self, offsets: &[(i32, i64)]) {
        self.offsets.mark_committed(offsets);
    }

    /// `partitions` were revoked: returns their offsets safe to commit, and forgets them —
    /// their waiting records are dropped (their new owner reduces them again from the
    /// committed offset; producing them here would only duplicate them) and later
    /// acknowledgements of their records are ignored.
    pub fn revoke(&mut self, partitions: &[i32]) -> Vec<(i32, i64)> {
        let safe = self
            .offsets
            .committable()
            .into_iter()
            .filter(|(p, _)| partitions.contains(p))
            .collect();
        for &partition in partitions {
            self.offsets.remove(partition);
            self.schedule.forget(partition);
        }
        if self
            .waiting
            .iter()
            .any(|Reverse(w)| partitions.contains(&w.record.partition))
        {
            let kept: Vec<Reverse<Waiting>> = std::mem::take(&mut self.waiting)
                .into_vec()
                .into_iter()
                .filter(|Reverse(w)| !partitions.contains(&w.record.partition))
                .collect();
            self.waiting = kept.into();
            self.waiting_bytes = self.waiting.iter().map(|Reverse(w)| w.record.bytes()).sum();
        }
        safe
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synchronizer::delay::DelayMode;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::time::Duration;

    const BUDGETS: Budgets = Budgets {
        max_in_flight: 1_000,
        max_waiting_bytes: 1 << 20,
    };

    fn delay(ms: u64) -> DelayPolicy {
        DelayPolicy {
            delay: Duration::from_millis(ms),
            ..Default::default()
        }
    }

    fn record(partition: i32, offset: i64, started: Instant) -> Reduced {
        Reduced {
            partition,
            offset,
            source_timestamp_ms: Some(offset),
            started,
            key: format!("k{offset}"),
            value: format!("{{\"offset\":{offset}}}"),
        }
    }

    fn ms(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn without_a_delay_a_record_is_produced_at_once() {
        let t0 = Instant::now();
        let mut core = SynchronizerCore::new(BUDGETS, delay(0), 1);
        core.consumed(0, 7);
        let released = core.admit(record(0, 7, t0)).expect("produced at once");
        assert_eq!(released.due, t0);
        assert_eq!(core.waiting(), 0);
        assert_eq!(core.in_flight(), 1, "in flight until acknowledged");
        assert_eq!(core.committable(), vec![(0, 7)]);
        core.acknowledged(0, 7);
        assert_eq!(core.committable(), vec![(0, 8)]);
    }

    #[test]
    fn a_delayed_record_waits_until_due() {
        let t0 = Instant::now();
        let mut core = SynchronizerCore::new(BUDGETS, delay(1_000), 1);
        core.consumed(0, 0);
        assert!(core.admit(record(0, 0, t0)).is_none());
        assert_eq!(core.next_due(), Some(ms(t0, 1_000)));
        assert!(core.pop_due(ms(t0, 999)).is_none());
        let released = core.pop_due(ms(t0, 1_000)).unwrap();
        assert_eq!(released.record.offset, 0);
        assert_eq!(core.waiting_bytes(), 0);
    }

    #[test]
    fn a_held_partition_waits_while_the_others_flow() {
        let t0 = Instant::now();
        let held = DelayPolicy {
            partition: Some(1),
            ..delay(60_000)
        };
        let mut core = SynchronizerCore::new(BUDGETS, held, 1);
        assert!(
            core.admit(record(1, 0, t0)).is_none(),
            "partition 1 is held"
        );
        assert!(core.admit(record(0, 0, t0)).is_none(), "behind what waits");
        let flowing = core.pop_due(t0).expect("partition 0 is due at once");
        assert_eq!((flowing.record.partition, flowing.due), (0, t0));
        assert!(core.pop_due(ms(t0, 59_999)).is_none());
        assert!(core.set_policy(DelayPolicy {
            partition: None,
            ..delay(0)
        }));
        assert_eq!(core.pop_due(t0).expect("released").record.partition, 1);
    }

    #[test]
    fn switching_the_delay_off_releases_what_waits_at_once() {
        let t0 = Instant::now();
        let mut core = SynchronizerCore::new(BUDGETS, delay(3_600_000), 1);
        for o in 0..3 {
            core.consumed(0, o);
            assert!(core.admit(record(0, o, ms(t0, o as u64))).is_none());
        }
        assert!(
            !core.set_policy(delay(3_600_000)),
            "the same policy changes nothing"
        );
        assert!(core.set_policy(delay(0)));
        let now = ms(t0, 10);
        let order: Vec<i64> = std::iter::from_fn(|| core.pop_due(now))
            .map(|r| r.record.offset)
            .collect();
        assert_eq!(order, vec![0, 1, 2]);
    }

    #[test]
    fn a_record_due_now_waits_behind_a_partition_still_waiting() {
        let t0 = Instant::now();
        let mut core = SynchronizerCore::new(BUDGETS, delay(1_000), 1);
        assert!(core.admit(record(0, 0, t0)).is_none());
        core.set_policy(delay(0));
        // Its earlier record of the same partition is still queued: this one queues too.
        assert!(core.admit(record(0, 1, t0)).is_none());
        let order: Vec<i64> = std::iter::from_fn(|| core.pop_due(t0))
            .map(|r| r.record.offset)
            .collect();
        assert_eq!(order, vec![0, 1]);
    }

    #[test]
    fn blocking_mode_holds_one_record_at_a_time() {
        let t0 = Instant::now();
        let policy = DelayPolicy {
            mode: DelayMode::Blocking,
            ..delay(500)
        };
        let mut core = SynchronizerCore::new(BUDGETS, policy, 1);
        assert!(core.has_room());
        core.admit(record(0, 0, t0));
        assert!(!core.has_room());
        assert!(!core.may_consume());
        core.pop_due(ms(t0, 500)).unwrap();
        assert!(core.may_consume());
    }

    #[test]
    fn the_byte_and_in_flight_budgets_stop_consumption() {
        let t0 = Instant::now();
        let one = record(0, 0, t0).bytes();
        let budgets = Budgets {
            max_in_flight: 3,
            max_waiting_bytes: 2 * one,
        };
        let mut core = SynchronizerCore::new(budgets, delay(1_000), 1);
        for o in 0..2 {
            core.consumed(0, o);
            core.admit(record(0, o, t0));
        }
        assert!(!core.has_room(), "two records fill the byte budget");
        core.pop_due(ms(t0, 1_000)).unwrap();
        assert!(core.may_consume());
        core.consumed(0, 2);
        core.consumed(0, 3);
        assert!(!core.may_consume(), "four in flight, budget three");
        core.acknowledged(0, 0);
        assert!(!core.may_consume(), "three in flight, budget three");
        core.acknowledged(0, 1);
        assert!(core.may_consume());
    }

    #[test]
    fn a_revoked_partition_is_forgotten_with_its_waiting_records() {
        let t0 = Instant::now();
        let mut core = SynchronizerCore::new(BUDGETS, delay(1_000), 1);
        for (p, o) in [(0, 0), (1, 0), (1, 1), (0, 1)] {
            core.consumed(p, o);
            core.admit(record(p, o, t0));
        }
        core.acknowledged(1, 0);
        assert_eq!(core.revoke(&[1]), vec![(1, 1)]);
        assert_eq!(core.waiting(), 2);
        assert_eq!(core.waiting_bytes(), 2 * record(0, 0, t0).bytes());
        let left: Vec<(i32, i64)> = std::iter::from_fn(|| core.pop_due(ms(t0, 1_000)))
            .map(|r| (r.record.partition, r.record.offset))
            .collect();
        assert_eq!(left, vec![(0, 0), (0, 1)]);
        core.acknowledged(1, 1);
        assert_eq!(
            core.in_flight(),
            2,
            "the revoked partition's acknowledgement is ignored"
        );
    }

    /// One step of a run driven by the property test.
    #[derive(Debug, Clone)]
    enum Step {
        /// Consume a record of this partition after this many ms.
        Consume { partition: i32, after_ms: u64 },
        /// Let this many ms pass, releasing what is due.
        Wait(u64),
        /// Put this delay (and jitter) in force.
        Policy { delay_ms: u64, jitter_ms: u64 },
        /// Acknowledge the oldest produced, unacknowledged record.
        Ack,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0i32..3, 0u64..50).prop_map(|(partition, after_ms)| Step::Consume { partition, after_ms }),
            2 => (0u64..2_000).prop_map(Step::Wait),
            1 => (0u64..2_000, 0u64..500).prop_map(|(delay_ms, jitter_ms)| Step::Policy { delay_ms, jitter_ms }),
            2 => Just(Step::Ack),
        ]
    }

    proptest! {
        /// Over any run (consumption, time, delay changes, acknowledgements): each
        /// partition's records come out in consumption order; none comes out before its
        /// delay under the policy in force when it comes out (without jitter, exactly the
        /// delay; with it, at least the fixed part); the budgets hold but for the one record
        /// admitted while there was room; commits never pass an unacknowledged record; and
        /// once the delay is off and time passes, nothing is left waiting.
        #[test]
        fn order_delay_budgets_and_commits_hold(
            steps in proptest::collection::vec(step(), 1..300),
            seed in any::<u64>(),
            max_waiting_bytes in 40usize..400,
        ) {
            let budgets = Budgets { max_in_flight: 12, max_waiting_bytes };
            let t0 = Instant::now();
            let mut now = 0u64;
            let mut core = SynchronizerCore::new(budgets, delay(300), seed);
            let mut next_offset: HashMap<i32, i64> = HashMap::new();
            let mut last_out: HashMap<i32, i64> = HashMap::new();
            let mut produced: Vec<(i32, i64)> = Vec::new();
            let mut unacknowledged: Vec<(i32, i64)> = Vec::new();
            let mut largest = 0usize;
            let release = |core: &mut SynchronizerCore, now: u64, produced: &mut Vec<(i32, i64)>, last_out: &mut HashMap<i32, i64>| -> Result<(), TestCaseError> {
                while let Some(r) = core.pop_due(ms(t0, now)) {
                    check_release(&r, core.policy(), ms(t0, now), last_out)?;
                    produced.push((r.record.partition, r.record.offset));
                }
                Ok(())
            };
            for step in steps {
                match step {
                    Step::Consume { partition, after_ms } => {
                        now += after_ms;
                        release(&mut core, now, &mut produced, &mut last_out)?;
                        if !core.may_consume() { continue; }
                        let offset = next_offset.entry(partition).or_default();
                        core.consumed(partition, *offset);
                        unacknowledged.push((partition, *offset));
                        let r = Reduced { key: "k".repeat(1 + (*offset as usize % 7)), ..record(partition, *offset, ms(t0, now)) };
                        largest = largest.max(r.bytes());
                        *offset += 1;
                        if let Some(r) = core.admit(r) {
                            check_release(&r, core.policy(), ms(t0, now), &mut last_out)?;
                            produced.push((r.record.partition, r.record.offset));
                        }
                    }
                    Step::Wait(d) => {
                        now += d;
                        release(&mut core, now, &mut produced, &mut last_out)?;
                    }
                    Step::Policy { delay_ms, jitter_ms } => {
                        core.set_policy(DelayPolicy { delay: Duration::from_millis(delay_ms), jitter: Duration::from_millis(jitter_ms), mode: DelayMode::Pipelined, partition: None });
                        release(&mut core, now, &mut produced, &mut last_out)?;
                    }
                    Step::Ack => {
                        if !produced.is_empty() {
                            let (p, o) = produced.remove(0);
                            core.acknowledged(p, o);
                            unacknowledged.retain(|&x| x != (p, o));
                        }
                    }
                }
                prop_assert!(core.waiting() <= budgets.max_in_flight);
                prop_assert!(core.in_flight() <= budgets.max_in_flight);
                prop_assert!(core.waiting_bytes() < budgets.max_waiting_bytes + largest);
                for (p, c) in core.committable() {
                    let oldest = unacknowledged.iter().filter(|(q, _)| *q == p).map(|&(_, o)| o).min();
                    prop_assert!(oldest.is_none_or(|o| c <= o), "commit {c} of {p} passes {oldest:?}");
                }
                let c = core.committable();
                core.committed(&c);
            }
            core.set_policy(delay(0));
            release(&mut core, now, &mut produced, &mut last_out)?;
            prop_assert_eq!(core.waiting(), 0);
            prop_assert_eq!(core.waiting_bytes(), 0);
        }
    }

    fn check_release(
        r: &Released,
        policy: DelayPolicy,
        now: Instant,
        last_out: &mut HashMap<i32, i64>,
    ) -> Result<(), TestCaseError> {
        prop_assert!(r.due <= now, "released before due");
        prop_assert!(
            now >= r.record.started + policy.delay,
            "released {:?} after its start under a delay of {:?}",
            now - r.record.started,
            policy.delay
        );
        if let Some(previous) = last_out.insert(r.record.partition, r.record.offset) {
            prop_assert!(
                previous < r.record.offset,
                "partition {} out of order",
                r.record.partition
            );
        }
        Ok(())
    }

    #[test]
    fn the_loss_switch_drops_exactly_its_records_and_commits_past_them() {
        let t0 = Instant::now();
        let mut core = SynchronizerCore::new(BUDGETS, delay(0), 1);
        let policy = LossPolicy {
            rate_ppm: 200_000,
            seed: 11,
        };
        assert!(core.set_loss(policy));
        assert!(!core.set_loss(policy), "unchanged");
        let mut produced = Vec::new();
        for offset in 0..200 {
            core.consumed(0, offset);
            if core.drops(0, offset) {
                continue;
            }
            let released = core.admit(record(0, offset, t0)).expect("no delay");
            produced.push(released.record.offset);
            core.acknowledged(0, offset);
        }
        let expected: Vec<i64> = (0..200).filter(|&o| !policy.drops(0, o)).collect();
        assert_eq!(produced, expected, "exactly the records the policy keeps");
        assert!(
            (20..60).contains(&(200 - produced.len())),
            "about a fifth dropped"
        );
        assert_eq!(
            core.committable(),
            vec![(0, 200)],
            "committed past the dropped"
        );
        assert!(core.set_loss(LossPolicy::NONE));
        core.consumed(0, 200);
        assert!(!(0..1000).any(|o| core.loss().drops(0, o)));
    }
}
