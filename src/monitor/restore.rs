//! Restoring from checkpoints: from the group's committed offsets and the checkpoints saved on
//! the checkpoint topic to where each partition resumes and what its event time restores.

use super::checkpoint::Checkpoint;
use crate::event_time::RestoredPartition;
use std::collections::BTreeMap;

/// Where one partition resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionResume {
    /// The partition.
    pub partition: i32,
    /// The offset to resume from; `None`: the start of the partition (nothing committed).
    pub offset: Option<i64>,
    /// What its checkpoint restores (none without a checkpoint).
    pub restored: Option<RestoredPartition>,
    /// The consumer starts at the group's committed offset (or the partition's start), which is
    /// not `offset`: it is moved there. Usually the commit is behind (a previous owner lost the
    /// partition before committing what its checkpoint saved), and the records in between were
    /// published already: reading them again is wasted work.
    pub move_consumer: bool,
}

/// The resume plan of `partitions`. A checkpoint wins over the group's committed offset: it is
/// written before each commit, so it is never behind it (and some brokers drop commit
/// metadata); without one, the committed offset is used, else the start of the partition.
pub fn resume_plan(
    partitions: &[i32],
    committed: &BTreeMap<i32, i64>,
    checkpoints: &BTreeMap<i32, Checkpoint>,
) -> Vec<PartitionResume> {
    partitions
        .iter()
        .map(|&partition| match checkpoints.get(&partition) {
            Some(c) => PartitionResume {
                partition,
                offset: Some(c.offset),
                move_consumer: committed.get(&partition) != Some(&c.offset),
                restored: Some(RestoredPartition {
                    max_event_time_before: c.max_event_time_before,
                    durable_through: c.durable_through,
                    replay_end: c.replay_end,
                }),
            },
            None => PartitionResume {
                partition,
                offset: committed.get(&partition).copied(),
                restored: None,
                move_consumer: false,
            },
        })
        .collect()
}

/// Splits `checkpoints` into those that fit their partition — a replay end not beyond the
/// partition's end (`ends`: high watermarks; a partition without one is not judged) — and the
/// partitions whose checkpoint names offsets the partition does not have (a forged checkpoint,
/// or one left from a deleted topic of the same name), which resume as if they had none.
pub fn fitting_checkpoints(
    checkpoints: BTreeMap<i32, Checkpoint>,
    ends: &BTreeMap<i32, i64>,
) -> (BTreeMap<i32, Checkpoint>, Vec<i32>) {
    let mut beyond = Vec::new();
    let kept = checkpoints
        .into_iter()
        .filter(|(partition, checkpoint)| {
            let fits = ends
                .get(partition)
                .is_none_or(|&end| checkpoint.replay_end <= end);
            if !fits {
                beyond.push(*partition);
            }
            fits
        })
        .collect();
    (kept, beyond)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_beyond_its_partition_end_is_not_used() {
        let at = |offset, replay_end| Checkpoint {
            offset,
            max_event_time_before: None,
            durable_through: None,
            replay_end,
        };
        let checkpoints = BTreeMap::from([(0, at(40, 44)), (1, at(5, 1 << 40)), (2, at(3, 9))]);
        let ends = BTreeMap::from([(0, 44), (1, 100)]);
        let (kept, beyond) = fitting_checkpoints(checkpoints, &ends);
        assert_eq!(kept.keys().copied().collect::<Vec<_>>(), [0, 2]);
        assert_eq!(beyond, [1]);
    }

    #[test]
    fn checkpoint_then_committed_offset_then_the_start() {
        let checkpoint = Checkpoint {
            offset: 40,
            max_event_time_before: Some(7),
            durable_through: Some(5),
            replay_end: 44,
        };
        let plan = resume_plan(
            &[0, 1, 2],
            &BTreeMap::from([(0, 30), (1, 12)]),
            &BTreeMap::from([(0, checkpoint)]),
        );
        // The consumer is moved unless the commit is where the checkpoint resumes: also when
        // nothing is committed (a broker that dropped the commit) or the commit is ahead.
        for (committed, moved) in [(Some(40), false), (None, true), (Some(41), true)] {
            let committed = committed.map(|o| (0, o)).into_iter().collect();
            let plan = resume_plan(&[0], &committed, &BTreeMap::from([(0, checkpoint)]));
            assert_eq!(plan[0].move_consumer, moved, "committed {committed:?}");
        }
        assert_eq!(
            plan,
            vec![
                PartitionResume {
                    partition: 0,
                    offset: Some(40),
                    restored: Some(RestoredPartition {
                        max_event_time_before: Some(7),
                        durable_through: Some(5),
                        replay_end: 44,
                    }),
                    move_consumer: true,
                },
                PartitionResume {
                    partition: 1,
                    offset: Some(12),
                    restored: None,
                    move_consumer: false,
                },
                PartitionResume {
                    partition: 2,
                    offset: None,
                    restored: None,
                    move_consumer: false,
                },
            ]
        );
    }
}
