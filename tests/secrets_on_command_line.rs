//! Secrets are taken from the environment or files, never from flags (which every user of the
//! machine can read in the process list), and no refusal repeats a secret.

use std::process::Command;

const SECRET: &str = "hunter2-s3cret";

fn refused(binary: &str, args: &[&str]) -> String {
    let output = Command::new(binary)
        .args(args)
        .env_remove("SLA_KAFKA_PROPERTIES")
        .env_remove("SLA_ES_PASSWORD")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(!output.status.success(), "{binary} {args:?} was accepted");
    assert!(
        !stderr.contains(SECRET) && !String::from_utf8_lossy(&output.stdout).contains(SECRET),
        "{binary} {args:?} repeated the secret:\n{stderr}"
    );
    stderr
}

#[test]
fn a_secret_kafka_property_on_the_command_line_is_refused_without_repeating_it() {
    let property = format!("sasl.password={SECRET}");
    for binary in [
        env!("CARGO_BIN_EXE_monitor"),
        env!("CARGO_BIN_EXE_synchronizer"),
        env!("CARGO_BIN_EXE_generator"),
    ] {
        let stderr = refused(binary, &["-X", &property]);
        assert!(stderr.contains("--kafka-config"), "{binary}: {stderr}");
    }
}

#[test]
fn a_refused_property_is_named_without_its_value() {
    let typo = format!("sasl.pasword={SECRET}");
    let stderr = refused(env!("CARGO_BIN_EXE_monitor"), &["-X", &typo]);
    assert!(stderr.contains("sasl.pasword"), "{stderr}");
    let bad_value = format!("security.protocol={SECRET}");
    let stderr = refused(env!("CARGO_BIN_EXE_synchronizer"), &["-X", &bad_value]);
    assert!(stderr.contains("security.protocol"), "{stderr}");
}

#[test]
fn elasticsearch_secrets_as_flags_are_refused() {
    let monitor = env!("CARGO_BIN_EXE_monitor");
    let stderr = refused(monitor, &["--es-password", SECRET]);
    assert!(stderr.contains("SLA_ES_PASSWORD"), "{stderr}");
    let stderr = refused(monitor, &["--es-api-key", SECRET]);
    assert!(stderr.contains("SLA_ES_API_KEY"), "{stderr}");
}

#[test]
fn credentials_in_the_elasticsearch_url_are_refused_without_being_shown() {
    let url = format!("http://elastic:{SECRET}@127.0.0.1:9");
    // Said before anything waits for Kafka (this broker address answers nothing).
    let stderr = refused(
        env!("CARGO_BIN_EXE_monitor"),
        &["--brokers", "127.0.0.1:9", "--es-url", &url],
    );
    assert!(stderr.contains("--es-username"), "{stderr}");
    assert!(stderr.contains("http://127.0.0.1:9"), "{stderr}");
}

/// Every job and every subcommand that takes a secret refuses it as a flag, the same way (one
/// shared parser): `alerts backtest` and `alerts report` accepted `--es-password` before.
#[test]
fn every_job_and_subcommand_refuses_secret_flags() {
    let jobs = [
        env!("CARGO_BIN_EXE_monitor"),
        env!("CARGO_BIN_EXE_synchronizer"),
        env!("CARGO_BIN_EXE_generator"),
        env!("CARGO_BIN_EXE_alerts"),
    ];
    let dsn = format!("https://{SECRET}@sentry.example/1");
    for binary in jobs {
        let stderr = refused(binary, &["--sentry-dsn", &dsn]);
        assert!(stderr.contains("SENTRY_DSN"), "{binary}: {stderr}");
    }
    let alerts = env!("CARGO_BIN_EXE_alerts");
    for subcommand in [
        &[][..],
        &["backtest", "--from", "1h"][..],
        &["report", "--from", "1d"][..],
    ] {
        for (flag, instead) in [
            ("--es-password", "SLA_ES_PASSWORD"),
            ("--es-api-key", "SLA_ES_API_KEY"),
            ("--sentry-dsn", "SENTRY_DSN"),
        ] {
            let mut args: Vec<&str> = subcommand.to_vec();
            let value = if flag == "--sentry-dsn" {
                dsn.as_str()
            } else {
                SECRET
            };
            args.extend([flag, value]);
            let stderr = refused(alerts, &args);
            assert!(stderr.contains(instead), "alerts {args:?}: {stderr}");
        }
    }
    let stderr = refused(env!("CARGO_BIN_EXE_monitor"), &["--internal-key", SECRET]);
    assert!(stderr.contains("SLA_INTERNAL_KEY"), "{stderr}");
}

/// URLs with credentials are refused on the command line (the environment may carry them),
/// without showing the credentials.
#[test]
fn alertmanager_and_webhook_urls_with_credentials_are_refused_as_flags() {
    let alerts = env!("CARGO_BIN_EXE_alerts");
    let with_credentials = format!("http://am:{SECRET}@127.0.0.1:9");
    let stderr = refused(
        alerts,
        &[
            "--alertmanager-url",
            &format!("http://127.0.0.1:9,{with_credentials}"),
        ],
    );
    assert!(stderr.contains("SLA_ALERTMANAGER_URL"), "{stderr}");
    let stderr = refused(alerts, &["--webhook-url", &with_credentials]);
    assert!(stderr.contains("SLA_ALERT_WEBHOOK_URL"), "{stderr}");
}
