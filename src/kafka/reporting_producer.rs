//! A producer for output at the input's rate: each record carries the caller's token and its
//! delivery report arrives on a channel, so a record costs no future, no one-shot channel and
//! no task of its own (librdkafka's polling thread sends the reports; the job takes them in
//! batches).

use super::producer::OutgoingRecord;
use super::JobContext;
use rdkafka::client::{ClientContext, OAuthToken};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::ClientConfig;
use std::error::Error;
use std::time::Duration;
use tokio::sync::mpsc;

/// The outcome of one produced record.
#[derive(Debug)]
pub struct DeliveryReport {
    /// The token the record was sent with.
    pub token: usize,
    /// Acknowledged, or why not.
    pub result: Result<(), KafkaError>,
    /// For a record refused for itself (see [`refused_for_itself`]), a copy of what was
    /// refused, to keep in a dead-letter topic.
    pub refused: Option<RefusedContent>,
}

/// A copy of a refused record's key and value.
#[derive(Debug, Clone, Default)]
pub struct RefusedContent {
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its value.
    pub value: Option<Vec<u8>>,
}

/// The client context of a [`ReportingProducer`]: the job's context for logs, errors and
/// statistics, plus the channel of delivery reports.
pub struct ReportingContext {
    job: JobContext,
    reports: mpsc::UnboundedSender<DeliveryReport>,
}

impl ClientContext for ReportingContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.job.log(level, facility, message);
    }

    fn stats(&self, statistics: Statistics) {
        self.job.stats(statistics);
    }

    fn stats_raw(&self, statistics: &[u8]) {
        self.job.stats_raw(statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.job.error(error, reason);
    }

    fn generate_oauth_token(
        &self,
        oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn Error>> {
        self.job.generate_oauth_token(oauthbearer_config)
    }
}

impl ProducerContext for ReportingContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, token: usize) {
        let report = match result {
            Ok(_) => DeliveryReport {
                token,
                result: Ok(()),
                refused: None,
            },
            Err((error, message)) => DeliveryReport {
                token,
                result: Err(error.clone()),
                refused: refused_for_itself(error).then(|| RefusedContent {
                    key: message.key().map(<[u8]>::to_vec),
                    value: message.payload().map(<[u8]>::to_vec),
                }),
            },
        };
        // The receiver is gone only when the job stops; its reports no longer matter then.
        let _ = self.reports.send(report);
    }
}

/// Why a record was not enqueued.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The record is larger than the producer's `message.max.bytes`: no retry can send it.
    #[error("the record is larger than the producer accepts (message.max.bytes): {0}")]
    TooLarge(KafkaError),
    /// Another refusal.
    #[error(transparent)]
    Kafka(KafkaError),
}

/// A producer whose delivery reports arrive, tagged with each record's token, on the
/// receiver [`ReportingProducer::new`] returns.
pub struct ReportingProducer {
    producer: ThreadedProducer<ReportingContext>,
}

impl ReportingProducer {
    /// A producer with `config` that reports to the returned receiver.
    pub fn new(
        config: &ClientConfig,
        job: JobContext,
    ) -> Result<(Self, mpsc::UnboundedReceiver<DeliveryReport>), KafkaError> {
        let (reports, receiver) = mpsc::unbounded_channel();
        let producer = config.create_with_context(ReportingContext { job, reports })?;
        Ok((ReportingProducer { producer }, receiver))
    }

    /// Enqueues `record` with `token`; when librdkafka's local queue is full, waits until there
    /// is room (its reports keep arriving meanwhile).
    pub async fn send(
        &self,
        record: OutgoingRecord<'_>,
        headers: Option<OwnedHeaders>,
        token: usize,
    ) -> Result<(), SendError> {
        let mut base = BaseRecord::<[u8], [u8], usize>::with_opaque_to(record.topic, token);
        if let Some(key) = record.key {
            base = base.key(key);
        }
        if let Some(value) = record.value {
            base = base.payload(value);
        }
        if let Some(partition) = record.partition {
            base = base.partition(partition);
        }
        if let Some(headers) = headers {
            base = base.headers(headers);
        }
        loop {
            // A refused record comes back whole (headers included): no copy per attempt.
            match self.producer.send(base) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    base = returned;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((
                    e @ KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
                    _,
                )) => return Err(SendError::TooLarge(e)),
                Err((e, _)) => return Err(SendError::Kafka(e)),
            }
        }
    }

    /// Waits up to `timeout` for every enqueued record to be reported.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)
    }
}

/// Whether a failed delivery is about this record only (its size or shape), so that the
/// record belongs in the dead-letter topic and the job can go on.
pub fn refused_for_itself(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::MessageBatchTooLarge
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidMessage
        )
    )
}
