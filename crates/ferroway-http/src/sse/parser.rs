//! The event-stream interpretation of the WHATWG HTML standard ("Server-sent events",
//! 9.2.6), over bytes: lines end at CR, LF or CRLF, and only complete lines are decoded as
//! UTF-8 (line ends are ASCII, so no multi-byte character spans one). A CR that ends one chunk
//! and an LF that starts the next are one line end. So no way of cutting the stream into
//! chunks changes what comes out.

use std::time::Duration;

/// One event, dispatched at the blank line that ends it.
///
/// ```
/// use ferroway_http::sse::SseParser;
///
/// let mut events = Vec::new();
/// SseParser::new().feed(b"data: first\r\n\r\n", &mut events)?;
/// assert_eq!(events[0].event, "message");
/// assert_eq!(events[0].data, "first");
/// assert_eq!(events[0].id, "");
/// # Ok::<(), ferroway_http::sse::SseError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, or `message` when the event had none.
    pub event: String,
    /// Its `data:` lines, joined by `\n`.
    pub data: String,
    /// The last event id when it was dispatched: the latest `id:` of this event or an earlier
    /// one (empty when there was none, or an `id:` without a value reset it).
    pub id: String,
}

/// Why a stream cannot be parsed further.
///
/// ```
/// use ferroway_http::sse::{SseError, SseParser};
///
/// let mut parser = SseParser::new().max_event_bytes(8);
/// let e = parser.feed(b"data: far too long", &mut Vec::new()).unwrap_err();
/// assert_eq!(e.to_string(), "an event-stream line exceeds 8 bytes (at byte 9 of the stream)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SseError {
    /// A line, or the data of one event, grew past
    /// [`max_event_bytes`](SseParser::max_event_bytes): a server that never ends its lines
    /// must not take all the memory. The connection should be dropped.
    #[error("an event-stream {what} exceeds {limit} bytes (at byte {offset} of the stream)")]
    TooLarge {
        /// `line` or `event`.
        what: &'static str,
        /// The limit.
        limit: usize,
        /// Where in the stream (bytes fed since the last [`SseParser::end_of_stream`]) the
        /// limit was passed.
        offset: u64,
    },
}

/// A `text/event-stream` parser: bytes in, [`SseEvent`]s out.
///
/// It also keeps what a reconnection needs: [`last_event_id`](Self::last_event_id) (sent back
/// as `Last-Event-ID`) and the server's [`retry`](Self::retry) delay. Memory is bounded by
/// [`max_event_bytes`](Self::max_event_bytes) for the line being read and for the data of the
/// event being built.
///
/// ```
/// use std::time::Duration;
/// use ferroway_http::sse::SseParser;
///
/// let mut parser = SseParser::new();
/// let mut events = Vec::new();
/// // Chunks cut anywhere, even inside a CRLF.
/// parser.feed(b": keep-alive\r\nretry: 2500\r\nid: 41\r\nda", &mut events)?;
/// parser.feed(b"ta: {\"n\":1}\r", &mut events)?;
/// parser.feed(b"\n\r\n", &mut events)?;
/// assert_eq!(events.len(), 1);
/// assert_eq!(events[0].data, "{\"n\":1}");
/// assert_eq!(parser.last_event_id(), "41");
/// assert_eq!(parser.retry(), Some(Duration::from_millis(2500)));
/// # Ok::<(), ferroway_http::sse::SseError>(())
/// ```
#[derive(Debug, Clone)]
pub struct SseParser {
    line: Vec<u8>,
    /// The last byte fed was a CR: an LF first in the next chunk ends no line.
    after_cr: bool,
    /// Whether the stream's first line was seen (its BOM, if any, dropped).
    started: bool,
    data: String,
    event_type: String,
    id_buffer: String,
    last_event_id: String,
    retry: Option<Duration>,
    max: usize,
    offset: u64,
}

impl Default for SseParser {
    fn default() -> Self {
        SseParser::new()
    }
}

impl SseParser {
    /// A parser for a new stream; lines and events up to 1 MiB.
    pub fn new() -> Self {
        SseParser {
            line: Vec::new(),
            after_cr: false,
            started: false,
            data: String::new(),
            event_type: String::new(),
            id_buffer: String::new(),
            last_event_id: String::new(),
            retry: None,
            max: 1 << 20,
            offset: 0,
        }
    }

    /// The most bytes a line, or the data of one event, may take (default 1 MiB).
    pub fn max_event_bytes(mut self, n: usize) -> Self {
        self.max = n;
        self
    }

    /// The last event id: what a reconnection sends as `Last-Event-ID` (empty: send none).
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// The reconnection delay the server asked for with `retry:`, if it did.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }

    /// Resumes after event `id` (from an earlier run): the first connection sends it as
    /// `Last-Event-ID`.
    ///
    /// ```
    /// use ferroway_http::sse::SseParser;
    ///
    /// let mut parser = SseParser::new();
    /// parser.resume_after("1041");
    /// assert_eq!(parser.last_event_id(), "1041");
    /// ```
    pub fn resume_after(&mut self, id: &str) {
        id.clone_into(&mut self.last_event_id);
        id.clone_into(&mut self.id_buffer);
    }

    /// Starts over on a stream that continues one that ended: what no blank line completed is
    /// dropped (the standard discards an unfinished event), the last event id and the retry
    /// delay are kept for the reconnection.
    ///
    /// ```
    /// use ferroway_http::sse::SseParser;
    ///
    /// let mut parser = SseParser::new();
    /// let mut events = Vec::new();
    /// parser.feed(b"id: 3\ndata: whole\n\ndata: cut sh", &mut events)?;
    /// parser.end_of_stream();
    /// parser.feed(b"data: next\n\n", &mut events)?;
    /// assert_eq!(events.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(), ["whole", "next"]);
    /// assert_eq!(parser.last_event_id(), "3");
    /// # Ok::<(), ferroway_http::sse::SseError>(())
    /// ```
    pub fn end_of_stream(&mut self) {
        self.line.clear();
        self.after_cr = false;
        self.started = false;
        self.data.clear();
        self.event_type.clear();
        self.id_buffer = self.last_event_id.clone();
        self.offset = 0;
    }

    /// Parses `chunk`, pushing every event it completes onto `out`.
    ///
    /// # Errors
    /// [`SseError::TooLarge`] when a line or an event's data passes
    /// [`max_event_bytes`](Self::max_event_bytes); what was being read is dropped, and the
    /// stream should be dropped too.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let mut rest = chunk;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            let at = chunk.len() - rest.len();
            self.take(&rest[..end], at)?;
            let cr = rest[end] == b'\r';
            rest = &rest[end + 1..];
            if cr {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            self.line_ended(out, at + end)?;
        }
        self.take(rest, chunk.len() - rest.len())?;
        self.offset += chunk.len() as u64;
        Ok(())
    }

    /// Adds bytes to the line being read (`at`: where they start in the chunk).
    fn take(&mut self, bytes: &[u8], at: usize) -> Result<(), SseError> {
        if self.line.len() + bytes.len() > self.max {
            let offset = self.offset + (at + self.max - self.line.len()) as u64 + 1;
            self.line.clear();
            return Err(self.too_large("line", offset));
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn too_large(&mut self, what: &'static str, offset: u64) -> SseError {
        self.data.clear();
        self.event_type.clear();
        SseError::TooLarge {
            what,
            limit: self.max,
            offset,
        }
    }

    /// A line ended (`at`: where its line end is in the chunk).
    fn line_ended(&mut self, out: &mut Vec<SseEvent>, at: usize) -> Result<(), SseError> {
        let mut line = std::mem::take(&mut self.line);
        if !self.started {
            self.started = true;
            if line.starts_with(b"\xEF\xBB\xBF") {
                line.drain(..3);
            }
        }
        let result = self.interpret(&String::from_utf8_lossy(&line), out, at);
        // The buffer is kept for the next line (its capacity is bounded by `max`).
        line.clear();
        self.line = line;
        result
    }

    fn interpret(&mut self, line: &str, out: &mut Vec<SseEvent>, at: usize) -> Result<(), SseError> {
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event_type),
            "data" => {
                if self.data.len() + value.len() + 1 > self.max {
                    return Err(self.too_large("event", self.offset + at as u64));
                }
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => value.clone_into(&mut self.id_buffer),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = Some(Duration::from_millis(value.parse().unwrap_or(u64::MAX)));
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        self.last_event_id.clone_from(&self.id_buffer);
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        if self.data.ends_with('\n') {
            self.data.pop();
        }
        let event = if self.event_type.is_empty() {
            "message".to_owned()
        } else {
            std::mem::take(&mut self.event_type)
        };
        out.push(SseEvent {
            event,
            data: std::mem::take(&mut self.data),
            id: self.last_event_id.clone(),
        });
    }
}
