//! Handles to running stages: references to talk to them, and tasks to await them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::subscription::{ConsumerMsg, ConsumerTx, ProducerMsg, SubscribeOptions, SubscriptionId};
use crate::error::{StageError, SubscribeError, panic_message};

pub(crate) fn default_name(kind: &str) -> Arc<str> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{kind}-{}", NEXT.fetch_add(1, Ordering::Relaxed)).into()
}

/// A cloneable reference to a running producer (or producer-consumer): subscribe to it,
/// drain it, or emit events into it from outside.
pub struct ProducerRef<T> {
    pub(crate) tx: mpsc::UnboundedSender<ProducerMsg<T>>,
    pub(crate) name: Arc<str>,
}

impl<T> Clone for ProducerRef<T> {
    fn clone(&self) -> Self {
        ProducerRef {
            tx: self.tx.clone(),
            name: self.name.clone(),
        }
    }
}

impl<T> std::fmt::Debug for ProducerRef<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProducerRef").field("name", &self.name).finish()
    }
}

impl<T> ProducerRef<T> {
    /// The stage's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Asks the producer to stop producing: it calls its drain hook, hands out what it has
    /// buffered as demand allows, then ends its subscriptions normally. Returns false if the
    /// stage had already stopped.
    pub fn drain(&self) -> bool {
        self.tx.send(ProducerMsg::Drain).is_ok()
    }

    /// An [`Emitter`] for pushing events into this producer from any task.
    pub fn emitter(&self) -> Emitter<T> {
        Emitter { tx: self.tx.clone() }
    }

    /// True once the stage has stopped.
    pub fn is_stopped(&self) -> bool {
        self.tx.is_closed()
    }
}

/// Pushes events into a producer at any time (from a socket reader, a timer, …).
///
/// Events go to consumers only as far as their demand allows; the excess waits in the
/// producer's buffer, which keeps its first or last `buffer_size` events
/// ([`ProducerOptions::buffer_keep`](crate::stage::ProducerOptions::buffer_keep)).
pub struct Emitter<T> {
    tx: mpsc::UnboundedSender<ProducerMsg<T>>,
}

impl<T> Clone for Emitter<T> {
    fn clone(&self) -> Self {
        Emitter { tx: self.tx.clone() }
    }
}

/// The stage an [`Emitter`] feeds has stopped; the events are given back.
#[derive(Debug, thiserror::Error)]
#[error("the producer has stopped; {} events not emitted", .0.len())]
pub struct EmitError<T>(pub Vec<T>);

impl<T> Emitter<T> {
    /// Hands `events` to the producer.
    pub fn emit(&self, events: Vec<T>) -> Result<(), EmitError<T>> {
        self.tx.send(ProducerMsg::Emit(events)).map_err(|e| match e.0 {
            ProducerMsg::Emit(events) => EmitError(events),
            _ => EmitError(Vec::new()),
        })
    }
}

/// Anything a consumer can subscribe to: a producer or a producer-consumer.
pub trait AsProducer<T> {
    /// A reference to the producing side.
    fn producer_ref(&self) -> ProducerRef<T>;
}

impl<T> AsProducer<T> for ProducerRef<T> {
    fn producer_ref(&self) -> ProducerRef<T> {
        self.clone()
    }
}

/// A cloneable reference to a running consumer (or producer-consumer): subscribe it to
/// producers and cancel subscriptions at run time.
pub struct ConsumerRef<T> {
    pub(crate) tx: ConsumerTx<T>,
    pub(crate) name: Arc<str>,
}

impl<T> Clone for ConsumerRef<T> {
    fn clone(&self) -> Self {
        ConsumerRef {
            tx: self.tx.clone(),
            name: self.name.clone(),
        }
    }
}

impl<T> std::fmt::Debug for ConsumerRef<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerRef").field("name", &self.name).finish()
    }
}

impl<T> ConsumerRef<T> {
    /// The stage's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Subscribes this consumer to `to`, returning once the producer has registered it.
    ///
    /// The consumer immediately asks for `max_demand` events and asks again each time it has
    /// handled `max_demand - min_demand` of them.
    pub async fn subscribe_to(
        &self,
        to: &impl AsProducer<T>,
        opts: SubscribeOptions<T>,
    ) -> Result<SubscriptionId, SubscribeError> {
        let (reply, rx) = oneshot::channel();
        let stopped = || SubscribeError::ConsumerStopped {
            consumer: self.name.clone(),
        };
        self.tx
            .send(ConsumerMsg::Subscribe {
                to: to.producer_ref(),
                opts,
                reply,
            })
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Cancels a subscription. The consumer then applies the subscription's
    /// [`CancelMode`](crate::stage::CancelMode) as if the producer had ended it normally.
    /// Returns false if there was no such subscription.
    pub async fn cancel(&self, id: SubscriptionId) -> bool {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(ConsumerMsg::Cancel { id, reply }).is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }
}

/// The task running a stage. Await [`join`](StageTask::join) for how it ended.
#[derive(Debug)]
pub struct StageTask {
    name: Arc<str>,
    handle: JoinHandle<Result<(), StageError>>,
}

impl StageTask {
    pub(crate) fn spawn<F>(name: Arc<str>, fut: F) -> Self
    where
        F: Future<Output = Result<(), StageError>> + Send + 'static,
    {
        let stage = name.clone();
        let fut = async move {
            tracing::debug!(%stage, "stage started");
            let result = fut.await;
            match &result {
                Ok(()) => tracing::debug!(%stage, "stage stopped"),
                Err(error) => tracing::warn!(%stage, %error, "stage failed"),
            }
            result
        };
        StageTask {
            name,
            handle: tokio::spawn(fut),
        }
    }

    /// Waits for the stage to stop: `Ok(())` when it finished normally, or why it failed
    /// (a handler error, a caught panic, a failed producer upstream).
    pub async fn join(self) -> Result<(), StageError> {
        match self.handle.await {
            Ok(r) => r,
            Err(e) if e.is_panic() => Err(StageError::Panicked {
                stage: self.name,
                message: panic_message(&*e.into_panic()).into(),
            }),
            Err(_) => Err(StageError::Aborted {
                stage: self.name,
                reason: "the task was cancelled".into(),
            }),
        }
    }

    /// True once the stage has stopped.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Stops the stage at once, without draining. Its subscribers are told it stopped abnormally.
    pub fn abort(&self) {
        self.handle.abort();
    }

    pub(crate) fn abort_handle(&self) -> tokio::task::AbortHandle {
        self.handle.abort_handle()
    }
}
