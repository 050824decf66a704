//! The source and the sink as configuration-file components (`type = "amqp"`), feature
//! `config`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ferroway::BoxError;
use ferroway::config::{BuildContext, SinkConfig, SourceConfig};
use ferroway::connector::{BoxSource, Record, Sink, Source};
use ferroway::pipeline::BoxFuture;
use serde::{Deserialize, Deserializer};

use crate::options::{AmqpUri, Argument, Binding, DEFAULT_PREFETCH, OnFailed, QueueDeclare, QueueType, RoutingKey};
use crate::{AmqpSink, AmqpSource, SinkOptions, SourceOptions};

impl<'de> Deserialize<'de> for AmqpUri {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(AmqpUri::new)
    }
}

/// `type = "amqp"` as a source: one RabbitMQ queue, consumed with manual acks; each delivery
/// a record (payload, headers, routing key as key, timestamp), acked once the pipeline
/// finished with it. See [`SourceOptions`] for what each option does.
///
/// ```
/// use ferroway::config::SourceConfig;
/// use ferroway_amqp::AmqpSourceConfig;
///
/// let c: AmqpSourceConfig = serde_json::from_str(
///     r#"{"uri": "amqp://app:hunter2@127.0.0.1:5672/%2f", "queue": "orders", "prefetch_count": 500}"#,
/// ).unwrap();
/// assert_eq!(c.prefetch_count, 500);
/// assert!(!format!("{c:?}").contains("hunter2"));
/// assert_eq!(AmqpSourceConfig::TYPE, "amqp");
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSourceConfig {
    /// `amqp://user:password@host:port/vhost` (`%2f` is the vhost `/`).
    pub uri: AmqpUri,
    /// The queue consumed.
    pub queue: String,
    /// Declare the queue on every connection: `{ durable, exclusive, auto_delete,
    /// queue_type = "classic" | "quorum", arguments = { "x-dead-letter-exchange" = "dlx" } }`.
    #[serde(default)]
    pub declare: Option<DeclareConfig>,
    /// Bind the queue: `[{ exchange = "events", routing_key = "order.*" }]`.
    #[serde(default)]
    pub bindings: Vec<Binding>,
    /// Unacknowledged deliveries per producer (default 100).
    #[serde(default = "default_prefetch")]
    pub prefetch_count: u16,
    /// The consumer tag (default: the broker's); producer `i > 0` uses `<tag>-<i>`.
    #[serde(default)]
    pub consumer_tag: Option<String>,
    /// A failed message not dead-lettered: `"reject"` (the default), `"requeue"` or
    /// `"requeue_once"`.
    #[serde(default)]
    pub on_failed: OnFailed,
    /// Fail if the broker was never reached within this long of the start (default `"60s"`).
    #[serde(default = "default_connect_timeout", with = "ferroway::config::duration")]
    pub connect_timeout: Duration,
}

/// The `declare` table of [`AmqpSourceConfig`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclareConfig {
    /// Survives a broker restart (default true).
    #[serde(default = "yes")]
    pub durable: bool,
    /// Used by this connection only.
    #[serde(default)]
    pub exclusive: bool,
    /// Deleted with its last consumer.
    #[serde(default)]
    pub auto_delete: bool,
    /// `"classic"` (the default) or `"quorum"`.
    #[serde(default)]
    pub queue_type: QueueType,
    /// `x-…` arguments: strings, integers, booleans.
    #[serde(default)]
    pub arguments: BTreeMap<String, Argument>,
}

impl AmqpSourceConfig {
    /// The options this configuration stands for, validated.
    ///
    /// # Errors
    /// The first invalid option, named.
    pub fn options(&self) -> Result<SourceOptions, BoxError> {
        let mut o = SourceOptions::new(self.uri.clone(), &self.queue)
            .prefetch_count(self.prefetch_count)
            .on_failed(self.on_failed)
            .connect_timeout(self.connect_timeout);
        if let Some(d) = &self.declare {
            let mut q = QueueDeclare::transient()
                .exclusive(d.exclusive)
                .auto_delete(d.auto_delete)
                .queue_type(d.queue_type);
            q.durable = d.durable;
            for (k, v) in &d.arguments {
                q = q.argument(k, v.clone());
            }
            o = o.declare(q);
        }
        for b in &self.bindings {
            o = o.bind(b.clone());
        }
        if let Some(tag) = &self.consumer_tag {
            o = o.consumer_tag(tag);
        }
        o.validate()?;
        Ok(o)
    }
}

impl SourceConfig for AmqpSourceConfig {
    const TYPE: &'static str = "amqp";
    const SUMMARY: &'static str = "a RabbitMQ queue (AMQP 0.9.1) consumed with prefetch; messages acked once processed";
    const EXAMPLE: &'static str = r#"uri = "amqp://guest:guest@127.0.0.1:5672/%2f"   # %2f is the vhost "/"
queue = "orders"
# declare = { durable = true, queue_type = "classic", arguments = { "x-dead-letter-exchange" = "orders.dlx" } }
# bindings = [{ exchange = "events", routing_key = "order.*" }]
prefetch_count = 100               # unacknowledged deliveries per producer: the back-pressure
# consumer_tag = "worker-1"        # default: chosen by the broker
on_failed = "reject"               # or "requeue", "requeue_once": a failed message not dead-lettered
connect_timeout = "60s"            # fail if the broker never answered within this"#;

    fn build(self, _: &BuildContext) -> Result<BoxSource<Record>, BoxError> {
        let factory = AmqpSource::factory(self.options()?)?;
        Ok(BoxSource::new(factory.map(Record::from)))
    }
}

/// `type = "amqp"` as a sink: records published to an exchange with publisher confirms,
/// acknowledged upstream once the broker confirmed them. See [`SinkOptions`].
///
/// ```
/// use ferroway_amqp::AmqpSinkConfig;
/// let c: AmqpSinkConfig = serde_json::from_str(
///     r#"{"uri": "amqp://127.0.0.1", "exchange": "events", "key_as_routing_key": true, "mandatory": true}"#,
/// ).unwrap();
/// assert!(c.options().is_ok());
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSinkConfig {
    /// `amqp://user:password@host:port/vhost`.
    pub uri: AmqpUri,
    /// The exchange (`""`: the default exchange, which routes by queue name).
    #[serde(default)]
    pub exchange: String,
    /// The routing key (default `""`).
    #[serde(default)]
    pub routing_key: String,
    /// Route by the record's key; `routing_key` for records without one.
    #[serde(default)]
    pub key_as_routing_key: bool,
    /// Delivery mode 2 (default true).
    #[serde(default = "yes")]
    pub persistent: bool,
    /// Unroutable messages come back and fail (default false).
    #[serde(default)]
    pub mandatory: bool,
    /// The `content-type` property.
    #[serde(default)]
    pub content_type: Option<String>,
    /// How long to wait for confirms before treating the connection as lost (default
    /// `"30s"`).
    #[serde(default = "default_confirm_timeout", with = "ferroway::config::duration")]
    pub confirm_timeout: Duration,
}

impl AmqpSinkConfig {
    /// The options this configuration stands for, validated.
    ///
    /// # Errors
    /// The first invalid option, named.
    pub fn options(&self) -> Result<SinkOptions, BoxError> {
        let routing_key = if self.key_as_routing_key {
            RoutingKey::FromKey {
                default: self.routing_key.clone(),
            }
        } else {
            RoutingKey::Static(self.routing_key.clone())
        };
        let mut o = SinkOptions::new(self.uri.clone(), &self.exchange)
            .routing_key(routing_key)
            .persistent(self.persistent)
            .mandatory(self.mandatory)
            .confirm_timeout(self.confirm_timeout);
        if let Some(t) = &self.content_type {
            o = o.content_type(t);
        }
        o.validate()?;
        Ok(o)
    }
}

impl SinkConfig for AmqpSinkConfig {
    const TYPE: &'static str = "amqp";
    const SUMMARY: &'static str =
        "records published to a RabbitMQ exchange, confirmed by the broker before acknowledgement";
    const EXAMPLE: &'static str = r#"uri = "amqp://guest:guest@127.0.0.1:5672/%2f"
exchange = ""                      # "" is the default exchange: it routes to the queue named by routing_key
routing_key = "events"
key_as_routing_key = false         # true: route by the record's key (routing_key when it has none)
persistent = true                  # delivery mode 2
mandatory = false                  # true: unroutable messages come back and fail
# content_type = "application/json"
confirm_timeout = "30s"            # no confirms within this: the connection counts as lost, the batch is retried"#;

    fn build(self, _: &BuildContext) -> BoxFuture<'static, Result<Arc<dyn Sink<Record>>, BoxError>> {
        Box::pin(async move {
            let sink: Arc<dyn Sink<Record>> = Arc::new(AmqpSink::new(self.options()?)?);
            Ok(sink)
        })
    }
}

fn yes() -> bool {
    true
}

fn default_prefetch() -> u16 {
    DEFAULT_PREFETCH
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_confirm_timeout() -> Duration {
    Duration::from_secs(30)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> Result<AmqpSourceConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn the_examples_parse_to_the_defaults() {
        let c = source(AmqpSourceConfig::EXAMPLE).unwrap();
        let d = SourceOptions::new("amqp://x", "orders");
        assert_eq!(c.prefetch_count, d.prefetch_count);
        assert_eq!(c.on_failed, d.on_failed);
        assert_eq!(c.connect_timeout, d.connect_timeout);
        assert!(c.declare.is_none() && c.bindings.is_empty() && c.consumer_tag.is_none());
        let s: AmqpSinkConfig = toml::from_str(AmqpSinkConfig::EXAMPLE).unwrap();
        let o = s.options().unwrap();
        let d = SinkOptions::new("amqp://x", "");
        assert_eq!(
            (o.persistent, o.mandatory, o.confirm_timeout),
            (d.persistent, d.mandatory, d.confirm_timeout)
        );
        assert_eq!(o.routing_key, RoutingKey::Static("events".into()));
    }

    #[test]
    fn a_full_source_config_becomes_its_options() {
        let c = source(
            r#"
uri = "amqp://app:hunter2@rabbit:5672/orders"
queue = "orders"
declare = { queue_type = "quorum", arguments = { "x-delivery-limit" = 5, "x-dead-letter-exchange" = "dlx" } }
bindings = [{ exchange = "events", routing_key = "order.*" }]
prefetch_count = 20
consumer_tag = "w1"
on_failed = "requeue_once"
connect_timeout = "5s"
"#,
        )
        .unwrap();
        let o = c.options().unwrap();
        let d = o.declare.clone().unwrap();
        assert!(d.durable);
        assert_eq!(d.queue_type, QueueType::Quorum);
        assert_eq!(
            d.arguments,
            vec![
                ("x-dead-letter-exchange".to_owned(), Argument::Str("dlx".into())),
                ("x-delivery-limit".to_owned(), Argument::Int(5)),
            ]
        );
        assert_eq!(o.bindings, vec![Binding::new("events", "order.*")]);
        assert_eq!((o.prefetch_count, o.consumer_tag.as_deref()), (20, Some("w1")));
        assert_eq!(o.on_failed, OnFailed::RequeueOnce);
        assert!(!format!("{c:?} {o:?}").contains("hunter2"));
    }

    #[test]
    fn bad_values_are_named() {
        let e = source("uri = \"amqp://h\"\nqueue = \"q\"\non_failed = \"retry\"").unwrap_err();
        assert!(
            e.contains("unknown variant `retry`, expected one of `reject`, `requeue`, `requeue_once`"),
            "{e}"
        );
        let e = source("uri = \"amqp://h\"\nqueue = \"q\"\nprefetch = 5").unwrap_err();
        assert!(e.contains("unknown field `prefetch`"), "{e}");
        let c = source("uri = \"amqp://h\"\nqueue = \"q\"\nprefetch_count = 0").unwrap();
        assert!(c.options().unwrap_err().to_string().contains("`prefetch_count`"));
    }
}
