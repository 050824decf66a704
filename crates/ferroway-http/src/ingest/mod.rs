//! An HTTP ingest server (a webhook receiver) as a pipeline source.
//!
//! Clients `POST` one record, a JSON array of records, or NDJSON; the response is sent only
//! once the pipeline finished every record of the request — `200` when all succeeded, `500`
//! listing the ones that failed — so a client that retries until it gets a `200` has every
//! record delivered at least once. When the pipeline has no demand the server answers `503`
//! with `Retry-After` before it reads the body, and at most `max_requests` are taken at once:
//! load waits at the clients, not in memory.
//!
//! ```no_run
//! use ferroway::connector::file::{FileSink, FileSinkOptions};
//! use ferroway::pipeline::{Batcher, Forward, Pipeline};
//! use ferroway_http::ingest::{IngestOptions, IngestSource};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let source = IngestSource::bind(IngestOptions::new("127.0.0.1:8080").path("/events").bearer("s3cr3t"))?;
//! let sink = FileSink::open("events.ndjson", FileSinkOptions::new()).await?;
//! let pipeline = Pipeline::builder("webhooks", Forward::new())
//!     .source(source)
//!     .sink(sink, Batcher::new("file"))
//!     .start()
//!     .await?;
//! pipeline.run_until(ferroway::shutdown_signal()).await?;
//! # Ok(()) }
//! ```

mod ack;
mod body;
mod metadata;
mod options;
mod queue;
mod server;
mod source;

pub use crate::error::{IngestError, OptionsError};
pub use body::Format;
pub use metadata::IngestMetadata;
pub use options::IngestOptions;
pub use source::{IngestProducer, IngestSource};
