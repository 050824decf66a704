//! The NDJSON source: the stream reader with a line framing, and the cursor of each line.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use ferroway::BoxError;
use ferroway::connector::{Record, Source};
use ferroway::pipeline::{BoxFuture, Message, Origin};
use ferroway::stage::{Emit, Producer};
use reqwest::RequestBuilder;

use super::options::NdjsonOptions;
use crate::cursor::{Cursors, Tracker};
use crate::error::OptionsError;
use crate::stream::{Framing, Reader};

/// Where a line came from: its cursor (with [`NdjsonOptions::cursor`]).
///
/// ```
/// use ferroway::connector::Record;
/// use ferroway::pipeline::{Handler, Message};
/// use ferroway_http::ndjson::NdjsonMetadata;
///
/// struct Log;
/// impl Handler for Log {
///     type Data = Record;
///     async fn handle_message(&self, m: &mut Message<Record>) -> Result<(), ferroway::BoxError> {
///         if let Some(at) = m.metadata::<NdjsonMetadata>() {
///             println!("cursor {:?}", at.cursor);
///         }
///         Ok(())
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NdjsonMetadata {
    /// The line's cursor, if it has one.
    pub cursor: Option<String>,
}

impl Origin for NdjsonMetadata {
    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![("cursor", self.cursor.clone().unwrap_or_default())]
    }
}

/// The line framing: whole lines (CR LF or LF; blank ones skipped) as records.
struct Lines {
    buf: BytesMut,
    max: usize,
    /// Field and query parameter of the cursor.
    cursor: Option<(String, String)>,
    /// The cursor of the last line read: where a new connection resumes.
    last: Option<String>,
    tracker: Option<Arc<Tracker>>,
}

impl Lines {
    fn cursor_of(&self, line: &[u8]) -> Option<String> {
        crate::cursor::of(line, &self.cursor.as_ref()?.0)
    }
}

impl Framing for Lines {
    type Item = (Record, Option<String>);
    const WHAT: &'static str = "NDJSON stream";
    const ACCEPT: &'static str = "application/x-ndjson, application/jsonl, application/json, text/plain";

    /// Streaming APIs label NDJSON many ways; an HTML page (a login or error page) is not.
    fn accepts(&self, essence: &str) -> bool {
        !matches!(essence, "text/html" | "text/event-stream")
    }

    fn resume(&self, request: RequestBuilder) -> RequestBuilder {
        match (&self.cursor, &self.last) {
            (Some((_, param)), Some(c)) => request.query(&[(param, c)]),
            _ => request,
        }
    }

    fn feed(&mut self, chunk: &[u8], out: &mut Vec<(Record, Option<String>)>) -> Result<(), String> {
        self.buf.extend_from_slice(chunk);
        while let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
            let mut line: Bytes = self.buf.split_to(end + 1).freeze();
            line.truncate(end);
            if line.last() == Some(&b'\r') {
                line.truncate(end - 1);
            }
            if line.len() > self.max {
                return Err(format!(
                    "a line of {} bytes, over max_line_bytes ({})",
                    line.len(),
                    self.max
                ));
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let cursor = self.cursor_of(&line);
            if cursor.is_some() {
                self.last.clone_from(&cursor);
            }
            out.push((Record::new(line), cursor));
        }
        if self.buf.len() > self.max {
            return Err(format!("a line over max_line_bytes ({})", self.max));
        }
        Ok(())
    }

    fn end_of_stream(&mut self) {
        // A cut line comes again: the cursor stayed on the last whole one.
        self.buf.clear();
    }

    fn position(&self) -> String {
        match &self.last {
            Some(c) => format!("after cursor `{c}`"),
            None => "from the start".to_owned(),
        }
    }

    fn message(&mut self, (record, cursor): (Record, Option<String>)) -> Message<(Record, Option<String>)> {
        let mut m = match &self.tracker {
            Some(t) => Message::with_acker((record, cursor.clone()), t.clone(), t.track(cursor.clone())),
            None => Message::new((record, cursor.clone())),
        };
        m.put_origin(NdjsonMetadata { cursor });
        m
    }
}

/// A source of [`Record`]s, one per line of a long-lived response.
///
/// - **Demand:** the body is read only while the pipeline has demand (TCP holds the
///   server's writes back meanwhile).
/// - **Reconnection:** when the response ends or breaks (or brings nothing for
///   [`idle_timeout`](NdjsonOptions::idle_timeout)), the source connects again after
///   [`retry`](NdjsonOptions::retry) (doubled per failure, `Retry-After` honoured). With
///   [`cursor`](NdjsonOptions::cursor), the new request asks for what follows the last line
///   read; a line cut by the break is read again whole.
/// - **Acknowledgement:** with a [`cursor_file`](NdjsonOptions::cursor_file), the cursor of
///   the last record the pipeline finished — every record before it finished too — is kept
///   there, and a restarted process resumes after it: at-least-once across crashes.
/// - **Errors:** a server that never answered fails the source after
///   [`reach_timeout`](NdjsonOptions::reach_timeout); another 4xx or an HTML answer fails it
///   with [`SourceError::Refused`](crate::ndjson::SourceError::Refused); 204 ends it.
///
/// ```no_run
/// use ferroway::connector::Record;
/// use ferroway::pipeline::{Handler, Message, Pipeline};
/// use ferroway_http::ndjson::{NdjsonOptions, NdjsonSource};
///
/// struct Print;
/// impl Handler for Print {
///     type Data = Record;
///     async fn handle_message(&self, m: &mut Message<Record>) -> Result<(), ferroway::BoxError> {
///         println!("{}", String::from_utf8_lossy(&m.data().payload));
///         Ok(())
///     }
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let opts = NdjsonOptions::new("https://api.example.com/v1/changes")
///     .cursor("offset", "after")
///     .cursor_file("changes.cursor");
/// let pipeline = Pipeline::builder("changes", Print)
///     .source(NdjsonSource::factory(opts)?)
///     .start()
///     .await?;
/// pipeline.run_until(ferroway::shutdown_signal()).await?;
/// # Ok(()) }
/// ```
pub struct NdjsonSource(Reader<Lines>);

impl std::fmt::Debug for NdjsonSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NdjsonSource")
            .field("url", &crate::client::redacted(&self.0.conn.url))
            .field("last_cursor", &self.0.framing.last)
            .finish_non_exhaustive()
    }
}

impl NdjsonSource {
    /// Validates `opts`, reads the cursor file if there is one, and returns the [`Source`]
    /// a pipeline takes (one producer: one connection).
    ///
    /// ```
    /// use ferroway_http::ndjson::{NdjsonOptions, NdjsonSource};
    /// let e = NdjsonSource::factory(NdjsonOptions::new("http://h/s").cursor_file("c")).unwrap_err();
    /// assert_eq!(e.to_string(), "invalid option `cursor_file`: needs `cursor` (which field, which query parameter)");
    /// ```
    ///
    /// # Errors
    /// [`OptionsError`] naming the first invalid option, or a cursor file that cannot be read.
    pub fn factory(opts: NdjsonOptions) -> Result<NdjsonSourceFactory, OptionsError> {
        opts.validate()?;
        let cursors = Cursors::open(
            opts.cursor.is_some(),
            opts.cursor_file.clone(),
            opts.start_after.clone(),
        )?;
        Ok(NdjsonSourceFactory {
            opts: Arc::new(opts),
            cursors,
        })
    }
}

impl Producer for NdjsonSource {
    type Output = Message<Record>;

    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<Record>>, BoxError> {
        let (lines, ended) = self.0.demand(demand).await?;
        let records = lines.into_iter().map(|m| m.map(|(r, _)| r)).collect();
        Ok(if ended {
            Emit::Done(records)
        } else {
            Emit::Events(records)
        })
    }

    async fn prepare_for_draining(&mut self) -> Vec<Message<Record>> {
        self.0.drain().into_iter().map(|m| m.map(|(r, _)| r)).collect()
    }
}

/// A [`Source`] of [`Record`]s from an NDJSON stream, made by [`NdjsonSource::factory`].
#[derive(Debug)]
pub struct NdjsonSourceFactory {
    opts: Arc<NdjsonOptions>,
    cursors: Cursors,
}

impl NdjsonSourceFactory {
    /// The cursor of the last record the pipeline finished (all before it finished too),
    /// or the one it started from.
    pub fn committed_cursor(&self) -> Option<String> {
        self.cursors.committed()
    }
}

impl Source for NdjsonSourceFactory {
    type Data = Record;
    type Producer = NdjsonSource;

    fn producer(&self, _index: usize) -> Result<NdjsonSource, BoxError> {
        let (start, tracker) = self.cursors.for_producer();
        let lines = Lines {
            buf: BytesMut::new(),
            max: self.opts.max_line_bytes,
            cursor: self.opts.cursor.clone(),
            last: start,
            tracker,
        };
        Ok(NdjsonSource(Reader::new(
            "ndjson",
            Arc::new(self.opts.connection()),
            lines,
        )?))
    }

    /// Every finished record's cursor is in the cursor file.
    fn close(&self) -> BoxFuture<'_, ()> {
        self.cursors.close()
    }

    fn connected(&self) -> bool {
        crate::client::reach("ndjson", &self.opts.url).reached()
    }
}
