//! The source: a queue consumer as pipeline producers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferroway::BoxError;
use ferroway::connector::{Producers, Source};
use ferroway::pipeline::{Acknowledger, BoxFuture, Message};
use ferroway::resilience::Reach;
use ferroway::stage::{Emit, Producer};
use tokio::sync::{mpsc, oneshot};

use crate::ack::{Cmd, SessionAcker};
use crate::delivery::Delivery;
use crate::error::OptionsError;
use crate::options::SourceOptions;
use crate::session::{Event, Session};

/// Consumes one RabbitMQ queue with manual acknowledgements: one pipeline producer, on a
/// connection and channel of its own. A pipeline gets them from [`AmqpSource::factory`].
///
/// - **Back-pressure:** `basic.qos(prefetch_count)` — the broker sends at most that many
///   unacknowledged deliveries; they wait here until the pipeline demands them.
/// - **Acknowledgement after the pipeline:** a message is acked only once the pipeline
///   finished with it (after the sink wrote it). Acks are combined into one `multiple` ack
///   where the tags allow. A failed message the pipeline did not dead-letter is rejected,
///   requeued, or requeued once, per [`OnFailed`](crate::OnFailed) — never requeued forever
///   by default.
/// - **Outages:** a lost connection or channel is reopened with backoff; the queue is
///   declared and bound again and consuming resumes. Deliveries that were in flight on the
///   lost channel are redelivered by the broker (with `redelivered` set) — at-least-once:
///   the pipeline may see them twice.
/// - **Stop:** draining cancels the consumer first (`basic.cancel`), processes what the
///   broker had sent, and the pipeline's stop returns once those are acked and the
///   connection is closed.
/// - **Visible failures:** a broker never reached within
///   [`connect_timeout`](SourceOptions::connect_timeout), bad credentials, a missing queue
///   or a declaration that conflicts with the queue fail the pipeline with a
///   [`SourceError`](crate::SourceError) naming the URI (password redacted) and the
///   broker's reason.
///
/// ```no_run
/// use ferroway::pipeline::{Handler, Message, Pipeline};
/// use ferroway_amqp::{AmqpSource, Delivery, SourceOptions};
///
/// struct Print;
/// impl Handler for Print {
///     type Data = Delivery;
///     async fn handle_message(&self, m: &mut Message<Delivery>) -> Result<(), ferroway::BoxError> {
///         println!("{}", String::from_utf8_lossy(&m.data().payload));
///         Ok(())
///     }
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let opts = SourceOptions::new("amqp://guest:guest@127.0.0.1:5672/%2f", "events");
/// let pipeline = Pipeline::builder("print", Print)
///     .source(AmqpSource::factory(opts)?)
///     .start()
///     .await?;
/// pipeline.run_until(ferroway::shutdown_signal()).await?;
/// # Ok(()) }
/// ```
pub struct AmqpSource {
    events: mpsc::UnboundedReceiver<Event>,
    cmds: mpsc::UnboundedSender<Cmd>,
    generation: Arc<AtomicU64>,
    reach: Arc<Reach>,
    queue: String,
}

impl std::fmt::Debug for AmqpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpSource")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl AmqpSource {
    /// A source for `opts`, connecting in the background; must be called inside a Tokio
    /// runtime. In a pipeline prefer [`AmqpSource::factory`]: the pipeline then also waits
    /// for the last acks when it stops, and can run several producers.
    ///
    /// # Errors
    /// [`OptionsError`] naming the first invalid option.
    pub fn new(opts: SourceOptions) -> Result<Self, OptionsError> {
        opts.validate()?;
        Ok(Self::start(Arc::new(opts)))
    }

    /// Validates `opts` and returns the [`Source`] a pipeline takes. Nothing connects yet.
    ///
    /// ```
    /// use ferroway_amqp::{AmqpSource, SourceOptions};
    /// let e = AmqpSource::factory(SourceOptions::new("amqp://127.0.0.1", "q").prefetch_count(0)).unwrap_err();
    /// assert!(e.to_string().starts_with("invalid option `prefetch_count`"));
    /// ```
    ///
    /// # Errors
    /// [`OptionsError`] naming the first invalid option.
    pub fn factory(opts: SourceOptions) -> Result<AmqpSourceFactory, OptionsError> {
        opts.validate()?;
        Ok(AmqpSourceFactory {
            opts: Arc::new(opts),
            producers: Producers::new(Cmd::Close),
        })
    }

    pub(crate) fn start(opts: Arc<SourceOptions>) -> Self {
        let (events_tx, events) = mpsc::unbounded_channel();
        let (cmds, cmds_rx) = mpsc::unbounded_channel();
        let acker: Arc<dyn Acknowledger> = Arc::new(SessionAcker {
            tx: cmds.clone(),
            on_failed: opts.on_failed,
        });
        let key = format!(
            "amqp\n{}\n{}\n{}",
            opts.uri.expose(),
            opts.queue,
            opts.consumer_tag.as_deref().unwrap_or("")
        );
        let reach = Reach::of(&key);
        let generation = Arc::new(AtomicU64::new(0));
        let session = Session {
            queue: opts.queue.as_str().into(),
            events: events_tx,
            generation: generation.clone(),
            acker,
            reach: reach.clone(),
            opts: opts.clone(),
        };
        tokio::spawn(session.run(cmds_rx));
        AmqpSource {
            events,
            cmds,
            generation,
            reach,
            queue: opts.queue.clone(),
        }
    }

    /// Keeps a message unless its channel was lost (the broker redelivers it).
    fn current(&self, e: Event) -> Result<Option<Message<Delivery>>, BoxError> {
        match e {
            Event::Delivery(m) if m.ack_token().0 >> 1 == self.generation.load(Ordering::Acquire) => Ok(Some(m)),
            Event::Delivery(_) => Ok(None),
            Event::Failed(e) => Err(e.into()),
        }
    }
}

impl Producer for AmqpSource {
    type Output = Message<Delivery>;

    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<Delivery>>, BoxError> {
        let mut out = Vec::with_capacity(demand.min(1024));
        while out.is_empty() {
            // Cancel-safe: a delivery received is either returned or still in the channel.
            let Some(first) = self.events.recv().await else {
                return Err(format!("the RabbitMQ session of queue `{}` ended", self.queue).into());
            };
            out.extend(self.current(first)?);
            while out.len() < demand {
                match self.events.try_recv() {
                    Ok(e) => out.extend(self.current(e)?),
                    Err(_) => break,
                }
            }
        }
        Ok(Emit::Events(out))
    }

    async fn prepare_for_draining(&mut self) -> Vec<Message<Delivery>> {
        let (tx, rx) = oneshot::channel();
        if self.cmds.send(Cmd::Cancel(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(10), rx).await;
        }
        let mut last = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            if let Ok(Some(m)) = self.current(e) {
                last.push(m);
            }
        }
        last
    }
}

/// A [`Source`] of deliveries from one queue: what
/// [`PipelineBuilder::source`](ferroway::pipeline::PipelineBuilder::source) takes. Made by
/// [`AmqpSource::factory`].
///
/// Each producer ([`producer_concurrency`](ferroway::pipeline::PipelineBuilder::producer_concurrency))
/// is an [`AmqpSource`] with a connection of its own; the broker spreads the queue over them.
/// When [`Pipeline::stop`](ferroway::pipeline::Pipeline::stop) returns, every outcome is sent
/// and the connections are closed. Its data is [`Delivery`]; `.map(Record::from)` gives
/// [`Record`](ferroway::connector::Record)s keyed by routing key.
///
/// ```no_run
/// use ferroway::connector::file::{FileSink, FileSinkOptions};
/// use ferroway::pipeline::{Batcher, Forward, Pipeline};
/// use ferroway_amqp::{AmqpSource, SourceOptions};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let opts = SourceOptions::new("amqp://guest:guest@127.0.0.1:5672/%2f", "orders").prefetch_count(500);
/// let pipeline = Pipeline::builder("archive", Forward::new())
///     .source(AmqpSource::factory(opts)?)
///     .sink(FileSink::open("orders.ndjson", FileSinkOptions::new()).await?, Batcher::new("file"))
///     .start()
///     .await?;
/// pipeline.run_until(ferroway::shutdown_signal()).await?;
/// # Ok(()) }
/// ```
pub struct AmqpSourceFactory {
    opts: Arc<SourceOptions>,
    /// The sessions of the producers made: closed at the pipeline's stop.
    producers: Producers<Cmd>,
}

impl std::fmt::Debug for AmqpSourceFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpSourceFactory")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl AmqpSourceFactory {
    /// The options.
    pub fn options(&self) -> &SourceOptions {
        &self.opts
    }
}

impl Source for AmqpSourceFactory {
    type Data = Delivery;
    type Producer = AmqpSource;

    fn producer(&self, index: usize) -> Result<AmqpSource, BoxError> {
        let source = AmqpSource::start(Arc::new(self.opts.for_slot(index)));
        self.producers.add(source.cmds.clone(), source.reach.clone());
        Ok(source)
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.producers.finish()
    }

    /// Whether every producer's connection has reached the broker.
    fn connected(&self) -> bool {
        self.producers.connected()
    }
}
