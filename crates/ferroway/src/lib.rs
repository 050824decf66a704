//! # Ferroway
//!
//! Demand-driven, back-pressured, acknowledged streaming on Tokio: the ideas of Elixir's
//! GenStage and Broadway, built for Rust.
//!
//! - [`stage`]: producers, consumers and producer-consumers exchanging events by demand.
//! - [`pipeline`]: Broadway-style pipelines with acknowledgements, batching, partitioning.
//! - [`resilience`]: backoff, retry, circuit breaker, supervision, connection manager.
//! - [`connector`]: embedded sources and sinks — files with durable checkpoints, stdin/stdout,
//!   a generator.
//! - [`telemetry`]: the names of every metric recorded.
//! - `config` (feature `config`): connector options from configuration files.
#![deny(missing_docs)]

#[cfg(feature = "config")]
pub mod config;
pub mod connector;
pub mod error;
pub mod pipeline;
pub mod resilience;
mod shutdown;
pub mod stage;
pub mod telemetry;

pub use error::{BoxError, StageError, SubscribeError, Unavailable, is_unavailable};
pub use shutdown::shutdown_signal;
