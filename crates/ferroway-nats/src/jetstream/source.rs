//! The JetStream source: a durable pull consumer as pipeline producers.

use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::stream::Stream as JsStream;
use async_nats::jetstream::{self, context, stream};
use ferroway::BoxError;
use ferroway::connector::{Producers, Source};
use ferroway::pipeline::{Acknowledger, BoxFuture, Message, OnFailure};
use ferroway::resilience::{Reach, StatefulBackoff};
use ferroway::stage::{Emit, Producer};
use ferroway::telemetry::LogThrottle;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::ack::{self, InFlight, Job, JsAcker};
use crate::error::{OptionsError, SourceError};
use crate::message::{JetStreamMetadata, NatsMessage};
use crate::options::{JetStreamOptions, OnFailed};

/// Consumes a JetStream stream through a durable **pull** consumer: one pipeline producer. A
/// pipeline gets them from [`JetStreamSource::factory`].
///
/// - **Demand-driven:** each pull asks for exactly what the pipeline demanded (at most
///   [`max_batch`](JetStreamOptions::max_batch)), so nothing waits in memory with its ack wait
///   running.
/// - **Acknowledged after the pipeline:** `+ACK` once the pipeline finished with a message; a
///   failure is nak'ed (optionally with a delay) or terminated ([`OnFailed`]); a failure on
///   the last delivery the consumer allows (`max_deliver`) goes to the pipeline's
///   dead-letter route, or is terminated without one.
/// - **Slow work:** a message still in the pipeline after a third of the ack wait gets
///   `+WPI` (work in progress), so it is not redelivered while it runs.
/// - **Outages:** the client reconnects by itself; pulls resume, and messages whose ack was
///   lost are redelivered after their ack wait — at-least-once.
/// - **Stop:** the pulls under way are finished (they end by [`fetch_wait`](JetStreamOptions::fetch_wait))
///   and their messages processed; the pipeline's stop returns once every ack is flushed.
///
/// ```no_run
/// use ferroway::pipeline::{Handler, Message, Pipeline};
/// use ferroway_nats::{JetStreamOptions, JetStreamSource, NatsMessage};
///
/// struct Print;
/// impl Handler for Print {
///     type Data = NatsMessage;
///     async fn handle_message(&self, m: &mut Message<NatsMessage>) -> Result<(), ferroway::BoxError> {
///         println!("{}: {}", m.data().subject, String::from_utf8_lossy(&m.data().payload));
///         Ok(())
///     }
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let opts = JetStreamOptions::new("nats://127.0.0.1:4222", "ORDERS", "printer");
/// let pipeline = Pipeline::builder("print", Print)
///     .source(JetStreamSource::factory(opts)?)
///     .start()
///     .await?;
/// pipeline.run_until(ferroway::shutdown_signal()).await?;
/// # Ok(()) }
/// ```
pub struct JetStreamSource {
    opts: Arc<JetStreamOptions>,
    live: Option<Live>,
    in_flight: Arc<InFlight>,
    acker: Arc<dyn Acknowledger>,
    /// Hands the acknowledger's task its client once connected.
    client: Option<oneshot::Sender<Client>>,
    ack_tx: mpsc::UnboundedSender<Job>,
    reach: Arc<Reach>,
    retry: StatefulBackoff,
    outage: LogThrottle,
    what: String,
    stream: Arc<str>,
    consumer: Arc<str>,
    received: metrics::Counter,
}

struct Live {
    consumer: PullConsumer,
    /// Pulls under way, oldest first, with how many messages each may still bring: the
    /// server answers them in order. Two at most, so the next is asked for while the
    /// pipeline works on the last (never more in all than the demand).
    pulls: std::collections::VecDeque<(pull::Batch, usize)>,
}

impl Live {
    fn owed(&self) -> usize {
        self.pulls.iter().map(|p| p.1).sum()
    }
}

/// How long past `fetch_wait` a stop waits for the pulls under way to end.
const DRAIN_MARGIN: Duration = Duration::from_secs(5);

/// Pulls under way at once, at most.
const PULLS: usize = 2;

impl std::fmt::Debug for JetStreamSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamSource")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl JetStreamSource {
    /// A source for `opts`; connects on the first demand. In a pipeline prefer
    /// [`JetStreamSource::factory`]: the pipeline then also waits for the last acks when it
    /// stops.
    ///
    /// # Errors
    /// [`OptionsError`] naming the first invalid option.
    pub fn new(opts: JetStreamOptions) -> Result<Self, OptionsError> {
        opts.validate()?;
        Ok(Self::start(Arc::new(opts)))
    }

    /// Validates `opts` and returns the [`Source`] a pipeline takes.
    ///
    /// ```
    /// use ferroway_nats::{JetStreamOptions, JetStreamSource};
    /// let e = JetStreamSource::factory(JetStreamOptions::new("nats://h:4222", "a.b", "d")).unwrap_err();
    /// assert!(e.to_string().starts_with("invalid option `stream`"));
    /// ```
    ///
    /// # Errors
    /// [`OptionsError`] naming the first invalid option.
    pub fn factory(opts: JetStreamOptions) -> Result<JetStreamSourceFactory, OptionsError> {
        opts.validate()?;
        Ok(JetStreamSourceFactory {
            opts: Arc::new(opts),
            producers: Producers::new(Job::Flush),
        })
    }

    fn start(opts: Arc<JetStreamOptions>) -> Self {
        let in_flight = Arc::new(InFlight::default());
        let (ack_tx, jobs) = mpsc::unbounded_channel();
        let (client_tx, client_rx) = oneshot::channel();
        let max_deliver = opts.consumer.max_deliver;
        let acker: Arc<dyn Acknowledger> = Arc::new(JsAcker {
            in_flight: in_flight.clone(),
            tx: ack_tx.clone(),
            on_failed: opts.on_failed,
            max_deliver,
        });
        let what = format!("{}/{}", opts.stream, opts.durable);
        let reach = Reach::of(&format!("nats\n{}\n{what}", opts.url.expose()));
        tokio::spawn(ack::run(
            client_rx,
            in_flight.clone(),
            opts.consumer.ack_wait,
            what.clone(),
            jobs,
        ));
        JetStreamSource {
            received: metrics::counter!(crate::metrics::RECEIVED, "source" => what.clone()),
            stream: opts.stream.as_str().into(),
            consumer: opts.durable.as_str().into(),
            retry: ferroway::resilience::Backoff::exponential(Duration::from_millis(100))
                .cap(Duration::from_secs(5))
                .stateful(),
            outage: LogThrottle::new(Duration::from_secs(10)),
            live: None,
            client: Some(client_tx),
            in_flight,
            acker,
            ack_tx,
            reach,
            what,
            opts,
        }
    }

    fn refused(&self, step: &str, reason: impl std::fmt::Display) -> SourceError {
        SourceError::Refused {
            what: self.what.clone(),
            url: self.opts.url.redacted(),
            step: step.to_owned(),
            reason: self.opts.url.redact_in(&reason.to_string()),
        }
    }

    async fn pause(&mut self, why: &str) {
        if let Some(suppressed) = self.outage.allow() {
            warn!(source = %self.what, url = %self.opts.url, error = why, suppressed, "waiting for NATS");
        }
        let pause = self.retry.fail().unwrap_or(Duration::from_secs(5));
        tokio::time::sleep(pause).await;
    }

    /// The consumer, connecting and making sure stream and consumer exist first.
    async fn live(&mut self) -> Result<&mut Live, SourceError> {
        while self.live.is_none() {
            let (url, name, timeout) = (&self.opts.url, &self.opts.name, self.opts.connect_timeout);
            let client = crate::connection::connect_within(url, name, 1024, &self.reach, timeout, &self.what).await?;
            let consumer = match self.consumer_of(&client).await {
                Ok(c) => c,
                Err(Err(refused)) => return Err(refused),
                Err(Ok(())) => continue,
            };
            // The acknowledger's task sends on the first connection's client (it reconnects by
            // itself); later connections after a refused consumer are only for pulling.
            if let Some(tx) = self.client.take() {
                let _ = tx.send(client);
            }
            self.reach.mark_reached();
            self.retry.succeed();
            info!(source = %self.what, url = %self.opts.url, "consuming");
            self.live = Some(Live {
                consumer,
                pulls: Default::default(),
            });
        }
        Ok(self.live.as_mut().expect("set above"))
    }

    /// The durable consumer; `Err(Ok(()))` to try again (paused already), `Err(Err(_))` when
    /// the server refused.
    async fn consumer_of(&mut self, client: &Client) -> Result<PullConsumer, Result<(), SourceError>> {
        let js = jetstream::new(client.clone());
        let stream: Result<JsStream, String> = match &self.opts.create_stream {
            Some(config) => {
                let config = stream::Config {
                    name: self.opts.stream.clone(),
                    ..config.clone()
                };
                match js.create_or_update_stream(config).await {
                    Ok(_) => js.get_stream(&self.opts.stream).await.map_err(|e| e.to_string()),
                    Err(e) if matches!(e.kind(), context::CreateStreamErrorKind::JetStream(_)) => {
                        return Err(Err(self.refused("creating the stream", e)));
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            None => match js.get_stream(&self.opts.stream).await {
                Ok(s) => Ok(s),
                Err(e) if matches!(e.kind(), context::GetStreamErrorKind::JetStream(_)) => {
                    return Err(Err(self.refused("getting the stream", e)));
                }
                Err(e) => Err(e.to_string()),
            },
        };
        let stream = match stream {
            Ok(s) => s,
            Err(why) => {
                self.reach.failed(Some(why.clone()));
                self.pause(&why).await;
                return Err(Ok(()));
            }
        };
        let config = pull::Config {
            durable_name: Some(self.opts.durable.clone()),
            ack_policy: AckPolicy::Explicit,
            ..self.opts.consumer.clone()
        };
        match stream.get_or_create_consumer(&self.opts.durable, config).await {
            Ok(c) => Ok(c),
            Err(e) if matches!(e.kind(), stream::ConsumerErrorKind::JetStream(_)) => {
                Err(Err(self.refused("creating the consumer", e)))
            }
            Err(e) => {
                let why = e.to_string();
                self.pause(&why).await;
                Err(Ok(()))
            }
        }
    }

    fn message(&self, mut m: jetstream::Message) -> Option<Message<NatsMessage>> {
        let info = m.info().ok()?;
        let meta = JetStreamMetadata {
            stream: self.stream.clone(),
            consumer: self.consumer.clone(),
            stream_sequence: info.stream_sequence,
            consumer_sequence: info.consumer_sequence,
            delivered: info.delivered,
            published_ms: (info.published.unix_timestamp_nanos() / 1_000_000) as i64,
        };
        // The reply subject is the ack address, kept in the in-flight table, not in the data.
        let reply = m.message.reply.take()?;
        let token = self.in_flight.add(reply, meta.delivered);
        let last = self.opts.consumer.max_deliver > 0 && meta.delivered >= self.opts.consumer.max_deliver;
        let mut message = Message::with_acker(NatsMessage::from_client(m.message), self.acker.clone(), token);
        if !last && matches!(self.opts.on_failed, OnFailed::Nak { .. }) {
            // Tried again by the consumer: the dead-letter route is for the last delivery.
            message.configure_ack(OnFailure::Requeue);
        }
        message.put_origin(meta);
        self.received.increment(1);
        Some(message)
    }

    /// Takes what the oldest pull has ready, up to `demand`, without waiting.
    fn ready(&mut self, demand: usize, out: &mut Vec<Message<NatsMessage>>) {
        while out.len() < demand {
            let Some(live) = self.live.as_mut() else { return };
            let Some((batch, owed)) = live.pulls.front_mut() else {
                return;
            };
            match batch.next().now_or_never() {
                Some(Some(Ok(m))) => {
                    *owed = owed.saturating_sub(1);
                    out.extend(self.message(m));
                }
                Some(Some(Err(e))) => {
                    warn!(source = %self.what, error = %e, "pull failed");
                    live.pulls.pop_front();
                }
                Some(None) => {
                    live.pulls.pop_front();
                }
                None => return,
            }
        }
    }
}

impl Producer for JetStreamSource {
    type Output = Message<NatsMessage>;

    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<NatsMessage>>, BoxError> {
        let mut out = Vec::new();
        loop {
            let (max_batch, wait) = (self.opts.max_batch, self.opts.fetch_wait);
            let live = self.live().await?;
            // Ask for what the demand leaves uncovered by the pulls under way.
            let uncovered = demand.saturating_sub(live.owed());
            if live.pulls.len() < PULLS && (uncovered > 0 || live.pulls.is_empty()) {
                let asked = uncovered.clamp(1, max_batch);
                match live.consumer.batch().max_messages(asked).expires(wait).messages().await {
                    Ok(b) => live.pulls.push_back((b, asked)),
                    Err(e) => {
                        self.pause(&e.to_string()).await;
                        continue;
                    }
                }
            }
            let Some((batch, owed)) = self.live.as_mut().and_then(|l| l.pulls.front_mut()) else {
                continue;
            };
            // Cancel-safe: a message not yet taken stays in the pull's subscription.
            match batch.next().await {
                Some(Ok(m)) => {
                    *owed = owed.saturating_sub(1);
                    out.extend(self.message(m));
                    // Let the connection hand over what else has arrived: one larger emit
                    // costs the pipeline less than many small ones.
                    tokio::task::yield_now().await;
                    self.ready(demand, &mut out);
                    if !out.is_empty() {
                        self.retry.succeed();
                        return Ok(Emit::Events(out));
                    }
                }
                Some(Err(e)) => {
                    if let Some(l) = self.live.as_mut() {
                        l.pulls.pop_front();
                    }
                    self.pause(&e.to_string()).await;
                }
                None => {
                    if let Some(l) = self.live.as_mut() {
                        l.pulls.pop_front();
                    }
                }
            }
        }
    }

    async fn prepare_for_draining(&mut self) -> Vec<Message<NatsMessage>> {
        let mut last = Vec::new();
        // The server ends each pull by its expiry; the margin is for a loaded machine, where
        // giving up early would leave a pull's messages to their ack wait.
        let deadline = tokio::time::Instant::now() + self.opts.fetch_wait + DRAIN_MARGIN;
        // The pulls under way may still bring messages the server counts as delivered: take
        // them (they end by their expiry at the latest) rather than leave them to the ack
        // wait.
        while let Some((batch, _)) = self.live.as_mut().and_then(|l| l.pulls.front_mut()) {
            match tokio::time::timeout_at(deadline, batch.next()).await {
                Ok(Some(Ok(m))) => last.extend(self.message(m)),
                Ok(Some(Err(_))) | Ok(None) => {
                    if let Some(l) = self.live.as_mut() {
                        l.pulls.pop_front();
                    }
                }
                Err(_) => {
                    warn!(source = %self.what, "a pull did not end by its expiry; its messages come back after the ack wait");
                    break;
                }
            }
        }
        if let Some(l) = self.live.as_mut() {
            l.pulls.clear();
        }
        last
    }
}

/// A [`Source`] of JetStream messages: what
/// [`PipelineBuilder::source`](ferroway::pipeline::PipelineBuilder::source) takes. Made by
/// [`JetStreamSource::factory`]. Every producer pulls from the same durable consumer (the
/// server spreads the messages); when [`Pipeline::stop`](ferroway::pipeline::Pipeline::stop)
/// returns, every ack is flushed to the server.
pub struct JetStreamSourceFactory {
    opts: Arc<JetStreamOptions>,
    producers: Producers<Job>,
}

impl std::fmt::Debug for JetStreamSourceFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamSourceFactory")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Source for JetStreamSourceFactory {
    type Data = NatsMessage;
    type Producer = JetStreamSource;

    fn producer(&self, _index: usize) -> Result<JetStreamSource, BoxError> {
        let source = JetStreamSource::start(self.opts.clone());
        self.producers.add(source.ack_tx.clone(), source.reach.clone());
        Ok(source)
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.producers.finish()
    }

    fn connected(&self) -> bool {
        self.producers.connected()
    }
}
