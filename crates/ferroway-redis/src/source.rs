//! The source: a consumer-group reader that emits entries as pipeline messages.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ferroway::BoxError;
use ferroway::error::Chain;
use ferroway::pipeline::{AckToken, Acknowledger, Message, OnFailure};
use ferroway::resilience::{Connection, StatefulBackoff};
use ferroway::stage::{Emit, Producer};
use ferroway::telemetry::LogThrottle;
use redis::RedisError;
use redis::aio::MultiplexedConnection;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, error, warn};

use crate::ack::{AckCmd, AckTask, StreamAcker};
use crate::connection::{Link, LinkError, REPLY_TIMEOUT, is_connection_error, is_unavailable};
use crate::entry::{Entry, RedisMetadata, StreamId};
use crate::error::{OptionsError, SourceError};
use crate::in_flight::InFlight;
use crate::options::SourceOptions;
use crate::reader::{Batch, Reader};
use ferroway::resilience::Reach;

/// Reads Redis streams as a member of a consumer group and emits each entry as a
/// [`Message<Entry>`] carrying [`RedisMetadata`] (also its
/// [`Origin`](ferroway::pipeline::Origin)): one pipeline producer. A pipeline gets them from
/// [`RedisSource::factory`].
///
/// - It reads only as many entries as the pipeline demands (`XREADGROUP … COUNT`).
/// - On start it first re-reads this consumer's own pending entries — delivered before a crash
///   but never acknowledged — then new ones.
/// - Every [`ClaimOptions::interval`](crate::ClaimOptions) it claims entries other consumers
///   left idle; an entry delivered more than `max_deliveries` times arrives failed (so it goes
///   to the pipeline's dead-letter sink) and is acknowledged.
/// - A message is `XACK`ed only after the pipeline finished with it. Acknowledgements are
///   batched and sent by a task of their own, retried across reconnections.
/// - An entry in flight is never emitted again by this process.
/// - An outage is a pause: a dropped connection is re-established with backoff and entries
///   whose delivery was cut off are read again from the pending list. No message fails
///   because Redis was away.
/// - A graceful stop processes the read under way and acknowledges everything; with nothing
///   left pending, the consumer then leaves the group (`XGROUP DELCONSUMER`).
///
/// # Redelivered entries and crash loops
///
/// Entries read again — this consumer's own pending entries after a restart or a lost
/// connection, and claimed entries — are emitted in groups with nothing else in flight: the
/// source waits until every message emitted before is acknowledged, emits the group, and
/// waits for it in turn. A group holds up to the demand on an entry's second delivery, half
/// as many with every further one, and an entry at its last allowed delivery
/// (`max_deliveries`) comes alone. So an entry that crashes the process (an abort, an
/// out-of-memory kill) drags no innocent entry past the limit: only it is dead-lettered.
///
/// The cost: while redelivered entries wait, new entries are not read, and each group takes
/// one pipeline round trip — including a batcher's `batch_timeout` when the group is smaller
/// than its `batch_size`. After one crash the pending entries come back in a few large
/// groups; after repeated crashes of the same entries the groups shrink to one entry each.
///
/// ```no_run
/// use ferroway::pipeline::{Handler, Message, Pipeline};
/// use ferroway_redis::{Entry, RedisSource, SourceOptions};
///
/// struct Print;
/// impl Handler for Print {
///     type Data = Entry;
///     async fn handle_message(&self, m: &mut Message<Entry>) -> Result<(), ferroway::BoxError> {
///         println!("{:?}", m.data());
///         Ok(())
///     }
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let opts = SourceOptions::new("redis://127.0.0.1:6379", "printers", ["events"]);
/// let pipeline = Pipeline::builder("print", Print)
///     .source(RedisSource::factory(opts)?)
///     .start()
///     .await?;
/// pipeline.run_until(ferroway::shutdown_signal()).await?;
/// # Ok(()) }
/// ```
pub struct RedisSource {
    opts: Arc<SourceOptions>,
    link: Link,
    /// Home while no read runs; inside the read task otherwise.
    reader: Option<Reader>,
    read: Option<(JoinHandle<ReadResult>, Connection<MultiplexedConnection>)>,
    ackers: Vec<Arc<dyn Acknowledger>>,
    ack_tx: mpsc::UnboundedSender<AckCmd>,
    in_flight: Arc<InFlight>,
    reach: Arc<Reach>,
    draining: Arc<AtomicBool>,
    retry: StatefulBackoff,
    /// Not reset when a read succeeds: a connection that keeps failing logs once a period.
    outage: LogThrottle,
    read_total: Vec<metrics::Counter>,
}

type ReadResult = (Reader, Result<Vec<Batch>, RedisError>);

impl std::fmt::Debug for RedisSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSource")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// How long to wait for a connection before saying so (and waiting on).
const CONNECTION_WAIT: Duration = Duration::from_secs(30);

/// What a finished read leads to.
enum After {
    Emit(Vec<Message<Entry>>),
    /// Redis cannot serve now (why): wait before reading again.
    Pause(String),
}

impl RedisSource {
    /// A source for `opts`. Connects lazily, on the first demand; must be called inside a
    /// Tokio runtime (pipeline producer factories are).
    ///
    /// In a pipeline, prefer [`RedisSource::factory`]: the pipeline then also waits for the
    /// last `XACK`s when it stops, and can run several producers.
    pub fn new(opts: SourceOptions) -> Result<Self, OptionsError> {
        opts.validate()?;
        Ok(Self::start(Arc::new(opts)))
    }

    /// A source for options already validated.
    pub(crate) fn start(opts: Arc<SourceOptions>) -> Self {
        // Longer than a BLOCK, or every read that finds nothing would "lose" the connection.
        let reply_timeout = opts.block + REPLY_TIMEOUT;
        let link = Link::new(&opts.url, &opts.consumer, reply_timeout, opts.reconnect.clone());
        let ack_link = Link::new(
            &opts.url,
            &format!("{}-ack", opts.consumer),
            REPLY_TIMEOUT,
            opts.reconnect.clone(),
        );
        let key = format!(
            "{}\n{}\n{}\n{}",
            opts.url.expose(),
            opts.group,
            opts.consumer,
            opts.streams.join("\n")
        );
        let reach = Reach::of(&key);
        let in_flight = InFlight::of(key);
        let draining = Arc::new(AtomicBool::new(false));
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let task = AckTask {
            opts: opts.clone(),
            link: ack_link,
            in_flight: in_flight.clone(),
            draining: draining.clone(),
        };
        tokio::spawn(task.run(ack_rx));
        let left_pending = metrics::counter!(crate::metrics::LEFT_PENDING);
        let ackers = (0..opts.streams.len())
            .map(|stream| {
                Arc::new(StreamAcker {
                    stream,
                    tx: ack_tx.clone(),
                    on_failed: opts.on_failed,
                    left_pending: left_pending.clone(),
                }) as Arc<dyn Acknowledger>
            })
            .collect();
        RedisSource {
            read_total: opts
                .streams
                .iter()
                .map(|s| metrics::counter!(crate::metrics::READ, "stream" => s.to_string()))
                .collect(),
            reader: Some(Reader::new(opts.clone())),
            read: None,
            ackers,
            ack_tx,
            in_flight,
            reach,
            draining,
            retry: opts.reconnect.stateful(),
            outage: LogThrottle::new(Duration::from_secs(10)),
            link,
            opts,
        }
    }

    /// Where this source's acknowledgements go: the factory closes it when the pipeline stops.
    /// Whether this consumer (and any before it with the same name) reached Redis.
    pub(crate) fn reach(&self) -> Arc<Reach> {
        self.reach.clone()
    }

    pub(crate) fn acknowledgements(&self) -> mpsc::UnboundedSender<AckCmd> {
        self.ack_tx.clone()
    }

    /// Starts the next read in a task of its own, which keeps the reply if this future is
    /// dropped (as it is when draining begins).
    async fn start_read(&mut self, count: usize) -> Result<(), BoxError> {
        let redelivering = self.reader.as_ref().is_some_and(Reader::redelivering);
        if redelivering && self.in_flight.get() > 0 {
            debug!(
                in_flight = self.in_flight.get(),
                "waiting for in-flight entries to be acknowledged before redelivering"
            );
            self.in_flight.empty().await;
        }
        let conn = self.connection().await?;
        let Some(mut reader) = self.reader.take() else {
            return Err("the Redis source lost its reader to a failed read task".into());
        };
        let mut c = (*conn).clone();
        let task = tokio::spawn(async move {
            let r = reader.step(&mut c, count).await;
            (reader, r)
        });
        self.read = Some((task, conn));
        Ok(())
    }

    async fn connection(&self) -> Result<Connection<MultiplexedConnection>, SourceError> {
        loop {
            let Some(wait) = self.reach.wait(self.opts.connect_timeout, CONNECTION_WAIT) else {
                self.reach.failed(self.link.last_attempt());
                return Err(SourceError::Unreachable {
                    group: self.opts.group.clone(),
                    url: self.link.url().redacted(),
                    waited: self.reach.waited(),
                    last_error: self.reach.last_error(),
                });
            };
            match self.link.get(wait).await {
                Ok(c) => {
                    self.reach.mark_reached();
                    return Ok(c);
                }
                Err(LinkError::GaveUp { last_error }) => {
                    return Err(SourceError::GaveUp {
                        group: self.opts.group.clone(),
                        url: self.link.url().redacted(),
                        last_error,
                    });
                }
                Err(LinkError::Unavailable(e)) => {
                    if let Some(suppressed) = self.outage.allow() {
                        warn!(consumer = %self.opts.consumer, error = %Chain(&e), suppressed, "waiting for Redis");
                    }
                }
            }
        }
    }

    /// Takes the finished read's reply: messages, or what to do about its error.
    fn settle(&mut self, joined: ReadResult, conn: &Connection<MultiplexedConnection>) -> Result<After, SourceError> {
        let (reader, result) = joined;
        let reader = self.reader.insert(reader);
        let e = match result {
            Ok(batches) => {
                self.retry.succeed();
                return Ok(After::Emit(self.messages(batches)));
            }
            Err(e) => e,
        };
        if is_unavailable(&e) {
            if let Some(suppressed) = self.outage.allow() {
                warn!(consumer = %self.opts.consumer, error = %Chain(&e), suppressed, "Redis read failed; retrying");
            }
            // The reply may have been lost with its entries: they are in the pending list.
            reader.connection_lost();
            if is_connection_error(&e) {
                self.link.report_broken(conn);
                return Ok(After::Emit(Vec::new()));
            }
            return Ok(After::Pause(e.to_string()));
        }
        if e.code() == Some("NOGROUP") && self.opts.create_group.is_some() {
            warn!(error = %e, group = %self.opts.group, "consumer group missing; creating it again");
            reader.rejoin();
            return Ok(After::Emit(Vec::new()));
        }
        Err(SourceError::Redis {
            group: self.opts.group.clone(),
            url: self.link.url().redacted(),
            source: e,
        })
    }

    /// Turns read entries into messages; entries deleted while pending are acknowledged.
    fn messages(&mut self, batches: Vec<Batch>) -> Vec<Message<Entry>> {
        let mut out = Vec::with_capacity(batches.iter().map(|b| b.entries.len()).sum());
        for Batch { stream, entries } in batches {
            let before = out.len();
            let mut gone = Vec::new();
            for e in entries {
                match e.fields {
                    Some(fields) => out.push(self.message(stream, e.id, fields, e.deliveries)),
                    None => gone.push(e.id),
                }
            }
            if !gone.is_empty() {
                debug!(stream = %self.opts.streams[stream], count = gone.len(), "acknowledging entries deleted while pending");
                let _ = self.ack_tx.send(AckCmd::Ack {
                    stream,
                    ids: gone,
                    done: 0,
                });
            }
            self.read_total[stream].increment((out.len() - before) as u64);
        }
        self.in_flight.add(out.len());
        out
    }

    fn message(&self, stream: usize, id: StreamId, fields: crate::entry::Fields, deliveries: u64) -> Message<Entry> {
        let mut m = Message::with_acker(Entry { fields }, self.ackers[stream].clone(), AckToken(id.ms, id.seq));
        m.put_origin(RedisMetadata {
            stream: self.opts.streams[stream].clone(),
            id,
            delivery_count: deliveries,
        });
        if let Some(claim) = &self.opts.claim
            && deliveries > claim.max_deliveries
        {
            m.fail(format_args!(
                "entry {id} of stream `{}` was delivered {deliveries} times (limit {})",
                self.opts.streams[stream], claim.max_deliveries
            ));
            // Done with, dead-lettered or not: it must not come back again.
            m.configure_ack(OnFailure::Ack);
        }
        m
    }
}

impl Producer for RedisSource {
    type Output = Message<Entry>;

    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<Entry>>, BoxError> {
        let count = demand.min(self.opts.max_count).max(1);
        loop {
            if self.read.is_none() {
                self.start_read(count).await?;
            }
            let Some((task, _)) = self.read.as_mut() else { continue };
            let joined = task.await;
            let Some((_, conn)) = self.read.take() else { continue };
            let joined = joined.map_err(|e| format!("the Redis read task failed: {e}"))?;
            match self.settle(joined, &conn)? {
                After::Emit(messages) if !messages.is_empty() => return Ok(Emit::Events(messages)),
                After::Emit(_) => {}
                After::Pause(why) => match self.retry.fail() {
                    Some(pause) => tokio::time::sleep(pause).await,
                    None => {
                        return Err(SourceError::GaveUp {
                            group: self.opts.group.clone(),
                            url: self.link.url().redacted(),
                            last_error: why,
                        }
                        .into());
                    }
                },
            }
        }
    }

    async fn prepare_for_draining(&mut self) -> Vec<Message<Entry>> {
        self.draining.store(true, Ordering::Release);
        let mut last = Vec::new();
        if let Some((task, conn)) = self.read.take() {
            // Redis may have answered already: those entries are ours to process now.
            match task.await {
                Ok(joined) => match self.settle(joined, &conn) {
                    Ok(After::Emit(messages)) => last = messages,
                    Ok(After::Pause(_)) => {}
                    Err(e) => error!(error = %Chain(&e), "the last Redis read failed"),
                },
                Err(e) => error!(error = %e, "the Redis read task failed"),
            }
        }
        if last.is_empty() && self.in_flight.get() == 0 {
            // No acknowledgement will come to flush: leave the group from here.
            let (tx, rx) = oneshot::channel();
            if self.ack_tx.send(AckCmd::Flush(tx)).is_ok() {
                let _ = tokio::time::timeout(REPLY_TIMEOUT, rx).await;
            }
        }
        last
    }
}

impl Drop for RedisSource {
    fn drop(&mut self) {
        if let Some((task, _)) = &self.read {
            task.abort();
        }
    }
}
