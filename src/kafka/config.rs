//! Kafka client settings shared by every job: brokers, pass-through client properties and
//! the shape of the topics the jobs create.

use rdkafka::ClientConfig;

/// Kafka flags common to all jobs.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// Bootstrap brokers, comma-separated host:port list.
    #[arg(long, env = "SLA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,

    /// A librdkafka client property passed through unchanged, as key=value (repeatable), e.g.
    /// -X security.protocol=SASL_SSL -X sasl.mechanism=PLAIN. In the environment variable,
    /// separate several with commas. Keep secrets in the environment, not in scripts.
    #[arg(
        short = 'X',
        long = "kafka-property",
        env = "SLA_KAFKA_PROPERTIES",
        value_name = "KEY=VALUE",
        value_delimiter = ',',
        value_parser = parse_property
    )]
    pub properties: Vec<(String, String)>,

    /// Partitions of the topics this job creates when they are missing.
    #[arg(long, env = "SLA_PARTITIONS", default_value_t = 2, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,

    /// Replication factor of the topics this job creates when they are missing.
    #[arg(long, env = "SLA_REPLICATION_FACTOR", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
    pub replication_factor: i32,
}

impl KafkaArgs {
    /// Consumer settings of the jobs: group `group`, offsets committed by the job itself (never
    /// automatically), reading from the start of a partition the group never committed, short
    /// fetch waits (latency matters here) and statistics for the lag metric.
    pub fn consumer_config(&self, group: &str) -> ClientConfig {
        self.client_config(&[
            ("group.id", group),
            ("enable.auto.commit", "false"),
            ("auto.offset.reset", "earliest"),
            ("fetch.wait.max.ms", "50"),
            ("statistics.interval.ms", "5000"),
        ])
    }

    /// Settings for these brokers with `-X` properties applied last, so users can override
    /// any default the jobs choose.
    pub fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }
}

/// Parses one `-X key=value` property.
pub fn parse_property(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!(
            "expected KEY=VALUE (a librdkafka property such as security.protocol=SSL), got {raw:?}"
        )),
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
