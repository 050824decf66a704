//! Demand-driven stages: GenStage for Rust, and the one back-pressure mechanism of Ferroway.
//!
//! A **producer** emits events only in answer to demand; a **consumer** takes events and asks
//! for more as it finishes them; a **producer-consumer** does both. Each stage runs as its own
//! Tokio task. Consumers subscribe to producers with a demand window (`max_demand`,
//! `min_demand`); a producer's [`Dispatcher`] routes events among its subscribers. Events
//! travel in batches: one channel operation per batch, never one per event.
//!
//! ```
//! use ferroway::stage::{self, Consumer, ConsumerOptions, Emit, Producer, ProducerConsumer, ProducerOptions, SubscribeOptions};
//! use ferroway::BoxError;
//!
//! struct Numbers(u64);
//! impl Producer for Numbers {
//!     type Output = u64;
//!     async fn handle_demand(&mut self, demand: usize) -> Result<Emit<u64>, BoxError> {
//!         let end = (self.0 + demand as u64).min(1_001);
//!         let batch = (self.0..end).collect();
//!         self.0 = end;
//!         Ok(if end == 1_001 { Emit::Done(batch) } else { Emit::Events(batch) })
//!     }
//! }
//!
//! struct Double;
//! impl ProducerConsumer for Double {
//!     type Input = u64;
//!     type Output = u64;
//!     async fn handle_events(&mut self, events: Vec<u64>) -> Result<Vec<u64>, BoxError> {
//!         Ok(events.into_iter().map(|x| x * 2).collect())
//!     }
//! }
//!
//! struct Print;
//! impl Consumer for Print {
//!     type Input = u64;
//!     async fn handle_events(&mut self, events: Vec<u64>) -> Result<(), BoxError> {
//!         println!("got {} events, last {:?}", events.len(), events.last());
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let numbers = stage::start_producer(Numbers(1), ProducerOptions::new().name("numbers"));
//! let double = stage::start_producer_consumer(Double, ProducerOptions::new().name("double"));
//! let print = stage::start_consumer(Print, ConsumerOptions::new().name("print"));
//! double.subscribe_to(&numbers, SubscribeOptions::new().max_demand(100)).await?;
//! print.subscribe_to(&double, SubscribeOptions::new().max_demand(100)).await?;
//! // The producer finishes; each stage finishes what it received and stops in turn.
//! print.join().await?;
//! # Ok(()) }
//! ```
//!
//! Lifecycle follows GenStage: when a producer finishes or fails, each subscription ends and
//! the consumer applies the subscription's [`CancelMode`]. A failing or panicking stage
//! surfaces as a [`StageError`](crate::StageError) from [`StageTask::join`], and downstream as
//! [`StageError::Upstream`](crate::StageError::Upstream) — never a silent hang.

mod buffer;
mod consumer;
mod dispatcher;
mod handle;
pub(crate) mod inbox;
pub(crate) mod outbox;
mod producer;
mod producer_consumer;
mod subscription;
mod supervisor;
pub(crate) mod transform;

pub use buffer::BufferKeep;
pub use consumer::{Consumer, ConsumerOptions, ConsumerStage, start_consumer};
pub use dispatcher::Dispatcher;
pub use handle::{AsProducer, ConsumerRef, EmitError, Emitter, ProducerRef, StageTask};
pub use producer::{Emit, Producer, ProducerOptions, ProducerStage, start_producer};
pub use producer_consumer::{ProducerConsumer, ProducerConsumerStage, start_producer_consumer};
pub use subscription::{CancelMode, SubscribeOptions, SubscriptionId};
pub use supervisor::start_consumer_supervisor;

pub(crate) use subscription::{ConsumerMsg, default_min_demand};
