//! A flow's stages: one task per lane (or partition), running a [`Transform`] on batches.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::error::StageError;
use crate::stage::inbox::Inbox;
use crate::stage::outbox::Outbox;
use crate::stage::transform::{self, Downstream, Transform};
use crate::stage::{ConsumerOptions, ConsumerRef, Dispatcher, ProducerOptions, ProducerRef, StageTask, SubscriptionId};

/// A started stage of a flow.
pub(crate) struct Started<I, O> {
    pub(crate) input: ConsumerRef<I>,
    pub(crate) output: ProducerRef<O>,
    pub(crate) task: StageTask,
}

/// Starts `t` as a stage whose output goes out through `dispatcher`.
pub(crate) fn start<I, O, T>(name: String, t: T, dispatcher: Dispatcher<O>) -> Started<I, O>
where
    I: Send + 'static,
    O: Send + 'static,
    T: Transform<I, O> + 'static,
{
    let outbox = ProducerOptions::new()
        .name(name.clone())
        .dispatcher(dispatcher)
        .into_outbox("flow", usize::MAX);
    // Several inputs each end in their own time: stop after the last.
    let (inbox, input, crx): (Inbox<I>, _, _) = ConsumerOptions::new()
        .name(name.clone())
        .stop_when_unsubscribed(true)
        .into_inbox("flow");
    let (ptx, prx) = mpsc::unbounded_channel();
    let name: Arc<str> = name.into();
    let task = transform::spawn(name.clone(), t, inbox, crx, Some(Downstream { outbox, rx: prx }));
    Started {
        input,
        output: ProducerRef { tx: ptx, name },
        task,
    }
}

/// Starts `t` as a stage with no downstream (a flow's output).
pub(crate) fn start_last<I, T>(name: String, t: T) -> (ConsumerRef<I>, StageTask)
where
    I: Send + 'static,
    T: Transform<I, ()> + 'static,
{
    let (inbox, input, crx): (Inbox<I>, _, _) = ConsumerOptions::new()
        .name(name.clone())
        .stop_when_unsubscribed(true)
        .into_inbox("flow");
    let task = transform::spawn(name.into(), t, inbox, crx, None::<Downstream<()>>);
    (input, task)
}

/// Runs a step of the user's code: a panic in it fails the stage `name`, as in any stage.
pub(crate) fn unwinding<R>(name: &Arc<str>, f: impl FnOnce() -> R) -> Result<R, StageError> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|panic| StageError::panicked(name, panic))
}

/// A per-event operation over a lane (map, filter, flat_map, ...), applied to whole batches.
pub(crate) struct Apply<F> {
    pub(crate) name: Arc<str>,
    pub(crate) f: F,
}

impl<I, O, F> Transform<I, O> for Apply<F>
where
    I: Send + 'static,
    O: Send + 'static,
    F: FnMut(Vec<I>, &mut Vec<O>) + Send,
{
    async fn handle(
        &mut self,
        _from: SubscriptionId,
        events: Vec<I>,
        out: Option<&mut Outbox<O>>,
    ) -> Result<(), StageError> {
        let mut batch = Vec::with_capacity(events.len());
        unwinding(&self.name, || (self.f)(events, &mut batch))?;
        match out {
            Some(out) if !batch.is_empty() => out.emit(batch),
            _ => Ok(()),
        }
    }
}

/// Holds a source back until the whole flow is wired, so no event moves before every stage
/// has subscribed to all its inputs (a stage with several inputs stops after the last ends).
pub(crate) struct Gated<P> {
    pub(crate) inner: P,
    pub(crate) go: Option<tokio::sync::watch::Receiver<bool>>,
}

impl<P: crate::stage::Producer> crate::stage::Producer for Gated<P> {
    type Output = P::Output;

    async fn handle_demand(&mut self, demand: usize) -> Result<crate::stage::Emit<P::Output>, crate::BoxError> {
        if let Some(mut go) = self.go.take() {
            // An error means the flow was dropped before it started: nothing to emit for.
            go.wait_for(|v| *v)
                .await
                .map_err(|_| "the flow stopped before it started")?;
        }
        self.inner.handle_demand(demand).await
    }
}

/// A source lane not started yet, with what runs in its stage.
pub(crate) trait LaneSource<T>: Send + 'static {
    fn pull(
        &mut self,
        demand: usize,
    ) -> futures_util::future::BoxFuture<'_, Result<crate::stage::Emit<T>, crate::BoxError>>;
}

impl<P: crate::stage::Producer> LaneSource<P::Output> for P {
    fn pull(
        &mut self,
        demand: usize,
    ) -> futures_util::future::BoxFuture<'_, Result<crate::stage::Emit<P::Output>, crate::BoxError>> {
        Box::pin(self.handle_demand(demand))
    }
}

/// A per-event operation on whole batches.
pub(crate) type LaneFn<T, U> = Box<dyn FnMut(Vec<T>, &mut Vec<U>) + Send>;

/// A per-event operation fused into a source lane.
pub(crate) struct Fused<T, U> {
    pub(crate) inner: Box<dyn LaneSource<T>>,
    pub(crate) f: LaneFn<T, U>,
}

impl<T: Send + 'static, U: Send + 'static> LaneSource<U> for Fused<T, U> {
    fn pull(
        &mut self,
        demand: usize,
    ) -> futures_util::future::BoxFuture<'_, Result<crate::stage::Emit<U>, crate::BoxError>> {
        Box::pin(async move {
            use crate::stage::Emit;
            let mut out = Vec::new();
            // An empty answer would make the stage pause: pull again until something passes
            // (a filter may drop whole batches) or the source ends.
            loop {
                let (events, done) = match self.inner.pull(demand).await? {
                    Emit::Events(v) => (v, false),
                    Emit::Done(v) => (v, true),
                };
                let empty_input = events.is_empty();
                (self.f)(events, &mut out);
                if done {
                    return Ok(Emit::Done(out));
                }
                if !out.is_empty() || empty_input {
                    return Ok(Emit::Events(out));
                }
            }
        })
    }
}

/// Runs a [`LaneSource`] as a stage.
pub(crate) struct LaneProducer<T>(pub(crate) Box<dyn LaneSource<T>>);

impl<T: Send + 'static> crate::stage::Producer for LaneProducer<T> {
    type Output = T;

    async fn handle_demand(&mut self, demand: usize) -> Result<crate::stage::Emit<T>, crate::BoxError> {
        self.0.pull(demand).await
    }
}
