//! Embedded connectors: sources and sinks that need no broker — files (with durable
//! checkpoints and `tail -F` style following), stdin/stdout (or any async reader/writer), and a
//! deterministic generator for demos and benchmarks.
//!
//! - [`file::FileSource`]: lines or NDJSON from a file, a glob or a directory, optionally
//!   followed; resumes after a restart exactly after the last line acknowledged without a gap.
//! - [`file::FileSink`]: appends lines, durable (fsync) before it returns or on an interval,
//!   with optional size-based rotation; a [`Sink`], also for dead letters.
//! - [`stdio::ReaderSource`] / [`stdio::WriterSink`]: stdin, stdout, or any `AsyncRead` /
//!   `AsyncWrite`.
//! - [`generator::Generator`]: N or unbounded numbered messages, optionally rate-limited.
//!
//! Sources turn each line into a message through a [`LineFormat`]: [`Text`], [`Bytes`] or
//! (feature `json`, on by default) [`Ndjson`]. A line a format cannot decode becomes a *failed*
//! message naming its line number — never a crashed pipeline.
//!
//! ```
//! use ferroway::connector::file::{FileSink, FileSinkOptions, FileSource};
//! use ferroway::pipeline::{BatchInfo, Batcher, Handler, Message, Pipeline, Processors};
//! use ferroway::BoxError;
//!
//! struct Upper(FileSink);
//! impl Handler for Upper {
//!     type Data = String;
//!     async fn handle_message(&self, m: &mut Message<String>) -> Result<(), BoxError> {
//!         m.update_data(|s| s.to_uppercase());
//!         Ok(())
//!     }
//!     async fn handle_batch(&self, batch: &mut [Message<String>], _: &BatchInfo) -> Result<(), BoxError> {
//!         // Durable before the batch is acknowledged, so the source's checkpoint never gets ahead.
//!         self.0.write_batch(batch.iter().map(|m| m.data())).await?;
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("ferroway-doc-connector-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! std::fs::write(dir.join("in.txt"), "alpha\nbeta\n")?;
//! let source = FileSource::builder(dir.join("in.txt")).checkpoint_dir(dir.join("state")).open()?;
//! let sink = FileSink::open(dir.join("out.txt"), FileSinkOptions::new()).await?;
//! let producer = source.clone();
//! let pipeline = Pipeline::builder("upper", Upper(sink))
//!     .producer(move || producer.producer())
//!     .processors(Processors::new().concurrency(1))
//!     .batcher(Batcher::new("out"))
//!     .start()
//!     .await?;
//! // The source finishes at the end of the file; once drained, the pipeline flushes the
//! // source's acknowledger, which writes the checkpoint: a restart would read nothing again.
//! pipeline.join().await?;
//! assert_eq!(source.positions()[0].durable_line, 2);
//! assert_eq!(std::fs::read_to_string(dir.join("out.txt"))?, "ALPHA\nBETA\n");
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(()) }
//! ```
//!
//! # Metrics
//!
//! | name | kind | labels | meaning |
//! |---|---|---|---|
//! | `ferroway_connector_lines_read_total` | counter | `source` | lines read by a file or reader source |
//! | `ferroway_connector_bytes_read_total` | counter | `source` | bytes read by a file or reader source |
//! | `ferroway_connector_decode_failures_total` | counter | `source` | lines delivered as failed: not decodable |
//! | `ferroway_connector_failed_acks_total` | counter | `source`, `action` | failed acks, `skipped` (watermark moves on) or `held` |
//! | `ferroway_connector_checkpoints_total` | counter | `source` | checkpoint files written |
//! | `ferroway_connector_checkpoint_errors_total` | counter | `source` | checkpoint writes that failed |
//! | `ferroway_connector_file_switches_total` | counter | `source`, `reason` | followed files `rotated` or `truncated` |
//! | `ferroway_connector_bytes_written_total` | counter | `sink` | bytes appended by a file or writer sink |
//! | `ferroway_connector_fsyncs_total` | counter | `sink` | fsyncs of a file sink |
//! | `ferroway_connector_sink_rotations_total` | counter | `sink` | files rotated by a file sink |
//! | `ferroway_connector_generated_total` | counter | `source` | messages emitted by a generator |

pub mod file;
pub mod generator;
pub mod leases;
pub mod settle;
pub mod stdio;

mod boxed;
mod dead_letter;
mod format;
mod map;
mod producers;
mod record;
mod sink;
mod source;

pub use boxed::{BoxProducer, BoxSource};
pub use dead_letter::{DeadLetterWriter, LineSink};
#[cfg(feature = "json")]
pub use format::Ndjson;
pub use format::{Bytes, LineFormat, Text};
pub use map::{Map, MapProducer};
pub use producers::Producers;
pub use record::{AsRecord, Record};
pub use sink::Sink;
pub use source::Source;

/// Lines read by a file or reader source (counter; label `source`).
pub const LINES_READ: &str = "ferroway_connector_lines_read_total";
/// Bytes read by a file or reader source (counter; label `source`).
pub const BYTES_READ: &str = "ferroway_connector_bytes_read_total";
/// Lines delivered as failed messages because their format could not decode them (counter;
/// label `source`).
pub const DECODE_FAILURES: &str = "ferroway_connector_decode_failures_total";
/// Failed acknowledgements seen by a file source (counter; labels `source`, `action` =
/// `skipped` | `held`).
pub const FAILED_ACKS: &str = "ferroway_connector_failed_acks_total";
/// Checkpoint files written (counter; label `source`).
pub const CHECKPOINTS: &str = "ferroway_connector_checkpoints_total";
/// Checkpoint writes that failed (counter; label `source`).
pub const CHECKPOINT_ERRORS: &str = "ferroway_connector_checkpoint_errors_total";
/// Followed files replaced at their path or truncated (counter; labels `source`, `reason` =
/// `rotated` | `truncated`).
pub const FILE_SWITCHES: &str = "ferroway_connector_file_switches_total";
/// Bytes appended by a sink (counter; label `sink`).
pub const BYTES_WRITTEN: &str = "ferroway_connector_bytes_written_total";
/// fsyncs of a file sink (counter; label `sink`).
pub const FSYNCS: &str = "ferroway_connector_fsyncs_total";
/// Files rotated by a file sink (counter; label `sink`).
pub const SINK_ROTATIONS: &str = "ferroway_connector_sink_rotations_total";
/// Messages emitted by a generator (counter; label `source`).
pub const GENERATED: &str = "ferroway_connector_generated_total";
