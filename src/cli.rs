//! Command-line parsing shared by the jobs, with one rule clap cannot express: secrets are
//! accepted from the environment or files, never as flags (a flag's value is visible to every
//! user of the machine in the process list and ends up in shell histories).

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

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

/// What is wrong if `matches` took a secret from the command line.
pub fn secret_on_command_line(matches: &ArgMatches) -> Option<String> {
    let from_command_line = |id: &str| {
        matches.try_contains_id(id).unwrap_or(false)
            && matches.value_source(id) == Some(ValueSource::CommandLine)
    };
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
}
