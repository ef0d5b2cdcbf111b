//! Runs a [`WindowSink`] in its own task: batches are written in order, transient failures
//! are retried with exponential backoff and jitter for as long as it takes, and each batch's
//! outcome is reported back by id.

use super::{SinkError, WindowSink};
use crate::backoff::{retry_policy, MAX_RETRY_DELAY};
use crate::window_document::WindowDocument;
use backon::BackoffBuilder;
use std::time::Duration;
use tokio::sync::mpsc;

/// Documents of windows closed together, identified for acknowledgement.
#[derive(Debug)]
pub struct Batch {
    /// Caller-chosen id, echoed in the acknowledgement.
    pub id: u64,
    /// The documents.
    pub documents: Vec<WindowDocument>,
}

/// The outcome of a batch: `Ok(id)` once written, or the fatal error that stopped the sink.
pub type Acknowledgement = Result<u64, SinkError>;

/// Starts the sink task. Dropping the returned sender ends it after pending batches.
pub fn spawn(
    mut sink: impl WindowSink,
) -> (
    mpsc::UnboundedSender<Batch>,
    mpsc::UnboundedReceiver<Acknowledgement>,
) {
    let (batch_tx, mut batch_rx) = mpsc::unbounded_channel::<Batch>();
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(batch) = batch_rx.recv().await {
            let outcome = write_with_retries(&mut sink, &batch.documents).await;
            let fatal = outcome.is_err();
            if ack_tx.send(outcome.map(|()| batch.id)).is_err() || fatal {
                break;
            }
        }
    });
    (batch_tx, ack_rx)
}

async fn write_with_retries(
    sink: &mut impl WindowSink,
    documents: &[WindowDocument],
) -> Result<(), SinkError> {
    let mut backoff = retry_policy(Duration::from_millis(200)).build();
    loop {
        match sink.write(documents).await {
            Ok(()) => return Ok(()),
            Err(SinkError::Transient(e)) => {
                let wait = backoff.next().unwrap_or(MAX_RETRY_DELAY);
                metrics::counter!("sla_monitor_sink_retries_total").increment(1);
                tracing::warn!(
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
    use crate::digest::DigestConfig;
    use crate::monitor::checkpoint::CheckpointRecord;
    use crate::monitor::decisions::{CoreConfig, MonitorCore};
    use crate::monitor::measurement::TimestampKind;
    use crate::monitor::restore::PartitionResume;
    use crate::watermark::WatermarkConfig;
    use crate::window::WindowConfig;
    use std::sync::{Arc, Mutex};

    /// A sink that fails transiently a given number of times, then writes into memory.
    struct FakeSink {
        failures_left: usize,
        written: Arc<Mutex<Vec<String>>>,
    }

    impl WindowSink for FakeSink {
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
            "fake sink".into()
        }
    }

    fn core() -> MonitorCore {
        let mut core = MonitorCore::new(CoreConfig {
            input_topic: "in".into(),
            group: "g".into(),
            job_name: "job".into(),
            window: WindowConfig {
                size_ms: 1_000,
                allowed_lateness_ms: 0,
                sla_ms: 100,
                quantiles: vec![0.5],
                digest: DigestConfig::default(),
            },
            watermark: WatermarkConfig {
                max_out_of_orderness_ms: 0,
                idle_timeout_ms: 60_000,
            },
            max_future_ms: i64::MAX / 4,
        });
        core.assign(
            &PartitionResume {
                partition: 0,
                offset: None,
                restored: None,
            },
            0,
        );
        core
    }

    fn resume_offset(due: &[CheckpointRecord]) -> Option<i64> {
        due.first().map(|r| r.checkpoint.offset)
    }

    /// Through the real driver: a window's records are committable only after the sink wrote
    /// it, however many transient failures come first (time is paused, so retries are
    /// instant and deterministic).
    #[tokio::test(start_paused = true)]
    async fn offsets_pass_a_window_only_after_the_sink_acknowledged_it() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let (batches, mut acks) = spawn(FakeSink {
            failures_left: 3,
            written: written.clone(),
        });
        let mut core = core();
        let stamp = |t: i64| {
            format!(
                r#"{{"visit":{{"id":"v","event_time":0}},"start_processing_time_ms":{}}}"#,
                t - 5
            )
        };
        for (offset, t) in [(0, 100), (1, 200), (2, 1_500)] {
            core.on_record(
                0,
                offset,
                Some((TimestampKind::CreateTime, t)),
                Some(stamp(t).as_bytes()),
                t,
            );
        }
        let batch = core.on_tick(1_500).expect("window 0 closes");
        batches
            .send(Batch {
                id: batch.id,
                documents: batch.documents,
            })
            .unwrap();
        assert_eq!(resume_offset(&core.checkpoints_due()), Some(0));
        let ack = acks.recv().await.expect("an acknowledgement");
        assert_eq!(written.lock().unwrap().as_slice(), ["job-0"]);
        assert_eq!(
            resume_offset(&core.checkpoints_due()),
            Some(0),
            "not before the ack is handled"
        );
        assert!(core.on_batch_ack(ack.unwrap()));
        assert_eq!(resume_offset(&core.checkpoints_due()), Some(2));
    }

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
        let (batches, mut acks) = spawn(Refusing);
        batches
            .send(Batch {
                id: 7,
                documents: Vec::new(),
            })
            .unwrap();
        assert!(matches!(acks.recv().await, Some(Err(SinkError::Fatal(_)))));
        assert!(acks.recv().await.is_none(), "the driver stopped");
    }
}
