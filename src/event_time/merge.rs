//! Merging, in one place: a window's per-partition parts into its result ([`merge_parts`], the
//! only place a window's statistics are computed), and one shuffle partition's merge state
//! ([`WindowMerger`]), which turns the window parts and progress that
//! the owners of the input partitions publish (see `shuffle`) into whole windows, for the
//! windows that shuffle partition merges.
//!
//! A window is merged once **every** input partition's progress has passed its close time —
//! a partition without any progress yet (its owner has not started, or died before
//! publishing) holds every window back: silence is never taken for idleness here; idleness
//! is judged by the partition's owner, with its evidence, and arrives as progress. Parts
//! merge in partition order, as one instance merges them, so the result does not depend on
//! how many instances ran or in which order parts arrived. A part of a window already
//! written (an owner that replayed after a failover) is ignored.
//!
//! No I/O: the monitor feeds it what it reads from the shuffle topic.

use crate::distribution::digest::{summarize, LatencyDigest};
use crate::distribution::latency_histogram::{merge_histograms, LatencyHistogram};
use crate::event_time::window::{WindowConfig, WindowPart, WindowResult};
use std::collections::BTreeMap;

/// Merges a window's per-partition parts, in partition order, into its result; `None` when
/// the parts hold no record. The only place a window's statistics are computed, whether its
/// parts were gathered by one instance or received from several.
pub fn merge_parts(
    config: &WindowConfig,
    start: i64,
    parts: BTreeMap<i32, WindowPart>,
) -> Option<WindowResult> {
    let digests: Vec<&LatencyDigest> = parts.values().map(|p| &p.digest).collect();
    let stats = summarize(&digests, &config.quantiles, config.digest)?;
    let histograms: Option<Vec<&LatencyHistogram>> =
        parts.values().map(|p| p.histogram.as_ref()).collect();
    Some(WindowResult {
        start_ms: start,
        end_ms: start + config.size_ms,
        stats,
        over_sla: parts.values().map(|p| p.over_sla).sum(),
        histogram: histograms
            .map(|histograms| merge_histograms(&histograms, config.digest.exact_threshold)),
        parts,
    })
}

/// The merge state of one shuffle partition.
#[derive(Debug, Clone)]
pub struct WindowMerger {
    config: WindowConfig,
    input_partitions: Vec<i32>,
    progress: BTreeMap<i32, i64>,
    pending: BTreeMap<i64, BTreeMap<i32, WindowPart>>,
    /// Windows closing at or before this were handed out by [`Self::ready`] or are written
    /// (the marker of an earlier merger).
    merged_through: Option<i64>,
}

impl WindowMerger {
    /// Merges windows of `config` over the input partitions `input_partitions`.
    pub fn new(config: WindowConfig, input_partitions: Vec<i32>) -> Self {
        WindowMerger {
            config,
            input_partitions,
            progress: BTreeMap::new(),
            pending: BTreeMap::new(),
            merged_through: None,
        }
    }

    /// The input topic's partitions changed (partitions were added).
    pub fn set_input_partitions(&mut self, partitions: Vec<i32>) {
        self.input_partitions = partitions;
    }

    /// A partition's part of the window starting at `window_start`; ignored (returns false)
    /// when that window was already merged.
    pub fn on_part(&mut self, window_start: i64, partition: i32, part: WindowPart) -> bool {
        let close_at = self.config.close_at(window_start);
        if self.merged_through.is_some_and(|m| m >= close_at) {
            return false;
        }
        self.pending
            .entry(window_start)
            .or_default()
            .insert(partition, part);
        true
    }

    /// A partition's windows are closed and published through `closed_through`.
    pub fn on_progress(&mut self, partition: i32, closed_through: i64) {
        let entry = self.progress.entry(partition).or_insert(closed_through);
        *entry = (*entry).max(closed_through);
    }

    /// The windows closing at or before `written_through` are durably written (the marker of
    /// an earlier merger, or of this one once the sink acknowledged).
    pub fn on_written(&mut self, written_through: i64) {
        self.merged_through = Some(
            self.merged_through
                .map_or(written_through, |m| m.max(written_through)),
        );
        let config = &self.config;
        self.pending
            .retain(|&start, _| config.close_at(start) > written_through);
    }

    /// The watermark every input partition has passed (`None` while one has no progress).
    pub fn watermark(&self) -> Option<i64> {
        self.input_partitions
            .iter()
            .map(|p| self.progress.get(p).copied())
            .collect::<Option<Vec<i64>>>()
            .and_then(|w| w.into_iter().min())
    }

    /// Input partitions that hold the oldest pending window back (no progress, or progress
    /// before its close), for metrics and logs.
    pub fn holding_back(&self) -> Vec<i32> {
        let Some((&start, _)) = self.pending.first_key_value() else {
            return Vec::new();
        };
        let close_at = self.config.close_at(start);
        self.input_partitions
            .iter()
            .copied()
            .filter(|p| self.progress.get(p).is_none_or(|&c| c < close_at))
            .collect()
    }

    /// Merges, in start order, every pending window all input partitions have passed, and
    /// returns them (with the watermark they were merged at); they are not returned again.
    pub fn ready(&mut self) -> Option<(i64, Vec<WindowResult>)> {
        let watermark = self.watermark()?;
        if self.merged_through.is_some_and(|m| m >= watermark) {
            return None;
        }
        let mut results = Vec::new();
        while let Some((&start, _)) = self.pending.first_key_value() {
            if self.config.close_at(start) > watermark {
                break;
            }
            let parts = self.pending.remove(&start).expect("first key exists");
            results.extend(merge_parts(&self.config, start, parts));
        }
        self.merged_through = Some(watermark);
        Some((watermark, results))
    }

    /// Windows waiting for progress.
    pub fn pending_windows(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distribution::digest::{DigestConfig, LatencyDigest};
    use crate::event_time::watermark::WatermarkConfig;
    use crate::event_time::whole_windows;
    use crate::event_time::window::{Observation, PartitionWindows};
    use crate::monitor::decisions::{CoreConfig, MonitorCore, Publication, RecordDecision};
    use crate::monitor::measurement::{InputRecord, Plausibility, TimestampKind};
    use crate::monitor::restore::PartitionResume;
    use crate::shuffle::authentication::RecordAuthentication;
    use crate::shuffle::JobIdentity;
    use crate::shuffle::{part_record, window_part, Shuffle, ShuffleEvent, ShuffleRecord};
    use proptest::prelude::*;

    fn config() -> WindowConfig {
        WindowConfig {
            size_ms: 1_000,
            allowed_lateness_ms: 0,
            sla_ms: 500,
            quantiles: vec![0.5, 0.9, 0.99],
            digest: DigestConfig {
                exact_threshold: 40,
                compression: 20,
            },
        }
    }

    fn part(values: &[f64]) -> WindowPart {
        let mut digest = LatencyDigest::new(config().digest);
        values.iter().for_each(|&v| digest.add(v));
        let mut histogram = crate::distribution::latency_histogram::LatencyHistogram::new();
        values.iter().for_each(|&v| histogram.add(v as i64));
        WindowPart {
            digest,
            over_sla: values.iter().filter(|&&v| v > 500.0).count() as u64,
            histogram: Some(histogram),
        }
    }

    #[test]
    fn a_window_waits_for_every_partition_including_silent_ones() {
        let mut m = WindowMerger::new(config(), vec![0, 1, 2]);
        m.on_part(0, 0, part(&[10.0]));
        m.on_progress(0, 5_000);
        m.on_progress(1, 5_000);
        assert!(m.ready().is_none(), "partition 2 has no progress yet");
        assert_eq!(m.holding_back(), vec![2]);
        m.on_progress(2, 998);
        assert!(
            m.ready().is_none_or(|(_, windows)| windows.is_empty()),
            "partition 2 has not passed 999"
        );
        m.on_progress(2, 999);
        let (watermark, windows) = m.ready().unwrap();
        assert_eq!(watermark, 999);
        assert_eq!(windows.len(), 1);
        assert_eq!(windows[0].stats.count, 1);
    }

    #[test]
    fn parts_of_written_windows_are_ignored() {
        let mut m = WindowMerger::new(config(), vec![0]);
        m.on_written(1_999);
        assert!(
            !m.on_part(1_000, 0, part(&[1.0])),
            "replayed after a failover"
        );
        assert!(m.on_part(2_000, 0, part(&[1.0])));
        m.on_progress(0, 2_999);
        assert_eq!(m.ready().unwrap().1.len(), 1);
        assert!(!m.on_part(2_000, 0, part(&[1.0])));
    }

    /// Where the property test's event times start (a plausible Unix time, window-aligned).
    const T0: i64 = 1_700_000_000_000;

    /// Runs one partition's records through the product's partition stage decisions
    /// ([`MonitorCore`], the partition's owner), ticking after each record, and returns the
    /// shuffle records it publishes, in order: the parts of each closed window, then the
    /// progress by the product's own formula. At the end of its input the partition is caught
    /// up and goes idle, which closes its last windows.
    fn owner_publishes(partition: i32, records: &[(i64, i64)]) -> Vec<ShuffleRecord> {
        let mut core = MonitorCore::new(CoreConfig {
            input_topic: "t".into(),
            group: "g".into(),
            job_name: "job".into(),
            window: config(),
            watermark: WatermarkConfig {
                max_out_of_orderness_ms: 0,
                idle_timeout_ms: 1_000,
                producer_hold_ms: 0,
                assume_broker_stamped: false,
            },
            plausibility: Plausibility {
                max_future_ms: 60_000,
                max_latency_ms: 3_600_000,
                max_clock_skew_ms: 0,
            },
            stamps: crate::record::stamp::LatencyStamps::default(),
            completeness: None,
        });
        core.assign(
            &PartitionResume {
                partition,
                offset: None,
                restored: None,
                move_consumer: false,
            },
            T0,
        );
        let mut out = Vec::new();
        let mut publish = |publication: Option<Publication>| {
            let Some(publication) = publication else {
                return;
            };
            for (start, p, part) in &publication.parts {
                out.push(part_record(*start, *p, part));
            }
            for &(partition, closed_through) in &publication.progress {
                out.push(ShuffleRecord::Progress {
                    partition,
                    closed_through,
                });
            }
        };
        for (offset, &(t, latency)) in records.iter().enumerate() {
            let payload = format!(
                r#"{{"visit":{{"id":"v","event_time":1}},"start_processing_time_ms":{}}}"#,
                T0 + t - latency
            );
            let record = InputRecord {
                timestamp: Some((TimestampKind::CreateTime, T0 + t)),
                payload: Some(payload.as_bytes()),
                headers: &crate::record::stamp::NoHeaders,
            };
            let decision = core.on_record(partition, offset as i64, &record, T0 + t);
            assert!(
                matches!(decision, RecordDecision::Accepted { .. }),
                "{decision:?}"
            );
            publish(core.on_tick(T0 + t));
        }
        core.on_caught_up(partition);
        publish(core.on_tick(T0 + 1_000_000_000));
        out
    }

    proptest! {
        /// Parts published per partition by separate owners, received interleaved in any
        /// order across partitions (in order within each) through the shuffle encoding,
        /// merge into the windows one operator computes over all partitions, when no record
        /// is late for its own partition.
        #[test]
        fn merged_parts_equal_the_single_instance_windows(
            partitions in proptest::collection::vec(
                proptest::collection::vec((0i64..300, 0i64..1_000), 0..80), 1..4),
            interleaving in proptest::collection::vec(0usize..4, 0..400),
        ) {
            // Per partition, non-decreasing event times: nothing is late, as in the
            // synchronizer's output on a broker that applies LogAppendTime.
            let partitions: Vec<Vec<(i64, i64)>> = partitions
                .into_iter()
                .map(|records| {
                    let mut t = 0;
                    records.into_iter().map(|(dt, l)| { t += dt; (t, l) }).collect()
                })
                .collect();
            // Each partition's windows alone, closed at the end, merged: one instance's view.
            let mut closed = Vec::new();
            for (p, records) in partitions.iter().enumerate() {
                let mut windows = PartitionWindows::new(config());
                for (offset, &(t, latency)) in records.iter().enumerate() {
                    windows.place(Observation {
                        offset: offset as i64,
                        event_time: T0 + t,
                        latency_ms: latency,
                        partition_max_before: None,
                        partition_watermark: None,
                        replayed: false,
                    });
                }
                closed.extend(windows.close(i64::MAX / 2).into_iter().map(|c| (p as i32, c)));
            }
            let expected = whole_windows(&config(), closed);

            let shuffle = Shuffle::new(JobIdentity::new("g", "t", "job", 60_000), RecordAuthentication::none());
            let streams: Vec<Vec<ShuffleRecord>> = partitions
                .iter()
                .enumerate()
                .map(|(p, records)| owner_publishes(p as i32, records))
                .collect();
            let mut cursors = vec![0usize; streams.len()];
            let mut order: Vec<usize> = interleaving.iter().map(|i| i % streams.len()).collect();
            for (p, s) in streams.iter().enumerate() {
                order.extend(std::iter::repeat_n(p, s.len()));
            }
            let mut merger = WindowMerger::new(config(), (0..streams.len() as i32).collect());
            let mut got = Vec::new();
            for p in order {
                let Some(record) = streams[p].get(cursors[p]) else { continue };
                cursors[p] += 1;
                let key = shuffle.key(record);
                let event = shuffle.decode(Some(key.as_bytes()), Some(&shuffle.encode(record))).unwrap();
                match event {
                    ShuffleEvent::Record(ShuffleRecord::Part { window_start, partition, digest, over_sla, histogram }) => {
                        merger.on_part(window_start, partition, window_part(digest, over_sla, histogram, config().digest));
                    }
                    ShuffleEvent::Record(ShuffleRecord::Progress { partition, closed_through }) => {
                        merger.on_progress(partition, closed_through);
                    }
                    other => prop_assert!(false, "unexpected {other:?}"),
                }
                if let Some((_, windows)) = merger.ready() {
                    got.extend(windows);
                }
            }
            prop_assert_eq!(got, expected);
        }
    }
}
