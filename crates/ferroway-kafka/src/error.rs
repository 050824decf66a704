//! Errors of the Kafka connector, and how Kafka errors are classified.

use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};

/// An option was invalid. Raised before anything connects, naming the option in Kafka's terms
/// (e.g. `group.id`, `security.sasl.username`, `properties[enable.auto.commit]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Kafka option `{option}`: {reason}")]
pub struct ConfigError {
    /// The option.
    pub option: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(option: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            option: option.into(),
            reason: reason.into(),
        }
    }
}

/// Whether retrying an operation that failed with an error may succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient (a broker down, a leader moving, a timeout): retrying may succeed.
    Retryable,
    /// Permanent (authorization, a record too large, an unknown topic, a fenced producer):
    /// retrying the same thing fails the same way.
    Fatal,
}

/// An error of the Kafka connector. Never contains a secret: client configuration errors
/// have the values of sensitive properties redacted.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaError {
    /// An option was invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// librdkafka rejected the client configuration or could not create the client.
    #[error("could not create the Kafka client: {0}")]
    Client(String),
    /// An operation on the broker failed.
    #[error("Kafka {operation} failed ({class:?}): {message}")]
    Broker {
        /// What was attempted, e.g. `produce`, `commit`, `create topics`.
        operation: &'static str,
        /// Retryable or fatal.
        class: ErrorClass,
        /// librdkafka's error code, if any.
        code: Option<RDKafkaErrorCode>,
        /// The error's text.
        message: String,
    },
}

impl KafkaError {
    /// Retryable or fatal; configuration and client creation errors are fatal.
    pub fn class(&self) -> ErrorClass {
        match self {
            KafkaError::Broker { class, .. } => *class,
            _ => ErrorClass::Fatal,
        }
    }

    /// True when retrying may succeed.
    pub fn is_retryable(&self) -> bool {
        self.class() == ErrorClass::Retryable
    }

    pub(crate) fn broker(operation: &'static str, e: &RdKafkaError) -> Self {
        KafkaError::Broker {
            operation,
            class: classify(e),
            code: e.rdkafka_error_code(),
            message: e.to_string(),
        }
    }

    /// Maps a client creation error, redacting the value of a sensitive property.
    pub(crate) fn client(e: RdKafkaError) -> Self {
        match e {
            RdKafkaError::ClientConfig(_, desc, key, value) => {
                let value = if crate::options::is_sensitive_key(&key) {
                    crate::options::REDACTED.to_owned()
                } else {
                    value
                };
                let desc = if crate::options::is_sensitive_key(&key) {
                    "invalid value".to_owned()
                } else {
                    desc
                };
                KafkaError::Client(format!("property `{key}` = `{value}`: {desc}"))
            }
            other => KafkaError::Client(other.to_string()),
        }
    }
}

/// Classifies a librdkafka error as [`Retryable`](ErrorClass::Retryable) or
/// [`Fatal`](ErrorClass::Fatal).
///
/// Errors librdkafka itself marks fatal, authorization and authentication failures, invalid
/// or too large records, unknown topics and fenced or invalid producer states are fatal;
/// timeouts, full queues, leadership changes and transport failures are retryable. Anything
/// unknown is treated as retryable (bounded by the caller's retry budget).
pub fn classify(e: &RdKafkaError) -> ErrorClass {
    match e.rdkafka_error_code() {
        Some(code) => classify_code(code),
        None => match e {
            RdKafkaError::ClientConfig(..)
            | RdKafkaError::ClientCreation(_)
            | RdKafkaError::Subscription(_)
            | RdKafkaError::Canceled
            | RdKafkaError::Nul(_) => ErrorClass::Fatal,
            _ => ErrorClass::Retryable,
        },
    }
}

/// Classifies a librdkafka error code; see [`classify`].
pub fn classify_code(code: RDKafkaErrorCode) -> ErrorClass {
    use RDKafkaErrorCode as C;
    match code {
        C::Fatal
        | C::Authentication
        | C::SaslAuthenticationFailed
        | C::TopicAuthorizationFailed
        | C::GroupAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::TransactionalIdAuthorizationFailed
        | C::UnsupportedSASLMechanism
        | C::IllegalSASLState
        | C::MessageSizeTooLarge
        | C::InvalidMessageSize
        | C::InvalidMessage
        | C::InvalidRecord
        | C::InvalidTopic
        | C::UnknownTopic
        | C::UnknownPartition
        | C::InvalidRequiredAcks
        | C::InvalidArgument
        | C::InvalidConfig
        | C::ProducerFenced
        | C::InvalidProducerEpoch
        | C::InvalidTransactionalState
        | C::InvalidProducerIdMapping
        | C::TransactionCoordinatorFenced
        | C::UnsupportedVersion
        | C::UnsupportedFeature
        | C::UnsupportedForMessageFormat
        | C::PolicyViolation
        | C::AutoOffsetReset
        | C::Conflict => ErrorClass::Fatal,
        _ => ErrorClass::Retryable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(classify_code(RDKafkaErrorCode::MessageTimedOut), ErrorClass::Retryable);
        assert_eq!(classify_code(RDKafkaErrorCode::QueueFull), ErrorClass::Retryable);
        assert_eq!(
            classify_code(RDKafkaErrorCode::NotLeaderForPartition),
            ErrorClass::Retryable
        );
        assert_eq!(classify_code(RDKafkaErrorCode::MessageSizeTooLarge), ErrorClass::Fatal);
        assert_eq!(
            classify_code(RDKafkaErrorCode::TopicAuthorizationFailed),
            ErrorClass::Fatal
        );
        let e = RdKafkaError::MessageProduction(RDKafkaErrorCode::BrokerTransportFailure);
        assert!(KafkaError::broker("produce", &e).is_retryable());
    }

    #[test]
    fn client_config_errors_redact_sensitive_values() {
        let e = RdKafkaError::ClientConfig(
            rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "bad value hunter2".into(),
            "sasl.password".into(),
            "hunter2".into(),
        );
        let shown = KafkaError::client(e).to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("sasl.password"), "{shown}");
    }
}
