//! `monitor`: one latency summary per event-time window of a pipeline's output topic. See
//! `--help`; the job is `sla_monitor::monitor::launch`.

use clap::Parser;
use sla_monitor::monitor::launch::launch;
use sla_monitor::monitor::settings::{accept_earlier_environment, MonitorFlags};
use sla_monitor::runtime::error_reporting::{self, ErrorReportingArgs};
use std::net::SocketAddr;

/// Consumes a pipeline's output (by default reduced visits), takes each record's Kafka timestamp
/// (LogAppendTime) as event time, latency = timestamp - the record's start stamp (by default
/// start_processing_time_ms; see --start-time), groups records into tumbling event-time
/// windows with watermarks and writes one summary per window (count, percentiles, min, max,
/// mean, records over the SLA). Offsets are committed only once the windows' parts built
/// from them are acknowledged on the shuffle topic (with the checkpoint to resume from).
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    monitor: MonitorFlags,

    /// Address of the HTTP endpoint (/metrics, /healthz, /readyz). Port 0 picks a free port.
    #[arg(long, env = "SLA_MONITOR_HTTP_ADDR", default_value = "127.0.0.1:9102")]
    http_addr: SocketAddr,

    #[command(flatten)]
    errors: ErrorReportingArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    accept_earlier_environment();
    let cli: Cli = sla_monitor::runtime::cli::parse();
    let reporting = error_reporting::start(&cli.errors, "monitor")?;
    reporting.tag("job_name", &cli.monitor.job_name);
    reporting.tag("topic", &cli.monitor.input_topic);
    reporting.outcome(launch(cli.monitor, cli.http_addr).await)
}
