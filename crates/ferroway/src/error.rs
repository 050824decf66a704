//! Errors shared by every layer of Ferroway.

use std::sync::Arc;

/// A boxed error from user code (handlers, producers, sinks).
///
/// Handlers return `Result<_, BoxError>` so any error type converts with `?`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a stage stopped abnormally.
///
/// Returned by [`StageTask::join`](crate::stage::StageTask::join) and passed downstream to
/// consumers whose subscription was cancelled by a failing producer. Cheap to clone.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StageError {
    /// A callback of the stage panicked. The panic was caught and turned into this error.
    #[error("stage `{stage}` panicked: {message}")]
    Panicked {
        /// The stage's name.
        stage: Arc<str>,
        /// The panic payload, when it was a string.
        message: Arc<str>,
    },
    /// A callback of the stage returned an error.
    #[error("stage `{stage}` failed: {source}")]
    Failed {
        /// The stage's name.
        stage: Arc<str>,
        /// The error the callback returned.
        source: Arc<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// The stage stopped because a producer it was subscribed to stopped abnormally
    /// (cancel mode permanent or transient).
    #[error("stage `{stage}` stopped because its producer failed: {source}")]
    Upstream {
        /// The stage's name.
        stage: Arc<str>,
        /// Why the producer stopped.
        source: Box<StageError>,
    },
    /// A subscription of the stage was cancelled with an abnormal reason.
    #[error("stage `{stage}` stopped: subscription cancelled ({reason})")]
    Cancelled {
        /// The stage's name.
        stage: Arc<str>,
        /// The reason given for the cancellation.
        reason: Arc<str>,
    },
    /// The partition function of a partition dispatcher returned an index out of range.
    #[error("stage `{stage}`: partition function returned {partition} but there are {partitions} partitions")]
    PartitionOutOfRange {
        /// The stage's name.
        stage: Arc<str>,
        /// The index returned.
        partition: usize,
        /// The number of partitions configured.
        partitions: usize,
    },
    /// The stage's task was aborted or lost without reporting why (e.g. the runtime shut down).
    #[error("stage `{stage}` stopped unexpectedly: {reason}")]
    Aborted {
        /// The stage's name.
        stage: Arc<str>,
        /// What is known about the stop.
        reason: Arc<str>,
    },
}

impl StageError {
    pub(crate) fn failed(stage: &Arc<str>, err: BoxError) -> Self {
        StageError::Failed {
            stage: stage.clone(),
            source: Arc::from(err),
        }
    }

    pub(crate) fn panicked(stage: &Arc<str>, payload: Box<dyn std::any::Any + Send>) -> Self {
        StageError::Panicked {
            stage: stage.clone(),
            message: panic_message(&*payload).into(),
        }
    }
}

/// Extracts the text of a panic payload (`&str` or `String`), or a placeholder.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// A subscription could not be made, or stage options were invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// `max_demand` was zero.
    #[error("invalid subscription to `{producer}`: max_demand must be at least 1")]
    ZeroMaxDemand {
        /// The producer's name.
        producer: Arc<str>,
    },
    /// `min_demand` was not below `max_demand`.
    #[error("invalid subscription to `{producer}`: min_demand ({min_demand}) must be below max_demand ({max_demand})")]
    MinDemandTooHigh {
        /// The producer's name.
        producer: Arc<str>,
        /// The minimum demand given.
        min_demand: usize,
        /// The maximum demand given.
        max_demand: usize,
    },
    /// The producer has stopped (or stops before the subscription was made).
    #[error("cannot subscribe to `{producer}`: the stage has stopped")]
    ProducerStopped {
        /// The producer's name.
        producer: Arc<str>,
    },
    /// The consumer has stopped.
    #[error("cannot subscribe `{consumer}`: the stage has stopped")]
    ConsumerStopped {
        /// The consumer's name.
        consumer: Arc<str>,
    },
    /// A partition dispatcher needs `SubscribeOptions::partition`, in range and not taken.
    #[error("invalid subscription to `{producer}`: {reason}")]
    InvalidPartition {
        /// The producer's name.
        producer: Arc<str>,
        /// What was wrong.
        reason: String,
    },
}

/// The destination (or a service a handler depends on) cannot be reached: the message itself
/// is fine.
///
/// Return it — or any error with it in its [`source`](std::error::Error::source) chain — from
/// a handler or a sink when the failure says nothing about the message: connection refused,
/// broker down, timeout. The pipeline then never fails, dead-letters or acknowledges the
/// message: it waits with backoff and tries again, so back-pressure reaches the source and
/// the source pauses. Only errors about the message itself (too large, rejected, invalid)
/// fail it. [`is_unavailable`] tells the two apart.
///
/// ```
/// use ferroway::error::{Unavailable, is_unavailable};
/// use ferroway::BoxError;
///
/// fn write(up: bool) -> Result<(), BoxError> {
///     if !up {
///         return Err(Unavailable::new("orders-db", "connection refused").into());
///     }
///     Ok(())
/// }
/// let e = write(false).unwrap_err();
/// assert!(is_unavailable(&*e));
/// assert_eq!(e.to_string(), "orders-db is unavailable: connection refused");
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{what} is unavailable: {source}")]
pub struct Unavailable {
    what: String,
    source: BoxError,
}

impl Unavailable {
    /// `what` (a destination: a host, a topic, a database) could not be reached because of
    /// `source`.
    pub fn new(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Unavailable {
            what: what.into(),
            source: source.into(),
        }
    }

    /// What could not be reached.
    pub fn what(&self) -> &str {
        &self.what
    }
}

/// True when `error`, or an error in its source chain, means "unavailable" rather than "this
/// message is bad": an [`Unavailable`], an I/O error of a connection that could not be made
/// or was lost (refused, reset, aborted, unreachable, timed out, broken pipe), or a Tokio
/// timeout.
///
/// A timeout counts as an outage, so a message that times out *every* time (one the
/// destination chokes on) is retried until it goes through or the pipeline stops. When a
/// timeout can mean "this message is too much", catch it in the handler and fail the message
/// instead (`message.fail(..)`).
///
/// ```
/// use ferroway::error::is_unavailable;
/// let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
/// assert!(is_unavailable(&refused));
/// let bad = std::io::Error::new(std::io::ErrorKind::InvalidData, "not JSON");
/// assert!(!is_unavailable(&bad));
/// ```
pub fn is_unavailable(error: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind::*;
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<Unavailable>() || e.is::<tokio::time::error::Elapsed>() {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && is_unavailable(inner)
        {
            // `io::Error::other(Unavailable…)`: its `source()` skips the payload.
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                ConnectionRefused
                    | ConnectionReset
                    | ConnectionAborted
                    | NotConnected
                    | BrokenPipe
                    | TimedOut
                    | HostUnreachable
                    | NetworkUnreachable
                    | NetworkDown
                    | AddrNotAvailable
            )
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// Displays an error with every cause in its [`source`](std::error::Error::source) chain,
/// `outer: cause: root cause` — for logs, where the root cause is what an operator needs.
/// A cause whose text the previous message already contains is not repeated.
///
/// ```
/// use ferroway::error::{Chain, Unavailable};
/// let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
/// let e = Unavailable::new("redis://127.0.0.1:6390", io);
/// assert_eq!(Chain(&e).to_string(), "redis://127.0.0.1:6390 is unavailable: connection refused");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut next = self.0.source();
        while let Some(e) = next {
            let text = e.to_string();
            if !shown.contains(&text) {
                write!(f, ": {text}")?;
                shown.push_str(&text);
            }
            next = e.source();
        }
        Ok(())
    }
}
