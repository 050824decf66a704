//! What a user writes: the handler called by processors and batch processors.

use std::time::Duration;

use super::message::{BatchKey, Message};
use crate::error::BoxError;

/// Why a batch was emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchTrigger {
    /// It reached `batch_size`.
    Size,
    /// `batch_timeout` passed since its first message.
    Timeout,
    /// The pipeline is draining: partial batches are flushed.
    Flush,
}

/// Describes a batch handed to [`Handler::handle_batch`].
#[derive(Debug, Clone)]
pub struct BatchInfo {
    /// The batcher's name.
    pub batcher: &'static str,
    /// The batch key its messages share.
    pub batch_key: BatchKey,
    /// How many messages it holds.
    pub size: usize,
    /// Why it was emitted.
    pub trigger: BatchTrigger,
    /// Time from its first message to its emission.
    pub age: Duration,
}

/// The user's code in a pipeline (Broadway's callbacks). Only
/// [`handle_message`](Handler::handle_message) is required.
///
/// A callback that returns an error or panics fails only the messages involved — the one
/// message in `handle_message`, the whole batch in `handle_batch` — and the pipeline keeps
/// running. Failed messages go through [`handle_failed`](Handler::handle_failed) and are
/// acknowledged as failed (or dead-lettered, when the pipeline has a dead-letter sink).
///
/// ```
/// use ferroway::pipeline::{BatchInfo, Handler, Message};
/// use ferroway::BoxError;
///
/// struct Orders;
/// impl Handler for Orders {
///     type Data = String;
///
///     async fn handle_message(&self, message: &mut Message<String>) -> Result<(), BoxError> {
///         if message.data().is_empty() {
///             message.discard(); // filtered: acknowledged as successful, not batched
///             return Ok(());
///         }
///         let amount: u64 = message.data().trim().parse()?; // an error fails this message only
///         message.update_data(|_| (amount * 100).to_string());
///         Ok(())
///     }
///
///     async fn handle_batch(&self, messages: &mut [Message<String>], info: &BatchInfo) -> Result<(), BoxError> {
///         println!("writing {} orders (batch key {:?})", messages.len(), info.batch_key);
///         Ok(())
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// The data the messages carry.
    type Data: Send + 'static;

    /// Handles one message in a processor. Mark it failed with [`Message::fail`] or by
    /// returning an error; choose its batcher and batch key; or [`Message::discard`] it.
    fn handle_message(&self, message: &mut Message<Self::Data>) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Sees the whole group of messages a processor received before any `handle_message`
    /// (e.g. to preload what they reference in one query). An error fails them all.
    fn prepare_messages(
        &self,
        messages: &mut [Message<Self::Data>],
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = messages;
        async { Ok(()) }
    }

    /// Handles a batch in a batch processor. Mark single messages failed with
    /// [`Message::fail`]; an error fails the whole batch.
    fn handle_batch(
        &self,
        messages: &mut [Message<Self::Data>],
        info: &BatchInfo,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = (messages, info);
        async { Ok(()) }
    }

    /// The last word on failed messages before they are acknowledged (e.g. log them or
    /// [`configure_ack`](Message::configure_ack) them). Errors and panics here are logged and
    /// the messages are acknowledged as failed anyway.
    fn handle_failed(&self, messages: &mut [Message<Self::Data>]) -> impl Future<Output = ()> + Send {
        let _ = messages;
        async {}
    }
}

/// A handler that hands every message on as it is: for a pipeline that only moves data from a
/// [`Source`](crate::connector::Source) to [`Sink`](crate::connector::Sink)s. See
/// [`PipelineBuilder::source`](crate::pipeline::PipelineBuilder::source).
pub struct Forward<T>(std::marker::PhantomData<fn() -> T>);

impl<T> Forward<T> {
    /// The forwarding handler.
    pub fn new() -> Self {
        Forward(std::marker::PhantomData)
    }
}

impl<T> Default for Forward<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> std::fmt::Debug for Forward<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Forward")
    }
}

impl<T: Send + 'static> Handler for Forward<T> {
    type Data = T;

    async fn handle_message(&self, _: &mut Message<T>) -> Result<(), BoxError> {
        Ok(())
    }
}
