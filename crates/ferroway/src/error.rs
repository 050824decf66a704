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
