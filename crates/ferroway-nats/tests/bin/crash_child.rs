//! The pipeline the crash tests kill: a JetStream durable consumer (payloads are decimal
//! numbers) -> a file sink appending each payload as a line, fsynced before the batch is
//! acknowledged. SIGTERM drains gracefully.
//!
//! Usage: ferroway-nats-crash-child URL STREAM CONSUMER OUT_FILE

use std::io::Write;
use std::time::Duration;

use ferroway::connector::file::{FileSink, FileSinkOptions};
use ferroway::connector::{Record, Source};
use ferroway::pipeline::{Batcher, Forward, Pipeline, Processors};
use ferroway_nats::{JetStreamOptions, JetStreamSource};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, stream, consumer, out] = args.as_slice() else {
        return Err("usage: URL STREAM CONSUMER OUT_FILE".into());
    };
    // A short ack wait: what a kill left unacked comes back within seconds.
    let config = ferroway_nats::jetstream::ConsumerConfig {
        ack_wait: Duration::from_secs(2),
        ..JetStreamOptions::default_consumer()
    };
    let opts = JetStreamOptions::new(url.as_str(), stream.as_str(), consumer.as_str())
        .consumer(config)
        .max_batch(200);
    let source = JetStreamSource::factory(opts)?.map(|m| Record::new(m.payload));
    // fsynced before the batch is acknowledged: what makes the crash test's promise hold. A
    // line torn by a kill is cut when it opens (`repair_torn_tail`, on by default).
    let sink = FileSink::open(out, FileSinkOptions::new()).await?;
    let pipeline = Pipeline::builder("crash-child", Forward::<Record>::new())
        .source(source)
        .processors(Processors::new().concurrency(2).max_demand(50))
        .sink(
            sink,
            Batcher::new("file")
                .max_demand(100)
                .batch_size(50)
                .batch_timeout(Duration::from_millis(20))
                .concurrency(2),
        )
        .start()
        .await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    println!("ready");
    std::io::stdout().flush()?;
    term.recv().await;
    pipeline.stop().await?;
    Ok(())
}
