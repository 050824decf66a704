//! The sink: produces messages and reports success only once the broker has them.

mod dead_letter;
mod delivery;
mod native;
mod producer;
mod view;

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferroway::connector::AsRecord;
use ferroway::pipeline::Message;
use ferroway::telemetry::LogThrottle;
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _};
use tracing::error;

pub use self::dead_letter::dead_letter_headers;
use self::delivery::{MAX_ROUND, RoundGuard};
use self::native::{BatchRecord, TopicHandle};
use self::producer::{Producer, Producers, release};
use self::view::{Target, View};

use crate::error::{ErrorClass, KafkaError, classify_code};
use crate::options::KafkaSinkOptions;
use crate::telemetry;

/// Where and how to produce one message, put on it with
/// [`put_metadata`](Message::put_metadata). What it sets overrides the message's data (its
/// [`AsRecord`] view: key, headers — all of them — and timestamp); what it leaves unset comes
/// from the data. Without a topic the sink's default topic is used; without a partition the
/// partitioner picks one from the key; without a timestamp, the time of sending.
///
/// When neither has a key, or neither has headers (a `Vec<u8>` payload), and the message
/// carries [`KafkaMetadata`](crate::KafkaMetadata) (it was read by a
/// [`KafkaSource`](crate::KafkaSource)), the key or headers it was read with are used.
///
/// ```
/// use ferroway::pipeline::Message;
/// use ferroway_kafka::KafkaRecord;
/// let mut m = Message::new(b"{\"total\": 42}".to_vec());
/// m.put_metadata(KafkaRecord::new().key("order-7").header("content-type", "application/json"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaRecord {
    /// The topic (default: the sink's).
    pub topic: Option<String>,
    /// The key (drives the partition unless one is set).
    pub key: Option<Vec<u8>>,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// An explicit partition.
    pub partition: Option<i32>,
    /// The record's timestamp, in milliseconds since the Unix epoch (default: now).
    pub timestamp: Option<i64>,
}

impl KafkaRecord {
    /// Nothing set: the sink's default topic, no key, no headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the topic.
    pub fn topic(mut self, t: impl Into<String>) -> Self {
        self.topic = Some(t.into());
        self
    }

    /// Sets the key.
    pub fn key(mut self, k: impl Into<Vec<u8>>) -> Self {
        self.key = Some(k.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the partition.
    pub fn partition(mut self, p: i32) -> Self {
        self.partition = Some(p);
        self
    }

    /// Sets the timestamp (ms since the Unix epoch).
    pub fn timestamp(mut self, ms: i64) -> Self {
        self.timestamp = Some(ms);
        self
    }
}

/// Where one record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// The partition.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
}

/// What [`KafkaSink::send_batch`] achieved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Messages the broker acknowledged (in this call or an earlier attempt at the same
    /// messages).
    pub sent: usize,
    /// Messages Kafka refused ([`ErrorClass::Rejected`]), marked failed.
    pub failed: usize,
}

struct SinkMetrics {
    sent: metrics::Counter,
    rejected: metrics::Counter,
    unavailable: metrics::Counter,
}

/// Put on messages an attempt of [`KafkaSink::send_batch`] delivered when the attempt as a
/// whole failed: the pipeline calls the handler again with the same messages, and these are
/// not sent twice. Holds the sink's number, so another sink (a dead-letter topic) still sends
/// them.
struct SentBy(u64);

/// A Kafka producer for pipelines: a [`Sink`](ferroway::connector::Sink) of anything
/// [`AsRecord`] (a [`Record`](ferroway::connector::Record), `Vec<u8>`, `String`, …) — give it
/// to [`PipelineBuilder::sink`](ferroway::pipeline::PipelineBuilder::sink) with a batcher, or
/// to [`PipelineBuilder::dead_letter`](ferroway::pipeline::PipelineBuilder::dead_letter) as a
/// dead-letter topic — or call [`send_batch`](Self::send_batch) from a batch handler. Either
/// way messages are acknowledged upstream only after the broker confirmed them. Each record
/// gets its data's payload, key, headers and timestamp (see [`KafkaRecord`] for what
/// overrides them).
///
/// Idempotent by default (`enable.idempotence=true`, `acks=all`): librdkafka's own retries
/// never duplicate or reorder records. What cannot be delivered is sorted by
/// [`ErrorClass`]: a record Kafka refuses (too large, invalid, an unknown partition) fails that
/// message alone; when Kafka cannot take records now — brokers down or unreachable, no
/// delivery within the delivery timeout (default 30 s), a queue full for that long, a topic that
/// does not exist — the call returns an error carrying [`ferroway::error::Unavailable`], so
/// the pipeline keeps the batch and calls the handler again with backoff: an outage never
/// dead-letters or acknowledges anything.
///
/// ```no_run
/// use ferroway::connector::generator::Generator;
/// use ferroway::pipeline::{Batcher, Forward, Pipeline};
/// use ferroway_kafka::{Connection, KafkaSink, KafkaSinkOptions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sink = KafkaSink::new(KafkaSinkOptions::new(Connection::new("127.0.0.1:9092")).topic("numbers"))?;
/// let pipeline = Pipeline::builder("numbers", Forward::new())
///     .source(Generator::new(1000))
///     .sink(sink, Batcher::new("kafka").batch_size(500))
///     .start()
///     .await?;
/// pipeline.join().await?;
/// # Ok(()) }
/// ```
///
/// With a handler of your own:
///
/// ```no_run
/// use ferroway::pipeline::{BatchInfo, Handler, Message};
/// use ferroway::BoxError;
/// use ferroway_kafka::{Connection, KafkaRecord, KafkaSink, KafkaSinkOptions};
///
/// struct Forward(KafkaSink);
/// impl Handler for Forward {
///     type Data = Vec<u8>;
///     async fn handle_message(&self, m: &mut Message<Vec<u8>>) -> Result<(), BoxError> {
///         m.put_metadata(KafkaRecord::new().key("k"));
///         Ok(())
///     }
///     async fn handle_batch(&self, batch: &mut [Message<Vec<u8>>], _: &BatchInfo) -> Result<(), BoxError> {
///         // Refused records are marked failed; an outage is an error the pipeline waits out.
///         self.0.send_batch(batch).await?;
///         Ok(())
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sink = KafkaSink::new(KafkaSinkOptions::new(Connection::new("127.0.0.1:9092")).topic("out"))?;
/// let handler = Forward(sink);
/// # let _ = handler; Ok(()) }
/// ```
pub struct KafkaSink {
    producers: Producers,
    opts: Arc<KafkaSinkOptions>,
    metrics: SinkMetrics,
    /// Unique per sink in the process (see [`SentBy`]).
    id: u64,
    /// Says once in a while that records cannot be delivered for a reason that needs a person
    /// (credentials, ACLs, a fatally failed producer), not just time.
    fatal_log: LogThrottle,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("options", &self.opts)
            .finish_non_exhaustive()
    }
}

/// A record that was not delivered: its index in the send, and why.
type Failure = (usize, RDKafkaErrorCode);

impl KafkaSink {
    /// Validates `opts` and creates the producer (connections are made lazily).
    ///
    /// # Errors
    /// [`KafkaError::Config`] naming an invalid option, [`KafkaError::Property`] naming a
    /// property (and its value) librdkafka refuses, or [`KafkaError::Client`] if the producer
    /// could not be created (sensitive values redacted).
    pub fn new(opts: KafkaSinkOptions) -> Result<Self, KafkaError> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        opts.validate()?;
        let opts = Arc::new(opts);
        let producers = Producers::new(opts.clone())?;
        let name = opts.topic.clone().unwrap_or_else(|| "-".into());
        let metrics = SinkMetrics {
            sent: metrics::counter!(telemetry::SINK_SENT, "topic" => name.clone()),
            rejected: metrics::counter!(telemetry::SINK_FAILED, "topic" => name.clone()),
            unavailable: metrics::counter!(telemetry::SINK_UNAVAILABLE, "topic" => name),
        };
        Ok(KafkaSink {
            producers,
            opts,
            metrics,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            fatal_log: LogThrottle::new(Duration::from_secs(30)),
        })
    }

    /// Produces one record and waits for the broker's acknowledgement.
    ///
    /// # Errors
    /// [`KafkaError::Unavailable`] when Kafka cannot take it now (sending it again later may
    /// succeed), [`KafkaError::Broker`] when it is refused, [`KafkaError::Config`] when no
    /// topic is known.
    pub async fn send(&self, payload: &[u8], record: &KafkaRecord) -> Result<Delivered, KafkaError> {
        let topic = record
            .topic
            .as_deref()
            .or(self.opts.topic.as_deref())
            .ok_or_else(no_topic)?;
        let producer = self.producer();
        let round = producer.context().rounds.start();
        let r = build(
            topic,
            payload,
            record.key.as_deref(),
            &record.headers_iter(),
            record.partition,
            record.timestamp,
            round.opaque(0),
        );
        let code = match self.enqueue(&producer, &round, r).await {
            Ok(()) => round.round.reports().await.pop().map(|(_, code)| code),
            Err(code) => Some(code),
        };
        let delivered = round.round.first();
        drop(round);
        let result = match (code, delivered) {
            (None, Some(d)) => {
                self.metrics.sent.increment(1);
                self.producers.delivered();
                Ok(d)
            }
            (code, _) => {
                let code = code.unwrap_or(RDKafkaErrorCode::Fail);
                self.count_failed(&producer, code, 1);
                Err(self.error(code, RdKafkaError::MessageProduction(code).to_string()))
            }
        };
        release(producer);
        result
    }

    /// Produces every message of `messages` (its data as the record, see [`KafkaRecord`])
    /// and waits for every delivery report.
    ///
    /// - Records Kafka refuses ([`ErrorClass::Rejected`]: too large, invalid, an invalid topic,
    ///   a partition that does not exist) are marked failed with [`Message::fail`]: the
    ///   pipeline dead-letters or fails them alone; the others succeed.
    /// - When Kafka cannot take records now ([`ErrorClass::Unavailable`]; also a fatal
    ///   producer or authorization error, which no record is to blame for), this returns
    ///   [`KafkaError::Unavailable`]: return it from the handler (`?`) and the pipeline keeps
    ///   the batch and calls the handler again after a backoff. Messages delivered before
    ///   the error are remembered on the messages and not sent again by this sink.
    ///
    /// # Errors
    /// [`KafkaError::Unavailable`], as above.
    pub async fn send_batch<T: AsRecord + Sync>(&self, messages: &mut [Message<T>]) -> Result<BatchReport, KafkaError> {
        self.send_views(messages, |m| View::of(m.data())).await
    }

    /// [`send_batch`](Self::send_batch) for messages whose data is not a record: `payload`
    /// makes each record's payload from its message (encoding it, or taking bytes a processor
    /// put on it as metadata); key and headers come from a [`KafkaRecord`] on the message.
    ///
    /// ```no_run
    /// use std::borrow::Cow;
    /// use ferroway::pipeline::Message;
    /// use ferroway_kafka::{KafkaError, KafkaSink};
    ///
    /// struct Order { id: u64, cents: u64 }
    ///
    /// async fn forward(sink: &KafkaSink, batch: &mut [Message<Order>]) -> Result<(), KafkaError> {
    ///     sink.send_batch_with(batch, |m| {
    ///         let o = m.data();
    ///         Cow::Owned(format!(r#"{{"id":{},"cents":{}}}"#, o.id, o.cents).into_bytes())
    ///     })
    ///     .await?;
    ///     Ok(())
    /// }
    /// ```
    ///
    /// # Errors
    /// [`KafkaError::Unavailable`], as for `send_batch`.
    pub async fn send_batch_with<T, F>(
        &self,
        messages: &mut [Message<T>],
        payload: F,
    ) -> Result<BatchReport, KafkaError>
    where
        T: Sync,
        F: for<'m> Fn(&'m Message<T>) -> Cow<'m, [u8]> + Sync,
    {
        self.send_views(messages, |m| View::payload(payload(m))).await
    }

    async fn send_views<T, F>(&self, messages: &mut [Message<T>], view: F) -> Result<BatchReport, KafkaError>
    where
        T: Sync,
        F: for<'m> Fn(&'m Message<T>) -> View<'m> + Sync,
    {
        let todo: Vec<usize> = (0..messages.len())
            .filter(|&i| messages[i].metadata::<SentBy>().is_none_or(|s| s.0 != self.id))
            .collect();
        let producer = self.producer();
        let failures = self.send_round(&producer, messages, &todo, &view).await;
        let mut report = BatchReport {
            sent: messages.len() - failures.len(),
            failed: 0,
        };
        let (rejected, undelivered): (Vec<Failure>, Vec<Failure>) = failures
            .into_iter()
            .partition(|(_, code)| classify_code(*code) == ErrorClass::Rejected);
        if let Some(&(_, code)) = undelivered.first() {
            // What this attempt delivered must not go again when the pipeline retries.
            let mut missing = rejected.iter().chain(&undelivered).map(|(i, _)| *i).collect::<Vec<_>>();
            missing.sort_unstable();
            for &i in &todo {
                if missing.binary_search(&i).is_err() {
                    messages[i].put_metadata(SentBy(self.id));
                }
            }
            self.metrics.sent.increment((todo.len() - missing.len()) as u64);
            self.count_failed(&producer, code, undelivered.len());
            release(producer);
            let message = format!(
                "{} of {} records not delivered: {}",
                undelivered.len(),
                messages.len(),
                RdKafkaError::MessageProduction(code)
            );
            return Err(self.error(code, message));
        }
        release(producer);
        self.producers.delivered();
        self.metrics.sent.increment((todo.len() - rejected.len()) as u64);
        if !rejected.is_empty() {
            self.metrics.rejected.increment(rejected.len() as u64);
            report.failed = rejected.len();
            for (i, code) in rejected {
                let e = KafkaError::from_code(
                    "produce",
                    Some(code),
                    ErrorClass::Rejected,
                    RdKafkaError::MessageProduction(code).to_string(),
                    &self.opts.connection.bootstrap_servers,
                );
                messages[i].fail(format!("Kafka refused the record: {e}"));
            }
        }
        Ok(report)
    }

    /// Waits until every record handed to librdkafka is delivered or failed, at most
    /// `timeout`.
    ///
    /// # Errors
    /// A timeout ([`KafkaError::Unavailable`]).
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        let producer = self.producer();
        let r = producer
            .flush(timeout)
            .map_err(|e| KafkaError::broker("flush", &e, &self.opts.connection.bootstrap_servers));
        release(producer);
        r
    }

    fn producer(&self) -> Arc<Producer> {
        self.producers.get()
    }

    /// The error for records not delivered because of `code`: [`KafkaError::Unavailable`]
    /// unless the record itself was refused.
    fn error(&self, code: RDKafkaErrorCode, message: String) -> KafkaError {
        let class = match classify_code(code) {
            ErrorClass::Rejected => ErrorClass::Rejected,
            _ => ErrorClass::Unavailable,
        };
        KafkaError::from_code(
            "produce",
            Some(code),
            class,
            message,
            &self.opts.connection.bootstrap_servers,
        )
    }

    fn count_failed(&self, producer: &Arc<Producer>, code: RDKafkaErrorCode, n: usize) {
        if classify_code(code) == ErrorClass::Rejected {
            self.metrics.rejected.increment(n as u64);
            return;
        }
        self.metrics.unavailable.increment(n as u64);
        let replaced = self.producers.recover(producer, code);
        if !replaced
            && classify_code(code) == ErrorClass::Fatal
            && let Some(suppressed) = self.fatal_log.allow()
        {
            error!(error = %RdKafkaError::MessageProduction(code), records = n, suppressed,
                "Kafka refuses this producer's records until this is fixed (credentials, ACLs, broker \
                 version); the messages are kept and sent again");
        }
    }

    /// One attempt at every message of `idx`: enqueue all, then await every report.
    ///
    /// Consecutive records for one topic without headers, timestamp or explicit partition
    /// are handed over as a batch; the others one at a time. Either way they are enqueued in
    /// order.
    async fn send_round<T, F>(
        &self,
        producer: &Producer,
        messages: &[Message<T>],
        idx: &[usize],
        view: &F,
    ) -> Vec<Failure>
    where
        T: Sync,
        F: for<'m> Fn(&'m Message<T>) -> View<'m> + Sync,
    {
        let mut failures = Vec::new();
        for chunk in idx.chunks(MAX_ROUND) {
            // Made up front: a batch borrows them until librdkafka has copied them.
            let views: Vec<View<'_>> = chunk.iter().map(|&i| view(&messages[i])).collect();
            let round = producer.context().rounds.start();
            let mut batch: Vec<BatchRecord<'_>> = Vec::new();
            let mut batch_topic: Option<&str> = None;
            for (k, &i) in chunk.iter().enumerate() {
                let Target {
                    topic,
                    key,
                    headers,
                    partition,
                    timestamp,
                } = Target::of(&messages[i], &views[k]);
                let Some(topic) = topic.or(self.opts.topic.as_deref()) else {
                    // Validation makes this impossible for the sink's own messages without a
                    // record; a record naming no topic is the message's fault.
                    failures.push((i, RDKafkaErrorCode::InvalidTopic));
                    continue;
                };
                let batchable = headers.is_empty() && timestamp.is_none() && partition.is_none();
                if batch_topic.is_some_and(|t| !batchable || t != topic)
                    && let Some(t) = batch_topic.take()
                {
                    self.enqueue_batch(producer, &round, t, std::mem::take(&mut batch), &mut failures)
                        .await;
                }
                if batchable {
                    batch_topic = Some(topic);
                    batch.push(BatchRecord {
                        index: i,
                        payload: &views[k].payload,
                        key,
                        opaque: round.opaque(k),
                    });
                    continue;
                }
                let r = build(
                    topic,
                    &views[k].payload,
                    key,
                    &headers,
                    partition,
                    timestamp,
                    round.opaque(k),
                );
                if let Err(code) = self.enqueue(producer, &round, r).await {
                    failures.push((i, code));
                }
            }
            if let Some(t) = batch_topic {
                self.enqueue_batch(producer, &round, t, batch, &mut failures).await;
            }
            failures.extend(round.round.reports().await.into_iter().map(|(k, e)| (chunk[k], e)));
        }
        failures
    }

    /// Hands records for `topic` to librdkafka as one batch, waiting while its queue is full
    /// (at most the delivery timeout); records it refuses fail.
    async fn enqueue_batch(
        &self,
        producer: &Producer,
        round: &RoundGuard<'_>,
        topic: &str,
        mut records: Vec<BatchRecord<'_>>,
        failures: &mut Vec<Failure>,
    ) {
        let Some(handle) = TopicHandle::new(producer, topic) else {
            failures.extend(records.iter().map(|r| (r.index, RDKafkaErrorCode::InvalidTopic)));
            return;
        };
        let mut full_since: Option<Instant> = None;
        while !records.is_empty() {
            round.round.sending(records.len());
            let refused = native::produce_batch(&handle, &records);
            let mut full = Vec::new();
            for (pos, code) in refused {
                round.round.not_sent();
                if code == RDKafkaErrorCode::QueueFull {
                    full.push(records[pos]);
                } else {
                    failures.push((records[pos].index, code));
                }
            }
            records = full;
            if !records.is_empty() {
                if self.full_too_long(&mut full_since) {
                    failures.extend(records.iter().map(|r| (r.index, RDKafkaErrorCode::QueueFull)));
                    return;
                }
                // Reports free the queue; the polling thread serves them meanwhile.
                tokio::time::sleep(QUEUE_FULL_WAIT).await;
            }
        }
    }

    /// Hands one record to librdkafka, waiting while its queue is full (at most the delivery
    /// timeout).
    async fn enqueue(
        &self,
        producer: &Producer,
        round: &RoundGuard<'_>,
        mut r: Record<'_>,
    ) -> Result<(), RDKafkaErrorCode> {
        round.round.sending(1);
        let mut full_since: Option<Instant> = None;
        loop {
            match producer.send(r) {
                Ok(()) => return Ok(()),
                Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if !self.full_too_long(&mut full_since) =>
                {
                    // Reports free the queue; the polling thread serves them meanwhile.
                    r = back;
                    tokio::time::sleep(QUEUE_FULL_WAIT).await;
                }
                Err((e, _)) => {
                    round.round.not_sent();
                    return Err(e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail));
                }
            }
        }
    }

    /// True once librdkafka's queue has been full for the delivery timeout: by then what
    /// fills it has timed out, so Kafka is not taking records.
    fn full_too_long(&self, since: &mut Option<Instant>) -> bool {
        since.get_or_insert_with(Instant::now).elapsed() >= self.opts.delivery_timeout
    }
}

/// How long a send waits before trying again when librdkafka's queue is full.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(1);

type Record<'a> = BaseRecord<'a, [u8], [u8], usize>;

impl KafkaRecord {
    fn headers_iter(&self) -> Vec<(&str, &[u8])> {
        self.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect()
    }
}

fn no_topic() -> KafkaError {
    KafkaError::Config(crate::ConfigError::new(
        "topic",
        "the message names no topic and the sink has no default topic",
    ))
}

fn build<'a>(
    topic: &'a str,
    payload: &'a [u8],
    key: Option<&'a [u8]>,
    headers: &[(&str, &[u8])],
    partition: Option<i32>,
    timestamp: Option<i64>,
    opaque: usize,
) -> Record<'a> {
    let mut r = BaseRecord::with_opaque_to(topic, opaque).payload(payload);
    if let Some(k) = key {
        r = r.key(k);
    }
    if !headers.is_empty() {
        let mut h = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in headers {
            h = h.insert(Header {
                key: k,
                value: Some(*v),
            });
        }
        r = r.headers(h);
    }
    if let Some(p) = partition {
        r = r.partition(p);
    }
    if let Some(t) = timestamp {
        r = r.timestamp(t);
    }
    r
}
