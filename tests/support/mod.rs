//! Helpers shared by the integration tests: every test talks to the real broker started by
//! `scripts/stack.sh` and runs the real job binaries. Each test uses its own topic names and
//! groups, so tests never interfere and never delete topics.
#![allow(dead_code)]

pub mod bugsink;
pub mod in_process;
pub mod private_broker;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Runs blocking test code (polling with sleeps, a synchronous Kafka client, waiting for a
/// process) without stalling the async test's own tasks (proxies, receivers): inside the
/// multi-threaded runtime every async test uses, the worker first hands its tasks to another.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            assert_eq!(
                handle.runtime_flavor(),
                tokio::runtime::RuntimeFlavor::MultiThread,
                "async tests run with #[tokio::test(flavor = \"multi_thread\")] so that blocking helpers do not stall them"
            );
            tokio::task::block_in_place(f)
        }
        Err(_) => f(),
    }
}

/// The broker under test (`SLA_TEST_BROKERS`, default the local stack's).
pub fn brokers() -> String {
    std::env::var("SLA_TEST_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_string())
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000_000
    )
}

/// Unix time now in ms.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A Kafka cluster a test talks to: its bootstrap servers and the client properties it needs
/// (TLS, SASL). The free functions below use the local stack's broker.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub brokers: String,
    pub properties: Vec<(String, String)>,
}

impl Cluster {
    /// The broker under test, without security.
    pub fn local() -> Cluster {
        Cluster {
            brokers: brokers(),
            properties: Vec::new(),
        }
    }

    /// Client settings for this cluster.
    pub fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (key, value) in &self.properties {
            c.set(key, value);
        }
        c
    }
}

/// Creates a topic (fails the test if the broker is unreachable).
pub async fn create_topic(name: &str, partitions: i32) {
    Cluster::local().create_topic(name, partitions).await
}

/// Produces records in order and waits for every acknowledgement.
pub async fn produce(topic: &str, records: &[Outgoing]) {
    Cluster::local().produce(topic, records).await
}

/// Every record in a topic now: each partition read from its first offset to its high
/// watermark at the call. Fails the test with each partition's progress and the errors seen
/// when a partition does not reach its end within 90 s (never returns a short read).
pub fn consume_to_end(topic: &str) -> Vec<Consumed> {
    Cluster::local().consume_to_end(topic)
}

/// Reads a topic from the beginning until `expected` records arrived (or `timeout`), then
/// keeps reading for `settle` to catch unexpected extra records.
pub fn consume(topic: &str, expected: usize, timeout: Duration, settle: Duration) -> Vec<Consumed> {
    Cluster::local().consume(topic, expected, timeout, settle)
}

impl Cluster {
    /// Creates a topic (fails the test if the broker is unreachable).
    pub async fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().unwrap();
        let results = admin
            .create_topics(
                &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new().request_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "creating {name} on {}: {e} (is scripts/stack.sh up?)",
                    self.brokers
                )
            });
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("creating {t}: {e}"));
        }
    }

    /// Produces records in order and waits for every acknowledgement.
    pub async fn produce(&self, topic: &str, records: &[Outgoing]) {
        let producer: FutureProducer = self
            .config()
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create()
            .unwrap();
        let mut deliveries = Vec::new();
        for r in records {
            let mut record = FutureRecord::<str, [u8]>::to(topic);
            if let Some(k) = &r.key {
                record = record.key(k.as_str());
            }
            if let Some(v) = &r.value {
                record = record.payload(v.as_slice());
            }
            if let Some(p) = r.partition {
                record = record.partition(p);
            }
            if let Some(t) = r.timestamp_ms {
                record = record.timestamp(t);
            }
            deliveries.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
        }
        for d in deliveries {
            d.await.unwrap().map_err(|(e, _)| e).unwrap();
        }
    }

    /// Reads a topic from the beginning until `expected` records arrived (or `timeout`), then
    /// keeps reading for `settle` to catch unexpected extra records.
    pub fn consume(
        &self,
        topic: &str,
        expected: usize,
        timeout: Duration,
        settle: Duration,
    ) -> Vec<Consumed> {
        blocking(|| self.consume_blocking(topic, expected, timeout, settle))
    }

    fn consume_blocking(
        &self,
        topic: &str,
        expected: usize,
        timeout: Duration,
        settle: Duration,
    ) -> Vec<Consumed> {
        let consumer = self.reader();
        let deadline = Instant::now() + timeout;
        // The topic may not exist yet: the job under test creates it.
        let partitions = loop {
            let metadata = consumer
                .fetch_metadata(Some(topic), Duration::from_secs(10))
                .unwrap();
            let ids: Vec<i32> = metadata
                .topics()
                .iter()
                .filter(|t| t.name() == topic && t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            if !ids.is_empty() || Instant::now() >= deadline {
                break ids;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let mut assignment = TopicPartitionList::new();
        for p in partitions {
            assignment
                .add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&assignment).unwrap();
        let mut out = Vec::new();
        let mut settle_until: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if settle_until.is_some_and(|s| now >= s) || (settle_until.is_none() && now >= deadline)
            {
                break;
            }
            if out.len() >= expected && settle_until.is_none() {
                settle_until = Some(now + settle);
            }
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                out.push(Consumed::of(&m));
            }
        }
        out
    }

    /// See [`consume_to_end`].
    pub fn consume_to_end(&self, topic: &str) -> Vec<Consumed> {
        blocking(|| self.consume_to_end_blocking(topic, Duration::from_secs(90)))
    }

    fn consume_to_end_blocking(&self, topic: &str, timeout: Duration) -> Vec<Consumed> {
        // A reader that gets nothing for this long is replaced by a new one that goes on from
        // where it stopped (said on stderr with what it saw).
        const STALL: Duration = Duration::from_secs(15);
        let mut consumer = self.reader();
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        // Per partition: its high watermark now and the next offset still to read.
        let mut partitions: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
        for p in metadata.topics()[0].partitions() {
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .unwrap();
            partitions.insert(p.id(), (high, low));
        }
        let progress = |partitions: &BTreeMap<i32, (i64, i64)>| -> String {
            let each: Vec<String> = partitions
                .iter()
                .map(|(p, (high, next))| format!("partition {p}: next {next} of {high}"))
                .collect();
            each.join(", ")
        };
        let assign = |consumer: &BaseConsumer, partitions: &BTreeMap<i32, (i64, i64)>| {
            let mut assignment = TopicPartitionList::new();
            for (p, (high, next)) in partitions {
                if next < high {
                    assignment
                        .add_partition_offset(topic, *p, Offset::Offset(*next))
                        .unwrap();
                }
            }
            consumer.assign(&assignment).unwrap();
        };
        assign(&consumer, &partitions);
        let deadline = Instant::now() + timeout;
        let mut last_record = Instant::now();
        let mut out = Vec::new();
        let mut errors: Vec<String> = Vec::new();
        while partitions.values().any(|(high, next)| next < high) {
            let now = Instant::now();
            assert!(
                now < deadline,
                "reading {topic} to its end: {} records in {timeout:?}, {}; errors: {errors:?}",
                out.len(),
                progress(&partitions)
            );
            if now.duration_since(last_record) >= STALL {
                eprintln!(
                    "[consume_to_end] {topic}: nothing for {STALL:?} ({}; errors: {errors:?}); reading on with a new consumer",
                    progress(&partitions)
                );
                consumer = self.reader();
                assign(&consumer, &partitions);
                last_record = now;
            }
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    if let Some((high, next)) = partitions.get_mut(&m.partition()) {
                        last_record = Instant::now();
                        if m.offset() >= *next && m.offset() < *high {
                            out.push(Consumed::of(&m));
                        }
                        *next = (*next).max(m.offset() + 1);
                    }
                }
                Some(Err(e)) => errors.push(e.to_string()),
                None => {}
            }
        }
        out
    }

    /// A consumer outside any job's group that reads what it is assigned from the start
    /// (an offset out of range also resets to the start, never past records).
    fn reader(&self) -> BaseConsumer {
        self.config()
            .set("group.id", unique("reader"))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "50")
            .create()
            .unwrap()
    }
}

/// One record to produce.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    pub key: Option<String>,
    pub value: Option<Vec<u8>>,
    pub partition: Option<i32>,
    pub timestamp_ms: Option<i64>,
}

/// A consumed record, owned.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: Option<Vec<u8>>,
    pub timestamp_ms: Option<i64>,
    pub headers: BTreeMap<String, String>,
}

impl Consumed {
    /// An owned copy of a consumed message.
    fn of(m: &rdkafka::message::BorrowedMessage<'_>) -> Consumed {
        Consumed {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            value: m.payload().map(<[u8]>::to_vec),
            timestamp_ms: m.timestamp().to_millis(),
            headers: m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(self.value.as_deref().unwrap()).unwrap()
    }
}

/// A running job binary whose stderr goes to a log file.
pub struct Job {
    pub name: String,
    child: Child,
    pub log: PathBuf,
    pub stdout: PathBuf,
}

impl Job {
    /// Starts `binary` (a `CARGO_BIN_EXE_*` path) with `--brokers` and `args`.
    pub fn start(binary: &str, args: &[&str], dir: &Path) -> Job {
        let mut all = vec!["--brokers".to_string(), brokers()];
        all.extend(args.iter().map(|a| a.to_string()));
        Job::spawn(binary, &all, dir, &[])
    }

    /// As [`Job::start`], with environment variables set for the job.
    pub fn start_with_env(binary: &str, args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Job {
        let mut all = vec!["--brokers".to_string(), brokers()];
        all.extend(args.iter().map(|a| a.to_string()));
        Job::spawn(binary, &all, dir, env)
    }

    /// As [`Job::start_without_brokers`], with environment variables set for the job.
    pub fn start_without_brokers_with_env(
        binary: &str,
        args: &[&str],
        dir: &Path,
        env: &[(&str, &str)],
    ) -> Job {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        Job::spawn(binary, &args, dir, env)
    }

    /// Starts a binary that talks to no broker (e.g. `alerts`) with `args`.
    pub fn start_without_brokers(binary: &str, args: &[&str], dir: &Path) -> Job {
        Job::spawn(
            binary,
            &args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            dir,
            &[],
        )
    }

    fn spawn(binary: &str, args: &[String], dir: &Path, env: &[(&str, &str)]) -> Job {
        let name = Path::new(binary)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let log = dir.join(format!("{name}-{}.log", unique("run")));
        let stdout = log.with_extension("out");
        let child = Command::new(binary)
            .arg("--http-addr")
            .arg("127.0.0.1:0")
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Job {
            name,
            child,
            log,
            stdout,
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Sends SIGTERM and waits for the exit (at most `timeout`).
    pub fn terminate(mut self, timeout: Duration) -> ExitStatus {
        self.signal("TERM");
        self.wait(timeout)
    }

    /// Kills with SIGKILL.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Whether the process is still running (it neither exited nor was killed).
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the process to exit by itself.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        blocking(|| self.wait_blocking(timeout))
    }

    fn wait_blocking(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "{} did not exit within {timeout:?}; log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// For a generator: waits until it exits successfully (at most `timeout`) and returns
    /// the number of valid visits its report says were acknowledged.
    pub fn generated_valid(&mut self, timeout: Duration) -> u64 {
        assert!(
            self.wait(timeout).success(),
            "{} failed:\n{}",
            self.name,
            self.log_text()
        );
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&self.stdout).unwrap()).unwrap();
        report["by_kind"]["valid"].as_u64().unwrap()
    }

    /// The job's log so far (stderr).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Checks that `condition` keeps holding for all of `period`, polling every 100 ms; panics
/// with `what` as soon as it does not. For claims that something does *not* happen while a
/// stimulus lasts: the period is the stimulus, and a loaded machine can only make the check
/// weaker, never fail it wrongly.
pub fn holds_throughout(what: &str, period: Duration, mut condition: impl FnMut() -> bool) {
    blocking(|| {
        let end = Instant::now() + period;
        while Instant::now() < end {
            assert!(condition(), "{what} stopped holding");
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

/// Waits until `condition` holds, polling every 100 ms; panics with `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    blocking(|| {
        let deadline = Instant::now() + timeout;
        while !condition() {
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

/// The sum of every series of metric `name` whose labels include all of `labels` (e.g.
/// `topic="visits"`) on a job's /metrics, or `None` when the job publishes no such series
/// (or does not answer).
pub fn metric_sum(job: &Job, name: &str, labels: &[&str]) -> Option<f64> {
    let url = format!("http://{}/metrics", http_addr_of(job));
    let text = blocking(|| {
        tokio::runtime::Handle::current()
            .block_on(async { reqwest::get(&url).await.ok()?.text().await.ok() })
    })?;
    let values: Vec<f64> = text
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
                && labels.iter().all(|l| line.contains(l))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// A valid visit record value.
pub fn visit_json(id: &str, event_time_ms: i64) -> Vec<u8> {
    let t = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(event_time_ms).unwrap();
    serde_json::json!({
        "visit_id": id,
        "event_time": t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "page": "/products/42",
        "user_id": "user-1"
    })
    .to_string()
    .into_bytes()
}

/// The window documents a monitor wrote to a JSON-lines file: the last line per id, and
/// the number of lines.
pub fn read_documents(path: &Path) -> (BTreeMap<String, serde_json::Value>, usize) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut docs = BTreeMap::new();
    let mut lines = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let doc: serde_json::Value = serde_json::from_str(line).unwrap();
        docs.insert(doc["id"].as_str().unwrap().to_string(), doc);
        lines += 1;
    }
    (docs, lines)
}

/// numpy's default (linear) percentile of unsorted values; `q` in 0..=1.
pub fn exact_percentile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let h = (v.len() - 1) as f64 * q;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    v[lo] + (h - lo as f64) * (v[hi] - v[lo])
}

/// Reduced-visit record value with the given processing start stamp.
pub fn reduced_json(id: &str, start_ms: i64) -> Vec<u8> {
    serde_json::json!({"visit": {"id": id, "event_time": start_ms / 1000}, "start_processing_time_ms": start_ms})
        .to_string()
        .into_bytes()
}

/// Window length used by the tests that craft their own records (ms).
pub const WINDOW: i64 = 2_000;

/// A record for partition `p` at event time `t` with latency `latency`.
pub fn record(p: i32, t: i64, latency: i64, id: &str) -> Outgoing {
    Outgoing {
        key: Some(id.into()),
        value: Some(reduced_json(id, t - latency)),
        partition: Some(p),
        timestamp_ms: Some(t),
    }
}

/// Records for `windows` windows from `base`, `per` per partition and window, in event-time
/// order within each partition; returns them with the latencies per window start.
pub fn windows_of_records(
    base: i64,
    windows: std::ops::Range<i64>,
    per: usize,
    seed: u64,
) -> (Vec<Outgoing>, BTreeMap<i64, Vec<f64>>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut records = Vec::new();
    let mut expected: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for w in windows {
        for p in 0..2 {
            for j in 0..per {
                let t = base + w * WINDOW + (j as i64 * WINDOW) / per as i64;
                let latency = if rng.random_bool(0.1) {
                    rng.random_range(1_000..5_000)
                } else {
                    rng.random_range(5..400)
                };
                records.push(record(p, t, latency, &format!("w{w}p{p}j{j}")));
                expected
                    .entry(base + w * WINDOW)
                    .or_default()
                    .push(latency as f64);
            }
        }
    }
    records.sort_by_key(|r| (r.partition, r.timestamp_ms));
    (records, expected)
}

pub fn assert_document(doc: &serde_json::Value, latencies: &[f64]) {
    assert_eq!(doc["count"], latencies.len() as u64, "{doc}");
    for (field, q) in [("p50", 0.5), ("p75", 0.75), ("p90", 0.9), ("p99", 0.99)] {
        let want = exact_percentile(latencies, q);
        let got = doc[field].as_f64().unwrap();
        assert!(
            (got - want).abs() < 1e-9,
            "{field}: monitor {got}, exact {want} in {doc}"
        );
    }
    let min = latencies.iter().copied().fold(f64::INFINITY, f64::min);
    let max = latencies.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mean = latencies.iter().sum::<f64>() / latencies.len() as f64;
    assert_eq!(doc["min"].as_f64().unwrap(), min);
    assert_eq!(doc["max"].as_f64().unwrap(), max);
    assert!((doc["mean"].as_f64().unwrap() - mean).abs() < 1e-6);
    let over = latencies.iter().filter(|&&l| l > 1_000.0).count() as u64;
    assert_eq!(doc["over_sla_count"], over);
    assert_eq!(doc["within_sla_count"], latencies.len() as u64 - over);
    assert_eq!(doc["exact"], true);
}

/// The Elasticsearch under test (`SLA_TEST_ES_URL`, default the local stack's).
pub fn es_url() -> String {
    std::env::var("SLA_TEST_ES_URL").unwrap_or_else(|_| "http://127.0.0.1:9200".to_string())
}

/// A client of the test Elasticsearch at `url`.
pub fn es_client(url: &str) -> elasticsearch::Elasticsearch {
    let pool = elasticsearch::http::transport::SingleNodeConnectionPool::new(url.parse().unwrap());
    elasticsearch::Elasticsearch::new(
        elasticsearch::http::transport::TransportBuilder::new(pool)
            .build()
            .unwrap(),
    )
}

/// Every document of `index` by id (after a refresh); empty if the index does not exist.
pub async fn es_documents(index: &str) -> BTreeMap<String, serde_json::Value> {
    let client = es_client(&es_url());
    let _ = client
        .indices()
        .refresh(elasticsearch::indices::IndicesRefreshParts::Index(&[index]))
        .send()
        .await;
    let response = client
        .search(elasticsearch::SearchParts::Index(&[index]))
        .body(serde_json::json!({"size": 10_000, "query": {"match_all": {}}}))
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "searching {index} on {}: {e} (is scripts/stack.sh up?)",
                es_url()
            )
        });
    let body: serde_json::Value = response.json().await.unwrap();
    body["hits"]["hits"]
        .as_array()
        .map(|hits| {
            hits.iter()
                .map(|h| (h["_id"].as_str().unwrap().to_string(), h["_source"].clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `index` holds at least `n` documents and returns them.
pub async fn wait_for_es_documents(
    index: &str,
    n: usize,
    timeout: Duration,
) -> BTreeMap<String, serde_json::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let docs = es_documents(index).await;
        if docs.len() >= n {
            return docs;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {n} documents in {index}; have {}",
            docs.len()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A raw HTTP request to Elasticsearch, for tests that set up indexes by hand.
pub async fn es_request(
    method: elasticsearch::http::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let client = es_client(&es_url());
    let body = body.map(elasticsearch::http::request::JsonBody::new);
    let response = client
        .send(
            method,
            path,
            elasticsearch::http::headers::HeaderMap::new(),
            Option::<&()>::None,
            body,
            None,
        )
        .await
        .unwrap();
    let status = response.status_code().as_u16();
    (
        status,
        response.json().await.unwrap_or(serde_json::Value::Null),
    )
}

/// A TCP proxy in front of a real server, which a test can cut and restore to simulate an
/// outage without disturbing other tests that share the server.
pub struct Proxy {
    pub addr: std::net::SocketAddr,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    /// Starts a proxy on a free loopback port forwarding to `upstream` (host:port).
    pub async fn start(upstream: &str) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let connections = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (up2, connections2, upstream) = (up.clone(), connections.clone(), upstream.to_string());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let upstream = upstream.clone();
                let handle = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                connections2.lock().unwrap().push(handle);
            }
        });
        Proxy {
            addr,
            up,
            connections,
        }
    }

    /// Cuts every connection and refuses new ones (`false`), or accepts them again (`true`).
    pub fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
        if !up {
            for handle in self.connections.lock().unwrap().drain(..) {
                handle.abort();
            }
        }
    }
}

/// The address a job's HTTP endpoint bound (it logs "serving … on http://ADDR").
pub fn http_addr_of(job: &Job) -> String {
    let mut addr = String::new();
    wait_for("the job's HTTP endpoint", Duration::from_secs(30), || {
        let log = job.log_text();
        match log.split("on http://").nth(1) {
            Some(rest) => {
                addr = rest.split_whitespace().next().unwrap_or("").to_string();
                !addr.is_empty()
            }
            None => false,
        }
    });
    addr
}

/// A loopback HTTP server recording every JSON body POSTed to it.
pub async fn json_receiver() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = bodies.clone();
    let app = axum::Router::new().fallback(move |body: axum::Json<serde_json::Value>| {
        let store = store.clone();
        async move {
            store.lock().unwrap().push(body.0);
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), bodies)
}

/// The topics a monitor under test uses, named for one test.
pub struct MonitorTopics {
    pub reduced: String,
    pub dlq: String,
    pub checkpoints: String,
    pub shuffle: String,
}

impl MonitorTopics {
    /// The monitor flags naming these topics.
    pub fn args(&self) -> Vec<&str> {
        vec![
            "--reduced-topic",
            &self.reduced,
            "--dead-letter-topic",
            &self.dlq,
            "--checkpoint-topic",
            &self.checkpoints,
            "--shuffle-topic",
            &self.shuffle,
        ]
    }
}

/// Waits until a single monitor instance owns all `partitions` input partitions and merges
/// (owns the shuffle partition): its group memberships are settled. Tests kill instances only
/// then: tansu 0.6 never expires a member killed while it is still joining.
pub fn wait_until_settled(job: &Job, topics: &MonitorTopics, partitions: usize) {
    let (input, shuffle) = (
        format!("topic=\"{}\"", topics.reduced),
        format!("topic=\"{}\"", topics.shuffle),
    );
    let settled = || {
        metric_sum(job, "sla_assigned_partitions", &[&input]) == Some(partitions as f64)
            && metric_sum(job, "sla_assigned_partitions", &[&shuffle]).is_some_and(|m| m > 0.0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !settled() {
        if Instant::now() > deadline {
            let log = job.log_text();
            let rebalances: Vec<&str> = log
                .lines()
                .filter(|l| {
                    l.contains("partitions") || l.contains("rebalance") || l.contains("ERROR")
                })
                .collect();
            panic!(
                "the monitor did not own its partitions within 60 s:\n{}",
                rebalances.join("\n")
            );
        }
        blocking(|| std::thread::sleep(Duration::from_millis(200)));
    }
}

/// Waits until a settled monitor instance has consumed `records` records and committed a
/// checkpoint past the start of its input: the moment a test kills it mid-window.
pub fn wait_until_checkpointed(job: &Job, topics: &MonitorTopics, records: usize) {
    wait_until_settled(job, topics, 2); // the tests' input topics have 2 partitions
    let input = format!("topic=\"{}\"", topics.reduced);
    wait_for(
        "the records consumed and a checkpoint",
        Duration::from_secs(30),
        || {
            metric_sum(job, "sla_records_consumed_total", &[]) == Some(records as f64)
                && metric_sum(job, "sla_committed_offset", &[&input]).is_some_and(|o| o > 0.0)
        },
    );
}

/// Fresh monitor topic names for the test `name`.
pub fn monitor_topics(name: &str) -> MonitorTopics {
    MonitorTopics {
        reduced: unique(&format!("{name}_r")),
        dlq: unique(&format!("{name}_d")),
        checkpoints: unique(&format!("{name}_c")),
        shuffle: unique(&format!("{name}_s")),
    }
}

/// A running generator → synchronizer → monitor → Elasticsearch pipeline with test settings:
/// 2 s windows, 500 ms out-of-orderness, 1.5 s idle timeout, SLA 5 s.
pub struct Pipeline {
    pub monitor: Job,
    pub synchronizer: Job,
    pub generator: Job,
    /// The reduced-visits topic.
    pub reduced: String,
    /// The Elasticsearch index of the window documents.
    pub index: String,
}

/// Starts a pipeline named `name`; `delay` is the synchronizer's initial delay, and
/// `generator_args` say how much the generator produces.
pub fn start_pipeline(name: &str, dir: &Path, delay: &str, generator_args: &[&str]) -> Pipeline {
    let t: Vec<String> = [
        "visits", "reduced", "vdlq", "rdlq", "ckpt", "sg", "mg", "shuffle",
    ]
    .iter()
    .map(|s| unique(&format!("{name}_{s}")))
    .collect();
    let index = test_index(name);
    #[rustfmt::skip]
    let monitor = Job::start(
        env!("CARGO_BIN_EXE_monitor"),
        &[
            "--reduced-topic", &t[1], "--dead-letter-topic", &t[3], "--checkpoint-topic", &t[4], "--shuffle-topic", &t[7],
            "--group", &t[6], "--es-url", &es_url(), "--es-index", &index, "--window", "2s",
            "--max-out-of-orderness", "500ms", "--idle-timeout", "1500ms", "--sla", "5s",
        ],
        dir,
    );
    #[rustfmt::skip]
    let synchronizer = Job::start(
        env!("CARGO_BIN_EXE_synchronizer"),
        &[
            "--visits-topic", &t[0], "--reduced-topic", &t[1], "--dead-letter-topic", &t[2],
            "--group", &t[5], "--delay", delay,
        ],
        dir,
    );
    let mut args = vec!["--visits-topic", t[0].as_str()];
    args.extend_from_slice(generator_args);
    let generator = Job::start(env!("CARGO_BIN_EXE_generator"), &args, dir);
    Pipeline {
        monitor,
        synchronizer,
        generator,
        reduced: t[1].clone(),
        index,
    }
}

/// Prefix of every Elasticsearch index a test creates; `scripts/test.sh` deletes them before a run.
pub const TEST_INDEX_PREFIX: &str = "sla_test_";

/// A fresh index name for the test `name`.
pub fn test_index(name: &str) -> String {
    unique(&format!("{TEST_INDEX_PREFIX}{name}")).to_lowercase()
}

/// The "killed mid-window" scenario: six windows of records from `base` (two partitions, 30
/// per partition and window), split so that phase 1 ends half-way through window 3 — the
/// window open when a test kills the monitor — and phase 2 holds the rest. Returns (phase 1,
/// phase 2, latencies per window start).
pub fn mid_window_phases(
    base: i64,
    seed: u64,
) -> (Vec<Outgoing>, Vec<Outgoing>, BTreeMap<i64, Vec<f64>>) {
    let (all, expected) = windows_of_records(base, 0..6, 30, seed);
    let (phase1, phase2) = all
        .into_iter()
        .partition(|r| r.timestamp_ms.unwrap() < base + 3 * WINDOW + WINDOW / 2);
    (phase1, phase2, expected)
}

/// What a generator → synchronizer → monitor (JSON lines) run produced.
pub struct JsonLinesRun {
    /// Valid visits the generator had acknowledged.
    pub valid: u64,
    /// The monitor's window documents by id.
    pub documents: BTreeMap<String, serde_json::Value>,
    /// The reduced-visits topic.
    pub reduced: String,
}

/// Runs generator → synchronizer → monitor with the JSON-lines sink (2 s windows), every job
/// given `kafka_args` (which name the brokers), until the monitor's windows have counted
/// every valid visit the generator produced (`generator_args` say how many); stops the jobs
/// with SIGTERM and checks they exit cleanly.
pub fn run_json_lines_pipeline(
    name: &str,
    dir: &Path,
    kafka_args: &[&str],
    generator_args: &[&str],
) -> JsonLinesRun {
    let t: Vec<String> = [
        "visits", "reduced", "vdlq", "rdlq", "ckpt", "sg", "mg", "shuffle",
    ]
    .iter()
    .map(|s| unique(&format!("{name}_{s}")))
    .collect();
    let output = dir.join(format!("{}.jsonl", unique(name)));
    let with_kafka = |args: &[&str]| -> Vec<String> {
        kafka_args
            .iter()
            .chain(args)
            .map(|a| a.to_string())
            .collect()
    };
    let job = |binary: &str, args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Job::start_without_brokers(binary, &args, dir)
    };
    #[rustfmt::skip]
    let monitor = job(env!("CARGO_BIN_EXE_monitor"), with_kafka(&[
        "--reduced-topic", &t[1], "--dead-letter-topic", &t[3], "--checkpoint-topic", &t[4], "--shuffle-topic", &t[7],
        "--group", &t[6], "--sink", "json-lines", "--output", output.to_str().unwrap(),
        "--window", "2s", "--max-out-of-orderness", "500ms", "--idle-timeout", "1500ms",
    ]));
    #[rustfmt::skip]
    let synchronizer = job(env!("CARGO_BIN_EXE_synchronizer"), with_kafka(&[
        "--visits-topic", &t[0], "--reduced-topic", &t[1], "--dead-letter-topic", &t[2],
        "--group", &t[5],
    ]));
    let mut generator_all = vec!["--visits-topic", t[0].as_str()];
    generator_all.extend_from_slice(generator_args);
    let mut generator = job(env!("CARGO_BIN_EXE_generator"), with_kafka(&generator_all));
    let valid = generator.generated_valid(Duration::from_secs(60));
    let counted = |docs: &BTreeMap<String, serde_json::Value>| -> u64 {
        docs.values().map(|d| d["count"].as_u64().unwrap()).sum()
    };
    let mut documents = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    blocking(|| {
        while counted(&documents) < valid {
            assert!(
                Instant::now() < deadline,
                "the monitor counted {} of {valid} valid visits in 60 s\nsynchronizer:\n{}\nmonitor:\n{}",
                counted(&documents),
                synchronizer.log_text(),
                monitor.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
            documents = read_documents(&output).0;
        }
    });
    assert!(synchronizer.terminate(Duration::from_secs(30)).success());
    assert!(monitor.terminate(Duration::from_secs(30)).success());
    assert_eq!(counted(&documents), valid, "no visit counted twice");
    JsonLinesRun {
        valid,
        documents,
        reduced: t[1].clone(),
    }
}

/// Renders `dashboards/alertmanager/alertmanager.yml.tmpl` with `render-config.sh` into `dir`,
/// with only `vars` (and PATH) in the environment: the rendered file, or the script's message.
pub fn render_alertmanager_config(dir: &Path, vars: &[(&str, &str)]) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    render_alertmanager_config_with(Path::new("sh"), &path, dir, "alertmanager.yml", vars)
}

/// [`render_alertmanager_config`] run by `shell` with only `path` to find its tools (busybox's
/// sh and awk, say, as in the Alertmanager image), into `dir/name`.
pub fn render_alertmanager_config_with(
    shell: &Path,
    path: &std::ffi::OsStr,
    dir: &Path,
    name: &str,
    vars: &[(&str, &str)],
) -> Result<PathBuf, String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = dir.join(name);
    let out = Command::new(shell)
        .arg(repo.join("dashboards/alertmanager/render-config.sh"))
        .arg(repo.join("dashboards/alertmanager/alertmanager.yml.tmpl"))
        .arg(&output)
        .env_clear()
        .env("PATH", path)
        .envs(vars.iter().copied())
        .output()
        .expect("running render-config.sh");
    if out.status.success() {
        Ok(output)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The receiver settings an Alertmanager config needs, pointing nowhere beyond loopback.
pub const LOOPBACK_RECEIVERS: [(&str, &str); 4] = [
    ("SLA_SMTP_SMARTHOST", "127.0.0.1:2525"),
    ("SLA_SMTP_FROM", "sla-monitor@localhost"),
    ("SLA_ALERT_EMAIL", "oncall@localhost"),
    (
        "SLA_ALERT_WEBHOOK_URL",
        "http://127.0.0.1:9199/alertmanager",
    ),
];

/// The `alerts` evaluator on `rules` over `index`, with `extra` flags (webhook, Alertmanagers).
pub fn start_alerts(rules: &Path, index: &str, extra: &[&str], dir: &Path) -> Job {
    let es = es_url();
    let mut args = vec![
        "--rules",
        rules.to_str().unwrap(),
        "--es-url",
        &es,
        "--es-index",
        index,
    ];
    args.extend(extra);
    Job::start_without_brokers(env!("CARGO_BIN_EXE_alerts"), &args, dir)
}

/// `alerts backtest --json` of `rules` over `index` from `from_ms` to `to_ms`: the timelines.
pub fn backtest(rules: &Path, index: &str, from_ms: i64, to_ms: i64) -> serde_json::Value {
    let out = backtest_with(rules, index, from_ms, to_ms, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// An RFC 3339 time (ms precision) for flags and files.
pub fn iso_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `alerts backtest --json` over `[from_ms, to_ms]` with `extra` flags; its exit status and
/// output, whatever they are.
pub fn backtest_with(
    rules: &Path,
    index: &str,
    from_ms: i64,
    to_ms: i64,
    extra: &[&str],
) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_alerts"))
        .args(["backtest", "--rules", rules.to_str().unwrap()])
        .args(["--es-url", &es_url(), "--es-index", index, "--json"])
        .args(["--from", &iso_ms(from_ms), "--to", &iso_ms(to_ms)])
        .args(extra)
        .output()
        .unwrap()
}

/// Headless Chromium (Debian's `chromium`), or `None` with the reason when it is not installed
/// (`.ci/run` installs it; a machine without it skips the browser checks, saying so).
pub fn chromium() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
            .find(|path| path.is_file())
    });
    if found.is_none() {
        println!("SKIPPED the browser checks: no chromium on PATH (apt-get install -y --no-install-recommends chromium)");
    }
    found
}

/// What a real browser made of an HTML page: its DOM after loading, a screenshot (PNG), and
/// the console messages the page logged (`CONSOLE(` lines of Chromium's log).
pub struct Rendered {
    /// The DOM as serialised after loading.
    pub dom: String,
    /// The screenshot's pixels (RGBA) and size.
    pub pixels: Vec<u8>,
    /// Width and height of the screenshot.
    pub size: (u32, u32),
    /// Console messages logged by the page.
    pub console: Vec<String>,
}

/// Opens `page` in headless `chromium`: dumps its DOM and takes a 1400×1000 screenshot.
pub fn render_in_browser(chromium: &Path, page: &Path) -> Rendered {
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!(
                "--user-data-dir={}",
                dir.path().join("profile").display()
            ))
            .args(args)
            .arg(&url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "chromium {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let shot = dir.path().join("page.png");
    let screenshot = run(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1400,1000",
    ]);
    let dumped = run(&["--dump-dom"]);
    let console = [&screenshot.stderr, &dumped.stderr]
        .iter()
        .flat_map(|e| {
            String::from_utf8_lossy(e)
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|line| line.contains(":CONSOLE("))
        .collect();
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).unwrap();
    pixels.truncate(info.buffer_size());
    let pixels = match info.color_type {
        png::ColorType::Rgba => pixels,
        png::ColorType::Rgb => pixels
            .chunks(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect(),
        other => panic!("unexpected screenshot colour type {other:?}"),
    };
    Rendered {
        dom: String::from_utf8_lossy(&dumped.stdout).into_owned(),
        pixels,
        size: (info.width, info.height),
        console,
    }
}

/// The provisioned SLA rule with test timings — evaluated every second over 2 s histogram
/// buckets and a 30 s range, pending for `pending` (e.g. `6s`) — and a `test_run` label naming
/// the run; everything else (queries, reducer, threshold, states, labels) as in dashboards/.
pub fn test_rule_file(run: &str, pending: &str) -> String {
    let original = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dashboards/grafana/provisioning/alerting/sla-alert-rules.yaml"
    ))
    .unwrap();
    let changed = original
        .replace("    interval: 1m\n", "    interval: 1s\n")
        .replace("interval: 1m", "interval: 2s")
        .replace("from: 600", "from: 30")
        .replace("for: 2m", &format!("for: {pending}"))
        .replace(
            "severity: critical",
            &format!("severity: critical\n          test_run: {run}"),
        );
    assert_ne!(changed, original);
    changed
}
