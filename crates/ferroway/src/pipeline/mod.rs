//! Pipelines: Broadway for Rust — producers -> processors -> batchers -> batch processors,
//! with automatic acknowledgements, built on [`stage`](crate::stage) back-pressure.
//!
//! You write a [`Handler`]; the pipeline runs its producers, calls `handle_message` in
//! processors, groups messages into batches by batcher and batch key, calls `handle_batch` in
//! batch processors, and acknowledges every message exactly once, after the last stage that
//! handles it — grouped, one [`Acknowledger::ack`] call per acknowledger.
//!
//! ```
//! use std::time::Duration;
//! use ferroway::pipeline::{BatchInfo, Batcher, Handler, Message, Pipeline, Processors};
//! use ferroway::pipeline::testing::{Outcome, TestProducer};
//! use ferroway::BoxError;
//!
//! struct Events;
//! impl Handler for Events {
//!     type Data = String;
//!
//!     // Runs in the processors, concurrently.
//!     async fn handle_message(&self, m: &mut Message<String>) -> Result<(), BoxError> {
//!         if m.data().starts_with('#') {
//!             m.discard(); // a comment: acknowledged, not batched
//!         } else if m.data().contains("audit") {
//!             m.put_batcher("audit");
//!         }
//!         m.update_data(|s| s.to_uppercase());
//!         Ok(())
//!     }
//!
//!     // Runs in the batch processors, once per batch.
//!     async fn handle_batch(&self, batch: &mut [Message<String>], info: &BatchInfo) -> Result<(), BoxError> {
//!         println!("{}: writing {} events ({:?})", info.batcher, batch.len(), info.trigger);
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pipeline = Pipeline::builder("events", Events)
//!     .producer(TestProducer::new) // a real pipeline uses a connector's producer
//!     .processors(Processors::new().concurrency(2))
//!     .batcher(Batcher::new("default").batch_size(100).batch_timeout(Duration::from_millis(200)))
//!     .batcher(Batcher::new("audit").batch_size(10).concurrency(1))
//!     .start()
//!     .await?;
//! let pushed = pipeline.push_messages(["login".into(), "# note".into(), "audit: sudo".into()]);
//! assert!(pushed.outcomes().await.iter().all(|o| *o == Outcome::Successful));
//! pipeline.stop().await?; // drains: partial batches are flushed and acknowledged
//! # Ok(()) }
//! ```
//!
//! Memory is bounded by configuration — processors' `max_demand`, batchers' `max_demand` and
//! `batch_size` — never by the length of the stream, nor by how keys are distributed under
//! [`partition_by`](PipelineBuilder::partition_by). Messages in flight are at most
//!
//! ```text
//! producer_concurrency × (3 × processors − 1) × processors.max_demand        (to the processors)
//! + per batcher: processors × batcher.max_demand                             (taken by the batcher)
//!              + (2 × concurrency + 2 × (concurrency − 1)) × batch_size      (batches in hand or queued)
//! ```
//!
//! (without `partition_by`, `3 × processors − 1` is just `processors`). `ferroway_pipeline_in_flight`
//! and [`Pipeline::in_flight`] show where you are.

mod ack;
mod batch_processor;
mod batcher;
mod builder;
mod dead_letter;
mod handle;
mod handler;
mod message;
mod options;
mod outage;
mod processor;
mod producer;
mod rate_limit;
mod shared;
pub mod testing;
mod watermark;

pub use ack::{AckToken, Acknowledger, Acks, FailedAck};
pub use builder::{NoProducer, PipelineBuilder};
pub use dead_letter::{BoxFuture, DeadLetterInfo};
pub use handle::{BatcherTopology, Drainer, Pipeline, PipelineError, ShutdownReport, Topology};
pub use handler::{BatchInfo, BatchTrigger, Forward, Handler};
pub use message::{BatchKey, Message, OnFailure, Origin};
pub use options::{Batcher, ConfigError, Processors};
pub use watermark::Watermark;
