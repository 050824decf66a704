//! Producer-consumers: take events from upstream, emit events downstream.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use tokio::sync::mpsc;

use super::consumer::ConsumerOptions;
use super::handle::{AsProducer, ConsumerRef, Emitter, ProducerRef, StageTask};
use super::outbox::Outbox;
use super::producer::ProducerOptions;
use super::subscription::{SubscribeOptions, SubscriptionId};
use super::transform::{self, Downstream, Transform};
use crate::error::{BoxError, StageError, SubscribeError};

/// A stage that turns events into events (GenStage's producer-consumer).
///
/// It handles a batch from upstream only while its own consumers have demand and its buffer is
/// empty, and asks upstream for more only after handling; so back-pressure travels all the way
/// up and memory stays bounded by the subscriptions' `max_demand`.
///
/// ```
/// use ferroway::stage::ProducerConsumer;
/// use ferroway::BoxError;
///
/// struct Double;
/// impl ProducerConsumer for Double {
///     type Input = u64;
///     type Output = u64;
///     async fn handle_events(&mut self, events: Vec<u64>) -> Result<Vec<u64>, BoxError> {
///         Ok(events.into_iter().map(|x| x * 2).collect())
///     }
/// }
/// ```
pub trait ProducerConsumer: Send + 'static {
    /// The events taken from upstream.
    type Input: Send + 'static;
    /// The events emitted downstream.
    type Output: Send + 'static;

    /// Turns one batch from upstream into events for downstream (any number, including none).
    fn handle_events(
        &mut self,
        events: Vec<Self::Input>,
    ) -> impl Future<Output = Result<Vec<Self::Output>, BoxError>> + Send;
}

/// A running producer-consumer.
#[derive(Debug)]
pub struct ProducerConsumerStage<I, O> {
    consumer: ConsumerRef<I>,
    producer: ProducerRef<O>,
    task: StageTask,
}

impl<I, O> ProducerConsumerStage<I, O> {
    /// Subscribes the stage to an upstream producer. See [`ConsumerRef::subscribe_to`].
    pub async fn subscribe_to(
        &self,
        to: &impl AsProducer<I>,
        opts: SubscribeOptions<I>,
    ) -> Result<SubscriptionId, SubscribeError> {
        self.consumer.subscribe_to(to, opts).await
    }

    /// Cancels an upstream subscription. See [`ConsumerRef::cancel`].
    pub async fn cancel(&self, id: SubscriptionId) -> bool {
        self.consumer.cancel(id).await
    }

    /// The consuming side.
    pub fn consumer_ref(&self) -> ConsumerRef<I> {
        self.consumer.clone()
    }

    /// See [`ProducerRef::emitter`].
    pub fn emitter(&self) -> Emitter<O> {
        self.producer.emitter()
    }

    /// Drains the stage: it cancels its upstream subscriptions, finishes what it has received,
    /// hands everything out as demand allows, then ends its subscriptions normally.
    pub fn drain(&self) -> bool {
        self.producer.drain()
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

impl<I, O> AsProducer<O> for ProducerConsumerStage<I, O> {
    fn producer_ref(&self) -> ProducerRef<O> {
        self.producer.clone()
    }
}

/// Starts `stage` as its own Tokio task. Its name comes from `opts`.
///
/// # Panics
/// When called outside a Tokio runtime.
pub fn start_producer_consumer<S: ProducerConsumer>(
    stage: S,
    opts: ProducerOptions<S::Output>,
) -> ProducerConsumerStage<S::Input, S::Output> {
    let outbox = opts.into_outbox("producer-consumer", usize::MAX);
    let name = outbox.name.clone();
    let (inbox, consumer, crx) = ConsumerOptions::new()
        .name(name.clone())
        .into_inbox("producer-consumer");
    let (ptx, prx) = mpsc::unbounded_channel();
    let pc = Pc {
        stage,
        name: name.clone(),
    };
    let task = transform::spawn(name.clone(), pc, inbox, crx, Some(Downstream { outbox, rx: prx }));
    ProducerConsumerStage {
        consumer,
        producer: ProducerRef { tx: ptx, name },
        task,
    }
}

/// Adapts the user's producer-consumer to the shared transform loop.
struct Pc<S> {
    stage: S,
    name: Arc<str>,
}

impl<S: ProducerConsumer> Transform<S::Input, S::Output> for Pc<S> {
    async fn handle(
        &mut self,
        _from: crate::stage::SubscriptionId,
        events: Vec<S::Input>,
        out: Option<&mut Outbox<S::Output>>,
    ) -> Result<(), StageError> {
        match AssertUnwindSafe(self.stage.handle_events(events)).catch_unwind().await {
            Ok(Ok(events)) => match out {
                Some(out) => out.emit(events),
                None => Ok(()),
            },
            Ok(Err(e)) => Err(StageError::failed(&self.name, e)),
            Err(panic) => Err(StageError::panicked(&self.name, panic)),
        }
    }
}
