//! The sink: produces messages and reports success only once the broker has them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use ferroway::BoxError;
use ferroway::pipeline::{BoxFuture, DeadLetterInfo, DeadLetterSink, Message};
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use tracing::{debug, warn};

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

struct SinkContext;

impl ClientContext for SinkContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, msg: &str) {
        crate::log_librdkafka("producer", level, fac, msg);
    }

    fn error(&self, e: RdKafkaError, reason: &str) {
        warn!(error = %e, reason, "Kafka producer error");
    }
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
    producer: FutureProducer<SinkContext>,
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
        let producer: FutureProducer<SinkContext> = opts
            .client_config()
            .create_with_context(SinkContext)
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
            let r = build(
                topic,
                payload,
                record.key.as_deref(),
                &record.headers_iter(),
                record.partition,
                record.timestamp,
            );
            let result = match self.enqueue(r).await {
                Ok(f) => settle(f).await,
                Err(e) => Err(e),
            };
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
    async fn send_round<T: AsRef<[u8]> + Sync>(&self, messages: &[Message<T>], idx: &[usize]) -> Vec<Failure> {
        let mut failures = Vec::new();
        let mut pending: VecDeque<(usize, DeliveryFuture)> = VecDeque::with_capacity(idx.len());
        for &i in idx {
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
            let mut r = build(
                topic,
                m.data().as_ref(),
                key,
                &headers,
                record.and_then(|r| r.partition),
                record.and_then(|r| r.timestamp),
            );
            loop {
                match self.producer.send_result(r) {
                    Ok(f) => {
                        pending.push_back((i, f));
                        break;
                    }
                    Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // librdkafka's queue is full: wait for the oldest report, then retry.
                        r = back;
                        match pending.pop_front() {
                            Some((j, f)) => {
                                if let Err(e) = settle(f).await {
                                    failures.push((j, e));
                                }
                            }
                            None => tokio::time::sleep(Duration::from_millis(5)).await,
                        }
                    }
                    Err((e, _)) => {
                        failures.push((i, KafkaError::broker("produce", &e)));
                        break;
                    }
                }
            }
        }
        for (i, f) in pending {
            if let Err(e) = settle(f).await {
                failures.push((i, e));
            }
        }
        failures
    }

    async fn enqueue<'a>(&self, mut r: FutureRecord<'a, [u8], [u8]>) -> Result<DeliveryFuture, KafkaError> {
        loop {
            match self.producer.send_result(r) {
                Ok(f) => return Ok(f),
                Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    r = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(KafkaError::broker("produce", &e)),
            }
        }
    }
}

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
) -> FutureRecord<'a, [u8], [u8]> {
    let mut r = FutureRecord::to(topic).payload(payload);
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

async fn settle(f: DeliveryFuture) -> Result<Delivered, KafkaError> {
    match f.await {
        Ok(Ok(d)) => Ok(Delivered {
            partition: d.partition,
            offset: d.offset,
        }),
        Ok(Err((e, _))) => Err(KafkaError::broker("produce", &e)),
        Err(_) => Err(KafkaError::Broker {
            operation: "produce",
            class: ErrorClass::Retryable,
            code: None,
            message: "the producer was dropped before the delivery report".into(),
        }),
    }
}

/// Header names the dead-letter sink adds.
pub mod dead_letter_headers {
    /// Why the message failed.
    pub const REASON: &str = "ferroway.dlq.reason";
    /// The pipeline that failed it.
    pub const PIPELINE: &str = "ferroway.dlq.pipeline";
    /// The stage that failed it (`processor` or `batch_processor`).
    pub const STAGE: &str = "ferroway.dlq.stage";
    /// The topic it was consumed from.
    pub const TOPIC: &str = "ferroway.dlq.topic";
    /// The partition it was consumed from.
    pub const PARTITION: &str = "ferroway.dlq.partition";
    /// Its offset there.
    pub const OFFSET: &str = "ferroway.dlq.offset";
}

/// A `KafkaSink` is a dead-letter sink: failed messages are produced to its default topic
/// with their original key and headers, plus the headers of [`dead_letter_headers`] (reason,
/// pipeline, stage, and where they were consumed). `send` succeeds only when the broker has
/// every one of them — only then does the source count them as done.
impl<T: AsRef<[u8]> + Send + Sync + 'static> DeadLetterSink<T> for KafkaSink {
    fn send(&self, mut messages: Vec<Message<T>>) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move {
            use dead_letter_headers as h;
            for m in &mut messages {
                let mut rec = match (m.metadata::<KafkaRecord>(), m.metadata::<KafkaMetadata>()) {
                    (Some(r), _) => r.clone(),
                    (None, Some(s)) => KafkaRecord {
                        key: s.key.clone(),
                        headers: s
                            .headers
                            .iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
                            .collect(),
                        ..KafkaRecord::default()
                    },
                    (None, None) => KafkaRecord::default(),
                };
                rec.topic = None;
                rec.partition = None;
                if let Some(info) = m.metadata::<DeadLetterInfo>() {
                    rec = rec
                        .header(h::REASON, info.reason.as_bytes())
                        .header(h::PIPELINE, info.pipeline.as_bytes())
                        .header(h::STAGE, info.stage.as_bytes());
                } else if let Some(reason) = m.failure() {
                    rec = rec.header(h::REASON, reason.as_bytes());
                }
                if let Some(s) = m.metadata::<KafkaMetadata>() {
                    let (topic, partition, offset) = (s.topic.to_string(), s.partition, s.offset);
                    rec = rec
                        .header(h::TOPIC, topic)
                        .header(h::PARTITION, partition.to_string())
                        .header(h::OFFSET, offset.to_string());
                }
                m.put_metadata(rec);
            }
            let report = self.send_batch(&mut messages).await;
            if report.failed > 0 {
                return Err(format!(
                    "{} of {} dead letters could not be produced to Kafka",
                    report.failed,
                    messages.len()
                )
                .into());
            }
            Ok(())
        })
    }
}
