//! The monitor job from its flags to its stop: metrics and the HTTP endpoint, the topics, the
//! sink (Elasticsearch prepared in the background while the monitor starts consuming, or JSON
//! lines), and the stages. The binary only parses flags and calls [`launch`].

use super::settings::{MonitorFlags, SinkKind};
use crate::runtime::shutdown::Shutdown;
use crate::runtime::{http, telemetry};
use crate::sink::elasticsearch::ElasticsearchSink;
use crate::sink::json_lines::JsonLinesSink;
use crate::sink::prepared::Preparation;
use anyhow::Context;
use std::net::SocketAddr;

/// Runs the monitor job with `flags` until a signal: metrics and the HTTP endpoint on
/// `http_addr` first (`/readyz` says what it is waiting for), then the topics, the sink and
/// the two stages. Returns why it stopped when that is an error.
pub async fn launch(flags: MonitorFlags, http_addr: SocketAddr) -> anyhow::Result<()> {
    let metrics = telemetry::install_metrics("monitor")?;
    let shutdown = Shutdown::on_signals();
    let readiness = http::Readiness::default();
    readiness.set_not_ready("starting: preparing the Kafka topics");
    http::spawn_server(
        http_addr,
        http::base_router(metrics, readiness.clone()),
        shutdown.clone(),
    )
    .await?;
    let (sink, output, es, refresh) = (
        flags.sink,
        flags.output.clone(),
        flags.elasticsearch.clone(),
        flags.es_refresh,
    );
    let config = flags.config()?;
    match sink {
        SinkKind::JsonLines => {
            let layout = super::prepare_topics(&config, &readiness, shutdown.clone()).await?;
            let sink = JsonLinesSink::new(output);
            readiness.set_not_ready("starting: reading checkpoints and assigning partitions");
            super::run(config, layout, sink, readiness, shutdown)
                .await
                .context("monitor stopped")?
        }
        SinkKind::Elasticsearch => {
            // The client is built and the index prepared in the background while the topics
            // are prepared and the monitor starts consuming: building the client loads the
            // system's certificates (~80 ms), a fresh index takes Elasticsearch a few hundred
            // milliseconds. Documents wait for it, /readyz says so, and a preparation that
            // fails stops the monitor with its own error — a misconfiguration at once, without
            // waiting for Kafka.
            let description = ElasticsearchSink::description(&es);
            let hold = readiness.hold(format!(
                "starting: preparing the Elasticsearch index {}",
                es.index
            ));
            let quantiles = config.window.quantiles.clone();
            let completeness = config.completeness.is_some();
            let dimension_names: Option<Vec<String>> = config
                .split
                .as_ref()
                .map(|split| split.names().into_iter().map(String::from).collect());
            let preparation = Preparation::spawn(
                move |until| async move {
                    let sink =
                        tokio::task::spawn_blocking(move || ElasticsearchSink::new(&es, refresh))
                            .await
                            .context("building the Elasticsearch client")??;
                    let sink = if completeness {
                        sink.with_completeness()
                    } else {
                        sink
                    };
                    let sink = match dimension_names {
                        Some(names) => sink.with_values(names),
                        None => sink,
                    };
                    sink.prepare_when_reachable(&quantiles, until).await?;
                    Ok(sink)
                },
                &shutdown,
                hold,
            );
            let shutdown = shutdown.or_when(preparation.failed());
            let stopped = match super::prepare_topics(&config, &readiness, shutdown.clone()).await {
                Ok(layout) => {
                    readiness
                        .set_not_ready("starting: reading checkpoints and assigning partitions");
                    let sink = preparation.sink(description);
                    super::run(config, layout, sink, readiness, shutdown)
                        .await
                        .context("monitor stopped")
                }
                Err(e) => Err(e),
            };
            // A preparation that failed by itself stopped the monitor: its error is the cause.
            // One stopped by a signal says so ("stopped before Elasticsearch became
            // reachable"); one stopped because the monitor failed says nothing new.
            let failed_first = matches!(preparation.outcome(), Some(Err(_)));
            match preparation.finish().await {
                Err(e) if failed_first || stopped.is_ok() => return Err(anyhow::anyhow!(e)),
                _ => stopped?,
            }
        }
    };
    Ok(())
}
