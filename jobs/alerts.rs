//! `alerts`: evaluates the Grafana alert rules of dashboards/ against Elasticsearch, with
//! Grafana's semantics, where Grafana cannot run — live, or over a past range (`backtest`).
//! See `--help`.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use futures::StreamExt;
use sla_monitor::alerting::backtest;
use sla_monitor::alerting::evaluation::Results;
use sla_monitor::alerting::evaluator::{self, EvaluatorConfig, SharedStatus};
use sla_monitor::alerting::report::{self, Run};
use sla_monitor::alerting::rule::AlertRule;
use sla_monitor::alerting::state::Lifecycle;
use sla_monitor::alerting::variants::{self, Variant};
use sla_monitor::alerting::{datasource, rule};
use sla_monitor::alerting::{incidents, requirements, score};
use sla_monitor::elasticsearch_connection::ElasticsearchArgs;
use sla_monitor::error_reporting::{self, ErrorReportingArgs};
use sla_monitor::shutdown::Shutdown;
use sla_monitor::slo;
use sla_monitor::slo::report::{self as slo_report, ReportRequest};
use sla_monitor::slo::rules as slo_rules;
use sla_monitor::slo::spec::SloSpec;
use sla_monitor::{http, telemetry};
use std::collections::BTreeMap;
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

        /// Judge against this threshold (e.g. 3s) instead of the SLA stored with each window.
        #[arg(long, value_parser = humantime::parse_duration)]
        sla: Option<Duration>,

        /// The objective in percent of records within the SLA: the error budget.
        #[arg(long, default_value_t = 99.5)]
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

/// Evaluations per `_msearch` request of a backtest.
const BACKTEST_BATCH: usize = 500;

/// `_msearch` requests of a backtest under way at once (Elasticsearch runs them on its search
/// threads; one at a time left its cores idle between requests).
const BACKTEST_CONCURRENCY: usize = 2;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
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
            ..
        }) => {
            let now = chrono::Utc::now().timestamp_millis();
            let request = ReportRequest {
                from_ms: parse_time(&from, now, "--from")?,
                to_ms: parse_time(&to, now, "--to")?,
                job,
                sla_ms: sla.map(|d| d.as_millis() as i64),
                objective: objective / 100.0,
            };
            anyhow::ensure!(
                request.from_ms < request.to_ms,
                "--from must be before --to"
            );
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
        SloAction::Validate { .. } => {
            println!(
                "{}: valid — {} % of records of job {:?} within {} ms over {}; {} burn-rate alerts",
                file.display(),
                slo.target * 100.0,
                slo.job,
                slo.threshold_ms(),
                humantime::format_duration(slo.time_window),
                slo.windows.len()
            );
            for w in &slo.windows {
                println!(
                    "  {:<6} {} and {} above {}x ({:.1} % of the budget before it fires)",
                    w.severity,
                    humantime::format_duration(w.long),
                    humantime::format_duration(w.short),
                    w.burn_rate,
                    100.0 * slo.budget_share(w)
                );
            }
        }
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
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
    };
    let mut rules = Vec::new();
    for path in &args.rules {
        rules.extend(rule::load(&read(path)?).with_context(|| format!("in {}", path.display()))?);
    }
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
        "{} define no rule",
        args.rules
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
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

/// The evaluations of `rule` at every multiple of `step` in the range (Grafana's scheduler
/// ticks at multiples of the interval), `BACKTEST_CONCURRENCY` `_msearch` requests at a time.
async fn evaluations(
    rule: &AlertRule,
    client: &elasticsearch::Elasticsearch,
    index: &str,
    (from_ms, to_ms, step): (i64, i64, i64),
) -> anyhow::Result<Vec<(i64, Results)>> {
    let first = (from_ms + step - 1).div_euclid(step) * step;
    let times: Vec<i64> = (first..=to_ms).step_by(step as usize).collect();
    anyhow::ensure!(
        times.len() <= 1_000_000,
        "{} evaluations of {:?} in that range; shorten it or raise --interval",
        times.len(),
        rule.title
    );
    let batches: Vec<Vec<Results>> = futures::stream::iter(times.chunks(BACKTEST_BATCH))
        .map(|batch| rule.evaluate_range(client, index, batch))
        .buffered(BACKTEST_CONCURRENCY)
        .collect()
        .await;
    Ok(times
        .into_iter()
        .zip(batches.into_iter().flatten())
        .collect())
}

/// Replays every rule (and each variant) over the range; returns the requirements the rules
/// as provisioned failed.
async fn run_backtest(
    args: &RuleArgs,
    from: &str,
    to: &str,
    json: bool,
    judging: &Judging,
) -> anyhow::Result<Vec<String>> {
    let rules = load_rules(args)?;
    let now = chrono::Utc::now().timestamp_millis();
    let (from_ms, to_ms) = (
        parse_time(from, now, "--from")?,
        parse_time(to, now, "--to")?,
    );
    anyhow::ensure!(from_ms < to_ms, "--from must be before --to");
    let incidents = match &judging.incidents {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))
                .and_then(|text| {
                    incidents::parse(&text).with_context(|| format!("in {}", path.display()))
                })?,
        ),
        None => None,
    };
    let requirements = match &judging.require {
        Some(text) => {
            anyhow::ensure!(
                incidents.is_some(),
                "--require needs --incidents: the requirements are about known incidents"
            );
            requirements::parse(text)?
        }
        None => Vec::new(),
    };
    let mut variants = vec![Variant::provisioned()];
    for text in &judging.variants {
        variants.push(Variant::parse(text)?);
    }
    let client = args.elasticsearch.client()?;
    let index = &args.elasticsearch.index;
    let mut runs: Vec<Run> = Vec::new();
    let mut failures = Vec::new();
    for rule in &rules {
        // The queries do not change with `for` or the threshold: one set per interval.
        let mut by_interval: BTreeMap<i64, Vec<(i64, Results)>> = BTreeMap::new();
        for (number, variant) in variants.iter().enumerate() {
            let changed = variant.apply(rule)?;
            let lifecycle = Lifecycle::of(&changed, variant.interval.or(args.interval));
            let step = lifecycle.interval.as_millis() as i64;
            if let std::collections::btree_map::Entry::Vacant(entry) = by_interval.entry(step) {
                let started = std::time::Instant::now();
                let found = evaluations(rule, &client, index, (from_ms, to_ms, step)).await?;
                tracing::info!(
                    "{:?}: {} evaluations queried in {:.1?}",
                    rule.title,
                    found.len(),
                    started.elapsed()
                );
                entry.insert(found);
            }
            let evaluations = &by_interval[&step];
            let timeline = if variant.threshold.is_some() {
                backtest::replay(
                    &changed,
                    &lifecycle,
                    &variants::rejudge(&changed, evaluations),
                    to_ms,
                )
            } else {
                backtest::replay(&changed, &lifecycle, evaluations, to_ms)
            };
            let score = incidents.as_ref().map(|i| score::score(&timeline, i));
            // The gate judges the rules as provisioned; variants are for comparing.
            if let (Some(score), 0) = (&score, number) {
                failures.extend(
                    requirements::failures(&requirements, &score.numbers)
                        .into_iter()
                        .map(|f| format!("rule {:?}: {f}", rule.title)),
                );
            }
            if !json {
                if variants.len() > 1 {
                    println!("=== {:?}, {} ===", rule.title, variant.name);
                }
                println!("{}", backtest::render_text(&timeline, &rule.reduce_ref));
                if let Some(score) = &score {
                    println!("{}", score::render_text(score));
                }
            }
            runs.push(Run {
                timeline,
                variant: variant.name.clone(),
                threshold: Some(changed.threshold),
                score,
            });
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
    } else if variants.len() > 1 && incidents.is_some() {
        println!("Variants side by side:");
        for run in &runs {
            if let Some(score) = &run.score {
                println!(
                    "  {:?} {:<24} {}",
                    run.timeline.rule,
                    run.variant,
                    score::numbers_text(&score.numbers)
                );
            }
        }
    }
    if let Some(path) = &judging.report {
        let page = report::render(&runs, incidents.as_deref().unwrap_or_default());
        std::fs::write(path, page).with_context(|| format!("writing {}", path.display()))?;
        if !json {
            println!("Report written to {}", path.display());
        }
    }
    Ok(failures)
}
