//! A job that panics, for `tests/error_reporting.rs`: it starts error reporting exactly as the
//! four jobs do (`--sentry-dsn`/`SENTRY_DSN`, …), logs a line, and panics, so the test can check
//! that a panic reaches the Sentry-protocol server with its message, tags and breadcrumbs.

use clap::Parser;
use sla_monitor::runtime::error_reporting::{self, ErrorReportingArgs};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    errors: ErrorReportingArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _reporting = error_reporting::start(&cli.errors, "report-panic")?;
    tracing::info!("about to panic on purpose");
    let index = std::env::args().count() + 7;
    let values = [1, 2, 3];
    // An out-of-bounds index: the kind of bug a panic report is for.
    println!("{}", values[index]);
    Ok(())
}
