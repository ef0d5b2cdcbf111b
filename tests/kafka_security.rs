//! The jobs against a secured broker, every setting from a `--kafka-config` file: TLS with
//! server verification, mutual TLS, and SASL/SCRAM (SHA-256 over plaintext, SHA-512 over TLS).
//! Refused credentials and untrusted or missing certificates stop each job at start with a
//! message that says what to change. The broker is a private tansu; TLS on the wire is a real
//! OpenSSL terminator (socat) in front of it. Not testable here, for want of a server that
//! checks them: SASL/PLAIN (tansu 0.6 accepts any PLAIN password), OAUTHBEARER and GSSAPI.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};
use support::private_broker::*;
use support::*;

const GENERATE: &[&str] = &[
    "--rate",
    "300",
    "--count",
    "600",
    "--invalid-json-pct",
    "2",
    "--seed",
    "11",
];

fn kafka_args<'a>(broker: &'a PrivateBroker, config: &'a Path) -> [&'a str; 4] {
    [
        "--brokers",
        &broker.bootstrap,
        "--kafka-config",
        config.to_str().unwrap(),
    ]
}

/// Runs the pipeline over `broker` with `properties`, checks every valid visit was reduced
/// once (read back through the same secured connection) and counted in a window.
fn pipeline_works(name: &str, dir: &Path, broker: &PrivateBroker, properties: &[(&str, &str)]) {
    let config = properties_file(dir, &format!("{name}.properties"), properties);
    let run = run_json_lines_pipeline(name, dir, &kafka_args(broker, &config), GENERATE);
    assert!(run.valid > 500, "{} valid visits", run.valid);
    let reduced = broker.cluster(properties).consume(
        &run.reduced,
        run.valid as usize,
        Duration::from_secs(30),
        Duration::from_millis(300),
    );
    assert_eq!(reduced.len() as u64, run.valid);
}

/// Starts each job with `config` and checks it exits non-zero within 30 s with a message
/// containing every one of `expected`, and never the password.
fn every_job_stops_at_start(
    dir: &Path,
    broker: &PrivateBroker,
    config: &Path,
    expected: &[&str],
    password: Option<&str>,
) {
    let kafka = kafka_args(broker, config);
    let jobs = [
        env!("CARGO_BIN_EXE_generator"),
        env!("CARGO_BIN_EXE_synchronizer"),
        env!("CARGO_BIN_EXE_monitor"),
    ]
    .map(|binary| {
        let mut args = kafka.to_vec();
        args.extend(
            ["--sink", "json-lines"]
                .iter()
                .filter(|_| binary.ends_with("monitor")),
        );
        (
            Instant::now(),
            Job::start_without_brokers(binary, &args, dir),
        )
    });
    for (started, mut job) in jobs {
        let status = job.wait(Duration::from_secs(30));
        let log = job.log_text();
        assert!(!status.success(), "{} ran on:\n{log}", job.name);
        assert!(started.elapsed() < Duration::from_secs(30));
        for text in expected {
            assert!(
                log.contains(text),
                "{} said, without {text:?}:\n{log}",
                job.name
            );
        }
        if let Some(password) = password {
            assert!(!log.contains(password), "{} logged the password", job.name);
        }
    }
}

#[test]
fn tls_pipeline_verifies_the_broker_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certificates = Certificates::generate(dir.path());
    let broker = PrivateBroker::start(dir.path(), Wire::Tls, Some(&certificates), &[]);
    let ca = certificates.ca.to_str().unwrap();
    pipeline_works(
        "tls",
        dir.path(),
        &broker,
        &[("security.protocol", "SSL"), ("ssl.ca.location", ca)],
    );
}

#[test]
fn an_untrusted_broker_certificate_stops_every_job_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, config) = broker_with_an_untrusted_certificate(dir.path());
    every_job_stops_at_start(
        dir.path(),
        &broker,
        &config,
        &["certificate is not trusted", "ssl.ca.location"],
        None,
    );
}

#[test]
fn mutual_tls_needs_the_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certificates = Certificates::generate(dir.path());
    let broker = PrivateBroker::start(dir.path(), Wire::MutualTls, Some(&certificates), &[]);
    let ca = certificates.ca.to_str().unwrap();
    let without = properties_file(
        dir.path(),
        "no-client-cert.properties",
        &[("security.protocol", "SSL"), ("ssl.ca.location", ca)],
    );
    every_job_stops_at_start(
        dir.path(),
        &broker,
        &without,
        &["TLS handshake", "ssl.certificate.location"],
        None,
    );
    pipeline_works(
        "mtls",
        dir.path(),
        &broker,
        &[
            ("security.protocol", "SSL"),
            ("ssl.ca.location", ca),
            (
                "ssl.certificate.location",
                certificates.client_cert.to_str().unwrap(),
            ),
            (
                "ssl.key.location",
                certificates.client_key.to_str().unwrap(),
            ),
        ],
    );
}

#[test]
fn scram_sha_512_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let certificates = Certificates::generate(dir.path());
    let user = ScramUser {
        name: "sla-jobs",
        password: "correct horse 512",
        sha: 512,
    };
    let broker = PrivateBroker::start(dir.path(), Wire::Tls, Some(&certificates), &[user]);
    pipeline_works(
        "scram512",
        dir.path(),
        &broker,
        &[
            ("security.protocol", "SASL_SSL"),
            ("ssl.ca.location", certificates.ca.to_str().unwrap()),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "sla-jobs"),
            ("sasl.password", "correct horse 512"),
        ],
    );
}

#[test]
fn scram_sha_256_works_and_a_wrong_password_stops_every_job_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let user = ScramUser {
        name: "sla-jobs",
        password: "correct horse 256",
        sha: 256,
    };
    let broker = PrivateBroker::start(dir.path(), Wire::Plaintext, None, &[user]);
    let sasl = |password| {
        [
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "SCRAM-SHA-256"),
            ("sasl.username", "sla-jobs"),
            ("sasl.password", password),
        ]
    };
    let wrong = properties_file(dir.path(), "wrong.properties", &sasl("battery staple"));
    every_job_stops_at_start(
        dir.path(),
        &broker,
        &wrong,
        &["authentication failed", "sasl.password"],
        Some("battery staple"),
    );
    pipeline_works("scram256", dir.path(), &broker, &sasl("correct horse 256"));
}

#[test]
fn an_unknown_property_in_the_file_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = properties_file(
        dir.path(),
        "typo.properties",
        &[("security.protocol", "SSL"), ("sasl.pasword", "hunter2")],
    );
    let mut job = Job::start_without_brokers(
        env!("CARGO_BIN_EXE_synchronizer"),
        &["--kafka-config", config.to_str().unwrap()],
        dir.path(),
    );
    assert!(!job.wait(Duration::from_secs(10)).success());
    let log = job.log_text();
    assert!(
        log.contains("line 3") && log.contains("sasl.pasword"),
        "{log}"
    );
    assert!(!log.contains("hunter2"), "{log}");
}
