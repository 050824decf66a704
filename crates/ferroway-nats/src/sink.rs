//! The sink: core publishing (flushed) or JetStream publishing (publish acks); the request
//! helper.

use std::time::Duration;

use async_nats::Client;
use async_nats::jetstream::context::PublishErrorKind;
use bytes::Bytes;
use ferroway::BoxError;
use ferroway::connector::{AsRecord, Sink};
use ferroway::error::Unavailable;
use ferroway::pipeline::{BoxFuture, DeadLetterInfo, Message};
use tokio::sync::OnceCell;
use tracing::warn;

use crate::error::{OptionsError, SinkError};
use crate::message::{NatsMessage, header_map};
use crate::options::SinkOptions;

const REASON_HEADER: &str = "Ferroway-Dead-Letter-Reason";

/// Publishes to a subject. A [`Sink`] of anything [`AsRecord`]: payload as body, headers as
/// NATS headers; also a dead-letter sink (the reason in the `Ferroway-Dead-Letter-Reason`
/// header).
///
/// - **JetStream** ([`SinkOptions::jetstream`]): every message of a batch is published, then
///   every publish ack awaited — the pipeline acknowledges upstream only once a stream stored
///   each one. A message the stream refuses (too large, a wrong expected sequence) is marked
///   failed; no stream for the subject, or no ack within
///   [`ack_timeout`](SinkOptions::ack_timeout), is [`SinkError::Unavailable`] and the batch
///   is retried — with [`key_as_message_id`](SinkOptions::key_as_message_id) (or a record's
///   own `Nats-Msg-Id` header) the stream drops what a retry sends twice.
/// - **Core NATS:** published and flushed to the server before `write` returns; core NATS
///   itself is at-most-once toward subscribers.
///
/// ```no_run
/// use ferroway::connector::{Record, Source};
/// use ferroway::connector::generator::Generator;
/// use ferroway::pipeline::{Batcher, Forward, Pipeline};
/// use ferroway_nats::{NatsSink, SinkOptions};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let sink = NatsSink::new(SinkOptions::new("nats://127.0.0.1:4222", "numbers").jetstream(true))?;
/// Pipeline::builder("publish", Forward::new())
///     .source(Generator::new(1_000).map(Record::from))
///     .sink(sink, Batcher::new("nats").batch_size(100))
///     .start()
///     .await?
///     .join()
///     .await?;
/// # Ok(()) }
/// ```
pub struct NatsSink {
    opts: SinkOptions,
    client: OnceCell<Client>,
    published: metrics::Counter,
}

impl std::fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSink")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl NatsSink {
    /// A sink for `opts`; connects on the first write.
    ///
    /// # Errors
    /// [`OptionsError`] naming the first invalid option.
    pub fn new(opts: SinkOptions) -> Result<Self, OptionsError> {
        opts.validate()?;
        Ok(NatsSink {
            published: metrics::counter!(crate::metrics::PUBLISHED, "subject" => opts.subject.clone()),
            opts,
            client: OnceCell::new(),
        })
    }

    fn unavailable(&self, what: &str, why: impl Into<BoxError>) -> SinkError {
        SinkError::Unavailable {
            subject: self.opts.subject.clone(),
            source: Unavailable::new(format!("{what} at {}", self.opts.url), why),
        }
    }

    async fn client(&self) -> Result<&Client, SinkError> {
        self.client
            .get_or_try_init(|| async {
                crate::connection::connect(&self.opts.url, &self.opts.name, 1024)
                    .await
                    .map_err(|e| self.unavailable("connecting", e))
            })
            .await
    }

    /// Publishes one message to `subject` (JetStream or core, as the sink is set) and waits
    /// for its publish ack or flush.
    ///
    /// # Errors
    /// [`SinkError::Unavailable`] when it could not be delivered now.
    pub async fn publish(&self, subject: &str, payload: &[u8]) -> Result<(), SinkError> {
        let mut one = [Message::new(NatsMessage::new(subject, Bytes::copy_from_slice(payload)))];
        self.send(&mut one, |_| subject.to_owned()).await?;
        match one[0].failure() {
            Some(why) => Err(self.unavailable("publishing", why.to_owned())),
            None => Ok(()),
        }
    }

    /// Sends a core NATS request and waits up to `timeout` for the reply.
    ///
    /// # Errors
    /// [`SinkError::Unavailable`] when no reply came (no responder, timeout, no connection).
    pub async fn request(&self, subject: &str, payload: &[u8], timeout: Duration) -> Result<NatsMessage, SinkError> {
        let client = self.client().await?;
        let request = client.request(subject.to_owned(), Bytes::copy_from_slice(payload));
        match tokio::time::timeout(timeout, request).await {
            Ok(Ok(reply)) => Ok(NatsMessage::from_client(reply)),
            Ok(Err(e)) => Err(self.unavailable("requesting", e.to_string())),
            Err(_) => Err(self.unavailable("requesting", format!("no reply within {timeout:?}"))),
        }
    }

    fn subject_of<T: AsRecord>(&self, r: &T) -> String {
        match r
            .key()
            .filter(|_| self.opts.key_as_subject_suffix)
            .map(std::str::from_utf8)
        {
            Some(Ok(k)) if !k.is_empty() => format!("{}.{k}", self.opts.subject),
            _ => self.opts.subject.clone(),
        }
    }

    async fn send<T: AsRecord>(
        &self,
        batch: &mut [Message<T>],
        subject_of: impl Fn(&T) -> String,
    ) -> Result<(), SinkError> {
        let client = self.client().await?.clone();
        let headers_of = |m: &Message<T>| {
            let r = m.data();
            let mut headers = r.headers().to_vec();
            if self.opts.key_as_message_id
                && let Some(k) = r.key()
                && !headers.iter().any(|(n, _)| n == "Nats-Msg-Id")
            {
                headers.push(("Nats-Msg-Id".to_owned(), Bytes::copy_from_slice(k)));
            }
            if let Some(info) = m.metadata::<DeadLetterInfo>() {
                headers.push((REASON_HEADER.to_owned(), Bytes::from(info.reason.to_string())));
            }
            header_map(&headers)
        };
        if !self.opts.jetstream {
            for m in batch.iter() {
                let payload = Bytes::copy_from_slice(m.data().payload());
                let subject = subject_of(m.data());
                let sent = match headers_of(m) {
                    Some(h) => client.publish_with_headers(subject, h, payload).await,
                    None => client.publish(subject, payload).await,
                };
                sent.map_err(|e| self.unavailable("publishing", e.to_string()))?;
            }
            tokio::time::timeout(self.opts.ack_timeout, client.flush())
                .await
                .map_err(|_| self.unavailable("flushing", format!("not flushed within {:?}", self.opts.ack_timeout)))?
                .map_err(|e| self.unavailable("flushing", e.to_string()))?;
            self.published.increment(batch.len() as u64);
            return Ok(());
        }
        let js = async_nats::jetstream::new(client);
        let mut acks = Vec::with_capacity(batch.len());
        for m in batch.iter() {
            let payload = Bytes::copy_from_slice(m.data().payload());
            let subject = subject_of(m.data());
            let sent = match headers_of(m) {
                Some(h) => js.publish_with_headers(subject, h, payload).await,
                None => js.publish(subject, payload).await,
            };
            acks.push(sent.map_err(|e| self.unavailable("publishing", e.to_string()))?);
        }
        let deadline = tokio::time::Instant::now() + self.opts.ack_timeout;
        let mut stored = 0u64;
        let mut refused = 0u64;
        for (m, ack) in batch.iter_mut().zip(acks) {
            match tokio::time::timeout_at(deadline, ack).await {
                Ok(Ok(_)) => stored += 1,
                Ok(Err(e)) => match e.kind() {
                    PublishErrorKind::MaxPayloadExceeded
                    | PublishErrorKind::WrongLastMessageId
                    | PublishErrorKind::WrongLastSequence => {
                        refused += 1;
                        m.fail(format_args!("the stream refused the message: {e}"));
                    }
                    _ => return Err(self.unavailable("waiting for publish acks", e.to_string())),
                },
                Err(_) => {
                    return Err(self.unavailable(
                        "waiting for publish acks",
                        format!("none within {:?}", self.opts.ack_timeout),
                    ));
                }
            }
        }
        if refused > 0 {
            warn!(subject = %self.opts.subject, refused, "the stream refused messages of a batch");
        }
        self.published.increment(stored);
        Ok(())
    }
}

impl<T: AsRecord + Send + Sync + 'static> Sink<T> for NatsSink {
    fn write<'a>(&'a self, batch: &'a mut [Message<T>]) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            self.send(batch, |r| self.subject_of(r)).await?;
            Ok(())
        })
    }

    fn close(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move {
            if let Some(c) = self.client.get() {
                let _ = c.flush().await;
            }
            Ok(())
        })
    }
}
