//! Output one partition has sent but not yet seen acknowledged (its window parts on the
//! shuffle topic, its dead-letter records), and what that allows it to commit.
//!
//! The commit may not pass the first record still needed by an open window, an unacknowledged
//! part or an unacknowledged dead letter; and the partition's watermark saved as "durable"
//! must stay below every one of its window parts not yet acknowledged, so a restart (here or
//! on another instance) rebuilds them.

use super::checkpoint::Checkpoint;
use crate::event_time::window::ResumePoint;
use std::collections::BTreeMap;

/// One partition's unacknowledged window parts (by publication) and dead letters.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Unacknowledged {
    /// Publication id → the earliest close time of this partition's windows in it, and their
    /// resume point.
    publications: BTreeMap<u64, (i64, ResumePoint)>,
    /// Offset → the partition's max event time before that record.
    dead_letters: BTreeMap<i64, Option<i64>>,
}

impl Unacknowledged {
    /// Parts of this partition were sent in publication `id`: the earliest close time of their
    /// windows and their resume point.
    pub fn add_parts(&mut self, id: u64, close_at: i64, point: ResumePoint) {
        self.publications.insert(id, (close_at, point));
    }

    /// The broker acknowledged publication `id`; returns whether this partition was waiting
    /// for it.
    pub fn ack_parts(&mut self, id: u64) -> bool {
        self.publications.remove(&id).is_some()
    }

    /// The record at `offset` was sent to the dead-letter topic.
    pub fn add_dead_letter(&mut self, offset: i64, max_before: Option<i64>) {
        self.dead_letters.insert(offset, max_before);
    }

    /// The broker acknowledged the dead letter of `offset`.
    pub fn ack_dead_letter(&mut self, offset: i64) {
        self.dead_letters.remove(&offset);
    }

    /// The partition's checkpoint: resume at the earliest of its consumed `position`, its
    /// `open_window`'s resume point and the unacknowledged output's; its windows are durable up
    /// to just before its earliest unacknowledged one (else through `closed_through`).
    pub fn checkpoint(
        &self,
        position: ResumePoint,
        open_window: Option<ResumePoint>,
        closed_through: Option<i64>,
    ) -> Checkpoint {
        let dead_letters = self
            .dead_letters
            .iter()
            .map(|(&offset, &max_event_time_before)| ResumePoint {
                offset,
                max_event_time_before,
            });
        let point = self
            .publications
            .values()
            .map(|&(_, point)| point)
            .chain(dead_letters)
            .chain(open_window)
            .fold(position, |earliest, point| {
                if point.offset < earliest.offset {
                    point
                } else {
                    earliest
                }
            });
        let durable_through = match self
            .publications
            .values()
            .map(|&(close_at, _)| close_at)
            .min()
        {
            Some(close_at) => Some(close_at - 1),
            None => closed_through,
        };
        Checkpoint {
            offset: point.offset,
            max_event_time_before: point.max_event_time_before,
            durable_through,
            replay_end: position.offset,
        }
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

    #[test]
    fn with_nothing_outstanding_everything_consumed_is_committed() {
        let checkpoint = Unacknowledged::default().checkpoint(point(100, 9_000), None, Some(5_999));
        assert_eq!(
            checkpoint,
            Checkpoint {
                offset: 100,
                max_event_time_before: Some(9_000),
                durable_through: Some(5_999),
                replay_end: 100
            }
        );
    }

    #[test]
    fn an_open_window_holds_the_commit_back() {
        let checkpoint = Unacknowledged::default().checkpoint(
            point(100, 9_000),
            Some(point(70, 6_500)),
            Some(5_999),
        );
        assert_eq!(
            (
                checkpoint.offset,
                checkpoint.max_event_time_before,
                checkpoint.replay_end
            ),
            (70, Some(6_500), 100)
        );
    }

    #[test]
    fn unacknowledged_parts_hold_the_offset_and_the_durable_watermark_back() {
        let mut u = Unacknowledged::default();
        u.add_parts(1, 5_999, point(20, 3_000));
        u.add_parts(2, 7_999, point(60, 6_000));
        let checkpoint = u.checkpoint(point(100, 9_000), None, Some(7_999));
        assert_eq!(
            (checkpoint.offset, checkpoint.durable_through),
            (20, Some(5_998)),
            "the earliest unacknowledged part"
        );
        assert!(u.ack_parts(1));
        assert!(!u.ack_parts(1));
        let checkpoint = u.checkpoint(point(100, 9_000), None, Some(7_999));
        assert_eq!(
            (checkpoint.offset, checkpoint.durable_through),
            (60, Some(7_998))
        );
        u.ack_parts(2);
        let checkpoint = u.checkpoint(point(100, 9_000), None, Some(7_999));
        assert_eq!(
            (checkpoint.offset, checkpoint.durable_through),
            (100, Some(7_999))
        );
    }

    #[test]
    fn unacknowledged_dead_letters_hold_their_offset() {
        let mut u = Unacknowledged::default();
        u.add_dead_letter(42, Some(4_000));
        let checkpoint = u.checkpoint(point(100, 9_000), None, None);
        assert_eq!(
            (checkpoint.offset, checkpoint.max_event_time_before),
            (42, Some(4_000))
        );
        u.ack_dead_letter(42);
        assert_eq!(u.checkpoint(point(100, 9_000), None, None).offset, 100);
    }
}
