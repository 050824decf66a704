//! A `KafkaSink` as the pipeline's dead-letter sink.

use ferroway::BoxError;
use ferroway::connector::{AsRecord, Sink};
use ferroway::pipeline::{BoxFuture, DeadLetterInfo, Message};

use super::view::{Target, View};
use super::{KafkaRecord, KafkaSink};

/// Header names the dead-letter sink adds.
pub mod dead_letter_headers {
    /// Why the message failed.
    pub const REASON: &str = "ferroway.dlq.reason";
    /// The pipeline that failed it.
    pub const PIPELINE: &str = "ferroway.dlq.pipeline";
    /// The stage that failed it (`processor` or `batch_processor`).
    pub const STAGE: &str = "ferroway.dlq.stage";
    /// Where the message came from: one header per field of its
    /// [`Origin`](ferroway::pipeline::Origin), named this prefix and the field (e.g.
    /// `ferroway.dlq.stream` and `ferroway.dlq.id` for a Redis entry).
    pub const ORIGIN_PREFIX: &str = "ferroway.dlq.";
    /// The topic it was consumed from (a [`KafkaSource`](crate::KafkaSource) message's origin).
    pub const TOPIC: &str = "ferroway.dlq.topic";
    /// The partition it was consumed from.
    pub const PARTITION: &str = "ferroway.dlq.partition";
    /// Its offset there.
    pub const OFFSET: &str = "ferroway.dlq.offset";
}

/// Marks a message whose dead-letter record is built: a retry after an outage does not add
/// the headers twice.
struct Prepared;

/// A `KafkaSink` is a [`Sink`] of anything [`AsRecord`]: [`send_batch`](KafkaSink::send_batch)
/// behind a batcher, records Kafka refuses marked failed, an outage returned as an error the
/// pipeline waits out.
///
/// As the dead-letter sink, failed messages are produced to its default topic with their
/// record's key, headers and timestamp, plus the headers of [`dead_letter_headers`]: reason,
/// pipeline, stage, and where the message came from — one `ferroway.dlq.<field>` header per
/// field of its [`Origin`](ferroway::pipeline::Origin) (`topic`, `partition` and `offset` for
/// a message from a [`KafkaSource`](crate::KafkaSource)). A dead letter counts as done only
/// once the broker has it.
impl<T: AsRecord + Send + Sync + 'static> Sink<T> for KafkaSink {
    fn write<'a>(&'a self, messages: &'a mut [Message<T>]) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            for m in messages
                .iter_mut()
                .filter(|m| m.metadata::<DeadLetterInfo>().is_some() && m.metadata::<Prepared>().is_none())
            {
                let rec = dead_letter_record(m);
                m.put_metadata(rec);
                m.put_metadata(Prepared);
            }
            self.send_batch(messages).await?;
            Ok(())
        })
    }
}

/// The record a dead letter is produced as: the message's own record to the sink's topic, with
/// why and where from.
fn dead_letter_record<T: AsRecord>(m: &Message<T>) -> KafkaRecord {
    use dead_letter_headers as h;
    let target = Target::of(m, &View::of(m.data()));
    let mut rec = KafkaRecord {
        topic: None,
        key: target.key.map(<[u8]>::to_vec),
        headers: target
            .headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
            .collect(),
        partition: None,
        timestamp: target.timestamp,
    };
    if let Some(info) = m.metadata::<DeadLetterInfo>() {
        rec = rec
            .header(h::REASON, info.reason.as_bytes())
            .header(h::PIPELINE, info.pipeline.as_bytes())
            .header(h::STAGE, info.stage.as_bytes());
    } else if let Some(reason) = m.failure() {
        rec = rec.header(h::REASON, reason.as_bytes());
    }
    if let Some(origin) = m.origin() {
        for (field, value) in origin.fields() {
            rec = rec.header(format!("{}{field}", h::ORIGIN_PREFIX), value);
        }
    }
    rec
}
