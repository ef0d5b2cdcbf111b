//! # sla-monitor
//!
//! A Flink-style SLA latency monitor for Kafka pipelines, written as a stream processor.
//! The **synchronizer** job reduces visits and stamps when their processing started; the
//! **monitor** job measures, per event-time window, how long records took to reach the output
//! topic; the **generator** feeds realistic (and deliberately broken) visits.
//!
//! # Layout
//!
//! Pure core (no I/O, unit- and property-tested):
//! - [`visit`]: decoding and validation of input visits.
//! - [`reduced_visit`]: the reduced record written by the synchronizer and read by the monitor.
//! - [`rejection`]: the fixed set of reasons a record is refused.
//! - [`stamp`], [`json_pointer`]: where a record's latency starts and ends (a JSON field named by
//!   a pointer, read without building a tree, or a header; any time format) — any pipeline.
//! - [`delay`]: the artificial delay policy and the per-partition order-keeping schedule.
//! - [`offset_tracker`]: which consumed offsets are safe to commit.
//! - [`synchronizer::core`]: every decision of the synchronizer (admit, wait, release,
//!   reschedule on a delay change, budgets, what may be committed), time passed in.
//! - [`assignment_watchdog`]: when a group member has held no partition for too long.
//! - [`rate_limited_log`]: one log line per key and interval under floods of bad input.
//! - [`generator::visits`]: the deterministic visit source.
//! - [`watermark`]: one partition's event-time watermark (bounded out-of-orderness, idleness).
//! - [`window`]: one partition's tumbling event-time windows, lateness, resume points for safe
//!   commits; [`window::merge_parts`] makes whole windows of the partitions' parts.
//! - [`event_time`]: the event-time operator over the partitions an instance owns — each one's
//!   watermark and windows, the one place that decides whether a record is accepted, late or
//!   already counted.
//! - [`digest`]: per-window percentiles, exact below a threshold, t-digest above.
//! - [`latency_histogram`]: a window's whole latency distribution (exact counts, or buckets
//!   within a proved bound) for Elasticsearch's `histogram` field.
//! - [`window_document`]: the document written per closed window.
//! - [`shuffle`], [`merge`]: how monitor instances that own different input partitions
//!   publish window parts and progress to a compacted topic, and how the owner of a shuffle
//!   partition merges them into whole windows once every input partition has passed their end.
//! - [`monitor::measurement`], [`monitor::checkpoint`], [`monitor::restore`],
//!   [`monitor::decisions`], [`monitor::unacknowledged`], [`monitor::merge_state`]: a record's
//!   latency, the state saved with each commit, where each partition resumes, every decision
//!   of the monitor's partition stage (records, ticks, acknowledgements, what may be committed)
//!   with time passed in, a partition's output not yet acknowledged, and the merge stage's
//!   state over the shuffle partitions it owns.
//! - [`alerting::rule`], [`alerting::es_query`], [`alerting::expressions`], [`alerting::state`],
//!   [`alerting::instances`], [`alerting::notify`], [`alerting::backtest`]: Grafana alert rules
//!   read from provisioning files, query A as Grafana's Elasticsearch data source builds it
//!   (terms split, bucket script), reduce/threshold, Grafana 10.4's state machine (tests: rows of
//!   Grafana's own state tests) per alert instance with stale series resolved, the
//!   Alertmanager/webhook payloads, and the replay of past evaluations into a timeline.
//!
//! Edges (I/O):
//! - [`kafka`]: client settings (flags, properties files checked by librdkafka, compression),
//!   the connection check that turns refused credentials and untrusted certificates into a
//!   clear stop ([`kafka::security_failure`]), topic administration, client context, group
//!   members and their broker look-ups ([`kafka::group_consumer`]), dead letters, producing,
//!   closing a consumer a job replaced ([`kafka::retire`]), and the headers a stamp names
//!   ([`kafka::stamp_headers`]).
//! - [`shuffle::publisher`]: writes the shuffle protocol (parts, progress, written markers,
//!   tombstones) to the shuffle topic.
//! - [`http`] and [`telemetry`]: the `/metrics` and `/healthz` endpoint, logging, metrics.
//! - [`shutdown`]: graceful stop on SIGINT/SIGTERM; [`backoff`]: the shared retry schedule.
//! - [`sink`]: where window documents go (Elasticsearch, JSON lines, or memory for programs that
//!   run the monitor inside them), written with retries
//!   and acknowledged; [`sink::elasticsearch`] split into mapping and bulk.
//! - [`elasticsearch_connection`]: URL, index and credentials of Elasticsearch, shared by the
//!   sink and the alert evaluator.
//! - [`slo`]: true percentiles, compliance and the error budget over any range from the
//!   documents' latency histograms; the SLO file and the burn-rate rules generated from it.
//! - [`alerting::evaluation`], [`alerting::evaluator`]: rules evaluated against Elasticsearch,
//!   the evaluation loop, `/state`, notifications.
//!
//! Jobs (wiring the above; the binaries in `jobs/` only parse flags):
//! - [`generator`]: produces visits at a rate.
//! - [`synchronizer`]: visits → reduced visits (+ dead letters), with optional delay: a loop
//!   that moves records between Kafka and [`synchronizer::core`].
//! - [`monitor`]: reduced visits → one latency summary per event-time window, as two stages
//!   in their own tasks: [`monitor::partition_stage`] (input → decisions → parts published →
//!   checkpoints and commits via [`monitor::committer`]) and [`monitor::merge_stage`] (shuffle
//!   → merged windows → sink → written markers); [`monitor::metrics`] names every metric.
//! - `alerts` (binary): the Grafana rule evaluator built from [`alerting`], live (to every
//!   Alertmanager replica) or `alerts backtest` over a past range.

pub mod alerting;
#[cfg(test)]
mod arbitrary_json;
pub mod assignment_watchdog;
pub mod backoff;
pub mod cli;
pub mod delay;
pub mod digest;
pub mod elasticsearch_connection;
pub mod error_reporting;
pub mod event_time;
pub mod generator;
pub mod http;
pub mod json_pointer;
pub mod kafka;
pub mod latency_histogram;
pub mod merge;
pub mod monitor;
pub mod offset_tracker;
pub mod rate_limited_log;
pub mod redact;
pub mod reduced_visit;
pub mod rejection;
pub mod shuffle;
pub mod shutdown;
pub mod sink;
pub mod slo;
pub mod stamp;
pub mod synchronizer;
pub mod telemetry;
pub mod visit;
pub mod watermark;
pub mod window;
pub mod window_document;
