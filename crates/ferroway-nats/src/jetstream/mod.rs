//! JetStream: the durable pull-consumer source, and stream and consumer management in
//! async-nats' own types (re-exported here under JetStream's names).
//!
//! ```no_run
//! use ferroway_nats::jetstream::{ConsumerConfig, StreamConfig, ensure_consumer, ensure_stream};
//!
//! # async fn run() -> Result<(), ferroway::BoxError> {
//! let client = async_nats::connect("127.0.0.1:4222").await?;
//! let stream = ensure_stream(&client, StreamConfig {
//!     name: "ORDERS".into(),
//!     subjects: vec!["orders.>".into()],
//!     max_age: std::time::Duration::from_secs(7 * 24 * 3600),
//!     ..Default::default()
//! }).await?;
//! ensure_consumer(&stream, "billing", ConsumerConfig { max_deliver: 5, ..Default::default() }).await?;
//! # Ok(()) }
//! ```

mod ack;
mod source;

pub use async_nats::jetstream::consumer::pull::Config as ConsumerConfig;
pub use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy};
pub use async_nats::jetstream::stream::{Config as StreamConfig, DiscardPolicy, RetentionPolicy, StorageType};
pub use source::{JetStreamSource, JetStreamSourceFactory};

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::stream::Stream;
use ferroway::BoxError;

/// Creates the stream `config.name`, or updates it to `config` (subjects, retention, storage,
/// limits) where it exists.
///
/// # Errors
/// The server's refusal (a subject another stream owns, a change it does not allow) or an
/// outage.
pub async fn ensure_stream(client: &async_nats::Client, config: StreamConfig) -> Result<Stream, BoxError> {
    let js = async_nats::jetstream::new(client.clone());
    let name = config.name.clone();
    js.create_or_update_stream(config).await?;
    Ok(js.get_stream(name).await?)
}

/// The durable pull consumer `durable` of `stream`, created with `config` if missing (ack
/// policy explicit, whatever `config` says).
///
/// # Errors
/// The server's refusal or an outage.
pub async fn ensure_consumer(stream: &Stream, durable: &str, config: ConsumerConfig) -> Result<PullConsumer, BoxError> {
    let config = ConsumerConfig {
        durable_name: Some(durable.to_owned()),
        ack_policy: AckPolicy::Explicit,
        ..config
    };
    Ok(stream.get_or_create_consumer(durable, config).await?)
}
