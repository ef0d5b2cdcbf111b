//! A sink prepared in the background: the job starts consuming while its destination is
//! built and set up (e.g. the Elasticsearch client built — which loads the system's
//! certificates — and the index template and index created), instead of before. Documents wait
//! for the preparation; `/readyz` says the job is not ready until it succeeded; a preparation
//! that fails stops the job with its own error (see [`Preparation::failed`]).

use super::{SinkError, WindowSink};
use crate::completeness::document::CompletenessDocument;
use crate::event_time::window_document::WindowDocument;
use crate::runtime::http::ReadinessHold;
use crate::runtime::shutdown::{Shutdown, ShutdownTrigger};
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// How a preparation ended, with what it prepared: `None` while under way.
type Outcome<T> = Option<Result<T, String>>;

/// A preparation of a `T` (a sink) running in the background.
pub struct Preparation<T> {
    outcome: watch::Receiver<Outcome<T>>,
    stop: ShutdownTrigger,
    /// Released when the preparation succeeded; a failed one keeps the job not ready.
    _hold: Arc<Mutex<Option<ReadinessHold>>>,
}

impl<T: Clone + Send + Sync + 'static> Preparation<T> {
    /// Runs `prepare` in the background, giving it a handle triggered on `shutdown` or by
    /// [`Self::finish`]; `hold` keeps the job not ready until it succeeded.
    pub fn spawn<F>(
        prepare: impl FnOnce(Shutdown) -> F,
        shutdown: &Shutdown,
        hold: ReadinessHold,
    ) -> Self
    where
        F: Future<Output = anyhow::Result<T>> + Send + 'static,
    {
        let (stop, stopped) = Shutdown::new();
        let mut stopped = stopped;
        let until = shutdown.or_when(async move { stopped.wait().await });
        let prepare = prepare(until);
        let (sender, outcome) = watch::channel(None);
        let hold = Arc::new(Mutex::new(Some(hold)));
        let held = hold.clone();
        tokio::spawn(async move {
            let result = prepare.await.map_err(|e| format!("{e:#}"));
            if result.is_ok() {
                held.lock().expect("hold poisoned").take();
            }
            let _ = sender.send(Some(result));
        });
        Preparation {
            outcome,
            stop,
            _hold: hold,
        }
    }

    /// Stops the preparation if it is still under way and returns how it ended.
    pub async fn finish(self) -> Result<(), String> {
        self.stop.trigger();
        let mut outcome = self.outcome;
        let ended = outcome
            .wait_for(Option::is_some)
            .await
            .map(|o| ended_as_unit(&o));
        match ended {
            Ok(Some(result)) => result,
            _ => Err("the preparation was dropped".into()),
        }
    }

    /// How the preparation ended, `None` while it runs.
    pub fn outcome(&self) -> Option<Result<(), String>> {
        ended_as_unit(&self.outcome.borrow())
    }

    /// Completes when the preparation failed (never when it succeeds): a job stops on it.
    pub fn failed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut outcome = self.outcome.clone();
        async move {
            let failed = outcome
                .wait_for(Option::is_some)
                .await
                .is_ok_and(|ended| matches!(*ended, Some(Err(_))));
            if !failed {
                std::future::pending::<()>().await;
            }
        }
    }

    /// The prepared sink, described as `description` until it exists: its writes wait for
    /// the preparation and fail fatally when it failed.
    pub fn sink(&self, description: String) -> PreparedSink<T> {
        PreparedSink {
            inner: None,
            description,
            outcome: self.outcome.clone(),
        }
    }
}

/// An outcome without what was prepared.
fn ended_as_unit<T>(outcome: &Outcome<T>) -> Option<Result<(), String>> {
    outcome
        .as_ref()
        .map(|ended| ended.as_ref().map(|_| ()).map_err(Clone::clone))
}

/// A sink that exists once its [`Preparation`] succeeded.
pub struct PreparedSink<S> {
    inner: Option<S>,
    description: String,
    outcome: watch::Receiver<Outcome<S>>,
}

impl<S: WindowSink + Clone + Send + Sync> PreparedSink<S> {
    /// The sink, once prepared (waits for the preparation).
    async fn ready(&mut self) -> Result<&mut S, SinkError> {
        if self.inner.is_none() {
            let ended = self
                .outcome
                .wait_for(Option::is_some)
                .await
                .map(|ended| ended.clone())
                .unwrap_or_else(|_| Some(Err("the sink's preparation was dropped".into())));
            match ended {
                Some(Ok(sink)) => self.inner = Some(sink),
                Some(Err(e)) => return Err(SinkError::Fatal(e)),
                None => unreachable!("waited for an outcome"),
            }
        }
        Ok(self.inner.as_mut().expect("prepared above"))
    }
}

impl<S: WindowSink + Clone + Send + Sync> WindowSink for PreparedSink<S> {
    async fn write(&mut self, documents: &[WindowDocument]) -> Result<(), SinkError> {
        self.ready().await?.write(documents).await
    }

    async fn write_values(&mut self, documents: &[WindowDocument]) -> Result<(), SinkError> {
        self.ready().await?.write_values(documents).await
    }

    async fn write_completeness(
        &mut self,
        documents: &[CompletenessDocument],
    ) -> Result<(), SinkError> {
        self.ready().await?.write_completeness(documents).await
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::http::Readiness;
    use crate::sink::memory::MemorySink;
    use tokio::sync::oneshot;

    /// `n` documents of one-record windows.
    fn documents(n: i64) -> Vec<WindowDocument> {
        (0..n)
            .map(|i| WindowDocument::of_one_record("job", i * 1_000))
            .collect()
    }

    /// A preparation that ends with what the returned sender sends.
    type Controlled = (
        oneshot::Sender<anyhow::Result<MemorySink>>,
        Preparation<MemorySink>,
    );

    fn controlled(readiness: &Readiness) -> Controlled {
        let (send, receive) = oneshot::channel();
        let preparation = Preparation::spawn(
            |_| async move { receive.await.unwrap() },
            &Shutdown::new().1,
            readiness.hold("preparing"),
        );
        (send, preparation)
    }

    #[tokio::test]
    async fn writes_wait_for_the_preparation_and_readiness_follows_it() {
        let readiness = Readiness::default();
        let (finish, preparation) = controlled(&readiness);
        let memory = MemorySink::default();
        let mut sink = preparation.sink("memory".into());
        assert_eq!(sink.describe(), "memory");
        let documents = documents(2);
        let mut write = Box::pin(sink.write(&documents));
        assert!(
            futures::poll!(&mut write).is_pending(),
            "no write before the preparation ended"
        );
        assert_eq!(readiness.not_ready_reason().as_deref(), Some("preparing"));
        finish.send(Ok(memory.clone())).unwrap();
        write.await.unwrap();
        assert_eq!(memory.written(), 2);
        assert_eq!(readiness.not_ready_reason(), None);
        assert_eq!(preparation.outcome(), Some(Ok(())));
        assert_eq!(preparation.finish().await, Ok(()));
    }

    #[tokio::test]
    async fn finishing_stops_a_preparation_under_way() {
        let readiness = Readiness::default();
        let preparation: Preparation<MemorySink> = Preparation::spawn(
            |mut until: Shutdown| async move {
                until.wait().await;
                anyhow::bail!("stopped before it was reachable")
            },
            &Shutdown::new().1,
            readiness.hold("preparing"),
        );
        assert_eq!(preparation.outcome(), None);
        assert_eq!(
            preparation.finish().await,
            Err("stopped before it was reachable".to_string())
        );
    }

    #[tokio::test]
    async fn a_failed_preparation_is_a_fatal_write_error_and_says_so() {
        let readiness = Readiness::default();
        let (finish, preparation) = controlled(&readiness);
        let failed = preparation.failed();
        finish
            .send(Err(anyhow::anyhow!(
                "authentication refused: set SLA_ES_PASSWORD"
            )))
            .unwrap();
        failed.await;
        let mut sink = preparation.sink("memory".into());
        let documents = documents(1);
        match sink.write(&documents).await {
            Err(SinkError::Fatal(m)) => assert!(m.contains("SLA_ES_PASSWORD"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            readiness.not_ready_reason().as_deref(),
            Some("preparing"),
            "never ready without the sink"
        );
    }
}
