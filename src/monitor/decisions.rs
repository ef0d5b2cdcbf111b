//! The monitor's decisions for the partitions it owns, without I/O: what a consumed record is
//! (counted, already counted, or a dead letter), which window parts and progress a clock tick
//! publishes to the shuffle (see `shuffle`), what the broker's acknowledgements allow to be
//! committed, and what a partition moving to another instance drops. Processing time comes in
//! as an argument (`now_ms`), so every path — ticks, idleness, closing — is tested here.

use super::checkpoint::{Checkpoint, CheckpointRecord};
use super::known_totals::KnownTotals;
use super::measurement::{measure_with, InputRecord, Plausibility, Prefound, TimestampKind};
use super::restore::PartitionResume;
use super::unacknowledged::Unacknowledged;
use super::MonitorReport;
use crate::completeness::stream::{CompletenessRules, StreamArrivals};
use crate::dimension::selection::PartitionSplit;
use crate::dimension::split_config::{FieldPass, SplitConfig};
use crate::event_time::watermark::WatermarkConfig;
use crate::event_time::window::{Placement, ResumePoint, ValueKey, WindowConfig, WindowPart};
use crate::event_time::EventTimeOperator;
use crate::record::json_pointer::{find_each, Scalar, MAX_POINTERS};
use crate::record::lineage::{Lineage, LINEAGE_HEADER};
use crate::record::rejection::{RejectReason, Rejection};
use crate::record::stamp::LatencyStamps;
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
    /// Where each record's latency starts and ends.
    pub stamps: LatencyStamps,
    /// With `--source-topic`: the source topic, and how arrivals are judged.
    pub completeness: Option<(String, CompletenessRules)>,
    /// With `--dimension`: how windows are split by value.
    pub split: Option<SplitConfig>,
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
    /// A replayed record already counted in a window whose part was acknowledged on the
    /// shuffle topic before the restart: skipped.
    AlreadyCounted,
    /// To be kept on the dead-letter topic; its offset is not committed before the broker
    /// acknowledged it ([`MonitorCore::on_dead_letter_ack`]).
    DeadLetter {
        /// Why.
        rejection: Rejection,
        /// For a late record, the start of the window it missed (ms).
        late_for_window: Option<i64>,
        /// With `--source-topic`, a late record's arrival when its partition had no open
        /// window to carry it: published on its own, and acknowledged, before its offset is
        /// committed.
        arrival: Option<LateArrival>,
    },
}

/// A late record's arrival, published on its own (see [`RecordDecision::DeadLetter`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LateArrival {
    /// The window it was late for (ms).
    pub window_start: i64,
    /// Its input partition.
    pub partition: i32,
    /// Its input offset (which piece of the window's arrivals it is published as).
    pub offset: i64,
    /// The arrival.
    pub arrivals: StreamArrivals,
}

/// What a tick publishes to the shuffle: the window parts it closed (whose delivery
/// must be acknowledged before their records are committed), then the progress of the
/// partitions that passed a window's end.
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    /// Identifies the parts (one id per publication, its own id space) in
    /// [`MonitorCore::on_parts_ack`]; `None` when no part closed.
    pub parts_id: Option<u64>,
    /// (window start, partition, part), partitions in order, windows in start order.
    pub parts: Vec<(i64, i32, WindowPart)>,
    /// (partition, watermark through which its windows are closed and published): the close
    /// time of the last window it passed.
    pub progress: Vec<(i32, i64)>,
    /// With `--source-topic`: (window start, partition, arrivals) of the closed parts with
    /// arrivals, delivered (and acknowledged) with the parts.
    pub arrivals: Vec<(i64, i32, StreamArrivals)>,
    /// With `--dimension`: (window start, partition, split) of the closed parts, delivered
    /// (and acknowledged) with them.
    pub splits: Vec<(i64, i32, PartitionSplit)>,
}

/// What the partition stage keeps of the source records its partitions' records name, with
/// `--source-topic`: per (partition, open window), the arrivals, published with the part.
#[derive(Debug)]
struct ArrivalTracking {
    source_topic: String,
    rules: CompletenessRules,
    open: BTreeMap<(i32, i64), StreamArrivals>,
}

/// What the partition stage keeps about one partition it owns, besides its watermark and
/// windows (the event-time operator's): dropped whole when the partition is revoked.
#[derive(Debug, Default)]
struct PartitionState {
    /// The next offset to consume and the highest event time before it.
    position: Option<ResumePoint>,
    /// The first offset of this assignment: records before it (a group offset behind the
    /// checkpoint) were published before and are skipped.
    resume_from: Option<i64>,
    /// Output sent and not yet acknowledged.
    unacknowledged: Unacknowledged,
    /// The checkpoint last saved (nothing is saved twice).
    last_saved: Option<Checkpoint>,
    /// The progress last published.
    published_progress: Option<i64>,
}

/// The monitor's state between I/O events.
#[derive(Debug)]
pub struct MonitorCore {
    config: CoreConfig,
    operator: EventTimeOperator,
    partitions: BTreeMap<i32, PartitionState>,
    /// What this instance knows of each window's size (see [`KnownTotals`]).
    known: KnownTotals,
    next_publication: u64,
    report: MonitorReport,
    arrivals: Option<ArrivalTracking>,
    /// The current record's key (`--dimension`), reused from record to record.
    key: String,
    /// With a field dimension: the stamps and dimensions read in one pass over the value.
    field_pass: Option<FieldPass>,
}

impl MonitorCore {
    /// Nothing assigned yet.
    pub fn new(config: CoreConfig) -> Self {
        let completeness = config.completeness.clone();
        let operator = EventTimeOperator::new(config.window.clone(), config.watermark);
        MonitorCore {
            operator: match &config.split {
                Some(split) => operator.split_by_value(split.capacity()),
                None => operator,
            },
            key: String::new(),
            field_pass: config
                .split
                .as_ref()
                .and_then(|split| split.field_pass(&config.stamps)),
            config,
            partitions: BTreeMap::new(),
            known: KnownTotals::default(),
            next_publication: 0,
            report: MonitorReport::default(),
            arrivals: completeness.map(|(source_topic, rules)| ArrivalTracking {
                source_topic,
                rules,
                open: BTreeMap::new(),
            }),
        }
    }

    /// Takes a partition as [`super::restore::resume_plan`] says, at processing time `now_ms`.
    pub fn assign(&mut self, resume: &PartitionResume, now_ms: i64) {
        self.revoke(resume.partition);
        let state = PartitionState {
            resume_from: resume.offset,
            position: resume.offset.map(|offset| ResumePoint {
                offset,
                max_event_time_before: resume.restored.and_then(|r| r.max_event_time_before),
            }),
            ..PartitionState::default()
        };
        self.partitions.insert(resume.partition, state);
        self.operator
            .assign(resume.partition, resume.restored, now_ms);
    }

    /// A partition moved to another instance: everything about it is dropped (its open
    /// windows, outstanding output and position); its new owner resumes from its checkpoint
    /// and publishes the same parts.
    pub fn revoke(&mut self, partition: i32) {
        self.operator.revoke(partition);
        self.partitions.remove(&partition);
        if let Some(tracking) = &mut self.arrivals {
            tracking.open.retain(|&(p, _), _| p != partition);
        }
        self.known.forget_partition(partition);
    }

    /// The partitions this instance owns.
    pub fn partitions(&self) -> Vec<i32> {
        self.operator.partitions()
    }

    /// Whether this instance owns `partition` (records of others were fetched before it was
    /// taken away, and are its new owner's).
    pub fn owns(&self, partition: i32) -> bool {
        self.operator.owns(partition)
    }

    /// Decides about the record at `offset` of `partition`.
    pub fn on_record(
        &mut self,
        partition: i32,
        offset: i64,
        record: &InputRecord<'_>,
        now_ms: i64,
    ) -> RecordDecision {
        self.report.consumed += 1;
        let state = self.partitions.entry(partition).or_default();
        if state.resume_from.is_some_and(|from| offset < from) {
            return RecordDecision::AlreadyCounted;
        }
        let max_before = self.operator.max_event_time(partition);
        let position = state.position.get_or_insert(ResumePoint {
            offset,
            max_event_time_before: max_before,
        });
        position.offset = offset + 1;
        // With a field dimension, the value is read once for the stamps and the dimensions (an
        // invalid value is left to the measurement, which refuses it with the reason).
        let mut found: [Option<Scalar<'_>>; MAX_POINTERS] = Default::default();
        let shared = match (&self.field_pass, record.payload) {
            (Some(pass), Some(bytes)) if !bytes.is_empty() => {
                find_each(&pass.pointers, bytes, &mut found[..pass.pointers.len()]).is_ok()
            }
            _ => false,
        };
        let prefound = match &self.field_pass {
            Some(pass) if shared => Prefound {
                start: pass.start.map(|slot| found[slot].take()),
                end: pass.end.map(|slot| found[slot].take()),
            },
            _ => Prefound::default(),
        };
        let measurement = match measure_with(
            record,
            &self.config.stamps,
            now_ms,
            &self.config.plausibility,
            prefound,
        ) {
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
        let key = self.config.split.as_ref().map(|split| {
            let slots = self.field_pass.as_ref().map(|pass| &pass.dimensions);
            let found_of = |i: usize| {
                let slot = slots.filter(|_| shared)?.get(i).copied().flatten()?;
                Some(found[slot].as_ref())
            };
            let sla_ms = split.key_of(
                record.payload,
                record.headers,
                self.config.window.sla_ms,
                &found_of,
                &mut self.key,
            );
            ValueKey {
                key: &self.key,
                sla_ms,
            }
        });
        let placement = self.operator.on_keyed_record(
            partition,
            offset,
            measurement.event_time,
            measurement.latency_ms,
            key,
            now_ms,
        );
        self.operator.stamped_by_broker(
            partition,
            measurement.timestamp_kind == TimestampKind::LogAppendTime,
        );
        // A late record arrived too: its arrival rides with the partition's earliest open
        // window (a record replayed into a window written before is already accounted).
        let arrival_window = match placement {
            Placement::Accepted { window_start } => Some(window_start),
            Placement::Late { .. } => self.operator.first_open_window(partition),
            Placement::AlreadyCounted { .. } => None,
        };
        let unattributed = if matches!(placement, Placement::AlreadyCounted { .. }) {
            None
        } else {
            self.record_arrival(partition, arrival_window, record, measurement.event_time)
        };
        match placement {
            Placement::Accepted { .. } => RecordDecision::Accepted {
                timestamp_kind: measurement.timestamp_kind,
                negative_latency: measurement.latency_ms < 0,
            },
            Placement::AlreadyCounted { .. } => RecordDecision::AlreadyCounted,
            Placement::Late { window_start } => {
                self.report.late += 1;
                let detail = format!(
                    "window starting {} had closed for partition {partition} (through {:?}) when the record arrived",
                    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(window_start)
                        .unwrap_or_default()
                        .to_rfc3339(),
                    self.operator.closed_through().get(&partition)
                );
                let rejection = Rejection::new(RejectReason::Late, detail);
                let mut decision =
                    self.dead_letter(partition, offset, max_before, rejection, Some(window_start));
                if let RecordDecision::DeadLetter { arrival, .. } = &mut decision {
                    *arrival = unattributed.map(|arrivals| LateArrival {
                        window_start,
                        partition,
                        offset,
                        arrivals,
                    });
                }
                decision
            }
        }
    }

    /// With `--source-topic`, the source record the lineage of `record` names arrived at
    /// `arrival_ms`, in `partition`'s window starting at `window`; with no window open, its
    /// arrival alone is returned (to be published on its own).
    fn record_arrival(
        &mut self,
        partition: i32,
        window: Option<i64>,
        record: &InputRecord<'_>,
        arrival_ms: i64,
    ) -> Option<StreamArrivals> {
        let tracking = self.arrivals.as_mut()?;
        let lineage = record
            .headers
            .last(LINEAGE_HEADER)
            .and_then(|value| Lineage::parse(value).ok());
        let Some(lineage) = lineage else {
            self.report.without_lineage += 1;
            return None;
        };
        let (Some(source_ms), true) = (
            lineage.timestamp_ms,
            lineage.topic == tracking.source_topic.as_str(),
        ) else {
            self.report.without_lineage += 1;
            return None;
        };
        let mut alone = StreamArrivals::default();
        let stream = match window {
            Some(window) => tracking.open.entry((partition, window)).or_default(),
            None => {
                self.report.late_arrivals_alone += 1;
                &mut alone
            }
        };
        stream.record(
            &tracking.rules,
            lineage.partition,
            lineage.offset,
            source_ms,
            arrival_ms,
        );
        (!alone.is_empty()).then_some(alone)
    }

    fn dead_letter(
        &mut self,
        partition: i32,
        offset: i64,
        max_before: Option<i64>,
        rejection: Rejection,
        late_for_window: Option<i64>,
    ) -> RecordDecision {
        self.partitions
            .entry(partition)
            .or_default()
            .unacknowledged
            .add_dead_letter(offset, max_before);
        RecordDecision::DeadLetter {
            rejection,
            late_for_window,
            arrival: None,
        }
    }

    /// The broker acknowledged the dead letter of `offset` in `partition`.
    pub fn on_dead_letter_ack(&mut self, partition: i32, offset: i64) {
        if let Some(state) = self.partitions.get_mut(&partition) {
            state.unacknowledged.ack_dead_letter(offset);
        }
    }

    /// The consumer reached the end of `partition`'s log (Kafka's partition EOF): its silence
    /// from now on counts towards idleness.
    pub fn on_caught_up(&mut self, partition: i32) {
        self.operator.caught_up(partition);
    }

    /// Whether every owned partition's records closed the earliest open window, which a tick
    /// would now publish (see
    /// [`crate::event_time::EventTimeOperator::closing_due`]).
    pub fn closing_due(&self) -> bool {
        self.operator.closing_due()
    }

    /// Every broker is unreachable at `now_ms`: silence proves nothing, no partition becomes
    /// idle (called on every tick of the outage).
    pub fn on_broker_unreachable(&mut self, now_ms: i64) {
        self.operator.hold_idleness(now_ms);
    }

    /// Advances every partition's watermark at processing time `now_ms`; returns the window
    /// parts they closed and the progress to publish, or `None` when there is nothing to say.
    pub fn on_tick(&mut self, now_ms: i64) -> Option<Publication> {
        let window = &self.config.window;
        let mut parts = Vec::new();
        let mut outstanding = BTreeMap::new();
        let mut progress = Vec::new();
        let mut arrivals = Vec::new();
        let mut splits = Vec::new();
        for advance in self.operator.on_tick(now_ms) {
            for closed in advance.closed {
                let close_at = window.close_at(closed.start_ms);
                let point = closed.resume_point;
                let entry = outstanding
                    .entry(advance.partition)
                    .or_insert((close_at, point));
                entry.0 = entry.0.min(close_at);
                if point.offset < entry.1.offset {
                    entry.1 = point;
                }
                if let Some(tracking) = &mut self.arrivals {
                    let stream = tracking.open.remove(&(advance.partition, closed.start_ms));
                    if let Some(stream) = stream.filter(|s| !s.is_empty()) {
                        arrivals.push((closed.start_ms, advance.partition, stream));
                    }
                }
                if let Some(split) = closed.split {
                    splits.push((closed.start_ms, advance.partition, split));
                }
                parts.push((closed.start_ms, advance.partition, closed.part));
            }
            // The close time of the last window the partition passed.
            let last_passed = window.close_at(window.window_start(
                advance.closed_through + 1 - window.size_ms - window.allowed_lateness_ms,
            ));
            let state = self.partitions.entry(advance.partition).or_default();
            if state.published_progress.is_none_or(|p| last_passed > p) {
                state.published_progress = Some(last_passed);
                progress.push((advance.partition, last_passed));
            }
        }
        if parts.is_empty() && progress.is_empty() {
            return None;
        }
        self.shrink_parts_of_large_windows(&mut parts);
        let parts_id = (!parts.is_empty()).then(|| {
            let id = self.next_publication;
            self.next_publication += 1;
            for (partition, (close_at, point)) in outstanding {
                self.partitions
                    .entry(partition)
                    .or_default()
                    .unacknowledged
                    .add_parts(id, close_at, point);
            }
            id
        });
        self.report.parts_published += parts.len() as u64;
        Some(Publication {
            parts_id,
            parts,
            progress,
            arrivals,
            splits,
        })
    }

    /// Folds the raw values of the parts whose window holds more than the exact threshold —
    /// as far as this instance knows: its published parts, the parts closing now and the
    /// parts still open — into their t-digests. Such a window cannot be exact, and its
    /// statistics come out the same (see [`crate::distribution::digest::LatencyDigest::fold_values`]); its
    /// parts travel as centroids, not as up to `exact_threshold` values each (with many
    /// partitions, every value went through the shuffle).
    fn shrink_parts_of_large_windows(&mut self, parts: &mut [(i64, i32, WindowPart)]) {
        let threshold = self.config.window.digest.exact_threshold as u64;
        let mut closing: BTreeMap<i64, (Vec<i32>, u64)> = BTreeMap::new();
        for (start, partition, part) in parts.iter() {
            let entry = closing.entry(*start).or_default();
            entry.0.push(*partition);
            entry.1 += part.digest.count();
        }
        let large: Vec<i64> = closing
            .iter()
            .filter(|(&start, (partitions, count))| {
                count
                    + self.known.published(start, partitions)
                    + self.operator.open_records_in(start)
                    > threshold
            })
            .map(|(&start, _)| start)
            .collect();
        for (start, partition, part) in parts.iter_mut() {
            if large.contains(start) {
                part.digest.fold_values();
            }
            self.known
                .on_published(*start, *partition, part.digest.count());
        }
        let closed_everywhere = self.operator.closed_through().values().copied().min();
        if let Some(closed) = closed_everywhere {
            let window = &self.config.window;
            self.known
                .retain_windows(|start| window.close_at(start) > closed);
        }
    }

    /// The broker acknowledged every part of publication `id`; returns whether it was pending.
    pub fn on_parts_ack(&mut self, id: u64) -> bool {
        let mut pending = false;
        for state in self.partitions.values_mut() {
            pending |= state.unacknowledged.ack_parts(id);
        }
        pending
    }

    /// The checkpoints to save before the next commit: per partition whose state changed
    /// since the last save, the first offset still needed by an open window, a window not yet
    /// acknowledged by the sink or a dead letter not yet acknowledged by the broker.
    pub fn checkpoints_due(&self) -> Vec<CheckpointRecord> {
        let open_windows = self.operator.resume_points();
        let closed_through = self.operator.closed_through();
        self.partitions
            .iter()
            .filter_map(|(&partition, state)| {
                let checkpoint = state.unacknowledged.checkpoint(
                    state.position?,
                    open_windows.get(&partition).copied(),
                    closed_through.get(&partition).copied(),
                );
                (state.last_saved != Some(checkpoint)).then(|| CheckpointRecord {
                    group: self.config.group.clone(),
                    topic: self.config.input_topic.clone(),
                    partition,
                    job: self.config.job_name.clone(),
                    window_ms: self.config.window.size_ms,
                    checkpoint,
                })
            })
            .collect()
    }

    /// The broker acknowledged these checkpoints.
    pub fn checkpoints_saved(&mut self, records: &[CheckpointRecord]) {
        for record in records {
            if let Some(state) = self.partitions.get_mut(&record.partition) {
                state.last_saved = Some(record.checkpoint);
            }
        }
    }

    /// What this run did so far.
    pub fn report(&self) -> MonitorReport {
        self.report
    }

    /// The lowest watermark among the owned partitions (ms).
    pub fn watermark(&self) -> Option<i64> {
        self.operator.watermark()
    }

    /// Dimension values the owned partitions' open windows keep parts for.
    pub fn values_held(&self) -> usize {
        self.operator.values_held()
    }

    /// Windows open in at least one owned partition.
    pub fn open_windows(&self) -> usize {
        self.operator.open_windows()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distribution::digest::DigestConfig;
    use crate::event_time::RestoredPartition;

    const WINDOW: i64 = 10_000;

    fn core() -> MonitorCore {
        core_with(DigestConfig::default())
    }

    fn core_with(digest: DigestConfig) -> MonitorCore {
        let mut core = MonitorCore::new(CoreConfig {
            input_topic: "reduced".into(),
            group: "g".into(),
            job_name: "job".into(),
            window: WindowConfig {
                size_ms: WINDOW,
                allowed_lateness_ms: 0,
                sla_ms: 1_000,
                quantiles: vec![0.5, 0.99],
                digest,
            },
            watermark: WatermarkConfig {
                max_out_of_orderness_ms: 0,
                idle_timeout_ms: 5_000,
                producer_hold_ms: 0,
                assume_broker_stamped: false,
            },
            plausibility: Plausibility {
                max_future_ms: 60_000,
                max_latency_ms: 3_600_000,
                max_clock_skew_ms: 5_000,
            },
            stamps: LatencyStamps::default(),
            completeness: None,
            split: None,
        });
        for partition in [0, 1] {
            core.assign(
                &PartitionResume {
                    partition,
                    offset: None,
                    restored: None,
                    move_consumer: false,
                },
                0,
            );
        }
        core
    }

    fn input<'a>(
        timestamp: Option<(TimestampKind, i64)>,
        payload: Option<&'a [u8]>,
    ) -> InputRecord<'a> {
        InputRecord {
            timestamp,
            payload,
            headers: &crate::record::stamp::NoHeaders,
        }
    }

    fn record(core: &mut MonitorCore, p: i32, offset: i64, t: i64, latency: i64) -> RecordDecision {
        let value = format!(
            r#"{{"visit":{{"id":"v","event_time":1}},"start_processing_time_ms":{}}}"#,
            t - latency
        );
        core.on_record(
            p,
            offset,
            &input(Some((TimestampKind::CreateTime, t)), Some(value.as_bytes())),
            t,
        )
    }

    /// With a field dimension the value is read once for the stamp and the dimension: every
    /// record is decided as without the dimension (refusals with the same reason), and its
    /// value is what reading the dimension alone gives.
    #[test]
    fn one_pass_over_the_value_decides_as_reading_each_field_alone() {
        use crate::dimension::spec::read_key;
        let dimensions: Vec<crate::dimension::spec::Dimension> =
            vec!["tenant=field:/tenant".parse().unwrap()];
        let mut split_core = core();
        split_core.config.split = Some(SplitConfig {
            dimensions: dimensions.clone(),
            max_values: 10,
            sla_rules: Default::default(),
        });
        split_core.field_pass = split_core
            .config
            .split
            .as_ref()
            .and_then(|s| s.field_pass(&split_core.config.stamps));
        assert!(split_core.field_pass.is_some());
        let mut plain = core();
        let payloads = [
            r#"{"visit":{"id":"v","event_time":1},"start_processing_time_ms":900,"tenant":"gold"}"#,
            r#"{"start_processing_time_ms":950,"tenant":7}"#,
            r#"{"tenant":"gold","start_processing_time_ms":"soon"}"#,
            r#"{"tenant":"gold"}"#,
            r#"{"start_processing_time_ms":980,"tenant":{"x":1}}"#,
            r#"{"start_processing_time_ms":990,"tenant":"a","tenant":"b"}"#,
            r#"{"start_processing_time_ms":990,"#,
            "",
        ];
        for (offset, payload) in payloads.iter().enumerate() {
            let record = input(
                Some((TimestampKind::CreateTime, 1_000)),
                Some(payload.as_bytes()),
            );
            let with = split_core.on_record(0, offset as i64, &record, 1_000);
            let without = plain.on_record(0, offset as i64, &record, 1_000);
            let reasons = |d: &RecordDecision| match d {
                RecordDecision::DeadLetter { rejection, .. } => Some(rejection.reason),
                _ => None,
            };
            assert_eq!(reasons(&with), reasons(&without), "{payload}");
            assert_eq!(
                std::mem::discriminant(&with),
                std::mem::discriminant(&without),
                "{payload}"
            );
            if matches!(with, RecordDecision::Accepted { .. }) {
                let mut alone = String::new();
                read_key(
                    &dimensions,
                    Some(payload.as_bytes()),
                    &crate::record::stamp::NoHeaders,
                    &mut alone,
                );
                assert_eq!(split_core.key, alone, "{payload}");
            }
        }
    }

    /// The whole windows a publication's parts make (as the merge stage merges them).
    fn windows(publication: &Option<Publication>) -> Vec<crate::event_time::window::WindowResult> {
        let Some(publication) = publication else {
            return Vec::new();
        };
        let mut by_window: BTreeMap<i64, BTreeMap<i32, WindowPart>> = BTreeMap::new();
        for (start, p, part) in &publication.parts {
            by_window
                .entry(*start)
                .or_default()
                .insert(*p, part.clone());
        }
        by_window
            .into_iter()
            .filter_map(|(start, parts)| {
                crate::event_time::merge::merge_parts(&core().config.window, start, parts)
            })
            .collect()
    }

    fn offsets(records: &[CheckpointRecord]) -> BTreeMap<i32, i64> {
        records
            .iter()
            .map(|r| (r.partition, r.checkpoint.offset))
            .collect()
    }

    /// The window the latencies make when every part keeps its raw values (as before parts
    /// were folded): what the published parts must merge to.
    fn unfolded_window(
        digest: DigestConfig,
        latencies: &[(i32, i64)],
    ) -> crate::event_time::window::WindowResult {
        let mut parts: BTreeMap<i32, WindowPart> = BTreeMap::new();
        for &(p, latency) in latencies {
            let part = parts.entry(p).or_insert_with(|| WindowPart::new(digest));
            part.add(latency, 1_000);
        }
        let mut window = core_with(digest).config.window;
        window.digest = digest;
        crate::event_time::merge::merge_parts(&window, 0, parts).unwrap()
    }

    #[test]
    fn parts_of_a_window_above_the_exact_threshold_travel_as_digests_with_the_same_result() {
        let digest = DigestConfig {
            exact_threshold: 10,
            compression: 20,
        };
        // Partition 0 closes the window first, partition 1 a tick later: each time the
        // instance knows the window holds 12 records (one part open or published, one closing).
        let mut core = core_with(digest);
        let mut latencies = Vec::new();
        for i in 0..6 {
            record(&mut core, 0, i, 8_000 + i, 100 * (i + 1));
            record(&mut core, 1, i, 9_000 + i, 1_500 + 7 * i);
            latencies.extend([(0, 100 * (i + 1)), (1, 1_500 + 7 * i)]);
        }
        record(&mut core, 0, 6, WINDOW + 1, 50);
        let first = core.on_tick(WINDOW + 1).unwrap();
        record(&mut core, 1, 6, WINDOW + 2, 50);
        let second = core.on_tick(WINDOW + 2).unwrap();
        let mut parts = BTreeMap::new();
        for (start, p, part) in first.parts.into_iter().chain(second.parts) {
            assert_eq!(start, 0);
            assert!(
                !part.digest.has_raw_values(),
                "partition {p}'s part carries raw values"
            );
            parts.insert(p, part);
        }
        assert_eq!(parts.len(), 2);
        let merged = crate::event_time::merge::merge_parts(&core.config.window, 0, parts).unwrap();
        let expected = unfolded_window(digest, &latencies);
        assert!(!merged.stats.exact);
        assert_eq!(merged.stats, expected.stats);
        assert_eq!(merged.over_sla, expected.over_sla);
    }

    #[test]
    fn parts_of_a_window_that_may_be_exact_keep_their_values() {
        let digest = DigestConfig {
            exact_threshold: 10,
            compression: 20,
        };
        let mut core = core_with(digest);
        for i in 0..5 {
            record(&mut core, 0, i, 8_000 + i, 100 + i);
            record(&mut core, 1, i, 9_000 + i, 200 + i);
        }
        record(&mut core, 0, 5, WINDOW + 1, 50);
        record(&mut core, 1, 5, WINDOW + 1, 50);
        let publication = core.on_tick(WINDOW + 1);
        let parts = &publication.as_ref().unwrap().parts;
        assert_eq!(parts.len(), 2);
        assert!(parts
            .iter()
            .all(|(_, _, part)| part.digest.has_raw_values()));
        let closed = windows(&publication);
        assert!(closed[0].stats.exact);
        assert_eq!(closed[0].stats.count, 10);
    }

    #[test]
    fn nothing_is_committed_past_a_window_before_its_parts_are_acknowledged() {
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
        let publication = core.on_tick(WINDOW + 1);
        let closed = windows(&publication);
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].stats.count, 6);
        let publication = publication.unwrap();
        assert_eq!(publication.parts.len(), 2, "one part per partition");
        assert_eq!(
            publication.progress,
            vec![(0, WINDOW - 1), (1, WINDOW - 1)],
            "both partitions passed window 0"
        );
        // Published but not acknowledged: still needed after a crash.
        let due = core.checkpoints_due();
        assert_eq!(offsets(&due), BTreeMap::from([(0, 0), (1, 0)]));
        assert!(
            due[0].checkpoint.durable_through < Some(WINDOW - 1),
            "window 0 (closing at {}) is not durable yet",
            WINDOW - 1
        );
        core.checkpoints_saved(&due);
        assert!(core.checkpoints_due().is_empty(), "nothing changed since");
        assert!(core.on_parts_ack(publication.parts_id.unwrap()));
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
            &input(Some((TimestampKind::CreateTime, 1_000)), Some(b"{oops")),
            1_000,
        );
        assert!(matches!(
            decision,
            RecordDecision::DeadLetter { ref rejection, late_for_window: None, .. }
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
        assert!(windows(&core.on_tick(2_000)).is_empty());
        // Partition 0 stops: once it reached its end and the idle timeout passed, it is idle
        // and its watermark follows the clock.
        assert!(
            windows(&core.on_tick(WINDOW + 6_000)).is_empty(),
            "not known to be caught up"
        );
        core.on_caught_up(0);
        let closed = windows(&core.on_tick(WINDOW + 6_000));
        assert_eq!(closed[0].start_ms, 0);
        assert_eq!(closed[0].stats.count, 1);
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
                windows(&core.on_tick(now)).is_empty(),
                "closed at {now} during the outage"
            );
        }
        // Closed only once the idle timeout (5 s) passed after the outage.
        assert!(windows(&core.on_tick(34_999)).is_empty());
        assert_eq!(windows(&core.on_tick(35_000)).len(), 1);
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
            &input(
                Some((TimestampKind::CreateTime, T0 + 2_000)),
                Some(br#"{"visit":{"id":"v","event_time":1},"start_processing_time_ms":1}"#),
            ),
            T0 + 2_000,
        );
        assert!(matches!(
            decision,
            RecordDecision::DeadLetter { ref rejection, .. }
                if rejection.reason == RejectReason::ImplausibleLatency
        ));
        record(&mut core, 0, 2, T0 + WINDOW + 1, 40);
        record(&mut core, 1, 0, T0 + WINDOW + 1, 40);
        let closed = windows(&core.on_tick(T0 + WINDOW + 1));
        assert_eq!(closed[0].stats.count, 1);
        assert_eq!(closed[0].stats.max, 40.0);
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
            RecordDecision::DeadLetter { late_for_window: Some(0), ref rejection, .. }
                if rejection.reason == RejectReason::Late
        ));
        assert_eq!(core.report().late, 1);
    }

    #[test]
    fn a_late_record_with_no_window_open_carries_its_arrival_alone() {
        let mut core = core();
        core.arrivals = Some(ArrivalTracking {
            source_topic: "visits".into(),
            rules: CompletenessRules {
                window_ms: WINDOW,
                sla_ms: 1_000,
                lost_after_ms: 600_000,
            },
            open: BTreeMap::new(),
        });
        let with_lineage = |core: &mut MonitorCore, p: i32, offset: i64, t: i64, source: i64| {
            let value = format!(
                r#"{{"visit":{{"id":"v","event_time":1}},"start_processing_time_ms":{}}}"#,
                t - 10
            );
            let lineage = format!("visits:3:{source}:{}", t - 20);
            let headers: &[(&str, &[u8])] = &[(LINEAGE_HEADER, lineage.as_bytes())];
            let record = InputRecord {
                timestamp: Some((TimestampKind::CreateTime, t)),
                payload: Some(value.as_bytes()),
                headers: &headers,
            };
            core.on_record(p, offset, &record, t)
        };
        with_lineage(&mut core, 0, 0, 1_000, 100);
        with_lineage(&mut core, 0, 1, WINDOW + 1, 101);
        with_lineage(&mut core, 1, 0, WINDOW + 1, 102);
        core.on_tick(WINDOW + 1).expect("closes window 0");
        // Partition 1 has window 1 open: its late record rides with it.
        let riding = with_lineage(&mut core, 1, 1, 2_000, 103);
        assert!(matches!(
            riding,
            RecordDecision::DeadLetter {
                arrival: None,
                late_for_window: Some(0),
                ..
            }
        ));
        // Both partitions close every window by idleness; a late record then goes alone.
        core.on_caught_up(0);
        core.on_caught_up(1);
        let publications: Vec<Publication> = [WINDOW + 2_000, WINDOW * 2, WINDOW * 3]
            .into_iter()
            .filter_map(|now| core.on_tick(now))
            .collect();
        assert!(
            publications
                .iter()
                .flat_map(|p| &p.arrivals)
                .any(|(start, p, _)| (*start, *p) == (WINDOW, 1)),
            "window 1 closed by idleness: {publications:?}"
        );
        let alone = with_lineage(&mut core, 1, 2, WINDOW + 2_000, 104);
        let RecordDecision::DeadLetter {
            arrival: Some(late),
            ..
        } = alone
        else {
            panic!("no arrival carried: {alone:?}");
        };
        assert_eq!(
            (late.window_start, late.partition, late.offset),
            (WINDOW, 1, 2)
        );
        let source = &late.arrivals.sources[&3];
        assert!(source.arrivals.within_sla.contains(104));
        assert_eq!(core.report().late_arrivals_alone, 1);
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
                move_consumer: false,
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

    #[test]
    fn a_revoked_partition_holds_nothing_back_and_a_reassigned_one_skips_published_records() {
        let mut core = core();
        record(&mut core, 0, 0, 1_000, 10);
        record(&mut core, 1, 0, 1_000, 10);
        core.revoke(1);
        assert_eq!(core.partitions(), vec![0]);
        assert_eq!(
            offsets(&core.checkpoints_due()),
            BTreeMap::from([(0, 0)]),
            "partition 1 is its new owner's to checkpoint"
        );
        // Assigned again with the group's offset behind its checkpoint: records before the
        // checkpoint's offset were published by the previous owner.
        core.assign(
            &PartitionResume {
                partition: 1,
                offset: Some(3),
                restored: None,
                move_consumer: false,
            },
            0,
        );
        assert_eq!(
            record(&mut core, 1, 2, 1_500, 10),
            RecordDecision::AlreadyCounted
        );
        assert!(matches!(
            record(&mut core, 1, 3, 1_600, 10),
            RecordDecision::Accepted { .. }
        ));
    }
}
