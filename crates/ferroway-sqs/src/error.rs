//! Errors of the SQS connector.

use ferroway::error::Unavailable;

/// Invalid options, found before anything is sent.
///
/// ```
/// use ferroway_sqs::{OptionsError, SqsOptions};
/// let e = SqsOptions::new("orders").validate().unwrap_err();
/// assert!(matches!(e, OptionsError::Invalid { option: "queue_url", .. }));
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

/// Why an SQS source stopped. Throttling, server errors and outages after SQS first answered
/// are not among them: the source waits, warns and tries again.
///
/// ```
/// use std::time::Duration;
/// use ferroway::stage::Producer;
/// use ferroway_sqs::{SqsOptions, SqsSource};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // Nothing listens on port 1.
/// let opts = SqsOptions::new("http://127.0.0.1:1/000000000000/orders")
///     .region("us-east-1")
///     .reach_timeout(Duration::from_millis(300));
/// let mut source = SqsSource::new(opts).unwrap();
/// let e = source.handle_demand(10).await.unwrap_err().to_string();
/// assert!(e.starts_with("SQS source `orders`: could not reach http://127.0.0.1:1 within"), "{e}");
/// # }
/// ```
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// No request succeeded within the reach timeout of the first start.
    #[error(
        "SQS source `{queue}`: could not reach {endpoint} within {waited:.1?} of starting; last error: {last_error}"
    )]
    Unreachable {
        /// The queue's name.
        queue: String,
        /// The endpoint tried.
        endpoint: String,
        /// How long the source waited.
        waited: std::time::Duration,
        /// Why the last attempt failed.
        last_error: String,
    },
    /// SQS refused: no such queue, credentials rejected, no permission, a request it finds
    /// invalid. Retrying would not help.
    #[error("SQS source `{queue}`: {step} refused: {reason}")]
    Refused {
        /// The queue's name.
        queue: String,
        /// What was refused.
        step: &'static str,
        /// SQS' answer (error code and message).
        reason: String,
    },
}

/// A write failed as a whole.
///
/// [`SinkError::Unavailable`] (SQS unreachable, throttling or server errors past the
/// attempts) carries a [`ferroway::error::Unavailable`]: the pipeline keeps the batch and
/// retries it, never dead-letters it. [`SinkError::Refused`] (no such queue, credentials)
/// fails the batch.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// SQS cannot take it now: retry later.
    #[error("SQS sink `{queue}`: {source}")]
    Unavailable {
        /// The queue's name.
        queue: String,
        /// The outage, with its cause.
        source: Unavailable,
    },
    /// SQS refused the request; retrying would not help.
    #[error("SQS sink `{queue}`: {step} refused: {reason}")]
    Refused {
        /// The queue's name.
        queue: String,
        /// What was refused.
        step: &'static str,
        /// SQS' answer.
        reason: String,
    },
}
