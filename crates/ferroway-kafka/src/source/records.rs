//! The source's messages as broker-neutral [`Record`]s.

use bytes::Bytes;
use ferroway::BoxError;
use ferroway::connector::{Record, Source};
use ferroway::pipeline::{BoxFuture, Message};
use ferroway::stage::{Emit, Producer};

use super::{KafkaSource, KafkaSourceFactory};
use crate::metadata::KafkaMetadata;

/// A Kafka source of [`Record`]s: made by [`KafkaSourceFactory::records`]. Hand it to
/// [`PipelineBuilder::source`](ferroway::pipeline::PipelineBuilder::source); offsets,
/// commits and the close are those of the factory.
#[derive(Debug, Clone)]
pub struct KafkaRecordSource(pub(super) KafkaSourceFactory);

impl Source for KafkaRecordSource {
    type Data = Record;
    type Producer = KafkaRecordProducer;

    fn producer(&self, _: usize) -> Result<KafkaRecordProducer, BoxError> {
        Ok(KafkaRecordProducer(self.0.create()))
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.0.closed())
    }

    fn connected(&self) -> bool {
        Source::connected(&self.0)
    }
}

/// The producer of a [`KafkaRecordSource`]: a [`KafkaSource`] whose messages are [`Record`]s.
#[derive(Debug)]
pub struct KafkaRecordProducer(KafkaSource);

impl Producer for KafkaRecordProducer {
    type Output = Message<Record>;

    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<Record>>, BoxError> {
        Ok(match self.0.handle_demand(demand).await? {
            Emit::Events(v) => Emit::Events(v.into_iter().map(to_record).collect()),
            Emit::Done(v) => Emit::Done(v.into_iter().map(to_record).collect()),
        })
    }

    async fn prepare_for_draining(&mut self) -> Vec<Message<Record>> {
        let last = self.0.prepare_for_draining().await;
        last.into_iter().map(to_record).collect()
    }
}

/// The payload moves into the record (no copy); key and headers are copied from the
/// message's [`KafkaMetadata`], which stays on it.
fn to_record(m: Message<Vec<u8>>) -> Message<Record> {
    let (key, headers, timestamp) = match m.metadata::<KafkaMetadata>() {
        Some(md) => (
            md.key.as_deref().map(Bytes::copy_from_slice),
            md.headers
                .iter()
                .map(|(name, value)| {
                    (
                        name.clone(),
                        value.as_deref().map(Bytes::copy_from_slice).unwrap_or_default(),
                    )
                })
                .collect(),
            md.timestamp,
        ),
        None => (None, Vec::new(), None),
    };
    m.map(|payload| {
        let mut r = Record::new(payload);
        r.key = key;
        r.headers = headers;
        r.timestamp = timestamp;
        r
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_record_has_the_message_s_payload_key_headers_and_timestamp_and_keeps_its_origin() {
        let mut m = Message::new(b"payload".to_vec());
        let md = KafkaMetadata {
            topic: Arc::from("orders"),
            partition: 2,
            offset: 17,
            key: Some(b"k".to_vec()),
            headers: vec![("a".into(), Some(b"1".to_vec())), ("flag".into(), None)],
            timestamp: Some(1_700_000_000_000),
        };
        m.put_origin(md.clone());
        let payload_at = m.data().as_ptr();
        let r = to_record(m);
        assert_eq!(
            r.data().payload.as_ptr(),
            payload_at,
            "the payload is moved, not copied"
        );
        assert_eq!(
            *r.data(),
            Record::new("payload")
                .key("k")
                .header("a", "1")
                .header("flag", "")
                .timestamp_ms(1_700_000_000_000)
        );
        assert_eq!(r.metadata::<KafkaMetadata>(), Some(&md));
        assert_eq!(r.origin().expect("origin").fields()[2], ("offset", "17".to_string()));
    }
}
