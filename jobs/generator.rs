//! `generator`: produces visit records to `visits` at a steady rate. See `--help`.

use clap::Parser;
use sla_monitor::generator::{self, GeneratorConfig, RecordMix};
use sla_monitor::kafka::KafkaArgs;
use sla_monitor::runtime::cli::{duration_in, ms, number_in, DAY};
use sla_monitor::runtime::error_reporting::{self, ErrorReportingArgs};
use sla_monitor::runtime::shutdown::Shutdown;
use sla_monitor::runtime::{http, telemetry};
use std::net::SocketAddr;
use std::time::Duration;

/// Produces JSON visit records (visit_id, event_time, user_id, page, referrer, device,
/// duration_ms) at a steady rate, optionally with malformed, duplicate and late records. Prints
/// a JSON report of the acknowledged records by kind on stdout when done.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    kafka: KafkaArgs,

    /// Destination topic.
    #[arg(long, env = "SLA_VISITS_TOPIC", default_value = "visits")]
    visits_topic: String,

    /// Records per second (0.01 to 1000000).
    #[arg(long, env = "SLA_GENERATOR_RATE", default_value_t = 100.0, value_parser = number_in(0.01, 1_000_000.0))]
    rate: f64,

    /// Stop after this many records (default: run until --duration or a signal).
    #[arg(long, env = "SLA_GENERATOR_COUNT", value_parser = number_in(1u64, 1_000_000_000_000))]
    count: Option<u64>,

    /// Stop after this long, e.g. 5m (default: run until --count or a signal).
    #[arg(long, env = "SLA_GENERATOR_DURATION", value_parser = duration_in(ms(1), 365 * DAY))]
    duration: Option<Duration>,

    /// Percentage (0-100) of records that are not valid JSON.
    #[arg(long, env = "SLA_GENERATOR_INVALID_JSON_PCT", default_value_t = 0.0, value_parser = number_in(0.0, 100.0))]
    invalid_json_pct: f64,

    /// Percentage of records missing visit_id or event_time.
    #[arg(long, env = "SLA_GENERATOR_MISSING_FIELD_PCT", default_value_t = 0.0, value_parser = number_in(0.0, 100.0))]
    missing_field_pct: f64,

    /// Percentage of records where visit_id or event_time has the wrong JSON type.
    #[arg(long, env = "SLA_GENERATOR_WRONG_TYPE_PCT", default_value_t = 0.0, value_parser = number_in(0.0, 100.0))]
    wrong_type_pct: f64,

    /// Percentage of records that exactly repeat the previous valid record.
    #[arg(long, env = "SLA_GENERATOR_DUPLICATE_PCT", default_value_t = 0.0, value_parser = number_in(0.0, 100.0))]
    duplicate_pct: f64,

    /// Percentage of records whose event_time lies --late-by in the past.
    #[arg(long, env = "SLA_GENERATOR_LATE_PCT", default_value_t = 0.0, value_parser = number_in(0.0, 100.0))]
    late_pct: f64,

    /// How far in the past the event_time of late records lies, e.g. 5m.
    #[arg(long, env = "SLA_GENERATOR_LATE_BY", default_value = "5m", value_parser = duration_in(ms(0), 365 * DAY))]
    late_by: Duration,

    /// Seed of the record contents: the same seed gives the same records (event times follow
    /// the clock).
    #[arg(long, env = "SLA_GENERATOR_SEED", default_value_t = 42)]
    seed: u64,

    /// Address of the HTTP endpoint (/metrics, /healthz, /readyz). Port 0 picks a free port.
    #[arg(
        long,
        env = "SLA_GENERATOR_HTTP_ADDR",
        default_value = "127.0.0.1:9100"
    )]
    http_addr: SocketAddr,

    #[command(flatten)]
    errors: ErrorReportingArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli: Cli = sla_monitor::runtime::cli::parse();
    let reporting = error_reporting::start(&cli.errors, "generator")?;
    reporting.outcome(run(cli).await)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let metrics = telemetry::install_metrics("generator")?;
    let shutdown = Shutdown::on_signals();
    http::spawn_server(
        cli.http_addr,
        http::base_router(metrics, http::Readiness::default()),
        shutdown.clone(),
    )
    .await?;
    let config = GeneratorConfig {
        kafka: cli.kafka,
        topic: cli.visits_topic,
        rate: cli.rate,
        count: cli.count,
        duration: cli.duration,
        mix: RecordMix {
            invalid_json_pct: cli.invalid_json_pct,
            missing_field_pct: cli.missing_field_pct,
            wrong_type_pct: cli.wrong_type_pct,
            duplicate_pct: cli.duplicate_pct,
            late_pct: cli.late_pct,
            late_by: cli.late_by,
        },
        seed: cli.seed,
    };
    let report = generator::run(config, shutdown).await?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
