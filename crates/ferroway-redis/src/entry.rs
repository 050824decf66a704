//! Stream entries as messages: their fields, their id, and the metadata a message carries.

use std::fmt;
use std::sync::Arc;

use redis::Value;

/// An entry's fields, in order.
pub type Fields = Vec<(String, Vec<u8>)>;

/// The data of a message read from a stream: the entry's fields.
///
/// Its `Debug` form shows UTF-8 values as strings, and [`to_json`](Entry::to_json) renders it
/// as one JSON object, e.g. for dead-letter records:
///
/// ```
/// use ferroway_redis::Entry;
/// let e = Entry { fields: vec![("n".into(), b"7".to_vec()), ("raw".into(), vec![0xff, 0x00]), ("a\"".into(), b"x".to_vec())] };
/// assert_eq!(format!("{e:?}"), r#"Entry {"n": "7", "raw": b"\xff\x00", "a\"": "x"}"#);
/// assert_eq!(e.to_json(), r#"{"n":"7","raw":{"base64":"/wA="},"a\"":"x"}"#);
/// ```
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Entry {
    /// Field names and values, in the order Redis returned them.
    pub fields: Fields,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Value<'a>(&'a [u8]);
        impl fmt::Debug for Value<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match std::str::from_utf8(self.0) {
                    Ok(s) => fmt::Debug::fmt(s, f),
                    Err(_) => write!(f, "b\"{}\"", self.0.escape_ascii()),
                }
            }
        }
        f.write_str("Entry ")?;
        f.debug_map()
            .entries(self.fields.iter().map(|(k, v)| (k, Value(v))))
            .finish()
    }
}

impl Entry {
    /// The entry as one JSON object, fields in the entry's order: a UTF-8 value is a string,
    /// any other value an object `{"base64": "..."}` (standard alphabet, padded).
    pub fn to_json(&self) -> String {
        let text = |s: &str| serde_json::Value::from(s).to_string();
        let mut out = String::from("{");
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&text(k));
            out.push(':');
            match std::str::from_utf8(v) {
                Ok(s) => out.push_str(&text(s)),
                Err(_) => out.push_str(&format!(r#"{{"base64":"{}"}}"#, base64(v))),
            }
        }
        out.push('}');
        out
    }

    /// The value of field `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice())
    }

    /// The value of field `name`, if it is UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A stream entry id, `ms-seq`.
///
/// ```
/// use ferroway_redis::StreamId;
/// let id = StreamId::parse("1700000000000-3").unwrap();
/// assert_eq!((id.ms, id.seq), (1_700_000_000_000, 3));
/// assert_eq!(id.to_string(), "1700000000000-3");
/// assert!(StreamId::parse("nope").is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence part.
    pub seq: u64,
}

impl StreamId {
    pub(crate) const ZERO: StreamId = StreamId { ms: 0, seq: 0 };

    /// The smallest id after this one.
    pub(crate) fn next(self) -> StreamId {
        match self.seq.checked_add(1) {
            Some(seq) => StreamId { ms: self.ms, seq },
            None => StreamId {
                ms: self.ms + 1,
                seq: 0,
            },
        }
    }

    /// Parses `ms-seq`.
    pub fn parse(s: &str) -> Option<Self> {
        let (ms, seq) = s.split_once('-')?;
        Some(StreamId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Metadata of every message from a [`RedisSource`](crate::RedisSource):
/// `message.metadata::<RedisMetadata>()`. It is the message's
/// [`Origin`](ferroway::pipeline::Origin) too, so dead-letter records name the stream, the
/// entry id and the delivery count.
///
/// ```
/// use ferroway::pipeline::Origin;
/// use ferroway_redis::{RedisMetadata, StreamId};
/// let md = RedisMetadata { stream: "orders".into(), id: StreamId { ms: 17, seq: 0 }, delivery_count: 1 };
/// assert_eq!(md.fields()[1], ("id", "17-0".to_string()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisMetadata {
    /// The stream the entry was read from.
    pub stream: Arc<str>,
    /// The entry's id.
    pub id: StreamId,
    /// How many times the group delivered it (1 on first delivery; more after a crash, a lost
    /// connection or a claim).
    pub delivery_count: u64,
}

impl ferroway::pipeline::Origin for RedisMetadata {
    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("stream", self.stream.to_string()),
            ("id", self.id.to_string()),
            ("delivery_count", self.delivery_count.to_string()),
        ]
    }
}

/// One entry of a read; `fields` is `None` for an entry deleted while pending.
pub(crate) struct RawEntry {
    pub(crate) id: StreamId,
    pub(crate) fields: Option<Fields>,
    /// Deliveries so far, this one included.
    pub(crate) deliveries: u64,
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn bytes(v: Value) -> Vec<u8> {
    match v {
        Value::BulkString(b) => b,
        Value::SimpleString(s) => s.into_bytes(),
        Value::Int(i) => i.to_string().into_bytes(),
        _ => Vec::new(),
    }
}

fn fields(v: Value) -> Option<Fields> {
    let pairs: Vec<(Value, Value)> = match v {
        Value::Array(items) => {
            let mut it = items.into_iter();
            let mut out = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((k, v));
            }
            out
        }
        Value::Map(pairs) => pairs,
        _ => return None,
    };
    Some(
        pairs
            .into_iter()
            .filter_map(|(k, v)| Some((text(&k)?, bytes(v))))
            .collect(),
    )
}

/// Parses a list of entries (`[[id, [k, v, …]], …]`), as `XCLAIM` and each stream of an
/// `XREADGROUP` reply return them.
pub(crate) fn parse_entries(v: Value) -> Vec<RawEntry> {
    let Value::Array(items) = v else { return Vec::new() };
    items
        .into_iter()
        .filter_map(|e| {
            let Value::Array(mut parts) = e else { return None };
            if parts.len() < 2 {
                return None;
            }
            let f = parts.pop()?;
            let id = StreamId::parse(&text(&parts[0])?)?;
            Some(RawEntry {
                id,
                fields: fields(f),
                deliveries: 1,
            })
        })
        .collect()
}

/// Parses an `XREADGROUP` reply into (stream, entries) pairs; `Nil` (timeout) is empty.
pub(crate) fn parse_read(v: Value) -> Vec<(String, Vec<RawEntry>)> {
    let streams: Vec<(Value, Value)> = match v {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|s| match s {
                Value::Array(mut kv) if kv.len() == 2 => {
                    let entries = kv.pop()?;
                    Some((kv.pop()?, entries))
                }
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs,
        _ => return Vec::new(),
    };
    streams
        .into_iter()
        .filter_map(|(k, v)| Some((text(&k)?, parse_entries(v))))
        .collect()
}

/// Parses the extended `XPENDING` reply: `[[id, consumer, idle_ms, deliveries], …]`.
pub(crate) fn parse_pending(v: Value) -> Vec<(StreamId, String, u64)> {
    let Value::Array(items) = v else { return Vec::new() };
    items
        .into_iter()
        .filter_map(|e| {
            let Value::Array(p) = e else { return None };
            let id = StreamId::parse(&text(p.first()?)?)?;
            let consumer = text(p.get(1)?)?;
            let deliveries = match p.get(3)? {
                Value::Int(n) => *n as u64,
                _ => return None,
            };
            Some((id, consumer, deliveries))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_pads_every_tail_length() {
        let cases: [(&[u8], &str); 5] = [
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
        ];
        for (bytes, expected) in cases {
            assert_eq!(base64(bytes), expected);
        }
        assert_eq!(StreamId { ms: 1, seq: u64::MAX }.next(), StreamId { ms: 2, seq: 0 });
    }
}
