//! The source: a consumer-group member as a pipeline producer.
//!
//! A dedicated thread (the poller) owns the librdkafka consumer. It serves the consumer all
//! the time (so the member stays in its group and rebalances are served even when the
//! pipeline has no demand), fetches only as many messages as the pipeline demanded plus a
//! small prefetch, and pauses every assigned partition when nobody asks for more. Rebalance
//! callbacks run on that thread, so a revoke can wait for in-flight messages without blocking
//! the pipeline. The poller does as little per message as it can: it takes messages in
//! batches from a queue of its own (see `native`) and notes each one's assignment. The
//! pipeline's task copies payloads, builds messages and tracks offsets, so the two threads
//! share the work.

mod acker;
mod context;
mod fetched;
mod native;
mod poller;
mod records;
mod shared;
mod startup;

use std::sync::Arc;

use ferroway::BoxError;
use ferroway::connector::Source;
use ferroway::error::Chain;
use ferroway::pipeline::{AckToken, Acknowledger, BoxFuture, Message};
use ferroway::stage::{Emit, Producer};
use rdkafka::consumer::Consumer;
use tokio::sync::watch;
use tracing::{error, info};

use self::acker::SourceAcker;
use self::context::SourceContext;
use self::fetched::{Client, Fetched, TopicNames};
use self::poller::Member;
pub use self::records::{KafkaRecordProducer, KafkaRecordSource};
use self::shared::{PollerEnd, Shared};
use self::startup::{Reach, Watch};
use crate::error::KafkaError;
use crate::options::KafkaSourceOptions;

/// A Kafka source for a pipeline: a [`Source`] of `Vec<u8>` payloads — give it to
/// [`PipelineBuilder::source`](ferroway::pipeline::PipelineBuilder::source) — or, through
/// [`records`](Self::records), of broker-neutral [`Record`](ferroway::connector::Record)s.
///
/// The options are validated once, by [`KafkaSource::factory`]. Each producer it makes is one
/// member of the consumer group, so `producer_concurrency(n)` runs `n` members.
///
/// When [`Pipeline::stop`](ferroway::pipeline::Pipeline::stop) (or `join`) returns, every
/// member has made its final commit and left the group: the pipeline awaits the source's
/// [`close`](Source::close).
///
/// ```no_run
/// use ferroway::pipeline::{Batcher, Forward, Pipeline};
/// use ferroway_kafka::{Connection, KafkaSink, KafkaSinkOptions, KafkaSource, KafkaSourceOptions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let source = KafkaSource::factory(KafkaSourceOptions::new(Connection::new("127.0.0.1:9092"), "mirror", ["orders"]))?;
/// let sink = KafkaSink::new(KafkaSinkOptions::new(Connection::new("127.0.0.1:9092")).topic("orders-copy"))?;
/// // Keys, headers and timestamps go along with the payloads.
/// let pipeline = Pipeline::builder("mirror", Forward::new())
///     .source(source.records())
///     .sink(sink, Batcher::new("copy").batch_size(1000))
///     .start()
///     .await?;
/// pipeline.run_until(ferroway::shutdown_signal()).await?; // returns once offsets are committed
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct KafkaSourceFactory {
    opts: Arc<KafkaSourceOptions>,
    live: Arc<watch::Sender<usize>>,
    reach: Arc<Reach>,
}

impl KafkaSourceFactory {
    /// A new producer (a new consumer-group member), for a pipeline built with
    /// [`PipelineBuilder::producer`](ferroway::pipeline::PipelineBuilder::producer); then
    /// await [`closed`](Self::closed) after it stops. [`PipelineBuilder::source`](ferroway::pipeline::PipelineBuilder::source)
    /// does both by itself. Never fails: a client that cannot be created makes the producer's
    /// first `handle_demand` fail, so the pipeline's producer supervision applies.
    pub fn create(&self) -> KafkaSource {
        KafkaSource::start(self.opts.clone(), self.live.clone(), self.reach.clone())
    }

    /// Waits until every producer made by this factory has stopped: acknowledgements awaited
    /// (at most `close_timeout`), final offsets committed, group left. This is the source's
    /// [`close`](Source::close).
    pub async fn closed(&self) {
        let mut rx = self.live.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// The same source emitting [`Record`](ferroway::connector::Record)s: payload, key, headers and timestamp of each
    /// Kafka message (a header without a value has an empty one), its [`KafkaMetadata`](crate::KafkaMetadata)
    /// still on the message as its origin. What any connector's sink accepts; the payload is
    /// not copied again on the way.
    pub fn records(&self) -> KafkaRecordSource {
        KafkaRecordSource(self.clone())
    }

    /// The options.
    pub fn options(&self) -> &KafkaSourceOptions {
        &self.opts
    }
}

/// A Kafka consumer-group member: the pipeline producer a [`KafkaSourceFactory`] makes (start
/// with [`KafkaSource::factory`]). It emits `Message<Vec<u8>>` (the record's payload; a null
/// payload is empty), each carrying [`KafkaMetadata`](crate::KafkaMetadata).
///
/// Offsets are committed only up to the first message of each partition that is not yet
/// acknowledged (a [`Watermark`](ferroway::pipeline::Watermark) per partition), every
/// `commit_interval`, on revoke and on shutdown; never automatically by librdkafka. See the
/// [crate documentation](crate) for the guarantees and an example.
pub struct KafkaSource {
    shared: Arc<Shared>,
    /// Dropped when draining: once no message holds it either, the poller knows nothing
    /// more will be acknowledged.
    acker: Option<Arc<dyn Acknowledger>>,
    names: TopicNames,
    startup_error: Option<KafkaError>,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("group", &self.shared.opts.group_id)
            .field("topics", &self.shared.opts.topics)
            .finish_non_exhaustive()
    }
}

impl KafkaSource {
    /// Validates `opts` — the typed options, then the whole client configuration as
    /// librdkafka sees it — and returns a factory of sources. Nothing connects yet.
    ///
    /// ```
    /// use ferroway_kafka::{Connection, KafkaError, KafkaSource, KafkaSourceOptions};
    /// let conn = Connection::new("127.0.0.1:9092").property("fetch.wait.max.ms", "-5");
    /// match KafkaSource::factory(KafkaSourceOptions::new(conn, "g", ["t"])) {
    ///     Err(KafkaError::Property { property, value, .. }) => {
    ///         assert_eq!((property.as_str(), value.as_str()), ("fetch.wait.max.ms", "-5"));
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// ```
    ///
    /// # Errors
    /// [`KafkaError::Config`] naming the first invalid option, or [`KafkaError::Property`]
    /// naming a property (and its value) librdkafka refuses.
    pub fn factory(opts: KafkaSourceOptions) -> Result<KafkaSourceFactory, KafkaError> {
        opts.validate()?;
        check_client_config(opts.client_config())?;
        Ok(KafkaSourceFactory {
            opts: Arc::new(opts),
            live: Arc::new(watch::Sender::new(0)),
            reach: Arc::default(),
        })
    }

    fn start(opts: Arc<KafkaSourceOptions>, live: Arc<watch::Sender<usize>>, reach: Arc<Reach>) -> KafkaSource {
        let shared = Arc::new(Shared::new(opts.clone()));
        let acker = Arc::new(SourceAcker::new(shared.clone()));
        let servers = &opts.connection.bootstrap_servers;
        info!(group = %opts.group_id, topics = ?opts.topics, servers = %servers,
            security = %opts.connection.security_summary(), "Kafka source connecting");
        let startup = (|| -> Result<(), KafkaError> {
            reach.check(opts.connect_timeout, servers)?;
            let client: Client = opts
                .client_config()
                .create_with_context(SourceContext::new(shared.clone()))
                .map_err(KafkaError::client)?;
            let member = Member::new(client)?;
            let topics: Vec<&str> = opts.topics.iter().map(String::as_str).collect();
            member
                .client
                .subscribe(&topics)
                .map_err(|e| KafkaError::broker("subscribe", &e, &opts.connection.bootstrap_servers))?;
            let end = PollerEnd::new(shared.clone(), live.clone());
            let (sh, weak) = (shared.clone(), Arc::downgrade(&acker));
            std::thread::Builder::new()
                .name(format!("kafka-source-{}", opts.group_id))
                .spawn(move || poller::poll_loop(member, sh, weak, end, Watch::new(reach)))
                .map_err(|e| KafkaError::Client(format!("could not start the poller thread: {e}")))?;
            Ok(())
        })();
        if let Err(e) = &startup {
            error!(group = %opts.group_id, error = %Chain(e), "Kafka source could not start");
        }
        KafkaSource {
            shared,
            acker: Some(acker),
            names: TopicNames::default(),
            startup_error: startup.err(),
        }
    }
}

impl Source for KafkaSourceFactory {
    type Data = Vec<u8>;
    type Producer = KafkaSource;

    fn producer(&self, _: usize) -> Result<KafkaSource, BoxError> {
        Ok(self.create())
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.closed())
    }

    /// Whether a broker of the cluster has answered since the source started.
    fn connected(&self) -> bool {
        self.reach.reached()
    }
}

/// librdkafka checks each property when it is set, and how they combine only when a client
/// is created: create one (and drop it). Without a group id it joins nothing and, having no
/// topic, connects to nothing.
fn check_client_config(mut config: rdkafka::ClientConfig) -> Result<(), KafkaError> {
    config.remove("group.id");
    let _: rdkafka::consumer::BaseConsumer = config.create().map_err(KafkaError::client)?;
    Ok(())
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        self.shared.start_draining();
    }
}

impl Producer for KafkaSource {
    type Output = Message<Vec<u8>>;

    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<Vec<u8>>>, BoxError> {
        if let Some(e) = &self.startup_error {
            return Err(Box::new(e.clone()));
        }
        loop {
            // Cancel-safe: nothing between taking fetched messages and returning them awaits.
            let taken = {
                let mut s = self.shared.lock();
                if let Some(e) = &s.error {
                    return Err(Box::new(e.clone()));
                }
                let n = demand.min(s.fetched.len());
                s.wanted = demand - n;
                (n > 0).then(|| s.fetched.take(n))
            };
            self.shared.demand.notify_one();
            match taken {
                Some(batches) => {
                    let out = self.emit(batches);
                    if !out.is_empty() {
                        self.shared.metrics.emitted.increment(out.len() as u64);
                        return Ok(Emit::Events(out));
                    }
                }
                None => self.shared.ready.notified().await,
            }
        }
    }

    async fn prepare_for_draining(&mut self) -> Vec<Self::Output> {
        self.acker = None;
        self.shared.start_draining();
        Vec::new()
    }
}

impl KafkaSource {
    /// Converts fetched messages and tracks them as in flight. Messages whose partition was
    /// revoked since they were fetched, or that arrive once draining began, are dropped
    /// untracked: never emitted, never committed, fetched again by whoever reads on.
    fn emit(&mut self, mut batches: Vec<Fetched>) -> Vec<Message<Vec<u8>>> {
        let mut out = Vec::with_capacity(batches.iter().map(Fetched::len).sum());
        if let Some(acker) = &self.acker {
            fetched::convert(&batches, &mut self.names, &self.shared, acker, &mut out);
        }
        let mut s = self.shared.lock();
        if s.draining {
            // The poller may be closing the client: release it here rather than hand it back.
            drop(s);
            drop(batches);
            self.acker = None;
            return Vec::new();
        }
        s.spent.append(&mut batches);
        out.retain(|m| {
            let AckToken(offset, slot) = m.ack_token();
            s.book.track(slot, offset as i64)
        });
        out
    }
}
