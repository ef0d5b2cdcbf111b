//! The small HTTP server every job runs: `/metrics` for Prometheus, `/healthz` (the process
//! serves), `/readyz` (the job is doing its work), plus routes a job adds (e.g. the
//! synchronizer's delay control).

use crate::runtime::http_server::{self, ServerLimits};
use crate::runtime::shutdown::Shutdown;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Whether the job is doing its work, as `/readyz` reports it: 200 `ready`, or 503 with the
/// reason. Clones share the state; a new one is ready.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<Mutex<ReadinessState>>);

#[derive(Debug, Default)]
struct ReadinessState {
    /// What the job's loop last said (`None`: working normally).
    reason: Option<String>,
    /// Reasons held by [`ReadinessHold`]s, by id; while one is held the job is not ready.
    holds: BTreeMap<u64, String>,
    next_hold: u64,
}

impl Readiness {
    /// The job works normally.
    pub fn set_ready(&self) {
        self.lock().reason = None;
    }

    /// The job is not doing its work, for `reason`.
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        self.lock().reason = Some(reason.into());
    }

    /// Keeps the job not ready for `reason` until the returned hold is dropped, whatever the
    /// job's loop says meanwhile (e.g. a sink prepared in the background while the job
    /// already consumes).
    pub fn hold(&self, reason: impl Into<String>) -> ReadinessHold {
        let mut state = self.lock();
        let id = state.next_hold;
        state.next_hold += 1;
        state.holds.insert(id, reason.into());
        ReadinessHold {
            readiness: self.clone(),
            id,
        }
    }

    /// `None` when ready, else why not (the oldest hold first).
    pub fn not_ready_reason(&self) -> Option<String> {
        let state = self.lock();
        state
            .holds
            .values()
            .next()
            .cloned()
            .or_else(|| state.reason.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReadinessState> {
        self.0.lock().expect("readiness poisoned")
    }
}

/// Keeps a [`Readiness`] not ready while it lives.
#[derive(Debug)]
pub struct ReadinessHold {
    readiness: Readiness,
    id: u64,
}

impl Drop for ReadinessHold {
    fn drop(&mut self) {
        self.readiness.lock().holds.remove(&self.id);
    }
}

/// The routes every job serves.
pub fn base_router(metrics: PrometheusHandle, readiness: Readiness) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        )
        .route("/healthz", get(|| std::future::ready("ok\n")))
        .route(
            "/readyz",
            get(move || {
                std::future::ready(match readiness.not_ready_reason() {
                    None => (StatusCode::OK, "ready\n".to_string()),
                    Some(reason) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready: {reason}\n"),
                    ),
                })
            }),
        )
}

/// Binds `addr` and serves `router` in the background until shutdown, within the default
/// [`ServerLimits`]. Binding errors are returned at once so a port conflict is reported at
/// start-up.
pub async fn spawn_server(
    addr: SocketAddr,
    router: Router,
    mut shutdown: Shutdown,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "binding the HTTP endpoint on {addr}: {e} (choose another with --http-addr)"
        )
    })?;
    let bound = listener.local_addr()?;
    tokio::spawn(http_server::serve(
        listener,
        router,
        ServerLimits::default(),
        async move { shutdown.wait().await },
    ));
    tracing::info!("serving /metrics and /healthz on http://{bound}");
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_keeps_the_job_not_ready_until_dropped() {
        let readiness = Readiness::default();
        readiness.set_not_ready("starting");
        let hold = readiness.hold("preparing the index");
        readiness.set_ready();
        assert_eq!(
            readiness.not_ready_reason().as_deref(),
            Some("preparing the index")
        );
        readiness.set_not_ready("Kafka unreachable");
        let second = readiness.hold("second");
        assert_eq!(
            readiness.not_ready_reason().as_deref(),
            Some("preparing the index"),
            "the oldest hold is said"
        );
        drop(hold);
        assert_eq!(readiness.not_ready_reason().as_deref(), Some("second"));
        drop(second);
        assert_eq!(
            readiness.not_ready_reason().as_deref(),
            Some("Kafka unreachable"),
            "then what the loop said last"
        );
        readiness.set_ready();
        assert_eq!(readiness.not_ready_reason(), None);
    }
}
