//! The job binaries as processes: starting them, their logs (shown when a test fails), their
//! metrics and HTTP address, and whole pipelines with test settings.

use super::*;

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

    /// As [`Job::start`], the process allowed at most `open_files` file descriptors (as a
    /// container or a systemd unit with `LimitNOFILE` would allow it).
    pub fn start_with_file_limit(binary: &str, args: &[&str], dir: &Path, open_files: u64) -> Job {
        use std::os::unix::process::CommandExt;
        let mut all = vec!["--brokers".to_string(), brokers()];
        all.extend(args.iter().map(|a| a.to_string()));
        Job::spawn_with(binary, &all, dir, &[], |command| {
            // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
            unsafe {
                command.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: open_files,
                        rlim_max: open_files,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn spawn(binary: &str, args: &[String], dir: &Path, env: &[(&str, &str)]) -> Job {
        Job::spawn_with(binary, args, dir, env, |_| {})
    }

    fn spawn_with(
        binary: &str,
        args: &[String],
        dir: &Path,
        env: &[(&str, &str)],
        configure: impl FnOnce(&mut Command),
    ) -> Job {
        let name = Path::new(binary)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let log = dir.join(format!("{name}-{}.log", unique("run")));
        let stdout = log.with_extension("out");
        let mut command = Command::new(binary);
        command
            .arg("--http-addr")
            .arg("127.0.0.1:0")
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .stdin(Stdio::null());
        configure(&mut command);
        let child = command.spawn().unwrap();
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
    /// Stops the process; when the test is failing (this thread panics), shows the end of
    /// the job's log, so every multi-process test says what its jobs did.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log_text();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(SHOWN_LOG_LINES)..];
            eprintln!(
                "---- {} ({} lines of {}, last {}) ----\n{}\n---- end of {} ----",
                self.name,
                lines.len(),
                self.log.display(),
                tail.len(),
                tail.join("\n"),
                self.name
            );
        }
    }
}

/// How many lines of a job's log a failing test shows.
const SHOWN_LOG_LINES: usize = 150;

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

/// `PUT url` with `Authorization: Bearer token` (a job's control endpoint): status and body.
pub async fn put_authorized(url: String, token: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .put(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
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

/// The topics and groups of a generator → synchronizer → monitor pipeline, fresh for each run.
pub struct PipelineNames {
    /// The visits topic (the generator's output, the synchronizer's input).
    pub visits: String,
    /// The synchronizer's dead-letter topic.
    pub visits_dlq: String,
    /// The synchronizer's group.
    pub synchronizer_group: String,
    /// The monitor's group.
    pub monitor_group: String,
    /// The monitor's topics (its input is the synchronizer's output).
    pub monitor: MonitorTopics,
}

impl PipelineNames {
    /// Fresh names for the pipeline of the test `name`.
    pub fn new(name: &str) -> Self {
        let fresh = |what: &str| unique(&format!("{name}_{what}"));
        PipelineNames {
            visits: fresh("visits"),
            visits_dlq: fresh("vdlq"),
            synchronizer_group: fresh("sg"),
            monitor_group: fresh("mg"),
            monitor: MonitorTopics {
                reduced: fresh("reduced"),
                dlq: fresh("rdlq"),
                checkpoints: fresh("ckpt"),
                shuffle: fresh("shuffle"),
            },
        }
    }
}

/// The idle timeout of a monitor reading what live jobs produce. On the local broker records
/// keep their producer's CreateTime, the moment of the produce call, however long the
/// producer then holds them; an idle partition's watermark follows the clock minus the idle
/// timeout, so a record held longer than it lands behind a closed window (late). A loaded CI
/// machine was seen holding records 4 s (five tests at once): 10 s is beyond any hold seen,
/// and costs each test 10 s at its end, when its last windows close by idleness.
pub const LIVE_IDLE_TIMEOUT: &str = "10s";

/// A running generator → synchronizer → monitor → Elasticsearch pipeline with test settings:
/// 2 s windows, 500 ms out-of-orderness, [`LIVE_IDLE_TIMEOUT`], SLA 5 s.
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
    let n = PipelineNames::new(name);
    let index = test_index(name);
    let monitor = MonitorArgs::new(&n.monitor, &n.monitor_group)
        .elasticsearch(&index)
        .set("--sla", "5s")
        .start(dir);
    #[rustfmt::skip]
    let synchronizer = Job::start(
        env!("CARGO_BIN_EXE_synchronizer"),
        &[
            "--visits-topic", &n.visits, "--reduced-topic", &n.monitor.reduced, "--dead-letter-topic", &n.visits_dlq,
            "--group", &n.synchronizer_group, "--delay", delay,
        ],
        dir,
    );
    let mut args = vec!["--visits-topic", n.visits.as_str()];
    args.extend_from_slice(generator_args);
    let generator = Job::start(env!("CARGO_BIN_EXE_generator"), &args, dir);
    Pipeline {
        monitor,
        synchronizer,
        generator,
        reduced: n.monitor.reduced.clone(),
        index,
    }
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
    let n = PipelineNames::new(name);
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
    let monitor_args = MonitorArgs::new(&n.monitor, &n.monitor_group)
        .json_lines(&output)
        .to_vec();
    let monitor_refs: Vec<&str> = monitor_args.iter().map(String::as_str).collect();
    let monitor = job(MONITOR, with_kafka(&monitor_refs));
    #[rustfmt::skip]
    let synchronizer = job(env!("CARGO_BIN_EXE_synchronizer"), with_kafka(&[
        "--visits-topic", &n.visits, "--reduced-topic", &n.monitor.reduced, "--dead-letter-topic", &n.visits_dlq,
        "--group", &n.synchronizer_group,
    ]));
    let mut generator_all = vec!["--visits-topic", n.visits.as_str()];
    generator_all.extend_from_slice(generator_args);
    let mut generator = job(env!("CARGO_BIN_EXE_generator"), with_kafka(&generator_all));
    let valid = generator.generated_valid(Duration::from_secs(60));
    let counted = |docs: &BTreeMap<String, serde_json::Value>| -> u64 {
        docs.values().map(|d| d["count"].as_u64().unwrap()).sum()
    };
    let mut documents = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    blocking(|| {
        while counted(&documents) < valid {
            assert!(
                Instant::now() < deadline,
                "the monitor counted {} of {valid} valid visits in 90 s\nsynchronizer:\n{}\nmonitor:\n{}",
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
        reduced: n.monitor.reduced.clone(),
    }
}

/// The monitor binary.
pub const MONITOR: &str = env!("CARGO_BIN_EXE_monitor");

/// One monitor's command line, built in one place: its topics and group, the tests' settings
/// (2 s windows, 500 ms out-of-orderness, SLA 1 s, [`LIVE_IDLE_TIMEOUT`], no producer hold), a sink, and what a
/// test changes. A flag set again replaces its value; `-X` properties add up.
#[derive(Debug, Clone)]
pub struct MonitorArgs {
    flags: Vec<(String, String)>,
    properties: Vec<String>,
}

impl MonitorArgs {
    /// The monitor of `topics` in `group` with the tests' settings; the sink is the default
    /// (Elasticsearch) until one is chosen.
    pub fn new(topics: &MonitorTopics, group: &str) -> Self {
        MonitorArgs::bare(topics, group)
            .set("--window", "2s")
            .set("--max-out-of-orderness", "500ms")
            .set("--idle-timeout", LIVE_IDLE_TIMEOUT)
            // The tests' producers are in the test and deliver at once; a test of the hold
            // sets it.
            .set("--max-producer-hold", "0s")
            .set("--sla", "1s")
    }

    /// The monitor of `topics` in `group` with its own defaults (1-minute windows…).
    pub fn bare(topics: &MonitorTopics, group: &str) -> Self {
        let mut args = MonitorArgs {
            flags: Vec::new(),
            properties: Vec::new(),
        };
        for pair in topics.args().chunks(2) {
            args = args.set(pair[0], pair[1]);
        }
        args.set("--group", group)
    }

    /// Sets `flag` to `value` (replacing an earlier value).
    pub fn set(mut self, flag: &str, value: &str) -> Self {
        match self.flags.iter_mut().find(|(f, _)| f == flag) {
            Some(entry) => entry.1 = value.to_string(),
            None => self.flags.push((flag.to_string(), value.to_string())),
        }
        self
    }

    /// Adds a librdkafka property (`-X key=value`).
    pub fn property(mut self, key_value: &str) -> Self {
        self.properties.push(key_value.to_string());
        self
    }

    /// A killed instance's partitions move to the others once its session expires: 6 s.
    pub fn short_session(self) -> Self {
        self.property("session.timeout.ms=6000")
    }

    /// Windows as JSON lines appended to `output`.
    pub fn json_lines(self, output: &Path) -> Self {
        self.set("--sink", "json-lines")
            .set("--output", output.to_str().unwrap())
    }

    /// Windows to `index` of the Elasticsearch under test.
    pub fn elasticsearch(self, index: &str) -> Self {
        self.set("--es-url", &es_url()).set("--es-index", index)
    }

    /// The command line (without `--brokers`).
    pub fn to_vec(&self) -> Vec<String> {
        let mut all = Vec::new();
        for (flag, value) in &self.flags {
            all.extend([flag.clone(), value.clone()]);
        }
        for property in &self.properties {
            all.extend(["-X".to_string(), property.clone()]);
        }
        all
    }

    /// Starts the monitor on the broker under test.
    pub fn start(&self, dir: &Path) -> Job {
        let args = self.to_vec();
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        Job::start(MONITOR, &refs, dir)
    }

    /// Starts the monitor with these environment variables set for it.
    pub fn start_with_env(&self, dir: &Path, env: &[(&str, &str)]) -> Job {
        let args = self.to_vec();
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        Job::start_with_env(MONITOR, &refs, dir, env)
    }

    /// Starts the monitor on `brokers` (a broker of the test's own).
    pub fn start_on(&self, brokers: &str, dir: &Path) -> Job {
        let mut args = vec!["--brokers".to_string(), brokers.to_string()];
        args.extend(self.to_vec());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        Job::start_without_brokers(MONITOR, &refs, dir)
    }
}

/// How long a test waits, after killing a group member whose session is 6 s
/// ([`MonitorArgs::short_session`]), before its replacement joins: tansu 0.6 gives a member
/// that joins while a dead member's session is alive nothing and never reassigns, and does not
/// always finish a cooperative rebalance after a session expired with nobody joining (Apache
/// Kafka does both). The broker's clock decides and tansu cannot be asked (it answers no
/// ListGroups or DescribeGroups), so this is a stimulus held for a fixed time, with margin;
/// what the test needs next (the partitions held, the documents written) is waited on.
pub const SESSION_EXPIRY: Duration = Duration::from_secs(8);

/// Waits [`SESSION_EXPIRY`] (see there).
pub fn wait_out_killed_session() {
    blocking(|| std::thread::sleep(SESSION_EXPIRY));
}

/// The partitions of `topic` that `job` holds now (`sla_assigned_partitions`).
pub fn assigned(job: &Job, topic: &str) -> f64 {
    metric_sum(
        job,
        "sla_assigned_partitions",
        &[&format!("topic=\"{topic}\"")],
    )
    .unwrap_or(0.0)
}

/// Waits until the input partitions are spread over `instances` (each holds some) and, with
/// `merge`, the merge group is settled too: its one shuffle partition held and every instance
/// assigned in it at least once. tansu 0.6 never expires a member killed while a rebalance is
/// under way, so tests kill only settled instances.
pub fn wait_until_spread(instances: &[Job], topics: &MonitorTopics, partitions: i32, merge: bool) {
    let merge_settled = || {
        instances
            .iter()
            .map(|j| assigned(j, &topics.shuffle))
            .sum::<f64>()
            == 1.0
            && instances.iter().all(|j| {
                j.log_text().lines().any(|l| {
                    l.contains("partitions assigned") && l.contains(topics.shuffle.as_str())
                })
            })
    };
    wait_for(
        "the partitions spread over the instances",
        Duration::from_secs(60),
        || {
            let counts: Vec<f64> = instances
                .iter()
                .map(|j| assigned(j, &topics.reduced))
                .collect();
            counts.iter().sum::<f64>() == f64::from(partitions)
                && counts.iter().all(|&c| c > 0.0)
                && (!merge || merge_settled())
        },
    );
}
