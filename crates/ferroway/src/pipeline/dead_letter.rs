//! Dead letters: what the pipeline attaches to a message that finally failed before it hands
//! it to the dead-letter sink (any [`Sink`](crate::connector::Sink)).

use std::pin::Pin;
use std::sync::Arc;

/// A boxed future, as dead-letter sinks return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a message was dead-lettered; attached to each dead-lettered message as metadata
/// (`message.metadata::<DeadLetterInfo>()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterInfo {
    /// The pipeline's name.
    pub pipeline: Arc<str>,
    /// The stage that failed it: `"processor"` or `"batch_processor"`.
    pub stage: &'static str,
    /// The failure reason.
    pub reason: Arc<str>,
}
