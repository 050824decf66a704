//! Options, in NATS' own terms, validated up front.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::stream;

use crate::error::OptionsError;

/// A NATS server URL (`nats://[user:password@]host:port`, several separated by commas). Its
/// password never appears in `Debug`, `Display`, logs or errors.
///
/// ```
/// use ferroway_nats::NatsUrl;
/// let url = NatsUrl::new("nats://app:hunter2@127.0.0.1:4222");
/// assert_eq!(url.to_string(), "nats://app:***@127.0.0.1:4222");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct NatsUrl(Arc<str>);

impl NatsUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        NatsUrl(url.into().into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        self.0
            .split(',')
            .map(ferroway::telemetry::redact_url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `text` with the URL's passwords masked.
    pub(crate) fn redact_in(&self, text: &str) -> String {
        self.0
            .split(',')
            .filter_map(ferroway::telemetry::url_password)
            .fold(text.to_owned(), |t, p| t.replace(p, "***"))
    }

    fn validate(&self) -> Result<(), OptionsError> {
        for one in self.0.split(',') {
            let one = one.trim();
            if one.is_empty() || !(one.starts_with("nats://") || one.starts_with("tls://") || !one.contains("://")) {
                return Err(OptionsError::Url {
                    url: self.redacted(),
                    reason: "each server must be nats://host:port (or tls://, or host:port)".into(),
                });
            }
        }
        Ok(())
    }
}

impl fmt::Debug for NatsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NatsUrl({:?})", self.redacted())
    }
}

impl fmt::Display for NatsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl From<&str> for NatsUrl {
    fn from(s: &str) -> Self {
        NatsUrl::new(s)
    }
}

impl From<String> for NatsUrl {
    fn from(s: String) -> Self {
        NatsUrl::new(s)
    }
}

/// What happens to a JetStream message that failed and was not dead-lettered, before its last
/// allowed delivery (on the last one it is terminated — see [`JetStreamOptions`]).
///
/// ```
/// use ferroway_nats::OnFailed;
/// assert_eq!(OnFailed::default(), OnFailed::Nak { delay: None });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailed {
    /// `-NAK`: redelivered (after `delay`, if set), up to the consumer's `max_deliver`. The
    /// default.
    Nak {
        /// Wait this long before the redelivery.
        delay: Option<Duration>,
    },
    /// `+TERM`: never redelivered.
    Term,
}

impl Default for OnFailed {
    fn default() -> Self {
        OnFailed::Nak { delay: None }
    }
}

/// Options of a [`JetStreamSource`](crate::JetStreamSource): a durable pull consumer of a
/// stream.
///
/// The consumer is created if missing (or its configuration updated) with
/// [`consumer`](Self::consumer)'s settings — ack policy always explicit, the durable name
/// always the one given. The stream must exist unless [`create_stream`](Self::create_stream)
/// is set.
///
/// A failed message is nak'ed ([`OnFailed`]) and does **not** go to the pipeline's
/// dead-letter route while the consumer will deliver it again; on its last delivery
/// (`delivered == max_deliver`) a failure does go to the dead-letter route — or, without one,
/// is terminated (`+TERM`) and counted. So `max_deliver` is how many tries a message gets.
///
/// ```
/// use std::time::Duration;
/// use ferroway_nats::JetStreamOptions;
/// use ferroway_nats::jetstream::{ConsumerConfig, StreamConfig};
///
/// let opts = JetStreamOptions::new("nats://127.0.0.1:4222", "ORDERS", "billing")
///     .create_stream(StreamConfig { subjects: vec!["orders.>".into()], ..Default::default() })
///     .consumer(ConsumerConfig { ack_wait: Duration::from_secs(30), max_deliver: 5, ..Default::default() })
///     .max_batch(500);
/// assert_eq!(opts.validate(), Ok(()));
/// ```
#[derive(Debug, Clone)]
pub struct JetStreamOptions {
    pub(crate) url: NatsUrl,
    pub(crate) stream: String,
    pub(crate) durable: String,
    pub(crate) create_stream: Option<stream::Config>,
    pub(crate) consumer: pull::Config,
    pub(crate) on_failed: OnFailed,
    pub(crate) max_batch: usize,
    pub(crate) fetch_wait: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) name: String,
}

impl JetStreamOptions {
    /// Consume stream `stream` through the durable pull consumer `durable`. Defaults:
    /// consumer ack wait 30 s, max deliver 5, deliver all; failed messages nak'ed; at most
    /// 1000 messages per pull; pulls wait up to 1 s for messages; 60 s to first reach a
    /// server.
    pub fn new(url: impl Into<NatsUrl>, stream: impl Into<String>, durable: impl Into<String>) -> Self {
        JetStreamOptions {
            url: url.into(),
            stream: stream.into(),
            durable: durable.into(),
            create_stream: None,
            consumer: Self::default_consumer(),
            on_failed: OnFailed::default(),
            max_batch: 1000,
            fetch_wait: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(60),
            name: "ferroway".into(),
        }
    }

    /// The consumer settings a source uses unless told otherwise: ack wait 30 s, max deliver
    /// 5, deliver all, 20,000 acks pending at most (the server's default, 1,000, would stall
    /// pulls while a pipeline's demand holds more) — a base for [`consumer`](Self::consumer).
    ///
    /// ```
    /// use std::time::Duration;
    /// use ferroway_nats::JetStreamOptions;
    /// use ferroway_nats::jetstream::ConsumerConfig;
    /// let c = ConsumerConfig { ack_wait: Duration::from_secs(5), ..JetStreamOptions::default_consumer() };
    /// assert_eq!(c.max_deliver, 5);
    /// ```
    pub fn default_consumer() -> pull::Config {
        pull::Config {
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            max_ack_pending: 20_000,
            ..Default::default()
        }
    }

    /// Create the stream with this configuration if it is missing, or update it (its name is
    /// the one given to [`new`](Self::new)).
    pub fn create_stream(mut self, config: stream::Config) -> Self {
        self.create_stream = Some(config);
        self
    }

    /// The consumer's configuration: ack wait, max deliver, filter subject, deliver policy,
    /// max ack pending, … (`durable_name` and `ack_policy` are set by the source).
    pub fn consumer(mut self, config: pull::Config) -> Self {
        self.consumer = config;
        self
    }

    /// What a failed message gets (default: nak, redelivered at once).
    pub fn on_failed(mut self, on_failed: OnFailed) -> Self {
        self.on_failed = on_failed;
        self
    }

    /// The most messages one pull asks for (it never asks for more than the pipeline's
    /// demand).
    pub fn max_batch(mut self, n: usize) -> Self {
        self.max_batch = n;
        self
    }

    /// How long one pull waits for messages (default 1 s); also the longest a stop waits for
    /// a pull under way.
    pub fn fetch_wait(mut self, d: Duration) -> Self {
        self.fetch_wait = d;
        self
    }

    /// How long the source may take to first reach a server before the pipeline fails with
    /// an error naming the URL (default 60 s). Once reached, an outage never fails it.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// The connection name servers show (default `ferroway`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Checks every option.
    ///
    /// ```
    /// use ferroway_nats::JetStreamOptions;
    /// let e = JetStreamOptions::new("nats://h:4222", "S", "d").max_batch(0).validate().unwrap_err();
    /// assert_eq!(e.to_string(), "invalid option `max_batch`: must be at least 1");
    /// ```
    ///
    /// # Errors
    /// [`OptionsError`] naming the option.
    pub fn validate(&self) -> Result<(), OptionsError> {
        self.url.validate()?;
        let bad = |c: char| c.is_whitespace() || ".*>".contains(c);
        if self.stream.is_empty() || self.stream.contains(bad) {
            return Err(invalid("stream", "must be a name without spaces, `.`, `*` or `>`"));
        }
        if self.durable.is_empty() || self.durable.contains(bad) {
            return Err(invalid("durable", "must be a name without spaces, `.`, `*` or `>`"));
        }
        if self.max_batch == 0 {
            return Err(invalid("max_batch", "must be at least 1"));
        }
        if self.fetch_wait < Duration::from_millis(10) {
            return Err(invalid("fetch_wait", "must be at least 10ms"));
        }
        if self.consumer.ack_wait < Duration::from_millis(100) {
            return Err(invalid("consumer.ack_wait", "must be at least 100ms"));
        }
        if self.connect_timeout.is_zero() {
            return Err(invalid("connect_timeout", "must be more than zero"));
        }
        if let Some(s) = &self.create_stream
            && s.subjects.is_empty()
        {
            return Err(invalid(
                "create_stream.subjects",
                "name at least one subject the stream takes",
            ));
        }
        Ok(())
    }
}

/// Options of a [`NatsSink`](crate::NatsSink).
///
/// ```
/// use ferroway_nats::SinkOptions;
/// let opts = SinkOptions::new("nats://127.0.0.1:4222", "orders.created").jetstream(true).key_as_message_id(true);
/// assert_eq!(opts.validate(), Ok(()));
/// ```
#[derive(Debug, Clone)]
pub struct SinkOptions {
    pub(crate) url: NatsUrl,
    pub(crate) subject: String,
    pub(crate) key_as_subject_suffix: bool,
    pub(crate) jetstream: bool,
    pub(crate) key_as_message_id: bool,
    pub(crate) ack_timeout: Duration,
    pub(crate) name: String,
}

impl SinkOptions {
    /// Publish to `subject`. Defaults: core NATS publishing (flushed before the batch is
    /// acknowledged; at-most-once toward subscribers), 10 s publish-ack timeout when
    /// JetStream is on.
    pub fn new(url: impl Into<NatsUrl>, subject: impl Into<String>) -> Self {
        SinkOptions {
            url: url.into(),
            subject: subject.into(),
            key_as_subject_suffix: false,
            jetstream: false,
            key_as_message_id: false,
            ack_timeout: Duration::from_secs(10),
            name: "ferroway".into(),
        }
    }

    /// Publish through JetStream: each message is acknowledged upstream only once a stream
    /// stored it (a publish ack).
    pub fn jetstream(mut self, yes: bool) -> Self {
        self.jetstream = yes;
        self
    }

    /// Append the record's key to the subject (`subject.key`).
    pub fn key_as_subject_suffix(mut self, yes: bool) -> Self {
        self.key_as_subject_suffix = yes;
        self
    }

    /// Send the record's key as `Nats-Msg-Id`: the stream drops a duplicate within its
    /// duplicate window (a retried batch is not stored twice). A record's own `Nats-Msg-Id`
    /// header works too.
    pub fn key_as_message_id(mut self, yes: bool) -> Self {
        self.key_as_message_id = yes;
        self
    }

    /// How long to wait for publish acks before the batch counts as not delivered (the
    /// pipeline retries it; default 10 s).
    pub fn ack_timeout(mut self, d: Duration) -> Self {
        self.ack_timeout = d;
        self
    }

    /// The connection name servers show (default `ferroway`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Checks every option.
    ///
    /// # Errors
    /// [`OptionsError`] naming the option.
    pub fn validate(&self) -> Result<(), OptionsError> {
        self.url.validate()?;
        if self.subject.is_empty() || self.subject.contains(char::is_whitespace) || self.subject.contains(['*', '>']) {
            return Err(invalid("subject", "must be a subject without spaces or wildcards"));
        }
        if self.ack_timeout.is_zero() {
            return Err(invalid("ack_timeout", "must be more than zero"));
        }
        Ok(())
    }
}

/// Options of a [`SubscriptionSource`](crate::SubscriptionSource): core NATS subscriptions.
///
/// ```
/// use ferroway_nats::SubscribeOptions;
/// let opts = SubscribeOptions::new("nats://127.0.0.1:4222", ["orders.*", "refunds.>"]).queue_group("workers");
/// assert_eq!(opts.validate(), Ok(()));
/// ```
#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    pub(crate) url: NatsUrl,
    pub(crate) subjects: Vec<String>,
    pub(crate) queue_group: Option<String>,
    pub(crate) buffer: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) name: String,
}

impl SubscribeOptions {
    /// Subscribe to `subjects` (wildcards allowed). Defaults: no queue group, a buffer of
    /// 10,000 messages per subscription, 60 s to first reach a server.
    pub fn new<S: Into<String>>(url: impl Into<NatsUrl>, subjects: impl IntoIterator<Item = S>) -> Self {
        SubscribeOptions {
            url: url.into(),
            subjects: subjects.into_iter().map(Into::into).collect(),
            queue_group: None,
            buffer: 10_000,
            connect_timeout: Duration::from_secs(60),
            name: "ferroway".into(),
        }
    }

    /// Join this queue group: each message goes to one member of the group.
    pub fn queue_group(mut self, group: impl Into<String>) -> Self {
        self.queue_group = Some(group.into());
        self
    }

    /// Messages buffered per subscription while the pipeline is slower than the publishers.
    /// When it is full, new messages are dropped (the client's slow-consumer policy), counted
    /// in `ferroway_nats_dropped_total` and warned about: memory stays bounded.
    pub fn buffer(mut self, n: usize) -> Self {
        self.buffer = n;
        self
    }

    /// How long the source may take to first reach a server (default 60 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// The connection name servers show (default `ferroway`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Checks every option.
    ///
    /// # Errors
    /// [`OptionsError`] naming the option.
    pub fn validate(&self) -> Result<(), OptionsError> {
        self.url.validate()?;
        if self.subjects.is_empty()
            || self
                .subjects
                .iter()
                .any(|s| s.is_empty() || s.contains(char::is_whitespace))
        {
            return Err(invalid("subjects", "name at least one subject, without spaces"));
        }
        if self.buffer == 0 {
            return Err(invalid("buffer", "must be at least 1"));
        }
        Ok(())
    }
}

fn invalid(option: &'static str, reason: &str) -> OptionsError {
    OptionsError::Invalid {
        option,
        reason: reason.to_owned(),
    }
}
