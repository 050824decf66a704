//! Server-Sent Events: the `text/event-stream` format and a source that reads it.
//!
//! [`SseParser`] turns the bytes of a response, in chunks cut anywhere, into [`SseEvent`]s, and
//! keeps what a client needs to reconnect: the last event id (sent back as `Last-Event-ID`) and
//! the server's `retry:` delay. [`SseSource`] is the pipeline source built on it: one
//! long-lived `GET`, read as fast as the pipeline asks, made again whenever it ends.

mod options;
mod parser;
mod source;

pub use crate::error::{OptionsError, SourceError};
pub use options::SseOptions;
pub use parser::{SseError, SseEvent, SseParser};
pub use source::{SseSource, SseSourceFactory};
