//! The monitor's settings as flags (with their environment variables and defaults), and the
//! [`MonitorConfig`] they make once checked: every refusal names the flag and what to write.

use super::measurement::Plausibility;
use super::{CompletenessConfig, MonitorConfig};
use crate::dimension::sla_rule::{SlaFor, SlaRules};
use crate::dimension::spec::{check_dimensions, Dimension};
use crate::dimension::split_config::{SplitConfig, DEFAULT_MAX_VALUES, MAX_MAX_VALUES};
use crate::distribution::digest::DigestConfig;
use crate::distribution::digest::{MAX_COMPRESSION, MAX_EXACT_THRESHOLD};
use crate::elasticsearch_connection::ElasticsearchArgs;
use crate::event_time::watermark::WatermarkConfig;
use crate::event_time::window::WindowConfig;
use crate::kafka::KafkaArgs;
use crate::record::lineage::is_topic_name;
use crate::record::stamp::{self, EndSource, LatencyStamps, Stamp, StampSource, TimeFormat};
use crate::runtime::cli::{duration_in, ms, number_in, secs, DAY};
use crate::runtime::redact::Secret;
use crate::shuffle::authentication::RecordAuthentication;
use crate::sink::elasticsearch::Refresh;
use std::path::PathBuf;
use std::time::Duration;

/// Destination of the window documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SinkKind {
    /// Index documents into Elasticsearch (the index Grafana reads).
    Elasticsearch,
    /// Append JSON lines to --output or stdout.
    JsonLines,
}

/// Lets the environment variables of earlier releases set what they set: `SLA_REDUCED_TOPIC`
/// the input topic (now `SLA_INPUT_TOPIC`, which wins when both are set). Call before the
/// flags are parsed, while the process has one thread.
pub fn accept_earlier_environment() {
    if std::env::var_os("SLA_INPUT_TOPIC").is_none() {
        if let Some(topic) = std::env::var_os("SLA_REDUCED_TOPIC") {
            std::env::set_var("SLA_INPUT_TOPIC", topic);
        }
    }
}

/// Every setting of the monitor job but its HTTP address and error reporting.
#[derive(Debug, Clone, clap::Args)]
pub struct MonitorFlags {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Topic the monitored pipeline writes (by default the demo's reduced visits): its
    /// records are measured. (--reduced-topic and SLA_REDUCED_TOPIC, the names of earlier
    /// releases, still work.)
    #[arg(
        long = "input-topic",
        visible_alias = "reduced-topic",
        env = "SLA_INPUT_TOPIC",
        default_value = "reduced_visits"
    )]
    pub input_topic: String,

    /// Topic keeping malformed and late records, with the reason in headers.
    #[arg(
        long,
        env = "SLA_REDUCED_DLQ_TOPIC",
        default_value = "reduced_visits_dlq"
    )]
    pub dead_letter_topic: String,

    /// Compacted topic where the monitor saves its checkpoints (resume offsets and window
    /// state), keyed by group and partition.
    #[arg(
        long,
        env = "SLA_CHECKPOINT_TOPIC",
        default_value = "sla_monitor_checkpoints"
    )]
    pub checkpoint_topic: String,

    /// Compacted topic where the instances of this monitor publish window parts and progress,
    /// and merge whole windows (created when missing); keys name the group and input topic,
    /// so several monitors can share it.
    #[arg(long, env = "SLA_SHUFFLE_TOPIC", default_value = "sla_monitor_shuffle")]
    pub shuffle_topic: String,

    /// Partitions of the shuffle topic when the monitor creates it: how many instances merge
    /// windows at once (each window is merged by one). One is plenty for most jobs. 1 to 1000.
    #[arg(long, env = "SLA_SHUFFLE_PARTITIONS", default_value_t = 1, value_parser = number_in(1, 1_000))]
    pub shuffle_partitions: i32,

    /// Consumer group of the monitor: every instance started with the same group (and
    /// --job-name) shares the input partitions, and `<group>.merge` shares the merging.
    /// Offsets and checkpoints are kept under it.
    #[arg(long, env = "SLA_MONITOR_GROUP", default_value = "sla-monitor")]
    pub group: String,

    /// Name of the monitored pipeline; part of every window document's id.
    #[arg(long, env = "SLA_JOB_NAME", default_value = "visits-synchronizer")]
    pub job_name: String,

    /// Window length, e.g. 1m or 10s.
    #[arg(long, env = "SLA_WINDOW", default_value = "1m", value_parser = duration_in(ms(1), DAY))]
    pub window: Duration,

    /// How far behind the highest event time seen a partition's watermark trails, e.g. 5s.
    #[arg(long, env = "SLA_MAX_OUT_OF_ORDERNESS", default_value = "5s", value_parser = duration_in(ms(0), DAY))]
    pub max_out_of_orderness: Duration,

    /// A partition without records for this long stops holding the watermark back; when all
    /// are idle, windows close this long after their end. At most the window length.
    #[arg(long, env = "SLA_IDLE_TIMEOUT", default_value = "30s", value_parser = duration_in(ms(1), DAY))]
    pub idle_timeout: Duration,

    /// How long a producer may hold a record between stamping it and delivering it (its
    /// delivery.timeout.ms, 2 minutes by default in Kafka's clients). When event times are the
    /// producer's (CreateTime topics, --end-time stamps), an idle partition's windows close
    /// this long after their end instead of --idle-timeout, so that the records a slow
    /// producer held — the SLA misses — are measured, not late. 0s: --idle-timeout alone.
    #[arg(long, env = "SLA_MAX_PRODUCER_HOLD", default_value = "2m", value_parser = duration_in(ms(0), DAY))]
    pub max_producer_hold: Duration,

    /// How long after its end a window still accepts records, e.g. 10s.
    #[arg(long, env = "SLA_ALLOWED_LATENESS", default_value = "0s", value_parser = duration_in(ms(0), DAY))]
    pub allowed_lateness: Duration,

    /// Latency SLA: records slower than this count as over the SLA, e.g. 5s.
    #[arg(long, env = "SLA_THRESHOLD", default_value = "5s", value_parser = duration_in(ms(1), DAY))]
    pub sla: Duration,

    /// Percentiles reported per window, comma-separated, each in (0, 100].
    #[arg(
        long,
        env = "SLA_PERCENTILES",
        default_value = "50,75,90,99",
        value_delimiter = ','
    )]
    pub percentiles: Vec<f64>,

    /// Windows with at most this many records get exact percentiles; larger ones a t-digest.
    /// 0 to 50000: each input partition's part of a window carries up to this many raw
    /// latencies through the shuffle topic and must fit a broker record (1 MB by default).
    #[arg(long, env = "SLA_EXACT_THRESHOLD", default_value_t = 10_000, value_parser = number_in(0, MAX_EXACT_THRESHOLD))]
    pub exact_threshold: usize,

    /// t-digest compression (centroids kept) for windows above the exact threshold, 20 to
    /// 10000.
    /// (--compression chooses the Kafka codec.)
    #[arg(long, env = "SLA_DIGEST_COMPRESSION", default_value_t = 500, value_parser = number_in(20, MAX_COMPRESSION as u64))]
    pub digest_compression: u64,

    /// Records whose timestamp is further ahead of this host's clock are refused, e.g. 5m.
    #[arg(long, env = "SLA_MAX_FUTURE", default_value = "5m", value_parser = duration_in(ms(0), DAY))]
    pub max_future: Duration,

    /// Latencies above this are implausible (a broken stamp, not a slow pipeline): such records
    /// are kept on the dead-letter topic (reason implausible_latency), not counted in windows.
    #[arg(long, env = "SLA_MAX_LATENCY", default_value = "1h", value_parser = duration_in(ms(1), 30 * DAY))]
    pub max_latency: Duration,

    /// Negative latencies (the stamp after the record's timestamp: clocks disagree) down to
    /// minus this are counted in windows and in sla_monitor_negative_latency_records_total;
    /// beyond it records are dead-lettered (reason clock_skew).
    #[arg(long, env = "SLA_MAX_CLOCK_SKEW", default_value = "5s", value_parser = duration_in(ms(0), DAY))]
    pub max_clock_skew: Duration,

    /// Where each record's latency starts: field:POINTER, a JSON pointer into the value (RFC 6901,
    /// e.g. field:/meta/processed_at), header:NAME (the payload is then never decoded, so
    /// any encoding works), or lineage: the source record's timestamp in the lineage header
    /// (waiting before the first stage counts; always ms). Records without a valid stamp are
    /// dead-lettered with the reason.
    #[arg(long, env = "SLA_START_TIME", default_value = stamp::DEFAULT_START)]
    pub start_time: StampSource,

    /// How the start stamp is written. A header may also hold an 8-byte big-endian integer in
    /// the unit (Java's Longs.toByteArray).
    #[arg(long, env = "SLA_START_TIME_FORMAT", value_enum, default_value_t = TimeFormat::UnixMs)]
    pub start_time_format: TimeFormat,

    /// Where each record's latency ends, which is also its event time: timestamp (the record's
    /// Kafka timestamp: LogAppendTime on a topic so configured), or field:… / header:… as for
    /// --start-time, for pipelines that stamp their end themselves.
    #[arg(long, env = "SLA_END_TIME", default_value = "timestamp")]
    pub end_time: String,

    /// How the end stamp is written (with --end-time field:… or header:…; default unix_ms).
    #[arg(long, env = "SLA_END_TIME_FORMAT", value_enum)]
    pub end_time_format: Option<TimeFormat>,

    /// The topic the monitored pipeline reads (e.g. visits): every record of it is accounted
    /// for, per source-time window — arrived within the SLA, late, overdue, lost —, from the
    /// lineage header the pipeline's stages write (docs/completeness.md). Completeness
    /// documents go to `<es-index>-completeness`. Off by default: today's documents only.
    #[arg(long, env = "SLA_SOURCE_TOPIC")]
    pub source_topic: Option<String>,

    /// With --source-topic: a record not arrived this long after it entered the source is
    /// lost (before that, past the SLA, it is overdue). Its window's completeness document is
    /// final this long after the window's end. Longer than --sla.
    #[arg(long, env = "SLA_LOST_AFTER", default_value = "10m", value_parser = duration_in(ms(1), DAY))]
    pub lost_after: Duration,

    /// With --source-topic: the pipeline's dead-letter topics (repeat, or separate with
    /// commas; e.g. visits_dlq). A source record a dead letter names (lineage or
    /// dlq.source.* headers) counts as dead-lettered, or filtered with dlq.reason=filtered,
    /// not as missing. Without them, dead-lettered records read as missing.
    #[arg(
        long = "source-dead-letters",
        env = "SLA_SOURCE_DEAD_LETTERS",
        value_delimiter = ','
    )]
    pub source_dead_letters: Vec<String>,

    /// Split every window by a field or header of the records: NAME=field:POINTER or
    /// NAME=header:HEADER (e.g. tenant=field:/tenant); repeat for up to 3 dimensions. Besides
    /// the whole window's document, one document per value (the heaviest
    /// --max-dimension-values, and every value of 1 % of the window) and one for the rest
    /// (__other__) go to `<es-index>-dimensions` (docs/dimensions.md). Off by default.
    #[arg(long = "dimension", env = "SLA_DIMENSIONS", value_delimiter = ',')]
    pub dimensions: Vec<Dimension>,

    /// With --dimension: values per window with documents of their own (the heaviest by
    /// records; every value holding 1 % of a window's records gets one too). The rest are
    /// counted under __other__.
    #[arg(long, env = "SLA_MAX_DIMENSION_VALUES", default_value_t = DEFAULT_MAX_VALUES, value_parser = number_in(1, MAX_MAX_VALUES))]
    pub max_dimension_values: usize,

    /// With --dimension: the SLA of one value's records, NAME=VALUE:DURATION (e.g.
    /// tenant=gold:500ms); repeat for more. A record matching several rules gets the
    /// strictest. Other records, the whole window and __other__'s document keep --sla.
    #[arg(long = "sla-for", env = "SLA_SLA_FOR", value_delimiter = ',')]
    pub sla_for: Vec<SlaFor>,

    /// How often acknowledged offsets are committed.
    #[arg(long, env = "SLA_COMMIT_INTERVAL", default_value = "1s", value_parser = duration_in(ms(10), secs(3_600)))]
    pub commit_interval: Duration,

    /// On shutdown, how long to wait for pending writes before exiting anyway.
    #[arg(long, env = "SLA_DRAIN_TIMEOUT", default_value = "30s", value_parser = duration_in(ms(0), secs(3_600)))]
    pub drain_timeout: Duration,

    /// Where window documents go: elasticsearch (see --es-*), or json-lines (--output).
    #[arg(long, env = "SLA_SINK", value_enum, default_value_t = SinkKind::Elasticsearch)]
    pub sink: SinkKind,

    #[command(flatten)]
    pub elasticsearch: ElasticsearchArgs,

    /// When a written window document becomes searchable: true (at once, the default: one
    /// document per window costs Elasticsearch little), wait_for (the bulk is answered after
    /// the next periodic refresh) or false (at the index's next refresh).
    #[arg(long, env = "SLA_ES_REFRESH", value_enum, default_value_t = Refresh::Immediately)]
    pub es_refresh: Refresh,

    /// With --sink json-lines: append window documents to this file instead of stdout.
    #[arg(long, env = "SLA_OUTPUT")]
    pub output: Option<PathBuf>,

    /// File holding the key that authenticates the monitor's internal records (shuffle parts,
    /// progress, checkpoints), the same for every instance: at least 32 bytes, e.g. from
    /// `openssl rand -hex 32`. Without one, anyone who can write to the internal topics can
    /// change results. (Or SLA_INTERNAL_KEY, environment only.)
    #[arg(long, env = "SLA_INTERNAL_KEY_FILE")]
    pub internal_key_file: Option<PathBuf>,

    /// The internal key itself (environment only).
    #[arg(
        long = "internal-key",
        env = "SLA_INTERNAL_KEY",
        hide = true,
        hide_env_values = true
    )]
    pub internal_key: Option<Secret>,

    /// During a key rotation: a second key whose records are also accepted (never signs).
    #[arg(long, env = "SLA_INTERNAL_KEY_ACCEPTED_FILE")]
    pub internal_key_accepted_file: Option<PathBuf>,

    /// While switching authentication on over a running monitor: still read internal records
    /// without a tag (written before the key was set). Remove once every instance has a key.
    #[arg(long, env = "SLA_ACCEPT_UNAUTHENTICATED_INTERNAL_RECORDS")]
    pub accept_unauthenticated_internal_records: bool,
}

/// Milliseconds of a flag's duration (saturating: the flags' ranges keep them small).
fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

impl MonitorFlags {
    /// The checked configuration: a value no monitor can work with is refused, naming the
    /// flag; a questionable one is warned about.
    pub fn config(self) -> anyhow::Result<MonitorConfig> {
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
        if matches!(&end, EndSource::Stamp(s) if s.source == StampSource::Lineage) {
            anyhow::bail!(
                "--end-time lineage: the lineage names where a record entered the pipeline, a \
                 start; use it with --start-time lineage"
            );
        }
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
        let authentication = RecordAuthentication::load(
            self.internal_key_file.as_deref(),
            self.internal_key.as_ref().map(Secret::expose),
            self.internal_key_accepted_file.as_deref(),
            self.accept_unauthenticated_internal_records,
        )?;
        let completeness = match self.source_topic {
            Some(source_topic) => {
                anyhow::ensure!(
                    is_topic_name(&source_topic),
                    "--source-topic {source_topic:?} is not a Kafka topic name (letters, digits, \
                     '.', '_' and '-', at most 249)"
                );
                anyhow::ensure!(
                    source_topic != self.input_topic,
                    "--source-topic {source_topic} is the monitor's --topic: name the topic the \
                     pipeline reads, whose records its output's lineage headers name"
                );
                anyhow::ensure!(
                    self.lost_after > self.sla,
                    "--lost-after {:?} must be longer than --sla {:?}: a record is overdue past \
                     the SLA and lost past --lost-after",
                    self.lost_after,
                    self.sla
                );
                for topic in &self.source_dead_letters {
                    anyhow::ensure!(
                        is_topic_name(topic),
                        "--source-dead-letters {topic:?} is not a Kafka topic name (letters, \
                         digits, '.', '_' and '-', at most 249)"
                    );
                    anyhow::ensure!(
                        *topic != source_topic && *topic != self.input_topic,
                        "--source-dead-letters {topic} is the source or the monitored topic: \
                         name the topics the pipeline's stages write their dead letters to"
                    );
                }
                Some(CompletenessConfig {
                    source_topic,
                    lost_after: self.lost_after,
                    dead_letter_topics: self.source_dead_letters,
                })
            }
            None => {
                anyhow::ensure!(
                    self.source_dead_letters.is_empty(),
                    "--source-dead-letters needs --source-topic: dead letters are evidence for \
                     the accounting of the source's records"
                );
                None
            }
        };
        let split = if self.dimensions.is_empty() {
            anyhow::ensure!(
                self.sla_for.is_empty(),
                "--sla-for needs --dimension: a per-value SLA names a value of a dimension"
            );
            None
        } else {
            check_dimensions(&self.dimensions).map_err(|e| anyhow::anyhow!("--dimension: {e}"))?;
            let sla_rules = SlaRules::new(&self.dimensions, &self.sla_for)?;
            Some(SplitConfig {
                dimensions: self.dimensions,
                max_values: self.max_dimension_values,
                sla_rules,
            })
        };
        let tick = (self.window / 10).clamp(Duration::from_millis(20), Duration::from_millis(500));
        Ok(MonitorConfig {
            kafka: self.kafka,
            input_topic: self.input_topic,
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
                producer_hold_ms: millis(self.max_producer_hold),
                assume_broker_stamped: false,
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
            authentication,
            completeness,
            split,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        monitor: MonitorFlags,
    }

    fn flags(args: &[&str]) -> MonitorFlags {
        Cli::try_parse_from(std::iter::once("monitor").chain(args.iter().copied()))
            .unwrap()
            .monitor
    }

    fn refusal(args: &[&str]) -> String {
        match flags(args).config() {
            Ok(_) => panic!("{args:?} accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_defaults_make_the_users_configuration() {
        let config = flags(&[]).config().unwrap();
        assert_eq!(config.input_topic, "reduced_visits");
        assert_eq!(config.window.size_ms, 60_000);
        assert_eq!(config.window.sla_ms, 5_000);
        assert_eq!(config.window.quantiles, vec![0.5, 0.75, 0.9, 0.99]);
        assert_eq!(config.watermark.idle_timeout_ms, 30_000);
        assert_eq!(config.tick, Duration::from_millis(500));
    }

    /// One `?flags` or `?config` in a log prints no secret, wherever it came from.
    #[test]
    fn debug_output_carries_no_secret() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, b"sasl.password=pw-file\nsasl.username=u\n").unwrap();
        let config_path = file.path().to_str().unwrap().to_string();
        let parsed = flags(&[
            "--es-password",
            "pw-es",
            "--es-api-key",
            "pw-key",
            "--internal-key",
            "pw-internal-0123456789abcdef0123456789",
            "-X",
            "sasl.password=pw-x",
            "--kafka-config",
            &config_path,
        ]);
        let shown = format!("{parsed:?}");
        assert!(shown.contains("sasl.username"), "{shown}");
        for secret in ["pw-es", "pw-key", "pw-internal", "pw-x", "pw-file"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }

    #[test]
    fn the_input_topic_keeps_its_earlier_name() {
        assert_eq!(flags(&["--input-topic", "orders"]).input_topic, "orders");
        assert_eq!(flags(&["--reduced-topic", "orders"]).input_topic, "orders");
    }

    #[test]
    fn refusals_name_the_flag() {
        assert!(refusal(&["--window", "5ms"]).starts_with("--window"));
        assert!(refusal(&["--percentiles", "0"]).starts_with("--percentiles"));
        assert!(refusal(&["--end-time-format", "unix_s"]).starts_with("--end-time-format"));
        let same = refusal(&["--start-time", "header:t", "--end-time", "header:t"]);
        assert!(same.contains("every latency would be 0"), "{same}");
        let bad_end = refusal(&["--end-time", "somewhere"]);
        assert!(bad_end.starts_with("--end-time"), "{bad_end}");
        let zero = Cli::try_parse_from(["monitor", "--commit-interval", "0s"]).unwrap_err();
        assert!(zero.to_string().contains("--commit-interval"), "{zero}");
        let alone = refusal(&["--source-dead-letters", "visits_dlq"]);
        assert!(alone.contains("needs --source-topic"), "{alone}");
        let source = refusal(&[
            "--source-topic",
            "visits",
            "--source-dead-letters",
            "visits",
        ]);
        assert!(
            source.starts_with("--source-dead-letters visits"),
            "{source}"
        );
    }

    #[test]
    fn dimensions_and_their_slas_are_checked_together() {
        let config = flags(&[
            "--dimension",
            "tenant=field:/tenant",
            "--dimension",
            "region=header:region",
            "--sla-for",
            "tenant=gold:500ms",
            "--max-dimension-values",
            "20",
        ])
        .config()
        .unwrap();
        let split = config.split.expect("split");
        assert_eq!(split.names(), ["tenant", "region"]);
        assert_eq!(split.max_values, 20);
        assert_eq!(split.sla_rules.sla_for("gold\u{1f}eu", 5_000), 500);
        assert!(flags(&[]).config().unwrap().split.is_none());
        let alone = refusal(&["--sla-for", "tenant=gold:1s"]);
        assert!(alone.contains("needs --dimension"), "{alone}");
        let unknown = refusal(&[
            "--dimension",
            "tenant=field:/t",
            "--sla-for",
            "region=eu:1s",
        ]);
        assert!(
            unknown.contains("no --dimension is named region"),
            "{unknown}"
        );
        let twice = refusal(&["--dimension", "a=field:/a", "--dimension", "a=field:/b"]);
        assert!(twice.contains("named twice"), "{twice}");
        let bad = Cli::try_parse_from(["monitor", "--dimension", "tenant"]).unwrap_err();
        assert!(bad.to_string().contains("NAME=SOURCE"), "{bad}");
    }

    #[test]
    fn dead_letter_topics_are_given_repeated_or_comma_separated() {
        let config = flags(&[
            "--source-topic",
            "visits",
            "--source-dead-letters",
            "visits_dlq,enriched_dlq",
            "--source-dead-letters",
            "late_dlq",
        ])
        .config()
        .unwrap();
        let topics = config.completeness.expect("reconciling").dead_letter_topics;
        assert_eq!(topics, ["visits_dlq", "enriched_dlq", "late_dlq"]);
    }
}
