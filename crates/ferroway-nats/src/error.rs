//! Errors of the NATS connector.

use ferroway::error::Unavailable;

/// Invalid options, found before anything connects.
///
/// ```
/// use ferroway_nats::{JetStreamOptions, OptionsError};
/// let e = JetStreamOptions::new("http://127.0.0.1:4222", "S", "d").validate().unwrap_err();
/// assert!(matches!(e, OptionsError::Url { .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// The URL is not a NATS URL.
    #[error("invalid NATS URL {url}: {reason}")]
    Url {
        /// The URL, passwords redacted.
        url: String,
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

/// Why a NATS source stopped. An outage after a server was first reached is not one of them:
/// the client reconnects and the source waits.
///
/// ```
/// use std::time::Duration;
/// use ferroway::stage::Producer;
/// use ferroway_nats::{JetStreamOptions, JetStreamSource};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // Nothing listens on port 1.
/// let opts = JetStreamOptions::new("nats://app:pw@127.0.0.1:1", "S", "d").connect_timeout(Duration::from_millis(300));
/// let mut source = JetStreamSource::new(opts).unwrap();
/// let e = source.handle_demand(10).await.unwrap_err().to_string();
/// assert!(e.starts_with("NATS source `S/d`: could not reach nats://app:***@127.0.0.1:1 within"), "{e}");
/// # }
/// ```
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// No connection succeeded within the connect timeout of the first start.
    #[error("NATS source `{what}`: could not reach {url} within {waited:.1?} of starting; last error: {last_error}")]
    Unreachable {
        /// The stream and consumer, or the subjects.
        what: String,
        /// The URL, passwords redacted.
        url: String,
        /// How long the source waited.
        waited: std::time::Duration,
        /// Why the last attempt failed.
        last_error: String,
    },
    /// The server refused: no such stream, a consumer configuration it rejects, no
    /// permission. Retrying would not help.
    #[error("NATS source `{what}` at {url}: {step} refused: {reason}")]
    Refused {
        /// The stream and consumer, or the subjects.
        what: String,
        /// The URL, passwords redacted.
        url: String,
        /// What was refused.
        step: String,
        /// The server's answer.
        reason: String,
    },
}

/// A publish failed as a whole.
///
/// [`SinkError::Unavailable`] (no server, no publish ack in time, no responders for the
/// subject's stream) carries a [`ferroway::error::Unavailable`]: the pipeline keeps the batch
/// and retries it, never dead-letters it.
///
/// ```
/// use ferroway::error::is_unavailable;
/// use ferroway_nats::{NatsSink, SinkOptions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let sink = NatsSink::new(SinkOptions::new("nats://127.0.0.1:1", "s")).unwrap();
/// let e = sink.publish("s", b"x").await.unwrap_err();
/// assert!(is_unavailable(&e));
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The server cannot take it now: retry later.
    #[error("NATS sink `{subject}`: {source}")]
    Unavailable {
        /// The subject published to.
        subject: String,
        /// The outage, with its cause.
        source: Unavailable,
    },
}
