//! `alerts`: evaluates the Grafana alert rules of dashboards/ against Elasticsearch, with
//! Grafana's semantics, where Grafana cannot run — live, or over a past range (`backtest`).
//! See `--help`.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use sla_monitor::alerting::commands;
use sla_monitor::alerting::evaluator::{self, EvaluatorConfig, SharedStatus};
use sla_monitor::alerting::report;
use sla_monitor::alerting::rule::AlertRule;
use sla_monitor::elasticsearch_connection::ElasticsearchArgs;
use sla_monitor::runtime::cli::{duration_in, ms, number_in, secs, DAY};
use sla_monitor::runtime::error_reporting::{self, ErrorReportingArgs};
use sla_monitor::runtime::shutdown::Shutdown;
use sla_monitor::runtime::{http, telemetry};
use sla_monitor::slo;
use sla_monitor::slo::report::{self as slo_report, ReportRequest};
use sla_monitor::slo::rules as slo_rules;
use sla_monitor::slo::spec::SloSpec;
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

    /// Address of the HTTP endpoint (/state, /metrics, /healthz, /readyz). Port 0 picks a free port.
    #[arg(long, env = "SLA_ALERTS_HTTP_ADDR", default_value = "127.0.0.1:9103")]
    http_addr: SocketAddr,

    #[command(subcommand)]
    command: Option<Command>,
}

/// The rules, where they read from, and how often they run.
#[derive(Debug, Args)]
struct RuleArgs {
    /// Grafana alert-rule provisioning files (repeat the flag or separate with commas), e.g.
    /// the SLA rule and the burn-rate rules `alerts slo generate` wrote.
    #[arg(
        long,
        env = "SLA_ALERT_RULES",
        value_delimiter = ',',
        default_value = "dashboards/grafana/provisioning/alerting/sla-alert-rules.yaml"
    )]
    rules: Vec<PathBuf>,

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
    #[arg(long, env = "SLA_ALERT_INTERVAL", value_parser = duration_in(secs(1), DAY))]
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

        /// Print the timelines as JSON (one array) instead of text; with --incidents each
        /// carries its score, with --set each its variant.
        #[arg(long)]
        json: bool,

        #[command(flatten)]
        judging: Judging,
    },
    /// True p50/p75/p90/p99 over every record, compliance with the stored SLA or any other
    /// threshold, and the error budget used and left, per UTC day and in total, per job —
    /// computed by Elasticsearch over the windows' latency histograms, not by averaging
    /// per-window percentiles.
    Report {
        #[command(flatten)]
        elasticsearch: ElasticsearchArgs,

        /// Start of the range: an RFC 3339 time or how long ago (30d).
        #[arg(long)]
        from: String,

        /// End of the range, in the same forms (default: now).
        #[arg(long, default_value = "0s")]
        to: String,

        /// Only this job (the monitor's --job-name); default every job, each on its own.
        #[arg(long)]
        job: Option<String>,

        /// Per value of this dimension (a monitor's --dimension NAME=…): compliance and true
        /// percentiles per job and value, from `<es-index>-dimensions`.
        #[arg(long)]
        by: Option<String>,

        /// Judge against this threshold (e.g. 3s) instead of the SLA stored with each window.
        #[arg(long, value_parser = duration_in(ms(1), DAY))]
        sla: Option<Duration>,

        /// The objective in percent of records within the SLA: the error budget.
        #[arg(long, default_value_t = 99.5, value_parser = number_in(1.0, 99.999))]
        objective: f64,

        /// Print the report as JSON.
        #[arg(long)]
        json: bool,

        #[command(flatten)]
        errors: ErrorReportingArgs,
    },
    /// SLO files: `validate FILE` checks one, `generate FILE` prints the Grafana burn-rate
    /// alert rules (provisioning YAML) for it.
    Slo {
        #[command(subcommand)]
        action: SloAction,
    },
}

#[derive(Debug, Subcommand)]
enum SloAction {
    /// Checks an SLO file; exits 1 with the reason when it cannot work.
    Validate {
        /// The SLO file (YAML).
        file: PathBuf,
    },
    /// Prints the Grafana-managed multi-window multi-burn-rate alert rules for an SLO file.
    Generate {
        /// The SLO file (YAML).
        file: PathBuf,
    },
}

/// How a backtest is judged and shown.
#[derive(Debug, Args)]
struct Judging {
    /// Known incidents (YAML: a list of {name, start, end, job?}, RFC 3339 times): score each
    /// rule and alert instance by precision, recall, detection and reset time.
    #[arg(long)]
    incidents: Option<PathBuf>,

    /// Fail (exit 1, naming what failed) unless every rule as provisioned meets these, e.g.
    /// 'recall>=1,precision>=0.9,detection<=5m'. Measures: recall, precision,
    /// time_precision, detection, reset, notifications, false_notifications. Needs
    /// --incidents.
    #[arg(long)]
    require: Option<String>,

    /// A what-if variant replayed beside the rule as provisioned, e.g. 'for=5m' or
    /// 'for=2m,threshold=4000' (settings: for, threshold, interval). Repeat for several.
    #[arg(long = "set", value_name = "SETTINGS")]
    variants: Vec<String>,

    /// Write a self-contained HTML report (series against the threshold, state bands,
    /// notifications, incidents, scores, every variant) to this file.
    #[arg(long, value_name = "FILE.html")]
    report: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli: Cli = sla_monitor::runtime::cli::parse();
    let errors = match &cli.command {
        Some(Command::Backtest { rules, .. }) => &rules.errors,
        Some(Command::Report { errors, .. }) => errors,
        Some(Command::Slo { action }) => return run_slo(action),
        None => &cli.rules.errors,
    };
    let reporting = error_reporting::start(errors, "alerts")?;
    let outcome = match cli.command {
        Some(Command::Backtest {
            rules,
            from,
            to,
            json,
            judging,
        }) => run_backtest(&rules, &from, &to, json, &judging).await,
        Some(Command::Report {
            elasticsearch,
            from,
            to,
            job,
            sla,
            objective,
            json,
            by,
            ..
        }) => {
            let now = chrono::Utc::now().timestamp_millis();
            let (from_ms, to_ms) =
                commands::parse_range(&from, &to, now).map_err(anyhow::Error::msg)?;
            let request = ReportRequest {
                from_ms,
                to_ms,
                job,
                sla_ms: sla.map(|d| d.as_millis() as i64),
                objective: objective / 100.0,
                by,
            };
            run_report(&elasticsearch, &request, json)
                .await
                .map(|()| Vec::new())
        }
        Some(Command::Slo { .. }) => unreachable!("answered above"),
        None => serve(cli).await.map(|()| Vec::new()),
    };
    let failures = match outcome {
        Ok(failures) => failures,
        Err(e) => return reporting.outcome(Err(e)),
    };
    reporting.outcome(Ok(()))?;
    if !failures.is_empty() {
        // A rule that fails its requirements is the answer asked for, not an error to report.
        eprintln!("backtest gate failed:");
        for failure in &failures {
            eprintln!("  {failure}");
        }
        std::process::exit(1);
    }
    Ok(())
}

/// `alerts slo validate|generate FILE`: an answer, not a job (no error reporting).
fn run_slo(action: &SloAction) -> anyhow::Result<()> {
    let (SloAction::Validate { file } | SloAction::Generate { file }) = action;
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let slo = match SloSpec::parse(&text) {
        Ok(slo) => slo,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            std::process::exit(1);
        }
    };
    match action {
        SloAction::Validate { .. } => print!("{}", slo.describe(&file.display().to_string())),
        SloAction::Generate { .. } => {
            print!("{}", slo_rules::generate(&slo, &file.display().to_string()))
        }
    }
    Ok(())
}

async fn run_report(
    elasticsearch: &ElasticsearchArgs,
    request: &ReportRequest,
    json: bool,
) -> anyhow::Result<()> {
    let client = elasticsearch.client()?;
    let report = slo::fetch_report(&client, &elasticsearch.index, request).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", slo_report::render_text(&report));
    }
    Ok(())
}

/// Reads the rules and checks each against its data source.
fn load_rules(args: &RuleArgs) -> anyhow::Result<Vec<AlertRule>> {
    commands::load_rules(&args.rules, &args.datasources, &args.elasticsearch.index)
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

/// Replays every rule (and each variant) over the range and prints the result; returns the
/// requirements the rules as provisioned failed.
async fn run_backtest(
    args: &RuleArgs,
    from: &str,
    to: &str,
    json: bool,
    judging: &Judging,
) -> anyhow::Result<Vec<String>> {
    let rules = load_rules(args)?;
    let now = chrono::Utc::now().timestamp_millis();
    let range = commands::parse_range(from, to, now).map_err(anyhow::Error::msg)?;
    let judged = commands::Judging::read(
        judging.incidents.as_deref(),
        judging.require.as_deref(),
        &judging.variants,
    )?;
    let client = args.elasticsearch.client()?;
    let outcome = commands::backtest(
        &rules,
        &client,
        &args.elasticsearch.index,
        range,
        args.interval,
        &judged,
    )
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&outcome.runs)?);
    } else {
        print!("{}", commands::render_backtest_text(&outcome));
    }
    if let Some(path) = &judging.report {
        let incidents = judged.incidents.as_deref().unwrap_or_default();
        let page = report::render(&outcome.runs, incidents);
        std::fs::write(path, page).with_context(|| format!("writing {}", path.display()))?;
        if !json {
            println!("Report written to {}", path.display());
        }
    }
    Ok(outcome.failures)
}
