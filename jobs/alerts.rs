//! `alerts`: evaluates the Grafana alert rules of dashboards/ against Elasticsearch, with
//! Grafana's semantics, where Grafana cannot run. See `--help`.

use anyhow::Context;
use clap::Parser;
use sla_monitor::alerting::evaluator::{self, EvaluatorConfig, SharedStatus};
use sla_monitor::alerting::{datasource, rule};
use sla_monitor::elasticsearch_connection::ElasticsearchArgs;
use sla_monitor::shutdown::Shutdown;
use sla_monitor::{http, telemetry};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Reads Grafana alert-rule and data-source provisioning files and evaluates every rule each
/// interval against Elasticsearch with Grafana 10.4's semantics: query A as Grafana's
/// Elasticsearch data source sends it, reduce B, threshold C, the pending period, noDataState
/// and execErrState. Logs state changes only, serves GET /state, sends alerts to every
/// Alertmanager replica given and state changes to a webhook.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Grafana alert-rule provisioning file.
    #[arg(
        long,
        env = "SLA_ALERT_RULES",
        default_value = "dashboards/grafana/provisioning/alerting/sla-alert-rules.yaml"
    )]
    rules: PathBuf,

    /// Grafana data-source provisioning file (resolves the rules' data-source uids).
    #[arg(
        long,
        env = "SLA_DATASOURCES",
        default_value = "dashboards/grafana/provisioning/datasources/datasources.yaml"
    )]
    datasources: PathBuf,

    #[command(flatten)]
    elasticsearch: ElasticsearchArgs,

    /// Evaluate every this long instead of each rule group's interval, e.g. 5s.
    #[arg(long, env = "SLA_ALERT_INTERVAL", value_parser = humantime::parse_duration)]
    interval: Option<Duration>,

    /// Alertmanager to send alerts to (v2 API), e.g. http://127.0.0.1:9093. Repeat the flag
    /// (or separate with commas) for each replica of an HA pair: every replica receives every
    /// alert, as Grafana and Prometheus send them, and the replicas deduplicate notifications.
    #[arg(long, env = "SLA_ALERTMANAGER_URL", value_delimiter = ',')]
    alertmanager_url: Vec<String>,

    /// URL receiving a JSON POST on every state change.
    #[arg(long, env = "SLA_ALERT_WEBHOOK_URL")]
    webhook_url: Option<String>,

    /// Address of the HTTP endpoint (/state, /metrics, /healthz). Port 0 picks a free port.
    #[arg(long, env = "SLA_ALERTS_HTTP_ADDR", default_value = "127.0.0.1:9103")]
    http_addr: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init_logging();
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
    };
    let rules =
        rule::load(&read(&cli.rules)?).with_context(|| format!("in {}", cli.rules.display()))?;
    let sources = datasource::parse(&read(&cli.datasources)?)
        .with_context(|| format!("in {}", cli.datasources.display()))?;
    for r in &rules {
        let source = sources.get(&r.datasource_uid).with_context(|| {
            format!(
                "rule {:?} uses data source {:?}, which {} does not define",
                r.title,
                r.datasource_uid,
                cli.datasources.display()
            )
        })?;
        anyhow::ensure!(
            source.kind == "elasticsearch",
            "rule {:?}: data source {} is {}, only elasticsearch is supported",
            r.title,
            source.uid,
            source.kind
        );
        if source.index() != Some(cli.elasticsearch.index.as_str()) {
            tracing::warn!(
                "data source {} names index {:?}; querying {:?} (--es-index)",
                source.uid,
                source.index(),
                cli.elasticsearch.index
            );
        }
    }
    anyhow::ensure!(!rules.is_empty(), "{} defines no rule", cli.rules.display());
    let metrics = telemetry::install_metrics("alerts")?;
    let shutdown = Shutdown::on_signals();
    let status: SharedStatus = Default::default();
    let router = http::base_router(metrics, http::Readiness::default())
        .merge(evaluator::state_router(status.clone()));
    http::spawn_server(cli.http_addr, router, shutdown.clone()).await?;
    let config = EvaluatorConfig {
        rules,
        client: cli.elasticsearch.client()?,
        index: cli.elasticsearch.index.clone(),
        interval: cli.interval,
        alertmanagers: cli.alertmanager_url,
        webhook: cli.webhook_url,
    };
    evaluator::run(config, status, shutdown).await;
    Ok(())
}
