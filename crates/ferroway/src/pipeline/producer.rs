//! Producers of a pipeline: the user's producer, wrapped to count and rate-limit what it emits,
//! run as a child of the pipeline's supervisor so a crashed producer is restarted.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::handler::Handler;
use super::message::Message;
use super::rate_limit::RateLimiter;
use super::shared::Shared;
use crate::error::BoxError;
use crate::resilience::{ChildSpec, Restart};
use crate::stage::{
    self, CancelMode, ConsumerRef, Dispatcher, Emit, Producer, ProducerOptions, ProducerRef, SubscribeOptions,
};

/// The user's producer, as the pipeline runs it.
struct Source<P, H: Handler> {
    inner: P,
    shared: Arc<Shared<H>>,
    limiter: Option<Arc<RateLimiter>>,
    /// Opens once every processor has subscribed, so a quick finite source cannot finish
    /// before all its consumers are there.
    gate: Option<oneshot::Receiver<()>>,
    over_demand_warned: bool,
}

impl<P, H> Producer for Source<P, H>
where
    H: Handler,
    P: Producer<Output = Message<H::Data>>,
{
    type Output = Message<H::Data>;

    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<H::Data>>, BoxError> {
        if let Some(gate) = self.gate.take() {
            let _ = gate.await;
        }
        let n = match &self.limiter {
            Some(l) => l.acquire(demand).await,
            None => demand,
        };
        let emit = self.inner.handle_demand(n).await?;
        let (Emit::Events(v) | Emit::Done(v)) = &emit;
        if let Some(l) = &self.limiter {
            l.release(n.saturating_sub(v.len()));
        }
        if v.len() > n && !self.over_demand_warned {
            // The memory bound assumes producers answer within the demand they were given.
            self.over_demand_warned = true;
            tracing::warn!(pipeline = %self.shared.name, asked = n, got = v.len(), "the producer emitted more than demanded; memory is no longer bounded by demand");
        }
        self.shared.entered(v.len());
        Ok(emit)
    }

    async fn prepare_for_draining(&mut self) -> Vec<Message<H::Data>> {
        let last = self.inner.prepare_for_draining().await;
        self.shared.entered(last.len());
        last
    }
}

pub(crate) type Registry<T> = Arc<Mutex<Vec<Option<ProducerRef<Message<T>>>>>>;

/// Everything a producer child needs to (re)start its producer.
pub(crate) struct ProducerPlan<P, H: Handler> {
    pub(crate) index: usize,
    pub(crate) factory: Arc<dyn Fn(usize) -> Result<P, BoxError> + Send + Sync>,
    pub(crate) shared: Arc<Shared<H>>,
    pub(crate) limiter: Option<Arc<RateLimiter>>,
    pub(crate) processors: Vec<ConsumerRef<Message<H::Data>>>,
    pub(crate) registry: Registry<H::Data>,
    pub(crate) dispatcher: Dispatcher<Message<H::Data>>,
    pub(crate) demand: (usize, usize),
    pub(crate) shutdown_timeout: Duration,
}

impl<P, H> ProducerPlan<P, H>
where
    H: Handler,
    P: Producer<Output = Message<H::Data>>,
{
    pub(crate) fn into_child(self) -> ChildSpec {
        let timeout = self.shutdown_timeout;
        let plan = Arc::new(self);
        ChildSpec::new(format!("producer.{}", plan.index), move |ctx| {
            let plan = plan.clone();
            async move {
                let (open, gate) = oneshot::channel();
                let source = Source {
                    inner: (plan.factory)(plan.index)?,
                    shared: plan.shared.clone(),
                    limiter: plan.limiter.clone(),
                    gate: Some(gate),
                    over_demand_warned: false,
                };
                let name = format!("{}.producer.{}", plan.shared.name, plan.index);
                let opts = ProducerOptions::new()
                    .name(name)
                    .dispatcher(plan.dispatcher.clone())
                    // Pipeline producers emit on demand; only pushed test messages can exceed
                    // it, and those must never be dropped.
                    .buffer_size(usize::MAX);
                let stage = stage::start_producer(source, opts);
                let pref = stage.producer_ref();
                plan.registry.lock().unwrap_or_else(|e| e.into_inner())[plan.index] = Some(pref.clone());
                let partitioned = plan.dispatcher.partitions().is_some();
                for (j, p) in plan.processors.iter().enumerate() {
                    // Temporary: a crashed producer is restarted and subscribed to again.
                    let mut o = SubscribeOptions::new()
                        .max_demand(plan.demand.0)
                        .min_demand(plan.demand.1)
                        .cancel(CancelMode::Temporary);
                    if partitioned {
                        o = o.partition(j);
                    }
                    p.subscribe_to(&pref, o).await?;
                }
                let _ = open.send(());
                let abort = stage.task().abort_handle();
                let join = stage.join();
                tokio::pin!(join);
                tokio::select! {
                    r = &mut join => r.map_err(BoxError::from),
                    _ = ctx.cancelled() => {
                        pref.drain();
                        // Processors that are gone (a failed pipeline) can take nothing more:
                        // what the producer still holds is unacknowledged, and comes again.
                        let gone = futures_util::future::join_all(plan.processors.iter().map(|p| p.tx.closed()));
                        tokio::select! {
                            r = &mut join => r.map_err(BoxError::from),
                            _ = gone => {
                                abort.abort();
                                Ok(())
                            }
                        }
                    }
                }
            }
        })
        // Transient: a producer that finishes its source is done; one that fails restarts.
        .restart(Restart::Transient)
        .shutdown_timeout(timeout)
    }
}
