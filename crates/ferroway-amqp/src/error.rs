//! Errors of the RabbitMQ connector.

use ferroway::error::Unavailable;

/// Invalid options, found before anything connects.
///
/// ```
/// use ferroway_amqp::{OptionsError, SourceOptions};
/// let e = SourceOptions::new("127.0.0.1:5672", "q").validate().unwrap_err();
/// assert!(matches!(e, OptionsError::UriScheme { .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// The URI has no AMQP scheme.
    #[error(
        "invalid AMQP URI {uri}: it must start with amqp:// (or amqps:// for TLS), e.g. \
         amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    UriScheme {
        /// The URI, password redacted.
        uri: String,
    },
    /// The URI does not parse.
    #[error("invalid AMQP URI {uri}: {reason}")]
    Uri {
        /// The URI, password redacted.
        uri: String,
        /// Why it was refused.
        reason: String,
    },
    /// An option has an invalid value.
    #[error("invalid option `{option}`: {reason}")]
    Invalid {
        /// The option.
        option: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Why an [`AmqpSource`](crate::AmqpSource) stopped. An outage after the broker was first
/// reached is not one of them: the source reconnects.
///
/// ```
/// use std::time::Duration;
/// use ferroway::stage::Producer;
/// use ferroway_amqp::{AmqpSource, SourceOptions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // Nothing listens on port 1.
/// let opts = SourceOptions::new("amqp://guest:pw@127.0.0.1:1", "q").connect_timeout(Duration::from_millis(300));
/// let mut source = AmqpSource::new(opts).unwrap();
/// let e = source.handle_demand(10).await.unwrap_err().to_string();
/// assert!(e.starts_with("RabbitMQ source `q`: could not reach amqp://guest:***@127.0.0.1:1 within"), "{e}");
/// # }
/// ```
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// No connection succeeded within the connect timeout of the first start: a wrong host,
    /// port or credentials, or a broker that is not there.
    #[error(
        "RabbitMQ source `{queue}`: could not reach {uri} within {waited:.1?} of starting; last error: {last_error}"
    )]
    Unreachable {
        /// The queue.
        queue: String,
        /// The URI, password redacted.
        uri: String,
        /// How long the source waited.
        waited: std::time::Duration,
        /// Why the last attempt failed.
        last_error: String,
    },
    /// The reconnect policy ran out of attempts.
    #[error(
        "RabbitMQ source `{queue}`: gave up reconnecting to {uri} (the reconnect backoff ran out); last error: {last_error}"
    )]
    GaveUp {
        /// The queue.
        queue: String,
        /// The URI, password redacted.
        uri: String,
        /// Why the last attempt failed.
        last_error: String,
    },
    /// The broker refused the topology or the consumer: a missing queue or exchange, a
    /// declaration that differs from the existing queue, an exclusive consumer elsewhere, no
    /// permission. Retrying would not help.
    #[error("RabbitMQ source `{queue}` at {uri}: {step} refused: {reason}")]
    Refused {
        /// The queue.
        queue: String,
        /// The URI, password redacted.
        uri: String,
        /// What was refused (`queue.declare`, `queue.bind to exchange …`, `basic.consume`).
        step: String,
        /// The broker's reply (code and text).
        reason: String,
    },
}

/// A publish failed as a whole.
///
/// [`SinkError::Unavailable`] (the broker cannot be reached, the connection dropped, confirms
/// did not come in time) carries a [`ferroway::error::Unavailable`]: returned from a sink,
/// the pipeline keeps the batch and retries it, never dead-letters it.
///
/// ```
/// use ferroway::error::is_unavailable;
/// use ferroway_amqp::{AmqpSink, SinkOptions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let sink = AmqpSink::new(SinkOptions::new("amqp://127.0.0.1:1", "")).unwrap();
/// let e = sink.publish("q", b"x").await.unwrap_err();
/// assert!(is_unavailable(&e));
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The broker cannot be reached or cannot serve now: retry later.
    #[error("RabbitMQ sink `{exchange}`: {source}")]
    Unavailable {
        /// The exchange published to.
        exchange: String,
        /// The outage, with its cause.
        source: Unavailable,
    },
    /// The broker refused the publish as a whole (the exchange does not exist, no
    /// permission): the channel was closed with this reason.
    #[error("RabbitMQ sink `{exchange}`: publish refused: {reason}")]
    Refused {
        /// The exchange published to.
        exchange: String,
        /// The broker's reply (code and text).
        reason: String,
    },
}
