//! The sink half of the connector contract.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::error::BoxError;
use crate::pipeline::{BoxFuture, DeadLetterInfo, Message};

/// Where a pipeline's messages end up: a batch sink behind a batcher
/// ([`PipelineBuilder::sink`](crate::pipeline::PipelineBuilder::sink)), or the dead-letter route
/// ([`PipelineBuilder::dead_letter`](crate::pipeline::PipelineBuilder::dead_letter)) — one
/// trait serves both.
///
/// [`write`](Sink::write) returns once the destination has the batch durably (a Kafka delivery
/// report, an fsync, a Redis reply); the pipeline acknowledges the messages upstream only
/// then. Per message:
/// - a message the destination refused (too large, invalid, rejected) is marked with
///   [`Message::fail`]; it then goes to the dead-letter route, or is acknowledged as failed —
///   the others succeed;
/// - return an error only when the whole batch failed. An error for which
///   [`is_unavailable`](crate::error::is_unavailable) holds (the destination is down, a
///   timeout) keeps the batch in flight: the pipeline calls `write` again after a backoff,
///   so it must not write twice what an earlier attempt delivered unless duplicates are
///   acceptable (at-least-once). Any other error fails every message of the batch.
///
/// A message carrying [`DeadLetterInfo`] is a dead letter: a sink that can show why it failed
/// (a header, a field of a JSON record) does.
///
/// ```
/// use std::sync::Mutex;
/// use ferroway::connector::{AsRecord, Sink};
/// use ferroway::pipeline::{BoxFuture, Message};
/// use ferroway::BoxError;
///
/// /// Keeps payloads in memory; refuses empty ones.
/// #[derive(Default)]
/// struct Memory(Mutex<Vec<Vec<u8>>>);
///
/// impl<T: AsRecord + Send + Sync + 'static> Sink<T> for Memory {
///     fn write<'a>(&'a self, batch: &'a mut [Message<T>]) -> BoxFuture<'a, Result<(), BoxError>> {
///         Box::pin(async move {
///             let mut kept = self.0.lock().unwrap();
///             for m in batch.iter_mut() {
///                 match m.data().payload() {
///                     [] => m.fail("empty payload"),
///                     p => kept.push(p.to_vec()),
///                 }
///             }
///             Ok(())
///         })
///     }
/// }
/// ```
pub trait Sink<T>: Send + Sync + 'static {
    /// Writes `batch`; see the trait's documentation for what to mark and what to return.
    fn write<'a>(&'a self, batch: &'a mut [Message<T>]) -> BoxFuture<'a, Result<(), BoxError>>;

    /// Called once when the pipeline has stopped: flush and release what the sink holds.
    fn close(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async { Ok(()) })
    }
}

impl<T: 'static, S: Sink<T> + ?Sized> Sink<T> for Arc<S> {
    fn write<'a>(&'a self, batch: &'a mut [Message<T>]) -> BoxFuture<'a, Result<(), BoxError>> {
        (**self).write(batch)
    }

    fn close(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        (**self).close()
    }
}

impl<T: 'static, S: Sink<T> + ?Sized> Sink<T> for Box<S> {
    fn write<'a>(&'a self, batch: &'a mut [Message<T>]) -> BoxFuture<'a, Result<(), BoxError>> {
        (**self).write(batch)
    }

    fn close(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        (**self).close()
    }
}

/// A channel is a sink for cloneable data: it receives copies; a dead letter's copy carries
/// its [`DeadLetterInfo`] and is marked failed with its reason (handy in tests).
impl<T: Clone + Send + 'static> Sink<T> for mpsc::Sender<Message<T>> {
    fn write<'a>(&'a self, batch: &'a mut [Message<T>]) -> BoxFuture<'a, Result<(), BoxError>> {
        let copies: Vec<Message<T>> = batch
            .iter()
            .map(|m| {
                let mut copy = Message::new(m.data().clone());
                if let Some(info) = m.metadata::<DeadLetterInfo>() {
                    copy.fail(&info.reason);
                    copy.put_metadata(info.clone());
                }
                copy
            })
            .collect();
        Box::pin(async move {
            for copy in copies {
                mpsc::Sender::send(self, copy)
                    .await
                    .map_err(|_| "the sink's channel is closed")?;
            }
            Ok(())
        })
    }
}
