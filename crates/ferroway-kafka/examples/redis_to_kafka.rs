//! Redis Streams → Kafka, end to end: order entries of a Redis stream are read by a consumer
//! group, checked and turned into JSON by processors, and produced to a Kafka topic in
//! batches, keyed by order so each order's events stay in one partition. An entry is
//! acknowledged in Redis (`XACK`) only once Kafka confirmed its record. Entries that are bad
//! (a few on purpose when seeding) go to a dead-letter file with their stream, entry id and
//! fields. An outage is not a bad entry: while Kafka is down the batches wait and are sent
//! again (nothing is dead-lettered or acknowledged), and Redis keeps the rest. Ctrl-C or
//! SIGTERM stops cleanly: what was read is produced and acknowledged first.
//!
//! ```sh
//! bash scripts/services/redis.sh && bash scripts/services/kafka.sh
//! cargo run -p ferroway-kafka --example redis_to_kafka -- --seed 10000
//! cargo run -p ferroway-kafka --example kafka_to_stdout -- --topic orders-json   # see the records
//! ```
//!
//! Options: `--redis URL` (default `redis://127.0.0.1:6379`), `--stream NAME` (default
//! `ferroway-example-orders`), `--bootstrap HOST:PORT` (default `127.0.0.1:9092`), `--topic T`
//! (default `orders-json`; created by the broker if it auto-creates topics), `--dead-letters
//! FILE` (default `redis-to-kafka-dead-letters.ndjson`), `--seed N` (add N sample entries to
//! the stream first). `RUST_LOG` sets the log level (default `info`).

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferroway::BoxError;
use ferroway::connector::DeadLetterWriter;
use ferroway::connector::file::{FileSink, FileSinkOptions};
use ferroway::pipeline::{BatchInfo, Batcher, Handler, Message, Pipeline, Processors};
use ferroway_kafka::{Connection, KafkaRecord, KafkaSink, KafkaSinkOptions};
use ferroway_redis::{Entry, Fields, RedisMetadata, RedisSink, RedisSource, SinkOptions, SourceOptions};
use tracing::info;

struct Args {
    redis: String,
    stream: String,
    bootstrap: String,
    topic: String,
    dead_letters: String,
    seed: u64,
}

fn args() -> Result<Args, BoxError> {
    let mut a = Args {
        redis: "redis://127.0.0.1:6379".into(),
        stream: "ferroway-example-orders".into(),
        bootstrap: "127.0.0.1:9092".into(),
        topic: "orders-json".into(),
        dead_letters: "redis-to-kafka-dead-letters.ndjson".into(),
        seed: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--redis" => a.redis = value,
            "--stream" => a.stream = value,
            "--bootstrap" => a.bootstrap = value,
            "--topic" => a.topic = value,
            "--dead-letters" => a.dead_letters = value,
            "--seed" => a.seed = value.parse().map_err(|e| format!("--seed: {e}"))?,
            other => return Err(format!("unknown option {other} (see the example's header)").into()),
        }
    }
    Ok(a)
}

/// Adds `n` order entries to the stream, one in 250 without a valid amount.
async fn seed(url: &str, stream: &str, n: u64) -> Result<(), BoxError> {
    let sink = RedisSink::new(SinkOptions::new(url, stream))?;
    let orders: Vec<Fields> = (0..n)
        .map(|i| {
            let amount = if i % 250 == 249 {
                "n/a".to_owned()
            } else {
                ((i * 7919) % 10_000).to_string()
            };
            vec![
                ("order".to_owned(), format!("order-{i}").into_bytes()),
                (
                    "country".to_owned(),
                    ["de", "fr", "jp", "us"][(i % 4) as usize].as_bytes().to_vec(),
                ),
                ("amount_cents".to_owned(), amount.into_bytes()),
            ]
        })
        .collect();
    for chunk in orders.chunks(1_000) {
        for r in sink.add(chunk).await? {
            r?;
        }
    }
    info!(stream, entries = n, "seeded");
    Ok(())
}

/// An order as produced to Kafka, put on the message by its processor.
struct Json(Vec<u8>);

#[derive(Default)]
struct Counts {
    produced: AtomicU64,
    failed: AtomicU64,
}

struct RedisToKafka {
    kafka: KafkaSink,
    counts: Arc<Counts>,
}

impl Handler for RedisToKafka {
    type Data = Entry;

    /// Checks and encodes one entry, on the processors (concurrently). An error fails this
    /// entry only: it goes to the dead-letter file.
    async fn handle_message(&self, m: &mut Message<Entry>) -> Result<(), BoxError> {
        let e = m.data();
        let order = e.get_str("order").ok_or("no `order` field")?.to_owned();
        let country = e.get_str("country").unwrap_or("??");
        let cents: u64 = e
            .get_str("amount_cents")
            .ok_or("no `amount_cents` field")?
            .parse()
            .map_err(|err| format!("`amount_cents` is not a number: {err}"))?;
        let id = m.metadata::<RedisMetadata>().map(|md| md.id.to_string());
        let json = serde_json::json!({ "order": order, "country": country, "amount_cents": cents, "redis_id": id });
        m.put_metadata(Json(json.to_string().into_bytes()));
        m.put_metadata(KafkaRecord::new().key(order));
        Ok(())
    }

    /// Produces a batch; the entries are acknowledged in Redis once this returns. Records
    /// Kafka refuses are marked failed (dead-lettered); an outage is an error the pipeline
    /// waits out, sending the batch again.
    async fn handle_batch(&self, batch: &mut [Message<Entry>], _: &BatchInfo) -> Result<(), BoxError> {
        let report = self
            .kafka
            .send_batch_with(batch, |m| Cow::Borrowed(&m.metadata::<Json>().expect("encoded").0))
            .await?;
        self.counts.produced.fetch_add(report.sent as u64, Ordering::Relaxed);
        Ok(())
    }

    async fn handle_failed(&self, messages: &mut [Message<Entry>]) {
        self.counts.failed.fetch_add(messages.len() as u64, Ordering::Relaxed);
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let a = args()?;
    // Everything is checked before anything connects: a wrong URL or Kafka property fails
    // here, naming it.
    let source = SourceOptions::new(a.redis.as_str(), "redis-to-kafka", [a.stream.as_str()]);
    source.validate()?;
    let kafka = KafkaSink::new(KafkaSinkOptions::new(Connection::new(a.bootstrap.as_str())).topic(a.topic.as_str()))?;
    if a.seed > 0 {
        seed(&a.redis, &a.stream, a.seed).await?;
    }

    // Each dead letter is one JSON line: why, where from (stream and entry id), the fields.
    let dead = FileSink::open(&a.dead_letters, FileSinkOptions::new()).await?;
    let dead = DeadLetterWriter::new(dead, |e: &Entry| e.to_json().into_bytes());
    let counts = Arc::new(Counts::default());
    let pipeline = Pipeline::builder(
        "redis-to-kafka",
        RedisToKafka {
            kafka,
            counts: counts.clone(),
        },
    )
    .producer(move || RedisSource::new(source.clone()).expect("validated"))
    .processors(Processors::new().concurrency(2))
    .batcher(
        Batcher::new("kafka")
            .batch_size(1_000)
            .batch_timeout(Duration::from_millis(50))
            .concurrency(2),
    )
    .dead_letter(dead)
    .start()
    .await?;
    info!(topic = %a.topic, dead_letters = %a.dead_letters, "running; Ctrl-C to stop");
    pipeline.run_until(ferroway::shutdown_signal()).await?;
    info!(
        produced = counts.produced.load(Ordering::Relaxed),
        failed = counts.failed.load(Ordering::Relaxed),
        "stopped; everything read was produced (or dead-lettered) and acknowledged"
    );
    Ok(())
}
