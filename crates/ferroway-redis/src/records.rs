//! The source in the broker-neutral form: entries as [`Record`]s.

use std::sync::Arc;

use bytes::Bytes;
use ferroway::BoxError;
use ferroway::connector::{Record, Source};
use ferroway::pipeline::{BoxFuture, Message};
use ferroway::stage::{Emit, Producer};

use crate::entry::{Entry, RedisMetadata};
use crate::factory::RedisSourceFactory;
use crate::source::RedisSource;

/// A Redis source whose messages carry [`Record`]s, for any sink: made by
/// [`RedisSourceFactory::records`]. Each entry becomes:
///
/// | record | from the entry |
/// |---|---|
/// | payload | the entry as one JSON object ([`Entry::to_json`]); or, with [`payload_field`](crate::SourceOptions::payload_field), that field's value |
/// | key | the value of [`key_field`](crate::SourceOptions::key_field), if set and present |
/// | headers | with `payload_field`: every other field but the key's, in order; otherwise none |
/// | timestamp | the milliseconds of the entry id |
///
/// The message keeps [`RedisMetadata`] as its metadata and origin, and its acknowledgement:
/// the entry is `XACK`ed once the pipeline finished with the record. An entry without the
/// `payload_field` arrives failed (its payload then the entry as JSON, so a dead-letter sink
/// shows it).
///
/// ```
/// use ferroway::connector::Source;
/// use ferroway_redis::{RedisSource, SourceOptions};
///
/// let opts = SourceOptions::new("redis://127.0.0.1:6379", "g", ["orders"])
///     .payload_field("body")
///     .key_field("order_id");
/// let records = RedisSource::factory(opts)?.records();
/// # let _ = records;
/// # Ok::<(), ferroway_redis::OptionsError>(())
/// ```
#[derive(Debug)]
pub struct RedisRecords {
    factory: RedisSourceFactory,
    form: Arc<Form>,
}

impl RedisRecords {
    pub(crate) fn new(factory: RedisSourceFactory) -> Self {
        let opts = factory.options();
        let form = Form {
            payload_field: opts.payload_field.clone(),
            key_field: opts.key_field.clone(),
        };
        RedisRecords {
            factory,
            form: Arc::new(form),
        }
    }
}

impl Source for RedisRecords {
    type Data = Record;
    type Producer = RecordProducer;

    fn producer(&self, index: usize) -> Result<RecordProducer, BoxError> {
        Ok(RecordProducer {
            inner: self.factory.producer(index)?,
            form: self.form.clone(),
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.factory.close()
    }

    fn connected(&self) -> bool {
        self.factory.connected()
    }
}

/// The producer of [`RedisRecords`]: a [`RedisSource`] whose entries become [`Record`]s.
#[derive(Debug)]
pub struct RecordProducer {
    inner: RedisSource,
    form: Arc<Form>,
}

impl Producer for RecordProducer {
    type Output = Message<Record>;

    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<Record>>, BoxError> {
        Ok(match self.inner.handle_demand(demand).await? {
            Emit::Events(v) => Emit::Events(self.form.all(v)),
            Emit::Done(v) => Emit::Done(self.form.all(v)),
        })
    }

    async fn prepare_for_draining(&mut self) -> Vec<Message<Record>> {
        let last = self.inner.prepare_for_draining().await;
        self.form.all(last)
    }
}

/// How entries become records.
#[derive(Debug)]
struct Form {
    payload_field: Option<String>,
    key_field: Option<String>,
}

impl Form {
    fn all(&self, messages: Vec<Message<Entry>>) -> Vec<Message<Record>> {
        messages.into_iter().map(|m| self.message(m)).collect()
    }

    fn message(&self, m: Message<Entry>) -> Message<Record> {
        let ms = m.metadata::<RedisMetadata>().map(|md| md.id.ms);
        let mut missing = None;
        let mut m = m.map(|entry| {
            let (record, why) = self.record(entry);
            missing = why;
            record
        });
        if let Some(ms) = ms.and_then(|ms| i64::try_from(ms).ok()) {
            m.data_mut().timestamp = Some(ms);
        }
        if let Some(why) = missing
            && !m.is_failed()
        {
            m.fail(why);
        }
        m
    }

    /// The record of `entry`, and why it fails if it does.
    fn record(&self, entry: Entry) -> (Record, Option<String>) {
        let key = self.key_field.as_deref();
        let Some(name) = self.payload_field.as_deref() else {
            let mut r = Record::new(entry.to_json());
            r.key = key.and_then(|k| entry.get(k)).map(Bytes::copy_from_slice);
            return (r, None);
        };
        if entry.get(name).is_none() {
            let why = format!("the entry has no field `{name}` (payload_field)");
            return (Record::new(entry.to_json()), Some(why));
        }
        let mut r = Record::default();
        let mut payload_seen = false;
        for (field, value) in entry.fields {
            // The first field of each name is the payload or the key; later ones are headers.
            if !payload_seen && field == name {
                payload_seen = true;
                r.payload = Bytes::from(value);
            } else if r.key.is_none() && Some(field.as_str()) == key {
                r.key = Some(Bytes::from(value));
            } else {
                r.headers.push((field, Bytes::from(value)));
            }
        }
        (r, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fields: &[(&str, &str)]) -> Entry {
        Entry {
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
        }
    }

    fn form(payload: Option<&str>, key: Option<&str>) -> Form {
        Form {
            payload_field: payload.map(str::to_owned),
            key_field: key.map(str::to_owned),
        }
    }

    #[test]
    fn by_default_the_payload_is_the_entry_as_json_and_a_key_field_is_copied() {
        let e = entry(&[("order", "o-1"), ("amount", "12")]);
        let (r, why) = form(None, Some("order")).record(e.clone());
        assert_eq!(why, None);
        assert_eq!(r.payload, e.to_json().as_bytes());
        assert_eq!(r.key.as_deref(), Some(&b"o-1"[..]));
        assert!(r.headers.is_empty());
        let (r, _) = form(None, Some("missing")).record(e);
        assert_eq!(r.key, None);
    }

    #[test]
    fn a_payload_field_makes_the_other_fields_headers_and_its_absence_fails_the_entry() {
        let e = entry(&[("h", "1"), ("body", "{}"), ("k", "key"), ("body", "again")]);
        let (r, why) = form(Some("body"), Some("k")).record(e);
        assert_eq!(why, None);
        assert_eq!(&r.payload[..], b"{}");
        assert_eq!(r.key.as_deref(), Some(&b"key"[..]));
        let headers: Vec<(&str, &[u8])> = r.headers.iter().map(|(n, v)| (n.as_str(), &v[..])).collect();
        assert_eq!(headers, [("h", &b"1"[..]), ("body", &b"again"[..])]);

        let e = entry(&[("other", "x")]);
        let (r, why) = form(Some("body"), None).record(e.clone());
        assert_eq!(why.as_deref(), Some("the entry has no field `body` (payload_field)"));
        assert_eq!(r.payload, e.to_json().as_bytes());
    }
}
