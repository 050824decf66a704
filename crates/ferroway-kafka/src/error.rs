//! Errors of the Kafka connector, and how Kafka errors are classified.

use std::fmt;
use std::sync::Arc;

use ferroway::error::Unavailable;
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

/// What a Kafka error is about, which decides what to do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Kafka cannot take or give records now: a broker down or unreachable, a timeout, a
    /// leader moving, a full queue, a topic that does not exist (yet). Waiting may fix it, and
    /// the records are fine: never a reason to fail or dead-letter them.
    Unavailable,
    /// This record is refused (too large, invalid, an invalid topic name, a partition that does
    /// not exist, a broker policy): sending it again fails the same way.
    Rejected,
    /// The client cannot go on: invalid configuration, failed authentication or authorization,
    /// a fenced or otherwise fatally failed producer, an unsupported broker version.
    Fatal,
}

/// The [`Unavailable`] in the source chain of [`KafkaError::Unavailable`]: what makes
/// [`ferroway::error::is_unavailable`] true for it, so a pipeline keeps the messages and tries
/// again rather than failing them. Displays as the `Unavailable` it holds.
#[derive(Debug, Clone)]
pub struct Outage(Arc<Unavailable>);

impl Outage {
    fn new(servers: &str, cause: String) -> Self {
        Outage(Arc::new(Unavailable::new(format!("Kafka at {servers}"), cause)))
    }

    /// The error a pipeline recognises.
    pub fn unavailable(&self) -> &Unavailable {
        &self.0
    }
}

impl fmt::Display for Outage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Outage {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// An error of the Kafka connector. Never contains a secret: the values of sensitive
/// properties are redacted.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaError {
    /// An option was invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// librdkafka refused a property (an unknown name, a value out of range, a combination it
    /// does not accept) when the client was built.
    #[error("invalid Kafka property `{property}` = `{value}`: {reason}")]
    Property {
        /// The librdkafka property, e.g. `fetch.wait.max.ms`.
        property: String,
        /// Its value (`<redacted>` for a sensitive property).
        value: String,
        /// librdkafka's explanation.
        reason: String,
    },
    /// librdkafka could not create the client for another reason.
    #[error("could not create the Kafka client: {0}")]
    Client(String),
    /// Kafka cannot take or give records now (class [`ErrorClass::Unavailable`]): its source
    /// chain holds a [`ferroway::error::Unavailable`], so returned from a handler or a
    /// dead-letter sink it makes the pipeline keep the messages and try again with backoff.
    #[error("Kafka {operation} failed: {cause}")]
    Unavailable {
        /// What was attempted, e.g. `produce`, `connect`.
        operation: &'static str,
        /// librdkafka's error code, if any.
        code: Option<RDKafkaErrorCode>,
        /// Where, and why (`Kafka at HOST:PORT is unavailable: ...`).
        #[source]
        cause: Outage,
    },
    /// An operation failed in a way waiting does not fix: a record refused
    /// ([`ErrorClass::Rejected`]) or a client that cannot go on ([`ErrorClass::Fatal`]).
    #[error("Kafka {operation} failed ({class:?}): {message}")]
    Broker {
        /// What was attempted, e.g. `produce`, `commit`, `consume`.
        operation: &'static str,
        /// Rejected or fatal.
        class: ErrorClass,
        /// librdkafka's error code, if any.
        code: Option<RDKafkaErrorCode>,
        /// The error's text.
        message: String,
    },
}

impl KafkaError {
    /// What the error is about; configuration and client creation errors are fatal.
    pub fn class(&self) -> ErrorClass {
        match self {
            KafkaError::Unavailable { .. } => ErrorClass::Unavailable,
            KafkaError::Broker { class, .. } => *class,
            _ => ErrorClass::Fatal,
        }
    }

    /// True when Kafka could not be reached or could not take the records now (same as
    /// [`ferroway::error::is_unavailable`] on it).
    pub fn is_unavailable(&self) -> bool {
        self.class() == ErrorClass::Unavailable
    }

    /// An error of `operation` against the cluster at `servers`, classified by its code.
    pub(crate) fn broker(operation: &'static str, e: &RdKafkaError, servers: &str) -> Self {
        Self::from_code(operation, e.rdkafka_error_code(), classify(e), e.to_string(), servers)
    }

    pub(crate) fn from_code(
        operation: &'static str,
        code: Option<RDKafkaErrorCode>,
        class: ErrorClass,
        message: String,
        servers: &str,
    ) -> Self {
        match class {
            ErrorClass::Unavailable => KafkaError::Unavailable {
                operation,
                code,
                cause: Outage::new(servers, message),
            },
            class => KafkaError::Broker {
                operation,
                class,
                code,
                message,
            },
        }
    }

    /// Maps a client creation error, redacting the value of a sensitive property.
    pub(crate) fn client(e: RdKafkaError) -> Self {
        match e {
            RdKafkaError::ClientConfig(_, reason, property, value) => {
                let secret = crate::options::is_sensitive_key(&property);
                KafkaError::Property {
                    value: if secret {
                        crate::options::REDACTED.to_owned()
                    } else {
                        value
                    },
                    reason: if secret { "invalid value".to_owned() } else { reason },
                    property,
                }
            }
            other => KafkaError::Client(other.to_string()),
        }
    }
}

/// Classifies a librdkafka error: see [`classify_code`]. Errors without a code are client
/// errors (configuration, subscription): fatal.
pub fn classify(e: &RdKafkaError) -> ErrorClass {
    match e.rdkafka_error_code() {
        Some(code) => classify_code(code),
        None => match e {
            RdKafkaError::ClientConfig(..)
            | RdKafkaError::ClientCreation(_)
            | RdKafkaError::Subscription(_)
            | RdKafkaError::Canceled
            | RdKafkaError::Nul(_) => ErrorClass::Fatal,
            _ => ErrorClass::Unavailable,
        },
    }
}

/// Classifies a librdkafka error code.
///
/// - [`Rejected`](ErrorClass::Rejected): the record is too large, invalid or corrupt, has an
///   invalid timestamp, names an invalid topic or a partition that does not exist, or breaks a
///   broker policy.
/// - [`Fatal`](ErrorClass::Fatal): authentication and authorization failures, invalid
///   configuration, fenced or fatally failed producers, unsupported versions or features, a
///   partition without committed offset under `auto.offset.reset=error`.
/// - [`Unavailable`](ErrorClass::Unavailable): everything else — transport failures, every
///   broker down, timeouts (a record not delivered within `delivery.timeout.ms` included),
///   full queues, leaders moving, not enough replicas, a topic that does not exist (yet),
///   throttling — and any code not listed. Unknown errors wait rather than fail records.
pub fn classify_code(code: RDKafkaErrorCode) -> ErrorClass {
    use RDKafkaErrorCode as C;
    match code {
        C::BadMessage
        | C::BadCompression
        | C::InvalidMessage
        | C::InvalidMessageSize
        | C::MessageSizeTooLarge
        | C::MessageBatchTooLarge
        | C::InvalidRecord
        | C::InvalidTimestamp
        | C::InvalidTopic
        | C::UnknownPartition
        | C::InvalidArgument
        | C::PolicyViolation
        | C::UnsupportedForMessageFormat
        | C::KeySerialization
        | C::ValueSerialization => ErrorClass::Rejected,
        C::Fatal
        | C::Authentication
        | C::SaslAuthenticationFailed
        | C::UnsupportedSASLMechanism
        | C::IllegalSASLState
        | C::UnacceptableCredential
        | C::TopicAuthorizationFailed
        | C::GroupAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::TransactionalIdAuthorizationFailed
        | C::InvalidRequiredAcks
        | C::InvalidConfig
        | C::InvalidGroupId
        | C::InvalidSessionTimeout
        | C::ProducerFenced
        | C::Fenced
        | C::FencedInstanceId
        | C::InvalidProducerEpoch
        | C::InvalidTransactionalState
        | C::InvalidProducerIdMapping
        | C::TransactionCoordinatorFenced
        | C::GaplessGuarantee
        | C::UnsupportedVersion
        | C::UnsupportedFeature
        | C::UnsupportedCompressionType
        | C::AutoOffsetReset
        | C::Conflict => ErrorClass::Fatal,
        _ => ErrorClass::Unavailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        use RDKafkaErrorCode as C;
        for c in [
            C::MessageTimedOut,
            C::QueueFull,
            C::AllBrokersDown,
            C::BrokerTransportFailure,
            C::UnknownTopic,
            C::NotLeaderForPartition,
        ] {
            assert_eq!(classify_code(c), ErrorClass::Unavailable, "{c:?}");
        }
        for c in [
            C::MessageSizeTooLarge,
            C::InvalidRecord,
            C::InvalidTopic,
            C::UnknownPartition,
        ] {
            assert_eq!(classify_code(c), ErrorClass::Rejected, "{c:?}");
        }
        assert_eq!(classify_code(C::TopicAuthorizationFailed), ErrorClass::Fatal);
    }

    #[test]
    fn unavailable_errors_carry_ferroways_unavailable() {
        let e = RdKafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        let k = KafkaError::broker("produce", &e, "127.0.0.1:9092");
        assert!(k.is_unavailable());
        assert!(ferroway::error::is_unavailable(&k), "found through the source chain");
        let shown = ferroway::error::Chain(&k).to_string();
        assert!(
            shown.contains("127.0.0.1:9092") && shown.contains("timed out"),
            "{shown}"
        );
        let boxed: ferroway::BoxError = Box::new(k);
        assert!(ferroway::error::is_unavailable(&*boxed));

        let e = RdKafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        let k = KafkaError::broker("produce", &e, "127.0.0.1:9092");
        assert_eq!(k.class(), ErrorClass::Rejected);
        assert!(!ferroway::error::is_unavailable(&k));
    }

    #[test]
    fn client_config_errors_name_the_property_and_redact_sensitive_values() {
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
