//! What the source emits: the message's content as data, where it came from as metadata.

use std::sync::Arc;

use bytes::Bytes;
use ferroway::connector::{AsRecord, Record};
use ferroway::pipeline::Origin;

/// One SQS message's content: the body, the message attributes (as headers), the FIFO
/// group id (as key) and when it was sent (as timestamp) — so it is a record for any sink
/// ([`AsRecord`]). Receipt handle, ids and counts are in [`SqsMetadata`].
///
/// ```
/// use ferroway::connector::AsRecord;
/// use ferroway_sqs::SqsMessage;
/// let m = SqsMessage::new("hello").attribute("trace", "abc").group_id("customer-7");
/// assert_eq!(m.payload(), b"hello");
/// assert_eq!(m.key(), Some(&b"customer-7"[..]));
/// assert_eq!(m.to_record().header_value("trace"), Some(&b"abc"[..]));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SqsMessage {
    /// The body (SQS bodies are text).
    pub body: String,
    /// Message attributes in name order: `String` and `Number` values as their text,
    /// `Binary` values as bytes.
    pub attributes: Vec<(String, Bytes)>,
    /// FIFO queues: the message group.
    pub group_id: Option<String>,
    /// When it was sent, in milliseconds since the Unix epoch (if `SentTimestamp` was
    /// requested).
    pub sent_timestamp: Option<i64>,
}

impl SqsMessage {
    /// A message of `body` alone.
    pub fn new(body: impl Into<String>) -> Self {
        SqsMessage {
            body: body.into(),
            ..SqsMessage::default()
        }
    }

    /// With one more attribute.
    pub fn attribute(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.attributes.push((name.into(), value.into()));
        self
    }

    /// With a group id.
    pub fn group_id(mut self, group: impl Into<String>) -> Self {
        self.group_id = Some(group.into());
        self
    }

    /// The broker-neutral record: body, group id as key, attributes as headers.
    pub fn to_record(&self) -> Record {
        Record {
            payload: Bytes::copy_from_slice(self.body.as_bytes()),
            key: self.group_id.as_ref().map(|g| Bytes::copy_from_slice(g.as_bytes())),
            headers: self.attributes.clone(),
            timestamp: self.sent_timestamp,
        }
    }
}

impl AsRecord for SqsMessage {
    fn payload(&self) -> &[u8] {
        self.body.as_bytes()
    }
    fn key(&self) -> Option<&[u8]> {
        self.group_id.as_deref().map(str::as_bytes)
    }
    fn headers(&self) -> &[(String, Bytes)] {
        &self.attributes
    }
    fn timestamp(&self) -> Option<i64> {
        self.sent_timestamp
    }
}

/// Where a message came from: its origin metadata
/// ([`Message::metadata`](ferroway::pipeline::Message::metadata)). Attributes not requested are
/// `None`.
///
/// ```
/// use ferroway::pipeline::Message;
/// use ferroway_sqs::{SqsMessage, SqsMetadata};
/// fn times_received(m: &Message<SqsMessage>) -> u32 {
///     m.metadata::<SqsMetadata>().and_then(|o| o.receive_count).unwrap_or(1)
/// }
/// # let _ = times_received;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsMetadata {
    /// The queue URL.
    pub queue_url: Arc<str>,
    /// The message id SQS gave it.
    pub message_id: String,
    /// The receipt handle of this receive (what deletes it).
    pub receipt_handle: String,
    /// `ApproximateReceiveCount`: this receive included.
    pub receive_count: Option<u32>,
    /// `SentTimestamp`, in milliseconds since the Unix epoch.
    pub sent_timestamp: Option<i64>,
    /// `ApproximateFirstReceiveTimestamp`, in milliseconds since the Unix epoch.
    pub first_receive_timestamp: Option<i64>,
    /// FIFO: `MessageGroupId`.
    pub group_id: Option<String>,
    /// FIFO: `MessageDeduplicationId`.
    pub deduplication_id: Option<String>,
    /// FIFO: `SequenceNumber`.
    pub sequence_number: Option<String>,
    /// `SenderId`.
    pub sender_id: Option<String>,
}

impl Origin for SqsMetadata {
    fn fields(&self) -> Vec<(&'static str, String)> {
        let mut f = vec![
            ("queue_url", self.queue_url.to_string()),
            ("message_id", self.message_id.clone()),
        ];
        if let Some(n) = self.receive_count {
            f.push(("receive_count", n.to_string()));
        }
        if let Some(g) = &self.group_id {
            f.push(("group_id", g.clone()));
        }
        f
    }
}

/// Splits an SDK message into data and metadata; `None` without a receipt handle (SQS always
/// sends one).
pub(crate) fn split(queue_url: &Arc<str>, m: aws_sdk_sqs::types::Message) -> Option<(SqsMessage, SqsMetadata)> {
    use aws_sdk_sqs::types::MessageSystemAttributeName as A;
    let mut system = m.attributes.unwrap_or_default();
    let mut take = |name: A| system.remove(&name);
    let meta = SqsMetadata {
        queue_url: queue_url.clone(),
        message_id: m.message_id.unwrap_or_default(),
        receipt_handle: m.receipt_handle?,
        receive_count: take(A::ApproximateReceiveCount).and_then(|v| v.parse().ok()),
        sent_timestamp: take(A::SentTimestamp).and_then(|v| v.parse().ok()),
        first_receive_timestamp: take(A::ApproximateFirstReceiveTimestamp).and_then(|v| v.parse().ok()),
        group_id: take(A::MessageGroupId),
        deduplication_id: take(A::MessageDeduplicationId),
        sequence_number: take(A::SequenceNumber),
        sender_id: take(A::SenderId),
    };
    let mut attributes: Vec<(String, Bytes)> = m
        .message_attributes
        .unwrap_or_default()
        .into_iter()
        .map(|(name, v)| {
            let value = match (v.string_value, v.binary_value) {
                (Some(s), _) => Bytes::from(s),
                (None, Some(b)) => Bytes::from(b.into_inner()),
                (None, None) => Bytes::new(),
            };
            (name, value)
        })
        .collect();
    attributes.sort_by(|a, b| a.0.cmp(&b.0));
    let data = SqsMessage {
        body: m.body.unwrap_or_default(),
        attributes,
        group_id: meta.group_id.clone(),
        sent_timestamp: meta.sent_timestamp,
    };
    Some((data, meta))
}

impl From<SqsMessage> for Record {
    fn from(m: SqsMessage) -> Self {
        Record {
            payload: Bytes::from(m.body),
            key: m.group_id.map(Bytes::from),
            headers: m.attributes,
            timestamp: m.sent_timestamp,
        }
    }
}
