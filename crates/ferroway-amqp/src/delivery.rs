//! A delivery as the pipeline sees it: the message (payload, headers, properties) as data, the
//! envelope (queue, delivery tag, redelivered, exchange, routing key) as its origin.

use std::sync::Arc;

use amqprs::{BasicProperties, FieldTable, FieldValue};
use bytes::Bytes;
use ferroway::connector::{AsRecord, Record};
use ferroway::pipeline::Origin;

/// One message consumed from a queue: the data of the source's messages. It is
/// [`AsRecord`] (payload, headers, timestamp), so any sink takes it as it is;
/// `Record::from(delivery)` keeps the routing key as the record's key.
///
/// ```
/// use ferroway::connector::AsRecord;
/// use ferroway_amqp::Delivery;
///
/// let d = Delivery::new("{\"id\":7}").header("tenant", "acme");
/// assert_eq!(d.payload(), b"{\"id\":7}");
/// assert_eq!(d.header_value("tenant"), Some(&b"acme"[..]));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Delivery {
    /// The body.
    pub payload: Bytes,
    /// The routing key it was published with.
    pub routing_key: String,
    /// Header table entries, values as text (strings as they are, numbers in decimal, byte
    /// arrays raw, nested tables and arrays in RabbitMQ's display form).
    pub headers: Vec<(String, Bytes)>,
    /// The message's properties.
    pub properties: Properties,
}

/// The AMQP basic properties a publisher set (unset ones are `None`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Properties {
    /// `content-type`.
    pub content_type: Option<String>,
    /// `content-encoding`.
    pub content_encoding: Option<String>,
    /// `correlation-id` (RPC).
    pub correlation_id: Option<String>,
    /// `reply-to` (RPC): the queue a reply goes to.
    pub reply_to: Option<String>,
    /// `message-id`.
    pub message_id: Option<String>,
    /// `timestamp`, seconds since the Unix epoch.
    pub timestamp: Option<u64>,
    /// `type`.
    pub message_type: Option<String>,
    /// `app-id`.
    pub app_id: Option<String>,
    /// `priority`.
    pub priority: Option<u8>,
    /// `delivery-mode`: 2 persistent, 1 transient.
    pub delivery_mode: Option<u8>,
}

impl Delivery {
    /// A delivery of `payload` alone (for tests and hand-made messages).
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Delivery {
            payload: payload.into(),
            ..Delivery::default()
        }
    }

    /// With one more header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The first header called `name`.
    pub fn header_value(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| &v[..])
    }

    pub(crate) fn from_parts(payload: Vec<u8>, routing_key: String, props: Option<BasicProperties>) -> Self {
        let props = props.unwrap_or_default();
        Delivery {
            payload: Bytes::from(payload),
            routing_key,
            headers: props.headers().map(headers_of).unwrap_or_default(),
            properties: Properties {
                content_type: props.content_type().cloned(),
                content_encoding: props.content_encoding().cloned(),
                correlation_id: props.correlation_id().cloned(),
                reply_to: props.reply_to().cloned(),
                message_id: props.message_id().cloned(),
                timestamp: props.timestamp(),
                message_type: props.message_type().cloned(),
                app_id: props.app_id().cloned(),
                priority: props.priority(),
                delivery_mode: props.delivery_mode(),
            },
        }
    }
}

/// The header table as text values, in name order (a table has no order of its own).
pub(crate) fn headers_of(table: &FieldTable) -> Vec<(String, Bytes)> {
    let mut out: Vec<(String, Bytes)> = table
        .as_ref()
        .iter()
        .map(|(k, v)| {
            let value = match v {
                FieldValue::S(s) => Bytes::copy_from_slice(AsRef::<String>::as_ref(s).as_bytes()),
                FieldValue::x(b) => Bytes::from(Vec::<u8>::from(b.clone())),
                other => Bytes::from(other.to_string()),
            };
            (AsRef::<String>::as_ref(k).clone(), value)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

impl AsRecord for Delivery {
    fn payload(&self) -> &[u8] {
        &self.payload
    }

    fn headers(&self) -> &[(String, Bytes)] {
        &self.headers
    }

    fn timestamp(&self) -> Option<i64> {
        self.properties
            .timestamp
            .and_then(|s| i64::try_from(s).ok())
            .map(|s| s.saturating_mul(1000))
    }
}

/// The routing key becomes the record's key (what `partition_by = "key"` and a sink's
/// `RoutingKey::FromKey` read).
impl From<Delivery> for Record {
    fn from(d: Delivery) -> Self {
        let timestamp = d.timestamp();
        Record {
            payload: d.payload,
            key: (!d.routing_key.is_empty()).then(|| Bytes::from(d.routing_key)),
            headers: d.headers,
            timestamp,
        }
    }
}

/// Where a message came from: the delivery's envelope. Put on every message as its
/// [`Origin`] (so dead letters name queue and delivery tag); read it with
/// `message.metadata::<AmqpMetadata>()`.
///
/// ```
/// use ferroway::pipeline::Origin;
/// use ferroway_amqp::AmqpMetadata;
/// let m = AmqpMetadata { queue: "orders".into(), delivery_tag: 7, redelivered: true, exchange: "ex".into(), routing_key: "rk".into() };
/// assert_eq!(m.fields()[0], ("queue", "orders".to_string()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpMetadata {
    /// The queue it was consumed from.
    pub queue: Arc<str>,
    /// Its delivery tag on the channel that received it.
    pub delivery_tag: u64,
    /// Whether the broker delivered it before (to this or another consumer) without an ack.
    pub redelivered: bool,
    /// The exchange it was published to (`""`: the default exchange).
    pub exchange: String,
    /// The routing key it was published with.
    pub routing_key: String,
}

impl Origin for AmqpMetadata {
    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("queue", self.queue.to_string()),
            ("delivery_tag", self.delivery_tag.to_string()),
            ("redelivered", self.redelivered.to_string()),
            ("exchange", self.exchange.clone()),
            ("routing_key", self.routing_key.clone()),
        ]
    }
}

/// Headers of a record as an AMQP table: UTF-8 values as strings, others as byte arrays.
pub(crate) fn table_of(headers: &[(String, Bytes)]) -> Option<FieldTable> {
    if headers.is_empty() {
        return None;
    }
    let mut t = FieldTable::new();
    for (name, value) in headers {
        let Ok(key) = name.as_str().try_into() else { continue };
        let v = match std::str::from_utf8(value) {
            Ok(s) => FieldValue::from(s),
            Err(_) => match value.to_vec().try_into() {
                Ok(b) => FieldValue::x(b),
                Err(_) => continue,
            },
        };
        t.insert(key, v);
    }
    Some(t)
}
