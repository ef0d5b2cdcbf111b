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

use crate::dimension::selection::{select, PartitionSplit};
use crate::dimension::spec::OTHER_VALUE;
use crate::dimension::split_pieces::{SplitAssembly, SplitPiece};
use crate::distribution::digest::{summarize, LatencyDigest, LatencyStats};
use crate::distribution::latency_histogram::{merge_histograms, LatencyHistogram, WindowHistogram};
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
    let figures = figures(config, &parts.values().collect::<Vec<_>>())?;
    Some(WindowResult {
        start_ms: start,
        end_ms: start + config.size_ms,
        stats: figures.stats,
        over_sla: figures.over_sla,
        histogram: figures.histogram,
        parts,
        values: None,
    })
}

/// The figures of a set of parts, merged in the order given: statistics, over-SLA count and
/// distribution (`None` without records).
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    /// Latency statistics.
    pub stats: LatencyStats,
    /// Records above the SLA.
    pub over_sla: u64,
    /// The whole distribution (`None` when a part came from an older release).
    pub histogram: Option<WindowHistogram>,
}

/// Merges `parts` (in the order given) into their figures: what [`merge_parts`] computes for
/// a whole window, and [`merge_splits`] for each of its values.
pub fn figures(config: &WindowConfig, parts: &[&WindowPart]) -> Option<Figures> {
    let digests: Vec<&LatencyDigest> = parts.iter().map(|p| &p.digest).collect();
    let stats = summarize(&digests, &config.quantiles, config.digest)?;
    let histograms: Option<Vec<&LatencyHistogram>> =
        parts.iter().map(|p| p.histogram.as_ref()).collect();
    Some(Figures {
        stats,
        over_sla: parts.iter().map(|p| p.over_sla).sum(),
        histogram: histograms
            .map(|histograms| merge_histograms(&histograms, config.digest.exact_threshold)),
    })
}

/// A window's figures for one dimension value, or for every value without a document of its
/// own ([`OTHER_VALUE`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ValueWindow {
    /// The value's key (its values across the dimensions), or [`OTHER_VALUE`].
    pub key: String,
    /// Its figures.
    pub figures: Figures,
    /// For a chosen value, how many of its records may be counted under other instead (0:
    /// its figures are exact); `None` for other.
    pub missing_at_most: Option<u64>,
}

/// A whole window split by value, from every partition's split (in partition order): the
/// values [`select`] chooses (at most `max_values`, and every value of 1 %), by key, then
/// other if it holds any record. Their counts add up to the window's.
pub fn merge_splits(
    config: &WindowConfig,
    splits: &BTreeMap<i32, PartitionSplit>,
    max_values: usize,
) -> Vec<ValueWindow> {
    let selection = select(splits, max_values);
    let mut windows: Vec<ValueWindow> = selection
        .values
        .iter()
        .filter_map(|value| {
            Some(ValueWindow {
                key: value.key.to_string(),
                figures: figures(config, &value.parts)?,
                missing_at_most: Some(value.missing_at_most),
            })
        })
        .collect();
    if let Some(other) = figures(config, &selection.other) {
        windows.push(ValueWindow {
            key: OTHER_VALUE.to_string(),
            figures: other,
            missing_at_most: None,
        });
    }
    windows
}

/// A whole window split by dimension value (`--dimension`).
#[derive(Debug, Clone, PartialEq)]
pub struct WindowValues {
    /// The chosen values' figures, then other's (see [`merge_splits`]); empty when not
    /// `complete`.
    pub windows: Vec<ValueWindow>,
    /// Whether every partition's split arrived whole and holds the records of its part. If
    /// not (a shuffle record lost to a bug or refused as forged), no value documents are
    /// written for the window: they would not add up to it.
    pub complete: bool,
    /// The pieces the splits came in, (input partition, piece): deleted once written.
    pub pieces: Vec<(i32, u32)>,
}

/// Puts a window's splits together (`assemblies`, by input partition) and merges them, when
/// every partition of `parts` sent its whole split holding as many records as its part.
fn merge_values(
    config: &WindowConfig,
    parts: &BTreeMap<i32, WindowPart>,
    assemblies: BTreeMap<i32, SplitAssembly>,
    max_values: usize,
) -> WindowValues {
    let pieces: Vec<(i32, u32)> = assemblies
        .iter()
        .flat_map(|(&p, a)| a.piece_numbers().into_iter().map(move |n| (p, n)))
        .collect();
    // Complete: every split assembled, and exactly one per part, holding its records.
    let splits: Option<BTreeMap<i32, PartitionSplit>> = assemblies
        .into_iter()
        .map(|(partition, assembly)| Some((partition, assembly.assemble()?)))
        .collect();
    let splits = splits.filter(|splits| {
        splits.len() == parts.len()
            && parts.iter().all(|(partition, part)| {
                splits
                    .get(partition)
                    .is_some_and(|split| split.records() == part.digest.count())
            })
    });
    WindowValues {
        complete: splits.is_some(),
        windows: splits.map_or_else(Vec::new, |splits| merge_splits(config, &splits, max_values)),
        pieces,
    }
}

/// Per window start, per input partition, the pieces of its split received.
type SplitsByWindow = BTreeMap<i64, BTreeMap<i32, SplitAssembly>>;

/// The merge state of one shuffle partition.
#[derive(Debug, Clone)]
pub struct WindowMerger {
    config: WindowConfig,
    input_partitions: Vec<i32>,
    progress: BTreeMap<i32, i64>,
    pending: BTreeMap<i64, BTreeMap<i32, WindowPart>>,
    /// With windows split by value: how many values get documents of their own, and the
    /// pieces of each window's splits received, by input partition.
    split: Option<(usize, SplitsByWindow)>,
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
            split: None,
            merged_through: None,
        }
    }

    /// Also merges each window split by dimension value, choosing at most `max_values`
    /// values (and every value of 1 %) per window: see [`merge_splits`].
    pub fn split_by_value(mut self, max_values: usize) -> Self {
        self.split = Some((max_values, BTreeMap::new()));
        self
    }

    /// A piece of a partition's split of the window starting at `window_start`; ignored
    /// (returns false) when that window was already merged or windows are not split.
    pub fn on_split_piece(&mut self, window_start: i64, partition: i32, piece: SplitPiece) -> bool {
        let close_at = self.config.close_at(window_start);
        if self.merged_through.is_some_and(|m| m >= close_at) {
            return false;
        }
        let Some((_, splits)) = &mut self.split else {
            return false;
        };
        splits
            .entry(window_start)
            .or_default()
            .entry(partition)
            .or_default()
            .add(piece);
        true
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
        if let Some((_, splits)) = &mut self.split {
            splits.retain(|&start, _| config.close_at(start) > written_through);
        }
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
            let Some(mut result) = merge_parts(&self.config, start, parts) else {
                continue;
            };
            if let Some((max_values, splits)) = &mut self.split {
                let assemblies = splits.remove(&start).unwrap_or_default();
                result.values = Some(merge_values(
                    &self.config,
                    &result.parts,
                    assemblies,
                    *max_values,
                ));
            }
            results.push(result);
        }
        if let Some((_, splits)) = &mut self.split {
            // Pieces of windows without a part (none can be complete) are dropped with them.
            let config = &self.config;
            splits.retain(|&start, _| config.close_at(start) > watermark);
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
    use crate::distribution::digest::{exact_quantile, DigestConfig, LatencyDigest};
    use crate::event_time::watermark::WatermarkConfig;
    use crate::event_time::whole_windows;
    use crate::event_time::window::{Observation, PartitionWindows};
    use crate::event_time::window::{Placement, ValueKey};
    use crate::event_time::EventTimeOperator;
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
            split: None,
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
        /// Windows split by value, end to end in the pure core (operator, tables, selection,
        /// merge): in every window the values' counts and over-SLA counts and other's add up
        /// to the whole window's; a value with exact figures (nothing missing) has every one
        /// of its records, and its percentiles are the exact ones; every value of 1 % has its
        /// document.
        #[test]
        fn windows_split_by_value_add_up_and_exact_values_are_exact(
            records in proptest::collection::vec(
                (0i32..3, 0u32..6, 0u32..4_000, 0i64..2_000, 0i64..1_500), 1..6_000),
            max_values in 1usize..8,
        ) {
            use crate::dimension::value_table::MIN_CAPACITY;
            let config = config();
            let mut operator = EventTimeOperator::new(config.clone(), WatermarkConfig {
                max_out_of_orderness_ms: 10_000,
                idle_timeout_ms: 60_000,
                producer_hold_ms: 0,
                assume_broker_stamped: false,
            })
            .split_by_value(MIN_CAPACITY);
            let mut offsets = [0i64; 3];
            let mut truth: BTreeMap<(i64, String), Vec<f64>> = BTreeMap::new();
            for &(partition, heavy, light, latency, event_time) in &records {
                // Heavy values (6 of them) on a third of the records, the rest spread thin.
                let key = if light % 3 == 0 { format!("h{heavy}") } else { format!("l{light}") };
                let offset = offsets[partition as usize];
                offsets[partition as usize] += 1;
                let placement = operator.on_keyed_record(partition, offset, event_time, latency, Some(ValueKey { key: &key, sla_ms: config.sla_ms }), 0);
                if let Placement::Accepted { window_start } = placement {
                    truth.entry((window_start, key)).or_default().push(latency as f64);
                }
            }
            type Closed = (BTreeMap<i32, WindowPart>, BTreeMap<i32, PartitionSplit>);
            let mut by_window: BTreeMap<i64, Closed> = BTreeMap::new();
            for (partition, closed) in operator.close_all() {
                let entry = by_window.entry(closed.start_ms).or_default();
                entry.0.insert(partition, closed.part);
                entry.1.insert(partition, closed.split.expect("split windows"));
            }
            for (start, (parts, splits)) in by_window {
                let whole = merge_parts(&config, start, parts).expect("records");
                let values = merge_splits(&config, &splits, max_values);
                let n = whole.stats.count;
                prop_assert_eq!(values.iter().map(|v| v.figures.stats.count).sum::<u64>(), n);
                prop_assert_eq!(values.iter().map(|v| v.figures.over_sla).sum::<u64>(), whole.over_sla);
                for value in values.iter().filter(|v| v.missing_at_most == Some(0)) {
                    let mut want = truth[&(start, value.key.clone())].clone();
                    prop_assert_eq!(value.figures.stats.count, want.len() as u64);
                    want.sort_by(f64::total_cmp);
                    prop_assert_eq!(value.figures.stats.exact, want.len() <= config.digest.exact_threshold);
                    for &(q, got) in value.figures.stats.quantiles.iter().filter(|_| value.figures.stats.exact) {
                        prop_assert_eq!(got, exact_quantile(&want, q), "{} q{}", value.key, q);
                    }
                }
                for ((window, key), latencies) in &truth {
                    if *window == start && latencies.len() as u64 * 100 >= n {
                        prop_assert!(values.iter().any(|v| &v.key == key), "{} of {} in {}", latencies.len(), n, key);
                    }
                }
            }
        }
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
