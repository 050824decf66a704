//! The sink: produces messages and reports success only once the broker has them.

mod dead_letter;
mod delivery;
mod native;

use std::sync::Arc;
use std::time::Duration;

use ferroway::pipeline::Message;
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _, ThreadedProducer};
use tracing::debug;

pub use self::dead_letter::dead_letter_headers;
use self::delivery::{MAX_ROUND, RoundGuard, SinkContext};
use self::native::{BatchRecord, TopicHandle};

use crate::error::{ErrorClass, KafkaError};
use crate::metadata::KafkaMetadata;
use crate::options::KafkaSinkOptions;
use crate::telemetry;

/// Where and how to produce one message, put on it with
/// [`put_metadata`](Message::put_metadata). Every field is optional: without a topic the
/// sink's default topic is used; without a partition the partitioner picks one from the key.
///
/// A message without a `KafkaRecord` that carries [`KafkaMetadata`] (it came from a
/// [`KafkaSource`](crate::KafkaSource)) is produced with the same key and headers.
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
    /// Messages the broker acknowledged.
    pub sent: usize,
    /// Messages marked failed (fatal error, or retries exhausted).
    pub failed: usize,
    /// Sends repeated after a retryable error.
    pub retried: usize,
}

struct SinkMetrics {
    sent: metrics::Counter,
    failed_fatal: metrics::Counter,
    failed_retryable: metrics::Counter,
    retries: metrics::Counter,
}

/// A Kafka producer for pipelines: use [`send_batch`](Self::send_batch) from a batch handler
/// so messages are acknowledged upstream only after the broker confirmed them, or give it to
/// [`PipelineBuilder::dead_letter`](ferroway::pipeline::PipelineBuilder::dead_letter) as a
/// dead-letter topic.
///
/// Idempotent by default (`enable.idempotence=true`, `acks=all`): librdkafka's own retries
/// never duplicate or reorder records. A delivery that still fails with a
/// [retryable](crate::ErrorClass::Retryable) error is sent again with the configured backoff
/// (a resend may duplicate a record the broker did get: at-least-once); a
/// [fatal](crate::ErrorClass::Fatal) one fails the message at once.
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
///         // Marks undeliverable messages failed; the others are acknowledged after this.
///         self.0.send_batch(batch).await;
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
    producer: ThreadedProducer<SinkContext>,
    opts: Arc<KafkaSinkOptions>,
    metrics: SinkMetrics,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("options", &self.opts)
            .finish_non_exhaustive()
    }
}

type Failure = (usize, KafkaError);

impl KafkaSink {
    /// Validates `opts` and creates the producer (connections are made lazily).
    ///
    /// # Errors
    /// [`KafkaError::Config`] naming an invalid option, or [`KafkaError::Client`] if
    /// librdkafka rejects the configuration (sensitive values redacted).
    pub fn new(opts: KafkaSinkOptions) -> Result<Self, KafkaError> {
        opts.validate()?;
        let producer: ThreadedProducer<SinkContext> = opts
            .client_config()
            .create_with_context(SinkContext::default())
            .map_err(KafkaError::client)?;
        let name = opts.topic.clone().unwrap_or_else(|| "-".into());
        let metrics = SinkMetrics {
            sent: metrics::counter!(telemetry::SINK_SENT, "topic" => name.clone()),
            failed_fatal: metrics::counter!(telemetry::SINK_FAILED, "topic" => name.clone(), "class" => "fatal"),
            failed_retryable: metrics::counter!(telemetry::SINK_FAILED, "topic" => name.clone(), "class" => "retryable"),
            retries: metrics::counter!(telemetry::SINK_RETRIES, "topic" => name),
        };
        Ok(KafkaSink {
            producer,
            opts: Arc::new(opts),
            metrics,
        })
    }

    /// Produces one record and waits for the broker's acknowledgement, retrying retryable
    /// failures as configured.
    ///
    /// # Errors
    /// The last error, classified retryable or fatal.
    pub async fn send(&self, payload: &[u8], record: &KafkaRecord) -> Result<Delivered, KafkaError> {
        let mut delays = self.opts.retry.delays();
        let mut attempt = 0;
        loop {
            let topic = record
                .topic
                .as_deref()
                .or(self.opts.topic.as_deref())
                .ok_or_else(no_topic)?;
            let round = self.producer.context().rounds.start();
            let r = build(
                topic,
                payload,
                record.key.as_deref(),
                &record.headers_iter(),
                record.partition,
                record.timestamp,
                round.opaque(0),
            );
            let result = match self.enqueue(&round, r).await {
                Ok(()) => match round.round.reports().await.pop() {
                    Some((_, e)) => Err(e),
                    None => round.round.first().ok_or_else(|| KafkaError::Broker {
                        operation: "produce",
                        class: ErrorClass::Retryable,
                        code: None,
                        message: "no delivery report".into(),
                    }),
                },
                Err(e) => Err(e),
            };
            drop(round);
            match result {
                Ok(d) => {
                    self.metrics.sent.increment(1);
                    return Ok(d);
                }
                Err(e) if e.is_retryable() && attempt < self.opts.max_retries => {
                    let Some(d) = delays.next() else {
                        self.metrics.failed_retryable.increment(1);
                        return Err(e);
                    };
                    attempt += 1;
                    self.metrics.retries.increment(1);
                    debug!(error = %e, attempt, "retrying a Kafka produce");
                    tokio::time::sleep(d).await;
                }
                Err(e) => {
                    self.count_failed(&e);
                    return Err(e);
                }
            }
        }
    }

    /// Produces every message of `messages` (its data as the payload, with its
    /// [`KafkaRecord`] or source [`KafkaMetadata`]) and waits for every delivery report.
    /// Messages that could not be delivered — fatal error, or retryable errors beyond the retry
    /// budget — are marked failed with [`Message::fail`], so the pipeline acknowledges them as
    /// failed (or dead-letters them) while the others succeed.
    pub async fn send_batch<T: AsRef<[u8]> + Sync>(&self, messages: &mut [Message<T>]) -> BatchReport {
        let mut report = BatchReport::default();
        let mut todo: Vec<usize> = (0..messages.len()).collect();
        let mut delays = self.opts.retry.delays();
        let mut attempt = 0;
        let mut final_failures: Vec<Failure> = Vec::new();
        while !todo.is_empty() {
            let failures = self.send_round(messages, &todo).await;
            report.sent += todo.len() - failures.len();
            let (retry, fatal): (Vec<Failure>, Vec<Failure>) =
                failures.into_iter().partition(|(_, e)| e.is_retryable());
            final_failures.extend(fatal);
            if retry.is_empty() {
                break;
            }
            let delay = if attempt < self.opts.max_retries {
                delays.next()
            } else {
                None
            };
            let Some(delay) = delay else {
                final_failures.extend(retry);
                break;
            };
            attempt += 1;
            report.retried += retry.len();
            self.metrics.retries.increment(retry.len() as u64);
            debug!(
                n = retry.len(),
                attempt, "retrying Kafka produces after a retryable error"
            );
            tokio::time::sleep(delay).await;
            todo = retry.into_iter().map(|(i, _)| i).collect();
        }
        self.metrics.sent.increment(report.sent as u64);
        report.failed = final_failures.len();
        for (i, e) in final_failures {
            self.count_failed(&e);
            messages[i].fail(format!("Kafka delivery failed: {e}"));
        }
        report
    }

    /// Waits until every record handed to librdkafka is delivered or failed, at most
    /// `timeout`.
    ///
    /// # Errors
    /// A timeout, as a retryable error.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer
            .flush(timeout)
            .map_err(|e| KafkaError::broker("flush", &e))
    }

    /// The options.
    pub fn options(&self) -> &KafkaSinkOptions {
        &self.opts
    }

    fn count_failed(&self, e: &KafkaError) {
        match e.class() {
            ErrorClass::Fatal => self.metrics.failed_fatal.increment(1),
            ErrorClass::Retryable => self.metrics.failed_retryable.increment(1),
        }
    }

    /// One attempt at every message of `idx`: enqueue all, then await every report.
    ///
    /// Consecutive records for one topic without headers, timestamp or explicit partition
    /// are handed over as a batch; the others one at a time. Either way they are enqueued in
    /// order.
    async fn send_round<T: AsRef<[u8]> + Sync>(&self, messages: &[Message<T>], idx: &[usize]) -> Vec<Failure> {
        let mut failures = Vec::new();
        for chunk in idx.chunks(MAX_ROUND) {
            let round = self.producer.context().rounds.start();
            let mut batch: Vec<BatchRecord<'_>> = Vec::new();
            let mut batch_topic: Option<&str> = None;
            for (k, &i) in chunk.iter().enumerate() {
                let m = &messages[i];
                let record = m.metadata::<KafkaRecord>();
                let source = m.metadata::<KafkaMetadata>();
                let Some(topic) = record.and_then(|r| r.topic.as_deref()).or(self.opts.topic.as_deref()) else {
                    failures.push((i, no_topic()));
                    continue;
                };
                let (key, headers) = match (record, source) {
                    (Some(r), _) => (r.key.as_deref(), r.headers_iter()),
                    (None, Some(s)) => (
                        s.key.as_deref(),
                        s.headers
                            .iter()
                            .filter_map(|(k, v)| Some((k.as_str(), v.as_deref()?)))
                            .collect(),
                    ),
                    (None, None) => (None, Vec::new()),
                };
                let partition = record.and_then(|r| r.partition);
                let timestamp = record.and_then(|r| r.timestamp);
                let batchable = headers.is_empty() && timestamp.is_none() && partition.is_none();
                if batch_topic.is_some_and(|t| !batchable || t != topic)
                    && let Some(t) = batch_topic.take()
                {
                    self.enqueue_batch(&round, t, std::mem::take(&mut batch), &mut failures)
                        .await;
                }
                if batchable {
                    batch_topic = Some(topic);
                    batch.push(BatchRecord {
                        index: i,
                        payload: m.data().as_ref(),
                        key,
                        opaque: round.opaque(k),
                    });
                    continue;
                }
                let r = build(
                    topic,
                    m.data().as_ref(),
                    key,
                    &headers,
                    partition,
                    timestamp,
                    round.opaque(k),
                );
                if let Err(e) = self.enqueue(&round, r).await {
                    failures.push((i, e));
                }
            }
            if let Some(t) = batch_topic {
                self.enqueue_batch(&round, t, batch, &mut failures).await;
            }
            failures.extend(round.round.reports().await.into_iter().map(|(k, e)| (chunk[k], e)));
        }
        failures
    }

    /// Hands records for `topic` to librdkafka as one batch, waiting while its queue is full;
    /// records it refuses otherwise fail.
    async fn enqueue_batch(
        &self,
        round: &RoundGuard<'_>,
        topic: &str,
        mut records: Vec<BatchRecord<'_>>,
        failures: &mut Vec<Failure>,
    ) {
        let Some(handle) = TopicHandle::new(&self.producer, topic) else {
            let e = KafkaError::Config(crate::ConfigError::new(
                "topic",
                format!("librdkafka refused the topic name {topic:?}"),
            ));
            failures.extend(records.iter().map(|r| (r.index, e.clone())));
            return;
        };
        while !records.is_empty() {
            round.round.sending(records.len());
            let refused = native::produce_batch(&handle, &records);
            let mut full = Vec::new();
            for (pos, code) in refused {
                round.round.not_sent();
                if code == RDKafkaErrorCode::QueueFull {
                    full.push(records[pos]);
                } else {
                    let e = RdKafkaError::MessageProduction(code);
                    failures.push((records[pos].index, KafkaError::broker("produce", &e)));
                }
            }
            records = full;
            if !records.is_empty() {
                // Reports free the queue; the polling thread serves them meanwhile.
                tokio::time::sleep(QUEUE_FULL_WAIT).await;
            }
        }
    }

    /// Hands one record to librdkafka, waiting while its queue is full.
    async fn enqueue(&self, round: &RoundGuard<'_>, mut r: Record<'_>) -> Result<(), KafkaError> {
        round.round.sending(1);
        loop {
            match self.producer.send(r) {
                Ok(()) => return Ok(()),
                Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // Reports free the queue; the polling thread serves them meanwhile.
                    r = back;
                    tokio::time::sleep(QUEUE_FULL_WAIT).await;
                }
                Err((e, _)) => {
                    round.round.not_sent();
                    return Err(KafkaError::broker("produce", &e));
                }
            }
        }
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
