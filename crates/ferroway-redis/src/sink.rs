//! The sink: `XADD`s a batch of messages in one pipelined round trip.

use std::sync::Arc;

use ferroway::pipeline::Message;
use ferroway::resilience::ConnectionManager;
use redis::Value;

use crate::connection::{self, RedisConnector, is_connection_error};
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
///         // A lost connection fails the batch; an entry Redis refuses fails its message.
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
    conn: ConnectionManager<RedisConnector>,
    written: metrics::Counter,
}

impl std::fmt::Debug for RedisSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSink")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl RedisSink {
    /// A sink for `opts`; connects lazily. Must be called inside a Tokio runtime.
    pub fn new(opts: SinkOptions) -> Result<Self, OptionsError> {
        opts.validate()?;
        let conn = connection::manager(
            &opts.url,
            format!("ferroway-sink-{}", opts.stream),
            opts.reconnect.clone(),
        );
        let written = metrics::counter!(crate::metrics::WRITTEN, "stream" => opts.stream.clone());
        Ok(RedisSink {
            opts: Arc::new(opts),
            conn,
            written,
        })
    }

    /// `XADD`s one entry per message, with the fields `fields` makes of it, in one pipelined
    /// round trip. An entry Redis refuses marks its message failed; a lost connection is an
    /// error for the whole batch (some entries may have been added: at-least-once).
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
        let stream = || self.opts.stream.clone();
        let c = self.conn.get().await.map_err(|e| SinkError::Connection {
            stream: stream(),
            reason: e.to_string(),
        })?;
        let mut rc = (*c).clone();
        let replies: Vec<Value> = match pipe.query_async(&mut rc).await {
            Ok(v) => v,
            Err(e) => {
                if is_connection_error(&e) {
                    self.conn.report_broken(&c);
                }
                return Err(SinkError::Redis {
                    stream: stream(),
                    source: e,
                });
            }
        };
        let out: Vec<Result<StreamId, String>> = replies
            .into_iter()
            .map(|v| match v {
                Value::BulkString(b) => std::str::from_utf8(&b)
                    .ok()
                    .and_then(StreamId::parse)
                    .ok_or_else(|| "unexpected reply".to_owned()),
                Value::SimpleString(s) => StreamId::parse(&s).ok_or_else(|| "unexpected reply".to_owned()),
                Value::ServerError(e) => Err(format!("{e:?}")),
                other => Err(format!("unexpected reply {other:?}")),
            })
            .collect();
        self.written.increment(out.iter().filter(|r| r.is_ok()).count() as u64);
        Ok(out)
    }
}
