//! Where a flow's events come from: iterators, streams, files, running stages.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use futures_util::{FutureExt, Stream, StreamExt};

use crate::error::BoxError;
use crate::stage::{Emit, Producer};

/// Emits an iterator's items as demand comes.
pub(crate) struct FromIter<I>(pub(crate) I);

impl<I> Producer for FromIter<I>
where
    I: Iterator + Send + 'static,
    I::Item: Send + 'static,
{
    type Output = I::Item;

    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<I::Item>, BoxError> {
        let batch: Vec<_> = self.0.by_ref().take(demand).collect();
        Ok(if batch.len() < demand {
            Emit::Done(batch)
        } else {
            Emit::Events(batch)
        })
    }
}

/// A connector source's producer as a flow lane: the messages' data goes on, their
/// acknowledgements to the flow's tracker.
pub(crate) struct Acked<P> {
    pub(crate) producer: P,
    pub(crate) lane: usize,
    pub(crate) tracker: std::sync::Arc<super::acks::Tracker>,
}

impl<T, P> Producer for Acked<P>
where
    T: Send + 'static,
    P: Producer<Output = crate::pipeline::Message<T>>,
{
    type Output = T;

    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<T>, BoxError> {
        if self.tracker.stopping() {
            // A graceful stop: nothing more comes in; the flow ends the stage once what is
            // on its way is written.
            std::future::pending::<()>().await;
        }
        Ok(match self.producer.handle_demand(demand).await? {
            Emit::Events(v) => Emit::Events(self.tracker.pulled(self.lane, v)),
            Emit::Done(v) => Emit::Done(self.tracker.pulled(self.lane, v)),
        })
    }
}

/// Emits a stream's items as demand comes (what is ready at once, at least one item).
pub(crate) struct FromStream<S>(pub(crate) S);

impl<S> Producer for FromStream<S>
where
    S: Stream + Unpin + Send + 'static,
    S::Item: Send + 'static,
{
    type Output = S::Item;

    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<S::Item>, BoxError> {
        let mut batch = Vec::new();
        match self.0.next().await {
            Some(first) => batch.push(first),
            None => return Ok(Emit::Done(batch)),
        }
        while batch.len() < demand {
            match self.0.next().now_or_never() {
                Some(Some(e)) => batch.push(e),
                Some(None) => return Ok(Emit::Done(batch)),
                None => break,
            }
        }
        Ok(Emit::Events(batch))
    }
}

/// The lines of one byte range of a file: the lines that start inside it.
pub(crate) struct FileLines {
    path: PathBuf,
    reader: BufReader<File>,
    /// Bytes of the range left to start lines in.
    left: u64,
}

impl FileLines {
    /// Opens `path` and splits it into `lanes` ranges of about equal size; each line belongs
    /// to the range it starts in.
    pub(crate) fn split(path: &Path, lanes: usize) -> Result<Vec<FileLines>, super::FlowError> {
        let io = |source| super::FlowError::Io {
            path: path.to_path_buf(),
            source,
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        let lanes = lanes.max(1) as u64;
        let mut out = Vec::new();
        let mut start = 0;
        for i in 1..=lanes {
            let mut end = if i == lanes { len } else { len * i / lanes };
            end = end.max(start);
            if i < lanes {
                end = next_line_start(path, end, len).map_err(io)?;
            }
            let mut file = File::open(path).map_err(io)?;
            file.seek(SeekFrom::Start(start)).map_err(io)?;
            out.push(FileLines {
                path: path.to_path_buf(),
                reader: BufReader::with_capacity(256 * 1024, file),
                left: end - start,
            });
            start = end;
        }
        Ok(out)
    }
}

/// The offset of the first line starting at or after `at` (`at` itself if a line ends just
/// before it).
fn next_line_start(path: &Path, at: u64, len: u64) -> std::io::Result<u64> {
    if at == 0 || at >= len {
        return Ok(at.min(len));
    }
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(at - 1))?;
    let mut reader = BufReader::new(file);
    let mut skipped = Vec::new();
    let n = reader.read_until(b'\n', &mut skipped)?;
    Ok((at - 1 + n as u64).min(len))
}

impl Producer for FileLines {
    type Output = String;

    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<String>, BoxError> {
        let mut batch = Vec::with_capacity(demand.min(4096));
        let mut buf = Vec::new();
        while batch.len() < demand && self.left > 0 {
            buf.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| format!("reading {}: {e}", self.path.display()))?;
            if n == 0 {
                self.left = 0;
                break;
            }
            self.left = self.left.saturating_sub(n as u64);
            if buf.last() == Some(&b'\n') {
                buf.pop();
                if buf.last() == Some(&b'\r') {
                    buf.pop();
                }
            }
            let line = String::from_utf8(std::mem::take(&mut buf))
                .map_err(|_| format!("{}: a line is not UTF-8", self.path.display()))?;
            batch.push(line);
        }
        Ok(if self.left == 0 {
            Emit::Done(batch)
        } else {
            Emit::Events(batch)
        })
    }
}
