//! # ferroway-pubsub
//!
//! Google Cloud Pub/Sub for Ferroway pipelines, in the connector contract of
//! [`ferroway::connector`]: a streaming-pull source and a publishing sink, on the lean
//! `gcloud-pubsub` client's gRPC stubs (the stream, leases and batching are ours).
//!
//! ```no_run
//! use ferroway::pipeline::{Batcher, Forward, Pipeline};
//! use ferroway_pubsub::{ClientOptions, PubSubOptions, PubSubSink, PubSubSource, SinkOptions};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // Copies subscription `orders-copy` to topic `archive`: each message acknowledged once
//! // `archive` returned its copy's id.
//! let project = ClientOptions::new("my-project");
//! let pipeline = Pipeline::builder("copy", Forward::new())
//!     .source(PubSubSource::factory(PubSubOptions::new(project.clone(), "orders-copy"))?)
//!     .sink(PubSubSink::new(SinkOptions::new(project, "archive"))?, Batcher::new("archive").batch_size(100))
//!     .start()
//!     .await?;
//! pipeline.run_until(ferroway::shutdown_signal()).await?; // on return, every ack is made
//! # Ok(()) }
//! ```
//!
//! - [`PubSubSource::factory`] → [`PubSubSourceFactory`]: a `StreamingPull` stream per
//!   producer, read only as the pipeline's demand and the flow-control limits allow;
//!   batched acks once the pipeline finished with a message; failures left for their ack
//!   deadline or delivered again after a delay ([`OnFailed`]); the delivery-attempt limit
//!   to the dead-letter route; leases extended for slow messages; ordering keys as keys;
//!   streams reopened with backoff. Each message is a
//!   [`Message<PubSubMessage>`](ferroway::pipeline::Message) with [`PubSubMetadata`]
//!   (message id, ack id, publish time, ordering key, delivery attempt) as its origin.
//! - [`PubSubSink`]: `Publish` requests split by count and size, ordering keys published in
//!   order (a refused key paused until [`PubSubSink::resume_publish`]), per-message outcomes.
//! - [`ClientOptions`]: the project, the emulator (`PUBSUB_EMULATOR_HOST`) or the endpoint,
//!   credentials (feature `auth`, on by default: application default credentials or a key
//!   file).
//!
//! Errors name the subscription or topic and Pub/Sub's answer; credentials never appear in
//! them, in logs or in `Debug` output. Everything is logged through `tracing`; metric names
//! are in [`metrics`]. Feature `config`: `PubSubSourceConfig` / `PubSubSinkConfig`,
//! `type = "pubsub"` for the `ferroway` CLI.
//!
//! ## Example
//!
//! `examples/subscription_to_file.rs`: a subscription consumed into an NDJSON file made
//! durable before the acks, a clean stop on Ctrl-C (against the emulator:
//! `scripts/services/pubsub.sh`).
//!
//! ```text
//! cargo run -p ferroway-pubsub --example subscription_to_file -- --seed 1000
//! ```
#![deny(missing_docs)]

mod ack;
mod client;
#[cfg(feature = "config")]
mod config;
mod error;
mod message;
pub mod metrics;
mod options;
mod sink;
mod source;
mod stream;

#[cfg(feature = "config")]
pub use config::{PubSubSinkConfig, PubSubSourceConfig};
pub use error::{OptionsError, SinkError, SourceError};
pub use message::{PubSubMessage, PubSubMetadata};
pub use options::{ClientOptions, OnFailed, OrderingKey, PubSubOptions, SinkOptions};
pub use sink::PubSubSink;
pub use source::{PubSubSource, PubSubSourceFactory};
