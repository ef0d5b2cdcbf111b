//! Recognises, among librdkafka's client errors, the ones retrying cannot fix — refused
//! credentials, an untrusted or missing certificate, a TLS handshake that cannot succeed — and
//! says what to change. librdkafka itself retries these forever; the jobs stop at start instead.

use rdkafka::error::RDKafkaErrorCode;
use std::fmt;

/// What kind of security set-up failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityFailureKind {
    /// The broker refused the SASL credentials or mechanism.
    Authentication,
    /// The broker's certificate is not trusted by this client.
    UntrustedCertificate,
    /// The TLS handshake failed for another reason (protocol mismatch, client certificate).
    TlsHandshake,
}

/// A connection failure that needs a configuration change, with librdkafka's own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityFailure {
    /// What failed.
    pub kind: SecurityFailureKind,
    /// librdkafka's description of the failure.
    pub detail: String,
}

impl SecurityFailure {
    /// What the user should change.
    pub fn remedy(&self) -> &'static str {
        match self.kind {
            SecurityFailureKind::Authentication => {
                "check sasl.username and sasl.password (or the OAUTHBEARER token settings) in \
                 --kafka-config or -X, and that sasl.mechanism is one the broker enables"
            }
            SecurityFailureKind::UntrustedCertificate => {
                "set ssl.ca.location to the PEM file of the CA that signed the broker's certificate \
                 (and check the broker's name or IP is in that certificate, or set \
                 ssl.endpoint.identification.algorithm=none only if you accept that risk)"
            }
            SecurityFailureKind::TlsHandshake => {
                "check that security.protocol matches the listener (SSL or SASL_SSL only for TLS \
                 listeners) and, if the broker requires client certificates, set \
                 ssl.certificate.location and ssl.key.location (plus ssl.key.password if the key \
                 is encrypted)"
            }
        }
    }
}

impl fmt::Display for SecurityFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            SecurityFailureKind::Authentication => "Kafka authentication failed",
            SecurityFailureKind::UntrustedCertificate => {
                "the Kafka broker's TLS certificate is not trusted"
            }
            SecurityFailureKind::TlsHandshake => "the TLS handshake with the Kafka broker failed",
        };
        write!(f, "{what}: {}; fix: {}", self.detail, self.remedy())
    }
}

/// Classifies a librdkafka client error: `Some` when retrying cannot help.
pub fn classify(code: Option<RDKafkaErrorCode>, reason: &str) -> Option<SecurityFailure> {
    let kind = match code? {
        RDKafkaErrorCode::Authentication
        | RDKafkaErrorCode::SaslAuthenticationFailed
        | RDKafkaErrorCode::UnsupportedSASLMechanism
        | RDKafkaErrorCode::IllegalSASLState => SecurityFailureKind::Authentication,
        RDKafkaErrorCode::SSL if reason.contains("certificate verify failed") => {
            SecurityFailureKind::UntrustedCertificate
        }
        RDKafkaErrorCode::SSL => SecurityFailureKind::TlsHandshake,
        // A TLS alert from the broker (e.g. "tlsv13 alert certificate required" when it wants
        // a client certificate) arrives as a transport failure after the handshake.
        RDKafkaErrorCode::BrokerTransportFailure
            if reason.contains("SSL routines") && reason.contains(" alert ") =>
        {
            SecurityFailureKind::TlsHandshake
        }
        _ => return None,
    };
    Some(SecurityFailure {
        kind,
        detail: reason.to_string(),
    })
}

/// For a transport error whose cause may be a wrong `security.protocol` (librdkafka says so
/// when a connection drops during its first request), the advice to log with it. Not fatal: a
/// broker restarting at that moment looks the same.
pub fn transport_hint(reason: &str) -> Option<&'static str> {
    reason.contains("incorrect security.protocol").then_some(
        "if this persists, security.protocol probably does not match the broker's listener \
         (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reasons as librdkafka 2.12 reports them (seen against the TLS and SCRAM test brokers).
    const SCRAM_REFUSED: &str = "SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256 (after 2ms in state AUTH_REQ)";
    const UNTRUSTED: &str = "ssl://127.0.0.1:40123/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified, verify that ssl.ca.location is correctly configured or root CA certificates are installed (install ca-certificates package) (after 3ms in state SSL_HANDSHAKE)";
    const CLIENT_CERT_REQUIRED: &str = "ssl://127.0.0.1:19193/bootstrap: Receive failed: error:0A00045C:SSL routines::tlsv13 alert certificate required: SSL alert number 116 (after 0ms in state APIVERSION_QUERY)";
    const WRONG_PROTOCOL: &str = "127.0.0.1:9092/bootstrap: Disconnected while requesting ApiVersion: might be caused by incorrect security.protocol configuration (connecting to a SSL listener?) or broker version is < 0.10 (see api.version.request) (after 1ms in state APIVERSION_QUERY)";

    #[test]
    fn refused_credentials_are_an_authentication_failure() {
        let failure = classify(Some(RDKafkaErrorCode::Authentication), SCRAM_REFUSED).unwrap();
        assert_eq!(failure.kind, SecurityFailureKind::Authentication);
        let message = failure.to_string();
        assert!(message.contains("invalid credentials"), "{message}");
        assert!(message.contains("sasl.password"), "{message}");
    }

    #[test]
    fn an_untrusted_certificate_names_the_ca_setting() {
        let failure = classify(Some(RDKafkaErrorCode::SSL), UNTRUSTED).unwrap();
        assert_eq!(failure.kind, SecurityFailureKind::UntrustedCertificate);
        assert!(failure.to_string().contains("ssl.ca.location"));
    }

    #[test]
    fn other_handshake_failures_point_at_protocol_and_client_certificate() {
        let failure = classify(
            Some(RDKafkaErrorCode::SSL),
            "SSL handshake failed: error:0A00010B:SSL routines::wrong version number",
        )
        .unwrap();
        assert_eq!(failure.kind, SecurityFailureKind::TlsHandshake);
        assert!(failure.to_string().contains("ssl.certificate.location"));
    }

    #[test]
    fn a_tls_alert_from_the_broker_is_a_handshake_failure() {
        let failure = classify(
            Some(RDKafkaErrorCode::BrokerTransportFailure),
            CLIENT_CERT_REQUIRED,
        )
        .unwrap();
        assert_eq!(failure.kind, SecurityFailureKind::TlsHandshake);
        assert!(failure.to_string().contains("ssl.certificate.location"));
    }

    #[test]
    fn transport_errors_are_retried_with_a_hint_when_the_protocol_may_be_wrong() {
        assert_eq!(
            classify(
                Some(RDKafkaErrorCode::BrokerTransportFailure),
                WRONG_PROTOCOL
            ),
            None
        );
        assert!(transport_hint(WRONG_PROTOCOL).is_some());
        assert!(transport_hint("Connection refused (after 0ms in state CONNECT)").is_none());
        assert_eq!(
            classify(Some(RDKafkaErrorCode::AllBrokersDown), "down"),
            None
        );
        assert_eq!(classify(None, "whatever"), None);
    }
}
