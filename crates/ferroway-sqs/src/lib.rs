//! # ferroway-sqs
//!
//! Amazon SQS for Ferroway pipelines, on the official AWS SDK (`aws-sdk-sqs`, rustls on
//! ring), in the connector contract of [`ferroway::connector`].
//!
//! ```no_run
//! use ferroway::pipeline::{Batcher, Forward, Pipeline};
//! use ferroway_sqs::{SinkOptions, SqsOptions, SqsSink, SqsSource};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // Moves queue `orders` to queue `archive`: each message deleted from `orders` once
//! // `archive` returned its copy's id.
//! let pipeline = Pipeline::builder("copy", Forward::new())
//!     .source(SqsSource::factory(SqsOptions::new("https://sqs.eu-west-1.amazonaws.com/123456789012/orders"))?)
//!     .sink(SqsSink::new(SinkOptions::new("https://sqs.eu-west-1.amazonaws.com/123456789012/archive"))?, Batcher::new("archive").batch_size(10))
//!     .start()
//!     .await?;
//! pipeline.run_until(ferroway::shutdown_signal()).await?; // on return, every delete is made
//! # Ok(()) }
//! ```
//!
//! - [`SqsSource::factory`] → [`SqsSourceFactory`]: long-poll `ReceiveMessage` calls sized by
//!   the pipeline's demand; `DeleteMessageBatch` once the pipeline finished with a message;
//!   failures left for redelivery or made visible after a delay ([`OnFailed`]); the
//!   receive-count limit to the dead-letter route; visibility extended for slow messages;
//!   FIFO group ids as keys. Each message is a [`Message<SqsMessage>`](ferroway::pipeline::Message)
//!   with [`SqsMetadata`] (message id, receipt handle, receive count, timestamps, group and
//!   deduplication ids) as its origin.
//! - [`SqsSink`]: `SendMessageBatch` split by count and size, per-entry outcomes, FIFO group
//!   and deduplication ids from the record.
//! - [`QueueOptions`]: region and endpoint (read from the queue URL where they can be, so a
//!   local emulator's queue URL is enough), explicit [`Credentials`] or the SDK's chain.
//!
//! Errors name the queue and SQS' answer; credentials never appear in them, in logs or in
//! `Debug` output. Everything is logged through `tracing`; metric names are in [`metrics`].
//! Feature `config`: `SqsSourceConfig` / `SqsSinkConfig`, `type = "sqs"` for the `ferroway`
//! CLI.
//!
//! ## Example
//!
//! `examples/queue_to_file.rs`: a queue consumed into an NDJSON file made durable before the
//! deletes, a clean stop on Ctrl-C (against a local moto server: `scripts/services/sqs.sh`).
//!
//! ```text
//! cargo run -p ferroway-sqs --example queue_to_file -- --seed 1000
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

#[cfg(feature = "config")]
pub use config::{SqsSinkConfig, SqsSourceConfig};
pub use error::{OptionsError, SinkError, SourceError};
pub use message::{SqsMessage, SqsMetadata};
pub use options::{Credentials, Deduplication, GroupId, OnFailed, QueueOptions, SinkOptions, SqsOptions};
pub use sink::SqsSink;
pub use source::{SqsSource, SqsSourceFactory};
