//! Errors of the Pub/Sub connector.

use ferroway::error::Unavailable;

/// Invalid options, found before anything is sent.
///
/// ```
/// use ferroway_pubsub::{ClientOptions, OptionsError, PubSubOptions};
/// let e = PubSubOptions::new(ClientOptions::default(), "orders").validate().unwrap_err();
/// assert!(matches!(e, OptionsError::Invalid { option: "subscription", .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// An option has an invalid value.
    #[error("invalid option `{option}`: {reason}")]
    Invalid {
        /// The option.
        option: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Why a Pub/Sub source stopped. Outages, throttling and server errors after Pub/Sub first
/// answered are not among them: the source waits, warns and opens its stream again.
///
/// ```
/// use std::time::Duration;
/// use ferroway::stage::Producer;
/// use ferroway_pubsub::{ClientOptions, PubSubOptions, PubSubSource};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // Nothing listens on port 1.
/// let client = ClientOptions::new("my-project").emulator_host("127.0.0.1:1");
/// let opts = PubSubOptions::new(client, "orders").reach_timeout(Duration::from_millis(300));
/// let mut source = PubSubSource::new(opts).unwrap();
/// let e = source.handle_demand(10).await.unwrap_err().to_string();
/// assert!(e.starts_with("Pub/Sub source `projects/my-project/subscriptions/orders`: could not reach the emulator at 127.0.0.1:1 within"), "{e}");
/// # }
/// ```
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// No request succeeded within the reach timeout of the first start.
    #[error(
        "Pub/Sub source `{subscription}`: could not reach {endpoint} within {waited:.1?} of starting; last error: {last_error}"
    )]
    Unreachable {
        /// The subscription's full name.
        subscription: String,
        /// Where requests went.
        endpoint: String,
        /// How long the source waited.
        waited: std::time::Duration,
        /// Why the last attempt failed.
        last_error: String,
    },
    /// Pub/Sub refused: no such subscription, credentials rejected, no permission, a request
    /// it finds invalid. Retrying would not help.
    #[error("Pub/Sub source `{subscription}`: {step} refused: {reason}")]
    Refused {
        /// The subscription's full name.
        subscription: String,
        /// What was refused.
        step: &'static str,
        /// Pub/Sub's answer (status code and message).
        reason: String,
    },
}

/// A write failed as a whole.
///
/// [`SinkError::Unavailable`] (Pub/Sub unreachable, throttling or server errors past the
/// attempts) carries a [`ferroway::error::Unavailable`]: the pipeline keeps the batch and
/// retries it, never dead-letters it. [`SinkError::Refused`] (no such topic, credentials,
/// permission) fails the batch.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Pub/Sub cannot take it now: retry later.
    #[error("Pub/Sub sink `{topic}`: {source}")]
    Unavailable {
        /// The topic's full name.
        topic: String,
        /// The outage, with its cause.
        source: Unavailable,
    },
    /// Pub/Sub refused the request; retrying would not help.
    #[error("Pub/Sub sink `{topic}`: {step} refused: {reason}")]
    Refused {
        /// The topic's full name.
        topic: String,
        /// What was refused.
        step: &'static str,
        /// Pub/Sub's answer.
        reason: String,
    },
}
