//! Files: a source of lines or NDJSON with durable checkpoints and optional following, and an
//! appending sink that is durable before it returns.
//!
//! # Delivery guarantee
//!
//! [`FileSource`] is at-least-once: a line is in the checkpoint only once it and every line
//! before it in its file were acknowledged. A pipeline whose `handle_batch` makes its output
//! durable before returning (as [`FileSink::write_batch`] does) loses nothing across crashes;
//! after a crash it sees again at most the lines emitted since the last checkpoint write —
//! bounded by [`FileSourceBuilder::max_pending_lines`] when set. A graceful stop
//! ([`Pipeline::stop`](crate::pipeline::Pipeline::stop)) repeats nothing: once drained, the
//! pipeline flushes the source's acknowledger, which writes the checkpoint.
//!
//! # Files are identified by content, not by name
//!
//! A checkpoint row names a file by device, inode and a hash of its first 256 bytes. A file
//! renamed keeps its place; a new file at an old name (rotation) starts from its beginning; a
//! file shorter than its checkpoint, or whose first bytes changed, was truncated or replaced
//! and starts over.

mod checkpoint;
mod follow;
mod sink;
mod source;
#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use checkpoint::FilePosition;
pub use sink::{FileSink, FileSinkOptions, Rotation, RotationNaming, SyncPolicy, WriteReceipt};
pub use source::FileProducer;

use self::checkpoint::{Checkpoints, Store};
use self::follow::Input;
#[cfg(feature = "json")]
use super::Ndjson;
use super::{LineFormat, Text};

/// Errors of the file connectors; each names the file (and line) involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// An I/O operation on `path` failed.
    #[error("{}: {op}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done, e.g. `open` or `sync`.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The checkpoint file could not be understood.
    #[error("{}:{line}: corrupt checkpoint: {reason}", path.display())]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// The line of the checkpoint file (1-based).
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The input pattern is not supported.
    #[error("{}: invalid pattern: {reason}", pattern.display())]
    Pattern {
        /// The pattern as given.
        pattern: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An earlier write or fsync of the sink failed: what it wrote since its last successful
    /// fsync may be lost, so it refuses to report anything durable any more.
    #[error("{}: sink unusable after an earlier failure: {reason}", path.display())]
    Poisoned {
        /// The sink's file.
        path: PathBuf,
        /// The first failure.
        reason: String,
    },
}

impl FileError {
    pub(crate) fn io(path: &Path, op: &'static str) -> impl FnOnce(io::Error) -> FileError {
        let path = path.to_owned();
        move |source| FileError::Io { path, op, source }
    }
}

/// Where a message of a [`FileSource`] came from: `message.metadata::<FileMetadata>()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMetadata {
    /// The file, as discovered.
    pub path: Arc<Path>,
    /// The line number in the file (1-based).
    pub line: u64,
    /// The byte offset where the line starts.
    pub offset: u64,
}

impl crate::pipeline::Origin for FileMetadata {
    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("path", self.path.display().to_string()),
            ("line", self.line.to_string()),
            ("offset", self.offset.to_string()),
        ]
    }
}

/// What a failed acknowledgement does to a [`FileSource`]'s checkpoint, for messages whose
/// [`OnFailure`](crate::pipeline::OnFailure) is `Default`.
///
/// With a dead-letter sink on the pipeline, failed messages that the sink stored are
/// acknowledged as *successful* — they are done; only what the sink could not store (or every
/// failure, without a sink) arrives here as failed. A message can override the policy with
/// [`Message::configure_ack`](crate::pipeline::Message::configure_ack): `Ack` and `Reject` move
/// the checkpoint past it, `Requeue` holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnFailed {
    /// The line is done: the checkpoint moves past it. Logged as a warning and counted in
    /// `ferroway_connector_failed_acks_total{action="skipped"}`. The default: configure a
    /// dead-letter sink to keep failed lines.
    #[default]
    Skip,
    /// The checkpoint stays before the line, so a restart reads it (and every line after it)
    /// again. Lines after it keep flowing until [`max_pending_lines`] stops the source.
    ///
    /// [`max_pending_lines`]: FileSourceBuilder::max_pending_lines
    Hold,
}

/// Options of a [`FileSource`]. Start with [`FileSource::builder`].
#[derive(Debug, Clone)]
pub struct FileSourceBuilder<F> {
    input: PathBuf,
    format: F,
    follow: bool,
    poll_interval: Duration,
    checkpoint_dir: Option<PathBuf>,
    checkpoint_interval: Duration,
    max_pending: Option<u64>,
    on_failed: OnFailed,
    name: Option<String>,
    metadata: bool,
}

impl<F: LineFormat> FileSourceBuilder<F> {
    /// How lines become data (default [`Text`]).
    pub fn format<G: LineFormat>(self, format: G) -> FileSourceBuilder<G> {
        FileSourceBuilder {
            input: self.input,
            format,
            follow: self.follow,
            poll_interval: self.poll_interval,
            checkpoint_dir: self.checkpoint_dir,
            checkpoint_interval: self.checkpoint_interval,
            max_pending: self.max_pending,
            on_failed: self.on_failed,
            name: self.name,
            metadata: self.metadata,
        }
    }

    /// Newline-delimited JSON: each line a [`serde_json::Value`]; malformed lines become failed
    /// messages (`line 17: invalid JSON: ...`).
    #[cfg(feature = "json")]
    pub fn ndjson(self) -> FileSourceBuilder<Ndjson> {
        self.format(Ndjson)
    }

    /// Follow the input like `tail -F` instead of finishing at the end of its files: appended
    /// lines are read, new files matching the input are picked up, a file replaced at its path
    /// (rotation by rename) is read to its end before its successor, and a truncated file is
    /// read again from its start. Default: off — the source finishes at the end of all files.
    pub fn follow(mut self, follow: bool) -> Self {
        self.follow = follow;
        self
    }

    /// How often a followed input is checked for new data and new files (default 250 ms).
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d;
        self
    }

    /// Where the checkpoint file (`<name>.checkpoint`) lives; created if missing. Without
    /// it, every run reads the input from the start.
    pub fn checkpoint_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.checkpoint_dir = Some(dir.into());
        self
    }

    /// How often acknowledged progress is written to the checkpoint (default 1 s). It is also
    /// written by [`FileSource::commit`] and when the source's last handle is dropped.
    pub fn checkpoint_interval(mut self, d: Duration) -> Self {
        self.checkpoint_interval = d;
        self
    }

    /// At most `n` lines handed to the pipeline beyond the checkpoint file: the source waits
    /// (and asks for a checkpoint write) before going further. This bounds what a crash can
    /// deliver twice to `n` lines. Default: no bound.
    pub fn max_pending_lines(mut self, n: u64) -> Self {
        self.max_pending = Some(n.max(1));
        self
    }

    /// What a failed acknowledgement does to the checkpoint (default [`OnFailed::Skip`]).
    pub fn on_failed(mut self, policy: OnFailed) -> Self {
        self.on_failed = policy;
        self
    }

    /// The source's name: in logs, metrics and the checkpoint file's name (default `file`).
    /// Two sources sharing a checkpoint directory need different names.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Whether messages carry [`FileMetadata`] (default on). Off saves an allocation per
    /// message when nobody reads it.
    pub fn with_metadata(mut self, on: bool) -> Self {
        self.metadata = on;
        self
    }

    /// Validates the input, creates the checkpoint directory and loads the checkpoint.
    ///
    /// # Errors
    /// A pattern with wildcards outside the file name; without `follow`, an input file that
    /// does not exist; an unreadable or corrupt checkpoint file.
    pub fn open(self) -> Result<FileSource<F>, FileError> {
        let input = Input::parse(&self.input)?;
        if !self.follow {
            let (Input::File(p) | Input::Dir(p) | Input::Glob { dir: p, .. }) = &input;
            std::fs::metadata(p).map_err(FileError::io(p, "open"))?;
        }
        let name: Arc<str> = self.name.as_deref().unwrap_or("file").into();
        let store = match &self.checkpoint_dir {
            Some(dir) => Some(Store::new(dir, &name)?),
            None => None,
        };
        let checkpoints = Checkpoints::new(name.clone(), store, self.on_failed, self.checkpoint_interval)?;
        Ok(FileSource {
            config: Arc::new(Config {
                input,
                format: self.format,
                follow: self.follow,
                poll_interval: self.poll_interval,
                max_pending: self.max_pending,
                metadata: self.metadata,
                name,
            }),
            checkpoints: Arc::new(checkpoints),
        })
    }
}

#[derive(Debug)]
struct Config<F> {
    input: Input,
    format: F,
    follow: bool,
    poll_interval: Duration,
    max_pending: Option<u64>,
    metadata: bool,
    name: Arc<str>,
}

/// A source of lines from a file, a `*`/`?` pattern on file names, or a directory, resuming
/// from a durable checkpoint. A cheap handle: clone it into the pipeline's producer factory;
/// keep one to watch [`positions`](Self::positions) or [`commit`](Self::commit) at will.
///
/// Run it with one producer (the default `producer_concurrency`): producers of one source
/// would read the same lines.
///
/// ```
/// use ferroway::connector::file::{FileMetadata, FileSource};
/// use ferroway::pipeline::{Handler, Message, Pipeline, Processors};
/// use ferroway::BoxError;
///
/// struct Check;
/// impl Handler for Check {
///     type Data = serde_json::Value;
///     async fn handle_message(&self, m: &mut Message<serde_json::Value>) -> Result<(), BoxError> {
///         let at = m.metadata::<FileMetadata>().expect("set by the source");
///         println!("{}:{} -> {}", at.path.display(), at.line, m.data());
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = std::env::temp_dir().join(format!("ferroway-doc-source-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// std::fs::write(dir.join("a.ndjson"), "{\"n\":1}\nnot json\n{\"n\":2}\n")?;
/// let source = FileSource::builder(dir.join("*.ndjson"))
///     .ndjson()
///     .checkpoint_dir(dir.join("state"))
///     .open()?;
/// let factory = source.clone();
/// let pipeline = Pipeline::builder("check", Check)
///     .producer(move || factory.producer())
///     .processors(Processors::new().concurrency(1))
///     .start()
///     .await?;
/// pipeline.join().await?; // "not json" was delivered as a failed message: line 2
/// assert_eq!(source.positions()[0].durable_line, 3); // in the checkpoint file
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FileSource<F> {
    config: Arc<Config<F>>,
    checkpoints: Arc<Checkpoints>,
}

impl<F> Clone for FileSource<F> {
    fn clone(&self) -> Self {
        FileSource {
            config: self.config.clone(),
            checkpoints: self.checkpoints.clone(),
        }
    }
}

impl FileSource<Text> {
    /// Options for a source reading `input`: a file, a directory (its regular, non-hidden
    /// files) or a pattern with `*` and `?` in the file name (`logs/app-*.log`). Files are
    /// read in path order.
    pub fn builder(input: impl Into<PathBuf>) -> FileSourceBuilder<Text> {
        FileSourceBuilder {
            input: input.into(),
            format: Text,
            follow: false,
            poll_interval: Duration::from_millis(250),
            checkpoint_dir: None,
            checkpoint_interval: Duration::from_secs(1),
            max_pending: None,
            on_failed: OnFailed::Skip,
            name: None,
            metadata: true,
        }
    }
}

/// A file source is a connector [`Source`](crate::connector::Source): `.source(file_source)`.
/// Its close writes the checkpoint of everything acknowledged.
impl<F: LineFormat> crate::connector::Source for FileSource<F> {
    type Data = F::Item;
    type Producer = FileProducer<F>;

    fn producer(&self, _: usize) -> Result<FileProducer<F>, crate::BoxError> {
        Ok(FileSource::producer(self))
    }

    fn close(&self) -> crate::pipeline::BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Err(e) = self.commit().await {
                tracing::warn!(error = %e, "the final checkpoint could not be written; the next run reads the last lines again");
            }
        })
    }
}

impl<F: LineFormat> FileSource<F> {
    /// A producer for the pipeline: `.producer(move || source.producer())` (or hand the source
    /// itself to `.source(..)`). A producer made after a crash of the previous one resumes
    /// after the last acknowledged line.
    pub fn producer(&self) -> FileProducer<F> {
        FileProducer::new(self.clone())
    }

    /// Writes acknowledged progress to the checkpoint file now (if it changed). Pipelines do
    /// this once drained (through [`Acknowledger::flush`](crate::pipeline::Acknowledger::flush));
    /// besides, it happens every checkpoint interval and when the last handle is dropped.
    ///
    /// # Errors
    /// The checkpoint could not be written; the previous one is intact.
    pub async fn commit(&self) -> Result<(), FileError> {
        self.checkpoints.commit().await.map(|_| ())
    }

    /// Each file's acknowledged, emitted and durable position, sorted by path.
    pub fn positions(&self) -> Vec<FilePosition> {
        self.checkpoints.positions()
    }

    /// The source's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }
}
