//! stdin and stdout — or any async reader and writer — as a source and a sink.
//!
//! A stream cannot be read twice, so [`ReaderSource`] acknowledges nothing back: a crash
//! loses what was in flight. Use it for pipes and demos, and a [`FileSource`] when a restart
//! must resume.
//!
//! [`FileSource`]: crate::connector::file::FileSource
//!
//! ```no_run
//! use ferroway::connector::stdio::{ReaderSource, WriterSink};
//! use ferroway::pipeline::{BatchInfo, Batcher, Handler, Message, Pipeline, Processors};
//! use ferroway::BoxError;
//!
//! // `grep -v '^#' | tr a-z A-Z`, as a pipeline.
//! struct Upper(WriterSink<tokio::io::Stdout>);
//! impl Handler for Upper {
//!     type Data = String;
//!     async fn handle_message(&self, m: &mut Message<String>) -> Result<(), BoxError> {
//!         if m.data().starts_with('#') {
//!             m.discard();
//!         }
//!         m.update_data(|s| s.to_uppercase());
//!         Ok(())
//!     }
//!     async fn handle_batch(&self, batch: &mut [Message<String>], _: &BatchInfo) -> Result<(), BoxError> {
//!         self.0.write_batch(batch.iter().map(|m| m.data())).await?;
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let stdin = ReaderSource::stdin();
//! let pipeline = Pipeline::builder("upper", Upper(WriterSink::stdout()))
//!     .producer(move || stdin.clone())
//!     .processors(Processors::new().concurrency(1)) // one processor keeps the order
//!     .batcher(Batcher::new("out").batch_size(100))
//!     .start()
//!     .await?;
//! pipeline.join().await?; // ends at the end of stdin
//! # Ok(()) }
//! ```

use crate::connector::format::join_lines;
use std::path::Path;
use std::sync::Arc;

use futures_util::FutureExt;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::Mutex;

use super::dead_letter::{self, LineSink};
use super::file::FileMetadata;
use super::format::strip_line_ending;
use super::{AsRecord, Sink};
use super::{LineFormat, Text};
use crate::error::BoxError;
use crate::pipeline::{BoxFuture, Message};
use crate::stage::{Emit, Producer};

/// A source of lines from an async reader (stdin by default); finishes at its end.
///
/// Clones share the reader, so `.producer(move || source.clone())` makes a producer that,
/// restarted after a crash, carries on where the reader is. Messages carry [`FileMetadata`]
/// with the source's name as path and the line number; their acknowledgements go nowhere.
///
/// ```
/// use ferroway::connector::stdio::ReaderSource;
/// use ferroway::stage::{Emit, Producer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), ferroway::BoxError> {
/// let mut source = ReaderSource::new(&b"one\ntwo\nthree"[..]);
/// let Emit::Done(lines) = source.handle_demand(10).await? else { panic!("the reader is at its end") };
/// let lines: Vec<String> = lines.into_iter().map(|m| m.into_data()).collect();
/// assert_eq!(lines, ["one", "two", "three"]);
/// # Ok(()) }
/// ```
pub struct ReaderSource<R, F = Text> {
    state: Arc<Mutex<ReaderState<R>>>,
    format: F,
    name: Arc<Path>,
}

impl<R, F: Clone> Clone for ReaderSource<R, F> {
    fn clone(&self) -> Self {
        ReaderSource {
            state: self.state.clone(),
            format: self.format.clone(),
            name: self.name.clone(),
        }
    }
}

impl<R, F: std::fmt::Debug> std::fmt::Debug for ReaderSource<R, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReaderSource")
            .field("name", &self.name)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

struct ReaderState<R> {
    reader: BufReader<R>,
    /// A line read in part; kept across cancelled reads (`read_until` appends as it goes).
    partial: Vec<u8>,
    line: u64,
    offset: u64,
    eof: bool,
    lines_read: metrics::Counter,
    decode_failures: metrics::Counter,
}

impl ReaderSource<tokio::io::Stdin, Text> {
    /// Lines of the process's stdin, named `stdin`.
    pub fn stdin() -> Self {
        ReaderSource::new(tokio::io::stdin()).name("stdin")
    }
}

impl<R: AsyncRead + Unpin + Send + 'static> ReaderSource<R, Text> {
    /// Lines of `reader` as text, named `reader`.
    pub fn new(reader: R) -> Self {
        ReaderSource {
            state: Arc::new(Mutex::new(ReaderState {
                reader: BufReader::with_capacity(64 * 1024, reader),
                partial: Vec::new(),
                line: 0,
                offset: 0,
                eof: false,
                lines_read: metrics::counter!(super::LINES_READ, "source" => "reader"),
                decode_failures: metrics::counter!(super::DECODE_FAILURES, "source" => "reader"),
            })),
            format: Text,
            name: Path::new("reader").into(),
        }
    }
}

impl<R: AsyncRead + Unpin + Send + 'static, F: LineFormat> ReaderSource<R, F> {
    /// How lines become data (default [`Text`]).
    pub fn format<G: LineFormat>(self, format: G) -> ReaderSource<R, G> {
        ReaderSource {
            state: self.state,
            format,
            name: self.name,
        }
    }

    /// The name in metadata, logs and metrics.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Path::new(name).into();
        if let Ok(mut st) = self.state.try_lock() {
            st.lines_read = metrics::counter!(super::LINES_READ, "source" => name.to_owned());
            st.decode_failures = metrics::counter!(super::DECODE_FAILURES, "source" => name.to_owned());
        }
        self
    }
}

/// A reader source is a connector [`Source`](super::Source): its producers share the reader.
impl<R: AsyncRead + Unpin + Send + 'static, F: LineFormat + Clone + Sync> super::Source for ReaderSource<R, F> {
    type Data = F::Item;
    type Producer = ReaderSource<R, F>;

    fn producer(&self, _: usize) -> Result<Self, BoxError> {
        Ok(self.clone())
    }
}

impl<R: AsyncRead + Unpin + Send + 'static, F: LineFormat> Producer for ReaderSource<R, F> {
    type Output = Message<F::Item>;

    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<F::Item>>, BoxError> {
        let mut guard = self.state.lock().await;
        let st = &mut *guard;
        let mut out = Vec::new();
        while out.len() < demand && !st.eof {
            let read = st.reader.read_until(b'\n', &mut st.partial);
            // Wait for the first line only; then take what is already there, so a slow
            // interactive stream still delivers line by line.
            let n = if out.is_empty() {
                read.await?
            } else {
                match read.now_or_never() {
                    Some(r) => r?,
                    None => break,
                }
            };
            if n == 0 {
                st.eof = true;
                if st.partial.is_empty() {
                    break;
                }
            } else if st.partial.last() != Some(&b'\n') {
                continue; // the end of the stream, mid-line: the next read says so
            }
            let mut bytes = std::mem::take(&mut st.partial);
            let start = st.offset;
            st.offset += bytes.len() as u64;
            st.line += 1;
            strip_line_ending(&mut bytes);
            if self.format.skip(&bytes) {
                continue;
            }
            let mut m = match self.format.decode(bytes) {
                Ok(item) => Message::new(item),
                Err((item, reason)) => {
                    st.decode_failures.increment(1);
                    let mut m = Message::new(item);
                    m.fail(format_args!("line {}: {reason}", st.line));
                    m
                }
            };
            m.put_origin(FileMetadata {
                path: self.name.clone(),
                line: st.line,
                offset: start,
            });
            out.push(m);
        }
        st.lines_read.increment(out.len() as u64);
        Ok(if st.eof { Emit::Done(out) } else { Emit::Events(out) })
    }
}

/// Writes lines to an async writer (stdout by default), flushing after each write. Clones
/// share the writer. Also a dead-letter sink for byte-like data (one JSON record per line).
///
/// ```
/// use ferroway::connector::stdio::WriterSink;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), std::io::Error> {
/// let sink = WriterSink::new(Vec::<u8>::new());
/// sink.write_batch(["a", "b"]).await?;
/// assert_eq!(sink.into_inner().await.unwrap(), b"a\nb\n");
/// # Ok(()) }
/// ```
pub struct WriterSink<W> {
    writer: Arc<Mutex<W>>,
    bytes_written: metrics::Counter,
}

impl<W> Clone for WriterSink<W> {
    fn clone(&self) -> Self {
        WriterSink {
            writer: self.writer.clone(),
            bytes_written: self.bytes_written.clone(),
        }
    }
}

impl<W> std::fmt::Debug for WriterSink<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterSink").finish_non_exhaustive()
    }
}

impl WriterSink<tokio::io::Stdout> {
    /// The process's stdout.
    pub fn stdout() -> Self {
        WriterSink::named(tokio::io::stdout(), "stdout")
    }
}

impl<W: AsyncWrite + Unpin + Send + 'static> WriterSink<W> {
    /// Lines to `writer`.
    pub fn new(writer: W) -> Self {
        WriterSink::named(writer, "writer")
    }

    fn named(writer: W, name: &str) -> Self {
        WriterSink {
            writer: Arc::new(Mutex::new(writer)),
            bytes_written: metrics::counter!(super::BYTES_WRITTEN, "sink" => name.to_owned()),
        }
    }

    /// Writes each of `lines` followed by `\n`, in one write, then flushes.
    ///
    /// # Errors
    /// The writer failed.
    pub async fn write_batch<I>(&self, lines: I) -> std::io::Result<()>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        self.write_bytes(&join_lines(lines)).await
    }

    /// Writes `bytes` as they are, then flushes.
    ///
    /// # Errors
    /// The writer failed.
    pub async fn write_bytes(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut w = self.writer.lock().await;
        w.write_all(bytes).await?;
        w.flush().await?;
        self.bytes_written.increment(bytes.len() as u64);
        Ok(())
    }

    /// The writer back, if this is the last handle.
    pub async fn into_inner(self) -> Option<W> {
        Arc::into_inner(self.writer).map(Mutex::into_inner)
    }
}

impl<W: AsyncWrite + Unpin + Send + 'static> LineSink for WriterSink<W> {
    fn append_durable(&self, lines: Vec<u8>) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move { Ok(self.write_bytes(&lines).await?) })
    }
}

/// Each message's payload as a line; a dead letter as its JSON record.
impl<W: AsyncWrite + Unpin + Send + 'static, T: AsRecord + Send + Sync + 'static> Sink<T> for WriterSink<W> {
    fn write<'a>(&'a self, messages: &'a mut [Message<T>]) -> BoxFuture<'a, Result<(), BoxError>> {
        dead_letter::write_lines(self, messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{BatchInfo, Batcher, Handler, Pipeline, Processors};

    #[tokio::test]
    async fn reads_lines_on_demand_and_fails_undecodable_ones() {
        let mut src = ReaderSource::new(&b"a\r\nb\n\xff\nd"[..]);
        let Emit::Events(first) = src.handle_demand(2).await.unwrap() else {
            panic!("more to come")
        };
        assert_eq!(first.iter().map(|m| m.data().as_str()).collect::<Vec<_>>(), ["a", "b"]);
        let Emit::Done(rest) = src.handle_demand(10).await.unwrap() else {
            panic!("at the end")
        };
        assert_eq!(rest.len(), 2);
        assert_eq!(
            rest[0].failure(),
            Some("line 3: invalid UTF-8: invalid utf-8 sequence of 1 bytes from index 0")
        );
        assert_eq!(rest[1].data(), "d");
        let md = rest[1].metadata::<FileMetadata>().unwrap();
        assert_eq!((md.line, md.offset), (4, 7));
    }

    #[tokio::test]
    async fn returns_what_is_there_without_waiting_for_full_demand() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut src = ReaderSource::new(rx);
        tx.write_all(b"x\ny\n").await.unwrap();
        let Emit::Events(got) = src.handle_demand(100).await.unwrap() else {
            panic!("still open")
        };
        assert_eq!(got.len(), 2);
        tx.write_all(b"z").await.unwrap();
        drop(tx);
        let Emit::Done(got) = src.handle_demand(100).await.unwrap() else {
            panic!("closed")
        };
        assert_eq!(got[0].data(), "z");
    }

    struct Echo(WriterSink<Vec<u8>>);
    impl Handler for Echo {
        type Data = String;
        async fn handle_message(&self, m: &mut Message<String>) -> Result<(), BoxError> {
            if m.data() == "bad" {
                m.fail("rejected");
            }
            Ok(())
        }
        async fn handle_batch(&self, batch: &mut [Message<String>], _: &BatchInfo) -> Result<(), BoxError> {
            self.0.write_batch(batch.iter().map(|m| m.data())).await?;
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_reader_to_writer_pipeline_with_dead_letters() {
        let out = WriterSink::new(Vec::new());
        let dead = WriterSink::new(Vec::new());
        let src = ReaderSource::new(&b"one\nbad\ntwo\n"[..]).name("input");
        let pipeline = Pipeline::builder("echo", Echo(out.clone()))
            .producer(move || src.clone())
            .processors(Processors::new().concurrency(1))
            .batcher(Batcher::new("out"))
            .dead_letter(dead.clone())
            .start()
            .await
            .unwrap();
        pipeline.join().await.unwrap();
        assert_eq!(out.into_inner().await.unwrap(), b"one\ntwo\n");
        let dead = String::from_utf8(dead.into_inner().await.unwrap()).unwrap();
        assert_eq!(
            dead,
            "{\"pipeline\":\"echo\",\"stage\":\"processor\",\"reason\":\"rejected\",\"origin\":{\"path\":\"input\",\"line\":\"2\",\"offset\":\"4\"},\"data\":\"bad\"}\n"
        );
    }
}
