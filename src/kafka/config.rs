//! Kafka client settings shared by every job: brokers, client properties (flags and a
//! properties file, for TLS, SASL and anything else librdkafka offers), the compression of
//! what the jobs produce, and the shape of the topics the jobs create.

use super::properties::{parse_properties_file, PropertiesFile, Property, PropertyParser};
use rdkafka::ClientConfig;
use std::time::Duration;

/// Most kilobytes of records a consumer fetches ahead of the job (`queued.max.messages.kbytes`).
pub const PREFETCH_KBYTES: &str = "8192";

/// Settings every Kafka client of the jobs starts from. `reconnect.backoff.ms` 20 (librdkafka:
/// 100; the Java client: 50): librdkafka opens a client's first broker connections at most once
/// per half of it, so each new client (a group member, a checkpoint read, an admin request)
/// waited ~50 ms before its first request — three such waits made a monitor's start about
/// 150 ms slower. Reconnects after an outage still back off exponentially, to
/// `reconnect.backoff.max.ms` (10 s).
pub const CLIENT_DEFAULTS: &[(&str, &str)] = &[("reconnect.backoff.ms", "20")];

/// Most records a consumer fetches ahead per partition (`queued.min.messages`). Small records
/// cost librdkafka a few hundred bytes of bookkeeping each besides their bytes: its default,
/// 100,000 per partition, held ~30 MB whenever a job was slower than the broker.
pub const PREFETCH_MESSAGES: &str = "50000";

/// Kafka flags common to all jobs.
#[derive(Clone, clap::Args)]
pub struct KafkaArgs {
    /// Bootstrap brokers, comma-separated host:port list.
    #[arg(long, env = "SLA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,

    /// A file of librdkafka client properties, one key=value per line (# comments), like
    /// kcat's -F: the place for TLS and SASL settings and secrets (keep it outside the repo,
    /// readable only by the job). Checked at start; -X flags override it.
    #[arg(long, env = "SLA_KAFKA_CONFIG", value_name = "FILE", value_parser = parse_properties_file)]
    pub kafka_config: Option<PropertiesFile>,

    /// A librdkafka client property passed through unchanged, as key=value (repeatable), e.g.
    /// -X security.protocol=SASL_SSL -X sasl.mechanism=SCRAM-SHA-512. In the environment
    /// variable, separate several with commas. Prefer --kafka-config for secrets.
    #[arg(
        short = 'X',
        long = "kafka-property",
        env = "SLA_KAFKA_PROPERTIES",
        value_name = "KEY=VALUE",
        value_delimiter = ',',
        value_parser = PropertyParser
    )]
    pub properties: Vec<Property>,

    /// Compression of the records this job produces (consumers read every codec whatever
    /// this says). lz4: fast, supported by every broker since Kafka 0.10. zstd needs
    /// brokers from Kafka 2.1. -X compression.type=... overrides it.
    #[arg(long, env = "SLA_KAFKA_COMPRESSION", value_enum, default_value_t = Compression::Lz4)]
    pub compression: Compression,

    /// Partitions of the topics this job creates when they are missing (1 to 10000).
    #[arg(long, env = "SLA_PARTITIONS", default_value_t = 2, value_parser = crate::runtime::cli::number_in(1, 10_000))]
    pub partitions: i32,

    /// Replication factor of the topics this job creates when they are missing (1 to 32).
    #[arg(long, env = "SLA_REPLICATION_FACTOR", default_value_t = 1, value_parser = crate::runtime::cli::number_in(1, 32))]
    pub replication_factor: i32,
}

impl std::fmt::Debug for KafkaArgs {
    /// Secret properties (from `SLA_KAFKA_PROPERTIES` or the file) show as `[redacted]`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaArgs")
            .field("brokers", &self.brokers)
            .field("kafka_config", &self.kafka_config)
            .field(
                "properties",
                &super::properties::RedactedProperties(&self.properties),
            )
            .field("compression", &self.compression)
            .field("partitions", &self.partitions)
            .field("replication_factor", &self.replication_factor)
            .finish()
    }
}

/// Compression codec of produced record batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    /// No compression.
    None,
    /// gzip: small, slow.
    Gzip,
    /// snappy: fast, larger.
    Snappy,
    /// lz4: fast and compact.
    Lz4,
    /// zstd: compact at good speed; needs Kafka 2.1+.
    Zstd,
}

impl Compression {
    /// librdkafka's name for the codec (`compression.type`).
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl KafkaArgs {
    /// The bootstrap servers in effect: `bootstrap.servers` from -X or the properties file if
    /// set there, else --brokers.
    pub fn bootstrap_servers(&self) -> &str {
        self.user_properties()
            .filter(|(key, _)| key == "bootstrap.servers")
            .last()
            .map_or(self.brokers.as_str(), |(_, value)| value.as_str())
    }

    /// Producer settings: `defaults` plus --compression, then the user's properties.
    pub fn producer_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut settings = vec![("compression.type", self.compression.as_str())];
        settings.extend_from_slice(defaults);
        self.client_config(&settings)
    }

    /// Consumer settings of the jobs: group `group`, offsets committed by the job itself (never
    /// automatically), reading from the start of a partition the group never committed, short
    /// fetch waits (latency matters here), statistics for the lag metric, and at most
    /// [`PREFETCH_KBYTES`] of records fetched ahead (librdkafka's default, 64 MB, would be most
    /// of a job's memory whenever the job is slower than the broker).
    pub fn consumer_config(&self, group: &str) -> ClientConfig {
        self.client_config(&[
            ("group.id", group),
            ("enable.auto.commit", "false"),
            ("auto.offset.reset", "earliest"),
            ("fetch.wait.max.ms", "50"),
            ("statistics.interval.ms", "5000"),
            ("queued.max.messages.kbytes", PREFETCH_KBYTES),
            ("queued.min.messages", PREFETCH_MESSAGES),
            // Once the prefetch is full, fetch again soon: librdkafka's default waits 1 s,
            // which starves a job that drains its prefetch in a fraction of that.
            ("fetch.queue.backoff.ms", "5"),
            // Partitions added to a topic are noticed (and assigned by a rebalance) within
            // 30 s instead of librdkafka's 5 minutes.
            ("topic.metadata.refresh.interval.ms", "30000"),
        ])
    }

    /// Where a consumer of `group` starts in a partition without a committed offset
    /// (`auto.offset.reset` as the consumers use it): the partition's start or end; `None`
    /// when it is `error` (or unknown to this function).
    pub fn offset_reset(&self, group: &str) -> Option<rdkafka::Offset> {
        match self.consumer_config(group).get("auto.offset.reset")? {
            "earliest" | "smallest" | "beginning" => Some(rdkafka::Offset::Beginning),
            "latest" | "largest" | "end" => Some(rdkafka::Offset::End),
            _ => None,
        }
    }

    /// The most bytes a produced record may have (`message.max.bytes` as the user set it, else
    /// librdkafka's default): larger records are refused by the producer before sending.
    pub fn message_max_bytes(&self) -> usize {
        self.client_config(&[])
            .get("message.max.bytes")
            .and_then(|bytes| bytes.parse().ok())
            .unwrap_or(super::dead_letter::DEFAULT_MESSAGE_MAX_BYTES)
    }

    /// The group session timeout consumers of `group` use (`session.timeout.ms`, as the user
    /// set it or librdkafka's default of 45 s): how long a dead member keeps its partitions.
    pub fn session_timeout(&self, group: &str) -> Duration {
        self.consumer_config(group)
            .get("session.timeout.ms")
            .and_then(|ms| ms.parse().ok())
            .map_or(Duration::from_secs(45), Duration::from_millis)
    }

    /// Settings for these brokers: the jobs' client defaults ([`CLIENT_DEFAULTS`]), then
    /// `defaults`, then the properties file, then `-X` properties, so users can override any
    /// default the jobs choose.
    pub fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in CLIENT_DEFAULTS.iter().chain(defaults) {
            config.set(*key, *value);
        }
        for (key, value) in self.user_properties() {
            config.set(key, value);
        }
        config
    }

    /// The user's properties in the order they apply: the file's, then `-X`.
    fn user_properties(&self) -> impl Iterator<Item = &Property> {
        self.kafka_config
            .iter()
            .flat_map(|file| file.properties.iter())
            .chain(&self.properties)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        kafka: KafkaArgs,
    }

    /// The Kafka settings a job parses from `args`.
    fn parse(args: &[&str]) -> KafkaArgs {
        Cli::try_parse_from(std::iter::once("job").chain(args.iter().copied()))
            .unwrap()
            .kafka
    }

    #[test]
    fn the_offset_reset_is_the_start_unless_the_user_says_otherwise() {
        let reset = |args: &[&str]| parse(args).offset_reset("g");
        assert_eq!(reset(&[]), Some(rdkafka::Offset::Beginning));
        assert_eq!(
            reset(&["-X", "auto.offset.reset=latest"]),
            Some(rdkafka::Offset::End)
        );
        assert_eq!(reset(&["-X", "auto.offset.reset=error"]), None);
    }

    #[test]
    fn every_client_starts_from_the_client_defaults_which_the_user_overrides() {
        let kafka = parse(&[]);
        for config in [
            kafka.client_config(&[]),
            kafka.consumer_config("g"),
            kafka.producer_config(&[]),
        ] {
            assert_eq!(config.get("reconnect.backoff.ms"), Some("20"));
        }
        let kafka = parse(&["-X", "reconnect.backoff.ms=250"]);
        assert_eq!(
            kafka.consumer_config("g").get("reconnect.backoff.ms"),
            Some("250")
        );
        assert_eq!(
            kafka
                .client_config(&[("reconnect.backoff.ms", "70")])
                .get("reconnect.backoff.ms"),
            Some("250")
        );
        assert_eq!(
            parse(&[])
                .client_config(&[("reconnect.backoff.ms", "70")])
                .get("reconnect.backoff.ms"),
            Some("70")
        );
    }

    #[test]
    fn properties_override_job_defaults() {
        let cli = Cli::try_parse_from([
            "x",
            "--brokers",
            "b:1",
            "-X",
            "linger.ms=50",
            "-X",
            "sasl.password=a=b",
        ])
        .unwrap();
        let config = cli
            .kafka
            .client_config(&[("linger.ms", "5"), ("acks", "all")]);
        assert_eq!(config.get("bootstrap.servers"), Some("b:1"));
        assert_eq!(config.get("linger.ms"), Some("50"));
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("sasl.password"), Some("a=b"));
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        use std::io::Write;
        writeln!(
            file,
            "bootstrap.servers=secure:9093\nlinger.ms=20\nacks=1\ncompression.type=gzip"
        )
        .unwrap();
        let path = file.path().to_str().unwrap();
        let cli = Cli::try_parse_from(["x", "--kafka-config", path, "-X", "acks=all"]).unwrap();
        let config = cli.kafka.producer_config(&[("linger.ms", "5")]);
        assert_eq!(config.get("bootstrap.servers"), Some("secure:9093"));
        assert_eq!(cli.kafka.bootstrap_servers(), "secure:9093");
        assert_eq!(config.get("linger.ms"), Some("20"));
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("compression.type"), Some("gzip"));
    }

    #[test]
    fn compression_defaults_to_lz4_on_producers_only() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(
            cli.kafka.producer_config(&[]).get("compression.type"),
            Some("lz4")
        );
        assert_eq!(cli.kafka.consumer_config("g").get("compression.type"), None);
        let cli = Cli::try_parse_from(["x", "--compression", "zstd"]).unwrap();
        assert_eq!(
            cli.kafka.producer_config(&[]).get("compression.type"),
            Some("zstd")
        );
        assert!(Cli::try_parse_from(["x", "--compression", "brotli"]).is_err());
    }

    #[test]
    fn unreadable_properties_file_is_a_parse_error() {
        let err = Cli::try_parse_from(["x", "--kafka-config", "/nonexistent/k.properties"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("/nonexistent/k.properties"), "{err}");
    }

    #[test]
    fn malformed_property_is_explained() {
        let err = Cli::try_parse_from(["x", "-X", "novalue"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("KEY=VALUE"), "{err}");
    }

    #[test]
    fn zero_partitions_is_refused() {
        assert!(Cli::try_parse_from(["x", "--partitions", "0"]).is_err());
    }
}
