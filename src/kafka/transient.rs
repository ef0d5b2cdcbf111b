//! Which Kafka client errors are worth retrying: the broker was unreachable, slow, moving a
//! coordinator or a leader — as opposed to refused credentials, a missing permission or a
//! client misconfiguration, which no retry fixes.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Whether retrying `error` may succeed once the cluster is back or settled.
pub fn is_transient(error: &KafkaError) -> bool {
    match error {
        KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_) => false,
        KafkaError::Subscription(_) | KafkaError::SetPartitionOffset(_) => false,
        other => !other.rdkafka_error_code().is_some_and(needs_a_change),
    }
}

/// Error codes that say the configuration or the broker's permissions must change.
fn needs_a_change(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::UnsupportedSASLMechanism
            | RDKafkaErrorCode::IllegalSASLState
            | RDKafkaErrorCode::SSL
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
            | RDKafkaErrorCode::InvalidArgument
            | RDKafkaErrorCode::InvalidConfig
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_or_busy_cluster_is_retried() {
        for code in [
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::RequestTimedOut,
            RDKafkaErrorCode::OperationTimedOut,
            RDKafkaErrorCode::NotCoordinator,
            RDKafkaErrorCode::CoordinatorLoadInProgress,
            RDKafkaErrorCode::LeaderNotAvailable,
        ] {
            assert!(
                is_transient(&KafkaError::MessageConsumption(code)),
                "{code:?}"
            );
            assert!(is_transient(&KafkaError::MetadataFetch(code)), "{code:?}");
        }
        assert!(is_transient(&KafkaError::Canceled));
    }

    #[test]
    fn refusals_and_misconfigurations_are_not() {
        for code in [
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::GroupAuthorizationFailed,
            RDKafkaErrorCode::SaslAuthenticationFailed,
            RDKafkaErrorCode::SSL,
        ] {
            assert!(
                !is_transient(&KafkaError::MessageConsumption(code)),
                "{code:?}"
            );
        }
        assert!(!is_transient(&KafkaError::ClientCreation(
            "bad".to_string()
        )));
    }
}
