//! The sink: `XADD`s a batch of messages in one pipelined round trip.

use std::sync::Arc;
use std::time::Duration;

use ferroway::error::Unavailable;
use ferroway::pipeline::Message;
use redis::Value;

use crate::connection::{Link, LinkError, REPLY_TIMEOUT, is_connection_error, is_unavailable, is_unavailable_code};
use crate::entry::{Fields, StreamId};
use crate::error::{OptionsError, SinkError};
use crate::options::{SinkOptions, Trim};

/// Appends entries to a stream. Use it from a pipeline's `handle_batch`: messages are
/// acknowledged upstream only after `send` returns, that is after Redis confirmed each `XADD`.
///
/// ```no_run
/// use ferroway::pipeline::{BatchInfo, Handler, Message};
/// use ferroway_redis::{RedisSink, SinkOptions};
///
/// struct Forward(RedisSink);
/// impl Handler for Forward {
///     type Data = String;
///     async fn handle_message(&self, _: &mut Message<String>) -> Result<(), ferroway::BoxError> {
///         Ok(())
///     }
///     async fn handle_batch(&self, batch: &mut [Message<String>], _: &BatchInfo) -> Result<(), ferroway::BoxError> {
///         // An outage is an error carrying `Unavailable`: the pipeline retries the batch.
///         // An entry Redis refuses fails its message only.
///         self.0.send(batch, |m| vec![("payload".into(), m.data().clone().into_bytes())]).await?;
///         Ok(())
///     }
/// }
/// # fn main() {
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// let sink = RedisSink::new(SinkOptions::new("redis://127.0.0.1:6379", "out")).unwrap();
/// let _handler = Forward(sink);
/// # });
/// # }
/// ```
pub struct RedisSink {
    opts: Arc<SinkOptions>,
    link: Link,
    written: metrics::Counter,
}

impl std::fmt::Debug for RedisSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSink")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// How long a write waits for a connection before reporting the outage (the pipeline then
/// retries it with backoff).
const CONNECTION_WAIT: Duration = Duration::from_secs(2);

impl RedisSink {
    /// A sink for `opts`; connects lazily. Must be called inside a Tokio runtime.
    pub fn new(opts: SinkOptions) -> Result<Self, OptionsError> {
        opts.validate()?;
        let link = Link::new(
            &opts.url,
            &format!("ferroway-sink-{}", opts.stream),
            REPLY_TIMEOUT,
            opts.reconnect.clone(),
        );
        let written = metrics::counter!(crate::metrics::WRITTEN, "stream" => opts.stream.clone());
        Ok(RedisSink {
            opts: Arc::new(opts),
            link,
            written,
        })
    }

    /// `XADD`s one entry per message, with the fields `fields` makes of it, in one pipelined
    /// round trip. An entry Redis refuses marks its message failed. An outage is an error for
    /// the whole batch ([`SinkError::Unavailable`]), and no message is failed: return it from
    /// `handle_batch` and the pipeline retries the batch until Redis is back. Some entries may
    /// have been added before the outage, so a retry can add them twice: at-least-once.
    pub async fn send<T>(
        &self,
        messages: &mut [Message<T>],
        fields: impl Fn(&Message<T>) -> Fields,
    ) -> Result<(), SinkError> {
        let entries: Vec<Fields> = messages.iter().map(&fields).collect();
        let results = self.add(&entries).await?;
        for (m, r) in messages.iter_mut().zip(results) {
            if let Err(reason) = r {
                m.fail(format_args!("XADD to `{}` refused: {reason}", self.opts.stream));
            }
        }
        Ok(())
    }

    /// `XADD`s `entries` in one pipelined round trip; per entry, its id or Redis' refusal.
    /// An outage fails the whole call with [`SinkError::Unavailable`].
    pub async fn add(&self, entries: &[Fields]) -> Result<Vec<Result<StreamId, String>>, SinkError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for fields in entries {
            let cmd = pipe.cmd("XADD").arg(&self.opts.stream);
            match &self.opts.trim {
                Some(Trim::MaxLen(n)) => {
                    cmd.arg("MAXLEN").arg("~").arg(*n);
                }
                Some(Trim::MinId(id)) => {
                    cmd.arg("MINID").arg("~").arg(id);
                }
                None => {}
            }
            cmd.arg("*");
            for (k, v) in fields {
                cmd.arg(k).arg(v.as_slice());
            }
        }
        let unavailable = |source: Unavailable| SinkError::Unavailable {
            stream: self.opts.stream.clone(),
            source,
        };
        let c = self.link.get(CONNECTION_WAIT).await.map_err(|e| match e {
            LinkError::Unavailable(u) => unavailable(u),
            LinkError::GaveUp { last_error } => unavailable(self.link.unavailable(format!(
                "gave up reconnecting (the reconnect backoff ran out); last error: {last_error}"
            ))),
        })?;
        let replies: Vec<Value> = match pipe.query_async(&mut (*c).clone()).await {
            Ok(v) => v,
            Err(e) if is_unavailable(&e) => {
                if is_connection_error(&e) {
                    self.link.report_broken(&c);
                }
                return Err(unavailable(self.link.unavailable(e)));
            }
            Err(e) => {
                return Err(SinkError::Redis {
                    stream: self.opts.stream.clone(),
                    source: e,
                });
            }
        };
        let mut out = Vec::with_capacity(replies.len());
        for v in replies {
            out.push(match v {
                Value::BulkString(b) => std::str::from_utf8(&b)
                    .ok()
                    .and_then(StreamId::parse)
                    .ok_or_else(|| "unexpected reply".to_owned()),
                Value::SimpleString(s) => StreamId::parse(&s).ok_or_else(|| "unexpected reply".to_owned()),
                // The server, not the entry: e.g. still loading its data after a restart.
                Value::ServerError(e) if is_unavailable_code(e.code()) => {
                    return Err(unavailable(self.link.unavailable(format!("XADD refused: {e}"))));
                }
                Value::ServerError(e) => Err(e.to_string()),
                other => Err(format!("unexpected reply {other:?}")),
            });
        }
        self.written.increment(out.iter().filter(|r| r.is_ok()).count() as u64);
        Ok(out)
    }
}
