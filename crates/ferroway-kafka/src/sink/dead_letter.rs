//! A `KafkaSink` as the pipeline's dead-letter sink.

use ferroway::BoxError;
use ferroway::pipeline::{BoxFuture, DeadLetterInfo, DeadLetterSink, Message};

use super::{KafkaRecord, KafkaSink};
use crate::metadata::KafkaMetadata;

/// Header names the dead-letter sink adds.
pub mod dead_letter_headers {
    /// Why the message failed.
    pub const REASON: &str = "ferroway.dlq.reason";
    /// The pipeline that failed it.
    pub const PIPELINE: &str = "ferroway.dlq.pipeline";
    /// The stage that failed it (`processor` or `batch_processor`).
    pub const STAGE: &str = "ferroway.dlq.stage";
    /// The topic it was consumed from.
    pub const TOPIC: &str = "ferroway.dlq.topic";
    /// The partition it was consumed from.
    pub const PARTITION: &str = "ferroway.dlq.partition";
    /// Its offset there.
    pub const OFFSET: &str = "ferroway.dlq.offset";
}

/// A `KafkaSink` is a dead-letter sink: failed messages are produced to its default topic
/// with their original key and headers, plus the headers of [`dead_letter_headers`] (reason,
/// pipeline, stage, and where they were consumed). `send` succeeds only when the broker has
/// every one of them — only then does the source count them as done.
impl<T: AsRef<[u8]> + Send + Sync + 'static> DeadLetterSink<T> for KafkaSink {
    fn send<'a>(&'a self, messages: &'a mut [Message<T>]) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            use dead_letter_headers as h;
            for m in messages.iter_mut() {
                let mut rec = match (m.metadata::<KafkaRecord>(), m.metadata::<KafkaMetadata>()) {
                    (Some(r), _) => r.clone(),
                    (None, Some(s)) => KafkaRecord {
                        key: s.key.clone(),
                        headers: s
                            .headers
                            .iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
                            .collect(),
                        ..KafkaRecord::default()
                    },
                    (None, None) => KafkaRecord::default(),
                };
                rec.topic = None;
                rec.partition = None;
                if let Some(info) = m.metadata::<DeadLetterInfo>() {
                    rec = rec
                        .header(h::REASON, info.reason.as_bytes())
                        .header(h::PIPELINE, info.pipeline.as_bytes())
                        .header(h::STAGE, info.stage.as_bytes());
                } else if let Some(reason) = m.failure() {
                    rec = rec.header(h::REASON, reason.as_bytes());
                }
                if let Some(s) = m.metadata::<KafkaMetadata>() {
                    let (topic, partition, offset) = (s.topic.to_string(), s.partition, s.offset);
                    rec = rec
                        .header(h::TOPIC, topic)
                        .header(h::PARTITION, partition.to_string())
                        .header(h::OFFSET, offset.to_string());
                }
                m.put_metadata(rec);
            }
            let report = self.send_batch(messages).await;
            if report.failed > 0 {
                return Err(format!(
                    "{} of {} dead letters could not be produced to Kafka",
                    report.failed,
                    messages.len()
                )
                .into());
            }
            Ok(())
        })
    }
}
