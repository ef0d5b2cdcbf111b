//! Tumbling event-time windows of latencies, aligned to the Unix epoch (UTC).
//!
//! A record belongs to the window `[start, start + size)` holding its event time. The window
//! closes when the job watermark reaches `end - 1 + allowed_lateness`. Whether a record is
//! late is decided by its own partition's watermark (so the same per-partition sequences give
//! the same windows whatever the interleaving of partitions), and, for windows the job has
//! already closed, by the job watermark. Late records are not part of any window result
//! (whether one arrives before or after its window closes depends on interleaving); the
//! caller keeps and counts them.
//!
//! Each open window remembers, per partition, the first offset it holds and the partition's
//! highest event time before it (a [`ResumePoint`]): the consumer commits no further than the
//! earliest resume point of a window not yet written, and a restart rebuilds the same windows.

use crate::digest::{summarize, DigestConfig, LatencyDigest, LatencyStats};
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

/// One record, as the window operator sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// Source partition.
    pub partition: i32,
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

#[derive(Debug, Clone)]
struct OpenWindow {
    parts: BTreeMap<i32, (WindowPart, ResumePoint)>,
}

/// One partition's share of a window: its latencies and how many missed the SLA. What a
/// monitor instance publishes for the partitions it owns (see `shuffle`).
#[derive(Debug, Clone)]
pub struct WindowPart {
    /// The partition's latencies in the window.
    pub digest: LatencyDigest,
    /// Of them, those above the SLA.
    pub over_sla: u64,
}

impl PartialEq for WindowPart {
    fn eq(&self, other: &Self) -> bool {
        self.over_sla == other.over_sla && self.digest.to_parts() == other.digest.to_parts()
    }
}

/// The result of a closed window.
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
    /// Per partition, where to resume to rebuild this window.
    pub resume_points: BTreeMap<i32, ResumePoint>,
    /// Per partition, its share of the window (what the statistics were merged from).
    pub parts: BTreeMap<i32, WindowPart>,
}

/// Merges a window's per-partition parts, in partition order, into its result; `None` when
/// the parts hold no record. The only place a window's statistics are computed, whether its
/// parts were gathered by one instance or received from several.
pub fn merge_parts(
    config: &WindowConfig,
    start: i64,
    parts: BTreeMap<i32, WindowPart>,
    resume_points: BTreeMap<i32, ResumePoint>,
) -> Option<WindowResult> {
    let digests: Vec<&LatencyDigest> = parts.values().map(|p| &p.digest).collect();
    let stats = summarize(&digests, &config.quantiles, config.digest)?;
    Some(WindowResult {
        start_ms: start,
        end_ms: start + config.size_ms,
        stats,
        over_sla: parts.values().map(|p| p.over_sla).sum(),
        resume_points,
        parts,
    })
}

/// The open windows of a job and the watermark up to which windows are closed.
#[derive(Debug, Clone)]
pub struct Windows {
    config: WindowConfig,
    open: BTreeMap<i64, OpenWindow>,
    closed_through: Option<i64>,
    /// Through which watermark windows were durably written before this run (restored).
    durable_before_restart: Option<i64>,
}

impl Windows {
    /// No open windows.
    pub fn new(config: WindowConfig) -> Self {
        Windows {
            config,
            open: BTreeMap::new(),
            closed_through: None,
            durable_before_restart: None,
        }
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
        let window = self.open.entry(window_start).or_insert_with(|| OpenWindow {
            parts: BTreeMap::new(),
        });
        let (part, _) = window.parts.entry(record.partition).or_insert_with(|| {
            (
                WindowPart {
                    digest: LatencyDigest::new(digest_config),
                    over_sla: 0,
                },
                ResumePoint {
                    offset: record.offset,
                    max_event_time_before: record.partition_max_before,
                },
            )
        });
        part.digest.add(record.latency_ms as f64);
        if record.latency_ms > self.config.sla_ms {
            part.over_sla += 1;
        }
        Placement::Accepted { window_start }
    }

    /// Closes, in start order, every open window whose close time the watermark has reached.
    pub fn close(&mut self, watermark: i64) -> Vec<WindowResult> {
        self.advance_closed_through(watermark);
        let mut results = Vec::new();
        while let Some((&start, _)) = self.open.first_key_value() {
            if self.config.close_at(start) > watermark {
                break;
            }
            let window = self.open.remove(&start).expect("first key exists");
            let resume_points = window.parts.iter().map(|(&p, (_, r))| (p, *r)).collect();
            let parts = window
                .parts
                .into_iter()
                .map(|(p, (part, _))| (p, part))
                .collect();
            results.extend(merge_parts(&self.config, start, parts, resume_points));
        }
        results
    }

    /// Per partition, the earliest resume point among open windows.
    pub fn resume_points(&self) -> BTreeMap<i32, ResumePoint> {
        let mut points: BTreeMap<i32, ResumePoint> = BTreeMap::new();
        for window in self.open.values() {
            for (&partition, (_, point)) in &window.parts {
                earliest(&mut points, partition, *point);
            }
        }
        points
    }

    /// Number of open windows.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }
}

/// Keeps, for `partition`, whichever resume point has the lower offset.
pub fn earliest(points: &mut BTreeMap<i32, ResumePoint>, partition: i32, point: ResumePoint) {
    points
        .entry(partition)
        .and_modify(|p| {
            if point.offset < p.offset {
                *p = point;
            }
        })
        .or_insert(point);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> WindowConfig {
        WindowConfig {
            size_ms: 60_000,
            allowed_lateness_ms: 0,
            sla_ms: 5_000,
            quantiles: vec![0.5, 0.75, 0.9, 0.99],
            digest: DigestConfig::default(),
        }
    }

    fn obs(
        partition: i32,
        offset: i64,
        event_time: i64,
        latency_ms: i64,
        wm: Option<i64>,
    ) -> Observation {
        Observation {
            partition,
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
        let mut w = Windows::new(config());
        assert_eq!(
            w.place(obs(0, 0, 1_000, 100, None)),
            Placement::Accepted { window_start: 0 }
        );
        w.place(obs(0, 1, 59_999, 7_000, Some(0)));
        w.place(obs(1, 0, 60_000, 300, None));
        assert!(w.close(59_998).is_empty());
        let results = w.close(59_999);
        assert_eq!(results.len(), 1);
        let r = &results[0];
        assert_eq!(
            (r.start_ms, r.end_ms, r.stats.count, r.over_sla),
            (0, 60_000, 2, 1)
        );
        assert_eq!(r.resume_points[&0].offset, 0);
        assert_eq!(w.open_count(), 1);
        assert_eq!(w.resume_points()[&1].offset, 0);
    }

    #[test]
    fn allowed_lateness_delays_closing() {
        let mut c = config();
        c.allowed_lateness_ms = 10_000;
        let mut w = Windows::new(c);
        w.place(obs(0, 0, 1_000, 1, None));
        assert!(w.close(65_000).is_empty());
        assert_eq!(
            w.place(obs(0, 1, 2_000, 1, Some(65_000))),
            Placement::Accepted { window_start: 0 }
        );
        assert_eq!(w.close(69_999).len(), 1);
    }

    #[test]
    fn late_records_are_reported_never_dropped() {
        let mut w = Windows::new(config());
        w.place(obs(0, 0, 1_000, 1, None));
        // Partition 0's own watermark passed the window: late even though it is still open.
        assert_eq!(
            w.place(obs(0, 5, 2_000, 1, Some(70_000))),
            Placement::Late { window_start: 0 }
        );
        let r = w.close(60_000);
        assert_eq!(r[0].stats.count, 1);
        // The window is closed: a new record for it is late, and so is a replayed one, since
        // this run closed the window without it.
        assert_eq!(
            w.place(obs(1, 0, 3_000, 1, None)),
            Placement::Late { window_start: 0 }
        );
        let mut replayed = obs(1, 0, 3_000, 1, None);
        replayed.replayed = true;
        assert_eq!(w.place(replayed), Placement::Late { window_start: 0 });
        // Only a window written before the restart holds its replayed records already.
        let mut restarted = Windows::new(config());
        restarted.restore_closed_through(60_000);
        assert_eq!(
            restarted.place(replayed),
            Placement::AlreadyCounted { window_start: 0 }
        );
    }

    #[test]
    fn empty_windows_produce_nothing_and_resume_points_take_the_earliest() {
        let mut w = Windows::new(config());
        assert!(w.close(1_000_000).is_empty());
        let mut points = BTreeMap::new();
        earliest(
            &mut points,
            0,
            ResumePoint {
                offset: 9,
                max_event_time_before: Some(1),
            },
        );
        earliest(
            &mut points,
            0,
            ResumePoint {
                offset: 4,
                max_event_time_before: Some(0),
            },
        );
        earliest(
            &mut points,
            0,
            ResumePoint {
                offset: 6,
                max_event_time_before: Some(3),
            },
        );
        assert_eq!(points[&0].offset, 4);
    }
}
