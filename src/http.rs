//! The small HTTP server every job runs: `/metrics` for Prometheus, `/healthz`, plus routes a
//! job adds (e.g. the synchronizer's delay control).

use crate::shutdown::Shutdown;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use std::net::SocketAddr;

/// The routes every job serves.
pub fn base_router(metrics: PrometheusHandle) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        )
        .route("/healthz", get(|| std::future::ready("ok\n")))
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
