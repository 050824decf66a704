//! The broker-neutral record: what any source can emit and any sink accept.

use bytes::Bytes;

/// A message's content in no broker's terms: payload bytes, an optional key, headers and a
/// timestamp. Where it came from (topic/partition/offset, stream and entry id, …) stays in the
/// message's typed [`Origin`](crate::pipeline::Origin) metadata, not in the record.
///
/// `Bytes` clones share the buffer, so a record can be handed on without copying its payload.
///
/// ```
/// use ferroway::connector::Record;
/// let r = Record::new("{\"id\":7}")
///     .key("order-7")
///     .header("content-type", "application/json")
///     .timestamp_ms(1_700_000_000_000);
/// assert_eq!(&r.payload[..], b"{\"id\":7}");
/// assert_eq!(r.key.as_deref(), Some(&b"order-7"[..]));
/// assert_eq!(r.header_value("content-type"), Some(&b"application/json"[..]));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// The content.
    pub payload: Bytes,
    /// The key (a Kafka key, a partitioning key), if any.
    pub key: Option<Bytes>,
    /// Headers in order; a name may repeat (Kafka and NATS allow it).
    pub headers: Vec<(String, Bytes)>,
    /// When the record was made, in milliseconds since the Unix epoch, if known.
    pub timestamp: Option<i64>,
}

impl Record {
    /// A record of `payload` alone.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Record {
            payload: payload.into(),
            ..Record::default()
        }
    }

    /// With a key.
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// With one more header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// With a timestamp, in milliseconds since the Unix epoch.
    pub fn timestamp_ms(mut self, ms: i64) -> Self {
        self.timestamp = Some(ms);
        self
    }

    /// The first header called `name`.
    pub fn header_value(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| &v[..])
    }
}

/// A view of data as a [`Record`], without copying it: what sinks accept. Implemented by
/// [`Record`] and by plain payloads (`Vec<u8>`, `String`, `Bytes`, `Box<[u8]>`, `&'static str`);
/// a connector's own data type can implement it too, or be turned into a `Record` with
/// [`Message::map`](crate::pipeline::Message::map).
///
/// ```
/// use ferroway::connector::AsRecord;
/// let line = String::from("hello");
/// assert_eq!(line.payload(), b"hello");
/// assert_eq!(line.key(), None);
/// ```
pub trait AsRecord {
    /// The content.
    fn payload(&self) -> &[u8];

    /// The key, if any.
    fn key(&self) -> Option<&[u8]> {
        None
    }

    /// The headers, in order.
    fn headers(&self) -> &[(String, Bytes)] {
        &[]
    }

    /// Milliseconds since the Unix epoch, if known.
    fn timestamp(&self) -> Option<i64> {
        None
    }
}

impl AsRecord for Record {
    fn payload(&self) -> &[u8] {
        &self.payload
    }
    fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }
    fn headers(&self) -> &[(String, Bytes)] {
        &self.headers
    }
    fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }
}

macro_rules! payload_only {
    ($($t:ty),*) => {$(
        impl AsRecord for $t {
            fn payload(&self) -> &[u8] {
                AsRef::<[u8]>::as_ref(self)
            }
        }
    )*};
}

payload_only!(Vec<u8>, String, Bytes, Box<[u8]>, &'static str);

impl AsRecord for std::sync::Arc<str> {
    fn payload(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl From<Vec<u8>> for Record {
    fn from(v: Vec<u8>) -> Self {
        Record::new(v)
    }
}

impl From<String> for Record {
    fn from(v: String) -> Self {
        Record::new(v)
    }
}

impl From<Bytes> for Record {
    fn from(v: Bytes) -> Self {
        Record::new(v)
    }
}
