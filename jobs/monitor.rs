//! `monitor`: one latency summary per event-time window of `reduced_visits`. See `--help`.

use anyhow::Context;
use clap::Parser;
use sla_monitor::digest::DigestConfig;
use sla_monitor::elasticsearch_connection::ElasticsearchArgs;
use sla_monitor::error_reporting::{self, ErrorReportingArgs};
use sla_monitor::kafka::KafkaArgs;
use sla_monitor::monitor::measurement::Plausibility;
use sla_monitor::monitor::{self, MonitorConfig};
use sla_monitor::shutdown::Shutdown;
use sla_monitor::sink::elasticsearch::{ElasticsearchSink, Refresh};
use sla_monitor::sink::json_lines::JsonLinesSink;
use sla_monitor::sink::prepared::Preparation;
use sla_monitor::stamp::{self, EndSource, LatencyStamps, Stamp, StampSource, TimeFormat};
use sla_monitor::watermark::WatermarkConfig;
use sla_monitor::window::WindowConfig;
use sla_monitor::{http, telemetry};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Destination of the window documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SinkKind {
    /// Index documents into Elasticsearch (the index Grafana reads).
    Elasticsearch,
    /// Append JSON lines to --output or stdout.
    JsonLines,
}

/// Consumes a pipeline's output (by default reduced visits), takes each record's Kafka timestamp
/// (LogAppendTime) as event time, latency = timestamp - the record's start stamp (by default
/// start_processing_time_ms; see --start-time), groups records into tumbling event-time
/// windows with watermarks and writes one summary per window (count, percentiles, min, max,
/// mean, records over the SLA). Offsets are committed only after a window is written.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    kafka: KafkaArgs,

    /// Topic of reduced visits.
    #[arg(long, env = "SLA_REDUCED_TOPIC", default_value = "reduced_visits")]
    reduced_topic: String,

    /// Topic keeping malformed and late records, with the reason in headers.
    #[arg(
        long,
        env = "SLA_REDUCED_DLQ_TOPIC",
        default_value = "reduced_visits_dlq"
    )]
    dead_letter_topic: String,

    /// Compacted topic where the monitor saves its checkpoints (resume offsets and window
    /// state), keyed by group and partition.
    #[arg(
        long,
        env = "SLA_CHECKPOINT_TOPIC",
        default_value = "sla_monitor_checkpoints"
    )]
    checkpoint_topic: String,

    /// Compacted topic where the instances of this monitor publish window parts and progress,
    /// and merge whole windows (created when missing); keys name the group and input topic,
    /// so several monitors can share it.
    #[arg(long, env = "SLA_SHUFFLE_TOPIC", default_value = "sla_monitor_shuffle")]
    shuffle_topic: String,

    /// Partitions of the shuffle topic when the monitor creates it: how many instances merge
    /// windows at once (each window is merged by one). One is plenty for most jobs.
    #[arg(long, env = "SLA_SHUFFLE_PARTITIONS", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
    shuffle_partitions: i32,

    /// Consumer group of the monitor: every instance started with the same group (and
    /// --job-name) shares the input partitions, and `<group>.merge` shares the merging.
    /// Offsets and checkpoints are kept under it.
    #[arg(long, env = "SLA_MONITOR_GROUP", default_value = "sla-monitor")]
    group: String,

    /// Name of the monitored pipeline; part of every window document's id.
    #[arg(long, env = "SLA_JOB_NAME", default_value = "visits-synchronizer")]
    job_name: String,

    /// Window length, e.g. 1m or 10s.
    #[arg(long, env = "SLA_WINDOW", default_value = "1m", value_parser = humantime::parse_duration)]
    window: Duration,

    /// How far behind the highest event time seen a partition's watermark trails, e.g. 5s.
    #[arg(long, env = "SLA_MAX_OUT_OF_ORDERNESS", default_value = "5s", value_parser = humantime::parse_duration)]
    max_out_of_orderness: Duration,

    /// A partition without records for this long stops holding the watermark back; when all
    /// are idle, windows close this long after their end. At most the window length.
    #[arg(long, env = "SLA_IDLE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,

    /// How long after its end a window still accepts records, e.g. 10s.
    #[arg(long, env = "SLA_ALLOWED_LATENESS", default_value = "0s", value_parser = humantime::parse_duration)]
    allowed_lateness: Duration,

    /// Latency SLA: records slower than this count as over the SLA, e.g. 5s.
    #[arg(long, env = "SLA_THRESHOLD", default_value = "5s", value_parser = humantime::parse_duration)]
    sla: Duration,

    /// Percentiles reported per window, comma-separated, each in (0, 100].
    #[arg(
        long,
        env = "SLA_PERCENTILES",
        default_value = "50,75,90,99",
        value_delimiter = ','
    )]
    percentiles: Vec<f64>,

    /// Windows with at most this many records get exact percentiles; larger ones a t-digest.
    #[arg(long, env = "SLA_EXACT_THRESHOLD", default_value_t = 10_000)]
    exact_threshold: usize,

    /// t-digest compression (centroids kept) for windows above the exact threshold. (Named
    /// --compression before 0.2; --compression now chooses the Kafka codec.)
    #[arg(long, env = "SLA_DIGEST_COMPRESSION", default_value_t = 500, value_parser = clap::value_parser!(u64).range(20..=100_000))]
    digest_compression: u64,

    /// Records whose timestamp is further ahead of this host's clock are refused, e.g. 5m.
    #[arg(long, env = "SLA_MAX_FUTURE", default_value = "5m", value_parser = humantime::parse_duration)]
    max_future: Duration,

    /// Latencies above this are implausible (a broken stamp, not a slow pipeline): such records
    /// are kept on the dead-letter topic (reason implausible_latency), not counted in windows.
    #[arg(long, env = "SLA_MAX_LATENCY", default_value = "1h", value_parser = humantime::parse_duration)]
    max_latency: Duration,

    /// Negative latencies (the stamp after the record's timestamp: clocks disagree) down to
    /// minus this are counted in windows and in sla_monitor_negative_latency_records_total;
    /// beyond it records are dead-lettered (reason clock_skew).
    #[arg(long, env = "SLA_MAX_CLOCK_SKEW", default_value = "5s", value_parser = humantime::parse_duration)]
    max_clock_skew: Duration,

    /// Where each record's latency starts: field:POINTER, a JSON pointer into the value (RFC 6901,
    /// e.g. field:/meta/processed_at) or header:NAME (the payload is then never decoded, so
    /// any encoding works). Records without a valid stamp are dead-lettered with the reason.
    #[arg(long, env = "SLA_START_TIME", default_value = stamp::DEFAULT_START)]
    start_time: StampSource,

    /// How the start stamp is written. A header may also hold an 8-byte big-endian integer in
    /// the unit (Java's Longs.toByteArray).
    #[arg(long, env = "SLA_START_TIME_FORMAT", value_enum, default_value_t = TimeFormat::UnixMs)]
    start_time_format: TimeFormat,

    /// Where each record's latency ends, which is also its event time: timestamp (the record's
    /// Kafka timestamp: LogAppendTime on a topic so configured), or field:… / header:… as for
    /// --start-time, for pipelines that stamp their end themselves.
    #[arg(long, env = "SLA_END_TIME", default_value = "timestamp")]
    end_time: String,

    /// How the end stamp is written (with --end-time field:… or header:…; default unix_ms).
    #[arg(long, env = "SLA_END_TIME_FORMAT", value_enum)]
    end_time_format: Option<TimeFormat>,

    /// How often acknowledged offsets are committed.
    #[arg(long, env = "SLA_COMMIT_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    commit_interval: Duration,

    /// On shutdown, how long to wait for pending writes before exiting anyway.
    #[arg(long, env = "SLA_DRAIN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,

    /// Where window documents go: elasticsearch (see --es-*), or json-lines (--output).
    #[arg(long, env = "SLA_SINK", value_enum, default_value_t = SinkKind::Elasticsearch)]
    sink: SinkKind,

    #[command(flatten)]
    elasticsearch: ElasticsearchArgs,

    /// When a written window document becomes searchable: true (at once, the default: one
    /// document per window costs Elasticsearch little), wait_for (the bulk is answered after
    /// the next periodic refresh) or false (at the index's next refresh).
    #[arg(long, env = "SLA_ES_REFRESH", value_enum, default_value_t = Refresh::Immediately)]
    es_refresh: Refresh,

    /// With --sink json-lines: append window documents to this file instead of stdout.
    #[arg(long, env = "SLA_OUTPUT")]
    output: Option<PathBuf>,

    /// Address of the HTTP endpoint (/metrics, /healthz). Port 0 picks a free port.
    #[arg(long, env = "SLA_MONITOR_HTTP_ADDR", default_value = "127.0.0.1:9102")]
    http_addr: SocketAddr,

    #[command(flatten)]
    errors: ErrorReportingArgs,
}

fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

impl Cli {
    fn config(self) -> anyhow::Result<MonitorConfig> {
        anyhow::ensure!(
            self.window >= Duration::from_millis(10),
            "--window must be at least 10ms, got {:?}",
            self.window
        );
        anyhow::ensure!(
            !self.idle_timeout.is_zero(),
            "--idle-timeout must be positive"
        );
        if self.idle_timeout > self.window {
            tracing::warn!("--idle-timeout {:?} is longer than --window {:?}: the last window of a burst is emitted late", self.idle_timeout, self.window);
        }
        let mut quantiles = Vec::new();
        for p in &self.percentiles {
            anyhow::ensure!(
                *p > 0.0 && *p <= 100.0,
                "--percentiles: each must be in (0, 100], got {p}"
            );
            quantiles.push(p / 100.0);
        }
        anyhow::ensure!(
            !quantiles.is_empty(),
            "--percentiles must name at least one percentile"
        );
        let end = match (self.end_time.as_str(), self.end_time_format) {
            ("timestamp", None) => EndSource::KafkaTimestamp,
            ("timestamp", Some(format)) => anyhow::bail!(
                "--end-time-format {} applies to an end read from the record (--end-time field:… or \
                 header:…); with --end-time timestamp the end is the record's Kafka timestamp",
                format.as_str()
            ),
            (source, format) => EndSource::Stamp(Stamp {
                source: source.parse().map_err(|e| {
                    anyhow::anyhow!("--end-time: {e}, or timestamp for the record's Kafka timestamp")
                })?,
                format: format.unwrap_or(TimeFormat::UnixMs),
            }),
        };
        if matches!(&end, EndSource::Stamp(s) if s.source == self.start_time) {
            anyhow::bail!(
                "--start-time and --end-time both read {}: every latency would be 0",
                self.start_time
            );
        }
        let stamps = LatencyStamps {
            start: Stamp {
                source: self.start_time,
                format: self.start_time_format,
            },
            end,
        };
        let tick = (self.window / 10).clamp(Duration::from_millis(20), Duration::from_millis(500));
        Ok(MonitorConfig {
            kafka: self.kafka,
            input_topic: self.reduced_topic,
            dead_letter_topic: self.dead_letter_topic,
            checkpoint_topic: self.checkpoint_topic,
            shuffle_topic: self.shuffle_topic,
            shuffle_partitions: self.shuffle_partitions,
            group: self.group,
            job_name: self.job_name,
            window: WindowConfig {
                size_ms: millis(self.window),
                allowed_lateness_ms: millis(self.allowed_lateness),
                sla_ms: millis(self.sla),
                quantiles,
                digest: DigestConfig {
                    exact_threshold: self.exact_threshold,
                    compression: self.digest_compression as usize,
                },
            },
            watermark: WatermarkConfig {
                max_out_of_orderness_ms: millis(self.max_out_of_orderness),
                idle_timeout_ms: millis(self.idle_timeout),
            },
            plausibility: Plausibility {
                max_future_ms: millis(self.max_future),
                max_latency_ms: millis(self.max_latency),
                max_clock_skew_ms: millis(self.max_clock_skew),
            },
            stamps,
            commit_interval: self.commit_interval,
            tick,
            drain_timeout: self.drain_timeout,
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli: Cli = sla_monitor::cli::parse();
    let reporting = error_reporting::start(&cli.errors, "monitor")?;
    reporting.tag("job_name", &cli.job_name);
    reporting.tag("topic", &cli.reduced_topic);
    reporting.outcome(run(cli).await)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let metrics = telemetry::install_metrics("monitor")?;
    let shutdown = Shutdown::on_signals();
    let readiness = http::Readiness::default();
    readiness.set_not_ready("starting: preparing the Kafka topics");
    http::spawn_server(
        cli.http_addr,
        http::base_router(metrics, readiness.clone()),
        shutdown.clone(),
    )
    .await?;
    let (sink, output, es, refresh) = (
        cli.sink,
        cli.output.clone(),
        cli.elasticsearch.clone(),
        cli.es_refresh,
    );
    let config = cli.config()?;
    match sink {
        SinkKind::JsonLines => {
            let layout = monitor::prepare_topics(&config, shutdown.clone()).await?;
            let sink = JsonLinesSink::new(output);
            readiness.set_not_ready("starting: reading checkpoints and assigning partitions");
            monitor::run(config, layout, sink, readiness, shutdown)
                .await
                .context("monitor stopped")?
        }
        SinkKind::Elasticsearch => {
            // The client is built and the index prepared in the background while the topics
            // are prepared and the monitor starts consuming: building the client loads the
            // system's certificates (~80 ms), a fresh index takes Elasticsearch a few hundred
            // milliseconds. Documents wait for it, /readyz says so, and a preparation that
            // fails stops the monitor with its own error — a misconfiguration at once, without
            // waiting for Kafka.
            let description = ElasticsearchSink::description(&es);
            let hold = readiness.hold(format!(
                "starting: preparing the Elasticsearch index {}",
                es.index
            ));
            let quantiles = config.window.quantiles.clone();
            let preparation = Preparation::spawn(
                move |until| async move {
                    let sink =
                        tokio::task::spawn_blocking(move || ElasticsearchSink::new(&es, refresh))
                            .await
                            .context("building the Elasticsearch client")??;
                    sink.prepare_when_reachable(&quantiles, until).await?;
                    Ok(sink)
                },
                &shutdown,
                hold,
            );
            let shutdown = shutdown.or_when(preparation.failed());
            let stopped = match monitor::prepare_topics(&config, shutdown.clone()).await {
                Ok(layout) => {
                    readiness
                        .set_not_ready("starting: reading checkpoints and assigning partitions");
                    let sink = preparation.sink(description);
                    monitor::run(config, layout, sink, readiness, shutdown)
                        .await
                        .context("monitor stopped")
                }
                Err(e) => Err(e),
            };
            // A preparation that failed by itself stopped the monitor: its error is the cause.
            // One stopped by a signal says so ("stopped before Elasticsearch became
            // reachable"); one stopped because the monitor failed says nothing new.
            let failed_first = matches!(preparation.outcome(), Some(Err(_)));
            match preparation.finish().await {
                Err(e) if failed_first || stopped.is_ok() => return Err(anyhow::anyhow!(e)),
                _ => stopped?,
            }
        }
    };
    Ok(())
}
