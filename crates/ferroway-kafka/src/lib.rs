//! Kafka for Ferroway pipelines: a consumer-group source whose offset commits never run ahead
//! of processing, and a producer sink that acknowledges only what the broker confirmed.
//!
//! Built on `rdkafka` with a librdkafka compiled from source, so no system library is needed
//! (TLS is opt-in: see *Features*). Works with Apache Kafka, Redpanda, Azure Event Hubs' Kafka
//! endpoint (see [`profile`]) and other Kafka-compatible brokers.
//!
//! # Consuming
//!
//! ```no_run
//! use ferroway::pipeline::{Batcher, BatchInfo, Handler, Message, Pipeline, Processors};
//! use ferroway::BoxError;
//! use ferroway_kafka::{Connection, KafkaMetadata, KafkaSource, KafkaSourceOptions};
//!
//! struct Orders;
//! impl Handler for Orders {
//!     type Data = Vec<u8>;
//!     async fn handle_message(&self, m: &mut Message<Vec<u8>>) -> Result<(), BoxError> {
//!         let md = m.metadata::<KafkaMetadata>().expect("set by the source");
//!         println!("{}/{}@{}: {} bytes", md.topic, md.partition, md.offset, m.data().len());
//!         Ok(())
//!     }
//!     async fn handle_batch(&self, batch: &mut [Message<Vec<u8>>], _: &BatchInfo) -> Result<(), BoxError> {
//!         // Write the batch somewhere durable. Offsets are committed only after this returns.
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // `RUST_LOG` decides what is logged; without a subscriber nothing is.
//! tracing_subscriber::fmt()
//!     .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
//!     .init();
//! // Every option is checked here, librdkafka's properties included.
//! let source = KafkaSource::factory(KafkaSourceOptions::new(
//!     Connection::new("127.0.0.1:9092"),
//!     "order-writer",
//!     ["orders"],
//! ))?;
//! let factory = source.clone();
//! let pipeline = Pipeline::builder("orders", Orders)
//!     .producer(move || factory.create())
//!     .partition_by(ferroway_kafka::partition_key) // per-partition order
//!     .processors(Processors::new().concurrency(2))
//!     .batcher(Batcher::new("default").batch_size(500))
//!     .start()
//!     .await?;
//! // Until Ctrl-C or SIGTERM, then: finish what is in flight, commit it, leave the group.
//! pipeline.run_until(ferroway::shutdown_signal()).await?;
//! source.closed().await;
//! # Ok(()) }
//! ```
//!
//! Complete programs are in the crate's `examples/`: `redis_to_kafka` (a Redis Streams
//! consumer group into a Kafka topic, dead letters to a file) and `kafka_to_stdout` (a topic
//! to stdout or a file).
//!
//! # Offsets: what is committed, and when
//!
//! - Auto-commit is always off (`enable.auto.commit=false`, `enable.auto.offset.store=false`).
//! - Per partition, the source commits the offset *below which every message has been
//!   acknowledged* (a [`Watermark`](ferroway::pipeline::Watermark)); the committed value is
//!   the next offset to read. A slow message holds its partition's commit back; others go on.
//! - Commits happen every `commit_interval` (asynchronously), on revoke and on shutdown
//!   (synchronously).
//! - A message dead-lettered by the pipeline is acknowledged as successful, so it counts as
//!   done. A failed acknowledgement follows [`OnFailed`]: by default the partition commits past
//!   it, logged at `ERROR` and counted (never silent, never blocking); with
//!   [`OnFailed::Hold`] it holds the commit until a restart or rebalance redelivers it.
//! - On a rebalance, revoked partitions stop being emitted at once; their in-flight messages
//!   are drained (bounded by `revoke_drain_timeout`) or abandoned ([`OnRevoke`]), what is
//!   complete is committed, and the partitions are forgotten. Each assignment of a partition
//!   has its own epoch in the acknowledgement token, so a late acknowledgement for a partition
//!   this member no longer owns is dropped: a commit never covers a partition it does not own.
//! - After a crash, messages acknowledged since the last commit are delivered again
//!   (at-least-once); after a graceful [`Pipeline::stop`](ferroway::pipeline::Pipeline::stop)
//!   followed by [`KafkaSourceFactory::closed`], none are.
//!
//! # Order and concurrency
//!
//! With [`partition_key`] as the pipeline's `partition_by`, each Kafka partition is handled
//! by one processor and one batch processor, in offset order. Without it (or with a key of
//! your own), messages of one partition are processed concurrently; commits stay correct.
//!
//! # Memory and demand
//!
//! The source fetches what the pipeline demanded plus at most `prefetch` messages, then
//! pauses all its partitions (and keeps polling, so it stays in its group). Memory is bounded
//! by demand, `prefetch` and librdkafka's `queued.max.messages.kbytes`, never by the topic.
//! (librdkafka's copy of a message lives until the source's poller thread next turns round,
//! shortly after the pipeline took it: briefly, about one demand's worth more.) This holds with
//! any key distribution: with [`partition_key`] and a one-partition topic, every message goes
//! to one lane, and the pipeline holds back the source rather than queue for it. Measured
//! (`tests/memory.rs`, release build): 200,000 records of 1 KB in one partition, 2 processors,
//! default options — peak RSS 42 MiB, 15 MiB of it before the pipeline started; librdkafka's
//! 16 MiB prefetch is most of the rest (`max_prefetch_kbytes` lowers it). A stop handles only
//! what is in flight: messages fetched and not yet emitted are dropped, never tracked.
//!
//! # Producing
//!
//! [`KafkaSink::send_batch`] from a batch handler produces every message and waits for the
//! delivery reports. Records Kafka refuses (too large, invalid) are marked failed, alone; when
//! Kafka cannot take records (brokers down, nothing delivered within the 30 s delivery
//! timeout) it returns an error the pipeline recognises as an outage
//! ([`ferroway::error::Unavailable`]): the batch is kept and handled again with backoff, never
//! dead-lettered or acknowledged. The producer is idempotent by default. A [`KafkaSink`] is
//! a [`Sink`](ferroway::connector::Sink), also for dead letters.
//!
//! # Features
//!
//! - default: librdkafka built with `./configure && make` (needs a C compiler only), with
//!   zlib (gzip), snappy and lz4.
//! - `ssl`: TLS and SASL/SCRAM through the system's OpenSSL (Debian: `libssl-dev`). Needed by
//!   Azure Event Hubs and most managed services.
//! - `ssl-vendored`: the same with OpenSSL built from source.
//! - `zstd`: zstd compression.
//! - `config`: the source and the sink as configuration-file components, `type = "kafka"`
//!   (`KafkaSourceConfig`, `KafkaSinkConfig`), for the `ferroway` CLI.
//!
//! SASL/PLAIN over plain text works without any feature; SASL/GSSAPI (Kerberos) is not offered.
//!
//! # Starting, outages, and what is logged
//!
//! - A source logs at `INFO` where it connects (servers, protocol, SASL user — never a
//!   secret), when a broker first answered, when it joined its group and which partitions it
//!   was assigned; at `WARN`, every 30 s, that it is still waiting for partitions (with the
//!   last error, e.g. a topic that does not exist).
//! - Topic metadata is refreshed every 5 s (librdkafka's default is 5 minutes): a topic
//!   created after the source started is read within seconds of the group's rebalance.
//! - A topic deleted and created again (a new topic id) while a source or sink runs is not
//!   supported: librdkafka 2.12 does not handle a topic id change in a live client and may
//!   crash (confluentinc/librdkafka#4778, #4898). Restart the pipeline after re-creating a
//!   topic. A broker restart that keeps its topics is handled.
//! - A source that reaches no broker within `connect_timeout` (60 s) fails, and so does the
//!   pipeline: `join`/`run_until` return the error, naming the servers. Once connected, an
//!   outage never fails the source; it waits for librdkafka to reconnect.
//! - librdkafka's own warnings and client errors (a broker down, all brokers down, ...) are
//!   logged once per kind every 10 s, with how many were held back.
//! - The sink notices an outage within its delivery timeout (30 s) and returns an error the
//!   pipeline waits out ([`KafkaError::Unavailable`]): see [`KafkaSink`].
//!
//! # Metrics
//!
//! See [`telemetry`] for the counters.
#![deny(missing_docs)]

mod client_log;
#[cfg(feature = "config")]
mod config;
mod error;
mod metadata;
mod offsets;
mod options;
pub mod profile;
mod sink;
mod source;
pub mod telemetry;

#[cfg(feature = "config")]
pub use config::{KafkaSinkConfig, KafkaSourceConfig};
pub use error::{ConfigError, ErrorClass, KafkaError, Outage, classify, classify_code};
pub use metadata::{KafkaMetadata, partition_key};
pub use options::{
    Compression, Connection, KafkaSinkOptions, KafkaSourceOptions, OnFailed, OnRevoke, Partitioner, Properties,
    RequiredAcks, SaslMechanism, SaslOptions, Secret, Security, StartFrom, TlsOptions,
};
pub use sink::{BatchReport, Delivered, KafkaRecord, KafkaSink, dead_letter_headers};
pub use source::{KafkaRecordProducer, KafkaRecordSource, KafkaSource, KafkaSourceFactory};

/// The `rdkafka` crate, for what this crate does not wrap (e.g. an admin client).
pub use rdkafka;
