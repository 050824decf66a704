//! The sink: `XADD`s a batch of messages in one pipelined round trip.

use std::sync::Arc;
use std::time::Duration;

use ferroway::BoxError;
use ferroway::connector::{AsRecord, Sink};
use ferroway::error::Unavailable;
use ferroway::pipeline::{BoxFuture, DeadLetterInfo, Message};
use redis::Value;

use crate::connection::{Link, LinkError, REPLY_TIMEOUT, is_connection_error, is_unavailable, is_unavailable_code};
use crate::entry::{Fields, StreamId};
use crate::error::{OptionsError, SinkError};
use crate::options::{SinkOptions, Trim};

/// Appends entries to a stream (`XADD`): a [`Sink`] of anything [`AsRecord`], for
/// [`PipelineBuilder::sink`](ferroway::pipeline::PipelineBuilder::sink) (and as a
/// dead-letter sink), and a typed API ([`send`](Self::send), [`add`](Self::add)) for a
/// hand-written `handle_batch`.
///
/// A batch is one pipelined round trip; it returns once Redis answered every `XADD`, so the
/// messages are acknowledged upstream only after Redis has them. An entry Redis refuses
/// (e.g. the key holds another type) fails its message alone; an outage fails the whole batch
/// with [`SinkError::Unavailable`], which the pipeline waits out and retries — at-least-once:
/// a retry may add again entries an interrupted attempt had added.
///
/// # Records as entries
///
/// | entry field | from the record |
/// |---|---|
/// | `payload` ([`SinkOptions::payload_field`]) | the payload |
/// | `key` ([`SinkOptions::key_field`]) | the key, if the record has one |
/// | each header's name | the header's value, in order (Redis keeps repeated names) |
/// | `dead_letter.reason`, `dead_letter.pipeline`, `dead_letter.stage` | for a dead letter: why it failed, where |
/// | `origin.<name>` | for a dead letter: where it came from (its [`Origin`](ferroway::pipeline::Origin) fields, e.g. `origin.stream`, `origin.id`) |
///
/// The record's timestamp is not written: Redis gives the entry its id (`*`), the time of the
/// `XADD`.
///
/// ```no_run
/// use ferroway::connector::generator::Generator;
/// use ferroway::connector::{Record, Source};
/// use ferroway::pipeline::{Batcher, Forward, Pipeline};
/// use ferroway_redis::{RedisSink, SinkOptions};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let sink = RedisSink::new(SinkOptions::new("redis://127.0.0.1:6379", "numbers"))?;
/// let pipeline = Pipeline::builder("numbers", Forward::new())
///     .source(Generator::new(1_000).map(Record::from))
///     .sink(sink, Batcher::new("redis").batch_size(500))
///     .start()
///     .await?;
/// pipeline.join().await?; // 1,000 entries `payload => {"seq":N}`
/// # Ok(()) }
/// ```
///
/// The typed API, from a handler:
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
        self.mark(messages, results);
        Ok(())
    }

    /// `XADD`s `entries` in one pipelined round trip; per entry, its id or Redis' refusal.
    /// An outage fails the whole call with [`SinkError::Unavailable`].
    pub async fn add(&self, entries: &[Fields]) -> Result<Vec<Result<StreamId, String>>, SinkError> {
        let mut pipe = redis::pipe();
        for fields in entries {
            let cmd = self.xadd(&mut pipe);
            for (k, v) in fields {
                cmd.arg(k).arg(v.as_slice());
            }
        }
        self.run(pipe, entries.len()).await
    }

    /// Fails the messages whose entry Redis refused.
    fn mark<T>(&self, messages: &mut [Message<T>], results: Vec<Result<StreamId, String>>) {
        for (m, r) in messages.iter_mut().zip(results) {
            if let Err(reason) = r {
                m.fail(format_args!("XADD to `{}` refused: {reason}", self.opts.stream));
            }
        }
    }

    /// Starts an `XADD` in `pipe`, up to its fields (which go to the pipe's last command).
    fn xadd<'p>(&self, pipe: &'p mut redis::Pipeline) -> &'p mut redis::Pipeline {
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
        cmd.arg("*")
    }

    /// The `XADD` of one record: see the table in the type's documentation.
    fn add_record<T: AsRecord>(&self, pipe: &mut redis::Pipeline, m: &Message<T>) {
        let r = m.data();
        let cmd = self.xadd(pipe);
        cmd.arg(&self.opts.payload_field).arg(r.payload());
        if let Some(key) = r.key() {
            cmd.arg(&self.opts.key_field).arg(key);
        }
        for (name, value) in r.headers() {
            cmd.arg(name).arg(&value[..]);
        }
        if let Some(info) = m.metadata::<DeadLetterInfo>() {
            cmd.arg("dead_letter.reason").arg(&*info.reason);
            cmd.arg("dead_letter.pipeline").arg(&*info.pipeline);
            cmd.arg("dead_letter.stage").arg(info.stage);
            for (name, value) in m.origin().map(|o| o.fields()).unwrap_or_default() {
                cmd.arg(format!("origin.{name}")).arg(value);
            }
        }
    }

    /// Sends `pipe` (`n` `XADD`s); per entry, its id or Redis' refusal.
    async fn run(&self, mut pipe: redis::Pipeline, n: usize) -> Result<Vec<Result<StreamId, String>>, SinkError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        pipe.ignore_errors();
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

impl<T: AsRecord + Send + Sync + 'static> Sink<T> for RedisSink {
    fn write<'a>(&'a self, batch: &'a mut [Message<T>]) -> BoxFuture<'a, Result<(), BoxError>> {
        let mut pipe = redis::pipe();
        for m in batch.iter() {
            self.add_record(&mut pipe, m);
        }
        Box::pin(async move {
            let results = self.run(pipe, batch.len()).await?;
            self.mark(batch, results);
            Ok(())
        })
    }
}
