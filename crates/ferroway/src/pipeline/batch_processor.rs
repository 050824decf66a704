//! Batch processors: run `handle_batch` on each batch, then acknowledge its messages.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::batcher::Batch;
use super::handler::Handler;
use super::message::Message;
use super::outage::Outage;
use super::shared::Shared;
use crate::error::{StageError, is_unavailable, panic_message};
use crate::stage::ConsumerMsg;
use crate::stage::inbox::{Inbox, Verdict};
use crate::telemetry;

pub(crate) async fn run<H: Handler>(
    shared: Arc<Shared<H>>,
    mut inbox: Inbox<Batch<H::Data>>,
    mut rx: mpsc::UnboundedReceiver<ConsumerMsg<Batch<H::Data>>>,
) -> Result<(), StageError> {
    let name = inbox.name.clone();
    let span = tracing::info_span!("ferroway.batch_processor", pipeline = %shared.name, stage = %name);
    let latency = metrics::histogram!(telemetry::PIPELINE_HANDLER_SECONDS, "pipeline" => shared.name.to_string(), "stage" => "batch_processor");
    let sizes = metrics::histogram!(telemetry::PIPELINE_BATCH_SIZE, "pipeline" => shared.name.to_string(), "stage" => name.to_string());
    while let Some(msg) = rx.recv().await {
        match msg {
            ConsumerMsg::Events { id, events } => {
                let n = events.len();
                for mut batch in events {
                    sizes.record(batch.messages.len() as f64);
                    let mut outage = Outage::new(&shared, "batch_processor");
                    let sink = shared
                        .sinks
                        .iter()
                        .find(|(b, _)| *b == batch.info.batcher)
                        .map(|(_, s)| s);
                    let reason = loop {
                        let started = Instant::now();
                        let outcome = match sink {
                            Some(sink) => {
                                AssertUnwindSafe(sink.write(&mut batch.messages))
                                    .catch_unwind()
                                    .instrument(span.clone())
                                    .await
                            }
                            None => {
                                AssertUnwindSafe(shared.handler.handle_batch(&mut batch.messages, &batch.info))
                                    .catch_unwind()
                                    .instrument(span.clone())
                                    .await
                            }
                        };
                        latency.record(started.elapsed().as_secs_f64());
                        match outcome {
                            Ok(Ok(())) => break None,
                            Ok(Err(e)) if is_unavailable(&*e) => {
                                // The whole batch goes again: marks from this attempt are void.
                                batch.messages.iter_mut().for_each(Message::clear_failure);
                                outage.wait(&*e, batch.messages.len()).await;
                            }
                            Ok(Err(e)) => break Some(format!("{} failed: {e}", what(sink.is_some()))),
                            Err(p) => break Some(format!("{} panicked: {}", what(sink.is_some()), panic_message(&*p))),
                        }
                    };
                    outage.recovered();
                    if let Some(reason) = reason {
                        batch.messages.iter_mut().for_each(|m| m.fail(&reason));
                    }
                    shared.finish("batch_processor", batch.messages).await;
                }
                inbox.handled(id, n);
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

/// What wrote the batch, for failure reasons.
fn what(sink: bool) -> &'static str {
    if sink { "the sink" } else { "handle_batch" }
}
