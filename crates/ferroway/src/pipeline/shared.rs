//! State every stage of one pipeline shares, and the one place messages are finished:
//! failed ones through `handle_failed` and the dead-letter sink, then all acknowledged.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use futures_util::FutureExt;
use tracing::warn;

use super::ack::{AckGroups, Ackers};
use super::dead_letter::DeadLetterInfo;
use super::handler::Handler;
use super::message::{Message, OnFailure};
use super::outage::Outage;
use crate::connector::Sink;
use crate::error::{Chain, is_unavailable, panic_message};
use crate::resilience::Backoff;
use crate::telemetry::{self, LogThrottle};

/// Batchers whose batches go to a sink, by batcher name.
pub(crate) type BatchSinks<T> = Vec<(&'static str, Arc<dyn Sink<T>>)>;

pub(crate) struct Shared<H: Handler> {
    pub(crate) name: Arc<str>,
    pub(crate) handler: H,
    pub(crate) dead_letter: Option<Box<dyn Sink<H::Data>>>,
    /// Batchers whose batches go to a sink rather than `handle_batch`.
    pub(crate) sinks: BatchSinks<H::Data>,
    pub(crate) retry: Option<(Backoff, usize)>,
    /// Waits between attempts while a destination is unavailable.
    pub(crate) outage_backoff: Backoff,
    pub(crate) outage_log: LogThrottle,
    pub(crate) unavailable: metrics::Counter,
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
        dead_letter: Option<Box<dyn Sink<H::Data>>>,
        retry: Option<(Backoff, usize)>,
        outage_backoff: Backoff,
        sinks: BatchSinks<H::Data>,
    ) -> Self {
        let p = name.to_string();
        Shared {
            unavailable: metrics::counter!(telemetry::PIPELINE_UNAVAILABLE, "pipeline" => p.clone()),
            outage_backoff,
            sinks,
            outage_log: LogThrottle::new(std::time::Duration::from_secs(5)),
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

    /// Failed messages: `handle_failed`, then the dead-letter sink for those not to be
    /// requeued, then into `groups` — as successful when the sink took them.
    async fn failed(&self, stage: &'static str, failed: &mut Vec<Message<H::Data>>, groups: &mut AckGroups) {
        match AssertUnwindSafe(self.handler.handle_failed(failed))
            .catch_unwind()
            .await
        {
            Ok(()) => {}
            Err(panic) => warn!(pipeline = %self.name, reason = %panic_message(&*panic), "handle_failed panicked"),
        }
        // A message asked to be requeued goes back to its source at once, not to the dead
        // letters (nor need it wait for them).
        let (mut letters, requeued): (Vec<_>, Vec<_>) = std::mem::take(failed)
            .into_iter()
            .partition(|m| m.on_failure() != OnFailure::Requeue);
        if !requeued.is_empty() {
            let mut back = AckGroups::default();
            self.add_failed(&mut back, requeued);
            back.send(Some(&self.ackers));
        }
        let Some(sink) = self.dead_letter.as_deref().filter(|_| !letters.is_empty()) else {
            self.add_failed(groups, letters);
            return;
        };
        for m in letters.iter_mut() {
            // handle_failed may not un-fail messages, but be robust if one has no reason.
            let reason = m.failure_arc().unwrap_or_else(|| "failed".into());
            m.put_metadata(DeadLetterInfo {
                pipeline: self.name.clone(),
                stage,
                reason,
            });
            // The reason travels in DeadLetterInfo; a mark after the write means the
            // dead-letter sink refused the message, as with any batch sink.
            m.clear_failure();
        }
        let stored = self.dead_letter(stage, sink, &mut letters).await;
        let mut refused = Vec::new();
        for mut m in letters {
            let reason = m.metadata::<DeadLetterInfo>().map(|i| i.reason.clone());
            match (stored, m.failure_arc()) {
                (true, None) => {
                    self.acked_ok.increment(1);
                    groups.add(m.ack, None);
                }
                (_, why) => {
                    let reason = reason.unwrap_or_else(|| "failed".into());
                    match why {
                        Some(why) => m.fail(format_args!("{reason} (and the dead-letter sink refused it: {why})")),
                        None => m.fail(reason),
                    }
                    refused.push(m);
                }
            }
        }
        self.add_failed(groups, refused);
    }

    fn add_failed(&self, groups: &mut AckGroups, messages: Vec<Message<H::Data>>) {
        self.acked_failed.increment(messages.len() as u64);
        for m in messages {
            let failure = (m.failure_arc().unwrap_or_else(|| "failed".into()), m.on_failure());
            groups.add(m.ack, Some(failure));
        }
    }

    /// Hands `letters` to the sink, waiting out outages; true when it wrote the batch (those it
    /// refused are marked failed), false when it failed as a whole.
    async fn dead_letter(
        &self,
        stage: &'static str,
        sink: &dyn Sink<H::Data>,
        letters: &mut [Message<H::Data>],
    ) -> bool {
        let count = letters.len();
        let mut outage = Outage::new(self, stage);
        loop {
            match AssertUnwindSafe(sink.write(letters)).catch_unwind().await {
                Ok(Ok(())) => {
                    outage.recovered();
                    let taken = letters.iter().filter(|m| !m.is_failed()).count();
                    self.dead_lettered.increment(taken as u64);
                    return true;
                }
                Ok(Err(e)) if is_unavailable(&*e) => {
                    letters.iter_mut().for_each(Message::clear_failure);
                    outage.wait(&*e, count).await;
                }
                Ok(Err(e)) => {
                    warn!(pipeline = %self.name, error = %Chain(&*e), count, "dead-letter sink refused the messages; acknowledging them as failed");
                    return false;
                }
                Err(p) => {
                    warn!(pipeline = %self.name, reason = %panic_message(&*p), count, "dead-letter sink panicked; acknowledging as failed");
                    return false;
                }
            }
        }
    }
}
