//! Logging and Prometheus metrics set-up shared by every job.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::io::IsTerminal;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

/// Initialises logging to stderr. `RUST_LOG` overrides the default level (`info`). With
/// `reporting` (a Sentry DSN was given, see [`crate::runtime::error_reporting`]), warnings and errors
/// also become error events, and info and warning lines the breadcrumbs sent with them.
pub fn init_logging(reporting: bool) {
    use sentry::integrations::tracing::{BreadcrumbLayer, ErrorLayer};
    use tracing_subscriber::filter::{filter_fn, LevelFilter};
    use tracing_subscriber::prelude::*;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    // The breadcrumb layer comes first so that a warning is also among its own breadcrumbs.
    let breadcrumbs = reporting.then(|| {
        BreadcrumbLayer::new().with_filter(filter_fn(|m| {
            matches!(*m.level(), tracing::Level::INFO | tracing::Level::WARN)
        }))
    });
    let events = reporting.then(|| ErrorLayer::new().with_filter(LevelFilter::WARN));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(breadcrumbs)
        .with(events)
        .try_init();
}

/// How often histogram samples are folded into their buckets. The recorder keeps every sample
/// until then, so this bounds its memory (to the samples of one interval) whether or not
/// anything scrapes `/metrics`.
pub const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Installs the process-wide Prometheus recorder (every metric carries the label `job`) and
/// starts its periodic upkeep on the current Tokio runtime.
pub fn install_metrics(job: &str) -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .add_global_label("job", job)
        .set_buckets(&[
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        ])?
        .install_recorder()
        .map_err(|e| anyhow::anyhow!("installing the Prometheus metrics recorder: {e}"))?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(METRICS_UPKEEP_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}
