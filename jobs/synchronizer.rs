//! `synchronizer`: reduces visits from `visits` to `reduced_visits`, stamping the start of
//! processing, with an optional artificial delay. See `--help`.

use bytesize::ByteSize;
use clap::Parser;
use sla_monitor::kafka::KafkaArgs;
use sla_monitor::runtime::cli::{bytes_in, duration_in, ms, number_in, secs, DAY};
use sla_monitor::runtime::error_reporting::{self, ErrorReportingArgs};
use sla_monitor::runtime::shutdown::Shutdown;
use sla_monitor::runtime::{http, telemetry};
use sla_monitor::synchronizer::delay::{parse_delay, DelayMode, DelayPolicy};
use sla_monitor::synchronizer::loss::{parse_loss_rate, LossPolicy};
use sla_monitor::synchronizer::{self, control, SynchronizerConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Consumes visit records, reduces each to {"visit":{"id","event_time"},"start_processing_time_ms"}
/// stamped when its processing starts, and produces it to the reduced-visits topic. Undecodable
/// records go, unchanged, to a dead-letter topic. Offsets are committed only after the output is
/// acknowledged (at-least-once, nothing lost).
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    kafka: KafkaArgs,

    /// Topic of input visits.
    #[arg(long, env = "SLA_VISITS_TOPIC", default_value = "visits")]
    visits_topic: String,

    /// Topic of reduced visits (created with message.timestamp.type=LogAppendTime if missing).
    #[arg(long, env = "SLA_REDUCED_TOPIC", default_value = "reduced_visits")]
    reduced_topic: String,

    /// Topic that keeps undecodable visits, with the reason and source position in headers.
    #[arg(long, env = "SLA_VISITS_DLQ_TOPIC", default_value = "visits_dlq")]
    dead_letter_topic: String,

    /// Consumer group id.
    #[arg(
        long,
        env = "SLA_SYNCHRONIZER_GROUP",
        default_value = "sla-synchronizer"
    )]
    group: String,

    /// Artificial processing delay added between the stamp and the produce, e.g. 10s, 250ms
    /// (0s: none; at most 1h). Changeable at runtime with PUT /delay?delay=10s on --http-addr.
    #[arg(long, env = "SLA_DELAY", default_value = "0s", value_parser = parse_delay)]
    delay: Duration,

    /// Upper bound of a random extra delay per record (uniform), e.g. 500ms (at most 1h).
    #[arg(long, env = "SLA_DELAY_JITTER", default_value = "0s", value_parser = parse_delay)]
    delay_jitter: Duration,

    /// pipelined: records wait concurrently, throughput stays. blocking: one record at a time,
    /// like sleep() in the processing function; throughput collapses and lag grows.
    #[arg(long, env = "SLA_DELAY_MODE", value_enum, default_value_t = DelayMode::Pipelined)]
    delay_mode: DelayMode,

    /// Delay only the records of this input partition (a held partition: its records wait,
    /// the others flow). Changeable at runtime with PUT /delay?partition=3 (or =all).
    #[arg(long, env = "SLA_DELAY_PARTITION")]
    delay_partition: Option<u16>,

    /// How often acknowledged offsets are committed, e.g. 1s.
    #[arg(long, env = "SLA_COMMIT_INTERVAL", default_value = "1s", value_parser = duration_in(ms(10), secs(3_600)))]
    commit_interval: Duration,

    /// Share of the visits to drop on purpose — consumed, never produced, committed past — to
    /// show a completeness alert, e.g. 2% (0: none; at most 50%). Which records is decided by
    /// --loss-seed and each record's source position. Changeable at runtime with
    /// PUT /loss?rate=2%&seed=7 on --http-addr.
    #[arg(long, env = "SLA_LOSS", default_value = "0", value_parser = parse_loss_rate)]
    loss: u32,

    /// Picks which records --loss drops (the same seed drops the same source positions).
    #[arg(long, env = "SLA_LOSS_SEED", default_value_t = 0)]
    loss_seed: u64,

    /// Most records consumed but not yet acknowledged at once (bounds memory under a delay).
    /// Without a delay the produce path is the bottleneck and this many stay in flight:
    /// 20,000 covers the broker's acknowledgement time many times over at full speed (50,000
    /// made no record faster and held ~15 MB more); under a delay it caps the rate at this
    /// many per delay (4,000 records/s with a 5 s delay). 1 to 1000000.
    #[arg(long, env = "SLA_MAX_IN_FLIGHT", default_value_t = 20_000, value_parser = number_in(1u64, 1_000_000))]
    max_in_flight: u64,

    /// Most bytes of reduced records (key plus value) held while they wait for the delay, e.g.
    /// 32MiB: consuming pauses while they are reached (bounds memory whatever the records' size).
    /// 1 KiB to 4 GiB.
    #[arg(long, env = "SLA_MAX_WAITING_BYTES", default_value = "32MiB", value_parser = bytes_in(ByteSize::kib(1), ByteSize::gib(4)))]
    max_waiting_bytes: bytesize::ByteSize,

    /// On shutdown, how long to wait for delayed and in-flight records before exiting anyway
    /// (records not acknowledged by then are reprocessed after a restart).
    #[arg(long, env = "SLA_DRAIN_TIMEOUT", default_value = "30s", value_parser = duration_in(ms(0), secs(3_600)))]
    drain_timeout: Duration,

    /// How long the synchronizer may hold no partition of its input (while the topic has
    /// partitions and the broker answers) before it logs an error, reports not ready on /readyz
    /// and rejoins the group with a fresh consumer, e.g. 90s. Default: twice the group session
    /// timeout (session.timeout.ms, 45 s unless set), at least 30 s.
    #[arg(long, env = "SLA_ASSIGNMENT_TIMEOUT", value_parser = duration_in(secs(1), DAY))]
    assignment_timeout: Option<Duration>,

    /// File holding the secret token that PUT /delay and PUT /loss require (`Authorization:
    /// Bearer <token>`; at least 16 characters, e.g. from `openssl rand -hex 16`). Required when
    /// --http-addr is not a loopback address; GET stays open.
    #[arg(long, env = "SLA_CONTROL_TOKEN_FILE")]
    control_token_file: Option<PathBuf>,

    /// Address of the HTTP endpoint (/metrics, /healthz, /readyz, /delay, /loss). Port 0 picks a free port.
    #[arg(
        long,
        env = "SLA_SYNCHRONIZER_HTTP_ADDR",
        default_value = "127.0.0.1:9101"
    )]
    http_addr: SocketAddr,

    #[command(flatten)]
    errors: ErrorReportingArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli: Cli = sla_monitor::runtime::cli::parse();
    let reporting = error_reporting::start(&cli.errors, "synchronizer")?;
    reporting.outcome(run(cli).await)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let metrics = telemetry::install_metrics("synchronizer")?;
    let shutdown = Shutdown::on_signals();
    let (delay_sender, delay) = tokio::sync::watch::channel(DelayPolicy {
        delay: cli.delay,
        jitter: cli.delay_jitter,
        mode: cli.delay_mode,
        partition: cli.delay_partition.map(i32::from),
    });
    let (loss_sender, loss) = tokio::sync::watch::channel(LossPolicy {
        rate_ppm: cli.loss,
        seed: cli.loss_seed,
    });
    let token = cli
        .control_token_file
        .as_deref()
        .map(control::ControlToken::read)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    control::require_token_beyond_loopback(cli.http_addr, token.as_ref())
        .map_err(anyhow::Error::msg)?;
    let readiness = http::Readiness::default();
    readiness.set_not_ready("starting: preparing the topics and joining the group");
    let router = http::base_router(metrics, readiness.clone()).merge(control::control_router(
        control::Faults {
            delay: delay_sender,
            loss: loss_sender,
        },
        token,
    ));
    http::spawn_server(cli.http_addr, router, shutdown.clone()).await?;
    let config = SynchronizerConfig {
        kafka: cli.kafka,
        input_topic: cli.visits_topic,
        output_topic: cli.reduced_topic,
        dead_letter_topic: cli.dead_letter_topic,
        group: cli.group,
        commit_interval: cli.commit_interval,
        max_in_flight: cli.max_in_flight as usize,
        max_waiting_bytes: cli.max_waiting_bytes.as_u64() as usize,
        drain_timeout: cli.drain_timeout,
        assignment_timeout: cli.assignment_timeout,
        readiness,
    };
    synchronizer::ensure_synchronizer_topics(&config, shutdown.clone()).await?;
    synchronizer::run(config, delay, loss, shutdown).await?;
    Ok(())
}
