//! Dead-letter routing: where messages that finally failed go, before they are acknowledged.

use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::message::Message;
use crate::error::BoxError;

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

/// Receives messages that finally failed, before they are acknowledged.
///
/// When `send` succeeds the messages count as done and are acknowledged as successful, so the
/// source does not deliver them again; when it fails they are acknowledged as failed, so the
/// source's own failure handling (e.g. redelivery) applies. Nothing that failed is lost
/// silently either way.
///
/// A Tokio `mpsc::Sender<Message<T>>` is a sink; so is any connector publisher that implements
/// this trait.
///
/// ```
/// use ferroway::pipeline::{BoxFuture, DeadLetterSink, Message};
/// use ferroway::BoxError;
///
/// struct Log;
/// impl DeadLetterSink<String> for Log {
///     fn send(&self, messages: Vec<Message<String>>) -> BoxFuture<'_, Result<(), BoxError>> {
///         Box::pin(async move {
///             for m in &messages {
///                 eprintln!("dead letter: {:?} ({})", m.data(), m.failure().unwrap_or("?"));
///             }
///             Ok(())
///         })
///     }
/// }
/// ```
pub trait DeadLetterSink<T>: Send + Sync + 'static {
    /// Stores `messages` durably (or hands them on); return an error if it could not.
    fn send(&self, messages: Vec<Message<T>>) -> BoxFuture<'_, Result<(), BoxError>>;
}

impl<T: Send + 'static> DeadLetterSink<T> for mpsc::Sender<Message<T>> {
    fn send(&self, messages: Vec<Message<T>>) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move {
            for m in messages {
                mpsc::Sender::send(self, m)
                    .await
                    .map_err(|_| "dead-letter channel closed")?;
            }
            Ok(())
        })
    }
}
