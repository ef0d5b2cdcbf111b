//! Every `sla_monitor_*` metric of the monitor's two stages, resolved once when a stage starts
//! (a handle per series, not a registry look-up per record), with what each means. The
//! metrics shared by every job (`sla_records_consumed_total`, `sla_assigned_partitions`,
//! `sla_consumer_group_rejoins_total`, ...) are resolved here too for the monitor's topics.

use super::measurement::TimestampKind;
use super::restore::PartitionResume;
use crate::completeness::document::CompletenessDocument;
use crate::event_time::window::WindowResult;
use crate::event_time::window_document::percentile_field;
use crate::shuffle::REFUSAL_REASONS;
use metrics::{counter, gauge, Counter, Gauge};
use std::collections::BTreeMap;

/// The partition stage's metrics.
pub struct PartitionMetrics {
    /// `sla_records_consumed_total{topic}`: records read from the input topic.
    pub consumed: Counter,
    /// `sla_monitor_records_by_timestamp_type_total{type}`: LogAppendTime, CreateTime, then
    /// `stamp` (the end read from the record, `--end-time`).
    by_timestamp_kind: [Counter; 3],
    /// `sla_monitor_negative_latency_records_total`: accepted records whose stamp lies after
    /// their timestamp (clock skew within tolerance).
    pub negative_latencies: Counter,
    /// `sla_monitor_replayed_already_written_total`: replayed records a written window counted.
    pub already_counted: Counter,
    /// `sla_monitor_late_records_total`: records for a window their partition had closed.
    pub late: Counter,
    /// `sla_monitor_parts_published_total`: window parts sent to the shuffle topic.
    pub parts_published: Counter,
    /// `sla_assigned_partitions{topic=<input>, role="input"}`.
    pub assigned: Gauge,
    /// `sla_monitor_partitions_restored_total{from}`: assigned partitions by where they
    /// resumed: `checkpoint`, `committed_offset` (no checkpoint) or `start` (neither).
    restored_from: [Counter; 3],
    /// `sla_monitor_watermark_seconds`: the lowest watermark of the owned partitions.
    pub watermark: Gauge,
    /// `sla_monitor_open_windows`: windows open in at least one owned partition.
    pub open_windows: Gauge,
    /// `sla_monitor_dimension_values_held`: dimension values (`--dimension`) the owned
    /// partitions' open windows keep parts for (bounded: docs/dimensions.md).
    pub values_held: Gauge,
    /// `sla_monitor_all_records_refused`: 1 while every record of the last judged interval
    /// (30 s with records) was refused by the measurement (see `refusal_watch`), else 0.
    pub all_records_refused: Gauge,
}

impl PartitionMetrics {
    /// The handles for input topic `input_topic`; counters that alerts divide by start at 0.
    pub fn new(input_topic: &str) -> Self {
        let metrics = PartitionMetrics {
            consumed: counter!("sla_records_consumed_total", "topic" => input_topic.to_string()),
            by_timestamp_kind: [
                TimestampKind::LogAppendTime,
                TimestampKind::CreateTime,
                TimestampKind::Stamp,
            ]
            .map(
                |kind| counter!("sla_monitor_records_by_timestamp_type_total", "type" => kind.as_str()),
            ),
            negative_latencies: counter!("sla_monitor_negative_latency_records_total"),
            already_counted: counter!("sla_monitor_replayed_already_written_total"),
            late: counter!("sla_monitor_late_records_total"),
            parts_published: counter!("sla_monitor_parts_published_total"),
            assigned: gauge!("sla_assigned_partitions", "topic" => input_topic.to_string(), "role" => "input"),
            restored_from: ["checkpoint", "committed_offset", "start"]
                .map(|from| counter!("sla_monitor_partitions_restored_total", "from" => from)),
            watermark: gauge!("sla_monitor_watermark_seconds"),
            open_windows: gauge!("sla_monitor_open_windows"),
            values_held: gauge!("sla_monitor_dimension_values_held"),
            all_records_refused: gauge!("sla_monitor_all_records_refused"),
        };
        metrics.negative_latencies.increment(0);
        metrics.all_records_refused.set(0.0);
        metrics.assigned.set(0.0);
        metrics
    }

    /// Counts a partition taken by where it resumes.
    pub fn restored(&self, resume: &PartitionResume) {
        let from = match (resume.restored, resume.offset) {
            (Some(_), _) => 0,
            (None, Some(_)) => 1,
            (None, None) => 2,
        };
        self.restored_from[from].increment(1);
    }

    /// Counts a record by the kind of its timestamp.
    pub fn timestamp_kind(&self, kind: TimestampKind) -> &Counter {
        match kind {
            TimestampKind::LogAppendTime => &self.by_timestamp_kind[0],
            TimestampKind::CreateTime => &self.by_timestamp_kind[1],
            TimestampKind::Stamp => &self.by_timestamp_kind[2],
        }
    }
}

/// `sla_monitor_checkpoints_refused_total{reason}`: checkpoints read at a restore but not used
/// (`implausible`: fails [`super::checkpoint::Checkpoint::check`]; `beyond_partition_end`:
/// names offsets the partition does not have; the others from
/// [`super::checkpoint::CheckpointRecord::usable_by`]: format, checksum, tag, identity).
pub fn checkpoints_refused(reason: &'static str) -> Counter {
    counter!("sla_monitor_checkpoints_refused_total", "reason" => reason)
}

/// `sla_monitor_shuffle_records_published_total{kind}` and
/// `sla_monitor_shuffle_bytes_published_total{kind}` (key plus value): what the shuffle costs,
/// by kind of record published (`part`, `progress`, `merged`, `tombstone`, `arrivals`,
/// `accounted`, `values`).
pub fn shuffle_published(kind: &'static str) -> (Counter, Counter) {
    (
        counter!("sla_monitor_shuffle_records_published_total", "kind" => kind),
        counter!("sla_monitor_shuffle_bytes_published_total", "kind" => kind),
    )
}

/// `sla_monitor_sink_retries_total`: writes of window documents the sink retried.
pub fn sink_retries() -> Counter {
    counter!("sla_monitor_sink_retries_total")
}

/// The merge stage's metrics.
pub struct MergeMetrics {
    /// `sla_assigned_partitions{topic=<shuffle>, role="shuffle"}`: an instance without a
    /// shuffle partition is normal (there are more instances than shuffle partitions).
    pub assigned: Gauge,
    /// `sla_consumer_group_rejoins_total{topic=<shuffle>}`: merge-group rejoins by the watchdog.
    pub rejoins: Counter,
    /// `sla_monitor_windows_closed_total`: whole windows sent to the sink.
    pub windows_closed: Counter,
    /// `sla_monitor_window_batches_acknowledged_total`: batches of windows the sink wrote.
    pub batches_acknowledged: Counter,
    /// `sla_monitor_merge_watermark_seconds`: the lowest merge watermark of the owned shuffle
    /// partitions.
    pub merge_watermark: Gauge,
    /// `sla_monitor_merge_pending_windows`: windows with parts received, not yet written.
    pub pending_windows: Gauge,
    /// `sla_monitor_merge_waiting_for_partitions`: input partitions whose progress holds
    /// merging back.
    pub waiting_for_partitions: Gauge,
    /// `sla_monitor_duplicate_parts_total`: parts received again for a written window.
    pub duplicate_parts: Counter,
    /// `sla_monitor_dimension_value_documents_total`: documents of dimension values
    /// (`--dimension`) sent to the sink.
    pub value_documents: Counter,
    /// `sla_monitor_dimension_windows_incomplete_total`: windows whose splits by value did not
    /// arrive whole or add up (their value documents are not written).
    pub values_incomplete: Counter,
    /// `sla_monitor_shuffle_records_refused_total{reason}`: shuffle records of this monitor
    /// skipped because they do not decode or could not have been written by it.
    refused: Vec<(&'static str, Counter)>,
    /// The latest written window, by quantile (`sla_monitor_window_latency_seconds`).
    latency_by_quantile: Vec<(f64, Gauge)>,
    /// `sla_monitor_window_records`, `sla_monitor_window_over_sla_records`,
    /// `sla_monitor_window_start_seconds` of the latest window.
    window_records: Gauge,
    window_over_sla: Gauge,
    window_start: Gauge,
    /// `sla_monitor_completeness_missing_records{class}` (`overdue`, `lost`, `in_flight`):
    /// over the source windows of the latest accounting (those not final, and those it made
    /// final).
    completeness_missing: [(&'static str, Gauge); 3],
    /// `sla_monitor_completeness_lost_records_total`: records lost in final documents.
    completeness_lost: Counter,
    /// `sla_monitor_completeness_documents_total{final}`: completeness documents written.
    completeness_documents: [Counter; 2],
    /// `sla_monitor_completeness_as_of_seconds`: the merged progress of the latest accounting.
    completeness_as_of: Gauge,
    /// `sla_monitor_completeness_ledger_bytes`: what the ledger's arrivals hold (offset sets
    /// as ranges or bitmaps; docs/completeness.md, "Memory").
    completeness_ledger_bytes: Gauge,
}

impl MergeMetrics {
    /// The handles for shuffle topic `shuffle_topic` and the configured `quantiles`.
    pub fn new(shuffle_topic: &str, quantiles: &[f64]) -> Self {
        let metrics = MergeMetrics {
            assigned: gauge!("sla_assigned_partitions", "topic" => shuffle_topic.to_string(), "role" => "shuffle"),
            rejoins: counter!("sla_consumer_group_rejoins_total", "topic" => shuffle_topic.to_string()),
            windows_closed: counter!("sla_monitor_windows_closed_total"),
            batches_acknowledged: counter!("sla_monitor_window_batches_acknowledged_total"),
            merge_watermark: gauge!("sla_monitor_merge_watermark_seconds"),
            pending_windows: gauge!("sla_monitor_merge_pending_windows"),
            waiting_for_partitions: gauge!("sla_monitor_merge_waiting_for_partitions"),
            duplicate_parts: counter!("sla_monitor_duplicate_parts_total"),
            value_documents: counter!("sla_monitor_dimension_value_documents_total"),
            values_incomplete: counter!("sla_monitor_dimension_windows_incomplete_total"),
            refused: REFUSAL_REASONS
                .iter()
                .map(|&reason| {
                    (
                        reason,
                        counter!("sla_monitor_shuffle_records_refused_total", "reason" => reason),
                    )
                })
                .collect(),
            latency_by_quantile: quantiles
                .iter()
                .map(|&q| {
                    let gauge =
                        gauge!("sla_monitor_window_latency_seconds", "quantile" => q.to_string());
                    (q, gauge)
                })
                .collect(),
            window_records: gauge!("sla_monitor_window_records"),
            window_over_sla: gauge!("sla_monitor_window_over_sla_records"),
            window_start: gauge!("sla_monitor_window_start_seconds"),
            completeness_missing: ["overdue", "lost", "in_flight"].map(|class| {
                (
                    class,
                    gauge!("sla_monitor_completeness_missing_records", "class" => class),
                )
            }),
            completeness_lost: counter!("sla_monitor_completeness_lost_records_total"),
            completeness_documents: ["false", "true"]
                .map(|f| counter!("sla_monitor_completeness_documents_total", "final" => f)),
            completeness_as_of: gauge!("sla_monitor_completeness_as_of_seconds"),
            completeness_ledger_bytes: gauge!("sla_monitor_completeness_ledger_bytes"),
        };
        metrics.assigned.set(0.0);
        for (_, counter) in &metrics.refused {
            counter.increment(0);
        }
        metrics
    }

    /// Counts a refused shuffle record.
    pub fn refused(&self, reason: &str) {
        if let Some((_, counter)) = self.refused.iter().find(|(known, _)| *known == reason) {
            counter.increment(1);
        }
    }

    /// The documents of one completeness accounting, as gauges, counters and a log line per
    /// window with a missing record.
    pub fn completeness_accounted(&self, documents: &[CompletenessDocument]) {
        let sum = |f: fn(&CompletenessDocument) -> u64| documents.iter().map(f).sum::<u64>();
        let values = [sum(|d| d.overdue), sum(|d| d.lost), sum(|d| d.in_flight)];
        for ((_, gauge), value) in self.completeness_missing.iter().zip(values) {
            gauge.set(value as f64);
        }
        for document in documents {
            self.completeness_documents[usize::from(document.is_final)].increment(1);
            if document.is_final {
                self.completeness_lost.increment(document.lost);
            }
            if document.missing > 0 {
                tracing::warn!(
                    window = %document.timestamp,
                    as_of = %document.as_of,
                    expected = document.expected,
                    overdue = document.overdue,
                    lost = document.lost,
                    first_missing = ?document.first_missing,
                    is_final = document.is_final,
                    "records of {} missing past the SLA",
                    document.source_topic
                );
            }
        }
        if let Some(document) = documents.first() {
            self.completeness_as_of
                .set(document.as_of_ms as f64 / 1000.0);
        }
    }

    /// The bytes the completeness ledger's arrivals hold, after an accounting.
    pub fn completeness_ledger_bytes(&self, bytes: usize) {
        self.completeness_ledger_bytes.set(bytes as f64);
    }

    /// `sla_monitor_completeness_in_flight_age_seconds{source_partition}`: per source
    /// partition, how long the oldest record it still owes (not arrived: in flight, overdue
    /// or lost, in the windows accounted) has been in the pipeline, as of `as_of_ms`; 0 when
    /// every record arrived. `oldest` holds the timestamps of those records.
    pub fn completeness_in_flight_age(
        partitions: &[i32],
        oldest: &BTreeMap<i32, i64>,
        as_of_ms: i64,
    ) {
        for partition in partitions {
            let age = oldest
                .get(partition)
                .map_or(0.0, |&t| (as_of_ms - t).max(0) as f64 / 1000.0);
            gauge!(
                "sla_monitor_completeness_in_flight_age_seconds",
                "source_partition" => partition.to_string()
            )
            .set(age);
        }
    }

    /// The latest written window as gauges and a log line: the per-window aggregate Prometheus
    /// sees (a histogram fed per record would hold every sample until scraped and repeat what
    /// the window computes).
    pub fn window_written(&self, result: &WindowResult) {
        for (q, value) in &result.stats.quantiles {
            if let Some((_, gauge)) = self
                .latency_by_quantile
                .iter()
                .find(|(known, _)| known == q)
            {
                gauge.set(value / 1000.0);
            }
        }
        self.window_records.set(result.stats.count as f64);
        self.window_over_sla.set(result.over_sla as f64);
        self.window_start.set(result.start_ms as f64 / 1000.0);
        let q: Vec<String> = result
            .stats
            .quantiles
            .iter()
            .map(|(q, v)| format!("{}={v:.0}", percentile_field(*q)))
            .collect();
        tracing::info!(
            start = %chrono::DateTime::<chrono::Utc>::from_timestamp_millis(result.start_ms).unwrap_or_default().to_rfc3339(),
            count = result.stats.count,
            over_sla = result.over_sla,
            "window closed: {} ms",
            q.join(" ")
        );
    }
}
