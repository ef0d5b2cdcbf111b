//! Output the monitor has sent but not yet seen acknowledged (window batches in the sink,
//! dead-letter records on Kafka), and what that allows it to commit.
//!
//! Per partition, the commit may not pass the first record still needed by an open window, an
//! unacknowledged window batch or an unacknowledged dead letter; and the watermark saved as
//! "durable" must stay below every window not yet acknowledged, so a restart rebuilds them.

use super::checkpoint::Checkpoint;
use crate::window::{earliest, ResumePoint};
use std::collections::BTreeMap;

/// Unacknowledged window batches and dead letters.
#[derive(Debug, Default)]
pub struct Unacknowledged {
    /// Batch id → (earliest close time of its windows, their resume points per partition).
    batches: BTreeMap<u64, (i64, BTreeMap<i32, ResumePoint>)>,
    /// (partition, offset) → the partition's max event time before that record.
    dead_letters: BTreeMap<(i32, i64), Option<i64>>,
}

impl Unacknowledged {
    /// A batch of windows was sent to the sink.
    pub fn add_batch(&mut self, id: u64, close_at: i64, resume_points: BTreeMap<i32, ResumePoint>) {
        self.batches.insert(id, (close_at, resume_points));
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
    /// position, the open windows' and the unacknowledged output's resume points; windows are
    /// durable up to just before the earliest unacknowledged one (else through `closed_through`).
    pub fn plan(
        &self,
        positions: &BTreeMap<i32, ResumePoint>,
        open_windows: BTreeMap<i32, ResumePoint>,
        closed_through: Option<i64>,
    ) -> BTreeMap<i32, Checkpoint> {
        let durable_through = match self.batches.values().map(|(close_at, _)| *close_at).min() {
            Some(close_at) => Some(close_at - 1),
            None => closed_through,
        };
        let mut needed = open_windows;
        for (_, points) in self.batches.values() {
            for (&p, &point) in points {
                earliest(&mut needed, p, point);
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
        let plan = Unacknowledged::default().plan(&positions(), BTreeMap::new(), Some(5_999));
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
        let plan = Unacknowledged::default().plan(&positions(), open, Some(5_999));
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
        let mut u = Unacknowledged::default();
        u.add_batch(1, 5_999, BTreeMap::from([(1, point(20, 3_000))]));
        u.add_batch(2, 7_999, BTreeMap::from([(0, point(60, 6_000))]));
        let plan = u.plan(&positions(), BTreeMap::new(), Some(7_999));
        assert_eq!(plan[&0].offset, 60);
        assert_eq!(plan[&1].offset, 20);
        assert_eq!(
            plan[&0].durable_through,
            Some(5_998),
            "window closing at 5999 is not durable yet"
        );
        assert!(u.ack_batch(1));
        assert!(!u.ack_batch(1));
        let plan = u.plan(&positions(), BTreeMap::new(), Some(7_999));
        assert_eq!(
            (plan[&1].offset, plan[&0].durable_through),
            (50, Some(7_998))
        );
        u.ack_batch(2);
        assert_eq!(
            u.plan(&positions(), BTreeMap::new(), Some(7_999))[&0].durable_through,
            Some(7_999)
        );
        assert_eq!(u.batches(), 0);
    }

    #[test]
    fn unacknowledged_dead_letters_hold_their_offset() {
        let mut u = Unacknowledged::default();
        u.add_dead_letter(0, 42, Some(4_000));
        assert_eq!(u.plan(&positions(), BTreeMap::new(), None)[&0].offset, 42);
        u.ack_dead_letter(0, 42);
        assert_eq!(u.plan(&positions(), BTreeMap::new(), None)[&0].offset, 100);
    }
}
