//! The SSE source: one long-lived `GET`, read only as fast as the pipeline asks, made again
//! with `Last-Event-ID` whenever it ends.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferroway::BoxError;
use ferroway::connector::{Record, Source};
use ferroway::pipeline::Message;
use ferroway::stage::{Emit, Producer};
use reqwest::RequestBuilder;

use super::options::SseOptions;
use super::parser::{SseEvent, SseParser};
use crate::error::OptionsError;
use crate::stream::{Framing, Reader};

/// The event-stream framing: the parser, which also keeps the last event id and `retry:`.
struct Sse(SseParser);

impl Framing for Sse {
    type Item = SseEvent;
    const WHAT: &'static str = "event stream";
    const ACCEPT: &'static str = "text/event-stream";

    fn accepts(&self, essence: &str) -> bool {
        essence == "text/event-stream"
    }

    fn resume(&self, request: RequestBuilder) -> RequestBuilder {
        match self.0.last_event_id() {
            "" => request,
            id => request.header("last-event-id", id),
        }
    }

    fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), String> {
        self.0.feed(chunk, out).map_err(|e| e.to_string())
    }

    fn end_of_stream(&mut self) {
        self.0.end_of_stream();
    }

    fn server_retry(&self) -> Option<Duration> {
        self.0.retry()
    }

    fn position(&self) -> String {
        format!("last event id `{}`", self.0.last_event_id())
    }

    fn message(&mut self, event: SseEvent) -> Message<SseEvent> {
        Message::new(event)
    }
}

/// A source of [`SseEvent`]s from one `text/event-stream` URL.
///
/// - **Demand:** the response body is read only while the pipeline has demand; a slow
///   pipeline leaves it unread, so TCP's window holds the server's writes and nothing
///   buffers without bound (at most one read's events wait in the source).
/// - **Reconnection:** when the stream ends or breaks (or brings nothing for
///   [`idle_timeout`](SseOptions::idle_timeout)), the source waits the server's `retry:`
///   delay (or [`retry`](SseOptions::retry)) and connects again with `Last-Event-ID`: a
///   server that honours it resumes after the last whole event, so nothing between is lost
///   or repeated. An event cut by the break is dropped, as the standard says, and comes
///   again from such a server.
/// - **Errors:** a 5xx, 429 or 408 answer, or no connection, is waited out (doubling the
///   delay up to [`max_retry`](SseOptions::max_retry), honouring `Retry-After`); a server
///   that never answered fails the source after [`reach_timeout`](SseOptions::reach_timeout)
///   with [`SourceError::Unreachable`](crate::sse::SourceError::Unreachable). Another 4xx, or a response that is not an event
///   stream, fails it with [`SourceError::Refused`](crate::sse::SourceError::Refused). `204 No Content` ends the source (the
///   server asks clients to stop).
/// - **Acknowledgement:** SSE has none; a restarted process resumes from
///   [`last_event_id`](SseOptions::last_event_id) if you persist the id of the last event
///   your pipeline finished.
///
/// ```no_run
/// use ferroway::pipeline::{Handler, Message, Pipeline};
/// use ferroway_http::sse::{SseEvent, SseOptions, SseSource};
///
/// struct Print;
/// impl Handler for Print {
///     type Data = SseEvent;
///     async fn handle_message(&self, m: &mut Message<SseEvent>) -> Result<(), ferroway::BoxError> {
///         println!("{} {}: {}", m.data().id, m.data().event, m.data().data);
///         Ok(())
///     }
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let pipeline = Pipeline::builder("ticker", Print)
///     .source(SseSource::factory(SseOptions::new("https://stream.example.com/prices"))?)
///     .start()
///     .await?;
/// pipeline.run_until(ferroway::shutdown_signal()).await?;
/// # Ok(()) }
/// ```
pub struct SseSource(Reader<Sse>);

impl std::fmt::Debug for SseSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseSource")
            .field("url", &crate::client::redacted(&self.0.conn.url))
            .field("last_event_id", &self.0.framing.0.last_event_id())
            .finish_non_exhaustive()
    }
}

impl SseSource {
    /// Validates `opts` and returns the [`Source`] a pipeline takes (one producer: one
    /// connection).
    ///
    /// ```
    /// use ferroway_http::sse::{SseOptions, SseSource};
    /// let e = SseSource::factory(SseOptions::new("http://h/e").header("bad name", "v")).unwrap_err();
    /// assert_eq!(e.to_string(), "invalid option `headers[bad name]`: not a valid header name");
    /// ```
    ///
    /// # Errors
    /// [`OptionsError`] naming the first invalid option.
    pub fn factory(opts: SseOptions) -> Result<SseSourceFactory, OptionsError> {
        opts.validate()?;
        Ok(SseSourceFactory { opts: Arc::new(opts) })
    }

    fn start(opts: &SseOptions) -> Result<Self, BoxError> {
        let mut parser = SseParser::new().max_event_bytes(opts.max_event_bytes);
        if let Some(id) = &opts.last_event_id {
            parser.resume_after(id);
        }
        Ok(SseSource(Reader::new("sse", Arc::new(opts.connection()), Sse(parser))?))
    }
}

impl Producer for SseSource {
    type Output = Message<SseEvent>;

    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<SseEvent>>, BoxError> {
        let (events, ended) = self.0.demand(demand).await?;
        Ok(if ended {
            Emit::Done(events)
        } else {
            Emit::Events(events)
        })
    }

    async fn prepare_for_draining(&mut self) -> Vec<Message<SseEvent>> {
        self.0.drain()
    }
}

/// A [`Source`] of [`SseEvent`]s: what
/// [`PipelineBuilder::source`](ferroway::pipeline::PipelineBuilder::source) takes. Made by
/// [`SseSource::factory`].
#[derive(Debug)]
pub struct SseSourceFactory {
    opts: Arc<SseOptions>,
}

impl Source for SseSourceFactory {
    type Data = SseEvent;
    type Producer = SseSource;

    fn producer(&self, _index: usize) -> Result<SseSource, BoxError> {
        SseSource::start(&self.opts)
    }

    fn connected(&self) -> bool {
        crate::client::reach("sse", &self.opts.url).reached()
    }
}

/// The data as the payload, the id (if any) as the key, the event type as header `event`.
impl From<SseEvent> for Record {
    fn from(e: SseEvent) -> Self {
        Record {
            payload: Bytes::from(e.data),
            key: (!e.id.is_empty()).then(|| Bytes::from(e.id)),
            headers: vec![("event".to_owned(), Bytes::from(e.event))],
            timestamp: None,
        }
    }
}
