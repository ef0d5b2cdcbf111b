//! # sla-monitor
//!
//! A Flink-style SLA latency monitor for Kafka pipelines, written as a stream processor.
//! The **synchronizer** job reduces visits and stamps when their processing started; the
//! **monitor** job measures, per event-time window, how long records took to reach the output
//! topic; the **generator** feeds realistic (and deliberately broken) visits.
//!
//! # Layout
//!
//! Grouped by concept, from the ground up (the pure core at the bottom, the jobs on top).
//!
//! Ground floor, pure (no I/O, unit- and property-tested):
//! - [`record`]: what a record is — input [`record::visit`]s, the [`record::reduced_visit`] the
//!   synchronizer writes, where a record came from ([`record::lineage`]), where a latency starts and ends ([`record::stamp`], read by
//!   [`record::json_pointer`] without building a tree — plain JSON by [`record::plain_scan`] —
//!   or from a header; any time format), and
//!   the fixed set of reasons a record is refused ([`record::rejection`]).
//! - [`completeness`]: every source record accounted for per source-time window (arrived in
//!   time or late, dead-lettered, filtered, in flight, overdue, lost, unknown; duplicates
//!   apart), from offsets kept as ranges ([`completeness::offset_ranges`]).
//! - [`dimension`]: a window split by the values of the user's fields or headers (tenant,
//!   region), in bounded memory per partition ([`dimension::value_table`]) and with the same
//!   choice of values on every instance ([`dimension::selection`]).
//! - [`distribution`]: a window's percentiles ([`distribution::digest`]: exact below a
//!   threshold, t-digest above) and its whole distribution within a proved bound
//!   ([`distribution::latency_histogram`]) for Elasticsearch's `histogram` field.
//! - [`hex`]: bytes as hex text (key ids, record tags, document ids).
//! - [`runtime`]: what every job runs on — command line ([`runtime::cli`]: secrets refused as
//!   flags, durations bounded), logging and metrics, the HTTP endpoint, shutdown, retries,
//!   rate-limited logs, redaction, error reporting (I/O, but no knowledge of records).
//!
//! Event time and the edges:
//! - [`event_time`]: one partition's watermark ([`event_time::watermark`]: out-of-orderness,
//!   idleness) and windows ([`event_time::window`]), the operator over the partitions an
//!   instance owns — the one place that decides whether a record is accepted, late or already
//!   counted — whole windows from the partitions' parts ([`event_time::merge`]), and the
//!   document written per window ([`event_time::window_document`]). Pure.
//! - [`kafka`]: client settings, the connection check ([`kafka::security_failure`]), topics,
//!   the client context, group members ([`kafka::group_consumer`]), commits, dead letters,
//!   producing; and pure consumer bookkeeping: [`kafka::offset_tracker`] (which offsets are
//!   safe to commit), [`kafka::assignment_watchdog`] (a member holding nothing too long).
//! - [`alerting`]: Grafana alert rules read from provisioning files, query A as Grafana's
//!   Elasticsearch data source builds it, reduce/threshold, Grafana 10.4's state machine per
//!   alert instance, notifications, backtests and their scores ([`alerting::commands`]: what
//!   the `alerts` job runs).
//! - [`sink`] (Elasticsearch, JSON lines, memory; written with retries and acknowledged),
//!   [`elasticsearch_connection`], [`shuffle`] (the protocol instances publish window parts and
//!   progress in; [`shuffle::publisher`] writes it), [`slo`] (true percentiles, compliance and
//!   error budgets from the histograms; SLO files and their burn-rate rules).
//!
//! The jobs' engines (the binaries in `jobs/` only parse flags and call one function):
//! - [`generator`]: the deterministic visit source ([`generator::visits`]) at a rate.
//! - [`synchronizer`]: visits → reduced visits (+ dead letters), with an optional
//!   [`synchronizer::delay`] and a [`synchronizer::loss`] switch: a loop that moves records between Kafka and
//!   [`synchronizer::core`], where every decision is made (admit, wait, release, reschedule,
//!   budgets, what may be committed) with time passed in.
//! - [`monitor`]: a pipeline's output → one latency summary per event-time window, as two
//!   stages in their own tasks: [`monitor::partition_stage`] around [`monitor::decisions`] (pure)
//!   and [`monitor::merge_stage`] around [`monitor::merge_state`] (pure); [`monitor::settings`]
//!   turns flags into a checked configuration, [`monitor::launch`] runs the job, and
//!   [`monitor::metrics`] names every metric.

pub mod alerting;
#[cfg(test)]
mod arbitrary_json;
pub mod completeness;
pub mod dimension;
pub mod distribution;
pub mod elasticsearch_connection;
pub mod event_time;
pub mod generator;
pub mod hex;
pub mod kafka;
pub mod monitor;
pub mod record;
pub mod runtime;
pub mod shuffle;
pub mod sink;
pub mod slo;
pub mod synchronizer;
