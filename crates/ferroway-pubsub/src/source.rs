//! The source: pipeline producers taking what their stream's reader received, as the
//! pipeline demands.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use ferroway::BoxError;
use ferroway::connector::leases::Leases;
use ferroway::connector::settle::{self, Acker, Job};
use ferroway::connector::{Producers, Source};
use ferroway::pipeline::{BoxFuture, Message};
use ferroway::resilience::Reach;
use ferroway::stage::{Emit, Producer};
use ferroway::telemetry::LogThrottle;
use tokio::sync::{mpsc, oneshot};
use tracing::info;

use crate::ack::{self, PubSubCalls, Settings};
use crate::error::OptionsError;
use crate::message::PubSubMessage;
use crate::options::{OnFailed, PubSubOptions};
use crate::stream::{Delivery, Reader, give_back};

/// Consumes a Pub/Sub subscription: one pipeline producer. A pipeline gets them from
/// [`PubSubSource::factory`].
///
/// - **Streaming pull, flow-controlled:** one `StreamingPull` stream per producer, whose
///   flow control is [`max_outstanding_messages`](PubSubOptions::max_outstanding_messages)
///   and [`max_outstanding_bytes`](PubSubOptions::max_outstanding_bytes): Pub/Sub sends no
///   more while that many are outstanding — received and not yet acknowledged. The stream
///   is read all along (what Pub/Sub sent is leased: left unread it would expire), into a
///   queue the pipeline's demand takes from; a response that arrives with the limits
///   already passed (a server that ignores flow control, as the emulator does) is sent
///   back at once. Memory stays bounded however large the backlog: the limits and one
///   response.
/// - **Acknowledged after the pipeline:** `Acknowledge` (batched, up to 2,500 ids a call)
///   once the pipeline finished with a message. A failure is left for its ack deadline to
///   run out, or delivered again after a delay — zero: a nack ([`OnFailed`](crate::OnFailed)).
/// - **Leases:** a message still in the pipeline [`extend_before`](PubSubOptions::extend_before)
///   its ack deadline gets it extended (batched `ModifyAckDeadline`), up to
///   [`max_extension`](PubSubOptions::max_extension) in all.
/// - **Dead letters:** a message on its
///   [`max_delivery_attempts`](PubSubOptions::max_delivery_attempts)th delivery or later that
///   fails goes to the pipeline's dead-letter route, then is acknowledged. Pub/Sub numbers
///   deliveries only on subscriptions with a dead-letter policy, so the source requires one
///   when the option is set. Set ours at or below the policy's `maxDeliveryAttempts`: the
///   subscription forwards a message to its dead-letter topic only after that many
///   deliveries, so ours gets it first; without a dead-letter route in the pipeline, a
///   failure is left to the subscription's policy.
/// - **Ordering keys:** a message's ordering key is its key: `partition_by` on it keeps each
///   key's order through the pipeline (on subscriptions with message ordering enabled).
/// - **Copies:** a copy of a message still in the pipeline is not emitted (its newer ack id
///   is the one acknowledged: exactly-once subscriptions take only that one); a copy of one
///   of the last 4,096 messages acknowledged is acknowledged, not handled again.
///   `ferroway_pubsub_copies_total` counts them.
/// - **Outages:** a stream that fails or ends is opened again with backoff (a warning every
///   10 s); messages Pub/Sub had sent on it are delivered again after their ack deadline.
///   A subscription that vanishes after the source consumed from it (an emulator restarted,
///   a subscription re-created) is waited for up to the reach timeout. No such subscription
///   at the start, rejected credentials: the source fails with [`SourceError::Refused`](crate::SourceError::Refused).
/// - **Stop:** the stream is half-closed (Pub/Sub then ends it; after 2 s it is cancelled),
///   what was received before is processed and what arrives after is given back (deadline
///   0); the pipeline's stop returns once every acknowledgement is made. A source dropped
///   without a stop closes its stream the same way and gives back what it held.
///
/// ```no_run
/// use ferroway::pipeline::{Handler, Message, Pipeline};
/// use ferroway_pubsub::{ClientOptions, PubSubMessage, PubSubOptions, PubSubSource};
///
/// struct Print;
/// impl Handler for Print {
///     type Data = PubSubMessage;
///     async fn handle_message(&self, m: &mut Message<PubSubMessage>) -> Result<(), ferroway::BoxError> {
///         println!("{}", String::from_utf8_lossy(&m.data().data));
///         Ok(())
///     }
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let opts = PubSubOptions::new(ClientOptions::new("my-project"), "orders-worker");
/// let pipeline = Pipeline::builder("print", Print)
///     .source(PubSubSource::factory(opts)?)
///     .start()
///     .await?;
/// pipeline.run_until(ferroway::shutdown_signal()).await?;
/// # Ok(()) }
/// ```
pub struct PubSubSource {
    opts: Arc<PubSubOptions>,
    /// The stream's reader, until the first demand starts it.
    reader: Option<Reader>,
    running: Option<Running>,
    from_reader: mpsc::UnboundedReceiver<Delivery>,
    /// Received and not yet emitted: a demand gets no more than it asked for.
    ready: VecDeque<Message<PubSubMessage>>,
    ack_tx: mpsc::UnboundedSender<Job>,
    leases: Arc<Leases>,
    reach: Arc<Reach>,
}

/// The reader's task. Dropped, it is told to stop and ends by itself, closing its stream.
struct Running {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(reader: Reader) -> Self {
        let (stop, stopped) = oneshot::channel();
        Running {
            stop,
            task: tokio::spawn(reader.run(stopped)),
        }
    }

    /// Tells the reader to stop and waits until it has closed its stream.
    async fn stop(self) {
        drop(self.stop);
        let _ = self.task.await;
    }
}

impl std::fmt::Debug for PubSubSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSubSource")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl PubSubSource {
    /// A source for `opts`; reaches Pub/Sub on the first demand. In a pipeline prefer
    /// [`PubSubSource::factory`]: the pipeline then also waits for the last acknowledgements
    /// when it stops.
    ///
    /// # Errors
    /// [`OptionsError`] naming the first invalid option.
    pub fn new(opts: PubSubOptions) -> Result<Self, OptionsError> {
        opts.validate()?;
        Ok(Self::start(Arc::new(opts), 0))
    }

    /// Validates `opts` and returns the [`Source`] a pipeline takes.
    ///
    /// ```
    /// use ferroway_pubsub::{ClientOptions, PubSubOptions, PubSubSource};
    /// let opts = PubSubOptions::new(ClientOptions::new("my-project"), "orders").max_outstanding_messages(0);
    /// let e = PubSubSource::factory(opts).unwrap_err();
    /// assert!(e.to_string().starts_with("invalid option `max_outstanding_messages`"));
    /// ```
    ///
    /// # Errors
    /// [`OptionsError`] naming the first invalid option.
    pub fn factory(opts: PubSubOptions) -> Result<PubSubSourceFactory, OptionsError> {
        opts.validate()?;
        Ok(PubSubSourceFactory {
            opts: Arc::new(opts),
            producers: Producers::new(Job::Flush),
        })
    }

    fn start(opts: Arc<PubSubOptions>, index: usize) -> Self {
        let subscription: Arc<str> = opts
            .subscription_name()
            .expect("validated before the source starts")
            .into();
        let leases = Arc::new(Leases::default());
        let (ack_tx, jobs) = mpsc::unbounded_channel();
        let (calls_tx, calls_rx) = oneshot::channel();
        tokio::spawn(settle::run::<PubSubCalls>(calls_rx, leases.clone(), jobs, ack::CALLS));
        let settings = Arc::new(Settings {
            subscription: subscription.to_string(),
            ack_deadline: opts.ack_deadline,
            extend_before: opts.extend_before,
            max_extension: opts.max_extension,
        });
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let label = subscription.to_string();
        let counter = |name: &'static str| metrics::counter!(name, "subscription" => label.clone());
        let reach = Reach::of(&format!("pubsub\n{}\n{subscription}", opts.client.shown()));
        let (out, from_reader) = mpsc::unbounded_channel();
        let reader = Reader {
            acker: Arc::new(Acker::new(
                leases.clone(),
                ack_tx.clone(),
                match opts.on_failed {
                    OnFailed::Leave => None,
                    OnFailed::Retry { delay } => Some(delay),
                },
                metrics::counter!(crate::metrics::ACKS, "subscription" => label.clone(), "kind" => "leave"),
            )),
            received: counter(crate::metrics::RECEIVED),
            copies: counter(crate::metrics::COPIES),
            surplus: metrics::counter!(crate::metrics::ACKS, "subscription" => label.clone(), "kind" => "surplus"),
            client_id: format!("ferroway-{}-{nanos:x}-{index}", std::process::id()),
            to_acks: Some((calls_tx, settings)),
            reach: reach.clone(),
            retry: Reader::backoff(),
            outage_log: LogThrottle::new(Duration::from_secs(10)),
            missing_since: None,
            ack_tx: ack_tx.clone(),
            leases: leases.clone(),
            out,
            subscription,
            opts: opts.clone(),
            stream: None,
        };
        PubSubSource {
            opts,
            reader: Some(reader),
            running: None,
            from_reader,
            ready: VecDeque::new(),
            ack_tx,
            leases,
            reach,
        }
    }
}

impl Producer for PubSubSource {
    type Output = Message<PubSubMessage>;

    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<PubSubMessage>>, BoxError> {
        if let Some(reader) = self.reader.take() {
            self.running = Some(Running::start(reader));
        }
        // Cancel-safe: what arrived waits in `self.ready`; a receive loses nothing when dropped.
        loop {
            if !self.ready.is_empty() {
                let n = demand.min(self.ready.len());
                return Ok(Emit::Events(self.ready.drain(..n).collect()));
            }
            match self.from_reader.recv().await {
                Some(Ok(batch)) => self.ready.extend(batch),
                Some(Err(e)) => return Err(e.into()),
                None => return Err("the Pub/Sub stream reader ended without a reason (it panicked)".into()),
            }
        }
    }

    async fn prepare_for_draining(&mut self) -> Vec<Message<PubSubMessage>> {
        // The stream closes; what it already delivered is processed. The reader is awaited
        // gone first: a response it was handing over is then in the queue, not half-way.
        if let Some(running) = self.running.take() {
            running.stop().await;
            info!(subscription = %self.opts.subscription, "stopping: stream closed");
        }
        while let Ok(delivery) = self.from_reader.try_recv() {
            if let Ok(batch) = delivery {
                self.ready.extend(batch);
            }
        }
        self.ready.drain(..).collect()
    }
}

impl Drop for PubSubSource {
    /// Gone without a drain (a restart after a failure): what it held goes back to Pub/Sub.
    fn drop(&mut self) {
        self.running = None;
        let mut left: Vec<Message<PubSubMessage>> = self.ready.drain(..).collect();
        // Closed first: a batch the reader hands over now fails to send, and the reader gives
        // it back itself, rather than it going down with the channel.
        self.from_reader.close();
        while let Ok(delivery) = self.from_reader.try_recv() {
            left.extend(delivery.into_iter().flatten());
        }
        give_back(&self.leases, &self.ack_tx, left);
    }
}

/// A [`Source`] of Pub/Sub messages: what
/// [`PipelineBuilder::source`](ferroway::pipeline::PipelineBuilder::source) takes. Made by
/// [`PubSubSource::factory`]. Every producer has a stream of its own on the same
/// subscription; when [`Pipeline::stop`](ferroway::pipeline::Pipeline::stop) returns, every
/// acknowledgement is made.
pub struct PubSubSourceFactory {
    opts: Arc<PubSubOptions>,
    producers: Producers<Job>,
}

impl std::fmt::Debug for PubSubSourceFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSubSourceFactory")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Source for PubSubSourceFactory {
    type Data = PubSubMessage;
    type Producer = PubSubSource;

    fn producer(&self, index: usize) -> Result<PubSubSource, BoxError> {
        let source = PubSubSource::start(self.opts.clone(), index);
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
