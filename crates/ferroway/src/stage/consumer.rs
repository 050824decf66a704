//! Consumers: take events, asking for more as they finish them.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use tokio::sync::mpsc;

use super::handle::{AsProducer, ConsumerRef, StageTask, default_name};
use super::inbox::{Inbox, Verdict};
use super::subscription::{ConsumerMsg, SubscribeOptions, SubscriptionId};
use crate::error::{BoxError, StageError, SubscribeError};

/// A stage that takes events (GenStage's consumer). See [`Producer`](crate::stage::Producer)
/// for a complete example.
///
/// Events arrive in batches of at most the subscription's `max_demand`. Returning an error or
/// panicking stops the stage with that error.
pub trait Consumer: Send + 'static {
    /// The events this consumer takes.
    type Input: Send + 'static;

    /// Handles one batch of events.
    fn handle_events(&mut self, events: Vec<Self::Input>) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// Options of a consumer.
///
/// ```
/// use ferroway::stage::ConsumerOptions;
/// let opts = ConsumerOptions::new().name("sink").stop_when_unsubscribed(true);
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Default)]
pub struct ConsumerOptions {
    pub(crate) name: Option<Arc<str>>,
    pub(crate) stop_when_unsubscribed: bool,
}

impl ConsumerOptions {
    /// Defaults: a generated name; cancel modes alone decide when the stage stops.
    pub fn new() -> Self {
        Self::default()
    }

    /// The stage's name, used in logs, metrics and errors.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Also stop, normally, once the last subscription has ended normally — useful with
    /// transient subscriptions to several producers that finish at different times.
    pub fn stop_when_unsubscribed(mut self, yes: bool) -> Self {
        self.stop_when_unsubscribed = yes;
        self
    }

    pub(crate) fn into_inbox<T: Send + 'static>(
        self,
        kind: &str,
    ) -> (Inbox<T>, ConsumerRef<T>, mpsc::UnboundedReceiver<ConsumerMsg<T>>) {
        let name = self.name.unwrap_or_else(|| default_name(kind));
        let (tx, rx) = mpsc::unbounded_channel();
        let inbox = Inbox::new(name.clone(), tx.clone(), self.stop_when_unsubscribed);
        (inbox, ConsumerRef { tx, name }, rx)
    }
}

/// A running consumer.
#[derive(Debug)]
pub struct ConsumerStage<T> {
    consumer: ConsumerRef<T>,
    task: StageTask,
}

impl<T> ConsumerStage<T> {
    pub(crate) fn new(consumer: ConsumerRef<T>, task: StageTask) -> Self {
        ConsumerStage { consumer, task }
    }

    /// See [`ConsumerRef::subscribe_to`].
    pub async fn subscribe_to(
        &self,
        to: &impl AsProducer<T>,
        opts: SubscribeOptions<T>,
    ) -> Result<SubscriptionId, SubscribeError> {
        self.consumer.subscribe_to(to, opts).await
    }

    /// See [`ConsumerRef::cancel`].
    pub async fn cancel(&self, id: SubscriptionId) -> bool {
        self.consumer.cancel(id).await
    }

    /// A cloneable reference to the stage.
    pub fn consumer_ref(&self) -> ConsumerRef<T> {
        self.consumer.clone()
    }

    /// Waits for the stage to stop. See [`StageTask::join`].
    pub async fn join(self) -> Result<(), StageError> {
        self.task.join().await
    }

    /// The stage's task.
    pub fn task(&self) -> &StageTask {
        &self.task
    }
}

/// Starts `consumer` as its own Tokio task; subscribe it with
/// [`ConsumerStage::subscribe_to`].
///
/// # Panics
/// When called outside a Tokio runtime.
pub fn start_consumer<C: Consumer>(consumer: C, opts: ConsumerOptions) -> ConsumerStage<C::Input> {
    let (inbox, cref, rx) = opts.into_inbox("consumer");
    let task = StageTask::spawn(cref.name.clone(), run(consumer, inbox, rx));
    ConsumerStage::new(cref, task)
}

async fn run<C: Consumer>(
    mut c: C,
    mut inbox: Inbox<C::Input>,
    mut rx: mpsc::UnboundedReceiver<ConsumerMsg<C::Input>>,
) -> Result<(), StageError> {
    let name = inbox.name.clone();
    while let Some(msg) = rx.recv().await {
        match msg {
            ConsumerMsg::Events { id, events } => {
                let n = events.len();
                match AssertUnwindSafe(c.handle_events(events)).catch_unwind().await {
                    Ok(Ok(())) => inbox.handled(id, n),
                    Ok(Err(e)) => return Err(StageError::failed(&name, e)),
                    Err(panic) => return Err(StageError::panicked(&name, panic)),
                }
            }
            other => {
                if let Verdict::Stop(r) = inbox.control(other) {
                    return r;
                }
            }
        }
    }
    Ok(())
}
