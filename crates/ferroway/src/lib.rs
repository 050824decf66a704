//! # Ferroway
//!
//! Demand-driven, back-pressured, acknowledged streaming on Tokio: the ideas of Elixir's
//! GenStage and Broadway, built for Rust.
//!
//! - [`stage`]: producers, consumers and producer-consumers exchanging events by demand.
//! - [`pipeline`]: Broadway-style pipelines with acknowledgements, batching, partitioning.
//! - [`flow`]: Flow-style partitioned MapReduce with windows, watermarks and triggers.
//! - [`resilience`]: backoff, retry, circuit breaker, supervision, connection manager.
//! - [`connector`]: embedded sources and sinks — files with durable checkpoints, stdin/stdout,
//!   a generator.
//! - [`telemetry`]: the names of every metric recorded.
//! - `config` (feature `config`): connector options from configuration files.
//!
//! A source to a sink, with a batcher between — any connector's source, any connector's sink:
//!
//! ```
//! use ferroway::connector::file::{FileSink, FileSinkOptions, FileSource};
//! use ferroway::pipeline::{Batcher, Forward, Pipeline};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("ferroway-doc-lib-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! # std::env::set_current_dir(&dir)?;
//! # std::fs::write("in.txt", "a\nb\n")?;
//! let pipeline = Pipeline::builder("copy", Forward::new())
//!     .source(FileSource::builder("in.txt").open()?)
//!     .sink(FileSink::open("out.txt", FileSinkOptions::new()).await?, Batcher::new("out"))
//!     .start().await?;
//! pipeline.run_until(ferroway::shutdown_signal()).await?; // the file's end, or Ctrl-C: drained
//! # assert_eq!(std::fs::read_to_string("out.txt")?, "a\nb\n");
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

#[cfg(feature = "config")]
pub mod config;
pub mod connector;
pub mod error;
pub mod flow;
pub mod pipeline;
pub mod resilience;
mod shutdown;
pub mod stage;
pub mod telemetry;

pub use error::{BoxError, StageError, SubscribeError, Unavailable, is_unavailable};
pub use shutdown::shutdown_signal;
