//! What the source emits: the message's content as data, where it came from as metadata.

use std::sync::Arc;

use bytes::Bytes;
use ferroway::connector::{AsRecord, Record};
use ferroway::pipeline::Origin;
use gcloud_googleapis::pubsub::v1::ReceivedMessage;

/// One Pub/Sub message's content: the data, the attributes (as headers), the ordering key
/// (as key) and its publish time (as timestamp) — so it is a record for any sink
/// ([`AsRecord`]). Ack id, message id and delivery attempt are in [`PubSubMetadata`].
///
/// ```
/// use ferroway::connector::AsRecord;
/// use ferroway_pubsub::PubSubMessage;
/// let m = PubSubMessage::new("hello").attribute("trace", "abc").ordering_key("customer-7");
/// assert_eq!(m.payload(), b"hello");
/// assert_eq!(m.key(), Some(&b"customer-7"[..]));
/// assert_eq!(m.to_record().header_value("trace"), Some(&b"abc"[..]));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PubSubMessage {
    /// The data.
    pub data: Bytes,
    /// The attributes, in name order.
    pub attributes: Vec<(String, Bytes)>,
    /// The ordering key (none: empty in Pub/Sub's terms).
    pub ordering_key: Option<String>,
    /// When Pub/Sub received it, in milliseconds since the Unix epoch.
    pub publish_time: Option<i64>,
}

impl PubSubMessage {
    /// A message of `data` alone.
    pub fn new(data: impl Into<Bytes>) -> Self {
        PubSubMessage {
            data: data.into(),
            ..PubSubMessage::default()
        }
    }

    /// With one more attribute.
    pub fn attribute(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.attributes.push((name.into(), value.into()));
        self
    }

    /// With an ordering key.
    pub fn ordering_key(mut self, key: impl Into<String>) -> Self {
        self.ordering_key = Some(key.into());
        self
    }

    /// The broker-neutral record: data, ordering key as key, attributes as headers.
    pub fn to_record(&self) -> Record {
        self.clone().into()
    }
}

impl AsRecord for PubSubMessage {
    fn payload(&self) -> &[u8] {
        &self.data
    }
    fn key(&self) -> Option<&[u8]> {
        self.ordering_key.as_deref().map(str::as_bytes)
    }
    fn headers(&self) -> &[(String, Bytes)] {
        &self.attributes
    }
    fn timestamp(&self) -> Option<i64> {
        self.publish_time
    }
}

impl From<PubSubMessage> for Record {
    fn from(m: PubSubMessage) -> Self {
        Record {
            payload: m.data,
            key: m.ordering_key.map(Bytes::from),
            headers: m.attributes,
            timestamp: m.publish_time,
        }
    }
}

/// Where a message came from: its origin metadata
/// ([`Message::metadata`](ferroway::pipeline::Message::metadata)).
///
/// ```
/// use ferroway::pipeline::Message;
/// use ferroway_pubsub::{PubSubMessage, PubSubMetadata};
/// fn attempt(m: &Message<PubSubMessage>) -> u32 {
///     m.metadata::<PubSubMetadata>().and_then(|o| o.delivery_attempt).unwrap_or(1)
/// }
/// # let _ = attempt;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubSubMetadata {
    /// The subscription's full name.
    pub subscription: Arc<str>,
    /// The id Pub/Sub gave the message when it was published.
    pub message_id: String,
    /// The ack id of this delivery (what acknowledges it).
    pub ack_id: String,
    /// When Pub/Sub received it, in milliseconds since the Unix epoch.
    pub publish_time: Option<i64>,
    /// The ordering key, if it has one.
    pub ordering_key: Option<String>,
    /// This delivery's attempt number, the first being 1: Pub/Sub counts them only on
    /// subscriptions with a dead-letter policy (`None` otherwise).
    pub delivery_attempt: Option<u32>,
}

impl Origin for PubSubMetadata {
    fn fields(&self) -> Vec<(&'static str, String)> {
        let mut f = vec![
            ("subscription", self.subscription.to_string()),
            ("message_id", self.message_id.clone()),
        ];
        if let Some(n) = self.delivery_attempt {
            f.push(("delivery_attempt", n.to_string()));
        }
        if let Some(k) = &self.ordering_key {
            f.push(("ordering_key", k.clone()));
        }
        f
    }
}

/// Splits a received message into data and metadata.
pub(crate) fn split(subscription: &Arc<str>, m: ReceivedMessage) -> (PubSubMessage, PubSubMetadata) {
    let message = m.message.unwrap_or_default();
    let publish_time = message
        .publish_time
        .map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000);
    let ordering_key = Some(message.ordering_key).filter(|k| !k.is_empty());
    let mut attributes: Vec<(String, Bytes)> = message
        .attributes
        .into_iter()
        .map(|(k, v)| (k, Bytes::from(v)))
        .collect();
    attributes.sort_by(|a, b| a.0.cmp(&b.0));
    let meta = PubSubMetadata {
        subscription: subscription.clone(),
        message_id: message.message_id,
        ack_id: m.ack_id,
        publish_time,
        ordering_key: ordering_key.clone(),
        delivery_attempt: u32::try_from(m.delivery_attempt).ok().filter(|n| *n > 0),
    };
    let data = PubSubMessage {
        data: message.data,
        attributes,
        ordering_key,
        publish_time,
    };
    (data, meta)
}
