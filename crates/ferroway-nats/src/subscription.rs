//! Core NATS subscriptions as a pipeline producer: at-most-once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::Subscriber;
use ferroway::BoxError;
use ferroway::connector::Source;
use ferroway::pipeline::Message;
use ferroway::resilience::Reach;
use ferroway::stage::{Emit, Producer};
use futures_util::stream::SelectAll;
use futures_util::{FutureExt, StreamExt};
use tracing::{info, warn};

use crate::error::{OptionsError, SourceError};
use crate::message::{NatsMessage, SubjectMetadata};
use crate::options::SubscribeOptions;

/// Core NATS subscriptions (wildcards, an optional queue group) as one pipeline producer.
///
/// **At-most-once, by NATS' nature:** core NATS keeps nothing; a message published while no
/// subscriber is connected, or dropped because the pipeline fell behind, is gone. Messages
/// wait in a bounded buffer per subscription ([`SubscribeOptions::buffer`]); when the pipeline
/// is slower than the publishers and it fills, new messages are dropped, counted
/// (`ferroway_nats_dropped_total`) and warned about — memory never grows without bound. For
/// at-least-once, use JetStream ([`JetStreamSource`](crate::JetStreamSource)).
///
/// With a queue group, each message goes to one member: several producers or processes split
/// the work.
///
/// ```no_run
/// use ferroway::pipeline::{Forward, Pipeline};
/// use ferroway_nats::{SubscribeOptions, SubscriptionSource, NatsMessage};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let opts = SubscribeOptions::new("nats://127.0.0.1:4222", ["sensors.>"]).queue_group("ingest");
/// let pipeline = Pipeline::builder("ingest", Forward::<NatsMessage>::new())
///     .source(SubscriptionSource::factory(opts)?)
///     .start()
///     .await?;
/// pipeline.run_until(ferroway::shutdown_signal()).await?;
/// # Ok(()) }
/// ```
pub struct SubscriptionSource {
    opts: Arc<SubscribeOptions>,
    subscriptions: Option<SelectAll<Subscriber>>,
    reach: Arc<Reach>,
    what: String,
    received: metrics::Counter,
}

impl std::fmt::Debug for SubscriptionSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionSource")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl SubscriptionSource {
    /// Validates `opts` and returns the [`Source`] a pipeline takes.
    ///
    /// # Errors
    /// [`OptionsError`] naming the first invalid option.
    pub fn factory(opts: SubscribeOptions) -> Result<SubscriptionSourceFactory, OptionsError> {
        opts.validate()?;
        Ok(SubscriptionSourceFactory {
            opts: Arc::new(opts),
            reaches: Mutex::default(),
        })
    }

    fn start(opts: Arc<SubscribeOptions>) -> Self {
        let what = opts.subjects.join(",");
        SubscriptionSource {
            reach: Reach::of(&format!("nats-core\n{}\n{what}", opts.url.expose())),
            received: metrics::counter!(crate::metrics::RECEIVED, "source" => what.clone()),
            subscriptions: None,
            what,
            opts,
        }
    }

    async fn subscribe(&mut self) -> Result<&mut SelectAll<Subscriber>, SourceError> {
        let mut retry = ferroway::resilience::Backoff::exponential(Duration::from_millis(100))
            .cap(Duration::from_secs(5))
            .stateful();
        while self.subscriptions.is_none() {
            let (url, name, timeout) = (&self.opts.url, &self.opts.name, self.opts.connect_timeout);
            let client =
                crate::connection::connect_within(url, name, self.opts.buffer, &self.reach, timeout, &self.what)
                    .await?;
            let subscribed = async {
                let mut all = SelectAll::new();
                for s in &self.opts.subjects {
                    let sub = match &self.opts.queue_group {
                        Some(g) => client.queue_subscribe(s.clone(), g.clone()).await,
                        None => client.subscribe(s.clone()).await,
                    };
                    all.push(sub.map_err(|e| e.to_string())?);
                }
                // The subscriptions are registered once the server has seen them.
                client.flush().await.map_err(|e| e.to_string())?;
                Ok::<_, String>(all)
            }
            .await;
            match subscribed {
                Ok(all) => {
                    self.reach.mark_reached();
                    info!(subjects = %self.what, queue_group = ?self.opts.queue_group, url = %self.opts.url, "subscribed");
                    self.subscriptions = Some(all);
                }
                Err(e) => {
                    self.reach.failed(Some(e.clone()));
                    warn!(subjects = %self.what, url = %self.opts.url, error = %e, "subscribing failed; trying again");
                    tokio::time::sleep(retry.fail().unwrap_or(Duration::from_secs(5))).await;
                }
            }
        }
        Ok(self.subscriptions.as_mut().expect("set above"))
    }

    fn message(&self, m: async_nats::Message) -> Message<NatsMessage> {
        let data = NatsMessage::from_client(m);
        let mut message = Message::new(data);
        message.put_origin(SubjectMetadata {
            subject: message.data().subject.clone(),
        });
        self.received.increment(1);
        message
    }
}

impl Producer for SubscriptionSource {
    type Output = Message<NatsMessage>;

    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<NatsMessage>>, BoxError> {
        let subs = self.subscribe().await?;
        // Cancel-safe: a message not yet taken stays in its subscription's buffer.
        let Some(first) = subs.next().await else {
            return Err(format!("the NATS subscriptions to {} ended", self.what).into());
        };
        let mut raw = vec![first];
        while raw.len() < demand {
            match subs.next().now_or_never() {
                Some(Some(m)) => raw.push(m),
                _ => break,
            }
        }
        Ok(Emit::Events(raw.into_iter().map(|m| self.message(m)).collect()))
    }

    async fn prepare_for_draining(&mut self) -> Vec<Message<NatsMessage>> {
        // Unsubscribe first, then hand over what was buffered: it is processed like the rest.
        let mut last = Vec::new();
        if let Some(mut subs) = self.subscriptions.take() {
            for s in subs.iter_mut() {
                let _ = s.unsubscribe().await;
            }
            while let Some(Some(m)) = subs.next().now_or_never() {
                last.push(self.message(m));
            }
        }
        last
    }
}

/// A [`Source`] of core NATS messages, made by [`SubscriptionSource::factory`]. Each producer
/// subscribes on a connection of its own (with a queue group they share the messages).
pub struct SubscriptionSourceFactory {
    opts: Arc<SubscribeOptions>,
    reaches: Mutex<Vec<Arc<Reach>>>,
}

impl std::fmt::Debug for SubscriptionSourceFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionSourceFactory")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Source for SubscriptionSourceFactory {
    type Data = NatsMessage;
    type Producer = SubscriptionSource;

    fn producer(&self, _index: usize) -> Result<SubscriptionSource, BoxError> {
        let source = SubscriptionSource::start(self.opts.clone());
        let mut reaches = self.reaches.lock().unwrap_or_else(|p| p.into_inner());
        if !reaches.iter().any(|r| Arc::ptr_eq(r, &source.reach)) {
            reaches.push(source.reach.clone());
        }
        Ok(source)
    }

    fn connected(&self) -> bool {
        let reaches = self.reaches.lock().unwrap_or_else(|p| p.into_inner());
        !reaches.is_empty() && reaches.iter().all(|r| r.reached())
    }
}
