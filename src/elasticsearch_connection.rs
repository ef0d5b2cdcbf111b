//! Elasticsearch connection settings: URL, index, and credentials taken from the environment
//! or from files outside the repository (never from flags' literal values in scripts). Used by
//! the monitor's sink and by the alert evaluator alike.

use crate::runtime::cli::{duration_in, ms, secs};
use crate::runtime::redact::Secret;
use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::Elasticsearch;
use std::path::PathBuf;
use std::time::Duration;

/// Elasticsearch flags of the monitor.
#[derive(Debug, Clone, clap::Args)]
pub struct ElasticsearchArgs {
    /// Elasticsearch URL (http:// or https://).
    #[arg(
        long = "es-url",
        env = "SLA_ES_URL",
        default_value = "http://127.0.0.1:9200"
    )]
    pub url: String,

    /// Index the window documents are written to.
    #[arg(
        long = "es-index",
        env = "SLA_ES_INDEX",
        default_value = "visits_sync_sla"
    )]
    pub index: String,

    /// User for basic authentication; the password comes from SLA_ES_PASSWORD or --es-password-file.
    #[arg(long = "es-username", env = "SLA_ES_USERNAME")]
    pub username: Option<String>,

    /// Password for basic authentication (environment only).
    #[arg(
        long = "es-password",
        env = "SLA_ES_PASSWORD",
        hide = true,
        hide_env_values = true
    )]
    pub password: Option<Secret>,

    /// File holding the basic-authentication password.
    #[arg(long = "es-password-file", env = "SLA_ES_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,

    /// API key (base64 "id:key" as shown by Elasticsearch), environment only.
    #[arg(
        long = "es-api-key",
        env = "SLA_ES_API_KEY",
        hide = true,
        hide_env_values = true
    )]
    pub api_key: Option<Secret>,

    /// File holding the encoded API key.
    #[arg(long = "es-api-key-file", env = "SLA_ES_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,

    /// PEM file of the CA that signed the cluster's certificate (for https:// URLs).
    #[arg(long = "es-ca-cert", env = "SLA_ES_CA_CERT")]
    pub ca_cert: Option<PathBuf>,

    /// Timeout of each request to Elasticsearch, e.g. 30s.
    #[arg(long = "es-timeout", env = "SLA_ES_TIMEOUT", default_value = "30s", value_parser = duration_in(ms(100), secs(600)))]
    pub timeout: Duration,
}

/// A misconfiguration, with what to fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

fn read_secret(path: &PathBuf, what: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| ConfigError(format!("reading the {what} from {}: {e}", path.display())))
}

impl ElasticsearchArgs {
    /// The credentials to use, if any; refuses ambiguous or incomplete settings.
    pub fn credentials(&self) -> Result<Option<Credentials>, ConfigError> {
        let api_key = match (&self.api_key, &self.api_key_file) {
            (Some(k), None) => Some(k.expose().to_string()),
            (None, Some(f)) => Some(read_secret(f, "API key")?),
            (Some(_), Some(_)) => {
                return Err(ConfigError(
                    "set either SLA_ES_API_KEY or --es-api-key-file, not both".into(),
                ))
            }
            (None, None) => None,
        };
        let password = match (&self.password, &self.password_file) {
            (Some(p), None) => Some(p.expose().to_string()),
            (None, Some(f)) => Some(read_secret(f, "password")?),
            (Some(_), Some(_)) => {
                return Err(ConfigError(
                    "set either SLA_ES_PASSWORD or --es-password-file, not both".into(),
                ))
            }
            (None, None) => None,
        };
        match (api_key, &self.username, password) {
            (Some(_), Some(_), _) => Err(ConfigError(
                "use either an API key or a username and password, not both".into(),
            )),
            (Some(key), None, None) => Ok(Some(Credentials::EncodedApiKey(key))),
            (Some(_), None, Some(_)) => Err(ConfigError(
                "a password was given without --es-username".into(),
            )),
            (None, Some(user), Some(password)) => {
                Ok(Some(Credentials::Basic(user.clone(), password)))
            }
            (None, Some(user), None) => Err(ConfigError(format!(
                "--es-username {user} needs a password: set SLA_ES_PASSWORD or --es-password-file"
            ))),
            (None, None, Some(_)) => Err(ConfigError(
                "a password was given without --es-username".into(),
            )),
            (None, None, None) => Ok(None),
        }
    }

    /// A client for these settings.
    pub fn client(&self) -> Result<Elasticsearch, ConfigError> {
        if crate::runtime::redact::has_userinfo(&self.url) {
            return Err(ConfigError(format!(
                "--es-url {} carries credentials (user:password@), which would be logged and \
                 shown: give them as --es-username with SLA_ES_PASSWORD or --es-password-file",
                crate::runtime::redact::without_userinfo(&self.url)
            )));
        }
        let url = self.url.parse().map_err(|e| {
            ConfigError(format!(
                "--es-url {:?} is not a URL: {e}",
                crate::runtime::redact::without_userinfo(&self.url)
            ))
        })?;
        let mut builder =
            TransportBuilder::new(SingleNodeConnectionPool::new(url)).timeout(self.timeout);
        if let Some(credentials) = self.credentials()? {
            builder = builder.auth(credentials);
        }
        if let Some(path) = &self.ca_cert {
            let pem = std::fs::read(path).map_err(|e| {
                ConfigError(format!("reading --es-ca-cert {}: {e}", path.display()))
            })?;
            let cert = Certificate::from_pem(&pem).map_err(|e| {
                ConfigError(format!(
                    "--es-ca-cert {} is not a PEM certificate: {e}",
                    path.display()
                ))
            })?;
            builder = builder.cert_validation(CertificateValidation::Full(cert));
        }
        let transport = builder
            .build()
            .map_err(|e| ConfigError(format!("building the Elasticsearch client: {e}")))?;
        Ok(Elasticsearch::new(transport))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        es: ElasticsearchArgs,
    }

    fn parse(args: &[&str]) -> ElasticsearchArgs {
        let mut all = vec!["x"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap().es
    }

    #[test]
    fn credentials_from_flags_and_files() {
        assert!(parse(&[]).credentials().unwrap().is_none());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let basic = parse(&[
            "--es-username",
            "elastic",
            "--es-password-file",
            file.to_str().unwrap(),
        ]);
        assert!(
            matches!(basic.credentials().unwrap(), Some(Credentials::Basic(u, p)) if u == "elastic" && p == "s3cret")
        );
        let key = parse(&["--es-api-key-file", file.to_str().unwrap()]);
        assert!(
            matches!(key.credentials().unwrap(), Some(Credentials::EncodedApiKey(k)) if k == "s3cret")
        );
    }

    #[test]
    fn incomplete_or_ambiguous_credentials_say_what_to_fix() {
        let err = parse(&["--es-username", "elastic"])
            .credentials()
            .unwrap_err()
            .to_string();
        assert!(err.contains("SLA_ES_PASSWORD"), "{err}");
        let err = parse(&[
            "--es-password-file",
            "/nonexistent/pw",
            "--es-username",
            "u",
        ])
        .credentials()
        .unwrap_err()
        .to_string();
        assert!(err.contains("/nonexistent/pw"), "{err}");
        assert!(parse(&["--es-url", "not a url"]).client().is_err());
    }
}
