//! The sink: records published with `Publish`, split by count and size, ordering keys
//! published in order, each message's outcome on its own message.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferroway::BoxError;
use ferroway::connector::{AsRecord, Sink};
use ferroway::error::Unavailable;
use ferroway::pipeline::{BoxFuture, DeadLetterInfo, Message};
use ferroway::resilience::Backoff;
use futures_util::StreamExt;
use gcloud_gax::grpc::Code;
use gcloud_googleapis::pubsub::v1::{PublishRequest, PubsubMessage};
use tokio::sync::OnceCell;
use tracing::{debug, warn};

use crate::client::{self, Fault, Publisher, fault};
use crate::error::{OptionsError, SinkError};
use crate::options::{MAX_REQUEST_BYTES, OrderingKey, SinkOptions};

/// The attribute a dead letter's failure reason goes in.
const REASON_ATTRIBUTE: &str = "x-ferroway-dead-letter-reason";

/// Pub/Sub's limits per message.
const MAX_ATTRIBUTES: usize = 100;
const MAX_ATTRIBUTE_KEY: usize = 256;
const MAX_ATTRIBUTE_VALUE: usize = 1024;
const MAX_ORDERING_KEY: usize = 1024;
/// What a message costs in a request besides its fields (field tags and lengths).
const OVERHEAD: usize = 32;

/// Publishes records to a Pub/Sub topic; a [`Sink`] for any [`AsRecord`] data.
///
/// - **Batched:** `Publish` requests of at most [`max_messages`](SinkOptions::max_messages)
///   and [`max_request_bytes`](SinkOptions::max_request_bytes),
///   [`max_in_flight`](SinkOptions::max_in_flight) at once. The pipeline's batcher sets the
///   batching by count and delay (`batch_size`, `batch_timeout`); the sink splits a batch
///   into requests.
/// - **Per message:** a message Pub/Sub cannot take (empty, too large, too many or too long
///   attributes, an attribute value that is not UTF-8) fails alone with the reason; the rest
///   are published. A message is acknowledged upstream only once Pub/Sub returned its id.
/// - **Ordering keys** ([`OrderingKey::FromKey`]): the requests of one key go one after
///   another, in the batch's order. When Pub/Sub refuses one, the key's later messages
///   are not published (they fail), and the key stays paused — its messages fail at once
///   — until [`resume_publish`](PubSubSink::resume_publish), so nothing of that key is
///   published out of order.
/// - **Records:** the payload is the data; headers become attributes; a dead letter carries
///   its failure reason in `x-ferroway-dead-letter-reason`.
/// - **Outages, throttling, server errors:** retried with backoff up to
///   [`max_attempts`](SinkOptions::max_attempts), then [`SinkError::Unavailable`]: the
///   pipeline keeps the batch and writes it again (at-least-once: requests of it that
///   succeeded are published again). No such topic, credentials, permission:
///   [`SinkError::Refused`].
///
/// ```no_run
/// use ferroway::connector::{Record, Source};
/// use ferroway::connector::generator::Generator;
/// use ferroway::pipeline::{Batcher, Forward, Pipeline};
/// use ferroway_pubsub::{ClientOptions, PubSubSink, SinkOptions};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let sink = PubSubSink::new(SinkOptions::new(ClientOptions::new("my-project"), "events"))?;
/// let pipeline = Pipeline::builder("publish", Forward::new())
///     .source(Generator::new(100).map(Record::from))
///     .sink(sink, Batcher::new("pubsub").batch_size(100))
///     .start()
///     .await?;
/// pipeline.join().await?;
/// # Ok(()) }
/// ```
pub struct PubSubSink {
    opts: Arc<SinkOptions>,
    topic: String,
    client: OnceCell<Publisher>,
    /// Ordering keys refused once: nothing more of them is published until resumed.
    paused: Mutex<HashSet<String>>,
    sent: metrics::Counter,
}

impl std::fmt::Debug for PubSubSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSubSink")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// One message as Pub/Sub takes it, with its place in the batch and its size.
struct Entry {
    index: usize,
    message: PubsubMessage,
    size: usize,
}

/// What publishing one key's requests (or one request without a key) came to.
enum Published {
    /// Done: these (batch index, reason) failed.
    Done(Vec<(usize, String)>),
    /// The write fails as a whole.
    Failed(SinkError),
}

/// One request's end.
enum Request {
    Published,
    /// Pub/Sub refused these messages (invalid): the reason.
    Rejected(String),
    Failed(SinkError),
}

impl PubSubSink {
    /// A sink for `opts`; reaches Pub/Sub on the first write.
    ///
    /// # Errors
    /// [`OptionsError`] naming the first invalid option.
    pub fn new(opts: SinkOptions) -> Result<Self, OptionsError> {
        opts.validate()?;
        let topic = opts.topic_name()?;
        Ok(PubSubSink {
            sent: metrics::counter!(crate::metrics::PUBLISHED, "topic" => topic.clone()),
            topic,
            opts: Arc::new(opts),
            client: OnceCell::new(),
            paused: Mutex::new(HashSet::new()),
        })
    }

    /// Resumes publishing `ordering_key` after Pub/Sub refused one of its messages; whether
    /// it was paused.
    ///
    /// ```
    /// use ferroway_pubsub::{ClientOptions, OrderingKey, PubSubSink, SinkOptions};
    /// let opts = SinkOptions::new(ClientOptions::new("my-project"), "events").ordering_key(OrderingKey::FromKey);
    /// let sink = PubSubSink::new(opts).unwrap();
    /// assert!(sink.paused_keys().is_empty());
    /// assert!(!sink.resume_publish("customer-7"));
    /// ```
    pub fn resume_publish(&self, ordering_key: &str) -> bool {
        self.lock_paused().remove(ordering_key)
    }

    /// The ordering keys paused after a refusal.
    pub fn paused_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.lock_paused().iter().cloned().collect();
        keys.sort();
        keys
    }

    fn lock_paused(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.paused.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn unavailable(&self, why: String) -> SinkError {
        SinkError::Unavailable {
            topic: self.topic.clone(),
            source: Unavailable::new(self.opts.client.shown(), why),
        }
    }

    fn refused(&self, step: &'static str, reason: String) -> SinkError {
        SinkError::Refused {
            topic: self.topic.clone(),
            step,
            reason,
        }
    }

    async fn ready(&self) -> Result<&Publisher, SinkError> {
        self.client
            .get_or_try_init(|| async {
                let pool = self.opts.max_in_flight.min(4);
                let client = client::publisher(&self.opts.client, pool).await.map_err(|f| match f {
                    Fault::Refused(why) => self.refused("configuring the client", why),
                    Fault::Transient(why) => self.unavailable(why),
                })?;
                match client.get_topic(self.topic.clone()).await {
                    Ok(_) => Ok(client),
                    Err(status) => Err(match fault(&status) {
                        Fault::Refused(why) => self.refused("opening the topic", why),
                        Fault::Transient(why) => self.unavailable(why),
                    }),
                }
            })
            .await
    }

    /// The message for batch entry `index`, or why Pub/Sub could not take it.
    fn entry<T: AsRecord>(&self, index: usize, m: &Message<T>) -> Result<Entry, String> {
        let r = m.data();
        let reason = m.metadata::<DeadLetterInfo>().map(|i| {
            let mut end = i.reason.len().min(MAX_ATTRIBUTE_VALUE);
            while !i.reason.is_char_boundary(end) {
                end -= 1;
            }
            (REASON_ATTRIBUTE, i.reason[..end].as_bytes())
        });
        let mut attributes = HashMap::new();
        let mut size = r.payload().len() + OVERHEAD;
        for (name, value) in r.headers().iter().map(|(n, v)| (n.as_str(), &v[..])).chain(reason) {
            if name.is_empty() || name.len() > MAX_ATTRIBUTE_KEY || name.starts_with("goog") {
                return Err(format!(
                    "header `{name}` is not a valid Pub/Sub attribute name (1 to {MAX_ATTRIBUTE_KEY} bytes, not starting with `goog`)"
                ));
            }
            let value = std::str::from_utf8(value)
                .map_err(|_| format!("header `{name}` is not UTF-8 text; Pub/Sub attribute values are"))?;
            if value.len() > MAX_ATTRIBUTE_VALUE {
                return Err(format!(
                    "header `{name}` is {} bytes; Pub/Sub takes attribute values of at most {MAX_ATTRIBUTE_VALUE}",
                    value.len()
                ));
            }
            size += name.len() + value.len() + 8;
            attributes.insert(name.to_owned(), value.to_owned());
        }
        if attributes.len() > MAX_ATTRIBUTES {
            return Err(format!(
                "{} headers; Pub/Sub takes at most {MAX_ATTRIBUTES} attributes",
                attributes.len()
            ));
        }
        if r.payload().is_empty() && attributes.is_empty() {
            return Err("an empty payload and no headers: Pub/Sub needs data or at least one attribute".into());
        }
        let ordering_key = match (&self.opts.ordering_key, r.key()) {
            (OrderingKey::FromKey, Some(k)) if !k.is_empty() => {
                let k = std::str::from_utf8(k).map_err(|_| "the key is not UTF-8 text; an ordering key must be")?;
                if k.len() > MAX_ORDERING_KEY {
                    return Err(format!(
                        "the key is {} bytes; an ordering key takes at most {MAX_ORDERING_KEY}",
                        k.len()
                    ));
                }
                k.to_owned()
            }
            _ => String::new(),
        };
        size += ordering_key.len();
        if size > MAX_REQUEST_BYTES {
            return Err(format!(
                "the message is {size} bytes (data and attributes); Pub/Sub takes at most {MAX_REQUEST_BYTES}"
            ));
        }
        Ok(Entry {
            index,
            message: PubsubMessage {
                data: bytes::Bytes::copy_from_slice(r.payload()),
                attributes,
                ordering_key,
                ..PubsubMessage::default()
            },
            size,
        })
    }

    /// Entries in requests of at most `max_messages` and `max_request_bytes`.
    fn requests(&self, entries: Vec<Entry>) -> Vec<Vec<Entry>> {
        let mut requests: Vec<Vec<Entry>> = Vec::new();
        let mut bytes = 0;
        for e in entries {
            match requests.last_mut() {
                Some(r) if r.len() < self.opts.max_messages && bytes + e.size <= self.opts.max_request_bytes => {
                    bytes += e.size;
                    r.push(e);
                }
                _ => {
                    bytes = e.size;
                    requests.push(vec![e]);
                }
            }
        }
        requests
    }

    /// One request, tried again on Pub/Sub's side failures up to `max_attempts`.
    async fn request(&self, client: &Publisher, entries: &[Entry]) -> Request {
        let mut delays = Backoff::exponential(Duration::from_millis(100))
            .cap(Duration::from_secs(5))
            .delays();
        let mut last = String::new();
        for attempt in 1..=self.opts.max_attempts {
            let request = PublishRequest {
                topic: self.topic.clone(),
                messages: entries.iter().map(|e| e.message.clone()).collect(),
            };
            match client.publish(request).await {
                Ok(_) => {
                    self.sent.increment(entries.len() as u64);
                    return Request::Published;
                }
                Err(status) => match fault(&status) {
                    Fault::Refused(why) if status.code() == Code::InvalidArgument => {
                        return Request::Rejected(format!("Pub/Sub refused the message: {why}"));
                    }
                    Fault::Refused(why) => return Request::Failed(self.refused("publishing", why)),
                    Fault::Transient(why) => {
                        debug!(topic = %self.topic, error = %why, attempt, "publish failed on Pub/Sub's side; trying again");
                        last = why;
                    }
                },
            }
            if attempt < self.opts.max_attempts {
                tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(5))).await;
            }
        }
        Request::Failed(self.unavailable(format!(
            "{} messages not published after {} attempts: {last}",
            entries.len(),
            self.opts.max_attempts
        )))
    }

    /// Publishes one key's requests in order (or one request without a key). A request
    /// Pub/Sub refuses as invalid is published again one message at a time, so only the
    /// invalid messages fail; on a key, the first refusal pauses it and fails the rest.
    async fn publish(&self, client: &Publisher, key: Option<String>, requests: Vec<Vec<Entry>>) -> Published {
        let mut failed = Vec::new();
        let mut requests = requests.into_iter();
        while let Some(entries) = requests.next() {
            let why = match self.request(client, &entries).await {
                Request::Published => continue,
                Request::Failed(e) => return Published::Failed(e),
                Request::Rejected(why) => why,
            };
            // How many of `entries` were tried when the key's first refusal came.
            let mut refused_after = None;
            if entries.len() == 1 {
                failed.push((entries[0].index, why));
                refused_after = Some(1);
            } else {
                // Alone, in order: which ones Pub/Sub refuses.
                for (j, e) in entries.iter().enumerate() {
                    match self.request(client, std::slice::from_ref(e)).await {
                        Request::Published => {}
                        Request::Failed(err) => return Published::Failed(err),
                        Request::Rejected(why) => {
                            failed.push((e.index, why));
                            if key.is_some() {
                                refused_after = Some(j + 1);
                                break;
                            }
                        }
                    }
                }
            }
            if let (Some(k), Some(tried)) = (&key, refused_after) {
                self.pause(
                    k,
                    entries.into_iter().skip(tried).chain(requests.flatten()),
                    &mut failed,
                );
                return Published::Done(failed);
            }
        }
        Published::Done(failed)
    }

    /// Pauses `key` and fails `unpublished`, its messages not sent.
    fn pause(&self, key: &str, unpublished: impl Iterator<Item = Entry>, failed: &mut Vec<(usize, String)>) {
        warn!(topic = %self.topic, ordering_key = key, "ordering key paused after a refused publish: resume it with `resume_publish`");
        self.lock_paused().insert(key.to_owned());
        failed.extend(unpublished.map(|e| {
            (
                e.index,
                format!("not published: an earlier message of ordering key `{key}` was refused"),
            )
        }));
    }
}

impl<T: AsRecord + Send + Sync + 'static> Sink<T> for PubSubSink {
    fn write<'a>(&'a self, batch: &'a mut [Message<T>]) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            let client = self.ready().await?;
            let mut failed: Vec<(usize, String)> = Vec::new();
            let mut unkeyed = Vec::new();
            let mut keyed: Vec<(String, Vec<Entry>)> = Vec::new();
            let mut slot: HashMap<String, usize> = HashMap::new();
            {
                let paused = self.lock_paused();
                for (i, m) in batch.iter().enumerate() {
                    let e = match self.entry(i, m) {
                        Ok(e) => e,
                        Err(why) => {
                            failed.push((i, why));
                            continue;
                        }
                    };
                    let key = &e.message.ordering_key;
                    if key.is_empty() {
                        unkeyed.push(e);
                    } else if paused.contains(key) {
                        failed.push((
                            i,
                            format!("ordering key `{key}` is paused after a refused publish (resume it with `resume_publish`)"),
                        ));
                    } else {
                        let at = *slot.entry(key.clone()).or_insert_with(|| {
                            keyed.push((key.clone(), Vec::new()));
                            keyed.len() - 1
                        });
                        keyed[at].1.push(e);
                    }
                }
            }
            let work: Vec<(Option<String>, Vec<Vec<Entry>>)> = self
                .requests(unkeyed)
                .into_iter()
                .map(|r| (None, vec![r]))
                .chain(keyed.into_iter().map(|(k, es)| (Some(k), self.requests(es))))
                .collect();
            let mut published = futures_util::stream::iter(work.into_iter().map(|(k, rs)| self.publish(client, k, rs)))
                .buffer_unordered(self.opts.max_in_flight);
            while let Some(p) = published.next().await {
                match p {
                    Published::Done(refused) => failed.extend(refused),
                    Published::Failed(e) => return Err(e.into()),
                }
            }
            for (i, why) in failed {
                batch[i].fail(why);
            }
            Ok(())
        })
    }
}
