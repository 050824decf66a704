//! State every stage of one pipeline shares, and the one place messages are finished:
//! failed ones through `handle_failed` and the dead-letter sink, then all acknowledged.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use futures_util::FutureExt;
use tracing::warn;

use super::ack::{AckGroups, Ackers};
use super::dead_letter::{DeadLetterInfo, DeadLetterSink};
use super::handler::Handler;
use super::message::Message;
use crate::error::panic_message;
use crate::resilience::Backoff;
use crate::telemetry;

pub(crate) struct Shared<H: Handler> {
    pub(crate) name: Arc<str>,
    pub(crate) handler: H,
    pub(crate) dead_letter: Option<Box<dyn DeadLetterSink<H::Data>>>,
    pub(crate) retry: Option<(Backoff, usize)>,
    /// Messages emitted by producers and not yet acknowledged.
    pub(crate) in_flight: Arc<AtomicI64>,
    pub(crate) ackers: Arc<Ackers>,
    acked_ok: metrics::Counter,
    acked_failed: metrics::Counter,
    dead_lettered: metrics::Counter,
    in_flight_gauge: metrics::Gauge,
}

impl<H: Handler> Shared<H> {
    pub(crate) fn new(
        name: Arc<str>,
        handler: H,
        dead_letter: Option<Box<dyn DeadLetterSink<H::Data>>>,
        retry: Option<(Backoff, usize)>,
    ) -> Self {
        let p = name.to_string();
        Shared {
            acked_ok: metrics::counter!(telemetry::PIPELINE_ACKED, "pipeline" => p.clone(), "outcome" => "successful"),
            acked_failed: metrics::counter!(telemetry::PIPELINE_ACKED, "pipeline" => p.clone(), "outcome" => "failed"),
            dead_lettered: metrics::counter!(telemetry::PIPELINE_DEAD_LETTERED, "pipeline" => p.clone()),
            in_flight_gauge: metrics::gauge!(telemetry::PIPELINE_IN_FLIGHT, "pipeline" => p),
            name,
            handler,
            dead_letter,
            retry,
            in_flight: Arc::new(AtomicI64::new(0)),
            ackers: Arc::default(),
        }
    }

    pub(crate) fn entered(&self, n: usize) {
        let now = self.in_flight.fetch_add(n as i64, Ordering::Relaxed) + n as i64;
        self.in_flight_gauge.set(now as f64);
    }

    /// Acknowledges `messages` after the last stage that handles them. Failed ones first go
    /// through `handle_failed` and, when configured, the dead-letter sink.
    pub(crate) async fn finish(&self, stage: &'static str, mut messages: Vec<Message<H::Data>>) {
        if messages.is_empty() {
            return;
        }
        let n = messages.len();
        let mut groups = AckGroups::default();
        if messages.iter().any(Message::is_failed) {
            let (mut failed, ok): (Vec<_>, Vec<_>) = messages.into_iter().partition(Message::is_failed);
            messages = ok;
            self.failed(stage, &mut failed, &mut groups).await;
        }
        self.acked_ok.increment(messages.len() as u64);
        for m in messages {
            groups.add(m.ack, None);
        }
        groups.send(Some(&self.ackers));
        let now = self.in_flight.fetch_sub(n as i64, Ordering::Relaxed) - n as i64;
        self.in_flight_gauge.set(now as f64);
    }

    async fn failed(&self, stage: &'static str, failed: &mut Vec<Message<H::Data>>, groups: &mut AckGroups) {
        match AssertUnwindSafe(self.handler.handle_failed(failed))
            .catch_unwind()
            .await
        {
            Ok(()) => {}
            Err(panic) => warn!(pipeline = %self.name, reason = %panic_message(&*panic), "handle_failed panicked"),
        }
        // handle_failed may not un-fail messages, but be robust if a message has no reason.
        let reasons: Vec<_> = failed
            .iter()
            .map(|m| {
                (
                    m.failure_arc().unwrap_or_else(|| "failed".into()),
                    m.on_failure(),
                    m.ack.clone(),
                )
            })
            .collect();
        let stored = match &self.dead_letter {
            None => false,
            Some(sink) => {
                let letters: Vec<_> = std::mem::take(failed)
                    .into_iter()
                    .zip(&reasons)
                    .map(|(mut m, (reason, _, _))| {
                        m.put_metadata(DeadLetterInfo {
                            pipeline: self.name.clone(),
                            stage,
                            reason: reason.clone(),
                        });
                        m
                    })
                    .collect();
                self.dead_letter(sink.as_ref(), letters).await
            }
        };
        if stored {
            self.acked_ok.increment(reasons.len() as u64);
        } else {
            self.acked_failed.increment(reasons.len() as u64);
        }
        for (reason, on_failure, ack) in reasons {
            groups.add(ack, (!stored).then_some((reason, on_failure)));
        }
        failed.clear();
    }

    /// Hands `letters` to the sink; true when it took them.
    async fn dead_letter(&self, sink: &dyn DeadLetterSink<H::Data>, letters: Vec<Message<H::Data>>) -> bool {
        let count = letters.len();
        match AssertUnwindSafe(sink.send(letters)).catch_unwind().await {
            Ok(Ok(())) => {
                self.dead_lettered.increment(count as u64);
                true
            }
            Ok(Err(e)) => {
                warn!(pipeline = %self.name, error = %e, count, "dead-letter sink failed; acknowledging as failed");
                false
            }
            Err(p) => {
                warn!(pipeline = %self.name, reason = %panic_message(&*p), count, "dead-letter sink panicked; acknowledging as failed");
                false
            }
        }
    }
}
