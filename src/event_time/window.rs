//! Tumbling event-time windows of latencies, aligned to the Unix epoch (UTC), one partition's
//! share of each.
//!
//! A record belongs to the window `[start, start + size)` holding its event time. A partition's
//! part of a window closes when the partition's watermark reaches `end - 1 + allowed_lateness`;
//! a record is late when its partition's watermark had already passed that point, so the same
//! per-partition sequence gives the same parts whatever other partitions do. Late records are
//! not part of any window (the caller keeps and counts them). Whole windows are the merge of
//! every partition's part ([`super::merge::merge_parts`]), computed once.
//!
//! Each open window remembers the first offset it holds and the partition's highest event time
//! before it (a [`ResumePoint`]): the consumer commits no further than the earliest resume
//! point of a window not yet written, and a restart rebuilds the same windows.

use crate::dimension::selection::PartitionSplit;
use crate::dimension::spec::MISSING_VALUE;
use crate::dimension::value_table::ValueTable;
use crate::distribution::digest::{DigestConfig, LatencyDigest, LatencyStats};
use crate::distribution::latency_histogram::{LatencyHistogram, WindowHistogram};
use std::collections::BTreeMap;

/// Window parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowConfig {
    /// Window length (ms).
    pub size_ms: i64,
    /// How long after its end a window still accepts records (ms).
    pub allowed_lateness_ms: i64,
    /// Latency above which a record misses the SLA (ms).
    pub sla_ms: i64,
    /// Quantiles (0–1) reported per window.
    pub quantiles: Vec<f64>,
    /// Exact/t-digest settings.
    pub digest: DigestConfig,
}

impl WindowConfig {
    /// Start of the window holding `event_time` (epoch-aligned, also for negative times).
    pub fn window_start(&self, event_time: i64) -> i64 {
        event_time.div_euclid(self.size_ms) * self.size_ms
    }

    /// The watermark at which the window starting at `start` closes.
    pub fn close_at(&self, start: i64) -> i64 {
        start + self.size_ms - 1 + self.allowed_lateness_ms
    }
}

/// Where a consumer may resume a partition so that a window is rebuilt exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumePoint {
    /// First offset of the partition still needed.
    pub offset: i64,
    /// The partition's highest event time among records before `offset` (restores its
    /// watermark on resume).
    pub max_event_time_before: Option<i64>,
}

/// One record of a partition, as its windows see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// Source offset.
    pub offset: i64,
    /// Event time (ms): the record's Kafka timestamp.
    pub event_time: i64,
    /// Latency (ms): event time minus the processing start stamp.
    pub latency_ms: i64,
    /// The partition's highest event time before this record.
    pub partition_max_before: Option<i64>,
    /// The partition's watermark before this record.
    pub partition_watermark: Option<i64>,
    /// Whether a previous run already processed this offset (it lies before the position the
    /// previous run had consumed up to when it last committed).
    pub replayed: bool,
}

/// What happened to a record offered to the windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Added to the open window starting at `window_start`.
    Accepted {
        /// The window's start (ms).
        window_start: i64,
    },
    /// Too late for its window: must be kept elsewhere and counted.
    Late {
        /// The start of the window it was late for (ms).
        window_start: i64,
    },
    /// A replayed record already counted in a window written before the restart.
    AlreadyCounted {
        /// The window's start (ms).
        window_start: i64,
    },
}

/// One partition's share of a window: its latencies and how many missed the SLA. What a
/// monitor instance publishes for the partitions it owns (see `shuffle`).
#[derive(Debug, Clone)]
pub struct WindowPart {
    /// The partition's latencies in the window.
    pub digest: LatencyDigest,
    /// Of them, those above the SLA.
    pub over_sla: u64,
    /// Their distribution (exact counts, or buckets once sealed); `None` for a part an older
    /// release published without one.
    pub histogram: Option<LatencyHistogram>,
}

impl WindowPart {
    /// An empty part, to be added to.
    pub fn new(config: DigestConfig) -> Self {
        WindowPart {
            digest: LatencyDigest::new(config),
            over_sla: 0,
            histogram: Some(LatencyHistogram::new()),
        }
    }

    /// Adds every record of `other` (an open part of the same settings).
    pub fn absorb(&mut self, other: &WindowPart) {
        self.digest.absorb(&other.digest);
        self.over_sla += other.over_sla;
        match (&mut self.histogram, &other.histogram) {
            (Some(mine), Some(theirs)) => mine.absorb(theirs),
            (mine, _) => *mine = None,
        }
    }

    /// Adds one record's latency, judged against `sla_ms`.
    pub fn add(&mut self, latency_ms: i64, sla_ms: i64) {
        self.digest.add(latency_ms as f64);
        if let Some(histogram) = &mut self.histogram {
            histogram.add(latency_ms);
        }
        if latency_ms > sla_ms {
            self.over_sla += 1;
        }
    }
}

impl PartialEq for WindowPart {
    fn eq(&self, other: &Self) -> bool {
        self.over_sla == other.over_sla
            && self.digest.to_parts() == other.digest.to_parts()
            && self.histogram == other.histogram
    }
}

/// A partition's part of a window, closed by the partition's watermark: what is published,
/// and where the partition must resume to rebuild it until it is acknowledged.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedPart {
    /// The window's start (ms).
    pub start_ms: i64,
    /// The partition's latencies in it.
    pub part: WindowPart,
    /// The first offset (and the event time before it) the part holds.
    pub resume_point: ResumePoint,
    /// The same records split by dimension value, when the windows are split (see
    /// [`PartitionWindows::split_by_value`]).
    pub split: Option<PartitionSplit>,
}

/// A record's dimension values (its key, see [`crate::dimension::spec::read_key`]) and the
/// SLA its value's part judges it against (`--sla-for`; the window's SLA without a rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueKey<'a> {
    /// The record's values.
    pub key: &'a str,
    /// Its SLA (ms) in its value's part.
    pub sla_ms: i64,
}

/// The result of a whole window: every partition's part merged.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowResult {
    /// Window start (ms, inclusive).
    pub start_ms: i64,
    /// Window end (ms, exclusive).
    pub end_ms: i64,
    /// Latency statistics.
    pub stats: LatencyStats,
    /// Records whose latency exceeded the SLA.
    pub over_sla: u64,
    /// The whole latency distribution; `None` when a part came from an older release.
    pub histogram: Option<WindowHistogram>,
    /// Per partition, its share of the window (what the statistics were merged from).
    pub parts: BTreeMap<i32, WindowPart>,
    /// The window split by dimension value, when windows are split (`--dimension`).
    pub values: Option<crate::event_time::merge::WindowValues>,
}

/// One open window of a partition: its part so far and where it begins in the partition.
#[derive(Debug, Clone)]
struct OpenPart {
    part: WindowPart,
    /// The same records by dimension value, when split.
    values: Option<ValueTable>,
    resume_point: ResumePoint,
}

/// One partition's open windows and the watermark up to which they are closed.
#[derive(Debug, Clone)]
pub struct PartitionWindows {
    config: WindowConfig,
    open: BTreeMap<i64, OpenPart>,
    closed_through: Option<i64>,
    /// Through which watermark windows were durably written before this run (restored).
    durable_before_restart: Option<i64>,
    /// When split by dimension value: how many values each window keeps.
    split_capacity: Option<usize>,
}

impl PartitionWindows {
    /// No open windows.
    pub fn new(config: WindowConfig) -> Self {
        PartitionWindows {
            config,
            open: BTreeMap::new(),
            closed_through: None,
            durable_before_restart: None,
            split_capacity: None,
        }
    }

    /// Also splits every window's records by dimension value, keeping at most `capacity`
    /// values per window (see [`ValueTable`]).
    pub fn split_by_value(mut self, capacity: usize) -> Self {
        self.split_capacity = Some(capacity);
        self
    }

    /// Restores the watermark through which windows were closed and durably written before a
    /// restart: replayed records of those windows are already counted.
    pub fn restore_closed_through(&mut self, watermark: i64) {
        self.durable_before_restart = Some(
            self.durable_before_restart
                .map_or(watermark, |d| d.max(watermark)),
        );
        self.advance_closed_through(watermark);
    }

    fn advance_closed_through(&mut self, watermark: i64) {
        self.closed_through = Some(self.closed_through.map_or(watermark, |c| c.max(watermark)));
    }

    /// The watermark through which windows are closed.
    pub fn closed_through(&self) -> Option<i64> {
        self.closed_through
    }

    /// Offers a record to its window.
    pub fn place(&mut self, record: Observation) -> Placement {
        self.place_keyed(record, None)
    }

    /// Offers a record whose dimension values are `key` (see
    /// [`crate::dimension::spec::read_key`]) to its window; a record without a key, in windows
    /// split by value, counts under [`MISSING_VALUE`] against the window's SLA.
    pub fn place_keyed(&mut self, record: Observation, key: Option<ValueKey<'_>>) -> Placement {
        let window_start = self.config.window_start(record.event_time);
        let close_at = self.config.close_at(window_start);
        let late_for_partition = record.partition_watermark.is_some_and(|w| w >= close_at);
        let window_closed = self.closed_through.is_some_and(|c| c >= close_at);
        if late_for_partition {
            return Placement::Late { window_start };
        }
        if window_closed {
            // Only a window written before the restart holds replayed records; one this run
            // closed without them never saw them: they are late, kept and counted.
            let written_before_restart = self.durable_before_restart.is_some_and(|d| d >= close_at);
            return if record.replayed && written_before_restart {
                Placement::AlreadyCounted { window_start }
            } else {
                Placement::Late { window_start }
            };
        }
        let digest_config = self.config.digest;
        let capacity = self.split_capacity;
        let open = self.open.entry(window_start).or_insert_with(|| OpenPart {
            part: WindowPart::new(digest_config),
            values: capacity.map(|c| ValueTable::new(c, digest_config)),
            resume_point: ResumePoint {
                offset: record.offset,
                max_event_time_before: record.partition_max_before,
            },
        });
        open.part.add(record.latency_ms, self.config.sla_ms);
        if let Some(values) = &mut open.values {
            let key = key.unwrap_or(ValueKey {
                key: MISSING_VALUE,
                sla_ms: self.config.sla_ms,
            });
            values.add(key.key, record.latency_ms, key.sla_ms);
        }
        Placement::Accepted { window_start }
    }

    /// Closes, in start order, every open window whose close time the watermark has reached,
    /// and returns their parts (no statistics: those are computed once, for whole windows).
    pub fn close(&mut self, watermark: i64) -> Vec<ClosedPart> {
        self.advance_closed_through(watermark);
        let mut closed = Vec::new();
        while let Some((&start, _)) = self.open.first_key_value() {
            if self.config.close_at(start) > watermark {
                break;
            }
            let mut open = self.open.remove(&start).expect("first key exists");
            let threshold = self.config.digest.exact_threshold;
            seal(&mut open.part, threshold);
            let split = open.values.map(|table| {
                let mut split = PartitionSplit::from(table);
                seal(&mut split.other, threshold);
                for (part, _) in split.values.values_mut() {
                    seal(part, threshold);
                }
                split
            });
            closed.push(ClosedPart {
                start_ms: start,
                part: open.part,
                resume_point: open.resume_point,
                split,
            });
        }
        closed
    }

    /// The watermark that closes the earliest open window (`None`: none is open).
    pub fn first_close_at(&self) -> Option<i64> {
        let (&start, _) = self.open.first_key_value()?;
        Some(self.config.close_at(start))
    }

    /// The earliest resume point among the open windows.
    pub fn resume_point(&self) -> Option<ResumePoint> {
        self.open
            .values()
            .map(|open| open.resume_point)
            .min_by_key(|point| point.offset)
    }

    /// Records in this partition's open part of the window starting at `start`.
    pub fn count_in(&self, start: i64) -> u64 {
        self.open
            .get(&start)
            .map_or(0, |open| open.part.digest.count())
    }

    /// Dimension values the open windows keep parts for (0 when not split).
    pub fn values_held(&self) -> usize {
        self.open
            .values()
            .filter_map(|open| open.values.as_ref())
            .map(ValueTable::len)
            .sum()
    }

    /// Number of open windows.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Starts of the open windows, ascending.
    pub fn open_starts(&self) -> impl Iterator<Item = i64> + '_ {
        self.open.keys().copied()
    }
}

/// Seals a closing part's histogram (see [`LatencyHistogram::seal`]).
fn seal(part: &mut WindowPart, exact_threshold: usize) {
    if let Some(histogram) = &mut part.histogram {
        histogram.seal(exact_threshold);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_time::merge::merge_parts;

    fn config() -> WindowConfig {
        WindowConfig {
            size_ms: 60_000,
            allowed_lateness_ms: 0,
            sla_ms: 5_000,
            quantiles: vec![0.5, 0.75, 0.9, 0.99],
            digest: DigestConfig::default(),
        }
    }

    fn obs(offset: i64, event_time: i64, latency_ms: i64, wm: Option<i64>) -> Observation {
        Observation {
            offset,
            event_time,
            latency_ms,
            partition_max_before: None,
            partition_watermark: wm,
            replayed: false,
        }
    }

    #[test]
    fn windows_are_epoch_aligned_with_exclusive_ends() {
        let c = config();
        assert_eq!(c.window_start(0), 0);
        assert_eq!(c.window_start(59_999), 0);
        assert_eq!(c.window_start(60_000), 60_000);
        assert_eq!(c.window_start(-1), -60_000);
        assert_eq!(c.close_at(60_000), 119_999);
    }

    #[test]
    fn closes_when_the_watermark_reaches_the_end() {
        let mut w = PartitionWindows::new(config());
        assert_eq!(
            w.place(obs(0, 1_000, 100, None)),
            Placement::Accepted { window_start: 0 }
        );
        w.place(obs(1, 59_999, 7_000, Some(0)));
        w.place(obs(2, 60_000, 300, Some(0)));
        assert!(w.close(59_998).is_empty());
        let closed = w.close(59_999);
        assert_eq!(closed.len(), 1);
        let c = &closed[0];
        assert_eq!(
            (c.start_ms, c.part.digest.count(), c.part.over_sla),
            (0, 2, 1)
        );
        assert_eq!(c.resume_point.offset, 0);
        assert_eq!(w.open_count(), 1);
        assert_eq!(w.resume_point().unwrap().offset, 2);
        let whole = merge_parts(&config(), 0, BTreeMap::from([(0, c.part.clone())])).unwrap();
        assert_eq!(
            (whole.end_ms, whole.stats.count, whole.over_sla),
            (60_000, 2, 1)
        );
    }

    #[test]
    fn allowed_lateness_delays_closing() {
        let mut c = config();
        c.allowed_lateness_ms = 10_000;
        let mut w = PartitionWindows::new(c);
        w.place(obs(0, 1_000, 1, None));
        assert!(w.close(65_000).is_empty());
        assert_eq!(
            w.place(obs(1, 2_000, 1, Some(65_000))),
            Placement::Accepted { window_start: 0 }
        );
        assert_eq!(w.close(69_999).len(), 1);
    }

    #[test]
    fn late_records_are_reported_never_dropped() {
        let mut w = PartitionWindows::new(config());
        w.place(obs(0, 1_000, 1, None));
        // The partition's own watermark passed the window: late even though it is still open.
        assert_eq!(
            w.place(obs(5, 2_000, 1, Some(70_000))),
            Placement::Late { window_start: 0 }
        );
        let closed = w.close(60_000);
        assert_eq!(closed[0].part.digest.count(), 1);
        // The window is closed: a new record for it is late, and so is a replayed one, since
        // this run closed the window without it.
        assert_eq!(
            w.place(obs(6, 3_000, 1, None)),
            Placement::Late { window_start: 0 }
        );
        let mut replayed = obs(0, 3_000, 1, None);
        replayed.replayed = true;
        assert_eq!(w.place(replayed), Placement::Late { window_start: 0 });
        // Only a window written before the restart holds its replayed records already.
        let mut restarted = PartitionWindows::new(config());
        restarted.restore_closed_through(60_000);
        assert_eq!(
            restarted.place(replayed),
            Placement::AlreadyCounted { window_start: 0 }
        );
    }

    #[test]
    fn empty_windows_produce_nothing_and_the_resume_point_is_the_earliest() {
        let mut w = PartitionWindows::new(config());
        assert!(w.close(1_000_000).is_empty());
        assert!(merge_parts(&config(), 0, BTreeMap::new()).is_none());
        assert_eq!(w.resume_point(), None);
        w.place(obs(9, 1_060_000, 1, None));
        w.place(obs(4, 1_000_000, 1, None));
        w.place(obs(6, 1_070_000, 1, None));
        assert_eq!(w.resume_point().unwrap().offset, 4);
    }
}
