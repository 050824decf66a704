//! HTTP streaming for Ferroway pipelines.
//!
//! [`sse`]: the Server-Sent Events wire format, parsed exactly as the WHATWG HTML standard's
//! "event stream interpretation" says — fields, multi-line data, comments, `retry:`, the BOM,
//! CR / LF / CRLF line ends — from chunks cut anywhere, with bounded memory; and
//! [`sse::SseSource`], a pipeline source that reads one event stream as fast as the pipeline
//! asks and reconnects with `Last-Event-ID`.
//!
//! [`ndjson`]: one record per line of a long-lived response, resumed by a cursor after the
//! last acknowledged record.
//!
//! [`poll`]: an endpoint polled on an interval, pages followed by link or token, resumed by a
//! cursor after the last acknowledged record.
//!
//! [`ingest`]: an HTTP server taking `POST`ed records into a pipeline, answering each
//! request once the pipeline finished its records, and `503` while it has no demand.
//!
//! [`sink`]: batches `POST`ed as JSON arrays or NDJSON, retried while the server is busy or
//! down (honouring `Retry-After`) behind a circuit breaker, a refused batch failed as one.
//!
//! Feature `config`: [`SseSourceConfig`](config::SseSourceConfig),
//! [`IngestSourceConfig`](config::IngestSourceConfig) and
//! [`HttpSinkConfig`](config::HttpSinkConfig) — `type = "sse"`, `type = "http-ingest"` and
//! sink `type = "http"` for the `ferroway` CLI.
//!
//! ```
//! use ferroway_http::sse::SseParser;
//!
//! let mut parser = SseParser::new();
//! let mut events = Vec::new();
//! parser.feed(b"event: price\nid: 7\ndata: YHOO\ndata: +2\n\n", &mut events)?;
//! assert_eq!(events[0].event, "price");
//! assert_eq!(events[0].data, "YHOO\n+2");
//! assert_eq!(events[0].id, "7");
//! # Ok::<(), ferroway_http::sse::SseError>(())
//! ```

#![warn(missing_docs)]

mod client;
#[cfg(feature = "config")]
pub mod config;
mod cursor;
mod error;
pub mod ingest;
pub mod metrics;
pub mod ndjson;
pub mod poll;
pub mod sink;
pub mod sse;
mod stream;
