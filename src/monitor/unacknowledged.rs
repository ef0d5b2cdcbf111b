//! Output the monitor has sent but not yet seen acknowledged (window parts on the shuffle
//! topic, dead-letter records), and what that allows it to commit.
//!
//! Per partition, the commit may not pass the first record still needed by an open window, an
//! unacknowledged batch of window parts or an unacknowledged dead letter; and the partition's
//! watermark saved as "durable" must stay below every one of its window parts not yet
//! acknowledged, so a restart (here or on another instance) rebuilds them.

use super::checkpoint::Checkpoint;
use crate::window::{earliest, ResumePoint};
use std::collections::BTreeMap;

/// Unacknowledged window batches and dead letters.
#[derive(Debug, Default)]
pub struct Unacknowledged {
    /// Batch id → per partition, the earliest close time of its windows in the batch and
    /// their resume point.
    batches: BTreeMap<u64, BTreeMap<i32, (i64, ResumePoint)>>,
    /// (partition, offset) → the partition's max event time before that record.
    dead_letters: BTreeMap<(i32, i64), Option<i64>>,
}

impl Unacknowledged {
    /// A batch of window parts was sent: per partition, the earliest close time of its
    /// windows in the batch and their resume point.
    pub fn add_batch(&mut self, id: u64, partitions: BTreeMap<i32, (i64, ResumePoint)>) {
        self.batches.insert(id, partitions);
    }

    /// A partition was taken away: what it had outstanding no longer holds anything back
    /// here (its new owner restores from its checkpoint).
    pub fn remove_partition(&mut self, partition: i32) {
        for batch in self.batches.values_mut() {
            batch.remove(&partition);
        }
        self.dead_letters.retain(|&(p, _), _| p != partition);
    }

    /// The sink acknowledged a batch; returns whether it was pending.
    pub fn ack_batch(&mut self, id: u64) -> bool {
        self.batches.remove(&id).is_some()
    }

    /// A record was sent to the dead-letter topic.
    pub fn add_dead_letter(&mut self, partition: i32, offset: i64, max_before: Option<i64>) {
        self.dead_letters.insert((partition, offset), max_before);
    }

    /// The broker acknowledged a dead letter.
    pub fn ack_dead_letter(&mut self, partition: i32, offset: i64) {
        self.dead_letters.remove(&(partition, offset));
    }

    /// Number of batches the sink has not acknowledged.
    pub fn batches(&self) -> usize {
        self.batches.len()
    }

    /// The checkpoint of every consumed partition: resume at the earliest of its consumed
    /// position, the open windows' and the unacknowledged output's resume points; its windows
    /// are durable up to just before its earliest unacknowledged one (else through its
    /// `closed_through`).
    pub fn plan(
        &self,
        positions: &BTreeMap<i32, ResumePoint>,
        open_windows: BTreeMap<i32, ResumePoint>,
        closed_through: &BTreeMap<i32, i64>,
    ) -> BTreeMap<i32, Checkpoint> {
        let mut needed = open_windows;
        let mut unacknowledged_close: BTreeMap<i32, i64> = BTreeMap::new();
        for batch in self.batches.values() {
            for (&p, &(close_at, point)) in batch {
                earliest(&mut needed, p, point);
                let earliest_close = unacknowledged_close.entry(p).or_insert(close_at);
                *earliest_close = (*earliest_close).min(close_at);
            }
        }
        for (&(p, offset), &max_event_time_before) in &self.dead_letters {
            earliest(
                &mut needed,
                p,
                ResumePoint {
                    offset,
                    max_event_time_before,
                },
            );
        }
        positions
            .iter()
            .map(|(&partition, &position)| {
                let mut resume = needed.clone();
                earliest(&mut resume, partition, position);
                let point = resume[&partition];
                let durable_through = match unacknowledged_close.get(&partition) {
                    Some(close_at) => Some(close_at - 1),
                    None => closed_through.get(&partition).copied(),
                };
                let checkpoint = Checkpoint {
                    offset: point.offset,
                    max_event_time_before: point.max_event_time_before,
                    durable_through,
                    replay_end: position.offset,
                };
                (partition, checkpoint)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(offset: i64, max: i64) -> ResumePoint {
        ResumePoint {
            offset,
            max_event_time_before: Some(max),
        }
    }

    fn positions() -> BTreeMap<i32, ResumePoint> {
        BTreeMap::from([(0, point(100, 9_000)), (1, point(50, 8_000))])
    }

    #[test]
    fn with_nothing_outstanding_everything_consumed_is_committed() {
        let closed = BTreeMap::from([(0, 5_999), (1, 5_999)]);
        let plan = Unacknowledged::default().plan(&positions(), BTreeMap::new(), &closed);
        assert_eq!(
            plan[&0],
            Checkpoint {
                offset: 100,
                max_event_time_before: Some(9_000),
                durable_through: Some(5_999),
                replay_end: 100
            }
        );
        assert_eq!(plan[&1].offset, 50);
    }

    #[test]
    fn open_windows_hold_the_commit_back() {
        let open = BTreeMap::from([(0, point(70, 6_500))]);
        let closed = BTreeMap::from([(0, 5_999), (1, 5_999)]);
        let plan = Unacknowledged::default().plan(&positions(), open, &closed);
        assert_eq!(
            (
                plan[&0].offset,
                plan[&0].max_event_time_before,
                plan[&0].replay_end
            ),
            (70, Some(6_500), 100)
        );
        assert_eq!(plan[&1].offset, 50, "partition 1 has nothing open");
    }

    #[test]
    fn unacknowledged_batches_hold_offsets_and_the_durable_watermark_back() {
        let closed = BTreeMap::from([(0, 7_999), (1, 7_999)]);
        let mut u = Unacknowledged::default();
        u.add_batch(1, BTreeMap::from([(1, (5_999, point(20, 3_000)))]));
        u.add_batch(2, BTreeMap::from([(0, (7_999, point(60, 6_000)))]));
        let plan = u.plan(&positions(), BTreeMap::new(), &closed);
        assert_eq!(plan[&0].offset, 60);
        assert_eq!(plan[&1].offset, 20);
        assert_eq!(
            (plan[&0].durable_through, plan[&1].durable_through),
            (Some(7_998), Some(5_998)),
            "each partition's own unacknowledged parts"
        );
        assert!(u.ack_batch(1));
        assert!(!u.ack_batch(1));
        let plan = u.plan(&positions(), BTreeMap::new(), &closed);
        assert_eq!(
            (plan[&1].offset, plan[&1].durable_through),
            (50, Some(7_999))
        );
        u.remove_partition(0);
        assert_eq!(
            u.plan(&positions(), BTreeMap::new(), &closed)[&0].durable_through,
            Some(7_999)
        );
        u.ack_batch(2);
        assert_eq!(u.batches(), 0);
    }

    #[test]
    fn unacknowledged_dead_letters_hold_their_offset() {
        let mut u = Unacknowledged::default();
        u.add_dead_letter(0, 42, Some(4_000));
        let none = BTreeMap::new();
        assert_eq!(u.plan(&positions(), BTreeMap::new(), &none)[&0].offset, 42);
        u.ack_dead_letter(0, 42);
        assert_eq!(u.plan(&positions(), BTreeMap::new(), &none)[&0].offset, 100);
    }
}
