//! A NATS message as the pipeline sees it, and where it came from.

use std::sync::Arc;

use async_nats::HeaderMap;
use bytes::Bytes;
use ferroway::connector::{AsRecord, Record};
use ferroway::pipeline::Origin;

/// One message received from NATS: the data of the sources' messages. It is [`AsRecord`]
/// (payload, headers), so any sink takes it as it is; `Record::from(message)` keeps the
/// subject as the record's key.
///
/// ```
/// use ferroway::connector::AsRecord;
/// use ferroway_nats::NatsMessage;
/// let m = NatsMessage::new("orders.eu", "{}").header("Nats-Msg-Id", "o-1");
/// assert_eq!(m.payload(), b"{}");
/// assert_eq!(m.header_value("Nats-Msg-Id"), Some(&b"o-1"[..]));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NatsMessage {
    /// The subject it was published to.
    pub subject: String,
    /// The body.
    pub payload: Bytes,
    /// Headers in name order; a name may repeat.
    pub headers: Vec<(String, Bytes)>,
    /// Where a reply goes (core request/reply), if anywhere.
    pub reply: Option<String>,
}

impl NatsMessage {
    /// A message of `payload` on `subject`.
    pub fn new(subject: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        NatsMessage {
            subject: subject.into(),
            payload: payload.into(),
            ..Self::default()
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

    pub(crate) fn from_client(m: async_nats::Message) -> Self {
        NatsMessage {
            subject: String::from(m.subject.as_str()),
            payload: m.payload,
            headers: m.headers.as_ref().map(headers_of).unwrap_or_default(),
            reply: m.reply.map(|r| r.to_string()),
        }
    }
}

fn headers_of(h: &HeaderMap) -> Vec<(String, Bytes)> {
    let mut out: Vec<(String, Bytes)> = h
        .iter()
        .flat_map(|(k, vs)| {
            vs.iter()
                .map(move |v| (k.to_string(), Bytes::copy_from_slice(v.as_str().as_bytes())))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Headers of a record as a NATS header map (values must be text: others are skipped).
pub(crate) fn header_map(headers: &[(String, Bytes)]) -> Option<HeaderMap> {
    if headers.is_empty() {
        return None;
    }
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        if let Ok(v) = std::str::from_utf8(v) {
            h.append(k.as_str(), v);
        }
    }
    Some(h)
}

impl AsRecord for NatsMessage {
    fn payload(&self) -> &[u8] {
        &self.payload
    }

    fn headers(&self) -> &[(String, Bytes)] {
        &self.headers
    }
}

/// The subject becomes the record's key (what `partition_by = "key"` reads).
impl From<NatsMessage> for Record {
    fn from(m: NatsMessage) -> Self {
        Record {
            payload: m.payload,
            key: Some(Bytes::from(m.subject)),
            headers: m.headers,
            timestamp: None,
        }
    }
}

/// Where a JetStream message came from: put on every message as its [`Origin`] (so dead
/// letters name stream and sequence); read it with `message.metadata::<JetStreamMetadata>()`.
///
/// ```
/// use ferroway::pipeline::Origin;
/// use ferroway_nats::JetStreamMetadata;
/// let m = JetStreamMetadata { stream: "ORDERS".into(), consumer: "billing".into(), stream_sequence: 7, consumer_sequence: 9, delivered: 2, published_ms: 0 };
/// assert_eq!(m.fields()[2], ("stream_sequence", "7".to_string()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamMetadata {
    /// The stream.
    pub stream: Arc<str>,
    /// The consumer.
    pub consumer: Arc<str>,
    /// Its sequence in the stream (the same on every delivery).
    pub stream_sequence: u64,
    /// Its sequence for this consumer (new on every delivery).
    pub consumer_sequence: u64,
    /// How many times it has been delivered, this time included.
    pub delivered: i64,
    /// When the stream stored it, in milliseconds since the Unix epoch.
    pub published_ms: i64,
}

impl Origin for JetStreamMetadata {
    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("stream", self.stream.to_string()),
            ("consumer", self.consumer.to_string()),
            ("stream_sequence", self.stream_sequence.to_string()),
            ("delivered", self.delivered.to_string()),
        ]
    }
}

/// Where a core NATS message came from: its subject, as an [`Origin`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectMetadata {
    /// The subject.
    pub subject: String,
}

impl Origin for SubjectMetadata {
    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![("subject", self.subject.clone())]
    }
}
