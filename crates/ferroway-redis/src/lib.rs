//! # ferroway-redis
//!
//! Redis Streams for Ferroway pipelines: a consumer-group source with pending-entry recovery
//! and claiming, and an `XADD` sink — both in the connector contract of
//! [`ferroway::connector`], so they compose with any other source or sink.
//!
//! ```no_run
//! use ferroway::pipeline::{Batcher, Forward, Pipeline};
//! use ferroway_redis::{RedisSink, RedisSource, SinkOptions, SourceOptions};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // Copies stream `orders` to stream `orders-copy`, each entry once, XACKed once copied.
//! let pipeline = Pipeline::builder("copy", Forward::new())
//!     .source(RedisSource::factory(SourceOptions::new("redis://127.0.0.1:6379", "copier", ["orders"]))?.records())
//!     .sink(RedisSink::new(SinkOptions::new("redis://127.0.0.1:6379", "orders-copy"))?, Batcher::new("copy"))
//!     .start()
//!     .await?;
//! pipeline.run_until(ferroway::shutdown_signal()).await?; // on return, every XACK is in Redis
//! # Ok(()) }
//! ```
//!
//! - [`RedisSource::factory`] → [`RedisSourceFactory`]: the [`Source`](ferroway::connector::Source)
//!   a pipeline reads from, one consumer of the group per producer (`<consumer>-<i>` for
//!   producer `i > 0`). Each entry becomes a [`Message<Entry>`](ferroway::pipeline::Message)
//!   with [`RedisMetadata`] (also its [`Origin`](ferroway::pipeline::Origin), so dead-letter
//!   records name the stream and entry id), `XACK`ed only after the pipeline finished with
//!   it; [`Pipeline::stop`](ferroway::pipeline::Pipeline::stop) returns once the last `XACK`s
//!   are sent. Redelivered entries come in isolated groups, so an entry that crashes the
//!   process is the only one to reach the delivery limit (see [`RedisSource`] for what that
//!   costs).
//! - [`RedisSourceFactory::records`] → [`RedisRecords`]: the same source with
//!   [`Record`](ferroway::connector::Record)s as data, for any sink — the entry as JSON, or
//!   one field's value ([`SourceOptions::payload_field`]); key from
//!   [`SourceOptions::key_field`]; the entry id's milliseconds as timestamp.
//! - [`RedisSink`]: a [`Sink`](ferroway::connector::Sink) of anything
//!   [`AsRecord`](ferroway::connector::AsRecord) — pipelined `XADD`s with optional
//!   approximate trimming, confirmed before the messages are acknowledged upstream; also a
//!   dead-letter sink. Its typed API ([`RedisSink::send`], [`RedisSink::add`]) serves a
//!   hand-written `handle_batch`.
//! - Feature `config`: `RedisSourceConfig` and `RedisSinkConfig`, `type = "redis"` in a
//!   configuration file (the `ferroway` CLI), options named as Redis names them.
//!
//! An outage is not a bad message. The source pauses while Redis is away and reconnects with
//! backoff; the sink reports it as [`SinkError::Unavailable`], which the pipeline waits out
//! (retrying with backoff) instead of failing or dead-lettering anything.
//!
//! The consumer name defaults to the host name (the pod name in Kubernetes), so a restarted
//! process is the same consumer and finds its pending entries; two processes on one host in
//! one group must set distinct names ([`SourceOptions::consumer`]). A clean stop with nothing
//! pending leaves the group.
//!
//! Everything is logged through `tracing` (connecting, group created or joined, entries
//! claimed or recovered, outages — rate-limited); install a subscriber to see it. URLs are
//! shown with their password redacted. Metric names are listed in [`metrics`]. Redis' names
//! are kept: stream, group, consumer, pending entries, claim, `XACK`.
//!
//! ## Example
//!
//! `examples/stream_to_file.rs` is a complete program: a stream read by a consumer group as
//! records, orders checked and enriched, batched into an NDJSON file made durable before
//! `XACK`, failures in a dead-letter file, a clean stop on Ctrl-C or SIGTERM.
//!
//! ```text
//! bash scripts/services/redis.sh   # a Redis on 127.0.0.1:6379, if you have none
//! cargo run -p ferroway-redis --example stream_to_file -- --seed 10000
//! RUST_LOG=debug cargo run -p ferroway-redis --example stream_to_file -- --url redis://host:6379 --out /tmp/orders
//! ```
#![deny(missing_docs)]

mod ack;
#[cfg(feature = "config")]
mod config;
mod connection;
mod entry;
mod error;
mod factory;
mod group;
mod in_flight;
pub mod metrics;
mod options;
mod reader;
mod records;
mod sink;
mod source;

#[cfg(feature = "config")]
pub use config::{RedisSinkConfig, RedisSourceConfig};
pub use entry::{Entry, Fields, RedisMetadata, StreamId};
pub use error::{OptionsError, SinkError, SourceError};
pub use factory::RedisSourceFactory;
pub use options::{ClaimOptions, OnFailed, RedisUrl, SinkOptions, SourceOptions, StartId, Trim};
pub use records::{RecordProducer, RedisRecords};
pub use sink::RedisSink;
pub use source::RedisSource;
