//! Command-line parsing shared by the jobs, with one rule clap cannot express: secrets are
//! accepted from the environment or files, never as flags (a flag's value is visible to every
//! user of the machine in the process list and ends up in shell histories).

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use std::time::Duration;

/// Flags whose value is a secret, each with where to put it instead.
const SECRET_FLAGS: &[(&str, &str, &str)] = &[
    (
        "password",
        "--es-password",
        "set SLA_ES_PASSWORD or --es-password-file",
    ),
    (
        "api_key",
        "--es-api-key",
        "set SLA_ES_API_KEY or --es-api-key-file",
    ),
    (
        "internal_key",
        "--internal-key",
        "set SLA_INTERNAL_KEY or --internal-key-file",
    ),
    (
        "sentry_dsn",
        "--sentry-dsn",
        "set SENTRY_DSN or --sentry-dsn-file (the DSN's key lets anyone send events)",
    ),
];

/// URL flags that may carry credentials (`user:password@`), each with where to put such a URL
/// instead: accepted from the environment, refused on the command line.
const CREDENTIAL_URL_FLAGS: &[(&str, &str, &str)] = &[
    (
        "alertmanager_url",
        "--alertmanager-url",
        "set SLA_ALERTMANAGER_URL in the environment",
    ),
    (
        "webhook_url",
        "--webhook-url",
        "set SLA_ALERT_WEBHOOK_URL in the environment",
    ),
];

/// Parses the command line into `C` like `C::parse()`, then refuses secrets given as flags:
/// prints what to do instead (never the secret) and exits with clap's usage-error status.
pub fn parse<C: CommandFactory + FromArgMatches>() -> C {
    let mut command = C::command();
    let matches = command.get_matches_mut();
    if let Some(problem) = secret_on_command_line(&matches) {
        command
            .error(clap::error::ErrorKind::ArgumentConflict, problem)
            .exit();
    }
    C::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut command).exit())
}

/// What is wrong if `matches` (or the matches of its subcommands, at any depth) took a secret
/// from the command line: a secret flag, a secret `-X` property, or a URL with credentials.
/// Every job and subcommand goes through this one check.
pub fn secret_on_command_line(matches: &ArgMatches) -> Option<String> {
    secret_in(matches).or_else(|| {
        matches
            .subcommand()
            .and_then(|(_, sub)| secret_on_command_line(sub))
    })
}

fn secret_in(matches: &ArgMatches) -> Option<String> {
    let from_command_line = |id: &str| {
        matches.try_contains_id(id).unwrap_or(false)
            && matches.value_source(id) == Some(ValueSource::CommandLine)
    };
    for (id, flag, instead) in CREDENTIAL_URL_FLAGS {
        if !from_command_line(id) {
            continue;
        }
        let urls = matches.get_raw(id).into_iter().flatten();
        for url in urls {
            let url = url.to_string_lossy();
            if url
                .split(',')
                .any(|u| crate::runtime::redact::has_userinfo(u.trim()))
            {
                return Some(format!(
                    "{flag} carries credentials (user:password@), which every user of the \
                     machine can read in the process list: {instead}"
                ));
            }
        }
    }
    for (id, flag, instead) in SECRET_FLAGS {
        if from_command_line(id) {
            return Some(format!(
                "{flag} is not accepted on the command line, where every user of the machine \
                 can read it in the process list: {instead}"
            ));
        }
    }
    if from_command_line("properties") {
        let keys = matches
            .get_many::<(String, String)>("properties")
            .into_iter()
            .flatten()
            .map(|(key, _)| key.as_str());
        for key in keys {
            if is_secret_property(key) {
                return Some(format!(
                    "-X {key}=… is not accepted on the command line, where every user of the \
                     machine can read it in the process list: put it in the --kafka-config file \
                     (or SLA_KAFKA_PROPERTIES)"
                ));
            }
        }
    }
    None
}

/// Whether a librdkafka property holds a secret (passwords, client secrets, private keys).
pub fn is_secret_property(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password")
        || key.contains("secret")
        || key == "ssl.key.pem"
        || key == "ssl_key"
        || key == "sasl.oauthbearer.config"
}

/// A value parser for a duration flag (`10s`, `250ms`) that refuses values outside
/// `[min, max]`, saying the range; clap names the flag in its error. Zero periods (a panic
/// once the job ticks) and durations that overflow a deadline never reach a job.
pub fn duration_in(
    min: Duration,
    max: Duration,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |raw: &str| {
        let value = humantime::parse_duration(raw)
            .map_err(|e| format!("not a duration like 10s or 250ms ({e})"))?;
        if value < min || value > max {
            return Err(format!(
                "must be from {} to {}",
                humantime::format_duration(min),
                humantime::format_duration(max)
            ));
        }
        Ok(value)
    }
}

/// A value parser for a count, size or percentage flag that refuses values outside
/// `[min, max]` (and NaN), saying the range; clap names the flag in its error. Every number
/// an operator can set has a range a job can work with: a count of 0 or 10^18, a percentage
/// of 101, never reach a job.
pub fn number_in<T>(
    min: T,
    max: T,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy + Send + Sync + 'static,
    T::Err: std::fmt::Display,
{
    move |raw: &str| {
        let value: T = raw
            .trim()
            .parse()
            .map_err(|e| format!("not a number ({e})"))?;
        // Written so that NaN (neither above nor below) is refused too.
        if !(value >= min && value <= max) {
            return Err(format!("must be from {min} to {max}"));
        }
        Ok(value)
    }
}

/// A value parser for a size flag (`32MiB`, `512KiB`, plain bytes) that refuses sizes outside
/// `[min, max]`, saying the range.
pub fn bytes_in(
    min: bytesize::ByteSize,
    max: bytesize::ByteSize,
) -> impl Fn(&str) -> Result<bytesize::ByteSize, String> + Clone + Send + Sync + 'static {
    move |raw: &str| {
        let value: bytesize::ByteSize = raw
            .trim()
            .parse()
            .map_err(|e| format!("not a size like 32MiB ({e})"))?;
        if value < min || value > max {
            return Err(format!(
                "must be from {} to {}",
                min.display().iec(),
                max.display().iec()
            ));
        }
        Ok(value)
    }
}

/// Milliseconds as a [`Duration`], for the bounds of [`duration_in`].
pub const fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// Seconds as a [`Duration`], for the bounds of [`duration_in`].
pub const fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

/// One day, the longest most duration flags accept.
pub const DAY: Duration = Duration::from_secs(86_400);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_properties_are_recognised() {
        for key in [
            "sasl.password",
            "ssl.key.password",
            "ssl.keystore.password",
            "sasl.oauthbearer.client.secret",
            "ssl.key.pem",
            "SASL.PASSWORD",
        ] {
            assert!(is_secret_property(key), "{key}");
        }
        for key in ["sasl.username", "security.protocol", "ssl.ca.location"] {
            assert!(!is_secret_property(key), "{key}");
        }
    }

    #[derive(clap::Parser, Debug)]
    struct WithSubcommand {
        #[arg(long, env = "TEST_CLI_ALERTMANAGER_URL", value_delimiter = ',')]
        alertmanager_url: Vec<String>,
        #[command(subcommand)]
        command: Option<Sub>,
    }

    #[derive(clap::Subcommand, Debug)]
    enum Sub {
        Report {
            #[arg(long, hide = true)]
            password: Option<String>,
            #[arg(long)]
            sentry_dsn: Option<String>,
        },
    }

    /// Subcommands are checked like the job itself (`alerts report --es-password …` was not).
    #[test]
    fn secrets_are_refused_in_subcommands_and_urls_with_credentials_on_the_command_line() {
        use clap::CommandFactory;
        let problem = |args: &[&str]| {
            let matches = WithSubcommand::command().get_matches_from(args);
            secret_on_command_line(&matches)
        };
        let text = problem(&["alerts", "report", "--password", "x"]).unwrap();
        assert!(text.contains("SLA_ES_PASSWORD"), "{text}");
        let text = problem(&["alerts", "report", "--sentry-dsn", "https://k@h/1"]).unwrap();
        assert!(text.contains("SENTRY_DSN"), "{text}");
        let text = problem(&[
            "alerts",
            "--alertmanager-url",
            "http://a:9093,http://am:pw@b:9093",
        ])
        .unwrap();
        assert!(
            text.contains("SLA_ALERTMANAGER_URL") && !text.contains("pw"),
            "{text}"
        );
        assert_eq!(
            problem(&["alerts", "--alertmanager-url", "http://a:9093"]),
            None
        );
        assert_eq!(problem(&["alerts", "report"]), None);
    }

    #[test]
    fn a_duration_outside_its_range_is_refused_with_the_range() {
        let parse = duration_in(ms(10), secs(3_600));
        assert_eq!(parse("1s"), Ok(secs(1)));
        assert_eq!(parse("10ms"), Ok(ms(10)));
        assert_eq!(parse("0s"), Err("must be from 10ms to 1h".into()));
        assert_eq!(parse("2h"), Err("must be from 10ms to 1h".into()));
        assert!(parse("soon").unwrap_err().starts_with("not a duration"));
    }

    #[test]
    fn a_number_or_size_outside_its_range_is_refused_with_the_range() {
        let count = number_in(1u64, 1_000);
        assert_eq!(count("7"), Ok(7));
        assert_eq!(count("0"), Err("must be from 1 to 1000".into()));
        assert!(count("-1").unwrap_err().starts_with("not a number"));
        let pct = number_in(0.0f64, 100.0);
        assert_eq!(pct("12.5"), Ok(12.5));
        for bad in ["100.1", "-0.5", "NaN", "inf"] {
            assert!(pct(bad).is_err(), "{bad}");
        }
        let size = bytes_in(bytesize::ByteSize::kib(1), bytesize::ByteSize::gib(4));
        assert_eq!(size("32MiB"), Ok(bytesize::ByteSize::mib(32)));
        assert!(size("0").unwrap_err().starts_with("must be from 1.0 KiB"));
        assert!(size("5GiB").is_err());
    }

    proptest::proptest! {
        /// Whatever an operator types, a bounded flag yields a value within its range or a
        /// refusal naming the range, never a panic.
        #[test]
        fn a_bounded_number_is_within_its_range_or_refused(raw in "[-+0-9.eE]{0,12}|NaN|inf|[a-z]{0,4}") {
            let parse = number_in(2.5f64, 40.0);
            match parse(&raw) {
                Ok(v) => proptest::prop_assert!((2.5..=40.0).contains(&v)),
                Err(e) => proptest::prop_assert!(e.starts_with("must be from") || e.starts_with("not a number")),
            }
            let parse = number_in(1i32, 1_000);
            if let Ok(v) = parse(&raw) {
                proptest::prop_assert!((1..=1_000).contains(&v));
            }
        }
    }

    #[derive(clap::Parser, Debug)]
    struct Flags {
        #[arg(long, value_parser = duration_in(ms(10), secs(3_600)))]
        commit_interval: Duration,
    }

    #[test]
    fn the_refusal_names_the_flag() {
        use clap::Parser;
        let error = Flags::try_parse_from(["job", "--commit-interval", "0s"]).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("--commit-interval"), "{text}");
        assert!(text.contains("must be from 10ms to 1h"), "{text}");
    }
}
