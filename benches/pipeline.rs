//! End-to-end speed and memory of the jobs, side by side with bare rdkafka loops on the same
//! topics in the same run, so the results are ratios that hold on any machine.
//!
//! `cargo bench --bench pipeline -- [--records 5000000] [--per-window 500000] [--rounds 3]
//! [--partitions 2] [--only monitor,synchronizer,stamps,completeness,dimensions]
//! [--flat 1000000,20000000] [--fresh-seconds 40]`
//!
//! Needs `scripts/stack.sh up kafka elasticsearch` (the tansu binary and Elasticsearch); the
//! benchmark starts a private tansu with in-memory storage so the broker is as fast as it gets
//! here, produces the data once, then per round runs, one at a time:
//! - the bare consumer: an rdkafka consumer with the jobs' consumer settings reading every record;
//! - the monitor writing JSON lines, until every window document is written;
//! - the monitor writing to Elasticsearch, until every window document is searchable;
//! - (`stamps`) the same records with a binary payload and the start stamp in an 8-byte header:
//!   the bare consumer on that topic, and the monitor with `--start-time header:processed_at`;
//! - (`completeness`) the same records with a lineage header naming a record of a source topic
//!   (produced too, same layout): the bare consumer on them, the monitor without and with
//!   `--source-topic`, and with `--source-topic` over records whose source offsets arrive
//!   reversed in blocks of 64 (a stage that reorders);
//! - (`dimensions`) the same records with a `tenant` member of 10 values, and of 100,000: the
//!   bare consumer on each, the monitor without a dimension, and with
//!   `--dimension tenant=field:/tenant` on each;
//! - the bare consume → produce loop: the synchronizer's consumer and producer settings, no work;
//! - the synchronizer, until its group has committed every input record.
//!
//! Each is a process of its own: records/s from its start to done, peak RSS from the kernel
//! (VmHWM). No Prometheus scrapes anything. Then the monitor's peak RSS at growing record
//! counts (`--flat`), and the freshness of windows: with live records, the time from the
//! moment a window can close (its end plus the out-of-orderness) to its document being
//! searchable, p50/p99 over `--fresh-seconds` one-second windows.

use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use sla_monitor::generator::visits::{RecordMix, VisitGenerator};
use sla_monitor::kafka::producer::RELIABLE_PRODUCER;
use sla_monitor::kafka::KafkaArgs;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Parser, Debug, Clone)]
struct Args {
    /// Records per side-by-side run.
    #[arg(long, default_value_t = 5_000_000)]
    records: u64,
    /// Records per event-time window.
    #[arg(long, default_value_t = 500_000)]
    per_window: u64,
    /// Rounds of the side-by-side runs.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Record counts at which the monitor's peak RSS is measured (comma-separated; 0: skip).
    #[arg(long, value_delimiter = ',', default_value = "1000000,20000000")]
    flat: Vec<u64>,
    /// Partitions of the input topics.
    #[arg(long, default_value_t = 2)]
    partitions: i32,
    /// Which side-by-side pairs to run: monitor, synchronizer, stamps (the monitor with a
    /// header stamp over binary payloads) (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "monitor,synchronizer,stamps"
    )]
    only: Vec<String>,
    /// Seconds of live records for the freshness measurement (0: skip).
    #[arg(long, default_value_t = 40)]
    fresh_seconds: u64,
    /// Elasticsearch to write to.
    #[arg(long, default_value = "http://127.0.0.1:9200")]
    es_url: String,
    /// Arguments cargo bench passes (e.g. --bench).
    #[arg(hide = true, allow_hyphen_values = true, num_args = 0..)]
    rest: Vec<String>,
}

/// Partitions of the benchmark's topics (`--partitions`, passed to the roles this benchmark
/// starts as processes through the environment).
fn partitions() -> i32 {
    std::env::var(PARTITIONS_VARIABLE)
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(2)
}
const PARTITIONS_VARIABLE: &str = "SLA_BENCH_PARTITIONS";
const WINDOW_MS: i64 = 10_000;
/// How often a file or process is checked for completion.
const FILE_POLL: Duration = Duration::from_millis(20);
/// How often Elasticsearch is asked how many window documents a search finds (a `_count`, no
/// refresh of its own: the monitor's documents are searchable once written, `--es-refresh`);
/// as often as a file or process is checked, so that no run is measured more coarsely.
const ES_POLL: Duration = FILE_POLL;

fn main() {
    if let Ok(role) = std::env::var("SLA_BENCH_ROLE") {
        let args: Vec<String> = std::env::args().collect();
        match role.as_str() {
            "bare-consumer" => bare_consumer(&args[1], &args[2], args[3].parse().unwrap()),
            "bare-pipe" => bare_pipe(&args[1], &args[2], &args[3], args[4].parse().unwrap()),
            other => panic!("unknown role {other}"),
        }
        return;
    }
    // `cargo test --all-targets` runs benchmarks too, without `--bench`: minutes of load are
    // not a test, so only `cargo bench` measures.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "pipeline: run with `cargo bench --bench pipeline`; nothing measured under cargo test"
        );
        return;
    }
    let args = Args::parse();
    // SAFETY: no other thread runs yet.
    unsafe { std::env::set_var(PARTITIONS_VARIABLE, args.partitions.to_string()) };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    println!("private tansu (memory storage) on {}", broker.address);

    let reduced = unique("bench_reduced");
    let windows = produce_reduced(
        &broker.address,
        &reduced,
        args.records,
        args.per_window,
        Carries::Plain,
    );
    let stamped = unique("bench_stamped");
    if args.only.iter().any(|o| o == "stamps") {
        produce_reduced(
            &broker.address,
            &stamped,
            args.records,
            args.per_window,
            Carries::HeaderStamp,
        );
    }
    let (source, in_order, reordered) = (
        unique("bench_source"),
        unique("bench_lineage"),
        unique("bench_reordered"),
    );
    if args.only.iter().any(|o| o == "completeness") {
        produce_source(&broker.address, &source, args.records, args.per_window);
        for (topic, reorder) in [(&in_order, false), (&reordered, true)] {
            produce_reduced(
                &broker.address,
                topic,
                args.records,
                args.per_window,
                Carries::Lineage {
                    source: &source,
                    reorder,
                },
            );
        }
    }
    let (ten_tenants, many_tenants) = (unique("bench_tenants10"), unique("bench_tenants100k"));
    if args.only.iter().any(|o| o == "dimensions") {
        for (topic, distinct) in [(&ten_tenants, 10), (&many_tenants, 100_000)] {
            produce_reduced(
                &broker.address,
                topic,
                args.records,
                args.per_window,
                Carries::Tenants { distinct },
            );
        }
    }
    let visits = unique("bench_visits");
    produce_visits(&broker.address, &visits, args.records);
    println!(
        "produced {} reduced visits ({windows} windows) and {} visits",
        args.records, args.records
    );

    let key_file = dir.path().join("internal.key");
    std::fs::write(
        &key_file,
        "0123456789abcdef0123456789abcdef0123456789abcdef",
    )
    .unwrap();
    let mut results: BTreeMap<&str, Vec<Run>> = BTreeMap::new();
    for round in 1..=args.rounds {
        let b = &broker.address;
        let mut r = Vec::new();
        if args.only.iter().any(|o| o == "monitor") {
            r.push((
                "bare consumer",
                run_bare_consumer(b, &reduced, args.records),
            ));
            r.push((
                "monitor → JSON lines",
                run_monitor_json(b, &reduced, windows, dir.path()),
            ));
            // Authenticated internal records (HMAC-SHA256 per part, progress and checkpoint).
            r.push((
                "monitor, internal key → JSON lines",
                run_monitor_json_with(
                    b,
                    &reduced,
                    windows,
                    dir.path(),
                    &["--internal-key-file", key_file.to_str().unwrap()],
                ),
            ));
            r.push((
                "2 monitor instances → JSON lines",
                run_monitor_pair_json(b, &reduced, args.records, windows, dir.path()),
            ));
            r.push((
                "monitor → Elasticsearch",
                runtime.block_on(run_monitor_es(b, &reduced, windows, &args.es_url)),
            ));
        }
        if args.only.iter().any(|o| o == "stamps") {
            r.push((
                "bare consumer (header-stamped)",
                run_bare_consumer(b, &stamped, args.records),
            ));
            r.push((
                "monitor, header stamp → JSON lines",
                run_monitor_json_with(b, &stamped, windows, dir.path(), HEADER_STAMP),
            ));
        }
        if args.only.iter().any(|o| o == "completeness") {
            let reconciling = ["--source-topic", source.as_str(), "--lost-after", "10m"];
            r.push((
                "bare consumer (lineage)",
                run_bare_consumer(b, &in_order, args.records),
            ));
            r.push((
                "monitor, lineage → JSON lines",
                run_monitor_json_with(b, &in_order, windows, dir.path(), &[]),
            ));
            r.push((
                "monitor --source-topic → JSON lines",
                run_monitor_json_with(b, &in_order, windows, dir.path(), &reconciling),
            ));
            r.push((
                "monitor --source-topic, reordered",
                run_monitor_json_with(b, &reordered, windows, dir.path(), &reconciling),
            ));
        }
        if args.only.iter().any(|o| o == "dimensions") {
            let split = ["--dimension", "tenant=field:/tenant"];
            r.push((
                "bare consumer (tenants)",
                run_bare_consumer(b, &ten_tenants, args.records),
            ));
            r.push((
                "monitor, no dimension (tenants)",
                run_monitor_json_with(b, &ten_tenants, windows, dir.path(), &[]),
            ));
            r.push((
                "monitor --dimension, 10 values",
                run_monitor_json_with(b, &ten_tenants, windows, dir.path(), &split),
            ));
            r.push((
                "bare consumer (100k tenants)",
                run_bare_consumer(b, &many_tenants, args.records),
            ));
            r.push((
                "monitor --dimension, 100k values",
                run_monitor_json_with(b, &many_tenants, windows, dir.path(), &split),
            ));
        }
        if args.only.iter().any(|o| o == "synchronizer") {
            r.push((
                "bare consume → produce",
                run_bare_pipe(b, &visits, args.records),
            ));
            r.push(("synchronizer", run_synchronizer(b, &visits, args.records)));
        }
        for (name, run) in r {
            println!(
                "round {round}: {name:<32} {:>10.0} records/s  {:>5.2} CPU s per million  peak RSS {:>6.1} MB",
                args.records as f64 / run.seconds,
                run.cpu_seconds * 1e6 / args.records as f64,
                run.peak_rss_mb
            );
            results.entry(name).or_default().push(run);
        }
    }
    if args.rounds > 0 {
        print_table(&args, &results);
    }

    let flat: Vec<u64> = args.flat.iter().copied().filter(|&n| n > 0).collect();
    if !flat.is_empty() {
        println!("\n| records | monitor peak RSS (MB) | records/s |\n|---:|---:|---:|");
        for n in flat {
            let topic = unique("bench_flat");
            let windows =
                produce_reduced(&broker.address, &topic, n, args.per_window, Carries::Plain);
            let run = run_monitor_json(&broker.address, &topic, windows, dir.path());
            println!(
                "| {n} | {:.1} | {:.0} |",
                run.peak_rss_mb,
                n as f64 / run.seconds
            );
        }
    }
    if args.fresh_seconds > 0 {
        let topic = unique("bench_fresh");
        create_topic(&broker.address, &topic);
        runtime.block_on(freshness(
            &broker.address,
            &topic,
            &args.es_url,
            args.fresh_seconds,
        ));
    }
}

/// One measured process.
#[derive(Debug, Clone, Copy)]
struct Run {
    seconds: f64,
    peak_rss_mb: f64,
    /// User + system CPU seconds the process(es) used until done.
    cpu_seconds: f64,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn print_table(args: &Args, results: &BTreeMap<&str, Vec<Run>>) {
    let median_of = |name: &str, f: &dyn Fn(&Run) -> f64| {
        median(&mut results[name].iter().map(f).collect::<Vec<_>>())
    };
    let rate = |name: &str| median_of(name, &|r| args.records as f64 / r.seconds);
    let cpu = |name: &str| median_of(name, &|r| r.cpu_seconds * 1e6 / args.records as f64);
    let rss = |name: &str| {
        results[name]
            .iter()
            .map(|r| r.peak_rss_mb)
            .fold(0.0, f64::max)
    };
    println!(
        "\n{} records, {} per window, {} partitions, {} rounds (medians; highest peak RSS):\n",
        args.records, args.per_window, args.partitions, args.rounds
    );
    println!(
        "| run | records/s | ratio | CPU s per million records | CPU ratio | peak RSS (MB) |\n|---|---:|---:|---:|---:|---:|"
    );
    for (name, baseline) in [
        ("bare consumer", "bare consumer"),
        ("monitor → JSON lines", "bare consumer"),
        ("monitor, internal key → JSON lines", "bare consumer"),
        ("2 monitor instances → JSON lines", "monitor → JSON lines"),
        ("monitor → Elasticsearch", "bare consumer"),
        (
            "bare consumer (header-stamped)",
            "bare consumer (header-stamped)",
        ),
        (
            "monitor, header stamp → JSON lines",
            "bare consumer (header-stamped)",
        ),
        ("bare consumer (lineage)", "bare consumer (lineage)"),
        ("monitor, lineage → JSON lines", "bare consumer (lineage)"),
        (
            "monitor --source-topic → JSON lines",
            "bare consumer (lineage)",
        ),
        (
            "monitor --source-topic, reordered",
            "bare consumer (lineage)",
        ),
        ("bare consumer (tenants)", "bare consumer (tenants)"),
        ("monitor, no dimension (tenants)", "bare consumer (tenants)"),
        ("monitor --dimension, 10 values", "bare consumer (tenants)"),
        (
            "bare consumer (100k tenants)",
            "bare consumer (100k tenants)",
        ),
        (
            "monitor --dimension, 100k values",
            "bare consumer (100k tenants)",
        ),
        ("bare consume → produce", "bare consume → produce"),
        ("synchronizer", "bare consume → produce"),
    ] {
        if !results.contains_key(name) {
            continue;
        }
        println!(
            "| {name} | {:.0} | {:.2} × {baseline} | {:.2} | {:.2} × {baseline} | {:.1} |",
            rate(name),
            rate(name) / rate(baseline),
            cpu(name),
            cpu(name) / cpu(baseline),
            rss(name)
        );
    }
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}_{}", nanos % 1_000_000_000_000)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The jobs' own Kafka settings, as `KafkaArgs` builds them for `brokers`.
fn kafka_args(brokers: &str) -> KafkaArgs {
    #[derive(Parser)]
    struct Only {
        #[command(flatten)]
        kafka: KafkaArgs,
    }
    Only::parse_from(["bench", "--brokers", brokers]).kafka
}

/// A private tansu with in-memory storage, stopped on drop.
struct Broker {
    address: String,
    child: Child,
}

impl Broker {
    fn start(dir: &Path) -> Broker {
        let stack = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/stack.sh");
        let bin = Command::new(stack).args(["bin", "kafka"]).output().unwrap();
        let bin = String::from_utf8(bin.stdout).unwrap().trim().to_string();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let url = format!("tcp://{address}");
        let child = Command::new(&bin)
            .current_dir(dir)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/", "--silent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin} (scripts/stack.sh up kafka): {e}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&address).is_err() {
            assert!(Instant::now() < deadline, "tansu did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker { address, child }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn create_topic(brokers: &str, topic: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = runtime
        .block_on(admin.create_topics(
            &[NewTopic::new(
                topic,
                partitions(),
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new(),
        ))
        .unwrap();
    for r in results {
        r.unwrap();
    }
}

/// Counts acknowledged deliveries; fails the benchmark on a failed one.
struct Acks(Arc<AtomicU64>);

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            panic!("delivery failed: {e}");
        }
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn producer(config: ClientConfig) -> (ThreadedProducer<Acks>, Arc<AtomicU64>) {
    let acked = Arc::new(AtomicU64::new(0));
    let producer = config.create_with_context(Acks(acked.clone())).unwrap();
    (producer, acked)
}

/// Sends, waiting while librdkafka's queue is full.
fn send(producer: &ThreadedProducer<Acks>, mut record: BaseRecord<'_, [u8], [u8]>) {
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => panic!("producing: {e}"),
        }
    }
}

fn wait_acked(producer: &ThreadedProducer<Acks>, acked: &AtomicU64, n: u64) {
    producer.flush(Duration::from_secs(300)).unwrap();
    assert_eq!(acked.load(Ordering::Relaxed), n);
}

/// A log-normal latency (median 200 ms, σ 1), Box–Muller.
fn latency(rng: &mut StdRng) -> i64 {
    let (u1, u2): (f64, f64) = (rng.random_range(f64::EPSILON..1.0), rng.random());
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    (200.0 * z.exp()) as i64
}

/// Produces `n` reduced visits, `per_window` per 10 s event-time window ending well before
/// now, plus one record per partition far after the last window so that every window can
/// close. Returns the number of windows.
/// The monitor's flags for records stamped in a header (see `produce_reduced`).
const HEADER_STAMP: &[&str] = &["--start-time", "header:processed_at"];

/// Produces `n` reduced visits over windows of `per_window` records (plus one record per
/// partition in a later window, so every window closes); with `header_stamped`, each value is
/// instead opaque bytes of the same length and the start stamp is an 8-byte big-endian header.
/// What the reduced records carry besides their value.
#[derive(Clone, Copy)]
enum Carries<'a> {
    /// Nothing: the start stamp is in the value.
    Plain,
    /// A binary payload, the start stamp in an 8-byte header.
    HeaderStamp,
    /// A lineage header naming record `i / partitions` of `source`'s partition `i % partitions`
    /// (see [`produce_source`]); with `reorder`, the offsets of each block of 64 reversed.
    Lineage { source: &'a str, reorder: bool },
    /// A `tenant` member in the value: record `i`'s is `t{i % distinct}`.
    Tenants { distinct: u64 },
}

/// The first event time of `n` records in windows of `per_window`: far enough back that every
/// window is complete.
fn base_of(n: u64, per_window: u64) -> i64 {
    let windows = n.div_ceil(per_window);
    (now_ms() - (windows as i64 + 10) * WINDOW_MS) / WINDOW_MS * WINDOW_MS
}

/// When source record `i` entered the source: 100 ms before its reduced record's event time
/// (within the SLA).
fn source_time(base: i64, i: u64, per_window: u64) -> i64 {
    base + (i as i64 * WINDOW_MS) / per_window as i64 - 100
}

/// Producer settings for loading a topic fast (large batches, a deep queue).
fn bulk_loading(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000");
    config
}

/// Produces the `n` source records the lineage of [`Carries::Lineage`] names: record `i` at
/// offset `i / partitions` of partition `i % partitions`, stamped [`source_time`].
fn produce_source(brokers: &str, topic: &str, n: u64, per_window: u64) {
    create_topic(brokers, topic);
    let base = base_of(n, per_window);
    let (producer, acked) = producer(bulk_loading(brokers));
    for i in 0..n {
        let partition = (i % partitions() as u64) as i32;
        let record = BaseRecord::<[u8], [u8]>::to(topic)
            .partition(partition)
            .payload(&b"x"[..])
            .timestamp(source_time(base, i, per_window));
        send(&producer, record);
    }
    wait_acked(&producer, &acked, n);
}

fn produce_reduced(
    brokers: &str,
    topic: &str,
    n: u64,
    per_window: u64,
    carries: Carries<'_>,
) -> u64 {
    create_topic(brokers, topic);
    let windows = n.div_ceil(per_window);
    let base = base_of(n, per_window);
    let (producer, acked) = producer(bulk_loading(brokers));
    let mut rng = StdRng::seed_from_u64(7);
    let sent = n + partitions() as u64;
    for i in 0..sent {
        let partition = (i % partitions() as u64) as i32;
        let event_time = if i < n {
            base + (i as i64 * WINDOW_MS) / per_window as i64
        } else {
            base + (windows as i64 + 2) * WINDOW_MS
        };
        let value = match carries {
            Carries::Tenants { distinct } => format!(
                r#"{{"visit":{{"id":"v-{i}","event_time":{}}},"start_processing_time_ms":{},"tenant":"t{}"}}"#,
                event_time / 1000,
                event_time - latency(&mut rng),
                i % distinct
            ),
            _ => format!(
                r#"{{"visit":{{"id":"v-{i}","event_time":{}}},"start_processing_time_ms":{}}}"#,
                event_time / 1000,
                event_time - latency(&mut rng)
            ),
        };
        let key = format!("v-{i}");
        let record = BaseRecord::to(topic)
            .partition(partition)
            .key(key.as_bytes())
            .timestamp(event_time);
        if let (Carries::Lineage { source, reorder }, true) = (carries, i < n) {
            let p = partitions() as u64;
            let offset = i / p;
            // Reversed within whole blocks of 64 (a last partial block stays in order).
            let block_full = (offset / 64 * 64 + 63) * p + i % p < n;
            let named = if reorder && block_full {
                offset / 64 * 64 + 63 - offset % 64
            } else {
                offset
            };
            let lineage = format!(
                "{source}:{partition}:{named}:{}",
                source_time(base, named * p + i % p, per_window)
            );
            let headers = OwnedHeaders::new().insert(Header {
                key: "lineage",
                value: Some(lineage.as_bytes()),
            });
            send(&producer, record.payload(value.as_bytes()).headers(headers));
        } else if matches!(carries, Carries::HeaderStamp) {
            let start = event_time - latency(&mut rng);
            let opaque: Vec<u8> = value.bytes().map(|b| b ^ 0xa5).collect();
            let headers = OwnedHeaders::new().insert(Header {
                key: "processed_at",
                value: Some(&start.to_be_bytes()[..]),
            });
            send(&producer, record.payload(&opaque[..]).headers(headers));
        } else {
            send(&producer, record.payload(value.as_bytes()));
        }
    }
    wait_acked(&producer, &acked, sent);
    windows
}

/// Produces `n` valid visits as the generator makes them.
fn produce_visits(brokers: &str, topic: &str, n: u64) {
    create_topic(brokers, topic);
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000");
    let (producer, acked) = producer(config);
    let mut generator = VisitGenerator::new(42, RecordMix::default());
    for _ in 0..n {
        let record = generator.next_record(chrono::Utc::now());
        let mut base = BaseRecord::to(topic).payload(record.value.as_slice());
        if let Some(key) = &record.key {
            base = base.key(key.as_bytes());
        }
        send(&producer, base);
    }
    wait_acked(&producer, &acked, n);
}

/// The peak resident set of process `pid` so far (kB), from `/proc/PID/status` (VmHWM). Not
/// `wait4`'s `ru_maxrss`: that one starts from the parent's peak, which a child spawned with
/// vfork inherits when it execs.
fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
}

/// Prints this process's peak resident set and CPU time for [`measure`] (roles that exit by
/// themselves), then exits without closing its Kafka clients: a job is measured until its
/// work is done, not until it has closed its clients (~0.1–0.2 s), so neither is this.
fn report_and_exit() -> ! {
    println!(
        "peak_rss_kb={}",
        peak_rss_kb(std::process::id()).unwrap_or(0)
    );
    println!(
        "cpu_seconds={}",
        cpu_seconds(std::process::id()).unwrap_or(0.0)
    );
    std::process::exit(0)
}

/// User + system CPU seconds process `pid` used so far (`/proc/PID/stat`).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) ends with ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / per_second)
}

/// Runs `command` until `done` holds (checked every `every`) or it exits by itself; then
/// stops it with SIGTERM and returns the time from spawn to done and its peak RSS.
fn measure(mut command: Command, every: Duration, mut done: impl FnMut() -> bool) -> Run {
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let log = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let mut peak_kb = 0;
    let cpu;
    let seconds = loop {
        if let Some(status) = child.try_wait().unwrap() {
            let seconds = started.elapsed().as_secs_f64();
            let log = log.join().unwrap();
            assert!(status.success(), "{command:?} failed:\n{log}");
            let reported = out.join().unwrap();
            let value = |name: &str| {
                reported
                    .lines()
                    .find_map(|line| line.strip_prefix(name))
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or_else(|| panic!("{command:?} did not report {name}"))
            };
            peak_kb = value("peak_rss_kb=") as u64;
            cpu = value("cpu_seconds=");
            break seconds;
        }
        if let Some(kb) = peak_rss_kb(pid) {
            peak_kb = kb;
        }
        if done() {
            let seconds = started.elapsed().as_secs_f64();
            if let Some(kb) = peak_rss_kb(pid) {
                peak_kb = kb;
            }
            cpu = cpu_seconds(pid).unwrap_or(0.0);
            // SAFETY: signals our own child, which has not been reaped yet.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            child.wait().unwrap();
            break seconds;
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "{command:?} did not finish in 15 minutes"
        );
        std::thread::sleep(every);
    };
    Run {
        seconds,
        peak_rss_mb: peak_kb as f64 / 1024.0,
        cpu_seconds: cpu,
    }
}

fn this_bench(role: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.env("SLA_BENCH_ROLE", role);
    command
}

fn job(binary: &str) -> Command {
    job_at(binary, "127.0.0.1:0")
}

/// A job serving /metrics on `http_addr`.
fn job_at(binary: &str, http_addr: &str) -> Command {
    let mut command = Command::new(binary);
    command
        .args(["--http-addr", http_addr])
        .env("RUST_LOG", "warn");
    command
}

/// A port free right now on 127.0.0.1 (for a job's /metrics the benchmark reads).
fn free_local_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// The sum of the samples of metric `name` per value of its `kind` label, read from the
/// Prometheus text of `http://{addr}/metrics`.
fn metric_by_kind(addr: &str, name: &str) -> BTreeMap<String, f64> {
    use std::io::{Read, Write};
    let mut text = String::new();
    if let Ok(mut stream) = std::net::TcpStream::connect(addr) {
        let _ = write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        let _ = stream.read_to_string(&mut text);
    }
    let mut found = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with(name)) {
        let (series, value) = line.rsplit_once(' ').unwrap_or((line, "0"));
        let kind = series
            .split("kind=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("")
            .to_string();
        *found.entry(kind).or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
    }
    found
}

fn run_bare_consumer(brokers: &str, topic: &str, n: u64) -> Run {
    let mut command = this_bench("bare-consumer");
    command.args([brokers, topic, &(n + partitions() as u64).to_string()]);
    measure(command, FILE_POLL, || false)
}

fn run_bare_pipe(brokers: &str, topic: &str, n: u64) -> Run {
    let mut command = this_bench("bare-pipe");
    command.args([brokers, topic, &unique("bench_pipe_out"), &n.to_string()]);
    measure(command, FILE_POLL, || false)
}

fn monitor(brokers: &str, topic: &str) -> Command {
    monitor_of(brokers, topic, &unique("bench_monitor"))
}

/// A monitor instance of the monitor `name` (its group, checkpoint and shuffle topics).
fn monitor_of(brokers: &str, topic: &str, name: &str) -> Command {
    monitor_at(brokers, topic, name, "127.0.0.1:0")
}

fn monitor_at(brokers: &str, topic: &str, name: &str, http_addr: &str) -> Command {
    let mut command = job_at(env!("CARGO_BIN_EXE_monitor"), http_addr);
    #[rustfmt::skip]
    command.args([
        "--brokers", brokers, "--reduced-topic", topic,
        "--dead-letter-topic", &format!("{name}_dlq"), "--checkpoint-topic", &format!("{name}_ckpt"),
        "--shuffle-topic", &format!("{name}_shuffle"), "--group", name, "--window", "10s",
        "--idle-timeout", "1h",
    ]);
    command
}

/// The monitor to JSON lines until every window is written; then prints what the shuffle
/// carried per window (records and bytes by kind, from the monitor's /metrics).
fn run_monitor_json(brokers: &str, topic: &str, windows: u64, dir: &Path) -> Run {
    run_monitor_json_with(brokers, topic, windows, dir, &[])
}

/// As [`run_monitor_json`], with `extra` flags for the monitor.
fn run_monitor_json_with(
    brokers: &str,
    topic: &str,
    windows: u64,
    dir: &Path,
    extra: &[&str],
) -> Run {
    let output: PathBuf = dir.join(format!("{}.jsonl", unique("windows")));
    let addr = free_local_addr();
    let mut command = monitor_at(brokers, topic, &unique("bench_monitor"), &addr);
    command.args(["--sink", "json-lines", "--output", output.to_str().unwrap()]);
    command.args(extra);
    let path = output.clone();
    let mut traffic = None;
    let split = extra.contains(&"--dimension");
    let run = measure(command, FILE_POLL, || {
        // Window documents (completeness documents, with --source-topic, have no count). With
        // --dimension, a window is done once its value documents are written (after its own).
        let done = std::fs::read_to_string(&path)
            .map(|text| {
                if split {
                    text.lines()
                        .filter(|l| l.contains("\"dimensions\":"))
                        .filter_map(|l| {
                            let start = l.split("\"window_start_ms\":").nth(1)?;
                            Some(start.split([',', '}']).next()?.to_string())
                        })
                        .collect::<std::collections::BTreeSet<_>>()
                        .len() as u64
                        >= windows
                } else {
                    text.lines().filter(|l| l.contains("\"count\":")).count() as u64 >= windows
                }
            })
            .unwrap_or(false);
        if done {
            traffic = Some((
                metric_by_kind(&addr, "sla_monitor_shuffle_records_published_total"),
                metric_by_kind(&addr, "sla_monitor_shuffle_bytes_published_total"),
            ));
        }
        done
    });
    if let Some((records, bytes)) = traffic {
        let per_window = |m: &BTreeMap<String, f64>| {
            m.iter()
                .map(|(kind, v)| format!("{kind} {:.0}", v / windows as f64))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "  shuffle per window ({} partitions): records {} (total {:.0}); bytes {} (total {:.0})",
            partitions(),
            per_window(&records),
            records.values().sum::<f64>() / windows as f64,
            per_window(&bytes),
            bytes.values().sum::<f64>() / windows as f64,
        );
    }
    run
}

/// Distinct window ids in JSON-lines files.
fn distinct_windows(paths: &[PathBuf]) -> u64 {
    let mut ids = std::collections::BTreeSet::new();
    for path in paths {
        for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
            if let Some(id) = serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|d| d["id"].as_str().map(str::to_string))
            {
                ids.insert(id);
            }
        }
    }
    ids.len() as u64
}

/// Two instances of one monitor (same group) over the topic, each writing the windows it
/// merges to its own file: from the first start until every window is written; the peak RSS
/// is the higher of the two. Prints how many records the two read in all (a partition moved
/// from one to the other is read again from its oldest open window).
fn run_monitor_pair_json(
    brokers: &str,
    topic: &str,
    records: u64,
    windows: u64,
    dir: &Path,
) -> Run {
    let name = unique("bench_pair");
    let outputs: Vec<PathBuf> = (0..2)
        .map(|_| dir.join(format!("{}.jsonl", unique("pair"))))
        .collect();
    let addrs: Vec<String> = (0..2).map(|_| free_local_addr()).collect();
    let with_output = |i: usize| {
        let mut command = monitor_at(brokers, topic, &name, &addrs[i]);
        command.args([
            "--sink",
            "json-lines",
            "--output",
            outputs[i].to_str().unwrap(),
        ]);
        command
    };
    let mut second = with_output(1)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let second_pid = second.id();
    let mut second_peak_kb = 0;
    let mut second_cpu = 0.0;
    let mut read = 0.0;
    let paths = outputs.clone();
    let mut run = measure(with_output(0), FILE_POLL, || {
        if let Some(kb) = peak_rss_kb(second_pid) {
            second_peak_kb = kb;
        }
        second_cpu = cpu_seconds(second_pid).unwrap_or(second_cpu);
        let done = distinct_windows(&paths) >= windows;
        if done {
            read = addrs
                .iter()
                .map(|addr| {
                    metric_by_kind(addr, "sla_records_consumed_total")
                        .values()
                        .sum::<f64>()
                })
                .sum();
        }
        done
    });
    run.cpu_seconds += second_cpu;
    // Each partition also holds the record that closes its last window.
    let total = (records + partitions() as u64) as f64;
    println!(
        "  2 instances read {read:.0} records in all ({:.2} × the topic's)",
        read / total
    );
    // SAFETY: signals our own child, which has not been reaped yet.
    unsafe { libc::kill(second_pid as libc::pid_t, libc::SIGTERM) };
    second.wait().unwrap();
    run.peak_rss_mb = run.peak_rss_mb.max(second_peak_kb as f64 / 1024.0);
    run
}

async fn es_count(client: &reqwest::Client, es: &str, index: &str) -> u64 {
    match client.get(format!("{es}/{index}/_count")).send().await {
        Ok(response) => response
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|v| v["count"].as_u64())
            .unwrap_or(0),
        Err(_) => 0,
    }
}

async fn run_monitor_es(brokers: &str, topic: &str, windows: u64, es: &str) -> Run {
    let index = unique("sla_bench");
    let mut command = monitor(brokers, topic);
    command.args(["--es-url", es, "--es-index", &index]);
    let client = reqwest::Client::new();
    let handle = tokio::runtime::Handle::current();
    let (es2, index2, client2) = (es.to_string(), index.clone(), client.clone());
    let run = tokio::task::spawn_blocking(move || {
        measure(command, ES_POLL, move || {
            handle.block_on(es_count(&client2, &es2, &index2)) >= windows
        })
    })
    .await
    .unwrap();
    let _ = client.delete(format!("{es}/{index}")).send().await;
    run
}

fn run_synchronizer(brokers: &str, topic: &str, n: u64) -> Run {
    let group = unique("bench_sync");
    let mut command = job(env!("CARGO_BIN_EXE_synchronizer"));
    #[rustfmt::skip]
    command.args([
        "--brokers", brokers, "--visits-topic", topic, "--reduced-topic", &unique("bench_sync_out"),
        "--dead-letter-topic", &unique("bench_sync_dlq"), "--group", &group,
        "--commit-interval", "100ms",
    ]);
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut wanted = TopicPartitionList::new();
    for p in 0..partitions() {
        wanted.add_partition(topic, p);
    }
    measure(command, Duration::from_millis(100), move || {
        let committed = match reader.committed_offsets(wanted.clone(), Duration::from_secs(5)) {
            Ok(c) => c,
            Err(_) => return false,
        };
        let total: i64 = committed
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            })
            .sum();
        total as u64 >= n
    })
}

/// The bare consumer: the jobs' consumer settings, every partition from the start, each
/// payload touched, until `n` records.
fn bare_consumer(brokers: &str, topic: &str, n: u64) {
    let consumer: BaseConsumer = kafka_args(brokers)
        .consumer_config(&unique("bench_bare"))
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions() {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    // The topic's leaders known before assigning: assigned earlier, librdkafka finds no
    // leader for the start offsets' look-up and retries half a second later, a delay no
    // group member has (its assignment arrives after the metadata).
    consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let (mut count, mut bytes) = (0u64, 0usize);
    while count < n {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            bytes += message.payload().map_or(0, <[u8]>::len);
            count += 1;
        }
    }
    assert!(bytes > 0);
    report_and_exit();
}

/// The bare consume → produce loop: the synchronizer's consumer and producer settings and group
/// subscription, each record copied unchanged, until `n` are acknowledged.
fn bare_pipe(brokers: &str, input: &str, output: &str, n: u64) {
    let kafka = kafka_args(brokers);
    create_topic(brokers, output);
    // Like the synchronizer, a member of a consumer group (which costs a group join at start).
    let consumer: BaseConsumer = kafka
        .consumer_config(&unique("bench_pipe"))
        .create()
        .unwrap();
    consumer.subscribe(&[input]).unwrap();
    let (producer, acked) = producer(kafka.producer_config(RELIABLE_PRODUCER));
    let mut count = 0u64;
    while count < n {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            let mut record = BaseRecord::to(output).partition(message.partition());
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            if let Some(payload) = message.payload() {
                record = record.payload(payload);
            }
            send(&producer, record);
            count += 1;
        }
    }
    wait_acked(&producer, &acked, n);
    report_and_exit();
}

/// Live records into 1 s windows; for each window, the time from when it can close (end +
/// out-of-orderness) to its document being searchable.
async fn freshness(brokers: &str, topic: &str, es: &str, seconds: u64) {
    let index = unique("sla_bench_fresh");
    let ooo_ms = 200;
    let mut command = job(env!("CARGO_BIN_EXE_monitor"));
    #[rustfmt::skip]
    command.args([
        "--brokers", brokers, "--reduced-topic", topic,
        "--dead-letter-topic", &unique("bench_dlq"), "--checkpoint-topic", &unique("bench_ckpt"), "--shuffle-topic", &unique("bench_shuffle"),
        "--group", &unique("bench_fresh"), "--window", "1s", "--max-out-of-orderness", "200ms",
        "--idle-timeout", "5s", "--max-producer-hold", "0s", "--es-url", es, "--es-index", &index,
    ]);
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let producing: std::thread::JoinHandle<i64> = {
        let (brokers, topic) = (brokers.to_string(), topic.to_string());
        std::thread::spawn(move || {
            let mut config = ClientConfig::new();
            config
                .set("bootstrap.servers", &brokers)
                .set("linger.ms", "5");
            let (producer, acked) = producer(config);
            let started = Instant::now();
            let mut rng = StdRng::seed_from_u64(3);
            let mut sent = 0u64;
            while started.elapsed() < Duration::from_secs(seconds) {
                for partition in 0..partitions() {
                    let value = format!(
                        r#"{{"visit":{{"id":"f-{sent}","event_time":0}},"start_processing_time_ms":{}}}"#,
                        now_ms() - latency(&mut rng)
                    );
                    send(
                        &producer,
                        BaseRecord::to(&topic)
                            .partition(partition)
                            .payload(value.as_bytes()),
                    );
                    sent += 1;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let stopped = now_ms();
            wait_acked(&producer, &acked, sent);
            stopped
        })
    };
    let client = reqwest::Client::new();
    let mut first_seen: BTreeMap<i64, i64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(seconds + 10);
    while Instant::now() < deadline {
        let body = serde_json::json!({"size": 1000, "_source": ["window_start_ms"], "query": {"match_all": {}}});
        if let Ok(response) = client
            .post(format!("{es}/{index}/_search"))
            .json(&body)
            .send()
            .await
        {
            if let Ok(value) = response.json::<serde_json::Value>().await {
                let now = now_ms();
                for hit in value["hits"]["hits"].as_array().into_iter().flatten() {
                    if let Some(start) = hit["_source"]["window_start_ms"].as_i64() {
                        first_seen.entry(start).or_insert(now);
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stopped = producing.join().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let _ = client.delete(format!("{es}/{index}")).send().await;
    // The first window is partial (the monitor started in it); windows whose end plus the
    // out-of-orderness lies after the last record can only close by idleness.
    let mut lags: Vec<f64> = first_seen
        .iter()
        .skip(1)
        .filter(|(start, _)| *start + 1_000 + ooo_ms < stopped)
        .map(|(start, seen)| (seen - (start + 1_000 + ooo_ms)) as f64 / 1000.0)
        .collect();
    assert!(lags.len() >= 5, "too few windows seen: {first_seen:?}");
    println!("freshness per window (s): {lags:.2?}");
    lags.sort_by(f64::total_cmp);
    let p = |q: f64| lags[((lags.len() - 1) as f64 * q).round() as usize];
    println!(
        "\nfreshness over {} one-second windows (window can close → searchable): p50 {:.2} s, p99 {:.2} s, max {:.2} s",
        lags.len(),
        p(0.5),
        p(0.99),
        lags[lags.len() - 1]
    );
}
