//! The monitor's decisions, without I/O: what a consumed record is (counted, already counted,
//! or a dead letter), which windows a clock tick closes and which documents they become, what
//! the acknowledgements of the sink and the broker allow to be committed. Processing time comes
//! in as an argument (`now_ms`), so every path — ticks, idleness, closing — is tested here.

use super::checkpoint::{Checkpoint, CheckpointRecord};
use super::measurement::{measure, Plausibility, TimestampKind};
use super::restore::PartitionResume;
use super::unacknowledged::Unacknowledged;
use super::MonitorReport;
use crate::event_time::EventTimeOperator;
use crate::rejection::{RejectReason, Rejection};
use crate::watermark::WatermarkConfig;
use crate::window::{earliest, Placement, ResumePoint, WindowConfig, WindowResult};
use crate::window_document::WindowDocument;
use std::collections::BTreeMap;

/// What the core needs to decide.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Consumed topic (named in checkpoints).
    pub input_topic: String,
    /// Consumer group (named in checkpoints).
    pub group: String,
    /// Identity of the monitored pipeline, part of every document id.
    pub job_name: String,
    /// Windows and percentiles.
    pub window: WindowConfig,
    /// Watermarks.
    pub watermark: WatermarkConfig,
    /// What counts as a plausible measurement.
    pub plausibility: Plausibility,
}

/// What to do with a consumed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordDecision {
    /// Counted in its window.
    Accepted {
        /// The kind of timestamp the record carried.
        timestamp_kind: TimestampKind,
        /// The latency was negative (within the tolerated clock skew): counted, so operators
        /// see clocks drift.
        negative_latency: bool,
    },
    /// A replayed record already counted in a window written before the restart: skipped.
    AlreadyCounted,
    /// To be kept on the dead-letter topic; its offset is not committed before the broker
    /// acknowledged it ([`MonitorCore::on_dead_letter_ack`]).
    DeadLetter {
        /// Why.
        rejection: Rejection,
        /// For a late record, the start of the window it missed (ms).
        late_for_window: Option<i64>,
    },
}

/// Windows a tick closed, as documents for the sink.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedBatch {
    /// Identifies the batch in the sink's acknowledgement.
    pub id: u64,
    /// One document per closed window.
    pub documents: Vec<WindowDocument>,
    /// The closed windows themselves (for logs and gauges).
    pub results: Vec<WindowResult>,
}

/// The monitor's state between I/O events.
#[derive(Debug)]
pub struct MonitorCore {
    config: CoreConfig,
    operator: EventTimeOperator,
    /// Per partition: the next offset to consume and the highest event time before it.
    positions: BTreeMap<i32, ResumePoint>,
    unacknowledged: Unacknowledged,
    /// The checkpoint last saved per partition (nothing is saved twice).
    last_saved: BTreeMap<i32, Checkpoint>,
    next_batch: u64,
    report: MonitorReport,
}

impl MonitorCore {
    /// Nothing assigned yet.
    pub fn new(config: CoreConfig) -> Self {
        MonitorCore {
            operator: EventTimeOperator::new(config.window.clone(), config.watermark),
            config,
            positions: BTreeMap::new(),
            unacknowledged: Unacknowledged::default(),
            last_saved: BTreeMap::new(),
            next_batch: 0,
            report: MonitorReport::default(),
        }
    }

    /// Takes a partition as [`super::restore::resume_plan`] says, at processing time `now_ms`.
    pub fn assign(&mut self, resume: &PartitionResume, now_ms: i64) {
        if let Some(offset) = resume.offset {
            self.positions.insert(
                resume.partition,
                ResumePoint {
                    offset,
                    max_event_time_before: resume.restored.and_then(|r| r.max_event_time_before),
                },
            );
        }
        self.operator
            .assign(resume.partition, resume.restored, now_ms);
    }

    /// Decides about the record at `offset` of `partition`.
    pub fn on_record(
        &mut self,
        partition: i32,
        offset: i64,
        timestamp: Option<(TimestampKind, i64)>,
        payload: Option<&[u8]>,
        now_ms: i64,
    ) -> RecordDecision {
        self.report.consumed += 1;
        let max_before = self.operator.max_event_time(partition);
        let position = self.positions.entry(partition).or_insert(ResumePoint {
            offset,
            max_event_time_before: max_before,
        });
        position.offset = offset + 1;
        let measurement = match measure(payload, timestamp, now_ms, &self.config.plausibility) {
            Ok(m) => m,
            Err(rejection) => {
                self.report.rejected += 1;
                return self.dead_letter(partition, offset, max_before, rejection, None);
            }
        };
        position.max_event_time_before = Some(
            position
                .max_event_time_before
                .map_or(measurement.event_time, |m| m.max(measurement.event_time)),
        );
        let placement = self.operator.on_record(
            partition,
            offset,
            measurement.event_time,
            measurement.latency_ms,
            now_ms,
        );
        match placement {
            Placement::Accepted { .. } => RecordDecision::Accepted {
                timestamp_kind: measurement.timestamp_kind,
                negative_latency: measurement.latency_ms < 0,
            },
            Placement::AlreadyCounted { .. } => RecordDecision::AlreadyCounted,
            Placement::Late { window_start } => {
                self.report.late += 1;
                let detail = format!(
                    "window starting {} had closed (watermark {:?}) when the record arrived",
                    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(window_start)
                        .unwrap_or_default()
                        .to_rfc3339(),
                    self.operator.watermark()
                );
                let rejection = Rejection::new(RejectReason::Late, detail);
                self.dead_letter(partition, offset, max_before, rejection, Some(window_start))
            }
        }
    }

    fn dead_letter(
        &mut self,
        partition: i32,
        offset: i64,
        max_before: Option<i64>,
        rejection: Rejection,
        late_for_window: Option<i64>,
    ) -> RecordDecision {
        self.unacknowledged
            .add_dead_letter(partition, offset, max_before);
        RecordDecision::DeadLetter {
            rejection,
            late_for_window,
        }
    }

    /// The broker acknowledged the dead letter of `offset` in `partition`.
    pub fn on_dead_letter_ack(&mut self, partition: i32, offset: i64) {
        self.unacknowledged.ack_dead_letter(partition, offset);
    }

    /// The consumer reached the end of `partition`'s log (Kafka's partition EOF): its silence
    /// from now on counts towards idleness.
    pub fn on_caught_up(&mut self, partition: i32) {
        self.operator.caught_up(partition);
    }

    /// Every broker is unreachable at `now_ms`: silence proves nothing, no partition becomes
    /// idle (called on every tick of the outage).
    pub fn on_broker_unreachable(&mut self, now_ms: i64) {
        self.operator.hold_idleness(now_ms);
    }

    /// Advances the watermark at processing time `now_ms`; the windows it closes become a
    /// batch for the sink, which must acknowledge it before their records are committed.
    pub fn on_tick(&mut self, now_ms: i64) -> Option<ClosedBatch> {
        let advance = self.operator.on_tick(now_ms)?;
        if advance.closed.is_empty() {
            return None;
        }
        let close_at = advance
            .closed
            .iter()
            .map(|r| self.config.window.close_at(r.start_ms))
            .min()
            .expect("non-empty");
        let mut resume_points = BTreeMap::new();
        for result in &advance.closed {
            for (&p, &point) in &result.resume_points {
                earliest(&mut resume_points, p, point);
            }
        }
        let documents: Vec<WindowDocument> = advance
            .closed
            .iter()
            .map(|r| WindowDocument::new(&self.config.job_name, self.config.window.sla_ms, r))
            .collect();
        self.report.windows_written += documents.len() as u64;
        let id = self.next_batch;
        self.next_batch += 1;
        self.unacknowledged.add_batch(id, close_at, resume_points);
        Some(ClosedBatch {
            id,
            documents,
            results: advance.closed,
        })
    }

    /// The sink acknowledged batch `id`; returns whether it was pending.
    pub fn on_batch_ack(&mut self, id: u64) -> bool {
        self.unacknowledged.ack_batch(id)
    }

    /// Window batches the sink has not acknowledged yet.
    pub fn unacknowledged_batches(&self) -> usize {
        self.unacknowledged.batches()
    }

    /// The checkpoints to save before the next commit: per partition whose state changed
    /// since the last save, the first offset still needed by an open window, a window not yet
    /// acknowledged by the sink or a dead letter not yet acknowledged by the broker.
    pub fn checkpoints_due(&self) -> Vec<CheckpointRecord> {
        self.unacknowledged
            .plan(
                &self.positions,
                self.operator.resume_points(),
                self.operator.closed_through(),
            )
            .into_iter()
            .filter(|(partition, checkpoint)| self.last_saved.get(partition) != Some(checkpoint))
            .map(|(partition, checkpoint)| CheckpointRecord {
                group: self.config.group.clone(),
                topic: self.config.input_topic.clone(),
                partition,
                checkpoint,
            })
            .collect()
    }

    /// The broker acknowledged these checkpoints.
    pub fn checkpoints_saved(&mut self, records: &[CheckpointRecord]) {
        for record in records {
            self.last_saved.insert(record.partition, record.checkpoint);
        }
    }

    /// What this run did so far.
    pub fn report(&self) -> MonitorReport {
        self.report
    }

    /// The job watermark (ms).
    pub fn watermark(&self) -> Option<i64> {
        self.operator.watermark()
    }

    /// Number of open windows.
    pub fn open_windows(&self) -> usize {
        self.operator.open_windows()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::DigestConfig;
    use crate::event_time::RestoredPartition;

    const WINDOW: i64 = 10_000;

    fn core() -> MonitorCore {
        let mut core = MonitorCore::new(CoreConfig {
            input_topic: "reduced".into(),
            group: "g".into(),
            job_name: "job".into(),
            window: WindowConfig {
                size_ms: WINDOW,
                allowed_lateness_ms: 0,
                sla_ms: 1_000,
                quantiles: vec![0.5, 0.99],
                digest: DigestConfig::default(),
            },
            watermark: WatermarkConfig {
                max_out_of_orderness_ms: 0,
                idle_timeout_ms: 5_000,
            },
            plausibility: Plausibility {
                max_future_ms: 60_000,
                max_latency_ms: 3_600_000,
                max_clock_skew_ms: 5_000,
            },
        });
        for partition in [0, 1] {
            core.assign(
                &PartitionResume {
                    partition,
                    offset: None,
                    restored: None,
                },
                0,
            );
        }
        core
    }

    fn record(core: &mut MonitorCore, p: i32, offset: i64, t: i64, latency: i64) -> RecordDecision {
        let value = format!(
            r#"{{"visit":{{"id":"v","event_time":1}},"start_processing_time_ms":{}}}"#,
            t - latency
        );
        core.on_record(
            p,
            offset,
            Some((TimestampKind::CreateTime, t)),
            Some(value.as_bytes()),
            t,
        )
    }

    fn offsets(records: &[CheckpointRecord]) -> BTreeMap<i32, i64> {
        records
            .iter()
            .map(|r| (r.partition, r.checkpoint.offset))
            .collect()
    }

    #[test]
    fn nothing_is_committed_past_a_window_before_the_sink_acknowledged_it() {
        let mut core = core();
        for i in 0..3 {
            record(&mut core, 0, i, 1_000 + i, 50);
            record(&mut core, 1, i, 1_000 + i, 50);
        }
        record(&mut core, 0, 3, WINDOW + 1, 50);
        record(&mut core, 1, 3, WINDOW + 1, 50);
        assert_eq!(
            offsets(&core.checkpoints_due()),
            BTreeMap::from([(0, 0), (1, 0)])
        );
        let batch = core.on_tick(WINDOW + 1).expect("window 0 closes");
        assert_eq!(batch.documents.len(), 1);
        assert_eq!(batch.documents[0].count, 6);
        // Written to the sink but not acknowledged: still needed after a crash.
        let due = core.checkpoints_due();
        assert_eq!(offsets(&due), BTreeMap::from([(0, 0), (1, 0)]));
        assert!(
            due[0].checkpoint.durable_through < Some(WINDOW - 1),
            "window 0 (closing at {}) is not durable yet",
            WINDOW - 1
        );
        core.checkpoints_saved(&due);
        assert!(core.checkpoints_due().is_empty(), "nothing changed since");
        assert!(core.on_batch_ack(batch.id));
        let due = core.checkpoints_due();
        assert_eq!(
            offsets(&due),
            BTreeMap::from([(0, 3), (1, 3)]),
            "window 1 is open"
        );
        assert!(due[0].checkpoint.durable_through >= Some(WINDOW - 1));
        assert_eq!(due[0].checkpoint.replay_end, 4);
    }

    #[test]
    fn a_dead_letter_holds_the_commit_until_the_broker_acknowledged_it() {
        let mut core = core();
        let decision = core.on_record(
            0,
            0,
            Some((TimestampKind::CreateTime, 1_000)),
            Some(b"{oops"),
            1_000,
        );
        assert!(matches!(
            decision,
            RecordDecision::DeadLetter { ref rejection, late_for_window: None }
                if rejection.reason == RejectReason::InvalidJson
        ));
        assert_eq!(offsets(&core.checkpoints_due())[&0], 0);
        core.on_dead_letter_ack(0, 0);
        assert_eq!(offsets(&core.checkpoints_due())[&0], 1);
        assert_eq!(core.report().rejected, 1);
    }

    #[test]
    fn idle_partitions_let_the_last_window_close_with_the_clock() {
        let mut core = core();
        record(&mut core, 0, 0, 1_000, 10);
        assert!(core.on_tick(2_000).is_none());
        // Partition 1 never delivers, partition 0 stops: once both reached their end and the
        // idle timeout passed, both are idle and the watermark follows the clock.
        assert!(
            core.on_tick(WINDOW + 6_000).is_none(),
            "not known to be caught up"
        );
        core.on_caught_up(0);
        core.on_caught_up(1);
        let batch = core.on_tick(WINDOW + 6_000).expect("closed by idleness");
        assert_eq!(batch.results[0].start_ms, 0);
        assert_eq!(batch.documents[0].count, 1);
    }

    #[test]
    fn a_broker_outage_closes_no_window_by_idleness() {
        let mut core = core();
        record(&mut core, 0, 0, 1_000, 10);
        core.on_caught_up(0);
        core.on_caught_up(1);
        // Unreachable from 2 s to 30 s: held on every tick, nothing closes.
        for now in (2_000..=30_000).step_by(1_000) {
            core.on_broker_unreachable(now);
            assert!(
                core.on_tick(now).is_none(),
                "closed at {now} during the outage"
            );
        }
        // Closed only once the idle timeout (5 s) passed after the outage.
        assert!(core.on_tick(34_999).is_none());
        assert!(core.on_tick(35_000).is_some());
    }

    #[test]
    fn an_implausible_stamp_is_kept_aside_and_does_not_move_the_window() {
        const T0: i64 = 4_000_000;
        let mut core = core();
        record(&mut core, 0, 0, T0 + 1_000, 40);
        // A stamp of 1 ms after the epoch: a latency of more than an hour.
        let decision = core.on_record(
            0,
            1,
            Some((TimestampKind::CreateTime, T0 + 2_000)),
            Some(br#"{"visit":{"id":"v","event_time":1},"start_processing_time_ms":1}"#),
            T0 + 2_000,
        );
        assert!(matches!(
            decision,
            RecordDecision::DeadLetter { ref rejection, .. }
                if rejection.reason == RejectReason::ImplausibleLatency
        ));
        record(&mut core, 0, 2, T0 + WINDOW + 1, 40);
        record(&mut core, 1, 0, T0 + WINDOW + 1, 40);
        let batch = core.on_tick(T0 + WINDOW + 1).unwrap();
        assert_eq!(batch.documents[0].count, 1);
        assert_eq!(batch.documents[0].max, 40.0);
        assert_eq!(core.report().rejected, 1);
    }

    #[test]
    fn a_record_for_a_closed_window_is_late_and_kept() {
        let mut core = core();
        record(&mut core, 0, 0, 1_000, 10);
        record(&mut core, 0, 1, WINDOW + 1, 10);
        record(&mut core, 1, 0, WINDOW + 1, 10);
        core.on_tick(WINDOW + 1).expect("closes window 0");
        let decision = record(&mut core, 1, 1, 2_000, 10);
        assert!(matches!(
            decision,
            RecordDecision::DeadLetter { late_for_window: Some(0), ref rejection }
                if rejection.reason == RejectReason::Late
        ));
        assert_eq!(core.report().late, 1);
    }

    #[test]
    fn a_restored_partition_skips_what_a_written_window_counted() {
        let mut core = core();
        core.assign(
            &PartitionResume {
                partition: 0,
                offset: Some(5),
                restored: Some(RestoredPartition {
                    // Partition 0 was still in window 0; another partition took the job
                    // past it, and window 0 was written.
                    max_event_time_before: Some(8_000),
                    durable_through: Some(WINDOW),
                    replay_end: 9,
                }),
            },
            0,
        );
        assert_eq!(
            record(&mut core, 0, 6, 9_000, 10),
            RecordDecision::AlreadyCounted
        );
        assert!(matches!(
            record(&mut core, 0, 9, WINDOW + 600, 10),
            RecordDecision::Accepted { .. }
        ));
    }
}
