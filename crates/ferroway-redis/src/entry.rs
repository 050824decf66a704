//! Stream entries as messages: their fields, their id, and the metadata a message carries.

use std::fmt;
use std::sync::Arc;

use redis::Value;

/// An entry's fields, in order.
pub type Fields = Vec<(String, Vec<u8>)>;

/// The data of a message read from a stream: the entry's fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    /// Field names and values, in the order Redis returned them.
    pub fields: Fields,
}

impl Entry {
    /// The value of field `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice())
    }

    /// The value of field `name`, if it is UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// A stream entry id, `ms-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence part.
    pub seq: u64,
}

impl StreamId {
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
/// `message.metadata::<RedisMetadata>()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisMetadata {
    /// The stream the entry was read from.
    pub stream: Arc<str>,
    /// The entry's id.
    pub id: StreamId,
    /// How many times the group delivered it (1 on first delivery; more after claims).
    pub delivery_count: u64,
}

/// One entry of a read; `fields` is `None` for an entry deleted while pending.
pub(crate) struct RawEntry {
    pub(crate) id: StreamId,
    pub(crate) fields: Option<Fields>,
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
            Some(RawEntry { id, fields: fields(f) })
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
