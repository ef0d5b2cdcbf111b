//! Error reporting against a real Sentry-protocol server (the local stack's Bugsink), with the
//! job binaries: a burst of identical warnings arrives as one event (the rest held back and
//! counted), tagged and with breadcrumbs; a fatal exit arrives with its cause chain — the
//! monitor stopped before its sink was ready, every job refusing a broker certificate it does
//! not trust; no secret, and no event at all from a job without a DSN.

mod support;

use std::time::Duration;
use support::bugsink::{tag, Bugsink};
use support::private_broker::*;
use support::*;

/// A monitor whose Elasticsearch never answers: it warns on every retry until stopped, then
/// exits with an error.
fn stuck_monitor(dir: &std::path::Path, topics: &MonitorTopics, env: &[(&str, &str)]) -> Job {
    MonitorArgs::bare(topics, &unique("report_g"))
        .set("--job-name", "orders-enrichment")
        .set("--es-url", "http://127.0.0.1:9")
        .set("--es-index", "sla_test_unreachable")
        .start_with_env(dir, env)
}

#[tokio::test(flavor = "multi_thread")]
async fn warnings_arrive_once_tagged_with_breadcrumbs_and_the_fatal_exit_with_its_cause() {
    let bugsink = Bugsink::local();
    let dir = tempfile::tempdir().unwrap();
    let topics = monitor_topics("report");
    create_topic(&topics.reduced, 2).await;
    let environment = unique("test");
    let secret = unique("s3cret");
    let dsn = bugsink.dsn();
    let job = stuck_monitor(
        dir.path(),
        &topics,
        &[
            ("SENTRY_DSN", dsn.as_str()),
            ("SENTRY_ENVIRONMENT", environment.as_str()),
            ("SLA_ES_USERNAME", "elastic"),
            ("SLA_ES_PASSWORD", secret.as_str()),
        ],
    );
    let retries = |job: &Job| job.log_text().matches("retrying in").count();
    wait_for(
        "three retries of Elasticsearch",
        Duration::from_secs(60),
        || retries(&job) >= 3,
    );
    let logged_retries = retries(&job);
    assert!(
        !job.terminate(Duration::from_secs(30)).success(),
        "stopped before its sink was ready"
    );

    let mut events = Vec::new();
    wait_for("the fatal exit in Bugsink", Duration::from_secs(20), || {
        events = bugsink.events(&environment);
        events.iter().any(|e| e["level"] == "fatal")
    });
    let warnings: Vec<_> = events
        .iter()
        .filter(|e| {
            // Its own message: a later warning (Kafka is prepared meanwhile) carries it as a
            // breadcrumb.
            e["level"] == "warning"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("Elasticsearch unreachable"))
        })
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "{logged_retries} retries logged, one event sent: {events:#?}"
    );
    let warning = warnings[0];
    assert_eq!(tag(warning, "job").as_deref(), Some("monitor"));
    assert_eq!(
        tag(warning, "job_name").as_deref(),
        Some("orders-enrichment")
    );
    assert_eq!(
        tag(warning, "topic").as_deref(),
        Some(topics.reduced.as_str())
    );
    let crumbs = warning["breadcrumbs"]["values"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // The log lines before it (an info line's level is the default, left out by the SDK).
    assert!(
        crumbs.iter().any(|c| c["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("serving /metrics"))),
        "the log lines before it: {crumbs:#?}"
    );
    let fatal = events.iter().find(|e| e["level"] == "fatal").unwrap();
    let text = fatal.to_string();
    assert!(
        text.contains("stopped before Elasticsearch became reachable"),
        "{fatal:#}"
    );
    assert_eq!(tag(fatal, "job").as_deref(), Some("monitor"));
    let all = serde_json::to_string(&events).unwrap();
    assert!(!all.contains(&secret), "a secret left the process");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_dsn_nothing_is_sent() {
    let bugsink = Bugsink::local();
    let dir = tempfile::tempdir().unwrap();
    let topics = monitor_topics("silent");
    create_topic(&topics.reduced, 2).await;
    let environment = unique("test");
    let job = stuck_monitor(
        dir.path(),
        &topics,
        &[("SENTRY_ENVIRONMENT", environment.as_str())],
    );
    wait_for("a retry", Duration::from_secs(60), || {
        job.log_text().contains("retrying in")
    });
    job.terminate(Duration::from_secs(30));
    assert!(bugsink.events(&environment).is_empty());
}

#[test]
fn a_refused_broker_certificate_is_a_fatal_event_of_each_job() {
    let bugsink = Bugsink::local();
    let dir = tempfile::tempdir().unwrap();
    let (broker, config) = broker_with_an_untrusted_certificate(dir.path());
    let environment = unique("test");
    let dsn = bugsink.dsn();
    let env = [
        ("SENTRY_DSN", dsn.as_str()),
        ("SENTRY_ENVIRONMENT", environment.as_str()),
    ];
    let jobs = ["generator", "synchronizer", "monitor"];
    for (name, binary) in jobs.iter().zip([
        env!("CARGO_BIN_EXE_generator"),
        env!("CARGO_BIN_EXE_synchronizer"),
        env!("CARGO_BIN_EXE_monitor"),
    ]) {
        let mut args = vec![
            "--brokers",
            &broker.bootstrap,
            "--kafka-config",
            config.to_str().unwrap(),
        ];
        if *name == "monitor" {
            args.extend(["--sink", "json-lines"]);
        }
        let mut job = Job::start_without_brokers_with_env(binary, &args, dir.path(), &env);
        assert!(!job.wait(Duration::from_secs(30)).success(), "{name} ran");
    }
    let mut events = Vec::new();
    wait_for("a fatal event of each job", Duration::from_secs(20), || {
        events = bugsink.events(&environment);
        jobs.iter().all(|job| {
            events
                .iter()
                .any(|e| e["level"] == "fatal" && tag(e, "job").as_deref() == Some(job))
        })
    });
    for event in events.iter().filter(|e| e["level"] == "fatal") {
        let text = event["exception"].to_string();
        assert!(text.contains("certificate is not trusted"), "{event:#}");
        assert!(
            text.contains("ssl.ca.location"),
            "what to fix travels with it: {event:#}"
        );
    }
}

#[test]
fn a_panic_is_reported_with_its_message_and_breadcrumbs() {
    let bugsink = Bugsink::local();
    // The example program starts reporting as every job does, then panics.
    let debug = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(std::path::Path::parent)
        .unwrap()
        .to_path_buf();
    let program = debug.join("examples/report_panic");
    if !program.exists() {
        let built = std::process::Command::new(env!("CARGO"))
            .args(["build", "--example", "report_panic"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(built.success());
    }
    let environment = unique("test");
    let output = std::process::Command::new(&program)
        .env("SENTRY_DSN", bugsink.dsn())
        .env("SENTRY_ENVIRONMENT", &environment)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let mut events = Vec::new();
    wait_for("the panic in Bugsink", Duration::from_secs(20), || {
        events = bugsink.events(&environment);
        !events.is_empty()
    });
    let panic = &events[0];
    assert_eq!(panic["level"], "fatal", "{panic:#}");
    assert!(
        panic["exception"]
            .to_string()
            .contains("index out of bounds"),
        "{panic:#}"
    );
    assert_eq!(tag(panic, "job").as_deref(), Some("report-panic"));
    assert!(
        panic["breadcrumbs"]
            .to_string()
            .contains("about to panic on purpose"),
        "{panic:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_are_reported_by_reason_without_their_records() {
    let bugsink = Bugsink::local();
    let dir = tempfile::tempdir().unwrap();
    let topics = monitor_topics("report_dlq");
    create_topic(&topics.reduced, 2).await;
    let base = (now_ms() - 60_000) / WINDOW * WINDOW;
    let mut records: Vec<Outgoing> = (0..20)
        .map(|i| Outgoing {
            key: Some(format!("bad-{i}")),
            value: Some(format!("{{oops cardholder-secret-{i}").into_bytes()),
            partition: Some(i % 2),
            timestamp_ms: Some(base + i as i64),
            headers: Vec::new(),
        })
        .collect();
    records.push(record(0, base + 100, 40, "good"));
    produce(&topics.reduced, &records).await;
    let environment = unique("test");
    let dsn = bugsink.dsn();
    let output = dir.path().join("windows.jsonl");
    let job = MonitorArgs::bare(&topics, &unique("report_dlq_g"))
        .json_lines(&output)
        .start_with_env(
            dir.path(),
            &[
                ("SENTRY_DSN", dsn.as_str()),
                ("SENTRY_ENVIRONMENT", environment.as_str()),
            ],
        );
    let dead = consume(
        &topics.dlq,
        20,
        Duration::from_secs(30),
        Duration::from_millis(200),
    );
    assert_eq!(dead.len(), 20);
    let mut events = Vec::new();
    wait_for("the dead-letter report", Duration::from_secs(20), || {
        events = bugsink.events(&environment);
        events
            .iter()
            .any(|e| tag(e, "reason").as_deref() == Some("invalid_json"))
    });
    job.terminate(Duration::from_secs(30));
    // At its stop the job says what its log held back: every record is counted once.
    let count = |events: &[serde_json::Value]| -> u64 {
        events
            .iter()
            .filter(|e| tag(e, "reason").as_deref() == Some("invalid_json"))
            .map(|e| tag(e, "records").unwrap().parse::<u64>().unwrap())
            .sum()
    };
    wait_for("the count at the stop", Duration::from_secs(20), || {
        events = bugsink.events(&environment);
        count(&events) == 20
    });
    let reports: Vec<_> = events
        .iter()
        .filter(|e| tag(e, "reason").as_deref() == Some("invalid_json"))
        .collect();
    assert!(
        reports.len() <= 2,
        "the first line and the stop's: {reports:#?}"
    );
    assert!(
        reports[0]
            .to_string()
            .contains("records refused and dead-lettered: invalid_json"),
        "{:#}",
        reports[0]
    );
    let all = serde_json::to_string(&events).unwrap();
    assert!(
        !all.contains("cardholder-secret"),
        "a record's text was sent: {all}"
    );
}
