//! Topic administration: create the topics a job needs when they are missing, and read a
//! topic's timestamp type. This is every job's first contact with the brokers, so it is also
//! where refused credentials and untrusted certificates end the job with a clear message.

use super::retire::retire;
use super::security_failure::{classify, transport_hint, SecurityFailure};
use crate::runtime::backoff::retry_policy;
use crate::runtime::shutdown::Shutdown;
use backon::Retryable;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Partition counts by topic name, as the brokers' metadata or a topic's creation set them.
pub type PartitionCounts = BTreeMap<String, i32>;

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
    #[error(
        "creating a Kafka admin client: {0} (check --brokers, --kafka-config and -X properties)"
    )]
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
    /// The connection cannot succeed without a configuration change (credentials, TLS).
    #[error("{action} on {brokers}: {failure}")]
    Security {
        /// What was being done.
        action: String,
        /// The bootstrap brokers.
        brokers: String,
        /// What failed and what to change.
        failure: SecurityFailure,
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
const PROBE_SLICE: Duration = Duration::from_millis(500);

/// Client context of the connection probe: remembers the first failure retrying cannot fix
/// (librdkafka would retry it forever) and logs hints for transport errors.
struct SetupContext {
    security_failure: watch::Sender<Option<SecurityFailure>>,
    last_error: Arc<Mutex<Option<String>>>,
}

impl ClientContext for SetupContext {
    fn log(&self, _level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        tracing::debug!(target: "librdkafka", facility, "{message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(failure) = classify(error.rdkafka_error_code(), reason) {
            self.security_failure.send_if_modified(|first| {
                if first.is_some() {
                    return false;
                }
                *first = Some(failure);
                true
            });
        } else if error.rdkafka_error_code() != Some(RDKafkaErrorCode::AllBrokersDown) {
            // (AllBrokersDown only sums up the per-connection errors, which say why.)
            tracing::debug!("Kafka connection probe: {error}: {reason}");
            let described = match transport_hint(reason) {
                Some(hint) => format!("{reason}; {hint}"),
                None => reason.to_string(),
            };
            *self.last_error.lock().expect("last error poisoned") = Some(described);
        }
    }
}

impl ProducerContext for SetupContext {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

fn admin_client(config: &ClientConfig) -> Result<AdminClient<DefaultClientContext>, AdminError> {
    config.create().map_err(AdminError::Client)
}

/// Turns a failed request into an [`AdminError::Request`] naming what was being done.
fn request_error(action: String, config: &ClientConfig) -> impl FnOnce(KafkaError) -> AdminError {
    let brokers = config.get("bootstrap.servers").unwrap_or("?").to_string();
    move |source| AdminError::Request {
        action,
        brokers,
        source: Box::new(source),
    }
}

/// Connects to the brokers and fetches the cluster's metadata; returns the partition counts
/// of those of `topics` that exist. Fails at once with [`AdminError::Security`] when the
/// brokers refuse the credentials or the TLS handshake cannot succeed (the admin API only
/// times out then, since librdkafka retries forever), and with a transient
/// [`AdminError::Request`] when they cannot be reached.
pub async fn check_connection(
    config: &ClientConfig,
    topics: &[String],
) -> Result<PartitionCounts, AdminError> {
    let topics = topics.to_vec();
    let (security_failure, mut failures) = watch::channel(None);
    let last_error = Arc::new(Mutex::new(None));
    // A threaded producer polls its main queue, where librdkafka reports connection errors.
    let probe: ThreadedProducer<SetupContext> = config
        .create_with_context(SetupContext {
            security_failure,
            last_error: last_error.clone(),
        })
        .map_err(AdminError::Client)?;
    let failed = failures.clone();
    // In short slices, so that the blocking thread ends soon after a security failure.
    let fetch = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + ADMIN_TIMEOUT;
        let outcome = loop {
            match probe.client().fetch_metadata(None, PROBE_SLICE) {
                Ok(metadata) => {
                    break Ok(metadata
                        .topics()
                        .iter()
                        .filter(|t| {
                            t.error().is_none()
                                && !t.partitions().is_empty()
                                && topics.iter().any(|name| name == t.name())
                        })
                        .map(|t| (t.name().to_string(), t.partitions().len() as i32))
                        .collect())
                }
                Err(e) if failed.borrow().is_some() || std::time::Instant::now() >= deadline => {
                    break Err(e)
                }
                Err(_) => {}
            }
        };
        retire(probe);
        outcome
    });
    let fetched = async move { fetch.await.unwrap_or(Err(KafkaError::Canceled)) };
    tokio::select! {
        biased;
        Ok(failure) = failures.wait_for(Option::is_some) => Err(AdminError::Security {
            action: "connecting".into(),
            brokers: config.get("bootstrap.servers").unwrap_or("?").to_string(),
            failure: failure.clone().expect("waited for Some"),
        }),
        result = fetched => result.map_err(|e| {
            let action = match last_error.lock().expect("last error poisoned").take() {
                Some(reason) => format!("connecting (last connection error: {reason})"),
                None => "connecting".to_string(),
            };
            request_error(action, config)(e)
        }),
    }
}

/// Like [`ensure_topics`], but waits for an unreachable broker: retries with exponential
/// backoff (capped at 30 s) and a log line per attempt, until it succeeds, a non-transient
/// error occurs, or shutdown is requested.
pub async fn ensure_topics_when_reachable(
    config: &ClientConfig,
    specs: &[TopicSpec],
    mut shutdown: Shutdown,
) -> anyhow::Result<PartitionCounts> {
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

/// Waits until the topic a job reads exists and returns its partition count. A job never
/// creates the topic it reads: a misspelt name would otherwise give a job that is ready and
/// healthy forever on an empty topic. Until the topic exists, `readiness` says what it waits
/// for and which flag names the topic, and a warning says so every minute. Waits for an
/// unreachable broker too; stops on shutdown.
pub async fn wait_for_input_topic(
    config: &ClientConfig,
    topic: &str,
    flag: &str,
    readiness: &crate::runtime::http::Readiness,
    mut shutdown: Shutdown,
) -> anyhow::Result<i32> {
    const POLL: Duration = Duration::from_secs(2);
    let mut last_warning: Option<std::time::Instant> = None;
    loop {
        let names = [topic.to_string()];
        let attempt = || check_connection(config, &names);
        let retrying = attempt
            .retry(retry_policy(Duration::from_millis(500)))
            .when(AdminError::is_transient)
            .notify(|error, wait| {
                tracing::warn!("{error}; Kafka unreachable, retrying in {wait:.1?}")
            });
        let known = tokio::select! {
            result = retrying => result?,
            _ = shutdown.wait() => anyhow::bail!("stopped before Kafka became reachable"),
        };
        if let Some(&partitions) = known.get(topic) {
            if last_warning.is_some() {
                tracing::info!(topic, partitions, "the input topic exists now");
            }
            return Ok(partitions);
        }
        let waiting = format!(
            "waiting for the input topic {topic} to exist: a job never creates the topic it \
             reads (check {flag}, or create the topic)"
        );
        readiness.set_not_ready(waiting.clone());
        if last_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
            tracing::warn!(topic, "{waiting}");
            last_warning = Some(std::time::Instant::now());
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            _ = shutdown.wait() => anyhow::bail!("stopped while waiting for the input topic {topic}"),
        }
    }
}

/// Creates every topic in `specs` that does not exist yet; existing topics are left as they
/// are (their partition count and configs are not changed). Returns the partition counts
/// this learned: an existing topic's from the metadata, a created one's from its spec (a
/// topic someone else created meanwhile is left out).
pub async fn ensure_topics(
    config: &ClientConfig,
    specs: &[TopicSpec],
) -> Result<PartitionCounts, AdminError> {
    let names: Vec<String> = specs.iter().map(|spec| spec.name.clone()).collect();
    let mut known = check_connection(config, &names).await?;
    let missing: Vec<&TopicSpec> = specs
        .iter()
        .filter(|spec| !known.contains_key(&spec.name))
        .collect();
    if missing.is_empty() {
        return Ok(known);
    }
    let admin = admin_client(config)?;
    let new_topics: Vec<NewTopic<'_>> = missing
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
    let results = admin.create_topics(&new_topics, &options).await;
    retire(admin);
    let results = results.map_err(request_error("creating topics".into(), config))?;
    for result in results {
        match result {
            Ok(topic) => {
                tracing::info!(topic, "created topic");
                if let Some(spec) = missing.iter().find(|spec| spec.name == topic) {
                    known.insert(topic, spec.partitions);
                }
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(AdminError::Refused { topic, code }),
        }
    }
    Ok(known)
}

/// The topic's `message.timestamp.type` config (`CreateTime` or `LogAppendTime`), if the
/// broker reports it.
pub async fn timestamp_type(
    config: &ClientConfig,
    topic: &str,
) -> Result<Option<String>, AdminError> {
    let admin = admin_client(config)?;
    let options = AdminOptions::new().request_timeout(Some(ADMIN_TIMEOUT));
    let results = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &options)
        .await;
    retire(admin);
    let results = results.map_err(request_error(format!("describing topic {topic}"), config))?;
    Ok(results.into_iter().find_map(|result| {
        result.ok().and_then(|resource| {
            resource
                .get("message.timestamp.type")
                .and_then(|entry| entry.value.clone())
        })
    }))
}
