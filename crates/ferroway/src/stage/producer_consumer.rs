//! Producer-consumers: take events from upstream, emit events downstream.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use tokio::sync::mpsc;

use super::consumer::ConsumerOptions;
use super::handle::{AsProducer, ConsumerRef, Emitter, ProducerRef, StageTask};
use super::inbox::{Inbox, Verdict};
use super::outbox::{After, Outbox};
use super::producer::ProducerOptions;
use super::subscription::{ConsumerMsg, EndReason, ProducerMsg, SubscribeOptions, SubscriptionId};
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
    let task = StageTask::spawn(name.clone(), run(stage, inbox, outbox, crx, prx));
    ProducerConsumerStage {
        consumer,
        producer: ProducerRef { tx: ptx, name },
        task,
    }
}

async fn run<S: ProducerConsumer>(
    mut s: S,
    mut inbox: Inbox<S::Input>,
    mut outbox: Outbox<S::Output>,
    mut crx: mpsc::UnboundedReceiver<ConsumerMsg<S::Input>>,
    mut prx: mpsc::UnboundedReceiver<ProducerMsg<S::Output>>,
) -> Result<(), StageError> {
    let result = drive(&mut s, &mut inbox, &mut outbox, &mut crx, &mut prx).await;
    outbox.close(match &result {
        Ok(()) => EndReason::Normal,
        Err(e) => EndReason::Failed(e.clone()),
    });
    result
}

async fn drive<S: ProducerConsumer>(
    s: &mut S,
    inbox: &mut Inbox<S::Input>,
    outbox: &mut Outbox<S::Output>,
    crx: &mut mpsc::UnboundedReceiver<ConsumerMsg<S::Input>>,
    prx: &mut mpsc::UnboundedReceiver<ProducerMsg<S::Output>>,
) -> Result<(), StageError> {
    let name = inbox.name.clone();
    let mut pending: VecDeque<(SubscriptionId, Vec<S::Input>)> = VecDeque::new();
    // Set once upstream is done: finish what was received, then stop with this result.
    let mut stopping: Option<Result<(), StageError>> = None;
    let mut downstream_open = true;
    loop {
        while let Ok(msg) = prx.try_recv() {
            if outbox.handle(msg)? == After::Drain && stopping.is_none() {
                inbox.cancel_all();
                stopping = Some(Ok(()));
            }
        }
        while outbox.demand() > 0 && outbox.is_empty() {
            let Some((id, events)) = pending.pop_front() else { break };
            let n = events.len();
            match AssertUnwindSafe(s.handle_events(events)).catch_unwind().await {
                Ok(Ok(out)) => outbox.emit(out)?,
                Ok(Err(e)) => return Err(StageError::failed(&name, e)),
                Err(panic) => return Err(StageError::panicked(&name, panic)),
            }
            inbox.handled(id, n);
        }
        if stopping.is_some() && pending.is_empty() && outbox.is_empty() {
            return stopping.unwrap_or(Ok(()));
        }
        tokio::select! {
            biased;
            msg = prx.recv(), if downstream_open => match msg {
                Some(msg) => {
                    if outbox.handle(msg)? == After::Drain && stopping.is_none() {
                        inbox.cancel_all();
                        stopping = Some(Ok(()));
                    }
                }
                None => downstream_open = false,
            },
            msg = crx.recv(), if stopping.is_none() => match msg {
                Some(ConsumerMsg::Events { id, events }) => pending.push_back((id, events)),
                Some(other) => {
                    if let Verdict::Stop(r) = inbox.control(other) {
                        outbox.stop_accepting();
                        stopping = Some(r);
                    }
                }
                None => stopping = Some(Ok(())),
            },
            else => return stopping.unwrap_or(Ok(())),
        }
    }
}
