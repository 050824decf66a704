//! Processors: run `handle_message` on every message, then hand it to its batcher or
//! acknowledge it.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use tracing::Instrument;

use super::handler::Handler;
use super::message::Message;
use super::outage::Outage;
use super::shared::Shared;
use crate::error::{StageError, is_unavailable, panic_message};
use crate::stage::outbox::Outbox;
use crate::stage::transform::Transform;
use crate::telemetry;

/// A processor: the handler's `handle_message` over each group, then on to the batchers (by
/// index), or acknowledged at once when there are none.
pub(crate) struct Processor<H: Handler> {
    pub(crate) shared: Arc<Shared<H>>,
    pub(crate) batchers: Arc<[&'static str]>,
    span: tracing::Span,
    handled: metrics::Counter,
    latency: metrics::Histogram,
    demand: metrics::Gauge,
}

impl<H: Handler> Processor<H> {
    pub(crate) fn new(shared: Arc<Shared<H>>, batchers: Arc<[&'static str]>, name: &str) -> Self {
        let pipeline = shared.name.to_string();
        Processor {
            span: tracing::info_span!("ferroway.processor", pipeline = %shared.name, stage = %name),
            handled: metrics::counter!(telemetry::PIPELINE_HANDLED, "pipeline" => pipeline.clone(), "stage" => name.to_owned()),
            latency: metrics::histogram!(telemetry::PIPELINE_HANDLER_SECONDS, "pipeline" => pipeline, "stage" => "processor"),
            demand: metrics::gauge!(telemetry::STAGE_DEMAND, "stage" => name.to_owned()),
            shared,
            batchers,
        }
    }
}

impl<H: Handler> Transform<Message<H::Data>, Message<H::Data>> for Processor<H> {
    async fn handle(
        &mut self,
        _from: crate::stage::SubscriptionId,
        messages: Vec<Message<H::Data>>,
        out: Option<&mut Outbox<Message<H::Data>>>,
    ) -> Result<(), StageError> {
        let n = messages.len();
        let started = Instant::now();
        let onward = process(&self.shared, messages, &self.batchers)
            .instrument(self.span.clone())
            .await;
        self.latency.record(started.elapsed().as_secs_f64());
        self.handled.increment(n as u64);
        if let Some(out) = out {
            out.emit(onward)?;
            self.demand.set(out.demand() as f64);
        }
        Ok(())
    }
}

/// Runs the handler over one group of messages; acknowledges those that are done here and
/// returns those that go on to a batcher.
async fn process<H: Handler>(
    shared: &Shared<H>,
    mut messages: Vec<Message<H::Data>>,
    batchers: &[&'static str],
) -> Vec<Message<H::Data>> {
    let h = &shared.handler;
    match AssertUnwindSafe(h.prepare_messages(&mut messages)).catch_unwind().await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => messages
            .iter_mut()
            .for_each(|m| m.fail(format_args!("prepare_messages failed: {e}"))),
        Err(p) => {
            let reason = panic_message(&*p);
            messages
                .iter_mut()
                .for_each(|m| m.fail(format_args!("prepare_messages panicked: {reason}")));
        }
    }
    for m in messages.iter_mut() {
        if !m.is_failed() {
            handle_one(shared, m).await;
        }
    }
    if batchers.is_empty() {
        shared.finish("processor", messages).await;
        return Vec::new();
    }
    let goes_on =
        |m: &Message<H::Data>| !m.is_failed() && !m.is_discarded() && m.batcher().is_none_or(|b| batchers.contains(&b));
    if messages.iter().all(goes_on) {
        return messages;
    }
    let (out, mut done): (Vec<_>, Vec<_>) = messages.into_iter().partition(goes_on);
    for m in done.iter_mut() {
        if let Some(b) = m
            .batcher()
            .filter(|b| !m.is_failed() && !m.is_discarded() && !batchers.contains(b))
        {
            m.fail(format_args!(
                "unknown batcher `{b}` (configured: {})",
                batchers.join(", ")
            ));
        }
    }
    shared.finish("processor", done).await;
    out
}

/// `handle_message` with panics caught and, when configured, retries with backoff. An
/// outage is waited out without using up the retries.
async fn handle_one<H: Handler>(shared: &Shared<H>, m: &mut Message<H::Data>) {
    let first = AssertUnwindSafe(shared.handler.handle_message(m)).catch_unwind().await;
    if let Ok(Ok(())) = first {
        return;
    }
    // Boxed: the failure path's state stays out of the per-message future.
    Box::pin(handle_failure(shared, m, first)).await;
}

type Attempt = Result<Result<(), crate::error::BoxError>, Box<dyn std::any::Any + Send>>;

async fn handle_failure<H: Handler>(shared: &Shared<H>, m: &mut Message<H::Data>, mut attempt: Attempt) {
    let mut delays = shared.retry.as_ref().map(|(policy, max)| policy.delays().take(*max));
    let mut outage = Outage::new(shared, "processor");
    loop {
        let reason = match attempt {
            Ok(Ok(())) => break,
            Ok(Err(e)) if is_unavailable(&*e) => {
                outage.wait(&*e, 1).await;
                attempt = AssertUnwindSafe(shared.handler.handle_message(m)).catch_unwind().await;
                continue;
            }
            Ok(Err(e)) => e.to_string(),
            Err(p) => format!("handle_message panicked: {}", panic_message(&*p)),
        };
        match delays.as_mut().and_then(Iterator::next) {
            Some(d) => {
                tracing::debug!(pipeline = %shared.name, %reason, delay = ?d, "retrying message");
                tokio::time::sleep(d).await;
                attempt = AssertUnwindSafe(shared.handler.handle_message(m)).catch_unwind().await;
            }
            None => {
                m.fail(reason);
                break;
            }
        }
    }
    outage.recovered();
}
