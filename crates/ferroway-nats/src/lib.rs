//! # ferroway-nats
//!
//! NATS and JetStream for Ferroway pipelines, on the official `async-nats` client, in the
//! connector contract of [`ferroway::connector`].
//!
//! ```no_run
//! use ferroway::pipeline::{Batcher, Forward, Pipeline};
//! use ferroway_nats::{JetStreamOptions, JetStreamSource, NatsSink, SinkOptions};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // Copies stream ORDERS (consumer `copier`) to subject `archive.orders` through JetStream:
//! // each message acked once the other stream stored its copy.
//! let pipeline = Pipeline::builder("copy", Forward::new())
//!     .source(JetStreamSource::factory(JetStreamOptions::new("nats://127.0.0.1:4222", "ORDERS", "copier"))?)
//!     .sink(NatsSink::new(SinkOptions::new("nats://127.0.0.1:4222", "archive.orders").jetstream(true))?, Batcher::new("archive"))
//!     .start()
//!     .await?;
//! pipeline.run_until(ferroway::shutdown_signal()).await?; // on return, every ack is flushed
//! # Ok(()) }
//! ```
//!
//! **JetStream (at-least-once):**
//! - [`JetStreamSource::factory`] → [`JetStreamSourceFactory`]: a durable **pull** consumer,
//!   pulls sized by the pipeline's demand, explicit acks after the pipeline, nak (with
//!   optional delay) or term on failure ([`OnFailed`]), `+WPI` heartbeats for slow messages,
//!   the last allowed delivery's failure to the dead-letter route. Each message is a
//!   [`Message<NatsMessage>`](ferroway::pipeline::Message) with [`JetStreamMetadata`]
//!   (stream, consumer, stream and consumer sequence, delivered count) as its origin.
//! - [`jetstream::ensure_stream`] / [`jetstream::ensure_consumer`]: create or update streams
//!   (subjects, retention, storage, limits) and durable consumers (ack wait, max deliver,
//!   filter subject, deliver policy), in async-nats' types re-exported under JetStream's
//!   names.
//! - [`NatsSink`] with [`SinkOptions::jetstream`]: publish acks awaited before the upstream
//!   ack; `Nats-Msg-Id` deduplication from the record's key or header.
//!
//! **Core NATS (at-most-once):** [`SubscriptionSource`] over subscriptions (wildcards, queue
//! groups) with a bounded buffer; [`NatsSink`] publishing (flushed) and
//! [`NatsSink::request`]; [`Service`], a supervised request/reply server with a concurrency
//! limit in a queue group.
//!
//! The client reconnects by itself after an outage; a source that never reaches a server
//! within its connect timeout fails the pipeline with an error naming the URL (password
//! redacted). Everything is logged through `tracing`; metric names are in [`metrics`].
//! Feature `config`: `NatsSourceConfig` / `NatsSinkConfig`, `type = "nats"` for the
//! `ferroway` CLI.
//!
//! ## Example
//!
//! `examples/stream_to_file.rs`: a stream consumed by a durable consumer, each message
//! written to an NDJSON file made durable before the acks, a clean stop on Ctrl-C.
//!
//! ```text
//! cargo run -p ferroway-nats --example stream_to_file -- --seed 10000
//! ```
#![deny(missing_docs)]

#[cfg(feature = "config")]
mod config;
mod connection;
mod error;
pub mod jetstream;
mod message;
pub mod metrics;
mod options;
mod service;
mod sink;
mod subscription;

#[cfg(feature = "config")]
pub use config::{NatsSinkConfig, NatsSourceConfig};
pub use error::{OptionsError, SinkError, SourceError};
pub use jetstream::{JetStreamSource, JetStreamSourceFactory};
pub use message::{JetStreamMetadata, NatsMessage, SubjectMetadata};
pub use options::{JetStreamOptions, NatsUrl, OnFailed, SinkOptions, SubscribeOptions};
pub use service::{Service, ServiceHandle};
pub use sink::NatsSink;
pub use subscription::{SubscriptionSource, SubscriptionSourceFactory};
