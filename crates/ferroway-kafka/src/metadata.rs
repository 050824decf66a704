//! Where a consumed message came from: topic, partition, offset, key, headers, timestamp.

use std::sync::Arc;

use ferroway::pipeline::{Message, Origin};

/// What the source knows about each message, put on it as its
/// [`Origin`](ferroway::pipeline::Origin) (so dead-letter records name topic, partition and
/// offset); read it with `message.metadata::<KafkaMetadata>()`.
///
/// When a message carrying it reaches a [`KafkaSink`](crate::KafkaSink) without a
/// [`KafkaRecord`](crate::KafkaRecord), the sink reuses its key and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaMetadata {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// The message's offset in its partition.
    pub offset: i64,
    /// The key, if the record has one.
    pub key: Option<Vec<u8>>,
    /// The headers, in order (a header may have no value). Empty when the source was built
    /// with `with_headers(false)`.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// The record's timestamp in milliseconds since the Unix epoch, if it has one.
    pub timestamp: Option<i64>,
}

impl KafkaMetadata {
    /// The first header named `name` that has a value.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, v)| k == name && v.is_some())
            .and_then(|(_, v)| v.as_deref())
    }
}

/// Where the message came from: `topic`, `partition`, `offset`.
impl Origin for KafkaMetadata {
    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("topic", self.topic.to_string()),
            ("partition", self.partition.to_string()),
            ("offset", self.offset.to_string()),
        ]
    }
}

/// A key for [`PipelineBuilder::partition_by`](ferroway::pipeline::PipelineBuilder::partition_by)
/// that keeps each Kafka partition in order: messages of one topic-partition always go to the
/// same processor and batch processor, in offset order.
///
/// ```
/// use ferroway::pipeline::{Handler, Message, Pipeline};
/// # struct H;
/// # impl Handler for H {
/// #     type Data = Vec<u8>;
/// #     async fn handle_message(&self, _: &mut Message<Vec<u8>>) -> Result<(), ferroway::BoxError> { Ok(()) }
/// # }
/// let builder = Pipeline::builder("orders", H).partition_by(ferroway_kafka::partition_key);
/// # let _ = builder;
/// ```
///
/// Messages without [`KafkaMetadata`] all get key 0. Without `partition_by` (or with a key of
/// your own, e.g. the record key) messages of one partition are handled concurrently and may
/// finish out of order: offsets are still committed correctly, only processing order changes.
pub fn partition_key<T>(message: &Message<T>) -> u64 {
    match message.metadata::<KafkaMetadata>() {
        Some(m) => topic_partition_hash(&m.topic, m.partition),
        None => 0,
    }
}

/// FNV-1a of topic and partition: stable across processes and versions.
pub(crate) fn topic_partition_hash(topic: &str, partition: i32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in topic.bytes().chain([0xff]).chain(partition.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(topic: &str, partition: i32) -> Message<()> {
        let mut m = Message::new(());
        m.put_origin(KafkaMetadata {
            topic: topic.into(),
            partition,
            offset: 0,
            key: None,
            headers: vec![("a".into(), None), ("a".into(), Some(b"1".to_vec()))],
            timestamp: None,
        });
        m
    }

    #[test]
    fn partition_key_is_per_topic_partition_and_stable() {
        assert_eq!(partition_key(&msg("t", 1)), partition_key(&msg("t", 1)));
        assert_ne!(partition_key(&msg("t", 1)), partition_key(&msg("t", 2)));
        assert_ne!(partition_key(&msg("t", 1)), partition_key(&msg("u", 1)));
        assert_eq!(partition_key(&Message::new(())), 0);
        // Pinned: the key must not change between releases (it routes partitions to lanes).
        assert_eq!(topic_partition_hash("orders", 3), 0x2034_0a6d_f8fa_e0ca);
        assert_eq!(
            msg("t", 0).metadata::<KafkaMetadata>().unwrap().header("a"),
            Some(&b"1"[..])
        );
        let m = msg("t", 2);
        let fields = m.origin().expect("origin").fields();
        assert_eq!(fields[1], ("partition", "2".to_string()));
    }
}
