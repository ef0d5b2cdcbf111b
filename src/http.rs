//! The small HTTP server every job runs: `/metrics` for Prometheus, `/healthz` (the process
//! serves), `/readyz` (the job is doing its work), plus routes a job adds (e.g. the
//! synchronizer's delay control).

use crate::shutdown::Shutdown;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Whether the job is doing its work, as `/readyz` reports it: 200 `ready`, or 503 with the
/// reason. Clones share the state; a new one is ready.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<Mutex<Option<String>>>);

impl Readiness {
    /// The job works normally.
    pub fn set_ready(&self) {
        *self.0.lock().expect("readiness poisoned") = None;
    }

    /// The job is not doing its work, for `reason`.
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        *self.0.lock().expect("readiness poisoned") = Some(reason.into());
    }

    /// `None` when ready, else why not.
    pub fn not_ready_reason(&self) -> Option<String> {
        self.0.lock().expect("readiness poisoned").clone()
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

/// Binds `addr` and serves `router` in the background until shutdown. Binding errors are
/// returned at once so a port conflict is reported at start-up.
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
    tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.wait().await })
            .await;
        if let Err(e) = served {
            tracing::error!("HTTP endpoint on {bound} failed: {e}");
        }
    });
    tracing::info!("serving /metrics and /healthz on http://{bound}");
    Ok(bound)
}
