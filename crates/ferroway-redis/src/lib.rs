//! # ferroway-redis
//!
//! Redis Streams for Ferroway pipelines: a consumer-group source with pending-entry recovery
//! and claiming, and an `XADD` sink.
//!
//! - [`RedisSource`]: a pipeline producer reading streams as a member of a consumer group;
//!   each entry becomes a [`Message<Entry>`](ferroway::pipeline::Message) with
//!   [`RedisMetadata`]; `XACK` only after the pipeline finished with it.
//! - [`RedisSink`]: pipelined `XADD`s with optional approximate trimming, confirmed before the
//!   messages are acknowledged upstream.
//!
//! Redis' names are kept: stream, group, consumer, pending entries, claim, `XACK`.
//! Metric names are listed in [`metrics`].
#![deny(missing_docs)]

mod ack;
mod connection;
mod entry;
mod error;
mod group;
mod in_flight;
pub mod metrics;
mod options;
mod reader;
mod sink;
mod source;

pub use entry::{Entry, Fields, RedisMetadata, StreamId};
pub use error::{OptionsError, SinkError, SourceError};
pub use options::{ClaimOptions, OnFailed, RedisUrl, SinkOptions, SourceOptions, StartId, Trim};
pub use sink::RedisSink;
pub use source::RedisSource;
