//! What a message is produced as: its data's record view ([`AsRecord`]), what a
//! [`KafkaRecord`] put on it sets overriding it, and the [`KafkaMetadata`] of a message read
//! from Kafka supplying the key and headers its data does not have.

use std::borrow::Cow;

use bytes::Bytes;
use ferroway::connector::AsRecord;
use ferroway::pipeline::Message;

use super::KafkaRecord;
use crate::metadata::KafkaMetadata;

/// A message's data as a record.
pub(super) struct View<'m> {
    pub(super) payload: Cow<'m, [u8]>,
    key: Option<&'m [u8]>,
    headers: &'m [(String, Bytes)],
    timestamp: Option<i64>,
}

impl<'m> View<'m> {
    pub(super) fn of(data: &'m (impl AsRecord + ?Sized)) -> Self {
        View {
            payload: Cow::Borrowed(data.payload()),
            key: data.key(),
            headers: data.headers(),
            timestamp: data.timestamp(),
        }
    }

    pub(super) fn payload(payload: Cow<'m, [u8]>) -> Self {
        View {
            payload,
            key: None,
            headers: &[],
            timestamp: None,
        }
    }
}

/// Where and how one record is produced.
pub(super) struct Target<'m> {
    /// `None`: the sink's topic.
    pub(super) topic: Option<&'m str>,
    pub(super) key: Option<&'m [u8]>,
    pub(super) headers: Vec<(&'m str, &'m [u8])>,
    pub(super) partition: Option<i32>,
    pub(super) timestamp: Option<i64>,
}

impl<'m> Target<'m> {
    /// Each field from the first that has it: the message's [`KafkaRecord`], its data's
    /// view, the [`KafkaMetadata`] it was read with (key and headers only).
    pub(super) fn of<T>(m: &'m Message<T>, view: &View<'m>) -> Self {
        let record = m.metadata::<KafkaRecord>();
        let source = m.metadata::<KafkaMetadata>();
        let headers = match (record, source) {
            (Some(r), _) if !r.headers.is_empty() => {
                r.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect()
            }
            (_, Some(s)) if view.headers.is_empty() => s
                .headers
                .iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.as_deref()?)))
                .collect(),
            _ => view.headers.iter().map(|(k, v)| (k.as_str(), &v[..])).collect(),
        };
        Target {
            topic: record.and_then(|r| r.topic.as_deref()),
            key: record
                .and_then(|r| r.key.as_deref())
                .or(view.key)
                .or_else(|| source.and_then(|s| s.key.as_deref())),
            headers,
            partition: record.and_then(|r| r.partition),
            timestamp: record.and_then(|r| r.timestamp).or(view.timestamp),
        }
    }
}

#[cfg(test)]
mod tests {
    use ferroway::connector::Record;

    use super::*;

    fn source_md() -> KafkaMetadata {
        KafkaMetadata {
            topic: "in".into(),
            partition: 0,
            offset: 1,
            key: Some(b"source-key".to_vec()),
            headers: vec![("h".into(), Some(b"source".to_vec())), ("null".into(), None)],
            timestamp: Some(5),
        }
    }

    #[test]
    fn the_record_view_decides_unless_a_kafka_record_overrides() {
        let mut m = Message::new(Record::new("p").key("k").header("h", "v").timestamp_ms(7));
        m.put_origin(source_md());
        let view = View::of(m.data());
        let t = Target::of(&m, &view);
        assert_eq!((t.key, t.timestamp, t.topic), (Some(&b"k"[..]), Some(7), None));
        assert_eq!(t.headers, [("h", &b"v"[..])]);

        let mut m = Message::new(Record::new("p").key("k").header("h", "v").timestamp_ms(7));
        m.put_metadata(KafkaRecord::new().topic("t").partition(3).header("x", "y"));
        let view = View::of(m.data());
        let t = Target::of(&m, &view);
        assert_eq!(
            (t.key, t.timestamp, t.topic, t.partition),
            (Some(&b"k"[..]), Some(7), Some("t"), Some(3))
        );
        assert_eq!(
            t.headers,
            [("x", &b"y"[..])],
            "headers set on the KafkaRecord replace the data's"
        );

        let mut m = Message::new(Record::new("p").header("h", "v"));
        m.put_origin(source_md());
        m.put_metadata(KafkaRecord::new().key("override").timestamp(9));
        let view = View::of(m.data());
        let t = Target::of(&m, &view);
        assert_eq!((t.key, t.timestamp), (Some(&b"override"[..]), Some(9)));
        assert_eq!(t.headers, [("h", &b"v"[..])]);
    }

    #[test]
    fn plain_payloads_read_from_kafka_keep_their_key_and_headers_not_their_timestamp() {
        let mut m = Message::new(b"p".to_vec());
        m.put_origin(source_md());
        let view = View::of(m.data());
        let t = Target::of(&m, &view);
        assert_eq!((t.key, t.timestamp), (Some(&b"source-key"[..]), None));
        assert_eq!(
            t.headers,
            [("h", &b"source"[..])],
            "a header without a value is not produced"
        );
        let plain = Message::new("p".to_string());
        let view = View::of(plain.data());
        let t = Target::of(&plain, &view);
        assert_eq!((t.key, t.headers.len(), t.timestamp), (None, 0, None));
    }
}
