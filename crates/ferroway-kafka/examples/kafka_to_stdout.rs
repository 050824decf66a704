//! Kafka → stdout (or a file): reads topics as a member of a consumer group and writes each
//! record as one line, `topic/partition@offset key=KEY payload`. A record's offset is
//! committed only after its line is written (and, for a file, fsynced); Ctrl-C or SIGTERM
//! finishes what is in flight, commits it and leaves the group.
//!
//! ```sh
//! bash scripts/services/kafka.sh            # a broker on 127.0.0.1:9092
//! cargo run -p ferroway-kafka --example kafka_to_stdout -- --topic orders
//! cargo run -p ferroway-kafka --example kafka_to_stdout -- --topic orders --out orders.log
//! ```
//!
//! Options: `--bootstrap HOST:PORT` (default `127.0.0.1:9092`), `--topic T` (repeatable,
//! `^regex` allowed; default `orders`), `--group G` (default `kafka-to-stdout`), `--out FILE`.
//! `RUST_LOG` sets the log level (default `info`; logs go to stderr).

use std::time::Duration;

use ferroway::BoxError;
use ferroway::connector::file::{FileSink, FileSinkOptions};
use ferroway::connector::stdio::WriterSink;
use ferroway::pipeline::{BatchInfo, Batcher, Handler, Message, Pipeline, Processors};
use ferroway_kafka::{Connection, KafkaMetadata, KafkaSource, KafkaSourceOptions};

/// Where the lines go.
enum Out {
    Stdout(WriterSink<tokio::io::Stdout>),
    File(FileSink),
}

struct Print(Out);

impl Handler for Print {
    type Data = Vec<u8>;

    /// Turns the record into its line (on the processors, concurrently).
    async fn handle_message(&self, m: &mut Message<Vec<u8>>) -> Result<(), BoxError> {
        let md = m.metadata::<KafkaMetadata>().expect("set by the source");
        let mut line = format!("{}/{}@{}", md.topic, md.partition, md.offset).into_bytes();
        if let Some(key) = &md.key {
            line.extend_from_slice(b" key=");
            line.extend_from_slice(key);
        }
        line.push(b' ');
        m.update_data(|payload| {
            line.extend(payload.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
            line.push(b'\n');
            line
        });
        Ok(())
    }

    /// Writes a batch of lines; the offsets are committed after this returns.
    async fn handle_batch(&self, batch: &mut [Message<Vec<u8>>], _: &BatchInfo) -> Result<(), BoxError> {
        let bytes: Vec<u8> = batch.iter().flat_map(|m| m.data().iter().copied()).collect();
        match &self.0 {
            Out::Stdout(w) => w.write_bytes(&bytes).await?,
            Out::File(f) => f.write_bytes(bytes).await?.durable().await?,
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let (mut bootstrap, mut topics, mut group, mut out) = (
        "127.0.0.1:9092".to_owned(),
        Vec::new(),
        "kafka-to-stdout".to_owned(),
        None,
    );
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--bootstrap" => bootstrap = value,
            "--topic" => topics.push(value),
            "--group" => group = value,
            "--out" => out = Some(value),
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    if topics.is_empty() {
        topics.push("orders".into());
    }

    // Options are checked here, librdkafka's included: a typo fails now, naming the property.
    let source = KafkaSource::factory(KafkaSourceOptions::new(Connection::new(bootstrap), group, topics))?;
    let out = match out {
        Some(path) => Out::File(FileSink::open(path, FileSinkOptions::new()).await?),
        None => Out::Stdout(WriterSink::stdout()),
    };
    let factory = source.clone();
    let pipeline = Pipeline::builder("kafka-to-stdout", Print(out))
        .producer(move || factory.create())
        // Each partition's records stay in offset order.
        .partition_by(ferroway_kafka::partition_key)
        .processors(Processors::new().concurrency(2))
        .batcher(
            Batcher::new("out")
                .batch_size(500)
                .batch_timeout(Duration::from_millis(100)),
        )
        .start()
        .await?;
    // Until Ctrl-C / SIGTERM; an unreachable cluster ends it with an error naming it.
    pipeline.run_until(ferroway::shutdown_signal()).await?;
    source.closed().await;
    Ok(())
}
