//! Runs a [`WindowSink`] in its own task: batches are written in order, transient failures
//! are retried with exponential backoff and jitter for as long as it takes, and each batch's
//! outcome is reported back by id.

use super::{SinkError, WindowSink};
use crate::completeness::document::CompletenessDocument;
use crate::event_time::window_document::WindowDocument;
use crate::runtime::backoff::{retry_policy, MAX_RETRY_DELAY};
use backon::BackoffBuilder;
use std::time::Duration;
use tokio::sync::mpsc;

/// Documents of windows closed together, identified for acknowledgement.
#[derive(Debug)]
pub struct Batch {
    /// Caller-chosen id, echoed in the acknowledgement.
    pub id: u64,
    /// The window documents.
    pub documents: Vec<WindowDocument>,
    /// Documents of the windows' dimension values (`--dimension`), written after them.
    pub values: Vec<WindowDocument>,
    /// Completeness documents (`--source-topic`), written after the window documents.
    pub completeness: Vec<CompletenessDocument>,
}

/// The outcome of a batch: `Ok(id)` once written, or the fatal error that stopped the sink.
pub type Acknowledgement = Result<u64, SinkError>;

/// Most batches waiting for the sink at once (the channel's capacity).
pub const SINK_QUEUE: usize = 64;

/// Starts the sink task, counting each retry in `retries`. Dropping the returned sender ends
/// it after pending batches.
pub fn spawn(
    mut sink: impl WindowSink,
    retries: metrics::Counter,
) -> (
    mpsc::Sender<Batch>,
    mpsc::UnboundedReceiver<Acknowledgement>,
) {
    let (batch_tx, mut batch_rx) = mpsc::channel::<Batch>(SINK_QUEUE);
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(batch) = batch_rx.recv().await {
            let outcome = write_with_retries(&mut sink, &batch, &retries).await;
            let fatal = outcome.is_err();
            if ack_tx.send(outcome.map(|()| batch.id)).is_err() || fatal {
                break;
            }
        }
    });
    (batch_tx, ack_rx)
}

/// Writes a batch's window documents, then its completeness documents (writing a document
/// again replaces it, so a retried batch is written whole once).
async fn write_batch(sink: &mut impl WindowSink, batch: &Batch) -> Result<(), SinkError> {
    if !batch.documents.is_empty() {
        sink.write(&batch.documents).await?;
    }
    if !batch.values.is_empty() {
        sink.write_values(&batch.values).await?;
    }
    if !batch.completeness.is_empty() {
        sink.write_completeness(&batch.completeness).await?;
    }
    Ok(())
}

async fn write_with_retries(
    sink: &mut impl WindowSink,
    batch: &Batch,
    retries: &metrics::Counter,
) -> Result<(), SinkError> {
    let mut backoff = retry_policy(Duration::from_millis(200)).build();
    loop {
        match write_batch(sink, batch).await {
            Ok(()) => return Ok(()),
            Err(SinkError::Transient(e)) => {
                let wait = backoff.next().unwrap_or(MAX_RETRY_DELAY);
                retries.increment(1);
                // The oldest window waiting (a tag of the error report).
                let window_start = batch
                    .documents
                    .first()
                    .map(|d| d.timestamp.as_str())
                    .or_else(|| batch.completeness.first().map(|d| d.timestamp.as_str()))
                    .unwrap_or("");
                tracing::warn!(
                    window_start,
                    "{}: {e}; retrying in {wait:.1?} (windows are kept meanwhile)",
                    sink.describe()
                );
                tokio::time::sleep(wait).await;
            }
            Err(fatal) => return Err(fatal),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_fatal_error_is_reported_and_nothing_is_acknowledged() {
        struct Refusing;
        impl WindowSink for Refusing {
            async fn write(&mut self, _: &[WindowDocument]) -> Result<(), SinkError> {
                Err(SinkError::Fatal("mapping conflict".into()))
            }
            fn describe(&self) -> String {
                "refusing".into()
            }
        }
        let (batches, mut acks) = spawn(Refusing, metrics::Counter::noop());
        batches
            .send(Batch {
                values: Vec::new(),
                id: 7,
                documents: vec![WindowDocument::of_one_record("job", 0)],
                completeness: Vec::new(),
            })
            .await
            .unwrap();
        assert!(matches!(acks.recv().await, Some(Err(SinkError::Fatal(_)))));
        assert!(acks.recv().await.is_none(), "the driver stopped");
    }

    /// A batch is acknowledged only once written, however many transient failures come first
    /// (time is paused, so retries are instant and deterministic).
    #[tokio::test(start_paused = true)]
    async fn a_batch_is_acknowledged_once_written_after_transient_failures() {
        struct Flaky {
            failures_left: usize,
            written: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
        }
        impl WindowSink for Flaky {
            async fn write(&mut self, documents: &[WindowDocument]) -> Result<(), SinkError> {
                if self.failures_left > 0 {
                    self.failures_left -= 1;
                    return Err(SinkError::Transient("unreachable".into()));
                }
                let mut written = self.written.lock().unwrap();
                written.extend(documents.iter().map(|d| d.id.clone()));
                Ok(())
            }
            fn describe(&self) -> String {
                "flaky".into()
            }
        }
        let written = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (batches, mut acks) = spawn(
            Flaky {
                failures_left: 3,
                written: written.clone(),
            },
            metrics::Counter::noop(),
        );
        let document = WindowDocument::of_one_record("job", 0);
        batches
            .send(Batch {
                values: Vec::new(),
                id: 4,
                documents: vec![document],
                completeness: Vec::new(),
            })
            .await
            .unwrap();
        assert_eq!(acks.recv().await.unwrap().unwrap(), 4);
        assert_eq!(written.lock().unwrap().as_slice(), ["job-0"]);
    }
}
