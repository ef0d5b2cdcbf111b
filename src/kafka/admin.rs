//! Topic administration: create the topics a job needs when they are missing, and read a
//! topic's timestamp type.

use crate::backoff::retry_policy;
use crate::shutdown::Shutdown;
use backon::Retryable;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientConfig;
use std::time::Duration;

/// A topic a job needs, with the settings used if it has to be created.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Partition count on creation.
    pub partitions: i32,
    /// Replication factor on creation.
    pub replication_factor: i32,
    /// Topic configs on creation, e.g. `message.timestamp.type=LogAppendTime`.
    pub configs: Vec<(String, String)>,
}

impl TopicSpec {
    /// A topic with the given shape and no special configs.
    pub fn new(name: &str, partitions: i32, replication_factor: i32) -> Self {
        TopicSpec {
            name: name.to_string(),
            partitions,
            replication_factor,
            configs: Vec::new(),
        }
    }

    /// Adds a topic config used on creation.
    pub fn with_config(mut self, key: &str, value: &str) -> Self {
        self.configs.push((key.to_string(), value.to_string()));
        self
    }
}

/// Why a topic could not be created or inspected.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The admin client could not be created from the given settings.
    #[error("creating a Kafka admin client: {0} (check --brokers and -X properties)")]
    Client(#[source] KafkaError),
    /// The request did not complete (broker unreachable or timed out).
    #[error("{action} on {brokers}: {source}")]
    Request {
        /// What was being done.
        action: String,
        /// The bootstrap brokers.
        brokers: String,
        /// The client error.
        #[source]
        source: Box<KafkaError>,
    },
    /// The broker refused to create a topic.
    #[error("creating topic {topic}: the broker answered {code}")]
    Refused {
        /// Topic name.
        topic: String,
        /// The broker's error code.
        code: RDKafkaErrorCode,
    },
}

impl AdminError {
    /// Whether retrying may help: the broker was unreachable or slow, as opposed to a
    /// misconfiguration or a refusal.
    pub fn is_transient(&self) -> bool {
        matches!(self, AdminError::Request { .. })
    }
}

const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

fn admin_client(config: &ClientConfig) -> Result<AdminClient<DefaultClientContext>, AdminError> {
    config.create().map_err(AdminError::Client)
}

/// Like [`ensure_topics`], but waits for an unreachable broker: retries with exponential
/// backoff (capped at 30 s) and a log line per attempt, until it succeeds, a non-transient
/// error occurs, or shutdown is requested.
pub async fn ensure_topics_when_reachable(
    config: &ClientConfig,
    specs: &[TopicSpec],
    mut shutdown: Shutdown,
) -> anyhow::Result<()> {
    let attempt = || ensure_topics(config, specs);
    let retrying = attempt
        .retry(retry_policy(Duration::from_millis(500)))
        .when(AdminError::is_transient)
        .notify(|error, wait| tracing::warn!("{error}; Kafka unreachable, retrying in {wait:.1?}"));
    tokio::select! {
        result = retrying => Ok(result?),
        _ = shutdown.wait() => anyhow::bail!("stopped before Kafka became reachable"),
    }
}

/// Creates every topic in `specs` that does not exist yet; existing topics are left as they
/// are (their partition count and configs are not changed).
pub async fn ensure_topics(config: &ClientConfig, specs: &[TopicSpec]) -> Result<(), AdminError> {
    let admin = admin_client(config)?;
    let brokers = config.get("bootstrap.servers").unwrap_or("?").to_string();
    let new_topics: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|spec| {
            spec.configs.iter().fold(
                NewTopic::new(
                    &spec.name,
                    spec.partitions,
                    TopicReplication::Fixed(spec.replication_factor),
                ),
                |topic, (k, v)| topic.set(k, v),
            )
        })
        .collect();
    let options = AdminOptions::new().request_timeout(Some(ADMIN_TIMEOUT));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(|source| AdminError::Request {
            action: "creating topics".into(),
            brokers: brokers.clone(),
            source: Box::new(source),
        })?;
    for result in results {
        match result {
            Ok(topic) => tracing::info!(topic, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(AdminError::Refused { topic, code }),
        }
    }
    Ok(())
}

/// The topic's `message.timestamp.type` config (`CreateTime` or `LogAppendTime`), if the
/// broker reports it.
pub async fn timestamp_type(
    config: &ClientConfig,
    topic: &str,
) -> Result<Option<String>, AdminError> {
    let admin = admin_client(config)?;
    let brokers = config.get("bootstrap.servers").unwrap_or("?").to_string();
    let request_error = |source| AdminError::Request {
        action: format!("describing topic {topic}"),
        brokers: brokers.clone(),
        source: Box::new(source),
    };
    let options = AdminOptions::new().request_timeout(Some(ADMIN_TIMEOUT));
    let results = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &options)
        .await
        .map_err(request_error)?;
    Ok(results.into_iter().find_map(|result| {
        result.ok().and_then(|resource| {
            resource
                .get("message.timestamp.type")
                .and_then(|entry| entry.value.clone())
        })
    }))
}
