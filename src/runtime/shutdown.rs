//! Graceful shutdown: one signal (SIGINT or SIGTERM) asks every task to finish its work and
//! stop; a second one exits at once.

use std::future::Future;
use tokio::sync::watch;

/// A cloneable handle that tells tasks when the job should stop.
#[derive(Debug, Clone)]
pub struct Shutdown {
    receiver: watch::Receiver<bool>,
}

/// The sending side of [`Shutdown`], held by whoever decides that the job stops.
#[derive(Debug)]
pub struct ShutdownTrigger {
    sender: watch::Sender<bool>,
}

impl Shutdown {
    /// A new shutdown handle and its trigger.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (sender, receiver) = watch::channel(false);
        (ShutdownTrigger { sender }, Shutdown { receiver })
    }

    /// A handle triggered by SIGINT or SIGTERM. A second signal exits the process with status
    /// 130 without draining.
    pub fn on_signals() -> Shutdown {
        let (trigger, shutdown) = Shutdown::new();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!(
                "shutdown requested: finishing in-flight work (signal again to exit now)"
            );
            trigger.trigger();
            wait_for_signal().await;
            tracing::warn!("second signal: exiting without draining");
            std::process::exit(130);
        });
        shutdown
    }

    /// A handle triggered when this one is, or when `cause` completes (e.g. a background task
    /// failed in a way the job cannot go on with).
    pub fn or_when(&self, cause: impl Future<Output = ()> + Send + 'static) -> Shutdown {
        let (trigger, shutdown) = Shutdown::new();
        let mut outer = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = outer.wait() => {}
                _ = cause => {}
            }
            trigger.trigger();
        });
        shutdown
    }

    /// Whether shutdown has been requested.
    pub fn is_triggered(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Completes when shutdown is requested (at once if it already was).
    pub async fn wait(&mut self) {
        // An error means every trigger was dropped: nobody can ask for shutdown any more.
        if self.receiver.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl ShutdownTrigger {
    /// Asks every holder of the matching [`Shutdown`] to stop.
    pub fn trigger(&self) {
        let _ = self.sender.send(true);
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn or_when_is_triggered_by_either_side() {
        let (trigger, outer) = Shutdown::new();
        let (cause_sender, cause) = tokio::sync::oneshot::channel::<()>();
        let mut either = outer.or_when(async move {
            let _ = cause.await;
        });
        assert!(!either.is_triggered());
        cause_sender.send(()).unwrap();
        either.wait().await;
        assert!(
            !outer.is_triggered(),
            "the outer handle is not triggered by the cause"
        );

        let mut by_outer = outer.or_when(std::future::pending());
        trigger.trigger();
        by_outer.wait().await;
    }

    #[tokio::test]
    async fn wait_completes_after_trigger_and_stays_triggered() {
        let (trigger, mut shutdown) = Shutdown::new();
        assert!(!shutdown.is_triggered());
        trigger.trigger();
        shutdown.wait().await;
        assert!(shutdown.clone().is_triggered());
    }
}
