//! The source: a consumer-group reader that emits entries as pipeline messages.

use std::sync::Arc;

use ferroway::BoxError;
use ferroway::pipeline::{AckToken, Acknowledger, Message, OnFailure};
use ferroway::resilience::{ConnectionError, ConnectionManager};
use ferroway::stage::{Emit, Producer};
use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::ack::{self, AckCmd, StreamAcker};
use crate::connection::{self, RedisConnector, is_connection_error};
use crate::entry::{Entry, RawEntry, RedisMetadata, StreamId, parse_entries, parse_pending, parse_read};
use crate::error::OptionsError;
use crate::options::SourceOptions;

/// Reads Redis streams as a member of a consumer group and emits each entry as a
/// [`Message<Entry>`] carrying [`RedisMetadata`]; a pipeline producer.
///
/// - It reads only as many entries as the pipeline demands (`XREADGROUP … COUNT`).
/// - On start it first re-reads this consumer's own pending entries — delivered before a crash
///   but never acknowledged — then new ones.
/// - Every [`ClaimOptions::interval`](crate::ClaimOptions) it claims entries other consumers
///   left idle; an entry delivered more than `max_deliveries` times arrives failed (so it goes
///   to the pipeline's dead-letter sink) and is acknowledged.
/// - A message is `XACK`ed only after the pipeline finished with it. Acknowledgements are
///   batched and sent by a task of their own, retried across reconnections.
/// - A dropped connection is re-established with backoff; entries whose delivery was cut off
///   are read again from the pending list. Nothing is lost.
///
/// ```no_run
/// use ferroway::pipeline::{Handler, Message, Pipeline};
/// use ferroway_redis::{Entry, RedisSource, SourceOptions};
///
/// struct Print;
/// impl Handler for Print {
///     type Data = Entry;
///     async fn handle_message(&self, m: &mut Message<Entry>) -> Result<(), ferroway::BoxError> {
///         println!("{:?}", m.data().get_str("payload"));
///         Ok(())
///     }
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let opts = SourceOptions::new("redis://127.0.0.1:6379", "printers", ["events"]).consumer("printer-1");
/// opts.validate()?;
/// let pipeline = Pipeline::builder("print", Print)
///     .producer(move || RedisSource::new(opts.clone()).expect("validated"))
///     .start()
///     .await?;
/// pipeline.join().await?;
/// # Ok(()) }
/// ```
pub struct RedisSource {
    opts: Arc<SourceOptions>,
    conn: ConnectionManager<RedisConnector>,
    ackers: Vec<Arc<dyn Acknowledger>>,
    ack_tx: mpsc::UnboundedSender<AckCmd>,
    /// Per stream: reading this consumer's own pending entries after the id (`Some`), or new
    /// entries (`None`).
    history: Vec<Option<StreamId>>,
    /// Per stream: the last id emitted, where to resume the pending list after a reconnect.
    last_emitted: Vec<StreamId>,
    groups_ready: bool,
    next_claim: Instant,
    read: Vec<metrics::Counter>,
    claimed: Vec<metrics::Counter>,
}

impl std::fmt::Debug for RedisSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSource")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

enum Failure {
    Connection(redis::RedisError),
    NoGroup(redis::RedisError),
    Fatal(redis::RedisError),
}

impl From<redis::RedisError> for Failure {
    fn from(e: redis::RedisError) -> Self {
        if is_connection_error(&e) {
            Failure::Connection(e)
        } else if e.code() == Some("NOGROUP") {
            Failure::NoGroup(e)
        } else {
            Failure::Fatal(e)
        }
    }
}

impl RedisSource {
    /// A source for `opts`. Connects lazily, on the first demand; must be called inside a
    /// Tokio runtime (pipeline producer factories are).
    pub fn new(opts: SourceOptions) -> Result<Self, OptionsError> {
        opts.validate()?;
        let conn = connection::manager(&opts.url, opts.consumer.clone(), opts.reconnect.clone());
        let ack_conn = connection::manager(&opts.url, format!("{}-ack", opts.consumer), opts.reconnect.clone());
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let streams: Arc<[Arc<str>]> = opts.streams.iter().cloned().collect();
        tokio::spawn(ack::run(streams, opts.group.clone(), ack_conn, ack_rx));
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
        let n = opts.streams.len();
        let counter = |name: &'static str| -> Vec<metrics::Counter> {
            opts.streams
                .iter()
                .map(|s| metrics::counter!(name, "stream" => s.to_string()))
                .collect()
        };
        Ok(RedisSource {
            read: counter(crate::metrics::READ),
            claimed: counter(crate::metrics::CLAIMED),
            ackers,
            ack_tx,
            history: vec![Some(StreamId { ms: 0, seq: 0 }); n],
            last_emitted: vec![StreamId { ms: 0, seq: 0 }; n],
            groups_ready: false,
            next_claim: Instant::now(),
            conn,
            opts: Arc::new(opts),
        })
    }

    async fn ensure_groups(&mut self, c: &mut MultiplexedConnection) -> Result<(), Failure> {
        if let Some(start) = &self.opts.create_group {
            for s in &self.opts.streams {
                let r: redis::RedisResult<()> = redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(&**s)
                    .arg(&self.opts.group)
                    .arg(start.as_arg())
                    .arg("MKSTREAM")
                    .query_async(c)
                    .await;
                match r {
                    Ok(()) => info!(stream = %s, group = %self.opts.group, "created consumer group"),
                    Err(e) if e.code() == Some("BUSYGROUP") => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        self.groups_ready = true;
        Ok(())
    }

    fn message(
        &mut self,
        stream: usize,
        id: StreamId,
        fields: crate::entry::Fields,
        deliveries: u64,
    ) -> Message<Entry> {
        let mut m = Message::with_acker(Entry { fields }, self.ackers[stream].clone(), AckToken(id.ms, id.seq));
        self.last_emitted[stream] = self.last_emitted[stream].max(id);
        m.put_metadata(RedisMetadata {
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

    /// Turns read entries into messages; entries deleted while pending are acknowledged.
    fn messages(
        &mut self,
        stream: usize,
        entries: Vec<RawEntry>,
        deliveries: impl Fn(StreamId) -> u64,
    ) -> Vec<Message<Entry>> {
        let mut out = Vec::with_capacity(entries.len());
        let mut gone = Vec::new();
        for RawEntry { id, fields } in entries {
            match fields {
                Some(fields) => {
                    let d = deliveries(id);
                    out.push(self.message(stream, id, fields, d));
                }
                None => gone.push(id),
            }
        }
        if !gone.is_empty() {
            debug!(stream = %self.opts.streams[stream], count = gone.len(), "acknowledging entries deleted while pending");
            let _ = self.ack_tx.send(AckCmd::Ack { stream, ids: gone });
        }
        self.read[stream].increment(out.len() as u64);
        out
    }

    /// Claims entries other consumers left idle.
    async fn claim(&mut self, c: &mut MultiplexedConnection, count: usize) -> Result<Vec<Message<Entry>>, Failure> {
        let Some(claim) = self.opts.claim.clone() else {
            return Ok(Vec::new());
        };
        let idle_ms = claim.min_idle.as_millis() as u64;
        let mut out = Vec::new();
        for i in 0..self.opts.streams.len() {
            let stream = self.opts.streams[i].clone();
            let pending: redis::Value = redis::cmd("XPENDING")
                .arg(&*stream)
                .arg(&self.opts.group)
                .arg("IDLE")
                .arg(idle_ms)
                .arg("-")
                .arg("+")
                .arg(count)
                .query_async(c)
                .await?;
            let idle: Vec<(StreamId, u64)> = parse_pending(pending)
                .into_iter()
                .filter(|(_, consumer, _)| *consumer != self.opts.consumer)
                .map(|(id, _, d)| (id, d))
                .collect();
            if idle.is_empty() {
                continue;
            }
            let mut cmd = redis::cmd("XCLAIM");
            cmd.arg(&*stream)
                .arg(&self.opts.group)
                .arg(&self.opts.consumer)
                .arg(idle_ms);
            for (id, _) in &idle {
                cmd.arg(id.to_string());
            }
            let entries = parse_entries(cmd.query_async(c).await?);
            self.claimed[i].increment(entries.len() as u64);
            info!(stream = %stream, count = entries.len(), "claimed idle entries");
            out.extend(self.messages(i, entries, |id| {
                idle.iter().find(|(x, _)| *x == id).map_or(1, |(_, d)| d + 1)
            }));
        }
        Ok(out)
    }

    /// This consumer's own pending entries, then new ones.
    async fn read(&mut self, c: &mut MultiplexedConnection, count: usize) -> Result<Vec<Message<Entry>>, Failure> {
        if !self.groups_ready {
            self.ensure_groups(c).await?;
        }
        if let Some(interval) = self.opts.claim.as_ref().map(|c| c.interval)
            && Instant::now() >= self.next_claim
        {
            self.next_claim = Instant::now() + interval;
            let claimed = self.claim(c, count).await?;
            if !claimed.is_empty() {
                return Ok(claimed);
            }
        }
        let in_history: Vec<usize> = (0..self.history.len()).filter(|&i| self.history[i].is_some()).collect();
        if !in_history.is_empty() {
            let mut cmd = self.xreadgroup(count, None);
            for &i in &in_history {
                cmd.arg(&*self.opts.streams[i]);
            }
            for &i in &in_history {
                cmd.arg(self.history[i].map(|id| id.to_string()));
            }
            let mut reply = parse_read(cmd.query_async(c).await?);
            let mut out = Vec::new();
            for &i in &in_history {
                let entries = match reply.iter().position(|(s, _)| *s == *self.opts.streams[i]) {
                    Some(p) => std::mem::take(&mut reply[p].1),
                    None => Vec::new(),
                };
                match entries.last() {
                    None => self.history[i] = None,
                    Some(last) => self.history[i] = Some(last.id),
                }
                if !entries.is_empty() {
                    let counts = self.pending_counts(c, i, &entries).await?;
                    out.extend(self.messages(i, entries, |id| {
                        counts.iter().find(|(x, _)| *x == id).map_or(2, |(_, d)| *d)
                    }));
                }
            }
            if !out.is_empty() {
                return Ok(out);
            }
        }
        let live: Vec<usize> = (0..self.history.len()).filter(|&i| self.history[i].is_none()).collect();
        let mut cmd = self.xreadgroup(count, Some(self.opts.block.as_millis() as u64));
        for &i in &live {
            cmd.arg(&*self.opts.streams[i]);
        }
        for _ in &live {
            cmd.arg(">");
        }
        let reply = parse_read(cmd.query_async(c).await?);
        let mut out = Vec::new();
        for (stream, entries) in reply {
            if let Some(i) = self.opts.streams.iter().position(|s| **s == *stream) {
                out.extend(self.messages(i, entries, |_| 1));
            }
        }
        Ok(out)
    }

    fn xreadgroup(&self, count: usize, block_ms: Option<u64>) -> redis::Cmd {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.opts.group)
            .arg(&self.opts.consumer)
            .arg("COUNT")
            .arg(count);
        if let Some(ms) = block_ms {
            cmd.arg("BLOCK").arg(ms);
        }
        cmd.arg("STREAMS");
        cmd
    }

    /// Delivery counts of re-read pending entries (`XPENDING` over their id range).
    async fn pending_counts(
        &self,
        c: &mut MultiplexedConnection,
        stream: usize,
        entries: &[RawEntry],
    ) -> Result<Vec<(StreamId, u64)>, Failure> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(Vec::new());
        };
        let v: redis::Value = redis::cmd("XPENDING")
            .arg(&*self.opts.streams[stream])
            .arg(&self.opts.group)
            .arg(first.id.to_string())
            .arg(last.id.to_string())
            .arg(entries.len())
            .arg(&self.opts.consumer)
            .query_async(c)
            .await?;
        Ok(parse_pending(v).into_iter().map(|(id, _, d)| (id, d)).collect())
    }
}

impl Producer for RedisSource {
    type Output = Message<Entry>;

    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<Entry>>, BoxError> {
        let count = demand.min(self.opts.max_count).max(1);
        loop {
            let c = match self.conn.get().await {
                Ok(c) => c,
                Err(ConnectionError::Closed) => return Err("the Redis connection manager was closed".into()),
                // Still reconnecting: keep waiting (draining drops this call at once).
                Err(_) => continue,
            };
            let mut rc: MultiplexedConnection = (*c).clone();
            match self.read(&mut rc, count).await {
                Ok(messages) if !messages.is_empty() => return Ok(Emit::Events(messages)),
                // BLOCK timed out: read again.
                Ok(_) => continue,
                Err(Failure::Connection(e)) => {
                    warn!(consumer = %self.opts.consumer, error = %e, "Redis connection lost; reconnecting");
                    self.conn.report_broken(&c);
                    // Entries of a read whose reply was lost sit in our pending list.
                    for i in 0..self.history.len() {
                        self.history[i] = Some(self.last_emitted[i]);
                    }
                }
                Err(Failure::NoGroup(e)) if self.opts.create_group.is_some() => {
                    warn!(error = %e, "consumer group missing; creating it again");
                    self.groups_ready = false;
                }
                Err(Failure::NoGroup(e) | Failure::Fatal(e)) => {
                    return Err(format!("Redis source `{}` ({}): {e}", self.opts.group, self.opts.url).into());
                }
            }
        }
    }
}
