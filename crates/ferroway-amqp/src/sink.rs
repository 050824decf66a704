//! The sink: publishing with publisher confirms.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use amqprs::channel::{BasicPublishArguments, Channel, ConfirmSelectArguments};
use amqprs::{BasicProperties, FieldTable, FieldValue};
use bytes::Bytes;
use ferroway::BoxError;
use ferroway::connector::{AsRecord, Sink};
use ferroway::error::Unavailable;
use ferroway::pipeline::{BoxFuture, DeadLetterInfo, Message};
use tokio::sync::Notify;
use tracing::{debug, warn};

use crate::connection::{self, ChannelEvents, Closed, Failure, Link, OnChannel};
use crate::delivery::{Delivery, table_of};
use crate::error::{OptionsError, SinkError};
use crate::options::{RoutingKey, SinkOptions};

/// The header a mandatory publish carries so a `basic.return` names the message it returns.
const SEQ_HEADER: &str = "x-ferroway-seq";

/// Publishes to an exchange and waits for the broker's **publisher confirms**: `write`
/// returns — and the pipeline acknowledges the batch upstream — only once the broker has
/// taken responsibility for every message (for durable queues and persistent messages: on
/// disk). A [`Sink`] of anything [`AsRecord`]: the payload is the body, headers become the
/// header table, the timestamp the `timestamp` property, and with
/// [`RoutingKey::FromKey`] the key is the routing key. Also a dead-letter sink (the reason
/// goes in the `x-ferroway-dead-letter-reason` header).
///
/// - A message the broker nacks, or that comes back unroutable with
///   [`mandatory`](SinkOptions::mandatory), is marked failed — the rest of the batch succeeds.
/// - A connection that cannot be opened or is lost, or confirms that do not come within
///   [`confirm_timeout`](SinkOptions::confirm_timeout), is [`SinkError::Unavailable`]: the
///   pipeline keeps the batch and retries it (messages published before the loss may then
///   arrive twice — at-least-once).
/// - One channel per concurrent write (a batcher's `concurrency`), on one connection.
///
/// ```no_run
/// use ferroway::connector::Record;
/// use ferroway::connector::generator::Generator;
/// use ferroway::connector::Source;
/// use ferroway::pipeline::{Batcher, Forward, Pipeline};
/// use ferroway_amqp::{AmqpSink, SinkOptions};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let sink = AmqpSink::new(SinkOptions::new("amqp://guest:guest@127.0.0.1:5672/%2f", "").routing_key("numbers"))?;
/// let pipeline = Pipeline::builder("publish", Forward::new())
///     .source(Generator::new(1_000).map(Record::from))
///     .sink(sink, Batcher::new("rabbit").batch_size(100))
///     .start()
///     .await?;
/// pipeline.join().await?;
/// # Ok(()) }
/// ```
pub struct AmqpSink {
    opts: Arc<SinkOptions>,
    link: tokio::sync::Mutex<Option<Link>>,
    idle: Mutex<Vec<Publisher>>,
    published: metrics::Counter,
}

impl std::fmt::Debug for AmqpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpSink")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// One message to publish.
struct Outgoing<'a> {
    exchange: &'a str,
    routing_key: &'a str,
    payload: &'a [u8],
    headers: Option<FieldTable>,
    timestamp: Option<i64>,
    correlation_id: Option<&'a str>,
}

/// What the broker said about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Waiting,
    Confirmed,
    Refused(String),
}

#[derive(Default)]
struct Pending {
    /// The delivery tag of `outcomes[0]`.
    base: u64,
    outcomes: Vec<Outcome>,
    /// Returned before their confirm: `(index, reason)`.
    returned: Vec<(usize, String)>,
    waiting: usize,
}

#[derive(Default)]
struct Confirms {
    pending: Mutex<Pending>,
    settled: Notify,
    closed: Closed,
}

impl Confirms {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ChannelEvents for Confirms {
    fn closed(&self) -> &Closed {
        &self.closed
    }

    fn confirmed(&self, tag: u64, multiple: bool, ack: bool) {
        let mut p = self.lock();
        let Some(last) = tag.checked_sub(p.base).map(|i| i as usize) else {
            return;
        };
        let first = if multiple { 0 } else { last };
        let end = last.min(p.outcomes.len().saturating_sub(1));
        for i in first..=end {
            if p.outcomes.get(i) != Some(&Outcome::Waiting) {
                continue;
            }
            let returned = p.returned.iter().find(|r| r.0 == i).map(|r| r.1.clone());
            p.outcomes[i] = match (ack, returned) {
                (true, None) => Outcome::Confirmed,
                (true, Some(why)) => Outcome::Refused(format!("returned unroutable: {why}")),
                (false, _) => Outcome::Refused("nacked by the broker (it could not take the message)".into()),
            };
            p.waiting -= 1;
        }
        if p.waiting == 0 {
            self.settled.notify_one();
        }
    }

    fn returned(&self, reply: String, props: &BasicProperties) {
        let seq = props
            .headers()
            .and_then(|h| h.get(&SEQ_HEADER.try_into().ok()?).cloned())
            .and_then(|v| match v {
                FieldValue::l(n) => u64::try_from(n).ok(),
                _ => None,
            });
        let mut p = self.lock();
        if let Some(i) = seq.and_then(|s| s.checked_sub(p.base)) {
            p.returned.push((i as usize, reply));
        }
    }
}

/// A confirm-mode channel and the tag its next publish gets.
struct Publisher {
    channel: Channel,
    confirms: Arc<Confirms>,
    next_tag: u64,
}

impl AmqpSink {
    /// A sink for `opts`; connects on the first write.
    ///
    /// # Errors
    /// [`OptionsError`] naming the first invalid option.
    pub fn new(opts: SinkOptions) -> Result<Self, OptionsError> {
        opts.validate()?;
        let published = metrics::counter!(crate::metrics::PUBLISHED, "exchange" => opts.exchange.clone());
        Ok(AmqpSink {
            opts: Arc::new(opts),
            link: tokio::sync::Mutex::new(None),
            idle: Mutex::default(),
            published,
        })
    }

    /// Publishes one message to the sink's exchange with `routing_key` and waits for its
    /// confirm.
    ///
    /// # Errors
    /// [`SinkError::Unavailable`] when the broker cannot take it now; [`SinkError::Refused`]
    /// when it refused it (returned, nacked, the exchange does not exist).
    pub async fn publish(&self, routing_key: &str, payload: &[u8]) -> Result<(), SinkError> {
        let one = Outgoing {
            exchange: &self.opts.exchange,
            routing_key,
            payload,
            headers: None,
            timestamp: None,
            correlation_id: None,
        };
        self.refused_or_ok(self.send(vec![one]).await?)
    }

    /// Answers an RPC request: publishes `payload` to the request's `reply-to` queue (through
    /// the default exchange, whatever the sink's exchange) with its `correlation-id`, and waits
    /// for the confirm. Direct reply-to (`amq.rabbitmq.reply-to`) works too.
    ///
    /// ```no_run
    /// use ferroway::pipeline::{Handler, Message};
    /// use ferroway_amqp::{AmqpSink, Delivery};
    ///
    /// /// Answers each request with its body upper-cased.
    /// struct Upper(AmqpSink);
    /// impl Handler for Upper {
    ///     type Data = Delivery;
    ///     async fn handle_message(&self, m: &mut Message<Delivery>) -> Result<(), ferroway::BoxError> {
    ///         let reply = m.data().payload.to_ascii_uppercase();
    ///         self.0.reply(m.data(), &reply).await?;
    ///         Ok(())
    ///     }
    /// }
    /// ```
    ///
    /// # Errors
    /// [`SinkError::Refused`] when the request has no `reply-to` or the reply was refused;
    /// [`SinkError::Unavailable`] when the broker cannot take it now.
    pub async fn reply(&self, request: &Delivery, payload: &[u8]) -> Result<(), SinkError> {
        let Some(reply_to) = request.properties.reply_to.as_deref() else {
            return Err(SinkError::Refused {
                exchange: String::new(),
                reason: "the request has no reply-to property".into(),
            });
        };
        let one = Outgoing {
            exchange: "",
            routing_key: reply_to,
            payload,
            headers: None,
            timestamp: None,
            correlation_id: request.properties.correlation_id.as_deref(),
        };
        self.refused_or_ok(self.send(vec![one]).await?)
    }

    fn refused_or_ok(&self, outcomes: Vec<Outcome>) -> Result<(), SinkError> {
        match outcomes.into_iter().next() {
            Some(Outcome::Refused(reason)) => Err(SinkError::Refused {
                exchange: self.opts.exchange.clone(),
                reason,
            }),
            _ => Ok(()),
        }
    }

    fn unavailable(&self, what: &str, why: impl Into<BoxError>) -> SinkError {
        SinkError::Unavailable {
            exchange: self.opts.exchange.clone(),
            source: Unavailable::new(format!("{what} at {}", self.opts.uri), why),
        }
    }

    /// A free confirm-mode channel, opening the connection or a channel as needed.
    async fn publisher(&self) -> Result<Publisher, SinkError> {
        if let Some(p) = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(p);
        }
        let mut link = self.link.lock().await;
        if link.as_ref().is_none_or(|l| !l.conn.is_open()) {
            *link = None;
            match connection::open(&self.opts.uri, &self.opts.connection_name).await {
                Ok(l) => *link = Some(l),
                Err(Failure::Down(why)) => return Err(self.unavailable("connecting", why)),
                Err(Failure::Refused { reason, .. }) => {
                    return Err(SinkError::Refused {
                        exchange: self.opts.exchange.clone(),
                        reason: format!("connection to {} refused: {reason}", self.opts.uri),
                    });
                }
            }
        }
        let Some(l) = link.as_ref() else {
            return Err(self.unavailable("connecting", "no connection"));
        };
        let channel = l
            .conn
            .open_channel(None)
            .await
            .map_err(|e| self.unavailable("opening a channel", e.to_string()))?;
        let confirms = Arc::new(Confirms::default());
        channel
            .register_callback(OnChannel(confirms.clone()))
            .await
            .map_err(|e| self.unavailable("opening a channel", e.to_string()))?;
        channel
            .confirm_select(ConfirmSelectArguments::default())
            .await
            .map_err(|e| self.unavailable("confirm.select", e.to_string()))?;
        Ok(Publisher {
            channel,
            confirms,
            next_tag: 1,
        })
    }

    /// Publishes `items` on one channel and waits for every confirm (or return).
    async fn send(&self, items: Vec<Outgoing<'_>>) -> Result<Vec<Outcome>, SinkError> {
        let mut p = self.publisher().await?;
        {
            let mut pending = p.confirms.lock();
            *pending = Pending {
                base: p.next_tag,
                outcomes: vec![Outcome::Waiting; items.len()],
                returned: Vec::new(),
                waiting: items.len(),
            };
        }
        for (i, item) in items.into_iter().enumerate() {
            let mut props = BasicProperties::default();
            props.with_delivery_mode(if self.opts.persistent { 2 } else { 1 });
            if let Some(t) = &self.opts.content_type {
                props.with_content_type(t);
            }
            if let Some(ts) = item.timestamp.and_then(|ms| u64::try_from(ms / 1000).ok()) {
                props.with_timestamp(ts);
            }
            if let Some(c) = item.correlation_id {
                props.with_correlation_id(c);
            }
            let mut headers = item.headers;
            if self.opts.mandatory
                && let Ok(k) = SEQ_HEADER.try_into()
            {
                headers
                    .get_or_insert_with(FieldTable::new)
                    .insert(k, FieldValue::l((p.next_tag + i as u64) as i64));
            }
            if let Some(h) = headers {
                props.with_headers(h);
            }
            let mut args = BasicPublishArguments::new(item.exchange, item.routing_key);
            args.mandatory(self.opts.mandatory);
            if let Err(e) = p.channel.basic_publish(props, item.payload.to_vec(), args).await {
                return Err(self.lost(&p, "publishing", e.to_string()));
            }
        }
        let n = p.confirms.lock().outcomes.len() as u64;
        p.next_tag += n;
        let deadline = tokio::time::Instant::now() + self.opts.confirm_timeout;
        loop {
            let settled = p.confirms.settled.notified();
            if p.confirms.lock().waiting == 0 {
                break;
            }
            if let Some(reason) = p.confirms.closed.refusal() {
                return Err(SinkError::Refused {
                    exchange: self.opts.exchange.clone(),
                    reason,
                });
            }
            // The channel or connection closing wakes nothing: look again now and then.
            match tokio::time::timeout_at(deadline.min(tokio::time::Instant::now() + POLL), settled).await {
                Ok(()) => {}
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    return Err(self.lost(
                        &p,
                        "waiting for confirms",
                        format!("none within {:?}", self.opts.confirm_timeout),
                    ));
                }
                Err(_) if !p.channel.is_open() => {
                    if let Some(reason) = p.confirms.closed.refusal() {
                        return Err(SinkError::Refused {
                            exchange: self.opts.exchange.clone(),
                            reason,
                        });
                    }
                    let why = p
                        .confirms
                        .closed
                        .get()
                        .map_or_else(|| "channel closed".to_owned(), |(c, t)| format!("{c} {t}"));
                    return Err(self.lost(&p, "waiting for confirms", why));
                }
                Err(_) => {}
            }
        }
        let outcomes = std::mem::take(&mut p.confirms.lock().outcomes);
        let confirmed = outcomes.iter().filter(|o| **o == Outcome::Confirmed).count() as u64;
        self.published.increment(confirmed);
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(p);
        Ok(outcomes)
    }

    /// The channel is done for: it is dropped (not returned to the idle ones).
    fn lost(&self, p: &Publisher, what: &str, why: String) -> SinkError {
        debug!(exchange = %self.opts.exchange, what, %why, "publisher channel dropped");
        let why = p.confirms.closed.get().map_or(why, |(c, t)| format!("{c} {t}"));
        self.unavailable(what, why)
    }
}

/// How often a wait for confirms checks that its channel is still open.
const POLL: Duration = Duration::from_millis(250);

const REASON_HEADER: &str = "x-ferroway-dead-letter-reason";

impl<T: AsRecord + Send + Sync + 'static> Sink<T> for AmqpSink {
    fn write<'a>(&'a self, batch: &'a mut [Message<T>]) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            let default_key = match &self.opts.routing_key {
                RoutingKey::Static(k) => k.as_str(),
                RoutingKey::FromKey { default } => default.as_str(),
            };
            let from_key = matches!(self.opts.routing_key, RoutingKey::FromKey { .. });
            let mut items = Vec::with_capacity(batch.len());
            for m in batch.iter() {
                let r = m.data();
                let routing_key = match r.key().filter(|_| from_key).map(std::str::from_utf8) {
                    Some(Ok(k)) => k,
                    _ => default_key,
                };
                let mut headers = r.headers().to_vec();
                if let Some(info) = m.metadata::<DeadLetterInfo>() {
                    headers.push((REASON_HEADER.to_owned(), Bytes::from(info.reason.to_string())));
                }
                items.push(Outgoing {
                    exchange: &self.opts.exchange,
                    routing_key,
                    payload: r.payload(),
                    headers: table_of(&headers),
                    timestamp: r.timestamp(),
                    correlation_id: None,
                });
            }
            let outcomes = self.send(items).await?;
            let mut refused = 0u64;
            for (m, o) in batch.iter_mut().zip(outcomes) {
                if let Outcome::Refused(reason) = o {
                    refused += 1;
                    m.fail(format_args!("RabbitMQ refused the message: {reason}"));
                }
            }
            if refused > 0 {
                warn!(exchange = %self.opts.exchange, refused, "RabbitMQ refused messages of a batch");
                metrics::counter!(crate::metrics::PUBLISH_FAILED, "exchange" => self.opts.exchange.clone())
                    .increment(refused);
            }
            Ok(())
        })
    }

    fn close(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move {
            let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|p| p.into_inner()));
            for p in idle {
                let _ = p.channel.close().await;
            }
            if let Some(l) = self.link.lock().await.take() {
                let _ = l.conn.close().await;
            }
            Ok(())
        })
    }
}
