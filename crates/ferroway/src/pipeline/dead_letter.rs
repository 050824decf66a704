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
/// source does not deliver them again. When it fails because the sink is unavailable (an
/// error for which [`is_unavailable`](crate::error::is_unavailable) holds: connection refused,
/// broker down, timeout) the pipeline keeps the messages in flight and sends them again with
/// backoff — an outage never acknowledges anything. Any other error acknowledges them as
/// failed, so the source's own failure handling (e.g. redelivery) applies. Nothing that
/// failed is lost silently either way.
///
/// A Tokio `mpsc::Sender<Message<T>>` is a sink for cloneable data (it receives copies with
/// the failure reason and [`DeadLetterInfo`]); so is any connector publisher that implements
/// this trait.
///
/// ```
/// use ferroway::pipeline::{BoxFuture, DeadLetterSink, Message};
/// use ferroway::BoxError;
///
/// struct Log;
/// impl DeadLetterSink<String> for Log {
///     fn send<'a>(&'a self, messages: &'a mut [Message<String>]) -> BoxFuture<'a, Result<(), BoxError>> {
///         Box::pin(async move {
///             for m in messages.iter() {
///                 eprintln!("dead letter: {:?} ({})", m.data(), m.failure().unwrap_or("?"));
///             }
///             Ok(())
///         })
///     }
/// }
/// ```
pub trait DeadLetterSink<T>: Send + Sync + 'static {
    /// Stores `messages` durably (or hands them on); return an error if it could not. The
    /// pipeline keeps the messages, so after an outage it can send them again.
    fn send<'a>(&'a self, messages: &'a mut [Message<T>]) -> BoxFuture<'a, Result<(), BoxError>>;
}

impl<T: Clone + Send + 'static> DeadLetterSink<T> for mpsc::Sender<Message<T>> {
    fn send<'a>(&'a self, messages: &'a mut [Message<T>]) -> BoxFuture<'a, Result<(), BoxError>> {
        let copies: Vec<Message<T>> = messages
            .iter()
            .map(|m| {
                let mut copy = Message::new(m.data().clone());
                if let Some(reason) = m.failure() {
                    copy.fail(reason);
                }
                if let Some(info) = m.metadata::<DeadLetterInfo>() {
                    copy.put_metadata(info.clone());
                }
                copy
            })
            .collect();
        Box::pin(async move {
            for copy in copies {
                mpsc::Sender::send(self, copy)
                    .await
                    .map_err(|_| "dead-letter channel closed")?;
            }
            Ok(())
        })
    }
}
