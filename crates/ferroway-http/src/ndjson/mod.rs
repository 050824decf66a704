//! NDJSON over a long-lived response: one record per line, as many streaming APIs send
//! (`application/x-ndjson`, JSON lines, chunked `text/plain`), resumed after the last
//! acknowledged record by a cursor where the API takes one.

mod options;
mod source;

pub use crate::error::{OptionsError, SourceError};
pub use options::NdjsonOptions;
pub use source::{NdjsonMetadata, NdjsonSource, NdjsonSourceFactory};
