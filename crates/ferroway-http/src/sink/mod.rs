//! A batching HTTP sink: each batch the pipeline hands over is one `POST` (a JSON array or
//! NDJSON), retried while the server is busy or down, behind a circuit breaker.

mod options;
mod post;

pub use crate::error::OptionsError;
pub use options::{BodyFormat, HttpSinkOptions};
pub use post::HttpSink;
