//! The sink: records sent with `SendMessageBatch`, split by count and size, each entry's
//! outcome on its own message.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::primitives::Blob;
use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName, SendMessageBatchRequestEntry};
use ferroway::BoxError;
use ferroway::connector::{AsRecord, Sink};
use ferroway::error::Unavailable;
use ferroway::pipeline::{BoxFuture, DeadLetterInfo, Message};
use ferroway::resilience::Backoff;
use futures_util::StreamExt;
use tokio::sync::OnceCell;
use tracing::debug;

use crate::client::{self, Fault};
use crate::error::{OptionsError, SinkError};
use crate::options::{Deduplication, GroupId, SinkOptions};

/// The attribute a dead letter's failure reason goes in.
const REASON_ATTRIBUTE: &str = "x-ferroway-dead-letter-reason";

/// SQS' limits per message and per request.
const MAX_ATTRIBUTES: usize = 10;
const MAX_ENTRIES: usize = 10;

/// Sends records to an SQS queue; a [`Sink`] for any [`AsRecord`] data.
///
/// - **Batched:** `SendMessageBatch` calls of at most 10 entries and
///   [`max_request_bytes`](SinkOptions::max_request_bytes), concurrent on standard queues,
///   one after another on FIFO queues (each group's order kept).
/// - **Per message:** an entry SQS refuses (too large, invalid characters, too many
///   attributes) marks exactly its message failed; entries SQS failed on its side are sent
///   again first. A message is acknowledged upstream only once SQS returned its id.
/// - **Records:** the payload is the body (UTF-8 text, as SQS requires); headers become
///   message attributes (`String`, or `Binary` when not UTF-8); on FIFO queues the key is
///   the `MessageGroupId` ([`GroupId`]) and deduplication is content-based or from a header
///   ([`Deduplication`]).
/// - **Outages, throttling, 5xx:** retried with backoff up to
///   [`max_attempts`](SinkOptions::max_attempts), then [`SinkError::Unavailable`]: the
///   pipeline keeps the batch and writes it again (at-least-once; on FIFO queues the
///   deduplication id drops the repeats).
///
/// ```no_run
/// use ferroway::connector::{Record, Source};
/// use ferroway::connector::generator::Generator;
/// use ferroway::pipeline::{Batcher, Forward, Pipeline};
/// use ferroway_sqs::{SinkOptions, SqsSink};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let sink = SqsSink::new(SinkOptions::new("https://sqs.eu-west-1.amazonaws.com/123456789012/orders"))?;
/// let pipeline = Pipeline::builder("send", Forward::new())
///     .source(Generator::new(100).map(Record::from))
///     .sink(sink, Batcher::new("sqs").batch_size(10))
///     .start()
///     .await?;
/// pipeline.join().await?;
/// # Ok(()) }
/// ```
pub struct SqsSink {
    opts: Arc<SinkOptions>,
    /// The client and the queue's `MaximumMessageSize`, once SQS answered.
    ready: OnceCell<(Client, usize)>,
    queue: String,
    sent: metrics::Counter,
}

impl std::fmt::Debug for SqsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqsSink")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// One message as an entry, with its place in the batch and its size as SQS counts it.
struct Entry {
    index: usize,
    entry: SendMessageBatchRequestEntry,
    size: usize,
}

/// How a chunk's call ended.
enum Sent {
    /// Every entry answered: these (batch index, reason) were refused.
    Done(Vec<(usize, String)>),
    /// The call could not be made.
    Failed(SinkError),
}

impl SqsSink {
    /// A sink for `opts`; reaches SQS on the first write.
    ///
    /// # Errors
    /// [`OptionsError`] naming the first invalid option.
    pub fn new(opts: SinkOptions) -> Result<Self, OptionsError> {
        opts.validate()?;
        Ok(SqsSink {
            queue: opts.queue.queue_name().to_owned(),
            sent: metrics::counter!(crate::metrics::SENT, "queue" => opts.queue.queue_name().to_owned()),
            opts: Arc::new(opts),
            ready: OnceCell::new(),
        })
    }

    fn unavailable(&self, why: String) -> SinkError {
        SinkError::Unavailable {
            queue: self.queue.clone(),
            source: Unavailable::new(client::endpoint_shown(&self.opts.queue), why),
        }
    }

    fn refused(&self, step: &'static str, reason: String) -> SinkError {
        SinkError::Refused {
            queue: self.queue.clone(),
            step,
            reason,
        }
    }

    async fn ready(&self) -> Result<&(Client, usize), SinkError> {
        self.ready
            .get_or_try_init(|| async {
                let client = client::build(&self.opts.queue, Duration::from_secs(30))
                    .await
                    .map_err(|f| self.refused("configuring the client", f.text().to_owned()))?;
                let asked = client
                    .get_queue_attributes()
                    .queue_url(&self.opts.queue.queue_url)
                    .attribute_names(QueueAttributeName::MaximumMessageSize)
                    .send()
                    .await;
                match asked {
                    Ok(out) => {
                        let max = out
                            .attributes
                            .and_then(|a| {
                                a.get(&QueueAttributeName::MaximumMessageSize)
                                    .and_then(|v| v.parse().ok())
                            })
                            .unwrap_or(262_144);
                        Ok((client, max))
                    }
                    Err(e) => Err(match client::fault(&e) {
                        Fault::Refused(why) => self.refused("reading the queue's attributes", why),
                        Fault::Transient(why) => self.unavailable(why),
                    }),
                }
            })
            .await
    }

    /// The entry for message `index`, or why SQS could not take it.
    fn entry<T: AsRecord>(&self, index: usize, m: &Message<T>, max_size: usize) -> Result<Entry, String> {
        let r = m.data();
        let body = std::str::from_utf8(r.payload())
            .map_err(|e| format!("the payload is not UTF-8 text ({e}); SQS message bodies are text"))?;
        if let Some((at, c)) = body.char_indices().find(|(_, c)| !allowed(*c)) {
            return Err(format!(
                "the payload has character U+{:04X} at byte {at}, which SQS does not allow",
                c as u32
            ));
        }
        let mut size = body.len();
        let mut e = SendMessageBatchRequestEntry::builder()
            .id(String::new())
            .message_body(body);
        let reason = m
            .metadata::<DeadLetterInfo>()
            .map(|i| (REASON_ATTRIBUTE, i.reason.as_bytes()));
        let headers = r.headers().iter().map(|(n, v)| (n.as_str(), &v[..])).chain(reason);
        let mut count = 0;
        for (name, value) in headers {
            count += 1;
            if count > MAX_ATTRIBUTES {
                return Err(format!(
                    "more than {MAX_ATTRIBUTES} headers; SQS takes at most {MAX_ATTRIBUTES} message attributes"
                ));
            }
            check_attribute_name(name)?;
            let (kind, v) = match std::str::from_utf8(value) {
                Ok(s) => (
                    "String",
                    MessageAttributeValue::builder().data_type("String").string_value(s),
                ),
                Err(_) => (
                    "Binary",
                    MessageAttributeValue::builder()
                        .data_type("Binary")
                        .binary_value(Blob::new(value)),
                ),
            };
            size += name.len() + kind.len() + value.len();
            e = e.message_attributes(name, v.build().map_err(|e| format!("attribute `{name}`: {e}"))?);
        }
        if self.opts.queue.is_fifo() {
            let group = match &self.opts.group_id {
                GroupId::Fixed(g) => g.clone(),
                GroupId::FromKey => match r.key().map(std::str::from_utf8) {
                    Some(Ok(k)) if !k.is_empty() => k.to_owned(),
                    Some(_) => return Err("the key is not UTF-8 text; a FIFO group id must be".into()),
                    None => {
                        return Err("no key: a FIFO queue needs a group id (the key, or the `group_id` option)".into());
                    }
                },
            };
            e = e.message_group_id(group);
            if let Deduplication::FromHeader(h) = &self.opts.deduplication {
                let v = r
                    .headers()
                    .iter()
                    .find(|(n, _)| n == h)
                    .and_then(|(_, v)| std::str::from_utf8(v).ok())
                    .ok_or_else(|| format!("no UTF-8 header `{h}` to take the deduplication id from"))?;
                e = e.message_deduplication_id(v);
            }
        } else if let Some(d) = self.opts.delay {
            e = e.delay_seconds(d.as_secs() as i32);
        }
        if size > max_size {
            return Err(format!(
                "the message is {size} bytes (body and attributes); the queue takes at most {max_size} (MaximumMessageSize)"
            ));
        }
        Ok(Entry {
            index,
            entry: e.build().map_err(|e| e.to_string())?,
            size,
        })
    }

    /// Sends one chunk, entries SQS failed on its side again, up to `max_attempts`.
    async fn send(&self, client: &Client, mut chunk: Vec<Entry>) -> Sent {
        let mut refused = Vec::new();
        let mut delays = Backoff::exponential(Duration::from_millis(100))
            .cap(Duration::from_secs(5))
            .delays();
        let mut last = String::new();
        for _ in 0..self.opts.max_attempts {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let mut entry = e.entry.clone();
                    entry.id = i.to_string();
                    entry
                })
                .collect();
            let call = client
                .send_message_batch()
                .queue_url(&self.opts.queue.queue_url)
                .set_entries(Some(entries))
                .send()
                .await;
            match call {
                Ok(out) => {
                    self.sent.increment(out.successful.len() as u64);
                    let mut again = Vec::new();
                    let mut entries: Vec<Option<Entry>> = chunk.into_iter().map(Some).collect();
                    for f in out.failed {
                        let Some(e) = f.id.parse::<usize>().ok().and_then(|i| entries.get_mut(i)?.take()) else {
                            continue;
                        };
                        let why = format!("{}: {}", f.code, f.message.unwrap_or_default());
                        if !client::entry_retryable(&f.code, f.sender_fault) {
                            refused.push((e.index, format!("SQS refused the message: {why}")));
                        } else {
                            last = why;
                            again.push(e);
                        }
                    }
                    if again.is_empty() {
                        return Sent::Done(refused);
                    }
                    chunk = again;
                }
                Err(e) => match client::fault(&e) {
                    Fault::Refused(why) => return Sent::Failed(self.refused("sending", why)),
                    Fault::Transient(why) => last = why,
                },
            }
            debug!(queue = %self.queue, error = %last, "send failed on SQS' side; trying again");
            tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(5))).await;
        }
        Sent::Failed(self.unavailable(format!(
            "{} messages not sent after {} attempts: {last}",
            chunk.len(),
            self.opts.max_attempts
        )))
    }

    /// Entries in calls of at most ten entries and `max_request_bytes` (a larger entry alone).
    fn chunks(&self, entries: Vec<Entry>) -> Vec<Vec<Entry>> {
        let mut chunks: Vec<Vec<Entry>> = Vec::new();
        let mut bytes = 0;
        for e in entries {
            match chunks.last_mut() {
                Some(c) if c.len() < MAX_ENTRIES && bytes + e.size <= self.opts.max_request_bytes => {
                    bytes += e.size;
                    c.push(e);
                }
                _ => {
                    bytes = e.size;
                    chunks.push(vec![e]);
                }
            }
        }
        chunks
    }
}

impl<T: AsRecord + Send + Sync + 'static> Sink<T> for SqsSink {
    fn write<'a>(&'a self, batch: &'a mut [Message<T>]) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            let (client, max_size) = self.ready().await?;
            let mut failed: Vec<(usize, String)> = Vec::new();
            let mut entries = Vec::with_capacity(batch.len());
            for (i, m) in batch.iter().enumerate() {
                match self.entry(i, m, *max_size) {
                    Ok(e) => entries.push(e),
                    Err(why) => failed.push((i, why)),
                }
            }
            let chunks = self.chunks(entries);
            // FIFO: one call at a time, so each group's messages arrive in order.
            let concurrency = if self.opts.queue.is_fifo() {
                1
            } else {
                self.opts.max_in_flight
            };
            let mut sends =
                futures_util::stream::iter(chunks.into_iter().map(|c| self.send(client, c))).buffered(concurrency);
            while let Some(sent) = sends.next().await {
                match sent {
                    Sent::Done(refused) => failed.extend(refused),
                    Sent::Failed(e) => return Err(e.into()),
                }
            }
            for (i, why) in failed {
                batch[i].fail(why);
            }
            Ok(())
        })
    }
}

/// Characters SQS allows in a body: `#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD |
/// #x10000-#x10FFFF`.
fn allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

fn check_attribute_name(name: &str) -> Result<(), String> {
    let lower = name.to_ascii_lowercase();
    let ok = !name.is_empty()
        && name.len() <= 256
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && !lower.starts_with("aws.")
        && !lower.starts_with("amazon.");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "header `{name}` is not a valid SQS attribute name (1-256 of A-Z a-z 0-9 _ - ., no leading, trailing or double `.`, no AWS./Amazon. prefix)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_names_follow_sqs_rules() {
        assert!(check_attribute_name("trace-id").is_ok());
        assert!(check_attribute_name("a.b_c-9").is_ok());
        for bad in ["", "AWS.x", "amazon.y", ".a", "a.", "a..b", "a b", "é"] {
            assert!(check_attribute_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn body_characters_follow_sqs_rules() {
        assert!("héllo\t\n😀".chars().all(allowed));
        assert!(!allowed('\u{0}'));
        assert!(!allowed('\u{FFFE}'));
    }
}
