//! librdkafka client properties from the user: `-X key=value` flags and `--kafka-config FILE`
//! (one `key=value` per line, like kcat's `-F`), each checked against librdkafka at start so
//! that a typo or an unsupported value is an error naming what to fix, never a silent default.
//! Values are never echoed in messages: they may be passwords.

use rdkafka::ClientConfig;
use std::path::{Path, PathBuf};

/// Where librdkafka's client properties are documented (named in error messages).
pub const PROPERTIES_REFERENCE: &str =
    "https://github.com/confluentinc/librdkafka/blob/master/CONFIGURATION.md";

/// One `key=value` client property.
pub type Property = (String, String);

/// A `--kafka-config` file, read and checked: its path and its properties in file order.
/// Its `Debug` shows secret properties' values as `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct PropertiesFile {
    /// The file as given on the command line.
    pub path: PathBuf,
    /// Its properties, in file order (a later line overrides an earlier one).
    pub properties: Vec<Property>,
}

impl std::fmt::Debug for PropertiesFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PropertiesFile")
            .field("path", &self.path)
            .field("properties", &RedactedProperties(&self.properties))
            .finish()
    }
}

/// Properties for `Debug`: a secret property's value (see
/// [`crate::runtime::cli::is_secret_property`]) shows as `[redacted]`.
pub struct RedactedProperties<'a>(pub &'a [Property]);

impl std::fmt::Debug for RedactedProperties<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(key, value)| {
                let shown = if crate::runtime::cli::is_secret_property(key) {
                    "[redacted]"
                } else {
                    value.as_str()
                };
                (key.as_str(), shown)
            }))
            .finish()
    }
}

impl PropertiesFile {
    /// Reads, parses and checks `path`; the error says which line is wrong and why.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read Kafka client properties from {}: {e}",
                path.display()
            )
        })?;
        let properties = parse_properties(&text)
            .and_then(|properties| {
                for (line, (key, value)) in &properties {
                    check_property(key, value).map_err(|e| format!("line {line}: {e}"))?;
                }
                Ok(properties)
            })
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(PropertiesFile {
            path: path.to_path_buf(),
            properties: properties.into_iter().map(|(_, p)| p).collect(),
        })
    }
}

/// clap value parser of `--kafka-config`.
pub fn parse_properties_file(raw: &str) -> Result<PropertiesFile, String> {
    PropertiesFile::read(Path::new(raw))
}

/// Parses properties text: `key=value` lines; blank lines and lines starting with `#` or `!`
/// are ignored; whitespace around the key and the value is trimmed (the value keeps any `=`).
/// Returns each property with its 1-based line number.
pub fn parse_properties(text: &str) -> Result<Vec<(usize, Property)>, String> {
    let mut properties = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let number = index + 1;
        match line.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                properties.push((number, (key.trim().to_string(), value.trim().to_string())));
            }
            _ => {
                return Err(format!(
                    "line {number}: expected key=value (a librdkafka property such as \
                     security.protocol=SASL_SSL)"
                ))
            }
        }
    }
    Ok(properties)
}

/// clap value parser of `-X key=value`: [`parse_property`], with errors that never repeat
/// the raw argument (clap's own message would quote it whole, value included, and the value
/// may be a secret).
#[derive(Debug, Clone, Copy)]
pub struct PropertyParser;

impl clap::builder::TypedValueParser for PropertyParser {
    type Value = Property;

    fn parse_ref(
        &self,
        command: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Property, clap::Error> {
        let refused = |message: String| {
            let mut command = command.clone();
            command.error(
                clap::error::ErrorKind::ValueValidation,
                format!("-X: {message}"),
            )
        };
        let raw = value
            .to_str()
            .ok_or_else(|| refused("the property is not valid UTF-8".to_string()))?;
        parse_property(raw).map_err(refused)
    }
}

/// One `-X key=value` property: split at the first `=`, then checked.
pub fn parse_property(raw: &str) -> Result<Property, String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            let (key, value) = (key.trim().to_string(), value.to_string());
            check_property(&key, &value)?;
            Ok((key, value))
        }
        _ => Err(
            "expected KEY=VALUE (a librdkafka property such as security.protocol=SSL)".to_string(),
        ),
    }
}

/// Asks librdkafka whether it knows `key` and accepts `value` (e.g. `security.protocol=SSL`
/// needs TLS support built in). The message names the key, never the value.
pub fn check_property(key: &str, value: &str) -> Result<(), String> {
    let mut config = ClientConfig::new();
    config.set(key, value);
    match config.create_native_config() {
        Ok(_) => Ok(()),
        Err(rdkafka::error::KafkaError::ClientConfig(_, description, _, _)) => Err(format!(
            "Kafka client property {key:?} refused by librdkafka: {} (see {PROPERTIES_REFERENCE})",
            without_quoted_value(&description, value)
        )),
        Err(other) => Err(format!("Kafka client property {key:?}: {other}")),
    }
}

/// librdkafka quotes the refused value in some messages ("Invalid value \"x\" for ..."); keep
/// it out in case it is a secret.
fn without_quoted_value(description: &str, value: &str) -> String {
    if value.is_empty() {
        return description.to_string();
    }
    description.replace(&format!("\"{value}\""), "(value hidden)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn lines_comments_and_equals_in_values() {
        let text = "# SASL over TLS\n\n security.protocol = SASL_SSL \n! also a comment\nsasl.password=a=b=c\r\n";
        let parsed = parse_properties(text).unwrap();
        assert_eq!(
            parsed,
            vec![
                (3, ("security.protocol".into(), "SASL_SSL".into())),
                (5, ("sasl.password".into(), "a=b=c".into())),
            ]
        );
    }

    #[test]
    fn a_line_without_equals_names_its_number() {
        let err = parse_properties("a=b\njust-a-word\n").unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
    }

    #[test]
    fn unknown_property_is_refused_without_echoing_its_value() {
        let err = parse_property("sasl.pasword=hunter2").unwrap_err();
        assert!(err.contains("sasl.pasword"), "{err}");
        assert!(err.contains("No such configuration property"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn invalid_value_is_refused_without_echoing_it() {
        let err = parse_property("security.protocol=TLS").unwrap_err();
        assert!(err.contains("security.protocol"), "{err}");
        assert!(!err.contains("\"TLS\""), "{err}");
    }

    #[test]
    fn tls_sasl_and_every_codec_are_built_in() {
        for (key, value) in [
            ("security.protocol", "SASL_SSL"),
            ("security.protocol", "SSL"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.mechanism", "SCRAM-SHA-256"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.mechanism", "OAUTHBEARER"),
            ("compression.type", "gzip"),
            ("compression.type", "snappy"),
            ("compression.type", "lz4"),
            ("compression.type", "zstd"),
        ] {
            check_property(key, value).unwrap_or_else(|e| panic!("{key}={value}: {e}"));
        }
    }

    #[test]
    fn file_is_read_and_checked_with_line_numbers() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "security.protocol=SSL\nssl.ca.location=/tmp/ca.pem").unwrap();
        let read = PropertiesFile::read(file.path()).unwrap();
        assert_eq!(read.properties.len(), 2);

        let mut bad = tempfile::NamedTempFile::new().unwrap();
        writeln!(bad, "security.protocol=SSL\n\nno.such.thing=1").unwrap();
        let err = PropertiesFile::read(bad.path()).unwrap_err();
        assert!(
            err.contains("line 3") && err.contains("no.such.thing"),
            "{err}"
        );
    }

    #[test]
    fn unreadable_file_says_which() {
        let err = parse_properties_file("/nonexistent/kafka.properties").unwrap_err();
        assert!(err.contains("/nonexistent/kafka.properties"), "{err}");
    }
}
