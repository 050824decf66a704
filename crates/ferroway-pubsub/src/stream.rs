//! The streaming pull: one stream per producer, read all along by a task of its own, and
//! opened again with backoff when it fails.
//!
//! Why a task and not the producer's demand: what Pub/Sub sends is leased from the moment it
//! is sent. Left unread in the connection's buffers while the pipeline is busy, it would
//! expire there and come back as a copy. Read at once, it is in the lease table and its
//! lease is extended until the pipeline takes it.

use std::sync::Arc;
use std::time::Duration;

use ferroway::connector::leases::{Arrival, Leases};
use ferroway::connector::settle::Job;
use ferroway::pipeline::{Acknowledger, BoxFuture, Message, OnFailure};
use ferroway::resilience::{Backoff, Reach, StatefulBackoff};
use ferroway::telemetry::LogThrottle;
use gcloud_gax::grpc::{Code, Status, Streaming};
use gcloud_googleapis::pubsub::v1::{ReceivedMessage, StreamingPullRequest, StreamingPullResponse};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::ack::{PubSubCalls, Settings};
use crate::client::{self, Fault, Subscriber, describe, fault};
use crate::error::SourceError;
use crate::message::{PubSubMessage, PubSubMetadata, split};
use crate::options::PubSubOptions;

/// What the reader hands its producer: a response's messages, or why the source ends.
pub(crate) type Delivery = Result<Vec<Message<PubSubMessage>>, SourceError>;

/// How often an open stream tells Pub/Sub it is alive.
const PING: Duration = Duration::from_secs(30);
/// How long a closing stream is given to be ended by Pub/Sub before it is cancelled.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Hands messages that never reached the pipeline back to Pub/Sub (their deadline set to
/// zero), so they are delivered again at once instead of waiting out a lease the
/// acknowledgement task would go on extending.
pub(crate) fn give_back(leases: &Leases, ack_tx: &mpsc::UnboundedSender<Job>, messages: Vec<Message<PubSubMessage>>) {
    let ids: Vec<String> = messages.iter().filter_map(|m| leases.release(m.ack_token())).collect();
    if !ids.is_empty() {
        debug!(count = ids.len(), "messages not handed to the pipeline: given back");
        let _ = ack_tx.send(Job::Change(ids, 0, "returned"));
    }
}

/// One producer's stream reader.
pub(crate) struct Reader {
    pub(crate) opts: Arc<PubSubOptions>,
    pub(crate) subscription: Arc<str>,
    /// Names the stream to Pub/Sub, so flow control carries over a reconnect.
    pub(crate) client_id: String,
    pub(crate) leases: Arc<Leases>,
    pub(crate) acker: Arc<dyn Acknowledger>,
    pub(crate) ack_tx: mpsc::UnboundedSender<Job>,
    /// Hands the acknowledgement task the client once Pub/Sub answered.
    pub(crate) to_acks: Option<(oneshot::Sender<PubSubCalls>, Arc<Settings>)>,
    pub(crate) reach: Arc<Reach>,
    pub(crate) out: mpsc::UnboundedSender<Delivery>,
    pub(crate) retry: StatefulBackoff,
    pub(crate) outage_log: LogThrottle,
    /// Since when the subscription has been missing, after the source consumed from it.
    pub(crate) missing_since: Option<Instant>,
    pub(crate) received: metrics::Counter,
    pub(crate) copies: metrics::Counter,
    /// Messages sent back at once because the limits were already passed.
    pub(crate) surplus: metrics::Counter,
    pub(crate) stream: Option<Open>,
}

/// An open stream, and what ends the client's side of it.
pub(crate) struct Open {
    responses: Streaming<StreamingPullResponse>,
    /// Dropped: the client's side ends (a half-close).
    close: oneshot::Sender<()>,
}

/// A stream being opened, and what ends the client's side of it. The call returns with
/// Pub/Sub's first response (the emulator's, at least): on an idle subscription, a long wait.
pub(crate) type Opening = (
    BoxFuture<'static, Result<Streaming<StreamingPullResponse>, Status>>,
    oneshot::Sender<()>,
);

impl Reader {
    pub(crate) fn backoff() -> StatefulBackoff {
        Backoff::exponential(Duration::from_millis(100))
            .cap(Duration::from_secs(5))
            .stateful()
    }

    /// Reads until the producer is gone, `stop` fires, or the source fails (the error is its
    /// last word), and then closes the stream.
    pub(crate) async fn run(mut self, stop: oneshot::Receiver<()>) {
        // `read` is cancel-safe: it waits only on the connection, the stream and pauses.
        // A stream being opened is kept here, out of `self` (which must stay `Sync`).
        let mut opening = None;
        let outcome = tokio::select! {
            outcome = self.read(&mut opening) => outcome,
            _ = stop => Ok(()),
        };
        self.close(opening).await;
        if let Err(e) = outcome {
            let _ = self.out.send(Err(e));
        }
    }

    async fn read(&mut self, opening: &mut Option<Opening>) -> Result<(), SourceError> {
        let client = self.live().await?;
        loop {
            let open = match &mut self.stream {
                Some(open) => open,
                None => {
                    // Kept outside while it waits: cancelled here, `close` still ends it.
                    let result = (&mut opening.insert(self.open(&client)).0).await;
                    let Some((_, close)) = opening.take() else {
                        continue;
                    };
                    match result {
                        Ok(responses) => self.stream.insert(Open { responses, close }),
                        Err(status) => {
                            let why = self.failed("opening the stream", &status)?;
                            self.pause(&why, Duration::MAX).await;
                            continue;
                        }
                    }
                }
            };
            match open.responses.message().await {
                Ok(Some(response)) => {
                    self.retry.succeed();
                    self.missing_since = None;
                    let batch = self.take(response.received_messages);
                    if !batch.is_empty()
                        && let Err(mpsc::error::SendError(Ok(batch))) = self.out.send(Ok(batch))
                    {
                        give_back(&self.leases, &self.ack_tx, batch);
                        return Ok(());
                    }
                }
                Ok(None) => {
                    debug!(subscription = %self.subscription, "Pub/Sub closed the stream; opening it again");
                    self.stream = None;
                }
                Err(status) => {
                    self.stream = None;
                    let why = self.failed("reading the stream", &status)?;
                    self.pause(&why, Duration::MAX).await;
                }
            }
            if self.out.is_closed() {
                return Ok(());
            }
        }
    }

    /// Closes the stream the way Pub/Sub expects: the client's side ends, and Pub/Sub ends
    /// the stream. A stream only dropped is cancelled instead, which the emulator does not
    /// notice: it goes on pulling for the dead stream, holding messages an ack deadline at a
    /// time, again and again. What arrives while closing was not asked for: given back.
    async fn close(&mut self, opening: Option<Opening>) {
        let deadline = Instant::now() + CLOSE_WAIT;
        let mut responses = if let Some(Open { responses, close }) = self.stream.take() {
            drop(close);
            responses
        } else if let Some((call, close)) = opening {
            drop(close);
            match tokio::time::timeout_at(deadline, call).await {
                Ok(Ok(responses)) => responses,
                Ok(Err(_)) => return,
                Err(_) => {
                    debug!(subscription = %self.subscription, "Pub/Sub did not answer the stream within {CLOSE_WAIT:?}: cancelled");
                    return;
                }
            }
        } else {
            return;
        };
        let ended = tokio::time::timeout_at(deadline, async {
            while let Ok(Some(response)) = responses.message().await {
                // Through the lease table: a copy of a message in the pipeline or handled
                // is settled as such; the rest goes back.
                let batch = self.take(response.received_messages);
                give_back(&self.leases, &self.ack_tx, batch);
            }
        })
        .await;
        if ended.is_err() {
            debug!(subscription = %self.subscription, "Pub/Sub did not end the stream within {CLOSE_WAIT:?}: cancelled");
        }
    }

    fn refused(&self, step: &'static str, reason: String) -> SourceError {
        SourceError::Refused {
            subscription: self.subscription.to_string(),
            step,
            reason,
        }
    }

    async fn pause(&mut self, why: &str, wait: Duration) {
        if let Some(suppressed) = self.outage_log.allow() {
            warn!(subscription = %self.subscription, error = why, suppressed, "waiting for Pub/Sub");
        }
        let pause = self.retry.fail().unwrap_or(Duration::from_secs(5)).min(wait);
        tokio::time::sleep(pause).await;
    }

    /// The client, once Pub/Sub answered for the subscription (and it suits the options).
    async fn live(&mut self) -> Result<Subscriber, SourceError> {
        let (client, subscription) = loop {
            let Some(wait) = self.reach.wait(self.opts.client.reach_timeout, Duration::MAX) else {
                return Err(SourceError::Unreachable {
                    subscription: self.subscription.to_string(),
                    endpoint: self.opts.client.shown(),
                    waited: self.reach.waited(),
                    last_error: self.reach.last_error(),
                });
            };
            let attempt = async {
                let c = client::subscriber(&self.opts.client).await?;
                let s = c
                    .get_subscription(self.subscription.to_string())
                    .await
                    .map_err(|s| fault(&s))?;
                Ok::<_, Fault>((c, s))
            };
            match attempt.await {
                Ok(found) => break found,
                Err(Fault::Refused(why)) => return Err(self.refused("opening the subscription", why)),
                Err(Fault::Transient(why)) => {
                    self.reach.failed(Some(why.clone()));
                    self.pause(&why, wait).await;
                }
            }
        };
        if self.opts.max_delivery_attempts.is_some() && subscription.dead_letter_policy.is_none() {
            return Err(self.refused(
                "checking the subscription",
                "`max_delivery_attempts` is set, but the subscription has no dead-letter policy \
                 and Pub/Sub counts delivery attempts only with one"
                    .into(),
            ));
        }
        self.reach.mark_reached();
        self.retry.succeed();
        if let Some((tx, settings)) = self.to_acks.take() {
            let _ = tx.send(PubSubCalls {
                client: client.clone(),
                settings,
            });
        }
        info!(
            subscription = %self.subscription,
            topic = %subscription.topic,
            ack_deadline_s = self.opts.ack_deadline.as_secs(),
            message_ordering = subscription.enable_message_ordering,
            exactly_once = subscription.enable_exactly_once_delivery,
            "consuming"
        );
        Ok(client)
    }

    /// Opens the stream, its flow control the source's limits.
    fn open(&self, client: &Subscriber) -> Opening {
        let o = &self.opts;
        let (close, closed) = oneshot::channel();
        let request = StreamingPullRequest {
            subscription: self.subscription.to_string(),
            stream_ack_deadline_seconds: o.ack_deadline.as_secs() as i32,
            client_id: self.client_id.clone(),
            max_outstanding_messages: o.max_outstanding_messages as i64,
            max_outstanding_bytes: o.max_outstanding_bytes as i64,
            ..StreamingPullRequest::default()
        };
        let client = client.clone();
        (
            Box::pin(async move { client.streaming_pull(request, PING, closed).await }),
            close,
        )
    }

    /// A stream that failed: to wait out, or the error that ends the source.
    fn failed(&mut self, step: &'static str, status: &Status) -> Result<String, SourceError> {
        let why = describe(status);
        match fault(status) {
            Fault::Transient(_) => Ok(why),
            // Gone after it was consumed: re-created soon, or the source fails at the timeout.
            Fault::Refused(_) if status.code() == Code::NotFound && self.reach.reached() => {
                let since = *self.missing_since.get_or_insert_with(Instant::now);
                if since.elapsed() < self.opts.client.reach_timeout {
                    Ok(why)
                } else {
                    Err(self.refused(step, format!("{why} (for {:.1?})", since.elapsed())))
                }
            }
            Fault::Refused(_) => Err(self.refused(step, why)),
        }
    }

    /// A response's messages, into the lease table. Pub/Sub's flow control keeps a stream
    /// from passing the limits by more than a response; a response that arrives with the
    /// limits already passed (a server that ignores flow control, as the emulator does) goes
    /// back at once, so what the source holds stays bounded.
    fn take(&self, messages: Vec<ReceivedMessage>) -> Vec<Message<PubSubMessage>> {
        let (held, bytes) = self.leases.outstanding();
        if held >= self.opts.max_outstanding_messages || bytes >= self.opts.max_outstanding_bytes {
            let ids: Vec<String> = messages.into_iter().map(|m| m.ack_id).collect();
            self.surplus.increment(ids.len() as u64);
            debug!(subscription = %self.subscription, count = ids.len(), held, "past the flow-control limits: sent back");
            let _ = self.ack_tx.send(Job::Change(ids, 0, "surplus"));
            return Vec::new();
        }
        messages.into_iter().filter_map(|m| self.message(m)).collect()
    }

    fn message(&self, m: ReceivedMessage) -> Option<Message<PubSubMessage>> {
        let bytes = m.message.as_ref().map_or(0, |m| m.data.len());
        let (data, meta) = split(&self.subscription, m);
        let deadline = self.opts.ack_deadline;
        // A copy has the original's id and publish time; an emulator restarted numbers its
        // messages from 1 again, so the id alone would take new messages for copies.
        let identity = format!("{}@{}", meta.message_id, meta.publish_time.unwrap_or_default());
        let token = match self.leases.add(
            &identity,
            meta.ack_id.clone(),
            bytes,
            deadline,
            self.opts.max_extension + deadline,
        ) {
            Arrival::New(token) => token,
            Arrival::InPipeline => {
                self.copies.increment(1);
                debug!(subscription = %self.subscription, message_id = %meta.message_id, "delivered again while in the pipeline: handled once");
                return None;
            }
            Arrival::Handled(ack_id) => {
                self.copies.increment(1);
                debug!(subscription = %self.subscription, message_id = %meta.message_id, "delivered again after it was handled: acknowledged");
                let _ = self.ack_tx.send(Job::Settle(vec![ack_id]));
                return None;
            }
        };
        let last = self
            .opts
            .max_delivery_attempts
            .is_some_and(|n| meta.delivery_attempt.unwrap_or(1) >= n);
        let mut message = Message::with_acker(data, self.acker.clone(), token);
        if !last {
            // Left for Pub/Sub to deliver again: the dead-letter route is for the last attempt.
            message.configure_ack(OnFailure::Requeue);
        }
        message.put_origin::<PubSubMetadata>(meta);
        self.received.increment(1);
        Some(message)
    }
}
