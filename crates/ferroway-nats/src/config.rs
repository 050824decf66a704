//! The sources and the sink as configuration-file components (`type = "nats"`), feature
//! `config`.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::stream::{RetentionPolicy, StorageType};
use ferroway::BoxError;
use ferroway::config::{BuildContext, SinkConfig, SourceConfig};
use ferroway::connector::{BoxSource, Record, Sink, Source};
use ferroway::pipeline::BoxFuture;
use serde::{Deserialize, Deserializer};

use crate::jetstream::{ConsumerConfig, StreamConfig};
use crate::options::{JetStreamOptions, NatsUrl, OnFailed, SinkOptions, SubscribeOptions};
use crate::{JetStreamSource, NatsSink, SubscriptionSource};

impl<'de> Deserialize<'de> for NatsUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(NatsUrl::new)
    }
}

/// `type = "nats"` as a source: a JetStream durable pull consumer (`stream` and `consumer`;
/// at-least-once) or core subscriptions (`subjects`; at-most-once). Each message a record
/// (payload, headers, subject as key). See [`JetStreamOptions`] and [`SubscribeOptions`].
///
/// ```
/// use ferroway_nats::NatsSourceConfig;
/// let c: NatsSourceConfig = serde_json::from_str(
///     r#"{"url": "nats://app:hunter2@127.0.0.1:4222", "stream": "ORDERS", "consumer": "billing", "ack_wait": "10s"}"#,
/// ).unwrap();
/// assert_eq!(c.ack_wait.as_secs(), 10);
/// assert!(!format!("{c:?}").contains("hunter2"));
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSourceConfig {
    /// `nats://[user:password@]host:port` (several separated by commas).
    pub url: NatsUrl,
    /// JetStream: the stream (with `consumer`).
    #[serde(default)]
    pub stream: Option<String>,
    /// JetStream: the durable pull consumer (created if missing).
    #[serde(default)]
    pub consumer: Option<String>,
    /// JetStream: create or update the stream: `{ subjects = ["orders.>"], storage = "file",
    /// retention = "limits", max_age = "7d", max_messages = -1, max_bytes = -1 }`.
    #[serde(default)]
    pub create_stream: Option<CreateStream>,
    /// JetStream: how long the server waits for an ack before redelivering (default `"30s"`).
    #[serde(default = "default_ack_wait", with = "ferroway::config::duration")]
    pub ack_wait: Duration,
    /// JetStream: deliveries per message, the first included (default 5; -1: unlimited).
    #[serde(default = "default_max_deliver")]
    pub max_deliver: i64,
    /// JetStream: only messages on this subject.
    #[serde(default)]
    pub filter_subject: Option<String>,
    /// JetStream: where a new consumer starts: `"all"` (the default), `"new"` or `"last"`.
    #[serde(default)]
    pub deliver_policy: Deliver,
    /// JetStream: a failed message: `"nak"` (the default) or `"term"`.
    #[serde(default)]
    pub on_failed: Failed,
    /// JetStream: wait this long before a nak'ed message is redelivered (default: at once).
    #[serde(default, with = "ferroway::config::duration::option")]
    pub nak_delay: Option<Duration>,
    /// JetStream: the most messages one pull asks for (default 1000).
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Core: the subjects (wildcards allowed).
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Core: the queue group.
    #[serde(default)]
    pub queue_group: Option<String>,
    /// Core: messages buffered per subscription before new ones are dropped (default 10000).
    #[serde(default = "default_buffer")]
    pub buffer: usize,
    /// Fail if no server answered within this long of the start (default `"60s"`).
    #[serde(default = "default_connect_timeout", with = "ferroway::config::duration")]
    pub connect_timeout: Duration,
}

/// `deliver_policy` values.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Deliver {
    /// Every message of the stream.
    #[default]
    All,
    /// Messages stored from now on.
    New,
    /// The last message, then new ones.
    Last,
}

/// `on_failed` values.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Failed {
    /// `-NAK`: redelivered.
    #[default]
    Nak,
    /// `+TERM`: never redelivered.
    Term,
}

/// The `create_stream` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateStream {
    /// The subjects the stream stores.
    pub subjects: Vec<String>,
    /// `"file"` (the default) or `"memory"`.
    #[serde(default)]
    pub storage: Storage,
    /// `"limits"` (the default), `"interest"` or `"workqueue"`.
    #[serde(default)]
    pub retention: Retention,
    /// Drop messages older than this (default: keep).
    #[serde(default, with = "ferroway::config::duration::option")]
    pub max_age: Option<Duration>,
    /// Keep at most this many messages (default -1: no limit).
    #[serde(default = "unlimited")]
    pub max_messages: i64,
    /// Keep at most this many bytes (default -1: no limit).
    #[serde(default = "unlimited")]
    pub max_bytes: i64,
}

/// `storage` values.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Storage {
    /// On disk.
    #[default]
    File,
    /// In memory.
    Memory,
}

/// `retention` values.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Retention {
    /// Kept up to the limits.
    #[default]
    Limits,
    /// Kept while a consumer is interested.
    Interest,
    /// Removed once acknowledged.
    Workqueue,
}

impl NatsSourceConfig {
    /// The JetStream options, or `None` for core subscriptions.
    ///
    /// # Errors
    /// Options that do not fit together, named.
    pub fn jetstream(&self) -> Result<Option<JetStreamOptions>, BoxError> {
        match (&self.stream, &self.consumer, self.subjects.is_empty()) {
            (Some(_), Some(_), false) | (Some(_), None, false) | (None, Some(_), false) => {
                Err("set `stream` and `consumer` (JetStream) or `subjects` (core NATS), not both".into())
            }
            (None, None, true) => Err("set `stream` and `consumer` (JetStream) or `subjects` (core NATS)".into()),
            (Some(_), None, true) => Err("`consumer`: JetStream needs the durable consumer's name".into()),
            (None, Some(_), true) => Err("`stream`: JetStream needs the stream's name".into()),
            (None, None, false) => Ok(None),
            (Some(stream), Some(consumer), true) => {
                let mut o = JetStreamOptions::new(self.url.clone(), stream, consumer)
                    .consumer(ConsumerConfig {
                        ack_wait: self.ack_wait,
                        max_deliver: self.max_deliver,
                        filter_subject: self.filter_subject.clone().unwrap_or_default(),
                        deliver_policy: match self.deliver_policy {
                            Deliver::All => DeliverPolicy::All,
                            Deliver::New => DeliverPolicy::New,
                            Deliver::Last => DeliverPolicy::Last,
                        },
                        ..Default::default()
                    })
                    .on_failed(match self.on_failed {
                        Failed::Nak => OnFailed::Nak { delay: self.nak_delay },
                        Failed::Term => OnFailed::Term,
                    })
                    .max_batch(self.max_batch)
                    .connect_timeout(self.connect_timeout);
                if let Some(c) = &self.create_stream {
                    o = o.create_stream(StreamConfig {
                        subjects: c.subjects.clone(),
                        storage: match c.storage {
                            Storage::File => StorageType::File,
                            Storage::Memory => StorageType::Memory,
                        },
                        retention: match c.retention {
                            Retention::Limits => RetentionPolicy::Limits,
                            Retention::Interest => RetentionPolicy::Interest,
                            Retention::Workqueue => RetentionPolicy::WorkQueue,
                        },
                        max_age: c.max_age.unwrap_or_default(),
                        max_messages: c.max_messages,
                        max_bytes: c.max_bytes,
                        ..Default::default()
                    });
                }
                o.validate()?;
                Ok(Some(o))
            }
        }
    }
}

impl SourceConfig for NatsSourceConfig {
    const TYPE: &'static str = "nats";
    const SUMMARY: &'static str =
        "NATS: a JetStream durable pull consumer (acked once processed) or core subscriptions (at-most-once)";
    const EXAMPLE: &'static str = r#"url = "nats://127.0.0.1:4222"      # with credentials: "nats://user:PASSWORD@host:4222"
# JetStream (at-least-once):
stream = "ORDERS"
consumer = "ferroway"              # durable pull consumer, created if missing
# create_stream = { subjects = ["orders.>"], storage = "file", retention = "limits" }
ack_wait = "30s"                   # redelivered if not acked within this (slow messages get +WPI)
max_deliver = 5                    # deliveries per message; the last failure goes to the dead-letter route
# filter_subject = "orders.eu.>"
deliver_policy = "all"             # or "new", "last"
on_failed = "nak"                  # or "term"
# nak_delay = "5s"                 # wait before a nak'ed message comes back
max_batch = 1000                   # the most messages one pull asks for
# Core NATS (at-most-once) instead of stream/consumer:
# subjects = ["sensors.>"]
# queue_group = "ingest"
buffer = 10000                     # core: buffered per subscription; beyond, new messages are dropped
connect_timeout = "60s"            # fail if no server answered within this"#;

    fn build(self, _: &BuildContext) -> Result<BoxSource<Record>, BoxError> {
        match self.jetstream()? {
            Some(o) => Ok(BoxSource::new(JetStreamSource::factory(o)?.map(Record::from))),
            None => {
                let mut o = SubscribeOptions::new(self.url.clone(), self.subjects.clone())
                    .buffer(self.buffer)
                    .connect_timeout(self.connect_timeout);
                if let Some(g) = &self.queue_group {
                    o = o.queue_group(g);
                }
                Ok(BoxSource::new(SubscriptionSource::factory(o)?.map(Record::from)))
            }
        }
    }
}

/// `type = "nats"` as a sink: records published to a subject, through JetStream (publish
/// acks) or core NATS (flushed). See [`SinkOptions`].
///
/// ```
/// use ferroway_nats::NatsSinkConfig;
/// let c: NatsSinkConfig = serde_json::from_str(r#"{"url": "nats://127.0.0.1:4222", "subject": "out", "jetstream": true}"#).unwrap();
/// assert!(c.options().is_ok());
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSinkConfig {
    /// `nats://[user:password@]host:port`.
    pub url: NatsUrl,
    /// The subject.
    pub subject: String,
    /// Publish through JetStream, acked once stored (default false: core NATS).
    #[serde(default)]
    pub jetstream: bool,
    /// Append the record's key to the subject (`subject.key`).
    #[serde(default)]
    pub key_as_subject_suffix: bool,
    /// Send the record's key as `Nats-Msg-Id` (JetStream deduplication).
    #[serde(default)]
    pub key_as_message_id: bool,
    /// How long to wait for publish acks (default `"10s"`).
    #[serde(default = "default_ack_timeout", with = "ferroway::config::duration")]
    pub ack_timeout: Duration,
}

impl NatsSinkConfig {
    /// The options, validated.
    ///
    /// # Errors
    /// The first invalid option, named.
    pub fn options(&self) -> Result<SinkOptions, BoxError> {
        let o = SinkOptions::new(self.url.clone(), &self.subject)
            .jetstream(self.jetstream)
            .key_as_subject_suffix(self.key_as_subject_suffix)
            .key_as_message_id(self.key_as_message_id)
            .ack_timeout(self.ack_timeout);
        o.validate()?;
        Ok(o)
    }
}

impl SinkConfig for NatsSinkConfig {
    const TYPE: &'static str = "nats";
    const SUMMARY: &'static str =
        "records published to a NATS subject; with JetStream, acked once a stream stored them";
    const EXAMPLE: &'static str = r#"url = "nats://127.0.0.1:4222"
subject = "events"
jetstream = false                  # true: publish acks awaited before the upstream ack
key_as_subject_suffix = false      # true: publish to "<subject>.<key>"
key_as_message_id = false          # true: the key is Nats-Msg-Id (the stream drops duplicates)
ack_timeout = "10s""#;

    fn build(self, _: &BuildContext) -> BoxFuture<'static, Result<Arc<dyn Sink<Record>>, BoxError>> {
        Box::pin(async move {
            let sink: Arc<dyn Sink<Record>> = Arc::new(NatsSink::new(self.options()?)?);
            Ok(sink)
        })
    }
}

fn default_ack_wait() -> Duration {
    Duration::from_secs(30)
}

fn default_max_deliver() -> i64 {
    5
}

fn default_max_batch() -> usize {
    1000
}

fn default_buffer() -> usize {
    10_000
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_ack_timeout() -> Duration {
    Duration::from_secs(10)
}

fn unlimited() -> i64 {
    -1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_examples_parse_to_the_defaults() {
        let c: NatsSourceConfig = toml::from_str(NatsSourceConfig::EXAMPLE).unwrap();
        let o = c.jetstream().unwrap().unwrap();
        let d = JetStreamOptions::new("nats://x", "ORDERS", "ferroway");
        assert_eq!(o.consumer.ack_wait, d.consumer.ack_wait);
        assert_eq!(o.consumer.max_deliver, d.consumer.max_deliver);
        assert_eq!(
            (o.max_batch, o.on_failed, o.connect_timeout),
            (d.max_batch, d.on_failed, d.connect_timeout)
        );
        let s: NatsSinkConfig = toml::from_str(NatsSinkConfig::EXAMPLE).unwrap();
        let o = s.options().unwrap();
        let d = SinkOptions::new("nats://x", "events");
        assert_eq!((o.jetstream, o.ack_timeout), (d.jetstream, d.ack_timeout));
    }

    #[test]
    fn a_source_is_jetstream_or_core_never_both() {
        let both: NatsSourceConfig =
            toml::from_str("url = \"nats://h\"\nstream = \"S\"\nconsumer = \"c\"\nsubjects = [\"a\"]").unwrap();
        assert!(both.jetstream().unwrap_err().to_string().contains("not both"));
        let half: NatsSourceConfig = toml::from_str("url = \"nats://h\"\nstream = \"S\"").unwrap();
        assert!(half.jetstream().unwrap_err().to_string().starts_with("`consumer`"));
        let core: NatsSourceConfig = toml::from_str("url = \"nats://h\"\nsubjects = [\"a.>\"]").unwrap();
        assert!(core.jetstream().unwrap().is_none());
        let e = toml::from_str::<NatsSourceConfig>("url = \"nats://h\"\non_failed = \"drop\"").unwrap_err();
        assert!(
            e.to_string()
                .contains("unknown variant `drop`, expected `nak` or `term`"),
            "{e}"
        );
    }
}
