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
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
                },
                PartitionResume {
                    partition: 1,
                    offset: Some(12),
                    restored: None,
                },
                PartitionResume {
                    partition: 2,
                    offset: None,
                    restored: None,
                },
            ]
        );
    }
}
