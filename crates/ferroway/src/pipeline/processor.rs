//! Processors: run `handle_message` on every message, then hand it to its batcher or
//! acknowledge it.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::handler::Handler;
use super::message::Message;
use super::shared::Shared;
use crate::error::{StageError, panic_message};
use crate::stage::inbox::{Inbox, Verdict};
use crate::stage::outbox::Outbox;
use crate::stage::{ConsumerMsg, EndReason, ProducerMsg, SubscriptionId};
use crate::telemetry;

/// Where processed messages go: the batchers (by index), or nowhere (acknowledged at once).
pub(crate) struct Route<T> {
    pub(crate) outbox: Option<Outbox<Message<T>>>,
    pub(crate) rx: mpsc::UnboundedReceiver<ProducerMsg<Message<T>>>,
    pub(crate) batchers: Arc<[&'static str]>,
}

pub(crate) async fn run<H: Handler>(
    shared: Arc<Shared<H>>,
    mut inbox: Inbox<Message<H::Data>>,
    mut crx: mpsc::UnboundedReceiver<ConsumerMsg<Message<H::Data>>>,
    mut route: Route<H::Data>,
) -> Result<(), StageError> {
    let result = drive(&shared, &mut inbox, &mut crx, &mut route).await;
    if let Some(outbox) = &mut route.outbox {
        outbox.close(match &result {
            Ok(()) => EndReason::Normal,
            Err(e) => EndReason::Failed(e.clone()),
        });
    }
    result
}

async fn drive<H: Handler>(
    shared: &Shared<H>,
    inbox: &mut Inbox<Message<H::Data>>,
    crx: &mut mpsc::UnboundedReceiver<ConsumerMsg<Message<H::Data>>>,
    route: &mut Route<H::Data>,
) -> Result<(), StageError> {
    let name = inbox.name.clone();
    let span = tracing::info_span!("ferroway.processor", pipeline = %shared.name, stage = %name);
    let handled = metrics::counter!(telemetry::PIPELINE_HANDLED, "pipeline" => shared.name.to_string(), "stage" => name.to_string());
    let latency = metrics::histogram!(telemetry::PIPELINE_HANDLER_SECONDS, "pipeline" => shared.name.to_string(), "stage" => "processor");
    let demand = metrics::gauge!(telemetry::STAGE_DEMAND, "stage" => name.to_string());
    let mut pending: VecDeque<(SubscriptionId, Vec<Message<H::Data>>)> = VecDeque::new();
    let mut stopping: Option<Result<(), StageError>> = None;
    let mut downstream_open = true;
    loop {
        while let Ok(msg) = route.rx.try_recv() {
            if let Some(outbox) = &mut route.outbox {
                outbox.handle(msg)?;
            }
        }
        // Take new input only while batchers want it and nothing waits for them: this is what
        // bounds memory by demand.
        while route.outbox.as_ref().is_none_or(|o| o.demand() > 0 && o.is_empty()) {
            let Some((id, messages)) = pending.pop_front() else {
                break;
            };
            let n = messages.len();
            let started = Instant::now();
            let out = process(shared, messages, &route.batchers)
                .instrument(span.clone())
                .await;
            latency.record(started.elapsed().as_secs_f64());
            handled.increment(n as u64);
            if let Some(outbox) = &mut route.outbox {
                outbox.emit(out)?;
                demand.set(outbox.demand() as f64);
            }
            inbox.handled(id, n);
        }
        if stopping.is_some() && pending.is_empty() && route.outbox.as_ref().is_none_or(|o| o.is_empty()) {
            return stopping.unwrap_or(Ok(()));
        }
        tokio::select! {
            biased;
            msg = route.rx.recv(), if downstream_open && route.outbox.is_some() => match msg {
                Some(msg) => {
                    if let Some(outbox) = &mut route.outbox {
                        outbox.handle(msg)?;
                    }
                }
                None => downstream_open = false,
            },
            msg = crx.recv(), if stopping.is_none() => match msg {
                Some(ConsumerMsg::Events { id, events }) => pending.push_back((id, events)),
                Some(other) => {
                    if let Verdict::Stop(r) = inbox.control(other) {
                        stopping = Some(r);
                    }
                }
                None => stopping = Some(Ok(())),
            },
            else => return stopping.unwrap_or(Ok(())),
        }
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

/// `handle_message` with panics caught and, when configured, retries with backoff.
async fn handle_one<H: Handler>(shared: &Shared<H>, m: &mut Message<H::Data>) {
    let mut delays = shared.retry.as_ref().map(|(policy, max)| policy.delays().take(*max));
    loop {
        let reason = match AssertUnwindSafe(shared.handler.handle_message(m)).catch_unwind().await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(p) => format!("handle_message panicked: {}", panic_message(&*p)),
        };
        match delays.as_mut().and_then(Iterator::next) {
            Some(d) => {
                tracing::debug!(pipeline = %shared.name, %reason, delay = ?d, "retrying message");
                tokio::time::sleep(d).await;
            }
            None => {
                m.fail(reason);
                return;
            }
        }
    }
}
