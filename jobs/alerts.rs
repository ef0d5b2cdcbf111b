//! `alerts`: evaluates the Grafana alert rules of dashboards/ against Elasticsearch, with
//! Grafana's semantics, where Grafana cannot run — live, or over a past range (`backtest`).
//! See `--help`.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use sla_monitor::alerting::backtest::{self, Timeline};
use sla_monitor::alerting::evaluator::{self, EvaluatorConfig, SharedStatus};
use sla_monitor::alerting::rule::AlertRule;
use sla_monitor::alerting::state::Lifecycle;
use sla_monitor::alerting::{datasource, rule};
use sla_monitor::elasticsearch_connection::ElasticsearchArgs;
use sla_monitor::error_reporting::{self, ErrorReportingArgs};
use sla_monitor::shutdown::Shutdown;
use sla_monitor::{http, telemetry};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Reads Grafana alert-rule and data-source provisioning files and evaluates every rule each
/// interval against Elasticsearch with Grafana 10.4's semantics: query A as Grafana's
/// Elasticsearch data source sends it, reduce B, threshold C, the pending period, noDataState
/// and execErrState, one alert instance per series (e.g. per job: one per monitored pipeline).
/// Logs state changes only, serves GET /state, sends alerts to every
/// Alertmanager replica given and state changes to a webhook. `alerts backtest` replays the
/// rules over a past range instead.
#[derive(Debug, Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(flatten)]
    rules: RuleArgs,

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

    #[command(subcommand)]
    command: Option<Command>,
}

/// The rules, where they read from, and how often they run.
#[derive(Debug, Args)]
struct RuleArgs {
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

    #[command(flatten)]
    errors: ErrorReportingArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Evaluates the rules as if they had run at every interval of a past range, over the
    /// windows stored in Elasticsearch, and prints each rule's state timeline, the alerts it
    /// would have sent to Alertmanager, and how long it spent in each state. Sends nothing.
    Backtest {
        #[command(flatten)]
        rules: RuleArgs,

        /// Start of the range: an RFC 3339 time (2026-11-22T00:00:00Z) or how long ago (7d).
        #[arg(long)]
        from: String,

        /// End of the range, in the same forms (default: now).
        #[arg(long, default_value = "0s")]
        to: String,

        /// Print the timelines as JSON (one array) instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Evaluations per `_msearch` request of a backtest.
const BACKTEST_BATCH: usize = 500;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let errors = match &cli.command {
        Some(Command::Backtest { rules, .. }) => &rules.errors,
        None => &cli.rules.errors,
    };
    let reporting = error_reporting::start(errors, "alerts")?;
    let outcome = match cli.command {
        Some(Command::Backtest {
            rules,
            from,
            to,
            json,
        }) => run_backtest(&rules, &from, &to, json).await,
        None => serve(cli).await,
    };
    reporting.outcome(outcome)
}

/// Reads the rules and checks each against its data source.
fn load_rules(args: &RuleArgs) -> anyhow::Result<Vec<AlertRule>> {
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
    };
    let rules =
        rule::load(&read(&args.rules)?).with_context(|| format!("in {}", args.rules.display()))?;
    let sources = datasource::parse(&read(&args.datasources)?)
        .with_context(|| format!("in {}", args.datasources.display()))?;
    for r in &rules {
        let source = sources.get(&r.datasource_uid).with_context(|| {
            format!(
                "rule {:?} uses data source {:?}, which {} does not define",
                r.title,
                r.datasource_uid,
                args.datasources.display()
            )
        })?;
        anyhow::ensure!(
            source.kind == "elasticsearch",
            "rule {:?}: data source {} is {}, only elasticsearch is supported",
            r.title,
            source.uid,
            source.kind
        );
        if source.index() != Some(args.elasticsearch.index.as_str()) {
            tracing::warn!(
                "data source {} names index {:?}; querying {:?} (--es-index)",
                source.uid,
                source.index(),
                args.elasticsearch.index
            );
        }
    }
    anyhow::ensure!(
        !rules.is_empty(),
        "{} defines no rule",
        args.rules.display()
    );
    Ok(rules)
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    let rules = load_rules(&cli.rules)?;
    let metrics = telemetry::install_metrics("alerts")?;
    let shutdown = Shutdown::on_signals();
    let status: SharedStatus = Default::default();
    let router = http::base_router(metrics, http::Readiness::default())
        .merge(evaluator::state_router(status.clone()));
    http::spawn_server(cli.http_addr, router, shutdown.clone()).await?;
    let config = EvaluatorConfig {
        rules,
        client: cli.rules.elasticsearch.client()?,
        index: cli.rules.elasticsearch.index.clone(),
        interval: cli.rules.interval,
        alertmanagers: cli.alertmanager_url,
        webhook: cli.webhook_url,
    };
    evaluator::run(config, status, shutdown).await;
    Ok(())
}

/// `--from` / `--to`: an RFC 3339 time, or a duration before `now_ms`.
fn parse_time(text: &str, now_ms: i64, flag: &str) -> anyhow::Result<i64> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(at.timestamp_millis());
    }
    let ago = humantime::parse_duration(text).with_context(|| {
        format!(
            "{flag} {text:?}: give an RFC 3339 time (2026-11-22T00:00:00Z) or how long ago (7d)"
        )
    })?;
    Ok(now_ms - ago.as_millis() as i64)
}

async fn run_backtest(args: &RuleArgs, from: &str, to: &str, json: bool) -> anyhow::Result<()> {
    let rules = load_rules(args)?;
    let now = chrono::Utc::now().timestamp_millis();
    let (from_ms, to_ms) = (
        parse_time(from, now, "--from")?,
        parse_time(to, now, "--to")?,
    );
    anyhow::ensure!(from_ms < to_ms, "--from must be before --to");
    let client = args.elasticsearch.client()?;
    let mut timelines: Vec<Timeline> = Vec::new();
    for rule in &rules {
        let lifecycle = Lifecycle::of(rule, args.interval);
        let step = lifecycle.interval.as_millis() as i64;
        // Grafana's scheduler ticks at multiples of the interval.
        let first = (from_ms + step - 1).div_euclid(step) * step;
        let times: Vec<i64> = (first..=to_ms).step_by(step as usize).collect();
        anyhow::ensure!(
            times.len() <= 1_000_000,
            "{} evaluations of {:?} in that range; shorten it or raise --interval",
            times.len(),
            rule.title
        );
        let mut evaluations = Vec::with_capacity(times.len());
        for batch in times.chunks(BACKTEST_BATCH) {
            let results = rule
                .evaluate_many(&client, &args.elasticsearch.index, batch)
                .await;
            evaluations.extend(batch.iter().copied().zip(results));
        }
        let timeline = backtest::replay(rule, &lifecycle, &evaluations, to_ms);
        if !json {
            println!("{}", backtest::render_text(&timeline, &rule.reduce_ref));
        }
        timelines.push(timeline);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&timelines)?);
    }
    Ok(())
}
