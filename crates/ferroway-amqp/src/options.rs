//! Options of the source and the sink, in RabbitMQ's own terms, validated up front.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ferroway::resilience::{Backoff, Jitter};

use crate::error::OptionsError;

/// An AMQP URI (`amqp://[user[:password]@]host[:port][/vhost][?heartbeat=N]`, or `amqps://`
/// with the `tls` feature). Its password never appears in `Debug`, `Display`, logs or errors.
///
/// ```
/// use ferroway_amqp::AmqpUri;
/// let uri = AmqpUri::new("amqp://app:hunter2@rabbit:5672/orders");
/// assert_eq!(uri.redacted(), "amqp://app:***@rabbit:5672/orders");
/// assert_eq!(format!("{uri}"), uri.redacted());
/// assert!(!format!("{uri:?}").contains("hunter2"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct AmqpUri(Arc<str>);

impl AmqpUri {
    /// Wraps a URI.
    pub fn new(uri: impl Into<String>) -> Self {
        AmqpUri(uri.into().into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// The virtual host: the path, percent-decoded (`/` when there is none).
    pub(crate) fn vhost(&self) -> String {
        let s = self.expose();
        let rest = &s[s.find("://").map_or(0, |i| i + 3)..];
        let path = rest.find('/').map_or("", |i| &rest[i + 1..]);
        let path = path.split('?').next().unwrap_or("");
        if path.is_empty() {
            return "/".to_owned();
        }
        let b = path.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            match (
                b[i],
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) {
                (b'%', Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                }
                (c, _, _) => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The URI with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        ferroway::telemetry::redact_url(&self.0)
    }

    /// `text` with this URI's password, wherever it appears, replaced by `***` (client errors
    /// may quote the URI).
    pub(crate) fn redact_in(&self, text: &str) -> String {
        match ferroway::telemetry::url_password(&self.0) {
            Some(password) => text.replace(password, "***"),
            None => text.to_owned(),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), OptionsError> {
        let s = self.expose();
        let ok = s.starts_with("amqp://") || s.starts_with("amqps://");
        if !ok {
            return Err(OptionsError::UriScheme { uri: self.redacted() });
        }
        if s.starts_with("amqps://") && !cfg!(feature = "tls") {
            return Err(OptionsError::Uri {
                uri: self.redacted(),
                reason: "amqps:// needs the `tls` feature of ferroway-amqp".into(),
            });
        }
        amqprs::connection::OpenConnectionArguments::try_from(s).map_err(|e| OptionsError::Uri {
            uri: self.redacted(),
            reason: self.redact_in(&e.to_string()),
        })?;
        Ok(())
    }
}

impl fmt::Debug for AmqpUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AmqpUri({:?})", self.redacted())
    }
}

impl fmt::Display for AmqpUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl From<&str> for AmqpUri {
    fn from(s: &str) -> Self {
        AmqpUri::new(s)
    }
}

impl From<String> for AmqpUri {
    fn from(s: String) -> Self {
        AmqpUri::new(s)
    }
}

/// What happens to a message that failed and was not dead-lettered by the pipeline
/// (a message routed to the pipeline's dead-letter sink counts as done and is acked).
///
/// There is deliberately no "requeue forever" default: a message that always fails would be
/// redelivered in a tight loop (broadway_rabbitmq #74).
///
/// ```
/// use ferroway_amqp::OnFailed;
/// assert_eq!(OnFailed::default(), OnFailed::Reject);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "config", derive(serde::Deserialize))]
#[cfg_attr(feature = "config", serde(rename_all = "snake_case"))]
pub enum OnFailed {
    /// `basic.reject` without requeue: the message is gone, or goes to the queue's
    /// dead-letter exchange (`x-dead-letter-exchange`) where one is declared. The default.
    #[default]
    Reject,
    /// `basic.nack` with requeue: it comes back (marked redelivered) at once. Only for
    /// failures known to be transient — a message that always fails loops.
    Requeue,
    /// Requeue a first delivery, reject a redelivered one (Broadway's
    /// `:reject_and_requeue_once`): one more try, then the dead-letter exchange.
    RequeueOnce,
}

/// A queue argument value (`x-…` arguments of `queue.declare`).
///
/// ```
/// use ferroway_amqp::Argument;
/// assert_eq!(Argument::from(5), Argument::Int(5));
/// assert_eq!(Argument::from("dlx"), Argument::Str("dlx".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "config", derive(serde::Deserialize))]
#[cfg_attr(feature = "config", serde(untagged))]
pub enum Argument {
    /// A boolean.
    Bool(bool),
    /// An integer (sent as a signed 64-bit value, as RabbitMQ expects).
    Int(i64),
    /// A string.
    Str(String),
}

impl From<bool> for Argument {
    fn from(v: bool) -> Self {
        Argument::Bool(v)
    }
}

impl From<i64> for Argument {
    fn from(v: i64) -> Self {
        Argument::Int(v)
    }
}

impl From<i32> for Argument {
    fn from(v: i32) -> Self {
        Argument::Int(v.into())
    }
}

impl From<&str> for Argument {
    fn from(v: &str) -> Self {
        Argument::Str(v.to_owned())
    }
}

impl From<String> for Argument {
    fn from(v: String) -> Self {
        Argument::Str(v)
    }
}

/// The queue's type (`x-queue-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "config", derive(serde::Deserialize))]
#[cfg_attr(feature = "config", serde(rename_all = "snake_case"))]
pub enum QueueType {
    /// A classic queue (the server's default).
    #[default]
    Classic,
    /// A replicated quorum queue (always durable).
    Quorum,
}

/// How the source declares its queue (`queue.declare`) before consuming. Declaring is
/// idempotent when the properties match; RabbitMQ refuses a declaration that differs from the
/// existing queue (`PRECONDITION_FAILED`), which the source reports.
///
/// ```
/// use ferroway_amqp::{QueueDeclare, QueueType};
/// let d = QueueDeclare::durable()
///     .queue_type(QueueType::Quorum)
///     .dead_letter_exchange("orders.dlx")
///     .argument("x-delivery-limit", 5);
/// assert!(d.durable);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct QueueDeclare {
    /// Survives a broker restart.
    pub durable: bool,
    /// Used by this connection only, deleted when it closes.
    pub exclusive: bool,
    /// Deleted when its last consumer is cancelled.
    pub auto_delete: bool,
    /// `x-queue-type`.
    pub queue_type: QueueType,
    /// Other arguments (`x-dead-letter-exchange`, `x-message-ttl`, `x-max-length`, …).
    pub arguments: Vec<(String, Argument)>,
}

impl QueueDeclare {
    /// A durable classic queue.
    pub fn durable() -> Self {
        QueueDeclare {
            durable: true,
            ..Self::default()
        }
    }

    /// A transient queue (lost on a broker restart).
    pub fn transient() -> Self {
        Self::default()
    }

    /// Exclusive to this connection.
    pub fn exclusive(mut self, yes: bool) -> Self {
        self.exclusive = yes;
        self
    }

    /// Deleted when its last consumer goes.
    pub fn auto_delete(mut self, yes: bool) -> Self {
        self.auto_delete = yes;
        self
    }

    /// The queue type.
    pub fn queue_type(mut self, t: QueueType) -> Self {
        self.queue_type = t;
        self
    }

    /// Rejected messages go to `exchange` (`x-dead-letter-exchange`).
    pub fn dead_letter_exchange(self, exchange: impl Into<String>) -> Self {
        self.argument("x-dead-letter-exchange", exchange.into())
    }

    /// One more argument.
    pub fn argument(mut self, name: impl Into<String>, value: impl Into<Argument>) -> Self {
        self.arguments.push((name.into(), value.into()));
        self
    }
}

/// A binding of the source's queue to an exchange (`queue.bind`), made after the queue is
/// declared, on every (re)connection.
///
/// ```
/// use ferroway_amqp::Binding;
/// let b = Binding::new("orders", "eu.#");
/// assert_eq!(b.exchange, "orders");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "config", derive(serde::Deserialize))]
#[cfg_attr(feature = "config", serde(deny_unknown_fields))]
pub struct Binding {
    /// The exchange (it must exist).
    pub exchange: String,
    /// The routing key (a pattern for topic exchanges).
    #[cfg_attr(feature = "config", serde(default))]
    pub routing_key: String,
}

impl Binding {
    /// `queue.bind` to `exchange` with `routing_key`.
    pub fn new(exchange: impl Into<String>, routing_key: impl Into<String>) -> Self {
        Binding {
            exchange: exchange.into(),
            routing_key: routing_key.into(),
        }
    }
}

/// Options of an [`AmqpSource`](crate::AmqpSource): one queue, consumed with manual acks.
///
/// ```
/// use std::time::Duration;
/// use ferroway_amqp::{Binding, OnFailed, QueueDeclare, SourceOptions};
///
/// let opts = SourceOptions::new("amqp://guest:guest@127.0.0.1:5672/%2f", "orders")
///     .declare(QueueDeclare::durable().dead_letter_exchange("orders.dlx"))
///     .bind(Binding::new("events", "order.*"))
///     .prefetch_count(200)
///     .on_failed(OnFailed::RequeueOnce)
///     .connect_timeout(Duration::from_secs(10));
/// assert_eq!(opts.validate(), Ok(()));
/// ```
#[derive(Debug, Clone)]
pub struct SourceOptions {
    pub(crate) uri: AmqpUri,
    pub(crate) queue: String,
    pub(crate) declare: Option<QueueDeclare>,
    pub(crate) bindings: Vec<Binding>,
    pub(crate) prefetch_count: u16,
    pub(crate) consumer_tag: Option<String>,
    pub(crate) on_failed: OnFailed,
    pub(crate) connect_timeout: Duration,
    pub(crate) reconnect: Backoff,
    pub(crate) connection_name: String,
}

/// The default prefetch: enough for a few processors' demand without holding much.
pub const DEFAULT_PREFETCH: u16 = 100;

impl SourceOptions {
    /// Consume `queue` (which must exist unless [`declare`](Self::declare) is set) at `uri`.
    /// Defaults: prefetch 100, failed messages rejected, 60 s to first reach the broker,
    /// reconnect with backoff from 100 ms to 10 s, forever.
    pub fn new(uri: impl Into<AmqpUri>, queue: impl Into<String>) -> Self {
        SourceOptions {
            uri: uri.into(),
            queue: queue.into(),
            declare: None,
            bindings: Vec::new(),
            prefetch_count: DEFAULT_PREFETCH,
            consumer_tag: None,
            on_failed: OnFailed::Reject,
            connect_timeout: Duration::from_secs(60),
            reconnect: default_reconnect(),
            connection_name: "ferroway".into(),
        }
    }

    /// Declare the queue (on every connection) with these properties.
    pub fn declare(mut self, d: QueueDeclare) -> Self {
        self.declare = Some(d);
        self
    }

    /// Bind the queue to an exchange (on every connection).
    pub fn bind(mut self, b: Binding) -> Self {
        self.bindings.push(b);
        self
    }

    /// The most unacknowledged deliveries the broker sends each producer (`basic.qos`): the
    /// back-pressure of RabbitMQ. Deliveries wait in the producer until the pipeline demands
    /// them, so this bounds memory; set it at least to the demand of the processors a
    /// producer serves (`concurrency × max_demand`) or they wait on round trips.
    pub fn prefetch_count(mut self, n: u16) -> Self {
        self.prefetch_count = n;
        self
    }

    /// The consumer tag (default: chosen by the broker). Producer `i > 0` uses `<tag>-<i>`.
    pub fn consumer_tag(mut self, tag: impl Into<String>) -> Self {
        self.consumer_tag = Some(tag.into());
        self
    }

    /// What happens to a failed message the pipeline did not dead-letter (default
    /// [`OnFailed::Reject`]). A message can choose for itself with
    /// [`Message::configure_ack`](ferroway::pipeline::Message::configure_ack).
    pub fn on_failed(mut self, on_failed: OnFailed) -> Self {
        self.on_failed = on_failed;
        self
    }

    /// How long the source may take to first reach the broker before the pipeline fails with
    /// an error naming the URI (default 60 s). Once reached, an outage never fails it.
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// The delays between reconnection attempts (default: exponential 100 ms → 10 s with
    /// jitter, forever). A finite policy makes the source fail once it runs out.
    pub fn reconnect(mut self, b: Backoff) -> Self {
        self.reconnect = b;
        self
    }

    /// The connection name shown in the management UI (default `ferroway`).
    pub fn connection_name(mut self, name: impl Into<String>) -> Self {
        self.connection_name = name.into();
        self
    }

    /// The queue consumed.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Checks every option; the first problem found is returned.
    ///
    /// ```
    /// use ferroway_amqp::SourceOptions;
    /// let e = SourceOptions::new("amqp://127.0.0.1", "q").prefetch_count(0).validate().unwrap_err();
    /// assert_eq!(e.to_string(), "invalid option `prefetch_count`: must be at least 1 (0 would mean no limit)");
    /// ```
    ///
    /// # Errors
    /// [`OptionsError`] naming the option.
    pub fn validate(&self) -> Result<(), OptionsError> {
        self.uri.validate()?;
        if self.queue.is_empty() && self.declare.is_none() {
            return Err(invalid(
                "queue",
                "must not be empty (unless `declare` names a server-named queue)",
            ));
        }
        if self.queue.len() > 255 {
            return Err(invalid("queue", "is longer than 255 bytes"));
        }
        if self.prefetch_count == 0 {
            return Err(invalid("prefetch_count", "must be at least 1 (0 would mean no limit)"));
        }
        if self.connect_timeout.is_zero() {
            return Err(invalid("connect_timeout", "must be more than zero"));
        }
        if let Some(d) = &self.declare
            && d.queue_type == QueueType::Quorum
            && (!d.durable || d.exclusive || d.auto_delete)
        {
            return Err(invalid(
                "declare",
                "a quorum queue must be durable, not exclusive and not auto-delete",
            ));
        }
        Ok(())
    }

    /// The options of producer slot `i`: a consumer tag of its own.
    pub(crate) fn for_slot(&self, i: usize) -> SourceOptions {
        let mut o = self.clone();
        if i > 0 {
            o.consumer_tag = o.consumer_tag.map(|t| format!("{t}-{i}"));
        }
        o
    }
}

/// Where a sink publishes each message: one routing key, or the record's key.
///
/// ```
/// use ferroway_amqp::RoutingKey;
/// assert_eq!(RoutingKey::from("orders.created"), RoutingKey::Static("orders.created".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutingKey {
    /// This routing key for every message.
    Static(String),
    /// The record's key (see [`AsRecord::key`](ferroway::connector::AsRecord::key)), or the
    /// given default where a record has none.
    FromKey {
        /// Used for records without a key.
        default: String,
    },
}

impl From<&str> for RoutingKey {
    fn from(s: &str) -> Self {
        RoutingKey::Static(s.to_owned())
    }
}

impl From<String> for RoutingKey {
    fn from(s: String) -> Self {
        RoutingKey::Static(s)
    }
}

/// Options of an [`AmqpSink`](crate::AmqpSink).
///
/// ```
/// use ferroway_amqp::{RoutingKey, SinkOptions};
/// let opts = SinkOptions::new("amqp://guest:guest@127.0.0.1:5672", "events")
///     .routing_key(RoutingKey::FromKey { default: "unkeyed".into() })
///     .content_type("application/json")
///     .mandatory(true);
/// assert_eq!(opts.validate(), Ok(()));
/// ```
#[derive(Debug, Clone)]
pub struct SinkOptions {
    pub(crate) uri: AmqpUri,
    pub(crate) exchange: String,
    pub(crate) routing_key: RoutingKey,
    pub(crate) persistent: bool,
    pub(crate) mandatory: bool,
    pub(crate) content_type: Option<String>,
    pub(crate) confirm_timeout: Duration,
    pub(crate) connection_name: String,
}

impl SinkOptions {
    /// Publish to `exchange` (`""`, the default exchange, routes by queue name). Defaults:
    /// routing key `""`, persistent delivery, not mandatory, confirms awaited up to 30 s.
    pub fn new(uri: impl Into<AmqpUri>, exchange: impl Into<String>) -> Self {
        SinkOptions {
            uri: uri.into(),
            exchange: exchange.into(),
            routing_key: RoutingKey::Static(String::new()),
            persistent: true,
            mandatory: false,
            content_type: None,
            confirm_timeout: Duration::from_secs(30),
            connection_name: "ferroway".into(),
        }
    }

    /// The routing key.
    pub fn routing_key(mut self, k: impl Into<RoutingKey>) -> Self {
        self.routing_key = k.into();
        self
    }

    /// Delivery mode 2 (written to disk by durable queues); the default. `false` sends
    /// transient messages.
    pub fn persistent(mut self, yes: bool) -> Self {
        self.persistent = yes;
        self
    }

    /// Mandatory publishing: a message no queue takes comes back (`basic.return`) and is
    /// marked failed instead of vanishing.
    pub fn mandatory(mut self, yes: bool) -> Self {
        self.mandatory = yes;
        self
    }

    /// The `content-type` property of every message.
    pub fn content_type(mut self, t: impl Into<String>) -> Self {
        self.content_type = Some(t.into());
        self
    }

    /// How long to wait for the broker's confirms of a batch before treating the connection
    /// as lost (the batch is then retried; default 30 s).
    pub fn confirm_timeout(mut self, t: Duration) -> Self {
        self.confirm_timeout = t;
        self
    }

    /// The connection name shown in the management UI (default `ferroway`).
    pub fn connection_name(mut self, name: impl Into<String>) -> Self {
        self.connection_name = name.into();
        self
    }

    /// Checks every option.
    ///
    /// ```
    /// use ferroway_amqp::SinkOptions;
    /// let e = SinkOptions::new("rabbit:5672", "x").validate().unwrap_err();
    /// assert!(e.to_string().contains("must start with amqp://"));
    /// ```
    ///
    /// # Errors
    /// [`OptionsError`] naming the option.
    pub fn validate(&self) -> Result<(), OptionsError> {
        self.uri.validate()?;
        if self.exchange.len() > 255 {
            return Err(invalid("exchange", "is longer than 255 bytes"));
        }
        if self.confirm_timeout.is_zero() {
            return Err(invalid("confirm_timeout", "must be more than zero"));
        }
        Ok(())
    }
}

pub(crate) fn default_reconnect() -> Backoff {
    Backoff::exponential(Duration::from_millis(100))
        .cap(Duration::from_secs(10))
        .jitter(Jitter::Full)
}

fn invalid(option: &'static str, reason: &str) -> OptionsError {
    OptionsError::Invalid {
        option,
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_covers_every_form() {
        assert_eq!(AmqpUri::new("amqp://u:p@h/v").redacted(), "amqp://u:***@h/v");
        assert_eq!(AmqpUri::new("amqp://u@h").redacted(), "amqp://u@h");
        assert_eq!(AmqpUri::new("amqp://h:5672/%2f").redacted(), "amqp://h:5672/%2f");
        // An `@` in the vhost is not userinfo.
        assert_eq!(AmqpUri::new("amqp://h/a@b").redacted(), "amqp://h/a@b");
        assert_eq!(AmqpUri::new("amqp://h:5672/%2f").vhost(), "/");
        assert_eq!(AmqpUri::new("amqp://h").vhost(), "/");
        assert_eq!(AmqpUri::new("amqp://h/").vhost(), "/");
        assert_eq!(AmqpUri::new("amqp://h/orders?heartbeat=5").vhost(), "orders");
        let uri = AmqpUri::new("amqp://u:s3cret@h");
        assert_eq!(uri.redact_in("refused for s3cret"), "refused for ***");
    }

    #[test]
    fn validation_names_the_option() {
        let e = SourceOptions::new("amqp://h", "").validate().unwrap_err();
        assert!(e.to_string().contains("`queue`"), "{e}");
        let e = SourceOptions::new("amqp://h", "q")
            .declare(QueueDeclare::transient().queue_type(QueueType::Quorum))
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("quorum queue must be durable"), "{e}");
        let e = SourceOptions::new("http://u:pw@h", "q").validate().unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid AMQP URI http://u:***@h: it must start with amqp:// (or amqps:// for TLS), e.g. amqp://guest:guest@127.0.0.1:5672/%2f"
        );
        assert!(
            SinkOptions::new("amqp://h", "x")
                .confirm_timeout(Duration::ZERO)
                .validate()
                .is_err()
        );
    }
}
