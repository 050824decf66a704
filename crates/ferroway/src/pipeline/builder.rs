//! The topology builder: validates options up front, then wires producers -> processors ->
//! batchers -> batch processors.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::batcher::{self, Batch, BatchSize, Batches, MessageFn};
use super::dead_letter::BoxFuture;
use super::handle::{BatcherTopology, Pipeline, Topology};
use super::handler::Handler;
use super::message::Message;
use super::options::{Batcher, ConfigError, Processors};
use super::processor::Processor;
use super::producer::ProducerPlan;
use super::rate_limit::RateLimiter;
use super::shared::{BatchSinks, Shared};
use super::{batch_processor, producer::Registry};
use crate::connector::{Sink, Source};
use crate::error::BoxError;
use crate::resilience::{Backoff, Jitter, Strategy, Supervisor};
use crate::stage::outbox::Outbox;
use crate::stage::transform::{self, Downstream};
use crate::stage::{BufferKeep, CancelMode, ConsumerOptions, Dispatcher, Producer, StageTask, SubscribeOptions};

/// Makes the producer of slot `index`.
type Factory<P> = Arc<dyn Fn(usize) -> Result<P, BoxError> + Send + Sync>;
/// A source's close.
pub(crate) type Close = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// Placeholder producer type of a builder that has no producer yet.
#[derive(Debug)]
pub struct NoProducer;

/// Builds a pipeline. Start with [`Pipeline::builder`]; only a builder with a producer can
/// [`start`](PipelineBuilder::start).
pub struct PipelineBuilder<H: Handler, P = NoProducer> {
    name: String,
    handler: H,
    factory: Option<Factory<P>>,
    /// The source's close, awaited when the pipeline stops.
    close: Option<Close>,
    sinks: BatchSinks<H::Data>,
    producer_concurrency: usize,
    processors: Processors,
    batchers: Vec<Batcher<H::Data>>,
    partition_by: Option<MessageFn<H::Data, u64>>,
    rate_limit: Option<(usize, Duration)>,
    dead_letter: Option<Box<dyn Sink<H::Data>>>,
    retry: Option<(Backoff, usize)>,
    outage_backoff: Backoff,
    shutdown_timeout: Duration,
    restarts: (u32, Duration),
    _p: PhantomData<fn() -> P>,
}

impl<T: Send + 'static> Pipeline<T> {
    /// A builder for a pipeline named `name` running `handler`.
    pub fn builder<H: Handler<Data = T>>(name: impl Into<String>, handler: H) -> PipelineBuilder<H> {
        PipelineBuilder {
            name: name.into(),
            handler,
            factory: None,
            close: None,
            sinks: Vec::new(),
            producer_concurrency: 1,
            processors: Processors::default(),
            batchers: Vec::new(),
            partition_by: None,
            rate_limit: None,
            dead_letter: None,
            retry: None,
            outage_backoff: Backoff::exponential(Duration::from_millis(100))
                .cap(Duration::from_secs(10))
                .jitter(Jitter::Equal),
            shutdown_timeout: Duration::from_secs(30),
            restarts: (3, Duration::from_secs(5)),
            _p: PhantomData,
        }
    }
}

impl<H: Handler, P> PipelineBuilder<H, P> {
    /// The producer: `factory` makes one instance per producer (and again after a crash). For
    /// a connector, [`source`](Self::source) is the shorter way.
    pub fn producer<Q>(self, factory: impl Fn() -> Q + Send + Sync + 'static) -> PipelineBuilder<H, Q>
    where
        Q: Producer<Output = Message<H::Data>>,
    {
        self.with_producers(Arc::new(move |_| Ok(factory())), None)
    }

    /// Reads from a connector's [`Source`]: it makes the producers (one per
    /// [`producer_concurrency`](Self::producer_concurrency), again after a restart), and the
    /// pipeline awaits its [`close`](Source::close) when it stops — so
    /// [`Pipeline::stop`] returning means the source's final commits are done.
    ///
    /// ```
    /// use ferroway::connector::file::{FileSink, FileSinkOptions, FileSource};
    /// use ferroway::pipeline::{Batcher, Forward, Pipeline};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = std::env::temp_dir().join(format!("ferroway-doc-source-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// # std::fs::write(dir.join("in.txt"), "a\nb\n")?;
    /// let pipeline = Pipeline::builder("copy", Forward::new())
    ///     .source(FileSource::builder(dir.join("in.txt")).checkpoint_dir(dir.join("state")).open()?)
    ///     .sink(FileSink::open(dir.join("out.txt"), FileSinkOptions::new()).await?, Batcher::new("out"))
    ///     .start()
    ///     .await?;
    /// pipeline.join().await?; // the file is finite: done at its end, checkpoint written
    /// assert_eq!(std::fs::read_to_string(dir.join("out.txt"))?, "a\nb\n");
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok(()) }
    /// ```
    pub fn source<S>(self, source: S) -> PipelineBuilder<H, S::Producer>
    where
        S: Source<Data = H::Data>,
    {
        let source = Arc::new(source);
        let closing = source.clone();
        let close: Close = Arc::new(move || {
            let s = closing.clone();
            Box::pin(async move { s.close().await })
        });
        self.with_producers(Arc::new(move |i| source.producer(i)), Some(close))
    }

    fn with_producers<Q>(self, factory: Factory<Q>, close: Option<Close>) -> PipelineBuilder<H, Q> {
        PipelineBuilder {
            name: self.name,
            handler: self.handler,
            factory: Some(factory),
            close,
            sinks: self.sinks,
            producer_concurrency: self.producer_concurrency,
            processors: self.processors,
            batchers: self.batchers,
            partition_by: self.partition_by,
            rate_limit: self.rate_limit,
            dead_letter: self.dead_letter,
            retry: self.retry,
            outage_backoff: self.outage_backoff,
            shutdown_timeout: self.shutdown_timeout,
            restarts: self.restarts,
            _p: PhantomData,
        }
    }

    /// How many producers run (default 1).
    pub fn producer_concurrency(mut self, n: usize) -> Self {
        self.producer_concurrency = n;
        self
    }

    /// Processor options.
    pub fn processors(mut self, p: Processors) -> Self {
        self.processors = p;
        self
    }

    /// Adds a batcher. The first one added is where messages go unless they
    /// [`put_batcher`](Message::put_batcher) elsewhere. Without batchers, messages are
    /// acknowledged right after their processor.
    pub fn batcher(mut self, b: Batcher<H::Data>) -> Self {
        self.batchers.push(b);
        self
    }

    /// Adds a batcher whose batches go to `sink` ([`Sink::write`]) instead of
    /// [`Handler::handle_batch`]: messages are acknowledged once the sink has them, those it
    /// refused fail alone (dead-letter route), and an outage is waited out. The sink is
    /// closed when the pipeline stops. See [`source`](Self::source) for a complete pipeline.
    pub fn sink(mut self, sink: impl Sink<H::Data>, batcher: Batcher<H::Data>) -> Self {
        self.sinks.push((batcher.name, Arc::new(sink)));
        self.batchers.push(batcher);
        self
    }

    /// Per-key ordering: messages with the same `key(message)` are handled in order, by the
    /// same processor and the same batch processor.
    ///
    /// A slow key slows its own lane: its processor stops taking messages once its demand is
    /// used up, and the producer holds back messages for that lane while other lanes go on —
    /// as far as the producers' demand allows, after which the whole pipeline waits for it.
    ///
    /// Memory stays bounded by configuration whatever the key distribution — one hot key,
    /// skew, a single Kafka partition: before the batchers at most `producer_concurrency ×
    /// (3 × processors − 1) × processors.max_demand` messages are in flight (each lane's
    /// demand; plus what waits for busy lanes, which never exceeds one `max_demand` per lane
    /// of slack and the other lanes' demand).
    pub fn partition_by(mut self, key: impl Fn(&Message<H::Data>) -> u64 + Send + Sync + 'static) -> Self {
        self.partition_by = Some(Arc::new(key));
        self
    }

    /// At most `allowed` messages per `interval`, shared by all producers.
    pub fn rate_limit(mut self, allowed: usize, interval: Duration) -> Self {
        self.rate_limit = Some((allowed, interval));
        self
    }

    /// Where messages that finally failed go before they are acknowledged.
    pub fn dead_letter(mut self, sink: impl Sink<H::Data>) -> Self {
        self.dead_letter = Some(Box::new(sink));
        self
    }

    /// Retries `handle_message` when it returns an error or panics, waiting `policy`'s delays,
    /// at most `max_retries` times, before the message is failed. The processor waits for the
    /// retries, so per-key order is kept.
    pub fn retry(mut self, policy: Backoff, max_retries: usize) -> Self {
        self.retry = Some((policy, max_retries));
        self
    }

    /// The waits between attempts while a destination is unavailable (default: exponential
    /// from 100 ms, capped at 10 s, with jitter). An outage — an error for which
    /// [`is_unavailable`](crate::error::is_unavailable) holds, from `handle_message`,
    /// `handle_batch` or the dead-letter sink — never fails a message: the stage keeps it and
    /// tries again, however long it takes, and the source pauses meanwhile. A policy that
    /// runs out keeps its last delay.
    pub fn outage_backoff(mut self, policy: Backoff) -> Self {
        self.outage_backoff = policy;
        self
    }

    /// How long [`Pipeline::stop`] may take to drain (default 30 s).
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.shutdown_timeout = d;
        self
    }

    /// Producer restarts allowed: at most `max` in `period` (default 3 in 5 s); beyond that
    /// the pipeline fails.
    pub fn max_restarts(mut self, max: u32, period: Duration) -> Self {
        self.restarts = (max, period);
        self
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let err = |option: &str, reason: String| {
            Err(ConfigError {
                pipeline: self.name.clone(),
                option: option.to_owned(),
                reason,
            })
        };
        if self.name.is_empty() {
            return err("name", "must not be empty".into());
        }
        if self.producer_concurrency == 0 {
            return err("producer.concurrency", "must be at least 1".into());
        }
        let p = &self.processors;
        if p.concurrency == 0 {
            return err("processors.concurrency", "must be at least 1".into());
        }
        if p.max_demand == 0 {
            return err("processors.max_demand", "must be at least 1".into());
        }
        let (max, min) = p.demand();
        if min >= max {
            return err(
                "processors.min_demand",
                format!("must be below max_demand ({max}), got {min}"),
            );
        }
        for (i, b) in self.batchers.iter().enumerate() {
            let opt = |o: &str| format!("batchers[{}].{o}", b.name);
            if b.name.is_empty() {
                return err(&format!("batchers[{i}].name"), "must not be empty".into());
            }
            if self.batchers[..i].iter().any(|o| o.name == b.name) {
                return err(&opt("name"), "is used by two batchers".into());
            }
            if let BatchSize::Count(0) | BatchSize::Weighted(0, _) = b.size {
                return err(&opt("batch_size"), "must be at least 1".into());
            }
            if b.timeout.is_zero() {
                return err(&opt("batch_timeout"), "must be longer than zero".into());
            }
            if b.concurrency == 0 {
                return err(&opt("concurrency"), "must be at least 1".into());
            }
            if b.max_demand == Some(0) {
                return err(&opt("max_demand"), "must be at least 1".into());
            }
        }
        if let Some((allowed, interval)) = self.rate_limit {
            if allowed == 0 {
                return err("rate_limit.allowed", "must be at least 1".into());
            }
            if interval.is_zero() {
                return err("rate_limit.interval", "must be longer than zero".into());
            }
        }
        if self.restarts.1.is_zero() {
            return err("max_restarts.period", "must be longer than zero".into());
        }
        Ok(())
    }
}

impl<H, P> PipelineBuilder<H, P>
where
    H: Handler,
    P: Producer<Output = Message<H::Data>>,
{
    /// Validates the options, starts every stage and subscribes them to each other. Returns
    /// once all producers are subscribed, so messages can be pushed at once.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first invalid option.
    ///
    /// # Panics
    /// When called outside a Tokio runtime.
    pub async fn start(self) -> Result<Pipeline<H::Data>, ConfigError> {
        self.validate()?;
        let fail = |reason: String| ConfigError {
            pipeline: self.name.clone(),
            option: "start".into(),
            reason,
        };
        let name: Arc<str> = self.name.as_str().into();
        let shared = Arc::new(Shared::new(
            name.clone(),
            self.handler,
            self.dead_letter,
            self.retry,
            self.outage_backoff,
            self.sinks.clone(),
        ));
        let mut tasks: Vec<StageTask> = Vec::new();
        let mut topology = Topology::default();
        let batcher_names: Arc<[&'static str]> = self.batchers.iter().map(|b| b.name).collect();

        // Processors.
        let mut processor_refs = Vec::new();
        let mut processor_outs = Vec::new();
        for i in 0..self.processors.concurrency {
            let pname = format!("{name}.processor.{i}");
            let (inbox, cref, crx) = ConsumerOptions::new()
                .name(pname.as_str())
                .stop_when_unsubscribed(true)
                .into_inbox("processor");
            let (ptx, prx) = mpsc::unbounded_channel();
            let outbox = (!batcher_names.is_empty()).then(|| {
                let names = batcher_names.clone();
                // One batcher: plain demand dispatch, no per-message routing.
                let d = if names.len() == 1 {
                    Dispatcher::demand()
                } else {
                    Dispatcher::partition(names.len(), move |m: &Message<H::Data>| {
                        Some(
                            m.batcher()
                                .and_then(|b| names.iter().position(|n| *n == b))
                                .unwrap_or(0),
                        )
                    })
                };
                Outbox::new(pname.as_str().into(), d, usize::MAX, BufferKeep::First)
            });
            let down = outbox.map(|outbox| Downstream { outbox, rx: prx });
            let processor = Processor::new(shared.clone(), batcher_names.clone(), &pname);
            processor_outs.push(crate::stage::ProducerRef {
                tx: ptx,
                name: pname.as_str().into(),
            });
            tasks.push(transform::spawn(pname.as_str().into(), processor, inbox, crx, down));
            processor_refs.push(cref);
            topology.processors.push(pname);
        }

        // Batchers and their batch processors.
        for (bi, b) in self.batchers.iter().enumerate() {
            let bname = format!("{name}.batcher.{}", b.name);
            let (inbox, cref, crx) = ConsumerOptions::new()
                .name(bname.as_str())
                .stop_when_unsubscribed(true)
                .into_inbox("batcher");
            let (ptx, prx) = mpsc::unbounded_channel();
            let partition = self.partition_by.clone().map(|f| (b.concurrency, f));
            let dispatcher = if partition.is_some() {
                Dispatcher::partition(b.concurrency, |batch: &Batch<H::Data>| Some(batch.partition))
            } else {
                Dispatcher::demand()
            };
            let outbox = Outbox::new(bname.as_str().into(), dispatcher, usize::MAX, BufferKeep::First);
            let cfg = batcher::Config {
                batcher: b.name,
                size: b.size.clone(),
                timeout: b.timeout,
                partition,
            };
            let down = Downstream { outbox, rx: prx };
            tasks.push(transform::spawn(
                bname.as_str().into(),
                Batches::new(cfg),
                inbox,
                crx,
                Some(down),
            ));
            let batcher_ref = crate::stage::ProducerRef {
                tx: ptx,
                name: bname.as_str().into(),
            };
            let mut bps = Vec::new();
            for j in 0..b.concurrency {
                let bpname = format!("{name}.batch_processor.{}.{j}", b.name);
                let (bp_inbox, bp_ref, bp_rx) = ConsumerOptions::new()
                    .name(bpname.as_str())
                    .stop_when_unsubscribed(true)
                    .into_inbox("batch_processor");
                tasks.push(StageTask::spawn(
                    bpname.as_str().into(),
                    batch_processor::run(shared.clone(), bp_inbox, bp_rx),
                ));
                // Two batches in flight: the next one is ready while this one is handled.
                let mut o = SubscribeOptions::new()
                    .max_demand(2)
                    .min_demand(1)
                    .cancel(CancelMode::Transient);
                if self.partition_by.is_some() {
                    o = o.partition(j);
                }
                bp_ref
                    .subscribe_to(&batcher_ref, o)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                bps.push(bpname);
            }
            let max = b.max_demand.unwrap_or(1000);
            for out in &processor_outs {
                let o = SubscribeOptions::new()
                    .max_demand(max)
                    .partition(bi)
                    .cancel(CancelMode::Transient);
                cref.subscribe_to(out, o).await.map_err(|e| fail(e.to_string()))?;
            }
            topology.batchers.push(BatcherTopology {
                name: b.name.to_owned(),
                batcher: bname,
                batch_processors: bps,
            });
        }

        // Producers, under a supervisor that restarts a crashed one and resubscribes it.
        let registry: Registry<H::Data> = Arc::new(Mutex::new(vec![None; self.producer_concurrency]));
        let limiter = self.rate_limit.map(|(n, d)| Arc::new(RateLimiter::new(n, d)));
        let dispatcher = match &self.partition_by {
            Some(f) => {
                let (f, n) = (f.clone(), self.processors.concurrency as u64);
                Dispatcher::partition(self.processors.concurrency, move |m: &Message<H::Data>| {
                    Some((f(m) % n) as usize)
                })
            }
            None => Dispatcher::demand(),
        };
        let factory = self.factory.ok_or_else(|| fail("no producer".into()))?;
        let mut sup = Supervisor::new(format!("{name}.producers"))
            .strategy(Strategy::OneForOne)
            .intensity(self.restarts.0, self.restarts.1);
        for i in 0..self.producer_concurrency {
            topology.producers.push(format!("{name}.producer.{i}"));
            let plan = ProducerPlan {
                index: i,
                factory: factory.clone(),
                shared: shared.clone(),
                limiter: limiter.clone(),
                processors: processor_refs.clone(),
                registry: registry.clone(),
                dispatcher: dispatcher.clone(),
                demand: self.processors.demand(),
                shutdown_timeout: self.shutdown_timeout,
            };
            sup = sup.child(plan.into_child());
        }
        let supervisor = sup.start().map_err(|e| fail(e.to_string()))?;
        // Wait until every producer is up and subscribed (or the supervisor gave up).
        loop {
            if registry
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .all(Option::is_some)
            {
                break;
            }
            if supervisor.is_finished() {
                let e = supervisor
                    .wait()
                    .await
                    .err()
                    .map_or_else(|| "producers stopped".to_owned(), |e| e.to_string());
                return Err(fail(e));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tracing::info!(
            pipeline = %name,
            producers = self.producer_concurrency,
            processors = self.processors.concurrency,
            batchers = ?batcher_names,
            partitioned = self.partition_by.is_some(),
            "pipeline started"
        );
        Ok(Pipeline {
            name,
            in_flight: shared.in_flight.clone(),
            ackers: shared.ackers.clone(),
            supervisor,
            tasks,
            registry,
            topology,
            shutdown_timeout: self.shutdown_timeout,
            clock: Arc::default(),
            sinks: self.sinks.into_iter().map(|(_, s)| s).collect(),
            close: self.close,
        })
    }
}
